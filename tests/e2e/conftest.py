"""Fixtures that start the real appserver process on a free loopback port and stop it by PID.

The server binary comes from $APPSERVER_BIN (default <repo>/build/dev/appserver); the Python
front door is `python3 -m appserver` with PYTHONPATH=$APPSERVER_PYTHONPATH (default
<repo>/build/dev/python). Each server's stderr goes to a file (server.log()) and is
attached to the report of a failing test.
"""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from e2e_helpers import (
    APPS_DIR,
    ISOLATED,
    REPO_ROOT,
    WHEEL_BUILD_TIMEOUT,
    STOP_TIMEOUT,
    ServerProcess,
    SetupError,
    child_env,
    free_port,
    frontdoor_command,
    server_argv,
)

DEFAULT_TEST_TIMEOUT = 60  # seconds per test (pytest-timeout), unless a test says otherwise


def pytest_configure(config):
    # Strict: any warning in the test process (e.g. an unclosed socket) is an error.
    config.addinivalue_line("filterwarnings", "error")


def pytest_collection_modifyitems(config, items):
    if not config.pluginmanager.hasplugin("timeout"):
        return
    for item in items:
        if item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(DEFAULT_TEST_TIMEOUT))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if not report.failed:
        return
    seen = set()
    for value in getattr(item, "funcargs", {}).values():
        servers = []
        if isinstance(value, ServerFactory) and value.per_test:
            servers = value.servers
        elif isinstance(value, ServerProcess):
            servers = [value]
        for server in servers:
            if id(server) in seen:
                continue
            seen.add(id(server))
            report.sections.append(
                (f"appserver {server.name} (pid {server.pid}) stderr tail", server.log_tail(80))
            )


def has_flag(args, flag: str) -> bool:
    return any(a == flag or a.startswith(flag + "=") for a in args)


class ServerFactory:
    """Starts servers for one test (or one module) and stops every one of them by PID."""

    _ids = itertools.count(1)

    def __init__(self, base_dir: Path, per_test: bool = True):
        self.base_dir = base_dir
        self.per_test = per_test
        self.servers: list[ServerProcess] = []

    def start(
        self,
        app: str | None = "wsgi_app:app",
        args: list[str] | None = None,
        *,
        env: dict[str, str | None] | None = None,
        frontdoor: str = "binary",
        cwd: Path | None = None,
        working_dir: Path | None = APPS_DIR,
        probe: str | None = "/hello",
        defaults: bool = True,
        wait: bool = True,
        port: int | None = None,
        argv_override: list[str] | None = None,
        command: list[str] | None = None,
    ) -> ServerProcess:
        """Start a server; by default --workers 1 --blocking-threads 4 --keep-alive-timeout 120
        --working-dir apps/.

        argv_override replaces all server options (port must then be passed in); command
        replaces the front door's command (an installed appserver, a venv's python)."""
        args = list(args or [])
        if defaults:
            if not has_flag(args, "--workers"):
                args += ["--workers", "1"]
            if not has_flag(args, "--blocking-threads"):
                args += ["--blocking-threads", "4"]
            if not has_flag(args, "--keep-alive-timeout"):
                # Far beyond CLOSE_TIMEOUT: a connection closed during a test was closed on
                # purpose (Connection: close, HTTP/1.0, bad request), never by the idle timer.
                args += ["--keep-alive-timeout", "120"]
        if working_dir is not None and not has_flag(args, "--working-dir"):
            args += ["--working-dir", str(working_dir)]
        prefix, door_env = (command, {}) if command is not None else frontdoor_command(frontdoor)

        last_error = None
        for _attempt in range(3):
            n = next(self._ids)
            name = f"server{n}"
            state_dir = self.base_dir / f"{name}-state"
            state_dir.mkdir(parents=True, exist_ok=True)
            chosen_port = port or free_port()
            if argv_override is not None:
                argv = prefix + argv_override
            else:
                argv = prefix + server_argv(chosen_port, app, args)
            full_env = child_env({**door_env, "E2E_STATE_DIR": str(state_dir), **(env or {})})
            server = ServerProcess(
                argv,
                full_env,
                cwd or APPS_DIR,
                chosen_port,
                self.base_dir,
                name,
                state_dir=state_dir,
            )
            self.servers.append(server)
            if not wait:
                return server
            try:
                server.wait_ready(probe=probe)
                return server
            except SetupError as e:
                server.stop(signal.SIGKILL, timeout=5)
                last_error = e
                # A port picked by free_port() can be taken by someone else before we bind.
                if port is None and "in use" in server.log().lower():
                    continue
                raise
        raise last_error  # type: ignore[misc]

    def stop_all(self) -> list[str]:
        problems = []
        for server in reversed(self.servers):
            was_running = server.alive()
            result = server.stop(signal.SIGTERM, STOP_TIMEOUT)
            if was_running and result.forced:
                problems.append(f"{server.name}: did not exit within {STOP_TIMEOUT}s of SIGTERM")
            if result.leftovers:
                problems.append(f"{server.name}: processes {result.leftovers} outlived the master")
        return problems


@pytest.fixture
def server_factory(tmp_path):
    factory = ServerFactory(tmp_path)
    yield factory
    problems = factory.stop_all()
    if problems:
        pytest.fail("server teardown: " + "; ".join(problems))


@pytest.fixture(scope="module")
def module_server_factory(tmp_path_factory):
    factory = ServerFactory(tmp_path_factory.mktemp("servers"), per_test=False)
    yield factory
    problems = factory.stop_all()
    if problems:
        pytest.fail("server teardown: " + "; ".join(problems))


@pytest.fixture(scope="module")
def app_server(module_server_factory) -> ServerProcess:
    """The PEP 3333 test app on one worker with four blocking threads, shared by a module."""
    return module_server_factory.start("wsgi_app:app", ["--workers", "1", "--blocking-threads", "4"])


@pytest.fixture
def token() -> str:
    """A unique token per test, used to name markers the app writes into its state dir."""
    return "t" + uuid.uuid4().hex[:16]


@pytest.fixture(scope="session")
def wheel() -> Path:
    """The wheel under test: $APPSERVER_WHEEL, or what `bash scripts/wheel` builds."""
    given = os.environ.get("APPSERVER_WHEEL")
    if given:
        path = Path(given).absolute()
        if not path.is_file():
            raise SetupError(f"APPSERVER_WHEEL={given}: no such file")
        return path
    result = subprocess.run(
        ["bash", "scripts/wheel"],
        cwd=REPO_ROOT,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=WHEEL_BUILD_TIMEOUT,
    )
    if result.returncode != 0:
        raise SetupError(f"scripts/wheel failed ({result.returncode}):\n{result.stdout}\n{result.stderr[-6000:]}")
    return REPO_ROOT / result.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="session")
def wheel_venv(wheel, tmp_path_factory) -> Path:
    """A fresh virtualenv (no system site-packages) with the wheel and Django installed by pip."""
    path = tmp_path_factory.mktemp("wheel") / "venv"
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", str(path)], check=True, timeout=300, env=child_env(ISOLATED))
    result = subprocess.run(
        [str(path / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check",
         str(wheel), "Django>=5.2,<6"],
        env=child_env({**ISOLATED, "PIP_REQUIRE_VIRTUALENV": None}),
        cwd=path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return path
