"""`python3 -m appserver` (PYTHONPATH=<repo>/build/dev/python) accepts the same options as
the standalone binary and serves the same way."""

import json
import os
import signal

import pytest
import requests

from e2e_helpers import (
    APPS_DIR,
    HOST,
    assert_serves,
    free_port,
    http_get,
    pid_alive,
    run_cli,
    server_argv,
    wait_until,
)

pytestmark = pytest.mark.timeout(90)


def test_version_matches_binary():
    py = run_cli(["--version"], frontdoor="python")
    assert py.returncode == 0, py.stderr
    binary = run_cli(["--version"], frontdoor="binary")
    assert py.stdout.strip() == binary.stdout.strip()


def test_help():
    result = run_cli(["--help"], frontdoor="python")
    assert result.returncode == 0, result.stderr
    for option in ("--workers", "--blocking-threads", "--url-path-prefix", "--factory", "--env"):
        assert option in result.stdout


def test_bad_option():
    result = run_cli(["--interface", "wsgi", "--port", str(free_port()), "--workers", "zero", "wsgi_app:app"], frontdoor="python")
    assert not result.timed_out
    assert result.returncode != 0
    assert "workers" in result.stderr.lower()


def test_import_error():
    result = run_cli(server_argv(free_port(), "broken_app:app", ["--working-dir", str(APPS_DIR)]), frontdoor="python")
    assert not result.timed_out
    assert result.returncode != 0
    assert "Traceback" in result.stderr and "broken_app import failure marker 7f3a" in result.stderr


def test_serves_with_same_options(server_factory, token):
    server = server_factory.start(
        "wsgi_app:app",
        ["--workers", "2", "--blocking-threads", "2", "--url-path-prefix", "/py", "--env", "E2E_FROM_PY=yes"],
        frontdoor="python",
        probe="/py/hello",
    )
    assert_serves(server, "/py/hello")
    env = json.loads(http_get(server.port, "/py/environ/x").body)["environ"]
    assert env["SCRIPT_NAME"] == "/py" and env["PATH_INFO"] == "/environ/x"
    assert env["wsgi.multiprocess"] is True
    assert json.loads(http_get(server.port, "/py/osenv?key=E2E_FROM_PY").body)["value"] == "yes"
    wait_until(lambda: len(server.workers()) == 2, 20, "2 worker processes")
    r = requests.post(f"{server.url}/py/validate", data=b"abc", timeout=10)
    assert r.status_code == 200, r.text
    assert http_get(server.port, f"/py/error?token={token}").status == 500
    server.wait_for_log(f"RuntimeError: boom {token}")
    server.send_signal(signal.SIGTERM)
    assert server.wait_exit(30) == 0


def test_env_options(server_factory):
    port = free_port()
    server = server_factory.start(
        argv_override=["wsgi_app:app"],
        port=port,
        frontdoor="python",
        env={
            "APPSERVER_INTERFACE": "wsgi",
            "APPSERVER_HOST": HOST,
            "APPSERVER_PORT": str(port),
            "APPSERVER_WORKING_DIR": str(APPS_DIR),
            "APPSERVER_BLOCKING_THREADS": "1",
        },
    )
    env = json.loads(http_get(server.port, "/environ").body)["environ"]
    assert env["wsgi.multithread"] is False


def test_flask_app(server_factory):
    server = server_factory.start("flask_app:app", frontdoor="python", probe="/")
    r = requests.post(f"{server.url}/json", json={"x": 1}, timeout=10)
    assert r.json()["received"] == {"x": 1}


def test_sigint_exits_cleanly(server_factory):
    server = server_factory.start(frontdoor="python")
    assert_serves(server)
    server.send_signal(signal.SIGINT)
    assert server.wait_exit(30) == 0
    assert "KeyboardInterrupt" not in server.log()


def test_killed_worker_is_respawned(server_factory):
    server = server_factory.start(args=["--workers", "2"], frontdoor="python")
    workers = wait_until(lambda: (w := server.workers()) and len(w) == 2 and w, 20, "2 worker processes")
    os.kill(workers[0], signal.SIGKILL)
    wait_until(lambda: not pid_alive(workers[0]), 10, "the worker to die")
    assert_serves(server)
    wait_until(lambda: (w := server.workers()) and len(w) == 2 and workers[0] not in w, 20, "a replacement worker")
    for _ in range(10):
        assert_serves(server)
