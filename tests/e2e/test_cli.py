"""Command line and environment: --version/--help, option errors, APPSERVER_* variables,
app loading (import errors, --factory, --working-dir, --env)."""

import json
import os
import stat
import re
import socket
import subprocess

import pytest

from e2e_helpers import (
    APPS_DIR,
    HOST,
    RawHTTP,
    assert_serves,
    child_env,
    free_port,
    frontdoor_command,
    http_get,
    run_cli,
    server_argv,
    wait_until,
)

pytestmark = pytest.mark.timeout(90)

ALL_OPTIONS = [
    "--interface",
    "--host",
    "--port",
    "--workers",
    "--pid-file",
    "--blocking-threads",
    "--lazy-apps",
    "--backlog",
    "--request-queue-size",
    "--working-dir",
    "--env",
    "--factory",
    "--url-path-prefix",
    "--log-level",
    "--keep-alive-timeout",
    "--max-header-size",
    "--version",
    "--help",
]


def environ_of(server, target="/environ"):
    resp = http_get(server.port, target)
    assert resp.status == 200, resp
    return json.loads(resp.body)


@pytest.fixture
def occupied_port():
    """A port we hold bound and listening: a server that binds before validating its
    configuration reports "address in use" instead of the real problem."""
    with socket.socket() as s:
        s.bind((HOST, 0))
        s.listen(1)
        yield s.getsockname()[1]


def assert_cli_error(result, *needles, one_line=True):
    assert not result.timed_out, "the server kept running instead of exiting with an error"
    assert result.returncode not in (0, None), f"exit code {result.returncode}\nstderr: {result.stderr}"
    lower = result.stderr.lower()
    for needle in needles:
        assert needle.lower() in lower, f"stderr does not name {needle!r}:\n{result.stderr}"
    if one_line:
        lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
        assert len(lines) == 1, f"expected a one-line error, got {len(lines)} lines:\n{result.stderr}"


def test_version():
    result = run_cli(["--version"])
    assert result.returncode == 0, result.stderr
    assert re.search(r"\d+\.\d+(\.\d+)?", result.stdout), f"no version number on stdout: {result.stdout!r}"


def test_help_lists_every_option():
    result = run_cli(["--help"])
    assert result.returncode == 0, result.stderr
    for option in ALL_OPTIONS:
        assert option in result.stdout, f"--help does not mention {option}"


@pytest.mark.parametrize("flag", ["--help", "--version"])
@pytest.mark.parametrize("frontdoor", ["binary", "python"])
def test_output_that_cannot_be_written_is_an_error(flag, frontdoor):
    """--help > /dev/full must not report success (a truncated help is a failure)."""
    prefix, door_env = frontdoor_command(frontdoor)
    with open("/dev/full", "w") as full:
        proc = subprocess.run(prefix + [flag], stdout=full, stderr=subprocess.PIPE,
                              env=child_env(door_env), timeout=30, text=True)
    assert proc.returncode != 0
    assert "cannot write to standard output" in proc.stderr


BAD_OPTIONS = [
    (["--bogus-flag"], "bogus-flag"),
    (["--workers", "abc"], "workers"),
    (["--workers", "0"], "workers"),
    (["--workers", "-2"], "workers"),
    (["--blocking-threads", "0"], "blocking-threads"),
    (["--blocking-threads", "many"], "blocking-threads"),
    (["--backlog", "x"], "backlog"),
    (["--request-queue-size", "-1"], "request-queue-size"),
    (["--log-level", "loud"], "log-level"),
    (["--interface", "cgi"], "interface"),
    (["--keep-alive-timeout", "soon"], "keep-alive-timeout"),
    (["--max-header-size", "big"], "max-header-size"),
    (["--env", "NO_EQUALS_SIGN"], "env"),
    (["--working-dir", "/nonexistent/appserver-e2e-dir"], "working-dir"),
    (["--url-path-prefix", "no-leading-slash"], "url-path-prefix"),
]


@pytest.mark.parametrize("extra, needle", BAD_OPTIONS, ids=[" ".join(a) for a, _ in BAD_OPTIONS])
def test_bad_option_is_a_one_line_error_before_binding(occupied_port, extra, needle):
    argv = ["--interface", "wsgi", "--host", HOST, "--port", str(occupied_port)] + extra + ["wsgi_app:app"]
    result = run_cli(argv)
    assert_cli_error(result, needle)


@pytest.mark.parametrize("port", ["70000", "http", "-1"])
def test_bad_port(port):
    result = run_cli(["--interface", "wsgi", "--host", HOST, "--port", port, "wsgi_app:app"])
    assert_cli_error(result, "port")


def test_missing_app_argument():
    result = run_cli(["--interface", "wsgi", "--host", HOST, "--port", str(free_port())])
    assert not result.timed_out
    assert result.returncode not in (0, None)
    assert result.stderr.strip(), "an error message is expected on stderr"


@pytest.mark.parametrize(
    "variable, value, needle",
    [
        ("APPSERVER_WORKERS", "abc", "workers"),
        ("APPSERVER_BLOCKING_THREADS", "-3", "blocking_threads"),
        ("APPSERVER_LOG_LEVEL", "chatty", "log_level"),
    ],
)
def test_bad_env_option_is_an_error(occupied_port, variable, value, needle):
    argv = ["--interface", "wsgi", "--host", HOST, "--port", str(occupied_port), "wsgi_app:app"]
    result = run_cli(argv, env={variable: value})
    assert_cli_error(result, one_line=True)
    lower = result.stderr.lower()
    assert needle in lower or needle.replace("_", "-") in lower, f"stderr does not name {variable}:\n{result.stderr}"


# ---------------------------------------------------------------- app loading errors


def app_argv(app):
    return server_argv(free_port(), app, ["--working-dir", str(APPS_DIR)])


def test_module_not_found():
    result = run_cli(app_argv("no_such_module_e2e:app"))
    assert_cli_error(result, "no_such_module_e2e", one_line=False)


def test_module_raising_on_import_prints_traceback():
    result = run_cli(app_argv("broken_app:app"))
    assert_cli_error(result, "broken_app import failure marker 7f3a", "Traceback", one_line=False)


def test_bad_host_is_reported_before_the_app_is_imported():
    result = run_cli(app_argv("broken_app:app") + ["--host", "no such host"])
    assert_cli_error(result, "--host: cannot resolve 'no such host'")
    assert "broken_app import failure" not in result.stderr


def test_host_with_a_port_gets_a_hint():
    result = run_cli(app_argv("wsgi_app:app") + ["--host", "127.0.0.1:9000"])
    assert_cli_error(result, "the port goes in --port")


def test_module_calling_sys_exit_on_import_is_an_error():
    """PyErr_Print would quietly exit with the module's code (0 here): a supervisor would see
    a clean stop of a server that never served."""
    result = run_cli(app_argv("exiting_app:app"))
    assert_cli_error(result, "importing module 'exiting_app' called sys.exit(0)")
    assert result.returncode == 1


def test_missing_attribute():
    result = run_cli(app_argv("wsgi_app:no_such_attribute"))
    assert_cli_error(result, "no_such_attribute", one_line=False)


def test_attribute_not_callable():
    result = run_cli(app_argv("wsgi_app:NOT_CALLABLE"))
    assert_cli_error(result, "NOT_CALLABLE", one_line=False)


def test_factory_returning_a_non_callable():
    result = run_cli(app_argv("wsgi_app:NOT_CALLABLE.__class__") + ["--factory"])  # int() -> 0
    assert_cli_error(result, "returned an object of type int, not a WSGI callable", one_line=False)


def test_factory_that_does_not_exist():
    result = run_cli(app_argv("wsgi_app:no_factory") + ["--factory"])
    assert_cli_error(result, "no_factory", one_line=False)


# ---------------------------------------------------------------- options that work


def test_options_from_environment(server_factory):
    port = free_port()
    env = {
        "APPSERVER_INTERFACE": "wsgi",
        "APPSERVER_HOST": HOST,
        "APPSERVER_PORT": str(port),
        "APPSERVER_WORKERS": "2",
        "APPSERVER_BLOCKING_THREADS": "3",
        "APPSERVER_URL_PATH_PREFIX": "/envprefix",
        "APPSERVER_WORKING_DIR": str(APPS_DIR),
    }
    server = server_factory.start(
        argv_override=["wsgi_app:app"], port=port, env=env, cwd=APPS_DIR.parent, probe="/envprefix/hello"
    )
    info = environ_of(server, "/envprefix/environ")
    assert info["environ"]["SCRIPT_NAME"] == "/envprefix"
    assert info["environ"]["wsgi.multithread"] is True
    assert info["environ"]["wsgi.multiprocess"] is True
    wait_until(lambda: len(server.workers()) == 2, 20, "2 worker processes")


def test_command_line_overrides_environment(server_factory):
    server = server_factory.start(
        args=["--url-path-prefix", "/fromcli"],
        env={"APPSERVER_URL_PATH_PREFIX": "/fromenv"},
        probe="/fromcli/hello",
    )
    assert environ_of(server, "/fromcli/environ")["environ"]["SCRIPT_NAME"] == "/fromcli"


def test_env_option_sets_process_environment(server_factory):
    server = server_factory.start(args=["--env", "E2E_FOO=bar", "--env", "E2E_BAZ=a=b c"])
    assert json.loads(http_get(server.port, "/osenv?key=E2E_FOO").body)["value"] == "bar"
    assert json.loads(http_get(server.port, "/osenv?key=E2E_BAZ").body)["value"] == "a=b c"


def test_factory(server_factory):
    server = server_factory.start("wsgi_app:create_app", ["--factory"])
    resp = http_get(server.port, "/hello")
    assert resp.status == 200
    assert resp.header("X-Factory") == "1"


def test_unknown_appserver_variable_is_warned_about(server_factory):
    server = server_factory.start(env={"APPSERVER_WORKER": "4"})  # a typo of APPSERVER_WORKERS
    server.wait_for_log("environment variable APPSERVER_WORKER is not an option's variable; ignored")


def test_module_only_target_serves_its_application(server_factory):
    server = server_factory.start("wsgi_app")  # means wsgi_app:application, as in gunicorn
    assert http_get(server.port, "/hello").body == b"Hello, world!\n"


def test_empty_assigned_value_does_not_swallow_the_target(server_factory):
    server = server_factory.start("wsgi_app:app", ["--url-path-prefix="])
    assert environ_of(server)["environ"]["SCRIPT_NAME"] == ""


def test_working_dir_option(server_factory, tmp_path):
    server = server_factory.start(cwd=tmp_path)  # --working-dir apps/ is passed by default
    assert environ_of(server)["cwd"] == str(APPS_DIR)


def test_default_working_dir_is_current_directory(server_factory):
    server = server_factory.start(cwd=APPS_DIR, working_dir=None)
    assert environ_of(server)["cwd"] == str(APPS_DIR)


@pytest.mark.parametrize("level", ["debug", "info", "warning", "error"])
def test_log_levels_start_and_keep_app_tracebacks(server_factory, level, token):
    server = server_factory.start(args=["--log-level", level])
    assert_serves(server)
    assert http_get(server.port, f"/error?token={token}").status == 500
    server.wait_for_log(f"RuntimeError: boom {token}")


def test_backlog_and_queue_options_accepted(server_factory):
    server = server_factory.start(args=["--backlog", "2048", "--request-queue-size", "64", "--keep-alive-timeout", "5"])
    assert_serves(server)


def test_logs_go_to_stderr(server_factory, token):
    server = server_factory.start()
    http_get(server.port, f"/errors-log?msg={token}")
    server.wait_for_log(token)
    assert token not in server.stdout()


def test_env_list_and_boolean_variables(server_factory):
    server = server_factory.start(
        "wsgi_app:create_app",
        env={"APPSERVER_FACTORY": "true", "APPSERVER_ENV": "E2E_ONE=1 E2E_TWO=two"},
    )
    resp = http_get(server.port, "/osenv?key=E2E_TWO")
    assert resp.header("X-Factory") == "1"
    assert json.loads(resp.body)["value"] == "two"
    assert json.loads(http_get(server.port, "/osenv?key=E2E_ONE").body)["value"] == "1"


def test_bracketed_ipv6_host(server_factory):
    """--host [::1], the URI spelling of an IPv6 address, is ::1."""
    port = free_port()
    server = server_factory.start(
        argv_override=["--host", "[::1]", "--port", str(port), "--working-dir", str(APPS_DIR), "wsgi_app:app"],
        wait=False,
    )

    def answers():
        assert server.alive(), f"server exited:\n{server.log_tail()}"
        try:
            with socket.create_connection(("::1", port), timeout=5) as s:
                s.sendall(b"GET /hello HTTP/1.1\r\nHost: [::1]\r\nConnection: close\r\n\r\n")
                return s.recv(100).startswith(b"HTTP/1.1 200")
        except OSError:
            return False

    wait_until(answers, 30, "the server to answer on [::1]")


@pytest.mark.parametrize("mode", [None, "660", "0777"])
def test_unix_domain_socket(server_factory, tmp_path, mode):
    path = tmp_path / "appserver.sock"
    extra = [] if mode is None else ["--uds-permissions", mode]
    server = server_factory.start(
        argv_override=["--uds", str(path), *extra, "--working-dir", str(APPS_DIR), "wsgi_app:app"], wait=False
    )

    def connectable():
        assert server.alive(), f"server exited:\n{server.log_tail()}"
        if not path.exists():
            return False
        try:
            RawHTTP(0, unix_path=str(path)).close()
            return True
        except OSError:
            return False

    wait_until(connectable, 30, "the unix socket to accept connections")
    with RawHTTP(0, unix_path=str(path)) as c:
        resp = c.request("GET", "/environ/uds")
    assert resp.status == 200
    assert json.loads(resp.body)["environ"]["PATH_INFO"] == "/environ/uds"
    assert json.loads(resp.body)["environ"]["SERVER_PORT"] == "80"  # PEP 3333: never empty
    if mode is not None:
        assert stat.S_IMODE(path.stat().st_mode) == int(mode, 8)


# ---------------------------------------------------------------- --pid-file


def test_pid_file_names_the_master_while_it_runs(server_factory, tmp_path):
    pid_file = tmp_path / "app.pid"
    server = server_factory.start(args=["--pid-file", str(pid_file)])
    assert pid_file.read_text() == f"{server.pid}\n"
    assert server.stop().returncode == 0
    assert not pid_file.exists(), "the pid file outlived the server"


def test_pid_file_of_a_running_process_is_refused(tmp_path):
    pid_file = tmp_path / "app.pid"
    pid_file.write_text(f"{os.getpid()}\n")  # this test process: alive
    result = run_cli(app_argv("wsgi_app:app") + ["--pid-file", str(pid_file)])
    assert_cli_error(result, "--pid-file", "still running")
    assert result.returncode == 1
    assert pid_file.read_text() == f"{os.getpid()}\n", "another server's pid file was touched"


def test_stale_pid_file_is_replaced(server_factory, tmp_path):
    gone = subprocess.Popen(["true"])
    gone.wait()  # its pid names no process now
    pid_file = tmp_path / "app.pid"
    pid_file.write_text(f"{gone.pid}\n")
    server = server_factory.start(args=["--pid-file", str(pid_file)])
    assert pid_file.read_text() == f"{server.pid}\n"


def test_unwritable_pid_file_is_an_error_before_serving(tmp_path):
    result = run_cli(app_argv("wsgi_app:app") + ["--pid-file", str(tmp_path / "missing-dir" / "app.pid")])
    assert_cli_error(result, "--pid-file", "cannot write")
    assert result.returncode == 1
