"""Sockets from the outside: --fd N and systemd's socket activation (LISTEN_FDS/LISTEN_PID).

The test plays the supervisor: it creates and owns the listening socket, hands it to a
server, stops that server, and proves that the socket still listens by serving from it
with a second server (a connection made between the two is served by the second).
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import socket
import subprocess
from pathlib import Path

import pytest

from e2e_helpers import (
    APPS_DIR,
    HOST,
    STOP_TIMEOUT,
    RawHTTP,
    ServerProcess,
    build_request,
    child_env,
    descendants_of,
    frontdoor_command,
    run_cli,
)

# Starts "$@" with LISTEN_PID set to its own pid (exec keeps the shell's pid), the socket
# on fd 3 (sd_listen_fds' first descriptor) and the temporary descriptor closed. bash, not
# sh: dash's redirections take single-digit descriptors only.
SYSTEMD_WRAPPER = 'fd=$1; shift; export LISTEN_PID=$$; eval "exec \\"\\$@\\" 3<&$fd $fd<&-"'


def high_fd(sock: socket.socket) -> int:
    """A duplicate of the socket at 10 or above (never 3, where the wrapper puts it),
    closed on exec except where pass_fds hands it over. The caller closes it."""
    return fcntl.fcntl(sock.fileno(), fcntl.F_DUPFD_CLOEXEC, 10)


def tcp_listener(backlog: int = 64) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind((HOST, 0))
    s.listen(backlog)
    return s


def accepting(sock: socket.socket) -> bool:
    return bool(sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN))


def app_args(*extra: str) -> list[str]:
    return ["--workers", "2", "--blocking-threads", "2", "--working-dir", str(APPS_DIR), *extra,
            "socket_app:app"]


def start(factory, argv: list[str], port: int, pass_fds, env=None, probe="/") -> ServerProcess:
    """A server from an explicit argv (no --host/--port), stopped by the fixture."""
    n = len(factory.servers) + 1
    name = f"sock{n}"
    server = ServerProcess(argv, child_env(env), APPS_DIR, port, factory.base_dir, name,
                           pass_fds=tuple(pass_fds))
    factory.servers.append(server)
    server.wait_ready(probe=probe)
    return server


def report(port: int, fd: int | None = None, unix_path: str | None = None) -> dict:
    target = "/" if fd is None else f"/?fd={fd}"
    with RawHTTP(port, unix_path=unix_path) as c:
        c.send(build_request("GET", target, port=port))
        resp = c.read_response()
    assert resp.status == 200, resp
    return json.loads(resp.body)


def stop_cleanly(server: ServerProcess) -> None:
    result = server.stop(signal.SIGTERM, STOP_TIMEOUT)
    assert not result.forced and result.returncode == 0, (result, server.log_tail())
    assert not result.leftovers


def test_fd_serves_and_the_socket_outlives_the_server(server_factory):
    binary = frontdoor_command("binary")[0]
    with tcp_listener() as lsock:
        port = lsock.getsockname()[1]
        fd = high_fd(lsock)
        try:
            first = start(server_factory, binary + ["--fd", str(fd), *app_args()], port, [fd])
            first.wait_for_log(f"listening on http://{HOST}:{port} (socket fd {fd} from --fd)")
            seen = report(port, fd)
            assert (seen["server_name"], seen["server_port"]) == (HOST, str(port))
            # As the workers expect: non-blocking, and not passed on to what the app runs.
            assert seen["inheritable"] is False and seen["blocking"] is False
            assert seen["accepting"] is True
            stop_cleanly(first)

            # The supervisor still owns a listening socket: a client that connects now waits
            # in its backlog and is served by the next server started on it.
            assert accepting(lsock)
            with RawHTTP(port) as waiting:
                waiting.send(build_request("GET", "/", port=port))
                second = start(server_factory, binary + ["--fd", str(fd), *app_args()], port,
                               [fd])
                resp = waiting.read_response()
                assert resp.status == 200, resp
                assert json.loads(resp.body)["pid"] in second.workers()
            stop_cleanly(second)
            assert accepting(lsock)
        finally:
            os.close(fd)


def test_fd_from_the_python_front_door(server_factory):
    prefix, door_env = frontdoor_command("python")
    with tcp_listener() as lsock:
        port = lsock.getsockname()[1]
        fd = high_fd(lsock)
        try:
            server = start(server_factory, prefix + ["--fd", str(fd), *app_args()], port, [fd],
                           env=door_env)
            assert report(port)["server_port"] == str(port)
            stop_cleanly(server)
            assert accepting(lsock)
        finally:
            os.close(fd)


def test_fd_0_inetd_style(tmp_path):
    # The socket as standard input (systemd's StandardInput=socket, inetd): served, and the
    # app's fd 0 is /dev/null rather than the listening socket.
    binary = frontdoor_command("binary")[0]
    with tcp_listener() as lsock, open(tmp_path / "stderr", "wb") as err:
        port = lsock.getsockname()[1]
        proc = subprocess.Popen(binary + ["--fd", "0", *app_args()], stdin=lsock.fileno(),
                                stdout=subprocess.DEVNULL, stderr=err, env=child_env(),
                                cwd=APPS_DIR, start_new_session=True)
        try:
            seen = report(port)
            assert seen["stdin"] == "/dev/null" and seen["server_port"] == str(port)
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=STOP_TIMEOUT) == 0
            assert accepting(lsock)
        finally:
            if proc.poll() is None:
                for pid in descendants_of(proc.pid):
                    os.kill(pid, signal.SIGKILL)
                proc.kill()
                proc.wait(timeout=STOP_TIMEOUT)


def test_systemd_socket_activation(server_factory):
    binary = frontdoor_command("binary")[0]
    with tcp_listener() as lsock:
        port = lsock.getsockname()[1]
        fd = high_fd(lsock)
        try:
            argv = ["bash", "-c", SYSTEMD_WRAPPER, "bash", str(fd), *binary, *app_args()]
            server = start(server_factory, argv, port, [fd],
                           env={"LISTEN_FDS": "1", "LISTEN_FDNAMES": "web"})
            server.wait_for_log(f"listening on http://{HOST}:{port} (socket fd 3 from systemd)")
            seen = report(port, 3)
            assert (seen["server_name"], seen["server_port"]) == (HOST, str(port))
            assert seen["inheritable"] is False and seen["blocking"] is False
            # Taken, then removed: neither the app nor what it starts sees the variables.
            assert seen["os_environ"] == {} and seen["c_environ"] == []
            stop_cleanly(server)
            assert accepting(lsock)
            # And the next server takes it over the same way.
            again = start(server_factory, argv, port, [fd],
                          env={"LISTEN_FDS": "1", "LISTEN_FDNAMES": "web"})
            assert report(port)["server_port"] == str(port)
            stop_cleanly(again)
        finally:
            os.close(fd)


def test_systemd_extra_sockets_are_warned_about(server_factory, tmp_path):
    binary = frontdoor_command("binary")[0]
    with tcp_listener() as first, tcp_listener() as extra:
        port = first.getsockname()[1]
        fd1, fd2 = high_fd(first), high_fd(extra)
        try:
            script = ('a=$1; b=$2; shift 2; export LISTEN_PID=$$; '
                      'eval "exec \\"\\$@\\" 3<&$a 4<&$b $a<&- $b<&-"')
            argv = ["bash", "-c", script, "bash", str(fd1), str(fd2), *binary, *app_args()]
            server = start(server_factory, argv, port, [fd1, fd2], env={"LISTEN_FDS": "2"})
            server.wait_for_log("systemd passed 2 sockets (LISTEN_FDS); only the first (fd 3) "
                                "is served, fd 4 is ignored and closed")
            assert report(port)["server_port"] == str(port)
            stop_cleanly(server)
            # Closing its own copy took nothing from the supervisor.
            assert accepting(extra)
        finally:
            os.close(fd1)
            os.close(fd2)


def test_listen_pid_of_another_process_is_ignored(server_factory):
    # Meant for some other process (the server's parent, say): the server binds --port as
    # usual, and the variables still do not reach the app.
    server = server_factory.start("socket_app:app", probe="/",
                                  env={"LISTEN_FDS": "1", "LISTEN_PID": "1"})
    seen = report(server.port)
    assert seen["os_environ"] == {} and seen["c_environ"] == []
    assert "from systemd" not in server.log()


def test_unix_socket_from_fd_is_never_unlinked(server_factory, tmp_path):
    binary = frontdoor_command("binary")[0]
    path = str(tmp_path / "app.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as lsock:
        lsock.bind(path)
        lsock.listen(16)
        fd = high_fd(lsock)
        try:
            server = ServerProcess(binary + ["--fd", str(fd), *app_args()], child_env(),
                                   APPS_DIR, 0, server_factory.base_dir, "unix",
                                   pass_fds=(fd,))
            server_factory.servers.append(server)
            server.wait_for_log(f"listening on unix:{path} (socket fd {fd} from --fd)")
            seen = report(0, unix_path=path)
            assert (seen["server_name"], seen["server_port"]) == ("localhost", "80")
            stop_cleanly(server)
            assert Path(path).is_socket(), "the server removed a socket file it did not create"
            assert accepting(lsock)
        finally:
            os.close(fd)


@pytest.mark.parametrize(
    "kind, expected",
    [
        ("not-listening", "is a socket that is not listening"),
        ("udp", "is not a stream socket"),
        ("file", "is not a socket"),
        ("closed", "is not an open descriptor"),
    ],
)
def test_fd_that_is_not_a_listening_stream_socket_is_refused(kind, expected, tmp_path):
    keep = []
    if kind == "not-listening":
        keep.append(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
        keep[-1].bind((HOST, 0))
    elif kind == "udp":
        keep.append(socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
    elif kind == "file":
        keep.append(open(tmp_path / "plain", "wb"))
    try:
        if keep:
            fd = fcntl.fcntl(keep[0].fileno(), fcntl.F_DUPFD_CLOEXEC, 10)
            pass_fds = (fd,)
        else:
            fd, pass_fds = 57, ()  # nothing open there in the server
        result = run_cli(["--fd", str(fd), "socket_app:app"], pass_fds=pass_fds)
        if keep:
            os.close(fd)
    finally:
        for k in keep:
            k.close()
    assert not result.timed_out
    assert result.returncode == 1, result
    assert f"appserver: error: --fd: fd {fd} {expected}" in result.stderr, result.stderr


def test_fd_with_uds_is_a_usage_error(tmp_path):
    with tcp_listener() as lsock:
        fd = high_fd(lsock)
        try:
            result = run_cli(["--fd", str(fd), "--uds", str(tmp_path / "s"), "socket_app:app"],
                             pass_fds=(fd,))
        finally:
            os.close(fd)
    assert result.returncode == 2, result
    assert "--fd and --uds both give the listening socket" in result.stderr
    assert not (tmp_path / "s").exists()


def test_fd_with_listen_fds_is_a_usage_error():
    binary = frontdoor_command("binary")[0]
    with tcp_listener() as lsock:
        fd = high_fd(lsock)
        try:
            argv = ["bash", "-c", SYSTEMD_WRAPPER, "bash", str(fd), *binary, "--fd", "3",
                    "socket_app:app"]
            proc = subprocess.run(argv, env=child_env({"LISTEN_FDS": "1"}), cwd=APPS_DIR,
                                  stdin=subprocess.DEVNULL, capture_output=True, timeout=30,
                                  pass_fds=(fd,), start_new_session=True)
        finally:
            os.close(fd)
    assert proc.returncode == 2, proc
    assert b"--fd 3 and systemd's LISTEN_FDS both give the listening socket" in proc.stderr


def test_malformed_listen_fds_is_refused():
    binary = frontdoor_command("binary")[0]
    script = 'export LISTEN_PID=$$; exec "$@"'
    argv = ["bash", "-c", script, "bash", *binary, "socket_app:app"]
    proc = subprocess.run(argv, env=child_env({"LISTEN_FDS": "two"}), cwd=APPS_DIR,
                          stdin=subprocess.DEVNULL, capture_output=True, timeout=30,
                          start_new_session=True)
    assert proc.returncode == 1, proc
    assert b"LISTEN_FDS='two' is not a number of descriptors" in proc.stderr

