"""Coming from uWSGI, gunicorn and Granian: --ini (a uWSGI ini file), --print-config, --bind,
peers' option names answered with appserver's, sizes with units, and --version."""

import json
import re
import shlex
import signal
import sys

import pytest

from e2e_helpers import (
    APPS_DIR,
    HOST,
    RawHTTP,
    assert_serves,
    free_port,
    http_get,
    port_accepts,
    run_cli,
    wait_until,
)

pytestmark = pytest.mark.timeout(90)


def write_ini(tmp_path, body, name="uwsgi.ini"):
    path = tmp_path / name
    path.write_text(body)
    return path


def assert_usage_error(result, *needles):
    assert not result.timed_out, "the server kept running instead of exiting"
    assert result.returncode == 2, f"exit code {result.returncode}\nstderr: {result.stderr}"
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one error line:\n{result.stderr}"
    for needle in needles:
        assert needle in lines[0], f"{needle!r} not in: {lines[0]}"
    return lines[0]


# ---------------------------------------------------------------- --ini


def test_uwsgi_ini_serves_the_app(server_factory, tmp_path):
    """A uWSGI user changes one word: `uwsgi --ini uwsgi.ini` becomes `appserver --ini ...`."""
    port = free_port()
    ini = write_ini(
        tmp_path,
        f"""[uwsgi]
# the usual Django-style file
chdir = {APPS_DIR}
wsgi-file = wsgi_app.py
callable = app
master = true
processes = 2
threads = 3
http-socket = {HOST}:{port}
harakiri = 30
max-requests = 5000
buffer-size = 32768
env = E2E_FROM_INI=%n
env = E2E_SPACES=hello world
pidfile = {tmp_path}/%n.pid
die-on-term = true
enable-threads = true
vacuum = true
""",
    )
    server = server_factory.start(argv_override=["--ini", str(ini)], port=port, cwd=tmp_path)
    assert_serves(server)
    info = json.loads(http_get(port, "/environ").body)
    assert info["cwd"] == str(APPS_DIR)
    assert info["environ"]["wsgi.multithread"] is True
    assert info["environ"]["wsgi.multiprocess"] is True
    assert json.loads(http_get(port, "/osenv?key=E2E_FROM_INI").body)["value"] == "uwsgi"
    assert json.loads(http_get(port, "/osenv?key=E2E_SPACES").body)["value"] == "hello world"
    wait_until(lambda: len(server.workers()) == 2, 20, "2 worker processes")
    assert (tmp_path / "uwsgi.pid").read_text() == f"{server.pid}\n"
    assert "warning" not in server.log(), server.log()


def test_command_line_overrides_the_ini_file(server_factory, tmp_path):
    port = free_port()
    ini = write_ini(
        tmp_path,
        f"[uwsgi]\nmodule = wsgi_app:app\nhttp-socket = {HOST}:1\nprocesses = 3\nchdir = {APPS_DIR}\n",
    )
    server = server_factory.start(
        argv_override=["--ini", str(ini), "--port", str(port), "--workers", "1", "wsgi_app:create_app", "--factory"],
        port=port,
    )
    resp = http_get(port, "/hello")
    assert resp.status == 200 and resp.header("X-Factory") == "1"
    wait_until(lambda: len(server.workers()) == 1, 20, "1 worker process")


@pytest.mark.parametrize(
    "line, needle",
    [
        ("socket = 127.0.0.1:3031", "socket = 127.0.0.1:3031: appserver speaks HTTP only"),
        ("https = :8443,cert.pem,key.pem", "https = :8443,cert.pem,key.pem: appserver has no TLS yet"),
        ("uid = nobody-e2e", "uid = nobody-e2e: appserver does not switch users"),
        ("touch-reload = /tmp/reload", "touch-reload = /tmp/reload: appserver reloads on SIGHUP"),
    ],
)
def test_refused_ini_option_exits_2_naming_it(tmp_path, line, needle):
    ini = write_ini(tmp_path, f"[uwsgi]\nmodule = wsgi_app:app\nprocesses = 1\n{line}\n")
    result = run_cli(["--ini", str(ini), "--port", str(free_port())])
    error = assert_usage_error(result, f"{ini} line 4: {needle}")
    assert error.startswith("appserver: error: ")


def test_bad_ini_value_names_the_file_and_line(tmp_path):
    ini = write_ini(tmp_path, "[uwsgi]\nmodule = wsgi_app:app\nprocesses = four\n")
    result = run_cli(["--ini", str(ini)])
    assert_usage_error(result, "--workers: value 'four' is not an integer", f"(from {ini} line 3: processes)")


def test_missing_ini_file(tmp_path):
    result = run_cli(["--ini", str(tmp_path / "nope.ini")])
    assert_usage_error(result, "--ini: cannot read", "nope.ini")


def test_ignored_ini_option_warns_once(server_factory, tmp_path):
    port = free_port()
    ini = write_ini(
        tmp_path,
        f"[uwsgi]\nmodule = wsgi_app:app\nchdir = {APPS_DIR}\nhttp-socket = {HOST}:{port}\n"
        "thunder-lock = true\nthunder-lock = true\ncheaper = 1\n",
    )
    server = server_factory.start(argv_override=["--ini", str(ini)], port=port)
    assert_serves(server)
    log = server.log()
    assert log.count("thunder-lock") == 1, log
    assert re.search(r"\[warning\] .*line 5: thunder-lock = true: .*; ignored", log), log
    assert log.count("cheaper = 1") == 1, log


def test_ini_section_after_a_colon(server_factory, tmp_path):
    port = free_port()
    ini = write_ini(
        tmp_path,
        f"[uwsgi]\nmodule = no_such_module_e2e\n[e2e]\nmodule = wsgi_app:app\nchdir = {APPS_DIR}\n"
        f"http-socket = {HOST}:{port}\n",
    )
    server = server_factory.start(argv_override=["--ini", f"{ini}:e2e"], port=port)
    assert_serves(server)


# ---------------------------------------------------------------- --print-config


def test_print_config_shows_the_effective_settings_and_exits(tmp_path):
    port = free_port()
    ini = write_ini(
        tmp_path,
        f"[uwsgi]\nmodule = mysite.wsgi\nprocesses = 3\nhttp-socket = {HOST}:{port}\n"
        "reload-on-rss = 512\nthunder-lock = true\nenv = GREETING=hello world\n",
    )
    result = run_cli(
        ["--ini", str(ini), "--threads", "4", "--max-body-size", "10M", "--print-config"],
        env={"APPSERVER_WORKERS": "5"},
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "  --workers=5 \\" in lines  # the environment wins over the file
    assert "  --blocking-threads=4 \\" in lines  # the command line (--threads is the alias)
    assert f"  --port={port} \\" in lines
    assert "  --workers-max-rss=512 \\" in lines
    assert "  --max-body-size=10M \\" in lines
    assert "  --env='GREETING=hello world' \\" in lines
    assert lines[-1] == "  mysite.wsgi:application"
    assert "thunder-lock" in result.stderr and "warning" in result.stderr
    assert not port_accepts(port), "--print-config started a server"

    # What it prints is a command line: run again, it prints the same settings.
    words = shlex.split(result.stdout.replace("\\\n", " "), comments=True)  # "\<newline>": one line
    assert words[0] == "appserver"
    again = run_cli(words[1:] + ["--print-config"])
    assert again.returncode == 0, again.stderr
    assert again.stdout.splitlines()[1:] == lines[1:]


def test_print_config_needs_a_valid_configuration():
    result = run_cli(["--workers", "0", "--print-config", "wsgi_app:app"])
    assert_usage_error(result, "--workers: value '0' must be at least 1")


# ---------------------------------------------------------------- --bind


def test_bind_host_and_port(server_factory):
    port = free_port()
    server = server_factory.start(
        argv_override=["--bind", f"{HOST}:{port}", "--working-dir", str(APPS_DIR), "wsgi_app:app"], port=port
    )
    assert_serves(server)


def test_bind_unix_socket(server_factory, tmp_path):
    path = tmp_path / "bind.sock"
    server = server_factory.start(
        argv_override=["--bind", f"unix:{path}", "--working-dir", str(APPS_DIR), "wsgi_app:app"], wait=False
    )

    def answers():
        assert server.alive(), f"server exited:\n{server.log_tail()}"
        try:
            with RawHTTP(0, unix_path=str(path)) as c:
                return c.request("GET", "/hello").status == 200
        except OSError:
            return False

    wait_until(answers, 30, "the server to answer on the unix socket")


def test_bind_with_port_is_refused():
    result = run_cli(["--bind", "127.0.0.1:8000", "--port", "9000", "wsgi_app:app"])
    assert_usage_error(result, "--bind and --port both say where to listen")


def test_bind_ipv6_needs_brackets():
    result = run_cli(["--bind", "::1:8000", "wsgi_app:app"])
    assert_usage_error(result, "--bind: value '::1:8000' looks like an IPv6 address: put it in brackets")


# ---------------------------------------------------------------- peers' names


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--processes", "4"], "unknown option '--processes'; did you mean --workers? (uWSGI's --processes)"),
        (["--timeout", "30"], "unknown option '--timeout'; did you mean --request-timeout? (gunicorn's --timeout"),
        (["-w", "4"], "unknown option '-w'; did you mean --workers? (gunicorn's -w)"),
        (["--harakiri", "30"], "did you mean --request-timeout? (uWSGI's --harakiri"),
        (["--backpressure", "64"], "did you mean --request-queue-size? (Granian's --backpressure"),
        (["--worker-class", "gevent"], "gunicorn's --worker-class has no equivalent: "),
        (["--worker", "2"], "unknown option '--worker'; did you mean --workers?"),
    ],
    ids=lambda v: v[0] if isinstance(v, list) else None,
)
def test_peers_option_names_get_appservers(args, needle):
    result = run_cli(args + ["wsgi_app:app"])
    assert_usage_error(result, needle)


def test_threads_is_appservers_own_alias():
    """--threads, as gunicorn and uWSGI spell it, is accepted as --blocking-threads."""
    result = run_cli(["--threads", "6", "--print-config", "wsgi_app:app"])
    assert result.returncode == 0, result.stderr
    assert "  --blocking-threads=6 \\" in result.stdout.splitlines()


# ---------------------------------------------------------------- sizes


def test_size_with_unit(server_factory):
    server = server_factory.start(args=["--max-body-size", "1K"])
    with RawHTTP(server.port) as c:
        assert c.request("POST", "/echo", body=b"a" * 1024).status == 200
    with RawHTTP(server.port) as c:
        assert c.request("POST", "/echo", body=b"a" * 1025).status == 413


def test_ambiguous_size_unit_is_refused():
    result = run_cli(["--max-body-size", "10MB", "wsgi_app:app"])
    assert_usage_error(result, "--max-body-size: value '10MB' has an ambiguous unit")


# ---------------------------------------------------------------- --version


@pytest.mark.parametrize("frontdoor", ["binary", "python"])
def test_version_lists_python_and_libraries(frontdoor):
    result = run_cli(["--version"], frontdoor=frontdoor)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    names = [line.split(" ", 1)[0] for line in lines]
    assert names == ["appserver", "Python", "Boost", "llhttp", "pybind11", "spdlog", "fmt", "prometheus-cpp", "CLI11"]
    for line in lines:
        assert re.fullmatch(r"[A-Za-z0-9+-]+ \d+\.\d+\.\S+", line), line
    if frontdoor == "python":
        # The extension module reports the interpreter that loaded it.
        assert lines[1] == "Python " + sys.version.split()[0]


def test_reload_reads_the_ini_again_and_a_broken_one_is_not_fatal(server_factory, tmp_path):
    """Default import mode: SIGHUP re-executes the master, which reads the file again (as
    uWSGI's reload does); a file that no longer reads abandons the reload, it does not stop
    the server."""
    port = free_port()
    base = f"[uwsgi]\nmodule = wsgi_app:app\nchdir = {APPS_DIR}\nhttp-socket = {HOST}:{port}\n"
    ini = write_ini(tmp_path, base + "env = E2E_RELOADED=before\n")
    server = server_factory.start(argv_override=["--ini", str(ini)], port=port)
    assert json.loads(http_get(port, "/osenv?key=E2E_RELOADED").body)["value"] == "before"

    ini.write_text(base + "processes = many\n")
    server.send_signal(signal.SIGHUP)
    server.wait_for_log("reload abandoned", timeout=30)
    assert "--workers: value 'many' is not an integer" in server.log()
    assert_serves(server)

    ini.write_text(base + "env = E2E_RELOADED=after\n")
    server.send_signal(signal.SIGHUP)
    server.wait_for_log("reload complete", timeout=60)
    assert json.loads(http_get(port, "/osenv?key=E2E_RELOADED").body)["value"] == "after"
