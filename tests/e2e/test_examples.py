"""The container examples, without a container runtime (there is none here): the paths
examples/docker/Dockerfile copies exist, its settings agree with each other and with
examples/kubernetes/appserver.yaml, and the exact command, environment and health check of
both, run from the wheel installed in a fresh virtualenv (loopback instead of 0.0.0.0, free
ports instead of 8000/9090), serve examples/hello."""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import requests
import yaml

from e2e_helpers import ISOLATED, REPO_ROOT, WHEEL_BUILD_TIMEOUT, child_env, free_port, http_get, wait_until

DOCKER_DIR = REPO_ROOT / "examples" / "docker"
DOCKERFILE = DOCKER_DIR / "Dockerfile"
MANIFEST = REPO_ROOT / "examples" / "kubernetes" / "appserver.yaml"
HELLO_DIR = REPO_ROOT / "examples" / "hello"
WORKER_KILL_AFTER_GRACE = 5  # the master kills a worker this long after --graceful-timeout

# The first test to ask for the wheel may build it.
pytestmark = pytest.mark.timeout(WHEEL_BUILD_TIMEOUT + 300)


def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order; continuation lines joined, comments dropped."""
    instructions, pending = [], ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        word, _, rest = line.partition(" ")
        instructions.append((word.upper(), rest.strip()))
    return instructions


def one(name: str) -> str:
    found = [args for word, args in dockerfile() if word == name]
    assert len(found) == 1, f"{name}: {found}"
    return found[0]


def image_env() -> dict[str, str]:
    env = {}
    for word, args in dockerfile():
        if word == "ENV":
            for item in shlex.split(args):
                key, _, value = item.partition("=")
                env[key] = value
    return env


def option(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


def manifest() -> dict[str, dict]:
    docs = list(yaml.safe_load_all(MANIFEST.read_text()))
    return {d["kind"]: d for d in docs}


def container(deployment: dict) -> dict:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def loopback(env: dict[str, str], argv: list[str]) -> tuple[dict[str, str], list[str], int, int]:
    """The same settings on 127.0.0.1 and free ports."""
    port, metrics_port = free_port(), free_port()
    argv = list(argv)
    argv[argv.index("--host") + 1] = "127.0.0.1"
    argv[argv.index("--port") + 1] = str(port)
    env = dict(env)
    env["APPSERVER_METRICS_ADDRESS"] = "127.0.0.1"
    env["APPSERVER_METRICS_PORT"] = str(metrics_port)
    return env, argv, port, metrics_port


# ------------------------------------------------------------------ Dockerfile


def test_dockerfile_copies_what_exists_and_what_scripts_wheel_builds(wheel):
    base = one("FROM")
    m = re.fullmatch(r"python:(\d+)\.(\d+)-slim", base)
    assert m, base
    tag = f"cp{m.group(1)}{m.group(2)}"
    copies = [shlex.split(args) for word, args in dockerfile() if word == "COPY"]
    assert copies
    wheel_patterns = []
    for *sources, _dest in copies:
        for source in sources:
            if source.startswith("dist/"):
                wheel_patterns.append(source)
            else:
                assert (REPO_ROOT / source).exists(), source
    assert wheel_patterns and all(f"-{tag}-{tag}-manylinux_" in p for p in wheel_patterns), wheel_patterns
    if sys.version_info[:2] == (int(m.group(1)), int(m.group(2))):
        assert any(fnmatch.fnmatch(str(wheel.relative_to(REPO_ROOT)), p) for p in wheel_patterns), wheel.name
    # The build context keeps what is copied.
    ignore = (DOCKER_DIR / "Dockerfile.dockerignore").read_text().split()
    assert ignore[ignore.index("*") + 1 :]  # everything ignored but ...
    for *sources, _dest in copies:
        for source in sources:
            assert any(fnmatch.fnmatch(source, p[1:]) or source.rstrip("/") == p[1:].rstrip("/")
                       for p in ignore if p.startswith("!")), source


def test_dockerfile_settings_agree():
    entrypoint = json.loads(one("ENTRYPOINT"))
    assert entrypoint[0] == "appserver"
    assert option(entrypoint, "--host") == "0.0.0.0"
    env = image_env()
    assert one("USER") not in ("root", "0")
    assert one("STOPSIGNAL") == "SIGTERM"
    # docker stop's timeout cannot be set in a Dockerfile: the documented one must cover the
    # graceful timeout and the worker kill after it.
    graceful = float(env["APPSERVER_GRACEFUL_TIMEOUT"])
    for text in (DOCKERFILE.read_text(), (DOCKER_DIR / "README.md").read_text()):
        stops = [int(s) for s in re.findall(r"--stop-timeout (\d+)", text)]
        assert stops and all(s > graceful + WORKER_KILL_AFTER_GRACE for s in stops), stops
    health = one("HEALTHCHECK")
    assert f"127.0.0.1:{option(entrypoint, '--port')}{env['APPSERVER_HEALTH_PATH']}" in health
    assert env["APPSERVER_METRICS"] == "true" and env["APPSERVER_METRICS_ADDRESS"] == "0.0.0.0"
    assert option(entrypoint, "--port") in one("EXPOSE").split()
    assert env["APPSERVER_METRICS_PORT"] in one("EXPOSE").split()


def serve_like_the_image(server_factory, wheel_venv, env, args):
    """The image's ENTRYPOINT with these arguments and environment, run from the wheel's
    virtualenv on loopback ports: (server, its environment, port, metrics port)."""
    entrypoint = json.loads(one("ENTRYPOINT"))
    env, argv, port, metrics_port = loopback(env, entrypoint[1:] + args)
    server = server_factory.start(
        command=[str(wheel_venv / "bin" / entrypoint[0])],
        argv_override=argv,
        port=port,
        env={**ISOLATED, **env},
        cwd=HELLO_DIR,
        working_dir=None,
        defaults=False,
        probe="/",
    )
    return server, env, port, metrics_port


def test_dockerfile_command_serves_hello(server_factory, wheel_venv):
    server, env, port, metrics_port = serve_like_the_image(
        server_factory, wheel_venv, image_env(), json.loads(one("CMD")))
    assert http_get(port, "/").body == b"Hello from appserver!\n"
    # The HEALTHCHECK's own command, with the image's python (the virtualenv's here).
    check = json.loads(re.search(r"CMD\s+(\[.*\])", one("HEALTHCHECK")).group(1))
    assert check[0] == "python"
    check = [str(wheel_venv / "bin" / "python")] + [a.replace(":8000/", f":{port}/") for a in check[1:]]
    assert subprocess.run(check, env=child_env(ISOLATED), timeout=30).returncode == 0
    metrics = requests.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10)
    assert metrics.status_code == 200 and "appserver_workers" in metrics.text
    wait_until(lambda: len(server.workers()) == int(env["APPSERVER_WORKERS"]), 20, "the workers")
    server.send_signal(signal.SIGTERM)
    assert server.wait_exit(float(env["APPSERVER_GRACEFUL_TIMEOUT"])) == 0


# ------------------------------------------------------------------ Kubernetes


def test_manifest_parses_and_agrees_with_the_image():
    docs = manifest()
    assert set(docs) == {"Deployment", "Service"}
    deployment, service = docs["Deployment"], docs["Service"]
    pod = deployment["spec"]["template"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    assert service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    c = container(deployment)
    env = {**image_env(), **{e["name"]: e["value"] for e in c["env"]}}
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    entrypoint = json.loads(one("ENTRYPOINT"))
    assert ports["http"] == int(option(entrypoint, "--port"))
    assert [p["targetPort"] for p in service["spec"]["ports"]] == ["http"]  # metrics stay off the Service
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert c[probe]["httpGet"] == {"path": env["APPSERVER_HEALTH_PATH"], "port": "http"}, probe
    annotations = pod["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/path"] == "/metrics"
    assert int(annotations["prometheus.io/port"]) == ports["metrics"] == int(env["APPSERVER_METRICS_PORT"])
    assert env["APPSERVER_METRICS"] == "true" and env["APPSERVER_METRICS_ADDRESS"] == "0.0.0.0"
    pre_stop = c["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    grace = pod["spec"]["terminationGracePeriodSeconds"]
    assert grace > int(pre_stop[1]) + float(env["APPSERVER_GRACEFUL_TIMEOUT"]) + WORKER_KILL_AFTER_GRACE
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True


def test_manifest_settings_serve_hello(server_factory, wheel_venv):
    """The image's ENTRYPOINT with the manifest's args and environment: every variable is an
    option appserver knows, and the probe path and metrics answer."""
    c = container(manifest()["Deployment"])
    env = {**image_env(), **{e["name"]: e["value"] for e in c["env"]}}
    server, env, port, metrics_port = serve_like_the_image(server_factory, wheel_venv, env, c["args"])
    probe = c["readinessProbe"]["httpGet"]["path"]
    assert http_get(port, probe).status == 200
    assert requests.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).status_code == 200
    assert "APPSERVER_" not in server.log(), server.log()  # no variable warned about as unknown
