"""--debug the way a person uses it: the server in a terminal (a tmux pane), a view that
calls breakpoint(), pdb driven with keystrokes, Ctrl-C typed into the same terminal.

Everything waits on what the pane shows (tmux capture-pane), with deadlines; nothing
sleeps to synchronise. The pane runs bash -c '<appserver ...>; echo exit status; stty -a;
exec cat', so after the server exits the pane shows its status and the terminal's modes
(echo and canonical input must be back on), and stays open until the test kills it.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import threading
import uuid
from pathlib import Path

import pytest

from e2e_helpers import (
    APPS_DIR,
    RawHTTP,
    build_request,
    child_env,
    children_of,
    descendants_of,
    free_port,
    frontdoor_command,
    pid_alive,
    wait_until,
)

WAIT = 20.0  # every wait on the pane or the server


class Pane:
    """One tmux server of its own (-L) with one session running a command."""

    def __init__(self, command: str, extra_env: dict[str, str] | None = None):
        if shutil.which("tmux") is None:
            pytest.fail("tmux is not installed (scripts/install-deps installs it)")
        self.socket = "appserver-e2e-" + uuid.uuid4().hex[:12]
        env = child_env({**(extra_env or {}), "SHELL": "/bin/bash"})
        env.pop("TMUX", None)
        # pdb is what is under test: breakpoint() must not be a no-op.
        env.pop("PYTHONBREAKPOINT", None)
        self._tmux("new-session", "-d", "-s", "dbg", "-x", "200", "-y", "50", command, env=env)

    def _tmux(self, *args: str, env=None) -> str:
        proc = subprocess.run(
            ["tmux", "-L", self.socket, "-f", "/dev/null", *args],
            env=env,
            capture_output=True,
            timeout=10,
            check=True,
        )
        return proc.stdout.decode("utf-8", "replace")

    def text(self) -> str:
        """The whole pane, history included, wrapped lines joined."""
        try:
            return self._tmux("capture-pane", "-p", "-J", "-S", "-", "-t", "dbg")
        except subprocess.CalledProcessError:
            return ""  # the session is gone

    def wait_for(self, needle: str, after: int = 0) -> int:
        """Waits until needle appears past offset `after`; returns the offset past it."""

        def found():
            at = self.text().find(needle, after)
            return at + len(needle) if at >= 0 else None

        try:
            return wait_until(found, WAIT, f"{needle!r} in the tmux pane")
        except AssertionError as e:
            raise AssertionError(f"{e}\n--- pane ---\n{self.text()}") from None

    def type(self, text: str) -> None:
        self._tmux("send-keys", "-t", "dbg", "-l", text)
        self._tmux("send-keys", "-t", "dbg", "Enter")

    def key(self, key: str) -> None:
        self._tmux("send-keys", "-t", "dbg", key)

    def kill(self) -> None:
        try:
            self._tmux("kill-server")
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
            pass
        # tmux leaves its socket file behind.
        tmpdir = os.environ.get("TMUX_TMPDIR") or "/tmp"
        Path(tmpdir, f"tmux-{os.getuid()}", self.socket).unlink(missing_ok=True)


class Request(threading.Thread):
    """GET path in the background: the view stops in pdb before it answers."""

    def __init__(self, port: int, path: str):
        super().__init__(daemon=True)
        self.port, self.path = port, path
        self.response = None
        self.error: Exception | None = None

    def run(self):
        try:
            with RawHTTP(self.port, timeout=60) as c:
                c.send(build_request("GET", self.path, port=self.port))
                self.response = c.read_response()
        except Exception as e:  # reported by the test
            self.error = e

    def result(self):
        self.join(WAIT)
        assert not self.is_alive(), "the request did not finish"
        return self.response, self.error


@pytest.fixture
def debug_server(request, tmp_path):
    """Starts `appserver --debug` (with --workers 2 --blocking-threads 4, which it must
    override) in a tmux pane, through the front door in request.param (default: the
    binary); yields (pane, master pid, port)."""
    prefix, door_env = frontdoor_command(getattr(request, "param", "binary"))
    port = free_port()
    pid_file = tmp_path / "appserver.pid"
    server = shlex.join([
        *prefix, "--debug", "--workers", "2", "--blocking-threads", "4", "--port", str(port),
        "--pid-file", str(pid_file), "--working-dir", str(APPS_DIR), "debug_app:app",
    ])
    pane = Pane(f"{server}; echo appserver exited with status $?; stty -a; exec cat", door_env)
    master = None
    family: set[int] = set()
    try:
        wait_until(lambda: pid_file.exists() and pid_file.read_text().strip(), WAIT,
                   "the pid file")
        master = int(pid_file.read_text())
        pane.wait_for("worker 0 ready")
        family.update(descendants_of(master))
        yield pane, master, port
    finally:
        for pid in [master, *family] if master else []:
            if pid_alive(pid):
                os.kill(pid, signal.SIGKILL)
        pane.kill()


def assert_terminal_sane(pane: Pane, after: int) -> None:
    """After the server exited: echo and canonical input are on again (stty -a)."""
    pane.wait_for("speed ", after)
    modes = pane.text()[after:].split()
    assert "echo" in modes and "icanon" in modes, pane.text()[after:]


@pytest.mark.parametrize("debug_server", ["binary", "python"], indirect=True)
def test_breakpoint_in_a_view(debug_server):
    pane, master, port = debug_server
    log = pane.text()
    assert "debug mode (--debug)" in log and "not for production" in log
    assert "--workers 2 ignored" in log and "--blocking-threads 4 ignored" in log
    assert len(children_of(master)) == 1  # one worker

    path = "/debug/" + uuid.uuid4().hex[:8]
    request = Request(port, path)
    request.start()
    at = pane.wait_for("(Pdb) ")
    pane.type('p environ["PATH_INFO"]')
    at = pane.wait_for(repr(path), at)  # pdb's answer, not the typed command
    pane.type("c")
    response, error = request.result()
    assert error is None, error
    assert response.status == 200 and response.body == path.encode(), response

    # Stopped by pid like any server: a clean exit, the terminal as it was.
    os.kill(master, signal.SIGTERM)
    at = pane.wait_for("appserver exited with status 0", at)
    assert_terminal_sane(pane, at)


def test_ctrl_c_at_the_pdb_prompt_stops_gracefully(debug_server):
    pane, master, port = debug_server
    request = Request(port, "/graceful")
    request.start()
    at = pane.wait_for("(Pdb) ")
    pane.key("C-c")  # SIGINT to the terminal's foreground group: master and worker
    at = pane.wait_for("Interrupt received: stopping workers gracefully", at)
    # pdb still has the terminal: the request in it finishes, then the server exits.
    pane.type("c")
    response, error = request.result()
    assert error is None, error
    assert response.status == 200 and response.body == b"/graceful", response
    assert response.server_closes
    at = pane.wait_for("appserver exited with status 0", at)
    assert_terminal_sane(pane, at)


def test_second_ctrl_c_stops_now_and_gives_the_terminal_back(debug_server):
    pane, master, port = debug_server
    request = Request(port, "/abandoned")
    request.start()
    at = pane.wait_for("(Pdb) ")
    pane.key("C-c")
    at = pane.wait_for("stopping workers gracefully", at)
    pane.key("C-c")
    at = pane.wait_for("appserver exited with status 1", at)
    # The worker left while pdb's readline had the terminal without echo: the master put
    # the modes back.
    assert_terminal_sane(pane, at)
    response, error = request.result()
    assert response is None and error is not None
