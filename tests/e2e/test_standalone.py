"""The standalone executable in an image built from source: it finds its libpython relative
to itself (no absolute path of the build machine), imports from a virtualenv (--virtualenv,
or VIRTUAL_ENV), and an import error says which Python and which sys.path were used."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from e2e_helpers import (
    APPS_DIR,
    binary_path,
    free_port,
    http_get,
    python_package_dir,
    run_cli,
    server_argv,
)

pytestmark = pytest.mark.timeout(120)

VENV_ONLY = "e2e_venv_only_module"


def dynamic_section(path: Path) -> str:
    result = subprocess.run(["readelf", "-d", str(path)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    return result.stdout


def runpath_entries(path: Path) -> list[str]:
    m = re.search(r"\((?:RUNPATH|RPATH)\)\s+Library r(?:un)?path: \[(.*)\]", dynamic_section(path))
    return [e for e in m.group(1).split(":") if e] if m else []


def resolved_libpython(path: Path) -> Path:
    """Where the dynamic loader finds the executable's libpython (ldd)."""
    result = subprocess.run(["ldd", str(path)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    for line in result.stdout.splitlines():
        if "libpython" in line:
            target = line.split("=>")[1].split("(")[0].strip()
            assert target and target != "not found", line
            return Path(target)
    raise AssertionError(f"no libpython among the executable's libraries:\n{result.stdout}")


def python_libdir() -> Path:
    return Path(sysconfig.get_config_var("LIBDIR"))


def on_default_library_path(directory: Path) -> bool:
    return str(directory).rstrip("/") in {"/lib", "/usr/lib", "/lib64", "/usr/lib64"} or str(directory).rstrip(
        "/"
    ).endswith("-linux-gnu")


# ------------------------------------------------------------------ libpython


def test_libpython_is_found_relative_to_the_executable():
    binary = binary_path()
    entries = runpath_entries(binary)
    assert all(e.startswith("$ORIGIN") for e in entries), f"absolute RUNPATH entries: {entries}"
    libdir = python_libdir()
    if on_default_library_path(libdir):
        assert entries == []
    else:
        assert entries, "libpython is outside the default path: the executable needs a $ORIGIN RUNPATH"
    # And it is this Python's libpython, not another one the loader's cache knows of (Debian's).
    soname = sysconfig.get_config_var("INSTSONAME")
    assert resolved_libpython(binary).resolve() == (libdir / soname).resolve()


def test_installed_beside_a_python_prefix(tmp_path, server_factory):
    """cmake --install into a prefix whose lib/ holds libpython (what a python:3.x image has in
    /usr/local): the installed executable loads that one and serves."""
    build_dir = binary_path().parent
    if not (build_dir / "CMakeCache.txt").is_file():
        pytest.skip(f"{binary_path()} is not in a CMake build tree to install from")
    libdir = python_libdir()
    if on_default_library_path(libdir):
        pytest.skip("this Python's libpython is on the default library path: no RUNPATH to check")
    prefix = tmp_path / "prefix"
    result = subprocess.run(
        ["cmake", "--install", str(build_dir), "--prefix", str(prefix)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
    installed = prefix / "bin" / "appserver"
    assert runpath_entries(installed) == ["$ORIGIN/../lib"]
    soname = sysconfig.get_config_var("INSTSONAME")
    (prefix / "lib").mkdir(exist_ok=True)
    (prefix / "lib" / soname).symlink_to(libdir / soname)
    assert resolved_libpython(installed) == prefix / "bin" / ".." / "lib" / soname
    server = server_factory.start(command=[str(installed)])
    assert http_get(server.port, "/hello").body == b"Hello, world!\n"


# ------------------------------------------------------------------ virtualenv


@pytest.fixture(scope="module")
def venv(tmp_path_factory) -> Path:
    """A virtualenv of the Python appserver was built with, holding a module nothing else has."""
    path = tmp_path_factory.mktemp("standalone") / "venv"
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", "--without-pip", str(path)], check=True, timeout=120)
    purelib = subprocess.run(
        [str(path / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout.strip()
    Path(purelib, f"{VENV_ONLY}.py").write_text('VALUE = "only-in-the-venv"\n')
    return path


def assert_runs_in(server, venv: Path):
    info = json.loads(http_get(server.port, "/").body)
    assert Path(info["prefix"]) == venv
    assert Path(info["executable"]) == venv / "bin" / "python"
    assert info["value"] == "only-in-the-venv"
    # sys.executable is a real interpreter, in the same environment.
    assert info["child"] == f"only-in-the-venv {venv}", info["child_error"]
    return info


def test_virtualenv_option(server_factory, venv):
    server = server_factory.start("venv_app:application", ["--virtualenv", str(venv)], env={"VIRTUAL_ENV": None}, probe="/")
    info = assert_runs_in(server, venv)
    assert Path(info["base_prefix"]) == Path(sys.base_prefix)


def test_activated_virtualenv(server_factory, venv):
    server = server_factory.start("venv_app:application", env={"VIRTUAL_ENV": str(venv)}, probe="/")
    assert_runs_in(server, venv)


def test_virtualenv_option_wins_over_virtual_env(server_factory, venv, tmp_path):
    other = tmp_path / "other"
    subprocess.run([getattr(sys, "_base_executable", sys.executable), "-m", "venv", "--without-pip", str(other)],
                   check=True, timeout=120)
    server = server_factory.start(
        "venv_app:application", ["--virtualenv", str(venv)], env={"VIRTUAL_ENV": str(other)}, probe="/"
    )
    assert_runs_in(server, venv)


def test_reload_keeps_the_virtualenv(server_factory, venv):
    """SIGHUP re-executes the master (same command line): the new image is in the venv too."""
    server = server_factory.start("venv_app:application", ["--virtualenv", str(venv)], env={"VIRTUAL_ENV": None}, probe="/")
    before = server.workers()
    server.send_signal(signal.SIGHUP)
    server.wait_for_log("reload complete", timeout=60)
    assert set(server.workers()).isdisjoint(before)
    assert_runs_in(server, venv)


def test_without_the_virtualenv_the_import_error_names_python_and_sys_path():
    result = run_cli(
        server_argv(free_port(), "venv_app:application", ["--working-dir", str(APPS_DIR)]),
        env={"VIRTUAL_ENV": None},
    )
    assert not result.timed_out
    assert result.returncode == 1, result.stderr
    assert f"No module named '{VENV_ONLY}'" in result.stderr  # the traceback
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith("appserver: error: cannot import module 'venv_app'"), line
    version = ".".join(map(str, sys.version_info[:3]))
    assert f"Python {version}" in line
    assert f"sys.prefix {sys.base_prefix}" in line
    assert "sys.path = [" in line and repr(str(APPS_DIR)) in line


def test_a_module_that_does_not_exist_names_sys_path():
    result = run_cli(server_argv(free_port(), "no_such_module_e2e:app", ["--working-dir", str(APPS_DIR)]))
    assert result.returncode == 1, result.stderr
    assert "No module named 'no_such_module_e2e'" in result.stderr
    line = result.stderr.strip().splitlines()[-1]
    assert "cannot import module 'no_such_module_e2e'" in line
    assert "sys.path = [" in line and repr(str(APPS_DIR)) in line


def test_a_virtualenv_of_another_python_is_refused(tmp_path):
    fake = tmp_path / "py27"
    (fake / "bin").mkdir(parents=True)
    (fake / "pyvenv.cfg").write_text("home = /opt/python2.7/bin\nversion = 2.7.18\n")
    os.symlink(sys.executable, fake / "bin" / "python")
    result = run_cli(server_argv(free_port(), "wsgi_app:app", ["--virtualenv", str(fake)]))
    assert result.returncode == 1, result.stderr
    assert "was made with Python 2.7.18, but appserver embeds Python 3." in result.stderr


def test_not_a_virtualenv_is_a_usage_error(tmp_path):
    result = run_cli(server_argv(free_port(), "wsgi_app:app", ["--virtualenv", str(tmp_path)]))
    assert result.returncode == 2, result.stderr
    assert "--virtualenv" in result.stderr and "is not a virtualenv" in result.stderr


def test_python_frontdoor_refuses_another_virtualenv(venv):
    result = run_cli(server_argv(free_port(), "wsgi_app:app", ["--virtualenv", str(venv)]), frontdoor="python")
    assert result.returncode == 2, result.stderr
    assert f"--virtualenv {venv}: this interpreter" in result.stderr


def test_python_frontdoor_in_its_own_virtualenv(server_factory, venv):
    """The venv's python running appserver (from the build tree) with --virtualenv naming
    that same venv: accepted."""
    pkg = python_package_dir().absolute()
    server = server_factory.start(
        "venv_app:application",
        ["--virtualenv", str(venv)],
        command=[str(venv / "bin" / "python"), "-m", "appserver"],
        env={"PYTHONPATH": str(pkg), "VIRTUAL_ENV": None},
        probe="/",
    )
    assert_runs_in(server, venv)
