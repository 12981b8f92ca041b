#!/usr/bin/env python3
"""Benchmark runner: same workloads against every server, same run, same machine.

Usually started through `bench/run` (which calls `bench/setup` first). For each
workload it starts every server side by side on loopback ports (server processes
pinned to one set of CPUs, the load generator to another), checks each answers
correctly, then runs:

  * a closed-loop concurrency sweep (wrk) for throughput, and
  * an open-loop fixed-rate run (oha -q RATE --latency-correction) at fractions of
    Granian's best throughput for latency percentiles free of coordinated omission,

every point as warm-up + N runs with the servers interleaved (rotated each round),
medians reported. It also measures the two limits (appserver's C++-only HTTP
ceiling and the in-process Python floor), RSS per worker and server CPU per request,
writes bench/results/<stamp>/results.json and renders docs/benchmarks.md with plots
(bench/report.py). Every process it starts is stopped by PID in a finally block.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import http.client
import json
import os
import platform
import re
import resource
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
APPS = BENCH / "apps"
CLK_TCK = os.sysconf("SC_CLK_TCK")
HOST = "127.0.0.1"

sys.path.insert(0, str(APPS))
import wsgiapps  # noqa: E402  (expected body sizes come from the apps themselves)

# --------------------------------------------------------------------------- workloads


@dataclass(frozen=True)
class Workload:
    name: str
    title: str
    target: str  # module:attr inside bench/apps
    method: str = "GET"
    path: str = "/"
    body_size: int = 0
    io_bound: bool = False

    def check(self, status: int, body: bytes) -> str | None:
        """Return None when a response is the one this workload must produce."""
        if status != 200:
            return f"status {status}"
        if self.name == "upload":
            return None if body.strip() == str(self.body_size).encode() else f"body {body[:40]!r}"
        if self.name == "django":
            return None if b"Items in category 3" in body else f"unexpected page ({len(body)} bytes)"
        want = wsgiapps.EXPECTED_BODY_BYTES[self.target.split(":")[1]]
        return None if len(body) == want else f"body {len(body)} bytes, want {want}"

    def min_response_bytes(self) -> int:
        if self.name == "django":
            return 4000
        if self.name == "upload":
            return 7
        return wsgiapps.EXPECTED_BODY_BYTES[self.target.split(":")[1]]


MIB = 1024 * 1024
WORKLOADS = {
    w.name: w
    for w in [
        Workload("hello", "1 KiB bytes response", "wsgiapps:hello"),
        Workload("json", "~4 KiB dict via stdlib json", "wsgiapps:json_app"),
        Workload("django", "Django view: 1 ORM query (SQLite) + template", "djbench.wsgi:application",
                 path="/items/"),
        Workload("upload", "POST 1 MiB, app reads wsgi.input fully", "wsgiapps:upload", method="POST",
                 body_size=MIB),
        Workload("stream", "generator: 64 chunks x 16 KiB", "wsgiapps:stream"),
        Workload("io", "app sleeps 10 ms", "wsgiapps:io_sleep", io_bound=True),
    ]
}

SERVER_LABELS = {
    "appserver": "appserver",
    "granian": "Granian",
    "gunicorn": "gunicorn gthread",
    "uwsgi": "uWSGI --http-socket",
    "oldstack": "nginx->haproxy->uWSGI",
    "ceiling": "appserver C++ ceiling",
}
ALL_SERVERS = ["appserver", "granian", "gunicorn", "uwsgi", "oldstack"]

# --------------------------------------------------------------------------- processes

_live_procs: list[subprocess.Popen] = []  # everything started and not yet stopped
_live_lock = threading.Lock()


def _track(p: subprocess.Popen) -> subprocess.Popen:
    with _live_lock:
        _live_procs.append(p)
    return p


def _untrack(p: subprocess.Popen) -> None:
    with _live_lock:
        if p in _live_procs:
            _live_procs.remove(p)


def read_stat(pid: int) -> tuple[int, int] | None:
    """(ppid, utime+stime ticks) of a process, or None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    fields = data[data.rindex(b")") + 2:].split()
    return int(fields[1]), int(fields[11]) + int(fields[12])


def process_table() -> dict[int, tuple[int, int]]:
    table = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            st = read_stat(int(entry))
            if st:
                table[int(entry)] = st
    return table


def descendants(root: int, table: dict[int, tuple[int, int]]) -> list[int]:
    kids: dict[int, list[int]] = {}
    for pid, (ppid, _) in table.items():
        kids.setdefault(ppid, []).append(pid)
    out, todo = [], [root]
    while todo:
        for child in kids.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def rss_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def start_process(argv: list[str], log: Path, cpus: str | None, cwd: Path | None = None,
                  env: dict | None = None) -> subprocess.Popen:
    """Start argv in its own session (so a Ctrl-C in the terminal does not reach it:
    we stop it ourselves, by PID), pinned to `cpus` when given."""
    if cpus:
        argv = ["taskset", "-c", cpus] + argv  # taskset execs argv: same PID
    logf = open(log, "ab")
    try:
        p = subprocess.Popen(argv, stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                             cwd=cwd, env=env, start_new_session=True)
    finally:
        logf.close()
    return _track(p)


def stop_process(p: subprocess.Popen, sig: int = signal.SIGTERM, grace: float = 10.0) -> None:
    """Graceful signal to the PID, then SIGKILL to its process group (the session we
    created for it, whose id is that PID) for anything left behind."""
    if p.poll() is None:
        try:
            os.kill(p.pid, sig)
        except ProcessLookupError:
            pass
        try:
            p.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(p.pid, signal.SIGKILL)  # leftovers (workers orphaned by a dead master)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        p.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pass
    _untrack(p)


def stop_all_tracked() -> None:
    with _live_lock:
        procs = list(_live_procs)
    threads = [threading.Thread(target=stop_process, args=(p,)) for p in reversed(procs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def port_open(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=0.5):
            return True
    except OSError:
        return False


def http_request(port: int, wl: Workload, timeout: float = 30.0) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        body = b"u" * wl.body_size if wl.body_size else None
        headers = {"Content-Type": "application/octet-stream"} if body else {}
        conn.request(wl.method, wl.path, body=body, headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def tail(path: Path, n: int = 8) -> str:
    try:
        lines = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return " | ".join(lines[-n:])


# --------------------------------------------------------------------------- servers


@dataclass
class Instance:
    """One running server (or the three processes of the old stack)."""

    name: str
    port: int
    procs: list[subprocess.Popen]
    app_root: subprocess.Popen  # the process whose children run the Python app
    argvs: list[list[str]]
    log: Path
    error: str | None = None
    inner_ports: list[int] = field(default_factory=list)  # must also listen before "ready"

    def pids(self) -> list[int]:
        table = process_table()
        out = []
        for p in self.procs:
            out.append(p.pid)
            out.extend(descendants(p.pid, table))
        return out

    def worker_pids(self) -> list[int]:
        kids = descendants(self.app_root.pid, process_table())
        return kids or [self.app_root.pid]

    def cpu_ticks(self) -> int:
        total = 0
        for pid in self.pids():
            st = read_stat(pid)
            if st:
                total += st[1]
        return total

    def alive(self) -> bool:
        return all(p.poll() is None for p in self.procs)

    def stop(self) -> None:
        for p in self.procs:  # front to back: nginx, haproxy, uWSGI
            stop_process(p)


class Ctx:
    def __init__(self, args, out_dir: Path):
        self.args = args
        self.out = out_dir
        self.logs = out_dir / "logs"
        self.raw = out_dir / "raw"
        self.cfg = out_dir / "configs"
        for d in (self.logs, self.raw, self.cfg):
            d.mkdir(parents=True, exist_ok=True)
        self.server_cpus = args.server_cpus
        self.client_cpus = args.client_cpus
        self.env = dict(os.environ)
        self.env["PYTHONPATH"] = str(APPS) + os.pathsep + self.env.get("PYTHONPATH", "")
        self.env["PYTHONUNBUFFERED"] = "1"
        self.commands: dict[str, list[str]] = {}
        self.configs: dict[str, str] = {}


def w_t(ctx: Ctx) -> tuple[str, str]:
    return str(ctx.args.workers), str(ctx.args.threads)


def cmd_appserver(ctx: Ctx, wl: Workload, port: int) -> list[str]:
    w, t = w_t(ctx)
    return [ctx.args.appserver, "--interface", "wsgi", "--host", HOST, "--port", str(port),
            "--workers", w, "--blocking-threads", t, "--backlog", "2048",
            "--working-dir", str(APPS), wl.target]


def cmd_granian(ctx: Ctx, wl: Workload, port: int) -> list[str]:
    w, t = w_t(ctx)
    return [shutil.which("granian") or "granian", "--interface", "wsgi", "--http", "1", "--no-ws",
            "--host", HOST, "--port", str(port), "--workers", w, "--blocking-threads", t,
            "--backlog", "2048", "--working-dir", str(APPS), "--log-level", "warning", wl.target]


def cmd_gunicorn(ctx: Ctx, wl: Workload, port: int) -> list[str]:
    w, t = w_t(ctx)
    return [shutil.which("gunicorn") or "gunicorn", "--worker-class", "gthread", "--workers", w,
            "--threads", t, "--backlog", "2048", "--bind", f"{HOST}:{port}", "--chdir", str(APPS),
            "--log-level", "warning", wl.target]


def cmd_uwsgi(ctx: Ctx, wl: Workload, port: int) -> list[str]:
    w, t = w_t(ctx)
    return [shutil.which("uwsgi") or "uwsgi", "--http-socket", f"{HOST}:{port}", "--master",
            "--processes", w, "--threads", t, "--listen", "2048", "--chdir", str(APPS),
            "--pythonpath", str(APPS), "--module", wl.target, "--die-on-term", "--disable-logging",
            "--need-app", "--buffer-size", "32768",
            # --http-socket closes the connection after every response; say so, or keep-alive
            # clients (wrk, haproxy) first try to reuse the dead connection.
            "--add-header", "Connection: close"]


def cmd_ceiling(ctx: Ctx, wl: Workload, port: int) -> list[str]:
    return [ctx.args.ceiling, "--host", HOST, "--port", str(port), "--workers", str(ctx.args.workers)]


NGINX_CONF = """\
# Front of the old stack: nginx -> haproxy -> uWSGI (written by bench/runner.py).
worker_processes 1;
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/nginx-error.log warn;
events {{ worker_connections 8192; }}
http {{
    access_log off;
    client_body_temp_path {dir}/client_body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    client_max_body_size 16m;
    client_body_buffer_size 2m;   # keep the 1 MiB upload in memory, not a temp file
    keepalive_requests 1000000;
    upstream haproxy {{
        server {host}:{haproxy_port};
        keepalive 64;
    }}
    server {{
        listen {host}:{port} backlog=2048;
        location / {{
            proxy_pass http://haproxy;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        }}
    }}
}}
"""

HAPROXY_CFG = """\
# Middle of the old stack: queues requests in front of uWSGI (written by bench/runner.py).
global
    maxconn 8192
    nbthread 1
defaults
    mode http
    option http-keep-alive
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    timeout queue 60s
    timeout http-keep-alive 60s
frontend fe
    bind {host}:{port}
    default_backend uwsgi
backend uwsgi
    # uWSGI --http-socket serves one request per connection.
    option http-server-close
    # At most workers x threads requests inside uWSGI; the rest wait in HAProxy's queue.
    server uwsgi1 {host}:{uwsgi_port} maxconn {maxconn}
"""


def start_server(ctx: Ctx, name: str, wl: Workload) -> Instance:
    port = free_port()
    log = ctx.logs / f"{wl.name}-{name}.log"
    cpus = ctx.server_cpus
    if name == "oldstack":
        hp, up = free_port(), free_port()
        d = ctx.cfg / f"oldstack-{wl.name}"
        for sub in ("", "client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (d / sub).mkdir(parents=True, exist_ok=True)
        ngx = d / "nginx.conf"
        ngx.write_text(NGINX_CONF.format(dir=d, host=HOST, port=port, haproxy_port=hp))
        hcf = d / "haproxy.cfg"
        hcf.write_text(HAPROXY_CFG.format(host=HOST, port=hp, uwsgi_port=up,
                                          maxconn=ctx.args.workers * ctx.args.threads))
        uw = cmd_uwsgi(ctx, wl, up)
        ha = [shutil.which("haproxy") or "/usr/sbin/haproxy", "-db", "-f", str(hcf)]
        ng = [shutil.which("nginx") or "/usr/sbin/nginx", "-p", str(d), "-c", str(ngx), "-e",
              str(d / "nginx-error.log")]
        p_uw = start_process(uw, log, cpus, cwd=APPS, env=ctx.env)
        p_ha = start_process(ha, log, cpus, env=ctx.env)
        p_ng = start_process(ng, log, cpus, env=ctx.env)
        ctx.configs.setdefault("nginx.conf", ngx.read_text())
        ctx.configs.setdefault("haproxy.cfg", hcf.read_text())
        return Instance(name, port, [p_ng, p_ha, p_uw], p_uw, [ng, ha, uw], log, inner_ports=[up, hp])
    builder = {"appserver": cmd_appserver, "granian": cmd_granian, "gunicorn": cmd_gunicorn,
               "uwsgi": cmd_uwsgi, "ceiling": cmd_ceiling}[name]
    argv = builder(ctx, wl, port)
    p = start_process(argv, log, cpus, cwd=APPS, env=ctx.env)
    return Instance(name, port, [p], p, [argv], log)


def wait_ready(inst: Instance, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not inst.alive():
            inst.error = f"exited at start: {tail(inst.log)}"
            return
        if all(port_open(p) for p in inst.inner_ports + [inst.port]):
            return
        time.sleep(0.05)
    inst.error = f"not listening after {timeout:.0f}s: {tail(inst.log)}"


# --------------------------------------------------------------------------- load generators

WRK_LUA = """\
-- Written by bench/runner.py: request shape + one JSON line of results.
{request}
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('BENCHJSON {{"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d,' ..
    '"p50":%d,"p95":%d,"p99":%d,"p999":%d,"mean":%.1f,"max":%d}}\\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status,
    e.timeout, latency:percentile(50), latency:percentile(95), latency:percentile(99),
    latency:percentile(99.9), latency.mean, latency.max))
end
"""


class LoadGen:
    def __init__(self, ctx: Ctx):
        self.ctx = ctx
        self.wrk = shutil.which("wrk")
        self.oha = shutil.which("oha") or (str(Path.home() / ".cargo/bin/oha")
                                           if (Path.home() / ".cargo/bin/oha").exists() else None)
        self.scripts: dict[str, Path] = {}
        self.bodies: dict[str, Path] = {}
        self.examples: dict[str, list[str]] = {}
        self.current: subprocess.Popen | None = None

    def _script(self, wl: Workload) -> Path:
        if wl.name not in self.scripts:
            req = ""
            if wl.body_size:
                req = (f'wrk.method = "{wl.method}"\n'
                       f'wrk.body = string.rep("u", {wl.body_size})\n'
                       'wrk.headers["Content-Type"] = "application/octet-stream"\n')
            p = self.ctx.cfg / f"wrk-{wl.name}.lua"
            p.write_text(WRK_LUA.format(request=req))
            self.scripts[wl.name] = p
        return self.scripts[wl.name]

    def _body(self, wl: Workload) -> Path:
        if wl.name not in self.bodies:
            p = self.ctx.cfg / f"body-{wl.name}.bin"
            p.write_bytes(b"u" * wl.body_size)
            self.bodies[wl.name] = p
        return self.bodies[wl.name]

    def _run(self, argv: list[str], timeout: float) -> tuple[str, float]:
        if self.ctx.client_cpus:
            argv = ["taskset", "-c", self.ctx.client_cpus] + argv
        ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             stdin=subprocess.DEVNULL, start_new_session=True)
        self.current = _track(p)
        try:
            out, err = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            stop_process(p, signal.SIGKILL, 1)
            raise RuntimeError(f"load generator timed out: {' '.join(argv)}")
        finally:
            _untrack(p)
            self.current = None
        ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
        if p.returncode != 0:
            raise RuntimeError(f"{argv[0]} exit {p.returncode}: {err.decode(errors='replace')[-300:]}")
        return out.decode(errors="replace"), cpu

    def wrk_closed(self, url: str, wl: Workload, conc: int, seconds: int) -> dict:
        argv = [self.wrk, "-t1", f"-c{conc}", f"-d{seconds}s", "--timeout", "10s",
                "-s", str(self._script(wl)), url]
        self.examples.setdefault(f"closed/{wl.name}", argv)
        out, cpu = self._run(argv, timeout=seconds + 30)
        m = re.search(r"^BENCHJSON (.*)$", out, re.M)
        if not m:
            raise RuntimeError(f"no result from wrk: {out[-300:]}")
        d = json.loads(m.group(1))
        n = d["requests"]
        secs = d["duration_us"] / 1e6
        return {
            "requests": n, "seconds": secs, "rps": n / secs if secs else 0.0,
            "errors": d["connect"] + d["read"] + d["write"] + d["timeout"],
            "error_kinds": {k: d[k] for k in ("connect", "read", "write", "timeout") if d[k]},
            "bad_status": d["status"],
            "bytes_per_req": d["bytes"] / n if n else 0,
            "lat_ms": {"p50": d["p50"] / 1e3, "p95": d["p95"] / 1e3, "p99": d["p99"] / 1e3,
                       "p99.9": d["p999"] / 1e3, "mean": d["mean"] / 1e3, "max": d["max"] / 1e3},
            "client_cpu_s": cpu,
        }

    def oha_run(self, url: str, wl: Workload, conc: int, seconds: float, rate: float | None,
                tag: str | None = None) -> dict:
        argv = [self.oha, "--no-tui", "--output-format", "json", "-z", f"{int(seconds * 1000)}ms",
                "-c", str(conc), "-w", "--worker-threads", "1"]
        if rate:
            argv += ["-q", str(rate), "--latency-correction"]
        if wl.body_size:
            argv += ["-m", wl.method, "-D", str(self._body(wl)), "-T", "application/octet-stream"]
        argv.append(url)
        if tag:
            self.examples.setdefault(f"{tag}/{wl.name}", argv)
        out, cpu = self._run(argv, timeout=seconds + 60)
        d = json.loads(out)
        s = d["summary"]
        codes = d.get("statusCodeDistribution") or {}
        ok = sum(v for k, v in codes.items() if k.startswith("2"))
        bad = sum(v for k, v in codes.items() if not k.startswith("2"))
        errs = sum(v for k, v in (d.get("errorDistribution") or {}).items()
                   if "aborted due to deadline" not in k)
        lp = d.get("latencyPercentiles") or {}

        def ms(k):
            v = lp.get(k)
            return v * 1e3 if v is not None else None

        secs = s.get("total") or seconds
        return {
            "requests": ok + bad, "seconds": secs, "rps": (ok + bad) / secs if secs else 0.0,
            "errors": errs, "bad_status": bad,
            "bytes_per_req": s.get("sizePerRequest") or 0,
            "lat_ms": {"p50": ms("p50"), "p95": ms("p95"), "p99": ms("p99"), "p99.9": ms("p99.9"),
                       "mean": (s.get("average") or 0) * 1e3, "max": (s.get("slowest") or 0) * 1e3},
            "client_cpu_s": cpu,
        }


# --------------------------------------------------------------------------- sampling


def cpu_stat() -> tuple[int, int, int]:
    """(busy, total, steal) jiffies over all CPUs from /proc/stat."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    user, nice, system, idle, iowait, irq, softirq, steal = (v + [0] * 8)[:8]
    busy = user + nice + system + irq + softirq + steal
    return busy, busy + idle + iowait, steal


class RssSampler:
    """Peak RSS of a server's workers and of its whole process tree while runs last."""

    def __init__(self, inst: Instance, interval: float = 0.2):
        self.inst = inst
        self.interval = interval
        self.peak_worker = 0
        self.peak_total = 0

    def sample(self):
        per = [rss_kib(p) for p in self.inst.worker_pids()]
        if per:
            self.peak_worker = max(self.peak_worker, max(per))
        self.peak_total = max(self.peak_total, sum(rss_kib(p) for p in self.inst.pids()))

    @contextlib.contextmanager
    def during(self):
        stop = threading.Event()

        def loop():
            while not stop.is_set():
                self.sample()
                stop.wait(self.interval)

        t = threading.Thread(target=loop, daemon=True)
        t.start()
        try:
            yield self
        finally:
            stop.set()
            t.join()


# --------------------------------------------------------------------------- limits


def run_floor(ctx: Ctx, wl: Workload) -> dict:
    """Python floor for one workload: the C++ program when present, the Python one always."""
    args = ["--working-dir", str(APPS), wl.target, "--method", wl.method, "--path", wl.path,
            "--body-size", str(wl.body_size)]
    pin = ["taskset", "-c", ctx.server_cpus] if ctx.server_cpus else []
    res: dict = {}
    py = pin + [sys.executable, str(BENCH / "pyfloor.py"), "--target-seconds",
                str(ctx.args.floor_seconds)] + args
    try:
        out = subprocess.run(py, capture_output=True, text=True, timeout=120, env=ctx.env, cwd=APPS)
        res["python"] = json.loads(out.stdout.strip().splitlines()[-1])
        res["python"]["command"] = py
    except Exception as e:  # noqa: BLE001 - reported, not fatal
        res["python"] = {"error": str(e)[-300:]}
    if ctx.args.pyfloor and os.access(ctx.args.pyfloor, os.X_OK):
        # Three short invocations, the fastest reported (same rule as pyfloor.py's batches).
        # The first try is sized from the Python floor (scaled down in case the C++ call is
        # much slower), the next ones from what the first measured.
        per_try = ctx.args.floor_seconds / 3
        per = res.get("python", {}).get("ns_per_call") or 1e5
        iters = max(10, int(per_try * 1e9 / per / 4))
        tries = []
        try:
            for _ in range(3):
                cpp = pin + [ctx.args.pyfloor, "--iterations", str(iters)] + args
                out = subprocess.run(cpp, capture_output=True, text=True, timeout=120,
                                     env=ctx.env, cwd=APPS)
                if out.returncode != 0 or not out.stdout.strip():
                    raise RuntimeError(f"exit {out.returncode}: {out.stderr.strip()[-300:]}")
                tries.append(json.loads(out.stdout.strip().splitlines()[-1]))
                iters = max(10, int(per_try * 1e9 / tries[-1]["ns_per_call"]))
            best = min(tries, key=lambda t: t["ns_per_call"])
            res["cpp"] = dict(best, command=cpp, tries_ns=[t["ns_per_call"] for t in tries])
        except Exception as e:  # noqa: BLE001
            res["cpp"] = {"error": f"{e} {getattr(e, 'stderr', '') or ''}"[-300:]}
    else:
        res["cpp"] = {"error": "appserver-bench-pyfloor not available"}
    return res


# --------------------------------------------------------------------------- plan


@dataclass
class Plan:
    workloads: list[str]
    servers: list[str]
    conc: list[int]
    runs: int
    duration: int  # closed-loop run, whole seconds (wrk)
    warmup: float  # per point
    open_fractions: list[float]
    open_duration: float
    open_warmup: float
    open_conc: int
    with_ceiling: bool
    per_run_overhead: float = 0.06  # process start, JSON, /proc reads (measured)
    notes: list[str] = field(default_factory=list)

    def budget(self) -> dict:
        nsrv = len(self.servers)
        closed_points = len(self.workloads) * nsrv * len(self.conc)
        if self.with_ceiling and "hello" in self.workloads:
            closed_points += len(self.conc)
        closed = closed_points * (self.warmup + self.runs * self.duration
                                  + (self.runs + 1) * self.per_run_overhead)
        open_points = len(self.workloads) * nsrv * len(self.open_fractions)
        opn = open_points * (self.open_warmup + self.runs * self.open_duration
                             + (self.runs + 1) * self.per_run_overhead)
        if self.open_fractions:  # oha closed-loop probe of the base server per workload
            opn += len(self.workloads) * (self.open_duration + self.per_run_overhead)
        setup = len(self.workloads) * 4.0  # start, validate, idle RSS, stop
        floors = len(self.workloads) * 3.5
        return {"closed_points": closed_points, "open_points": open_points,
                "closed_s": closed, "open_s": opn, "setup_s": setup + floors,
                "total_s": closed + opn + setup + floors}


def make_plan(args) -> Plan:
    if args.quick:
        d = dict(conc=[64], runs=1, duration=1, warmup=0.3, open_fractions=[0.5, 0.9],
                 open_duration=1.0, open_warmup=0.2)
    else:
        d = dict(conc=[1, 8, 64, 256], runs=3, duration=2, warmup=0.5, open_fractions=[0.5, 0.9],
                 open_duration=1.5, open_warmup=0.3)
    if args.concurrency:
        d["conc"] = [int(x) for x in args.concurrency.split(",")]
    for key in ("runs", "duration", "warmup", "open_duration", "open_warmup"):
        if getattr(args, key) is not None:
            d[key] = getattr(args, key)
    if args.open_fractions:
        d["open_fractions"] = [float(x) for x in args.open_fractions.split(",")]
    return Plan(workloads=args.workloads.split(","), servers=args.servers.split(","),
                open_conc=args.open_connections, with_ceiling=True, **d)


# --------------------------------------------------------------------------- environment


def sh(argv: list[str], timeout: float = 20) -> str:
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
        return (r.stdout + r.stderr).strip()
    except Exception as e:  # noqa: BLE001
        return f"n/a ({e})"


def machine_info(ctx: Ctx) -> dict:
    cpu = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = "?"
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal"):
                mem = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    try:
        debian = Path("/etc/debian_version").read_text().strip()
    except OSError:
        debian = "?"
    return {
        "cpu": cpu, "cpus": os.cpu_count(), "memory": mem, "kernel": platform.release(),
        "os": f"Debian {debian}", "loadavg_at_start": os.getloadavg(),
        "server_cpus": ctx.server_cpus or "not pinned", "client_cpus": ctx.client_cpus or "not pinned",
        "virtualization": sh(["systemd-detect-virt"]) if shutil.which("systemd-detect-virt") else "?",
    }


def versions(ctx: Ctx, lg: LoadGen) -> dict:
    import django

    v = {
        "python": platform.python_version(),
        "django": django.get_version(),
        "granian": sh(["granian", "--version"]),
        "gunicorn": sh(["gunicorn", "--version"]),
        "uwsgi": sh(["uwsgi", "--version"]),
        "nginx": sh(["nginx", "-v"]),
        "haproxy": sh(["haproxy", "-v"]).splitlines()[0] if shutil.which("haproxy") else "n/a",
        "wrk": sh([lg.wrk, "-v"]).splitlines()[0] if lg.wrk else "n/a",
        "oha": sh([lg.oha, "--version"]) if lg.oha else "n/a",
    }
    if ctx.args.appserver and os.access(ctx.args.appserver, os.X_OK):
        rev = sh(["git", "-C", str(REPO), "describe", "--always", "--dirty"])
        v["appserver"] = f"{ctx.args.appserver} (git {rev})"
    else:
        v["appserver"] = "n/a"
    return v


def resolve_appserver(args) -> None:
    """Fill args.appserver/ceiling/pyfloor; build the release preset if the binary is missing."""
    default = REPO / "build" / "release" / "appserver"
    if not args.appserver:
        if not default.exists() and not args.no_build and (REPO / "CMakeLists.txt").exists():
            print("== building appserver (release preset) ...", flush=True)
            log = BENCH / "results" / "build.log"
            log.parent.mkdir(parents=True, exist_ok=True)
            with open(log, "w") as f:
                ok = (subprocess.run(["cmake", "--preset", "release"], cwd=REPO, stdout=f,
                                     stderr=subprocess.STDOUT).returncode == 0
                      and subprocess.run(["cmake", "--build", "--preset", "release", "-j2"],
                                         cwd=REPO, stdout=f, stderr=subprocess.STDOUT).returncode == 0)
            if not ok:
                print(f"   build failed (see {log}); appserver will be n/a", flush=True)
        args.appserver = str(default) if default.exists() else None
    if args.appserver:
        args.appserver = str(Path(args.appserver).resolve())
    base = Path(args.appserver).parent if args.appserver else default.parent

    def beside(name: str) -> str:  # next to the binary, or where bench/native/ builds them
        for d in (base, base / "bench" / "native", default.parent, default.parent / "bench" / "native"):
            if os.access(d / name, os.X_OK):
                return str(d / name)
        return str(base / name)

    if not args.ceiling:
        args.ceiling = beside("appserver-bench-ceiling")
    if not args.pyfloor:
        args.pyfloor = beside("appserver-bench-pyfloor")
    for k in ("appserver", "ceiling", "pyfloor"):
        p = getattr(args, k)
        setattr(args, k, str(Path(p).resolve()) if p and os.access(p, os.X_OK) else None)


def ensure_django_db(ctx: Ctx) -> None:
    db = APPS / "djbench" / "db.sqlite3"
    if db.exists():
        return
    for cmd in (["migrate", "--noinput", "-v0"], ["seed_items"]):
        subprocess.run([sys.executable, "manage.py"] + cmd, cwd=APPS, env=ctx.env, check=True)


# --------------------------------------------------------------------------- main loop


def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


class Runner:
    def __init__(self, ctx: Ctx, plan: Plan, lg: LoadGen):
        self.ctx, self.plan, self.lg = ctx, plan, lg
        self.results: dict = {"runs": [], "floors": {}, "status": {}, "rss": {}, "open_rates": {}}
        self.done_points = 0
        self.t0 = time.monotonic()
        b = plan.budget()
        self.total_points = b["closed_points"] + b["open_points"]

    def progress(self, msg: str) -> None:
        el = time.monotonic() - self.t0
        print(f"[{el:6.0f}s {self.done_points:3d}/{self.total_points}] {msg}", flush=True)

    def measure(self, inst: Instance, wl: Workload, phase: str, conc: int, run: int,
                rate: float | None = None, fraction: float | None = None,
                sampler: RssSampler | None = None) -> dict:
        url = f"http://{HOST}:{inst.port}{wl.path}"
        busy0, tot0, steal0 = cpu_stat()
        srv0 = inst.cpu_ticks()
        rec = {"phase": phase, "workload": wl.name, "server": inst.name, "conc": conc,
               "rate": rate, "fraction": fraction, "run": run}
        try:
            if phase == "closed":
                r = self.lg.wrk_closed(url, wl, conc, self.plan.duration)
            else:
                r = self.lg.oha_run(url, wl, conc, self.plan.open_duration, rate, tag="open")
        except RuntimeError as e:
            rec["error"] = str(e)[-300:]
            return rec
        srv1 = inst.cpu_ticks()
        busy1, tot1, steal1 = cpu_stat()
        rec.update(r)
        server_s = (srv1 - srv0) / CLK_TCK
        busy_s, total_s = (busy1 - busy0) / CLK_TCK, (tot1 - tot0) / CLK_TCK
        rec["server_cpu_s"] = server_s
        # Near 100% the load generator, not the server, sets the pace.
        rec["client_util"] = r["client_cpu_s"] / r["seconds"] if r["seconds"] else None
        rec["server_cpu_us_per_req"] = server_s * 1e6 / r["requests"] if r["requests"] else None
        # CPU used by anything but the server and the load generator, as % of all CPUs.
        rec["foreign_cpu_pct"] = (max(0.0, busy_s - server_s - r["client_cpu_s"]) * 100 / total_s
                                  if total_s else None)
        rec["steal_pct"] = (steal1 - steal0) * 100 / (tot1 - tot0) if tot1 > tot0 else None
        if r["requests"] and r["bytes_per_req"] and r["bytes_per_req"] < wl.min_response_bytes():
            rec["short_responses"] = True
        if not inst.alive():
            rec["error"] = f"server died: {tail(inst.log)}"
        return rec

    def warm(self, inst: Instance, wl: Workload, conc: int, rate: float | None, seconds: float):
        if seconds <= 0:
            return
        try:
            if not self.lg.oha:  # wrk-only fallback: whole seconds
                self.lg.wrk_closed(f"http://{HOST}:{inst.port}{wl.path}", wl, conc, 1)
                return
            self.lg.oha_run(f"http://{HOST}:{inst.port}{wl.path}", wl, conc, seconds, rate)
        except RuntimeError as e:
            print(f"   warm-up of {inst.name} failed: {e}", flush=True)

    def record(self, rec: dict) -> None:
        self.results["runs"].append(rec)
        if rec.get("error"):
            print(f"   ! {rec['server']} {rec['workload']} {rec['phase']} c={rec['conc']}: "
                  f"{rec['error']}", flush=True)

    def point(self, insts: list[Instance], wl: Workload, phase: str, conc: int,
              rate: float | None, fraction: float | None, samplers: dict[str, RssSampler]):
        for inst in insts:  # warm-up, each server, at this point's load
            self.warm(inst, wl, conc, rate,
                      self.plan.warmup if phase == "closed" else self.plan.open_warmup)
        per: dict[str, list[float]] = {i.name: [] for i in insts}
        for r in range(self.plan.runs):
            k = r % len(insts)
            for inst in insts[k:] + insts[:k]:  # rotate the order each round
                if not inst.alive():
                    continue
                smp = samplers.get(inst.name)
                with smp.during() if smp else contextlib.nullcontext():
                    rec = self.measure(inst, wl, phase, conc, r, rate, fraction)
                self.record(rec)
                if rec.get("rps") is not None:
                    per[inst.name].append(rec["rps"])
        self.done_points += len(insts)
        what = f"c={conc}" if phase == "closed" else f"{rate:.0f} rps ({fraction:.0%})"
        summary = ", ".join(f"{n}={median(v):.0f}" for n, v in per.items() if v)
        self.progress(f"{wl.name} {phase} {what}: {summary}")

    def workload(self, wl: Workload) -> None:
        ctx, plan = self.ctx, self.plan
        self.progress(f"== {wl.name}: Python floor")
        self.results["floors"][wl.name] = run_floor(ctx, wl)
        names = [s for s in plan.servers if s != "appserver" or ctx.args.appserver]
        status = {s: "n/a: appserver binary not found" for s in plan.servers if s not in names}
        with_ceiling = wl.name == "hello" and plan.with_ceiling
        if with_ceiling and not ctx.args.ceiling:
            status["ceiling"] = "n/a: appserver-bench-ceiling not found"
        elif with_ceiling:
            names.append("ceiling")
        insts: list[Instance] = []
        try:
            for n in names:
                try:
                    insts.append(start_server(ctx, n, wl))
                except OSError as e:
                    status[n] = f"n/a: could not start: {e}"
            for inst in insts:
                ctx.commands.setdefault(f"{inst.name}/{wl.name}", [shlex.join(a) for a in inst.argvs])
            ready_threads = [threading.Thread(target=wait_ready, args=(i,)) for i in insts]
            for t in ready_threads:
                t.start()
            for t in ready_threads:
                t.join()
            good: list[Instance] = []
            for inst in insts:
                for attempt in range(4):  # the same answer from everyone before timing
                    if inst.error and attempt == 0:
                        break
                    inst.error = None
                    try:
                        st, body = http_request(inst.port, wl)
                        err = None if inst.name == "ceiling" else wl.check(st, body)
                        if inst.name == "ceiling" and st != 200:
                            err = f"status {st}"
                        if err:
                            inst.error = f"wrong response: {err}"
                    except (OSError, http.client.HTTPException) as e:
                        inst.error = f"request failed: {e}"
                    if not inst.error:
                        break
                    time.sleep(0.5)
                if inst.error:
                    status[inst.name] = f"n/a: {inst.error}"
                    print(f"   ! {inst.name}: {inst.error}", flush=True)
                    inst.stop()
                else:
                    status[inst.name] = "ok"
                    good.append(inst)
            time.sleep(0.5)
            rss: dict[str, dict] = {}
            samplers: dict[str, RssSampler] = {}
            for inst in good:
                wp = inst.worker_pids()
                rss[inst.name] = {
                    "workers": len(wp),
                    "idle_worker_kib": max((rss_kib(p) for p in wp), default=0),
                    "idle_total_kib": sum(rss_kib(p) for p in inst.pids()),
                }
                samplers[inst.name] = RssSampler(inst)
            self.results["status"][wl.name] = status
            self.results["rss"][wl.name] = rss

            # closed loop: throughput vs concurrency
            for conc in plan.conc:
                self.point(good, wl, "closed", conc, None, None, samplers)
            for inst in good:
                if inst.name in samplers:
                    rss[inst.name]["load_worker_kib"] = samplers[inst.name].peak_worker
                    rss[inst.name]["load_total_kib"] = samplers[inst.name].peak_total

            # open loop: latency at fixed fractions of Granian's best throughput
            srv = [i for i in good if i.name != "ceiling"]
            best = {}
            for i in srv:
                meds = []
                for conc in plan.conc:
                    m = median([r["rps"] for r in self.results["runs"]
                                if r["workload"] == wl.name and r["server"] == i.name
                                and r["phase"] == "closed" and r["conc"] == conc and "rps" in r
                                and not r.get("error")])
                    if m:
                        meds.append(m)
                if meds:
                    best[i.name] = max(meds)
            if "granian" in best:
                base_name = "granian"
            elif best:
                base_name = max(best, key=best.get)
            else:
                base_name = None
            if base_name and plan.open_fractions:
                # What the open-loop tool itself can drive through that server: oha costs more
                # per request than wrk, so 90% of a wrk maximum can be more than oha sustains.
                inst = next(i for i in srv if i.name == base_name)
                probe = []
                for _ in range(1):
                    try:
                        probe.append(self.lg.oha_run(f"http://{HOST}:{inst.port}{wl.path}", wl,
                                                     plan.open_conc, plan.open_duration, None,
                                                     tag="probe")["rps"])
                    except RuntimeError as e:
                        print(f"   oha probe failed: {e}", flush=True)
                oha_max = max(probe) if probe else None
                base = min(best[base_name], oha_max or best[base_name])
                rates = {str(f): max(1, round(base * f)) for f in plan.open_fractions}
                self.results["open_rates"][wl.name] = {
                    "base_server": base_name, "base_rps": base, "wrk_best_rps": best[base_name],
                    "oha_closed_rps": oha_max, "rates": rates}
                for f in plan.open_fractions:
                    self.point(srv, wl, "open", plan.open_conc, rates[str(f)], f, {})
        finally:
            stop_threads = [threading.Thread(target=i.stop) for i in insts]
            for t in stop_threads:
                t.start()
            for t in stop_threads:
                t.join()

    def run(self) -> dict:
        for name in self.plan.workloads:
            self.workload(WORKLOADS[name])
        return self.results


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def source_commit() -> dict:
    """The commit the measured build comes from, and whether tracked files differed from
    it (the report must name what it describes)."""
    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip()
        status = subprocess.run(["git", "-C", str(root), "status", "--porcelain",
                                 "--untracked-files=no", "--", ".", ":!docs/benchmarks.md",
                                 ":!docs/benchmarks"],
                                capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return {}
    return {"sha": head, "dirty": bool(status)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="Run the appserver benchmark matrix.",
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smoke run, about 3 minutes")
    ap.add_argument("--appserver", help="appserver binary (default build/release/appserver, built "
                                        "with the release preset if missing)")
    ap.add_argument("--ceiling", help="HTTP ceiling binary (default: next to appserver)")
    ap.add_argument("--pyfloor", help="C++ Python-floor binary (default: next to appserver)")
    ap.add_argument("--no-build", action="store_true", help="never build appserver")
    ap.add_argument("--servers", default=",".join(ALL_SERVERS))
    ap.add_argument("--workloads", default=",".join(WORKLOADS))
    ap.add_argument("--workers", type=int, default=1, help="worker processes, every server")
    ap.add_argument("--threads", type=int, default=4, help="Python threads per worker, every server")
    ap.add_argument("--concurrency", help="closed-loop connections, comma separated")
    ap.add_argument("--runs", type=int, help="measured runs per point (median reported)")
    ap.add_argument("--duration", type=int, help="closed-loop run length, whole seconds (wrk)")
    ap.add_argument("--warmup", type=float, help="warm-up per server per closed-loop point, s")
    ap.add_argument("--open-fractions", help="open-loop rates as fractions of Granian's best rps")
    ap.add_argument("--open-duration", type=float, help="open-loop run length, s")
    ap.add_argument("--open-warmup", type=float, help="warm-up per server per open-loop point, s")
    ap.add_argument("--open-connections", type=int, default=64, help="oha -c for open loop")
    ap.add_argument("--floor-seconds", type=float, default=None, help="time per Python floor")
    ap.add_argument("--server-cpus", default=None, help="taskset list for servers (default 1)")
    ap.add_argument("--client-cpus", default=None, help="taskset list for the load generator (0)")
    ap.add_argument("--no-pin", action="store_true", help="do not pin anything")
    ap.add_argument("--out", default=str(REPO / "docs" / "benchmarks.md"), help="report file")
    ap.add_argument("--results-dir", default=None, help="default bench/results/<UTC stamp>")
    ap.add_argument("--dry-run", action="store_true", help="print the plan and budget, run nothing")
    args = ap.parse_args(argv)

    ncpu = os.cpu_count() or 1
    if args.no_pin or ncpu < 2:
        args.server_cpus = args.client_cpus = None
    else:
        args.server_cpus = args.server_cpus or str(ncpu - 1)
        args.client_cpus = args.client_cpus or "0"
    if args.floor_seconds is None:
        args.floor_seconds = 0.2 if args.quick else 0.5
    unknown = [w for w in args.workloads.split(",") if w not in WORKLOADS]
    unknown += [s for s in args.servers.split(",") if s not in ALL_SERVERS]
    if unknown:
        ap.error(f"unknown workload/server: {unknown}")

    plan = make_plan(args)
    b = plan.budget()
    print(f"== plan: {len(plan.workloads)} workloads x {len(plan.servers)} servers; closed loop "
          f"c={plan.conc}, {plan.runs} run(s) x {plan.duration}s + {plan.warmup}s warm-up per point; "
          f"open loop at {plan.open_fractions} of Granian's best, {plan.runs} x {plan.open_duration}s"
          f" + {plan.open_warmup}s warm-up", flush=True)
    print(f"== budget: {b['closed_points']} closed points ~{b['closed_s'] / 60:.1f} min + "
          f"{b['open_points']} open points ~{b['open_s'] / 60:.1f} min + start/stop/floors "
          f"~{b['setup_s'] / 60:.1f} min = ~{b['total_s'] / 60:.1f} min (excluding setup/build)",
          flush=True)
    if args.dry_run:
        return 0

    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    out_dir = Path(args.results_dir or BENCH / "results" / stamp).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)

    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, _raise_interrupt)

    resolve_appserver(args)
    ctx = Ctx(args, out_dir)
    lg = LoadGen(ctx)
    if not lg.wrk:
        print("!! wrk is required (run bench/setup)", file=sys.stderr)
        return 2
    if not lg.oha:
        print("!! oha not found: open-loop latency runs are skipped (wrk cannot do open loop)",
              flush=True)
        plan.open_fractions = []
    ensure_django_db(ctx)
    print(f"== appserver: {args.appserver or 'n/a'}; ceiling: {args.ceiling or 'n/a'}; "
          f"C++ floor: {args.pyfloor or 'n/a'}; pin servers={ctx.server_cpus} "
          f"client={ctx.client_cpus}; results in {out_dir}", flush=True)

    busy0, tot0, _ = cpu_stat()
    time.sleep(1.0)
    busy1, tot1, _ = cpu_stat()
    idle_noise = (busy1 - busy0) * 100 / max(1, tot1 - tot0)
    if idle_noise > 10:
        print(f"!! the machine is busy before we start: {idle_noise:.0f}% CPU in use by other "
              "processes; numbers will be noisy (see the Noise line of the report)", flush=True)
    started = dt.datetime.now(dt.timezone.utc)
    meta = {
        "started": started.isoformat(timespec="seconds"),
        "commit": source_commit(),
        "argv": ["bench/run"] + (argv if argv is not None else sys.argv[1:]),
        "mode": "quick" if args.quick else "full",
        "config": {"workers": args.workers, "threads": args.threads, "conc": plan.conc,
                   "runs": plan.runs, "duration_s": plan.duration, "warmup_s": plan.warmup,
                   "open_fractions": plan.open_fractions, "open_duration_s": plan.open_duration,
                   "open_warmup_s": plan.open_warmup, "open_connections": plan.open_conc,
                   "servers": plan.servers, "workloads": plan.workloads,
                   "floor_seconds": args.floor_seconds},
        "budget": b,
        "machine": dict(machine_info(ctx), busy_pct_before_start=idle_noise),
        "versions": versions(ctx, lg),
    }
    runner = Runner(ctx, plan, lg)
    interrupted = None
    try:
        runner.run()
    except KeyboardInterrupt as e:
        interrupted = f"interrupted ({e or 'Ctrl-C'})"
        print(f"!! {interrupted}; stopping everything", flush=True)
    finally:
        stop_all_tracked()
    res = runner.results
    meta["finished"] = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    meta["elapsed_s"] = time.monotonic() - runner.t0
    meta["commands"] = ctx.commands
    meta["configs"] = ctx.configs
    meta["loadgen_commands"] = {k: shlex.join(v) for k, v in lg.examples.items()}
    meta["interrupted"] = interrupted
    meta["loadavg_at_end"] = os.getloadavg()
    res["meta"] = meta
    (out_dir / "results.json").write_text(json.dumps(res, indent=1))
    print(f"== measured in {meta['elapsed_s'] / 60:.1f} min (budget ~{b['total_s'] / 60:.1f}); "
          f"raw results: {out_dir / 'results.json'}", flush=True)
    if interrupted:
        return 130
    import report  # bench/report.py

    report.write_report(res, Path(args.out), out_dir)
    print(f"== report: {args.out}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
