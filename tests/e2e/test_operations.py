"""Operations end to end: rolling reload (SIGHUP), resizing (SIGTTIN/SIGTTOU) and worker
recycling (--max-requests, --workers-lifetime, --workers-max-rss), each checked under a
bounded loopback load for zero failed requests."""

from __future__ import annotations

import os
import signal
import textwrap
import threading
import time
from pathlib import Path

import requests

import pytest

from e2e_helpers import free_port, http_get, wait_until

VERSIONED_APP = textwrap.dedent(
    """
    import os

    VERSION = {version!r}

    def app(environ, start_response):
        body = f"{{VERSION}} {{os.getpid()}}".encode()
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
        return [body]
    """
)


def write_app(directory: Path, version: str, broken: bool = False) -> None:
    source = VERSIONED_APP.format(version=version)
    if broken:
        source += "\nraise RuntimeError('this deploy is broken')\n"
    path = directory / "versioned_app.py"
    tmp = directory / "versioned_app.py.tmp"
    tmp.write_text(source)
    tmp.replace(path)


class Load:
    """Keep-alive clients sending GET / in a loop until stopped (bounded: at most
    max_seconds); every failure (exception or non-200) is kept."""

    def __init__(self, port: int, clients: int = 4, max_seconds: float = 60.0):
        self.url = f"http://127.0.0.1:{port}/"
        self.stop_event = threading.Event()
        self.deadline = time.monotonic() + max_seconds
        self.failures: list[str] = []
        self.bodies: list[str] = []
        self.count = 0
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self.run, daemon=True) for _ in range(clients)]

    def run(self):
        with requests.Session() as s:
            while not self.stop_event.is_set() and time.monotonic() < self.deadline:
                try:
                    r = s.get(self.url, timeout=10)
                    ok = r.status_code == 200
                    with self.lock:
                        self.count += 1
                        self.bodies.append(r.text)
                        if not ok:
                            self.failures.append(f"status {r.status_code}: {r.text[:80]}")
                except requests.RequestException as e:
                    with self.lock:
                        self.count += 1
                        self.failures.append(repr(e))

    def __enter__(self):
        for t in self.threads:
            t.start()
        wait_until(lambda: self.count > 0, 10, "the load to start")
        return self

    def __exit__(self, *exc):
        self.stop_event.set()
        for t in self.threads:
            t.join(timeout=20)

    def pids(self) -> set[str]:
        with self.lock:
            return {b.split()[1] for b in self.bodies if " " in b}

    def versions_since(self, n: int) -> set[str]:
        with self.lock:
            return {b.split()[0] for b in self.bodies[n:] if " " in b}


def versioned_server(server_factory, tmp_path, args, version="v1"):
    write_app(tmp_path, version)
    return server_factory.start("versioned_app:app", args, working_dir=tmp_path, probe="/")


def served_version(port: int) -> str:
    return http_get(port, "/").body.decode().split()[0]


IMPORT_MODES = pytest.mark.parametrize(
    "mode", [["--lazy-apps"], []], ids=["lazy-apps", "imported-in-master"]
)


@IMPORT_MODES
def test_sighup_reloads_new_code_one_worker_at_a_time(server_factory, tmp_path, mode):
    """With --lazy-apps each new worker imports the new code; by default the master
    re-executes itself (same pid, same socket) and forks new workers from the new code."""
    server = versioned_server(server_factory, tmp_path, ["--workers", "2", *mode])
    master_pid = server.pid
    old = set(server.workers())
    with Load(server.port) as load:
        wait_until(lambda: load.count > 20, 20, "some requests before the reload")
        write_app(tmp_path, "v2")
        mark = load.count
        server.send_signal(signal.SIGHUP)
        server.wait_for_log("reload complete", timeout=30)
        wait_until(lambda: load.versions_since(load.count - 1) == {"v2"}, 20, "v2 served")
        after = load.count
        wait_until(lambda: load.count > after + 20, 20, "requests after the reload")
    assert not load.failures, load.failures[:5]
    assert load.versions_since(mark) >= {"v2"}
    assert served_version(server.port) == "v2"
    # The replaced workers leave once their requests are done (under a sanitizer, a
    # moment after they say so).
    wait_until(lambda: len(set(server.workers())) == 2 and not (set(server.workers()) & old), 20, "only the new workers")
    assert server.alive() and server.pid == master_pid
    # A second reload works the same way.
    write_app(tmp_path, "v3")
    server.send_signal(signal.SIGHUP)
    wait_until(lambda: served_version(server.port) == "v3" and "v2" not in {served_version(server.port) for _ in range(4)}, 30, "v3 everywhere")


@IMPORT_MODES
def test_a_broken_deploy_leaves_the_old_workers_serving(server_factory, tmp_path, mode):
    server = versioned_server(server_factory, tmp_path, ["--workers", "2", *mode])
    old = set(server.workers())
    with Load(server.port) as load:
        wait_until(lambda: load.count > 10, 20, "some requests")
        write_app(tmp_path, "v2", broken=True)
        server.send_signal(signal.SIGHUP)
        server.wait_for_log("reload abandoned", timeout=30)
        after = load.count
        wait_until(lambda: load.count > after + 20, 20, "requests after the failed reload")
    assert not load.failures, load.failures[:5]
    assert "this deploy is broken" in server.log()
    assert served_version(server.port) == "v1"
    assert set(server.workers()) == old
    # Fixed, the next reload goes through.
    write_app(tmp_path, "v3")
    server.send_signal(signal.SIGHUP)
    wait_until(lambda: server.log().count("reload complete") == 1, 30, "the reload to complete")
    assert served_version(server.port) == "v3"


@IMPORT_MODES
def test_a_reload_follows_a_switched_release_symlink(server_factory, tmp_path, mode):
    """Deploys that switch `current -> releases/N`: the next reload imports from the
    release the link points to then (sys.path keeps the link, not the old target)."""
    releases = tmp_path / "releases"
    (releases / "1").mkdir(parents=True)
    (releases / "2").mkdir()
    write_app(releases / "1", "r1")
    write_app(releases / "2", "r2")
    current = tmp_path / "current"
    current.symlink_to(releases / "1")
    server = server_factory.start(
        "versioned_app:app", ["--workers", "1", *mode], working_dir=current, probe="/"
    )
    assert served_version(server.port) == "r1"
    staged = tmp_path / "current.new"
    staged.symlink_to(releases / "2")
    staged.replace(current)  # the atomic switch deploy tools do
    server.send_signal(signal.SIGHUP)
    wait_until(lambda: server.log().count("reload complete") == 1, 30, "the reload to complete")
    assert served_version(server.port) == "r2"


def test_workers_ignore_resize_signals_meant_for_the_master(server_factory, tmp_path):
    server = versioned_server(server_factory, tmp_path, ["--workers", "2"])
    workers = sorted(server.workers())
    for pid in workers:
        os.kill(pid, signal.SIGTTIN)
        os.kill(pid, signal.SIGTTOU)
    for i in range(2):
        server.wait_for_log(f"worker {i}: signal {int(signal.SIGTTOU)} ignored")
    assert served_version(server.port) == "v1"
    assert sorted(server.workers()) == workers
    for pid in workers:
        assert Path(f"/proc/{pid}/stat").read_text().split(")")[1].split()[0] != "T"


def test_ttin_and_ttou_change_the_worker_count(server_factory, tmp_path):
    metrics_port = free_port()
    server = versioned_server(
        server_factory, tmp_path, ["--workers", "2", "--metrics", "--metrics-port", str(metrics_port)]
    )

    def workers_gauge() -> str:
        text = http_get(metrics_port, "/metrics").body.decode()
        return next(line.split()[1] for line in text.splitlines() if line.startswith("appserver_workers "))

    with Load(server.port) as load:
        server.send_signal(signal.SIGTTIN)
        wait_until(lambda: len(server.workers()) == 3, 20, "a third worker")
        server.wait_for_log("adding a worker (3 now)")
        assert workers_gauge() == "3"
        server.send_signal(signal.SIGTTOU)
        server.wait_for_log("removing worker 2 (2 left)")
        wait_until(lambda: len(server.workers()) == 2, 20, "back to two workers")
        assert workers_gauge() == "2"
        after = load.count
        wait_until(lambda: load.count > after + 10, 20, "requests after resizing")
    assert not load.failures, load.failures[:5]
    # The fewest is one.
    server.send_signal(signal.SIGTTOU)
    wait_until(lambda: len(server.workers()) == 1, 20, "one worker")
    server.send_signal(signal.SIGTTOU)
    server.wait_for_log("one worker is the fewest")
    assert len(server.workers()) == 1


def test_max_requests_recycles_workers_without_failed_requests(server_factory, tmp_path):
    metrics_port = free_port()
    server = versioned_server(
        server_factory,
        tmp_path,
        ["--workers", "2", "--max-requests", "40", "--max-requests-jitter", "10",
         "--metrics", "--metrics-port", str(metrics_port)],
    )
    first = set(server.workers())
    with Load(server.port) as load:
        # Each worker asks for a successor after 40-50 requests: generations follow.
        wait_until(lambda: len(load.pids()) >= 5, 60, "five generations of workers")
    assert not load.failures, load.failures[:5]
    assert not (set(server.workers()) & first)
    text = http_get(metrics_port, "/metrics").body.decode()
    restarts = next(
        float(line.split()[1])
        for line in text.splitlines()
        if line.startswith('appserver_worker_restarts_total{reason="max_requests"}')
    )
    assert restarts >= 3  # five pids: the first two and at least three successors
    assert "asking the master for a replacement" in server.log()


def test_workers_lifetime_replaces_workers(server_factory, tmp_path):
    server = versioned_server(server_factory, tmp_path, ["--workers", "2", "--workers-lifetime", "1"])
    first = set(server.workers())
    with Load(server.port, clients=2) as load:
        wait_until(lambda: not (set(server.workers()) & first), 20, "both workers replaced")
        after = load.count
        wait_until(lambda: load.count > after + 10, 20, "requests after the replacement")
    assert not load.failures, load.failures[:5]
    assert "reached --workers-lifetime" in server.log()


def test_workers_max_rss_replaces_a_worker_over_the_limit(server_factory, tmp_path):
    # Every worker is over 1 MiB: each is replaced about once a second.
    server = versioned_server(server_factory, tmp_path, ["--workers", "1", "--workers-max-rss", "1"])
    first = set(server.workers())
    with Load(server.port, clients=2) as load:
        wait_until(lambda: set(server.workers()) and not (set(server.workers()) & first), 20, "a replacement")
        after = load.count
        wait_until(lambda: load.count > after + 10, 20, "requests after the replacement")
    assert not load.failures, load.failures[:5]
    assert "passed --workers-max-rss" in server.log()


def _cmdline(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode()


def test_process_titles_tell_master_and_workers_apart(server_factory, tmp_path):
    for frontdoor in ("binary", "python"):
        write_app(tmp_path, "v1")
        server = server_factory.start(
            "versioned_app:app", ["--workers", "2"], working_dir=tmp_path, probe="/", frontdoor=frontdoor
        )
        assert _cmdline(server.pid) == "appserver: master [versioned_app:app]"
        expected = [
            "appserver: worker 0 [versioned_app:app]",
            "appserver: worker 1 [versioned_app:app]",
        ]
        # A worker names itself right after the fork; the probe may have reached the other.
        wait_until(
            lambda: sorted(_cmdline(pid) for pid in server.workers()) == expected,
            10,
            f"both workers' titles ({frontdoor})",
        )
        assert Path(f"/proc/{server.pid}/comm").read_text().strip() == "appserver"
        server.stop()


# --------------------------------------------------------------------------- request timeout


def test_request_timeout_answers_504_logs_the_stack_and_interrupts_the_app(server_factory, token):
    metrics_port = free_port()
    server = server_factory.start(
        "stuck_app:app",
        ["--blocking-threads", "2", "--request-timeout", "1", "--metrics", "--metrics-port", str(metrics_port)],
        probe="/",
    )
    workers = server.workers()
    resp = http_get(server.port, f"/spin?token={token}", headers=[("X-Request-ID", token)])
    assert resp.status == 504 and resp.reason == "Gateway Timeout" and resp.server_closes
    # The loop's answer came first; the stuck thread was interrupted where Python allows.
    wait_until(
        lambda: server.marker(f"interrupted-{token}-RequestTimeout-True").exists(),
        20,
        "the app to be interrupted",
    )
    log = server.wait_for_log("stuck request GET /spin", timeout=10)
    assert f"[request_id={token}] request timed out after 1s in the application" in log
    assert 'stuck_app.py", line' in log and "in app" in log  # its Python stack
    # The thread is free again: both threads serve, no worker was replaced.
    for _ in range(4):
        assert http_get(server.port, "/").status == 200
    assert server.workers() == workers
    text = http_get(metrics_port, "/metrics").body.decode()
    assert 'appserver_requests_total{method="GET",code="5xx"} 1' in text


def test_a_thread_stuck_in_c_is_written_off_and_the_worker_replaced(server_factory, token):
    # Every thread stuck, in C code (time.sleep): no exception can reach it. The server
    # must still answer, through a replacement worker.
    server = server_factory.start(
        "stuck_app:app",
        ["--blocking-threads", "1", "--request-timeout", "1", "--graceful-timeout", "3"],
        probe="/",
    )
    (old,) = server.workers()
    resp = http_get(server.port, f"/sleep?token={token}&seconds=60")
    assert resp.status == 504
    server.wait_for_log("writing it off", timeout=20)
    server.wait_for_log("now serves", timeout=20)
    resp = http_get(server.port, "/")
    assert resp.status == 200 and resp.body != f"hello from {old}".encode()
    # The old worker leaves at --graceful-timeout, its thread still asleep.
    wait_until(lambda: old not in server.workers(), 20, "the old worker to leave")
    assert "a thread is stuck past --request-timeout" in server.log()


# --------------------------------------------------------------------------- --reload


@IMPORT_MODES
def test_reload_on_a_source_change(server_factory, tmp_path, mode):
    server = versioned_server(server_factory, tmp_path, ["--workers", "1", "--reload", *mode])
    server.wait_for_log("--reload: watching")
    # A file the default patterns ignore (a log the app writes) reloads nothing; the
    # source file that follows does, and is the one named.
    (tmp_path / "app.log").write_text("written by the app\n")
    write_app(tmp_path, "v2")
    wait_until(lambda: served_version(server.port) == "v2", 30, "the new code to be served")
    log = server.wait_for_log("changed: reloading (--reload)")
    changed = [line for line in log.splitlines() if "changed: reloading" in line]
    assert changed and all("versioned_app.py changed" in line for line in changed), changed


def test_reload_paths_must_exist():
    from e2e_helpers import run_cli

    result = run_cli(["--reload", "--reload-paths", "/no/such/dir", "wsgi_app:app"])
    assert result.returncode == 2
    assert "--reload-paths" in result.stderr


def test_signals_for_the_master_never_reach_a_thread_the_app_started_at_import(server_factory):
    """The master blocks its signals before importing the app: a thread the app starts at
    import (an exporter, a scheduler) inherits the mask, so a signal the master is not
    waiting for at that instant stays pending for it instead of killing or suspending the
    whole server through that thread."""
    server = server_factory.start("threaded_app:app", ["--workers", "1"], probe="/")
    for _ in range(10):
        for sig in (signal.SIGTTIN, signal.SIGHUP, signal.SIGTTOU, signal.SIGUSR2):
            server.send_signal(sig)
    wait_until(lambda: server.log().count("reload complete") >= 1, 30, "a reload to complete")
    assert server.alive()
    state = Path(f"/proc/{server.pid}/stat").read_text().split(")")[1].split()[0]
    assert state != "T", "the master was suspended"
    wait_until(lambda: http_get(server.port, "/").status == 200, 20, "the server to answer")
