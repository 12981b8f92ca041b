"""The self-contained wheel: `bash scripts/wheel` builds it for this Python (or
$APPSERVER_WHEEL names one already built), it is installed with pip into a fresh virtualenv
(no system site-packages, Django from the package index), and that virtualenv serves the
Django test project through the `appserver` console script and `python -m appserver`.

The wheel and the virtualenv are made once per run (the `wheel` and `wheel_venv` fixtures
in conftest.py); scripts/wheel keeps its build tree (build/wheel/<tag>), so a second run
only repackages.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest
import requests

from e2e_helpers import APPS_DIR, ISOLATED, REPO_ROOT, WHEEL_BUILD_TIMEOUT, child_env

DJANGO_DIR = APPS_DIR / "djproject"
CSRF_RE = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')

# What a manylinux wheel may link from the system; everything else must be in the wheel.
SYSTEM_LIBRARIES = {
    "libc.so.6",
    "libm.so.6",
    "libstdc++.so.6",
    "libgcc_s.so.1",
    "ld-linux-x86-64.so.2",
    "libpthread.so.0",
    "libdl.so.2",
    "librt.so.1",
}

# The fixture's build counts toward the first test's time.
pytestmark = pytest.mark.timeout(WHEEL_BUILD_TIMEOUT + 300)



def needed(path: Path) -> list[str]:
    out = subprocess.run(["readelf", "-d", str(path)], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    return re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", out.stdout)


def run_in(venv: Path, code: str) -> str:
    result = subprocess.run(
        [str(venv / "bin" / "python"), "-c", code],
        env=child_env(ISOLATED),
        cwd=venv,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_name_says_version_python_and_manylinux(wheel):
    version = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["version"]
    tag = f"cp{sys.version_info.major}{sys.version_info.minor}"
    assert re.fullmatch(rf"appserver-{re.escape(version)}-{tag}-{tag}-manylinux_2_\d+_x86_64\.whl", wheel.name), wheel.name


def test_binaries_link_no_libpython_and_nothing_outside_the_wheel(wheel, tmp_path):
    with zipfile.ZipFile(wheel) as zf:
        zf.extractall(tmp_path)
    binaries = [p for p in tmp_path.rglob("*.so*") if p.is_file()]
    extension = [p for p in binaries if p.name.startswith("_appserver.")]
    assert len(extension) == 1, binaries
    bundled = {p.name for p in (tmp_path / "appserver.libs").glob("*")} if (tmp_path / "appserver.libs").is_dir() else set()
    for binary in binaries:
        libs = needed(binary)
        assert not [lib for lib in libs if lib.startswith("libpython")], f"{binary.name} links libpython: {libs}"
        outside = [lib for lib in libs if lib not in bundled and lib not in SYSTEM_LIBRARIES]
        assert not outside, f"{binary.name} needs {outside}, which are neither in the wheel nor in every glibc system"
    # What it bundles carries its licence.
    for lib in bundled:
        name = re.match(r"lib(.+?)-[0-9a-f]{8}\.so", lib).group(1)
        assert (tmp_path / "appserver" / "licenses" / f"{name}.copyright").is_file(), lib


def test_installed_package_loads_the_bundled_libraries(wheel_venv):
    venv = wheel_venv
    out = run_in(venv, "import appserver, appserver._appserver as m; print(appserver.__file__); print(m.__file__)")
    package, extension = (Path(line) for line in out.splitlines())
    site = venv / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"
    assert package.parent == site / "appserver" and extension.parent == site / "appserver"
    ldd = subprocess.run(["ldd", str(extension)], capture_output=True, text=True, timeout=30)
    assert ldd.returncode == 0, ldd.stderr
    for line in ldd.stdout.splitlines():
        if "=>" not in line:
            continue
        name, target = (part.strip() for part in line.split("=>", 1))
        target = target.split(" (")[0].strip()
        assert target != "not found", line
        if name not in SYSTEM_LIBRARIES:
            assert Path(target).resolve().is_relative_to((site / "appserver.libs").resolve()), line


@pytest.fixture(scope="module")
def django_env(wheel_venv, tmp_path_factory):
    venv = wheel_venv
    base = tmp_path_factory.mktemp("wheel-django")
    env = {
        **ISOLATED,
        "DJANGO_SETTINGS_MODULE": "djproject.settings",
        "E2E_DJANGO_DB": str(base / "db.sqlite3"),
        "E2E_DJANGO_MEDIA": str(base / "media"),
    }
    result = subprocess.run(
        [str(venv / "bin" / "python"), "manage.py", "migrate", "--noinput"],
        cwd=DJANGO_DIR,
        env=child_env(env),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return env


@pytest.mark.parametrize("door", ["console script", "python -m appserver"])
def test_serves_django(server_factory, wheel_venv, django_env, door, token):
    venv = wheel_venv
    command = [str(venv / "bin" / "appserver")] if door == "console script" else [str(venv / "bin" / "python"), "-m", "appserver"]
    server = server_factory.start(
        "djproject.wsgi:application",
        ["--workers", "2", "--blocking-threads", "2"],
        command=command,
        env=django_env,
        working_dir=DJANGO_DIR,
        cwd=DJANGO_DIR,
        probe="/",
    )
    # The master runs the extension installed in the virtualenv, with its bundled libraries.
    maps = Path(f"/proc/{server.pid}/maps").read_text()
    assert str(venv / "lib") in maps and "appserver.libs/libspdlog" in maps
    base = server.url
    assert requests.get(f"{base}/", timeout=10).text == "django ok"
    with requests.Session() as s:
        form = s.get(f"{base}/items/new/", timeout=10)
        assert form.status_code == 200, form.text[:500]
        csrf = CSRF_RE.search(form.text).group(1)
        r = s.post(
            f"{base}/items/new/",
            data={"csrfmiddlewaretoken": csrf, "name": token, "price_cents": "321"},
            allow_redirects=False,
            timeout=20,
        )
        assert r.status_code == 302, r.text[:500]
    items = requests.get(f"{base}/items/", timeout=10).json()["items"]
    assert [i["price_cents"] for i in items if i["name"] == token] == [321]
