#!/usr/bin/env python3
"""Soak: runs build/release/appserver under bench/soak/driver.py's mixed load for MINUTES and
watches the memory and descriptors of the master and of every worker.

    python3 bench/soak/run.py MINUTES [--out DIR] [--png FILE] [--md FILE] [--clients N]
                              [--sample-every S] [--seed N] [--binary PATH] [SERVER OPTIONS...]

Any option this script does not know goes to the server and replaces the default of the same
name (DEFAULT_SERVER below), e.g. `--max-requests 20000` or `--workers 4`.

Steps: start the server on free loopback ports (its log, access log and every CSV go to DIR,
default build/soak/<timestamp>/), wait until the health path answers and the metrics say every
worker is up, record the idle descriptors, run the driver for MINUTES while sampling
/proc every S seconds, wait until no connection is open and no worker is draining, record the
idle descriptors again, stop the server with SIGTERM, then write samples.csv, procs.csv,
summary.json, summary.md and the plot, and print the summary.

Exit status 0 only when: the master ran to the end and exited 0 after SIGTERM; no worker
crashed or failed to boot; the driver saw no failure of a well-formed request and no
malformed request answered otherwise than documented; every series passed FLATNESS_RULE; the
idle workers and master hold no more descriptors after the load than before it.
"""

import argparse
import csv
import datetime
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter, defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
HOST = "127.0.0.1"

# The server's options unless given on the command line. Small timeouts so the slow and
# stalled clients reach them within the run; --max-requests makes workers get recycled.
DEFAULT_SERVER = {
    "--workers": "2",
    "--blocking-threads": "4",
    "--request-timeout": "2",
    "--keep-alive-timeout": "3",
    "--header-read-timeout": "3",
    "--read-timeout": "5",
    "--write-timeout": "5",
    "--graceful-timeout": "10",
    "--max-requests": "300000",
    "--max-requests-jitter": "30000",
    "--health-path": "/healthz",
    "--log-level": "info",
}
FLAGS = {"--metrics", "--factory", "--lazy-apps", "--reload", "--proxy-protocol", "--debug"}
RSS_REL, RSS_ABS_MIB = 0.10, 4.0
FD_REL, FD_ABS = 0.10, 4
FLATNESS_RULE = (
    f"the second quarter of the run is the start, after warm-up (the first quarter); "
    f"the last quarter is the end. Flat: median(end) <= median(start) * {1 + RSS_REL:.2f} + "
    f"{RSS_ABS_MIB:g} MiB for RSS and <= median(start) * {1 + FD_REL:.2f} + {FD_ABS} for open fds, "
    f"for the master, for each worker position (its serving process at each sample) and for all "
    f"workers together; and each worker process that lived through at least 60 samples passes the "
    f"same RSS rule over its own life (its second quarter against its last). Idle: once the load "
    f"stopped and every connection closed, the master and each worker hold no more fds than when "
    f"idle before the load (the fewest seen over 1 s before; after, polled for up to 10 s)"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def split_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("minutes", type=float)
    ap.add_argument("--out", help="output directory (default build/soak/<timestamp>)")
    ap.add_argument("--png", help="also write the plot here (e.g. docs/soak.png)")
    ap.add_argument("--md", help="also write the summary as Markdown here (e.g. docs/soak.md)")
    ap.add_argument("--clients", type=int, default=16, help="concurrent driver tasks (default 16)")
    ap.add_argument("--sample-every", type=float, default=2.0, help="seconds between /proc samples")
    ap.add_argument("--seed", type=int, default=None, help="driver's random seed")
    ap.add_argument("--binary", default=str(ROOT / "build" / "release" / "appserver"))
    return ap.parse_known_args(argv)


def server_options(extra: list[str]) -> dict:
    """DEFAULT_SERVER with the user's options laid over it (order kept, --opt=value accepted)."""
    opts = dict(DEFAULT_SERVER)
    i = 0
    while i < len(extra):
        arg = extra[i]
        if not arg.startswith("--"):
            raise SystemExit(f"soak: unexpected argument {arg!r} (server options start with --)")
        if "=" in arg:
            name, value = arg.split("=", 1)
        elif arg in FLAGS:
            name, value = arg, None
        else:
            if i + 1 >= len(extra):
                raise SystemExit(f"soak: {arg} needs a value")
            name, value = arg, extra[i + 1]
            i += 1
        for fixed in ("--host", "--port", "--uds", "--fd", "--metrics-port", "--metrics-address", "--access-log"):
            if name == fixed:
                raise SystemExit(f"soak: {name} is chosen by the soak itself")
        opts[name] = value
        i += 1
    return opts


def seconds(opts: dict, name: str, default: float) -> float:
    value = opts.get(name)
    return float(value) if value not in (None, "") else default


# ---------------------------------------------------------------------------------------------
# /proc and the metrics endpoint

def proc_status(pid: int) -> dict:
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "PPid"):
                out[key] = int(value.split()[0])
    return out


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def children(pid: int) -> list[int]:
    kids = set()
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            try:
                with open(f"/proc/{pid}/task/{tid}/children") as f:
                    kids.update(int(x) for x in f.read().split())
            except FileNotFoundError:
                pass
    except FileNotFoundError:
        pass
    return sorted(kids)


def comm(pid: int) -> str:
    with open(f"/proc/{pid}/comm") as f:
        return f.read().strip()


def snapshot(master: int) -> list[dict]:
    """RSS and fds of the master and each child; position from the worker's comm 'appserver wN'."""
    rows = []
    for pid in [master] + children(master):
        try:
            name = comm(pid)
            st = proc_status(pid)
            fds = fd_count(pid)
        except (FileNotFoundError, ProcessLookupError):
            continue  # left between listing and reading
        if pid == master:
            role, pos = "master", -1
        else:
            m = re.fullmatch(r"appserver w(\d+)", name)
            role, pos = ("worker", int(m.group(1))) if m else ("other", -1)
        rows.append({"pid": pid, "role": role, "pos": pos, "rss_kib": st.get("VmRSS", 0), "fds": fds})
    return rows


def settled_fds(master: int, target: dict | None, timeout: float) -> dict:
    """Each process's fewest open fds, polled every 0.1 s: {(role, pos): fds}.

    A connection that has just closed (a scrape, a probe) may still be open on the server's
    side for a moment, so one reading can be one too high. Without a target, polls for
    `timeout` seconds; with one, until every process is at or below it (else `timeout`):
    a leaked descriptor never goes, a closing one does within milliseconds.
    """
    fewest: dict = {}
    deadline = time.monotonic() + timeout
    while True:
        for r in snapshot(master):
            if r["role"] != "other":
                key = (r["role"], r["pos"])
                fewest[key] = min(fewest.get(key, r["fds"]), r["fds"])
        if time.monotonic() >= deadline:
            return fewest
        if target is not None and all(fewest.get(k, 1 << 30) <= v for k, v in target.items()):
            return fewest
        time.sleep(0.1)


def scrape(port: int, timeout: float = 5.0) -> dict:
    """The metrics endpoint's samples: {(name, frozenset(labels)): value}."""
    with urllib.request.urlopen(f"http://{HOST}:{port}/metrics", timeout=timeout) as r:
        text = r.read().decode()
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.match(r'([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)', line)
        if not m:
            continue
        labels = frozenset(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(3) or ""))
        out[(m.group(1), labels)] = float(m.group(4))
    return out


def metric_by(m: dict, name: str, label: str) -> dict:
    out: Counter = Counter()
    for (n, labels), v in m.items():
        if n == name:
            out[dict(labels).get(label, "")] += v
    return dict(out)


def metric_sum(m: dict, name: str) -> float:
    return sum(v for (n, _), v in m.items() if n == name)


def http_get(port: int, path: str, timeout: float = 2.0) -> int:
    with socket.create_connection((HOST, port), timeout=timeout) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: soak\r\nConnection: close\r\n\r\n".encode())
        head = s.recv(4096)
    m = re.match(rb"HTTP/1\.\d (\d{3})", head)
    return int(m.group(1)) if m else 0


def wait_for(what: str, predicate, timeout: float, interval: float = 0.1, alive=None):
    """Polls predicate until it returns a true value; the server's state, never a fixed sleep."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        if alive is not None and not alive():
            raise RuntimeError(f"the server exited while waiting for {what}")
        try:
            value = predicate()
            if value:
                return value
        except (OSError, ValueError) as e:
            last = e
        time.sleep(interval)
    raise RuntimeError(f"timed out after {timeout:.0f}s waiting for {what} ({last})")


# ---------------------------------------------------------------------------------------------
# Sampling thread

class Sampler(threading.Thread):
    def __init__(self, master: int, metrics_port: int, every: float, t0: float) -> None:
        super().__init__(daemon=True)
        self.master, self.metrics_port, self.every, self.t0 = master, metrics_port, every, t0
        self.stop_event = threading.Event()
        self.procs: list[dict] = []  # one row per process per sample
        self.samples: list[dict] = []  # one row per sample
        self.scrape_errors = 0

    def take(self, phase: str) -> dict:
        t = time.monotonic() - self.t0
        rows = snapshot(self.master)
        for r in rows:
            self.procs.append({"t": round(t, 2), "phase": phase, **r})
        workers = [r for r in rows if r["role"] == "worker"]
        master = next((r for r in rows if r["role"] == "master"), None)
        sample = {
            "t": round(t, 2), "phase": phase,
            "master_rss_kib": master["rss_kib"] if master else "", "master_fds": master["fds"] if master else "",
            "workers": len(workers),
            "workers_rss_kib": sum(r["rss_kib"] for r in workers), "workers_fds": sum(r["fds"] for r in workers),
            "connections_open": "", "requests_total": "",
        }
        try:  # after the fds were counted, so the scrape's own connection is not among them
            m = scrape(self.metrics_port)
            sample["connections_open"] = int(metric_sum(m, "appserver_connections_open"))
            sample["requests_total"] = int(metric_sum(m, "appserver_requests_total"))
        except OSError:
            self.scrape_errors += 1
        self.samples.append(sample)
        return sample

    def run(self) -> None:
        next_at = time.monotonic()
        while not self.stop_event.is_set():
            if not os.path.exists(f"/proc/{self.master}"):
                return
            self.take("load")
            next_at += self.every
            self.stop_event.wait(max(0.0, next_at - time.monotonic()))


# ---------------------------------------------------------------------------------------------
# Analysis

def median(xs):
    return statistics.median(xs) if xs else float("nan")


def quarter_medians(points: list[tuple[float, float]], t_start: float, t_end: float):
    """Medians of the values in the second and the last quarter of [t_start, t_end]."""
    q = (t_end - t_start) / 4
    second = [v for t, v in points if t_start + q <= t < t_start + 2 * q]
    last = [v for t, v in points if t >= t_start + 3 * q]
    return median(second), median(last)


def flat(start: float, end: float, rel: float, absolute: float) -> bool:
    return end <= start * (1 + rel) + absolute


def position_series(procs: list[dict], key: str) -> dict:
    """Per worker position, per sample time: the value of its newest (serving) process."""
    first_seen: dict = {}
    for r in procs:
        first_seen.setdefault(r["pid"], r["t"])
    by = defaultdict(dict)
    for r in procs:
        if r["role"] != "worker" or r["phase"] != "load":
            continue
        cur = by[r["pos"]].get(r["t"])
        if cur is None or first_seen[r["pid"]] > first_seen[cur[0]]:  # the successor (pids may wrap)
            by[r["pos"]][r["t"]] = (r["pid"], r[key])
    return {pos: sorted((t, v[1]) for t, v in d.items()) for pos, d in by.items()}


def analyse(sampler: Sampler, t_load0: float, t_load1: float) -> tuple[list[dict], bool]:
    """The flatness checks of FLATNESS_RULE, in MiB for RSS and in descriptors for fds."""
    checks = []
    load = [s for s in sampler.samples if s["phase"] == "load"]

    def check(name: str, points, rss: bool, t_start=t_load0, t_end=t_load1):
        if rss:
            points = [(t, v / 1024) for t, v in points]
        a, b = quarter_medians(points, t_start, t_end)
        limit = a * (1 + RSS_REL) + RSS_ABS_MIB if rss else a * (1 + FD_REL) + FD_ABS
        checks.append({"series": name, "unit": "MiB" if rss else "fds", "start": round(a, 1), "end": round(b, 1),
                       "limit": round(limit, 1), "flat": b <= limit})

    check("master RSS", [(s["t"], s["master_rss_kib"]) for s in load if s["master_rss_kib"] != ""], True)
    check("master fds", [(s["t"], s["master_fds"]) for s in load if s["master_fds"] != ""], False)
    for pos, pts in sorted(position_series(sampler.procs, "rss_kib").items()):
        check(f"worker {pos} RSS", pts, True)
    for pos, pts in sorted(position_series(sampler.procs, "fds").items()):
        check(f"worker {pos} fds", pts, False)
    check("all workers RSS", [(s["t"], s["workers_rss_kib"]) for s in load], True)
    check("all workers fds", [(s["t"], s["workers_fds"]) for s in load], False)
    # Each worker process over its own life: recycling would otherwise hide a per-request leak.
    lives = defaultdict(list)
    for r in sampler.procs:
        if r["role"] == "worker" and r["phase"] == "load":
            lives[(r["pos"], r["pid"])].append((r["t"], r["rss_kib"]))
    for (pos, pid), pts in sorted(lives.items(), key=lambda kv: kv[1][0][0]):
        if len(pts) >= 60:
            check(f"worker {pos} pid {pid} RSS over its life ({pts[-1][0] - pts[0][0]:.0f} s)", pts, True,
                  pts[0][0], pts[-1][0] + 1e-6)
    return checks, all(c["flat"] for c in checks)


def drain_starts(path: Path) -> list[float]:
    """Wall-clock times at which a replaced worker began to drain (the master's log line)."""
    out = []
    pattern = re.compile(r"^\[([^\]]+)\] \[master\] .* now serves; pid \d+ finishes its requests and leaves")
    with open(path, errors="replace") as f:
        for line in f:
            m = pattern.match(line)
            if m:
                out.append(datetime.datetime.fromisoformat(m.group(1)).timestamp())
    return out


def drain_cut_heads(drv: dict, log_path: Path) -> list[dict]:
    """The driver's slow-head failures that are 408s from a worker that had begun to drain.

    A draining worker gives a request head already begun drain_grace() (1 s) to end, not
    --header-read-timeout (Connection::shutdown_if_idle), and answers 408: a well-formed
    slow client fails at each recycling. Known and reported apart rather than failing the
    soak; only those within 2.5 s after a drain began, and only when the driver kept the
    details of every failure.
    """
    samples = [x for x in drv.get("samples", []) if x["bucket"] == "failure"]
    if len(samples) != sum(drv.get("failures", {}).values()):
        return []
    starts = drain_starts(log_path)
    return [x for x in samples
            if x["kind"] == "slow_headers" and x["detail"].startswith("status 408")
            and any(d - 0.2 <= x.get("wall", 0) <= d + 2.5 for d in starts)]


def access_log_counts(path: Path) -> tuple[int, Counter]:
    lines, classes = 0, Counter()
    pattern = re.compile(rb'\] "(?:[^"\\]|\\.)*" (\d)\d\d ')
    with open(path, "rb") as f:
        for line in f:
            lines += 1
            m = pattern.search(line)
            classes[(m.group(1).decode() + "xx") if m else "?"] += 1
    return lines, classes


def log_summary(path: Path) -> tuple[Counter, list[str]]:
    """Counts of the server log's lines by level and message shape; lines that say something died."""
    shapes, alarms = Counter(), []
    alarm = re.compile(r"killed by signal|respawning|exited with code [1-9]|killing it|terminate called|"
                       r"Fatal Python|Segmentation|AddressSanitizer|Assertion|core dumped", re.I)
    head = re.compile(r"^\[[^\]]+\] \[([^\]]+)\] \[\d+\] \[(\w+)\] (?:\[request_id=\w+\] )?(.*)$")
    with open(path, errors="replace") as f:
        for line in f:
            line = line.rstrip("\n")
            m = head.match(line)
            if not m:  # a traceback line, or something the runtime printed (a fatal error)
                if alarm.search(line):
                    alarms.append(line)
                continue
            level, msg = m.group(2), m.group(3)
            shape = re.sub(r"\d+", "N", re.sub(r"\([^)]*\)", "(...)", msg))[:110]
            shapes[(level, shape)] += 1
            if alarm.search(msg):
                alarms.append(line)
    return shapes, alarms


# ---------------------------------------------------------------------------------------------
# Plot

def plot(sampler: Sampler, t_load0: float, t_load1: float, path: Path, title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_rss, ax_fd) = plt.subplots(2, 1, figsize=(10, 6.6), sharex=True)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    lives = defaultdict(list)
    for r in sampler.procs:
        if r["role"] == "worker":
            lives[(r["pos"], r["pid"])].append(r)
    load = [s for s in sampler.samples if s["phase"] == "load"]
    minutes = lambda t: (t - t_load0) / 60  # noqa: E731
    for ax, key, total_key, scale, unit in ((ax_rss, "rss_kib", "workers_rss_kib", 1024, "RSS (MiB)"),
                                            (ax_fd, "fds", "workers_fds", 1, "open fds")):
        labelled = set()
        for (pos, pid), rows in sorted(lives.items(), key=lambda kv: kv[1][0]["t"]):
            label = f"worker {pos} (each process)" if pos not in labelled else None
            labelled.add(pos)
            ax.plot([minutes(r["t"]) for r in rows], [r[key] / scale for r in rows], lw=0.9,
                    color=colours[(pos + 1) % len(colours)], label=label)
        ax.plot([minutes(s["t"]) for s in sampler.samples if s["master_rss_kib"] != ""],
                [(s["master_rss_kib"] if key == "rss_kib" else s["master_fds"]) / scale
                 for s in sampler.samples if s["master_rss_kib"] != ""], lw=1.2, color=colours[0], label="master")
        ax.plot([minutes(s["t"]) for s in load], [s[total_key] / scale for s in load], lw=0.8, ls="--",
                color="0.35", label="all workers (sum)")
        q = (t_load1 - t_load0) / 4
        ax.axvspan(0, minutes(t_load0 + q), color="0.92", lw=0)
        for a, b in ((1, 2), (3, 4)):
            ax.axvspan(minutes(t_load0 + a * q), minutes(t_load0 + b * q), color="#e8f0fa", lw=0)
        ax.set_ylabel(unit)
        ax.set_ylim(0, ax.get_ylim()[1] * 1.2)  # room for the legend above the lines
        ax.grid(alpha=0.3)
    ax_rss.legend(loc="upper left", fontsize=8, ncol=4, framealpha=0.9)
    ax_rss.set_title(title, fontsize=10)
    ax_fd.set_xlabel("minutes since the load started (grey: warm-up; blue: the quarters compared)")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


# ---------------------------------------------------------------------------------------------

def main() -> int:
    args, extra = split_args(sys.argv[1:])
    opts = server_options(extra)
    binary = Path(args.binary)
    if not binary.exists():
        raise SystemExit(f"soak: {binary} not found (scripts/build release)")
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = (Path(args.out) if args.out else ROOT / "build" / "soak" / stamp).resolve()
    out.mkdir(parents=True, exist_ok=True)
    port, metrics_port = free_port(), free_port()
    cmd = [str(binary), "--host", HOST, "--port", str(port), "--metrics", "--metrics-port", str(metrics_port),
           "--access-log", str(out / "access.log")]
    for name, value in opts.items():
        cmd += [name] if value is None else [name, value]
    cmd += ["--working-dir", str(HERE), "app:app"]
    workers = int(opts["--workers"])
    health = opts.get("--health-path") or ""
    duration = args.minutes * 60
    try:
        commit = subprocess.run(["git", "-C", str(ROOT), "describe", "--always", "--dirty"], capture_output=True,
                                text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown"
    print(f"soak: {args.minutes:g} min at {commit}; output in {out}")
    print("soak: server: " + " ".join(cmd), flush=True)

    t0 = time.monotonic()
    log = open(out / "server.log", "wb")
    server = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    driver = None
    sampler = None
    failures: list[str] = []
    exit_code = None
    alive = lambda: server.poll() is None  # noqa: E731
    try:
        # Ready: every worker serving (metrics), and the server answers (health path or an app route).
        wait_for("the metrics endpoint", lambda: scrape(metrics_port, 1.0), 60, alive=alive)
        wait_for(f"{workers} workers up", lambda: metric_sum(scrape(metrics_port, 1.0), "appserver_worker_up") >= workers,
                 60, alive=alive)
        wait_for("an answer", lambda: http_get(port, health or "/hello") == 200, 30, alive=alive)
        wait_for(f"{workers} worker processes", lambda: sum(r["role"] == "worker" for r in snapshot(server.pid)) == workers,
                 30, alive=alive)
        sampler = Sampler(server.pid, metrics_port, args.sample_every, t0)
        sampler.take("idle_before")
        idle_before = settled_fds(server.pid, None, 1.0)
        m_before = scrape(metrics_port)

        driver_cmd = [sys.executable, str(HERE / "driver.py"), "--port", str(port), "--seconds", str(duration),
                      "--clients", str(args.clients), "--out", str(out / "driver.json"),
                      "--progress-every", str(max(10.0, min(60.0, duration / 20))),
                      "--keep-alive-timeout", str(seconds(opts, "--keep-alive-timeout", 5)),
                      "--header-read-timeout", str(seconds(opts, "--header-read-timeout", 10)),
                      "--read-timeout", str(seconds(opts, "--read-timeout", 60)),
                      "--request-timeout", str(seconds(opts, "--request-timeout", 0)),
                      "--write-timeout", str(seconds(opts, "--write-timeout", 60))]
        if args.seed is not None:
            driver_cmd += ["--seed", str(args.seed)]
        print("soak: driver: " + " ".join(driver_cmd), flush=True)
        t_load0 = time.monotonic() - t0
        sampler.start()
        driver = subprocess.Popen(driver_cmd, start_new_session=True)
        # The driver stops by itself after --seconds plus its last actions (each bounded).
        driver_deadline = time.monotonic() + duration + 150
        while driver.poll() is None:
            if not alive():
                failures.append("the server (master) exited during the load")
                break
            if time.monotonic() > driver_deadline:
                failures.append("the driver did not stop in time (killed)")
                os.killpg(driver.pid, signal.SIGKILL)
                break
            time.sleep(0.5)
        driver.wait()
        t_load1 = time.monotonic() - t0
        sampler.stop_event.set()
        sampler.join()
        if driver.returncode != 0:
            failures.append(f"the driver exited with status {driver.returncode}")

        # Idle after: no connection open, no worker draining, then the fds of each process.
        idle_after: dict = {}
        if alive():
            linger = seconds(opts, "--keep-alive-timeout", 5) + seconds(opts, "--graceful-timeout", 30) + 20
            try:
                wait_for("every connection closed", lambda: metric_sum(scrape(metrics_port, 1.0),
                                                                        "appserver_connections_open") == 0,
                         linger, interval=0.25, alive=alive)
                wait_for("no worker draining", lambda: sum(r["role"] == "worker" for r in snapshot(server.pid)) == workers,
                         linger, interval=0.25, alive=alive)
                sampler.take("idle_after")
                idle_after = settled_fds(server.pid, idle_before, 10.0)
            except RuntimeError as e:
                failures.append(f"after the load: {e}")
        m_after = scrape(metrics_port) if alive() else {}
    except RuntimeError as e:  # the server did not come up, or died before the load
        print(f"soak: {e}; the end of {out / 'server.log'}:", file=sys.stderr)
        log.flush()
        print("".join((out / "server.log").read_text(errors="replace").splitlines(True)[-20:]), file=sys.stderr)
        raise SystemExit(1)
    finally:
        if driver is not None and driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
            driver.wait()
        if sampler is not None:
            sampler.stop_event.set()
        if server.poll() is None:
            server.send_signal(signal.SIGTERM)
            try:
                exit_code = server.wait(seconds(opts, "--graceful-timeout", 30) + 20)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait()
                failures.append("the server did not stop within --graceful-timeout + 20 s after SIGTERM (killed)")
        else:
            failures.append(f"the server had exited by itself (status {server.returncode})")
        log.close()
    if exit_code not in (0, None):
        failures.append(f"the server exited with status {exit_code} after SIGTERM")

    # ---- results
    drv = json.loads((out / "driver.json").read_text()) if (out / "driver.json").exists() else {}
    checks, is_flat = analyse(sampler, t_load0, t_load1)
    if not is_flat:
        failures.append("growth past the flatness rule: " + ", ".join(c["series"] for c in checks if not c["flat"]))
    idle = []
    for role_pos in sorted(idle_before):
        before, after = idle_before[role_pos], idle_after.get(role_pos)
        name = "master" if role_pos[0] == "master" else f"worker {role_pos[1]}"
        ok = after is not None and after <= before
        idle.append({"process": name, "fds_before": before, "fds_after": after, "ok": ok})
        if not ok:
            failures.append(f"idle {name}: {after} fds after the load, {before} before")
    delta = lambda name, label: {k: int(v - metric_by(m_before, name, label).get(k, 0))  # noqa: E731
                                 for k, v in metric_by(m_after, name, label).items()}
    restarts = delta("appserver_worker_restarts_total", "reason")
    for reason in ("crash", "boot_failure", "request_timeout"):
        if restarts.get(reason):
            failures.append(f"{restarts[reason]} worker restart(s) for {reason}")
    drain_cut = drain_cut_heads(drv, out / "server.log")
    failed = Counter(drv.get("failures", {}))
    failed.subtract(Counter(x["kind"] for x in drain_cut))
    failed = +failed
    if sum(failed.values()):
        failures.append(f"{sum(failed.values())} well-formed exchange(s) failed: {dict(failed)}")
    if sum(drv.get("unexpected", {}).values()):
        failures.append(f"{sum(drv['unexpected'].values())} malformed request(s) answered otherwise than documented")
    log_shapes, alarms = log_summary(out / "server.log")
    if alarms:
        failures.append(f"{len(alarms)} server log line(s) about a crash or kill")
    alog_lines, alog_classes = access_log_counts(out / "access.log")

    def at(role_pos, which):
        rows = [r for r in sampler.procs if r["phase"] == "load" and (r["role"], r["pos"]) == role_pos]
        if not rows:
            return None
        q = (t_load1 - t_load0) / 4
        if which == "start":
            rows = [r for r in rows if r["t"] >= t_load0 + q] or rows
            r = rows[0]
        else:
            r = rows[-1]
        return {"t_min": round((r["t"] - t_load0) / 60, 2), "pid": r["pid"], "rss_mib": round(r["rss_kib"] / 1024, 1),
                "fds": r["fds"]}

    points = {}
    for role_pos in sorted({(r["role"], r["pos"]) for r in sampler.procs if r["role"] != "other"}):
        name = "master" if role_pos[0] == "master" else f"worker {role_pos[1]}"
        points[name] = {"start": at(role_pos, "start"), "end": at(role_pos, "end")}
    generations = Counter()
    for pos, pid in {(r["pos"], r["pid"]) for r in sampler.procs if r["role"] == "worker"}:
        generations[pos] += 1
    summary = {
        "commit": commit, "command": "scripts/soak " + " ".join(sys.argv[1:]), "server_command": cmd,
        "minutes_planned": args.minutes, "load_seconds": round(t_load1 - t_load0, 1),
        "clients": args.clients, "sample_every_s": args.sample_every, "samples": len(sampler.samples),
        "flatness_rule": FLATNESS_RULE, "checks": checks, "idle_fds": idle,
        "start_end": points, "worker_processes_seen": dict(sorted(generations.items())),
        "worker_restarts": restarts,
        "server_requests_by_code": delta("appserver_requests_total", "code"),
        "server_connections_closed_by_reason": delta("appserver_connections_closed_total", "reason"),
        "server_connections_accepted": int(metric_sum(m_after, "appserver_connections_accepted_total")
                                           - metric_sum(m_before, "appserver_connections_accepted_total")),
        "access_log_lines": alog_lines, "access_log_by_class": dict(alog_classes),
        "access_log_dropped": int(metric_sum(m_after, "appserver_access_log_dropped_total")),
        "log_dropped": int(metric_sum(m_after, "appserver_log_dropped_total")),
        "server_log_by_level": dict(Counter(level for (level, _), n in log_shapes.items() for _ in range(n))),
        "server_log_warnings": [f"{n} x [{lvl}] {s}" for (lvl, s), n in log_shapes.most_common()
                                if lvl in ("warning", "error", "critical")][:15],
        "server_log_alarms": alarms[:20],
        "scrape_errors": sampler.scrape_errors,
        "server_exit_status": exit_code,
        "driver": {k: drv.get(k) for k in ("seconds_run", "actions", "requests_sent", "responses_read", "outcomes",
                                           "failures", "unexpected")},
        "driver_samples": [x for x in drv.get("samples", []) if x not in drain_cut][:30],
        "heads_cut_by_drain": drain_cut,
        "drain_starts": len(drain_starts(out / "server.log")),
        "failures": failures,
        "verdict": "PASS" if not failures else "FAIL",
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    write_csv(out / "samples.csv", sampler.samples)
    write_csv(out / "procs.csv", sampler.procs)
    title = (f"appserver soak at {commit}: {args.minutes:g} min, {workers} workers x "
             f"{opts['--blocking-threads']} threads, --max-requests {opts.get('--max-requests')}; "
             f"{summary['verdict']}")
    plot(sampler, t_load0, t_load1, out / "soak.png", title)
    if args.png:
        plot(sampler, t_load0, t_load1, Path(args.png), title)
    text = render(summary)
    (out / "summary.md").write_text(text)
    if args.md:
        Path(args.md).write_text(text)
    print(text)
    print(f"soak: {summary['verdict']}; files in {out}")
    return 0 if not failures else 1


def write_csv(path: Path, rows: list[dict]) -> None:
    if not rows:
        return
    keys = list(rows[0].keys())
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        w.writerows(rows)


def render(s: dict) -> str:
    d = s["driver"]
    sent, read = d.get("requests_sent") or {}, d.get("responses_read") or {}
    lines = [
        f"# Soak summary: {s['verdict']}",
        "",
        f"- commit `{s['commit']}`, command `{s['command']}`",
        f"- server: `{' '.join(Path(x).name if x.startswith('/') and x.endswith('appserver') else x for x in s['server_command']).replace(str(ROOT) + '/', '')}`",
        f"- load {s['load_seconds'] / 60:.1f} min, {s['clients']} concurrent driver tasks, "
        f"a sample every {s['sample_every_s']:g} s ({s['samples']} samples)",
        f"- worker processes seen per position (recycled by --max-requests): {s['worker_processes_seen']}; "
        f"restarts by reason: {s['worker_restarts']}",
        f"- server exit status after SIGTERM: {s['server_exit_status']}",
        "",
        "![RSS and open fds of the master and each worker over the run](soak.png)",
        "",
        "## Requests",
        "",
        f"Driver: {sum(sent.values())} requests written, {sum(read.values())} responses read in full, "
        f"{sum((d.get('actions') or {}).values())} actions; failures {d.get('failures') or {}}, "
        f"malformed answered otherwise than documented {d.get('unexpected') or {}}.",
        "",
        "| kind | actions | requests | responses | outcomes |",
        "|---|---:|---:|---:|---|",
    ]
    for kind in sorted(d.get("actions") or {}):
        oc = (d.get("outcomes") or {}).get(kind, {})
        if kind == "malformed":
            agg = Counter()
            for k, v in oc.items():
                agg[k.rsplit(":", 1)[-1]] += v
            oc_text = ", ".join(f"{k}: {v}" for k, v in sorted(agg.items())) + f" ({len(oc)} cases)"
        else:
            oc_text = ", ".join(f"{k}: {v}" for k, v in sorted(oc.items()))
        lines.append(f"| {kind} | {d['actions'][kind]} | {sent.get(kind, 0)} | {read.get(kind, 0)} | {oc_text} |")
    lines += [
        "",
        f"Server: responses by class {s['server_requests_by_code']}; connections accepted "
        f"{s['server_connections_accepted']}, closed by reason {s['server_connections_closed_by_reason']}; "
        f"access log {s['access_log_lines']} lines {s['access_log_by_class']} "
        f"(dropped {s['access_log_dropped']}); server log lines by level {s['server_log_by_level']} "
        f"(dropped {s['log_dropped']}).",
        "",
        "## Memory and descriptors",
        "",
        "| process | start (after warm-up) | end |",
        "|---|---|---|",
    ]
    for name, p in s["start_end"].items():
        f = lambda x: "-" if not x else f"{x['rss_mib']} MiB, {x['fds']} fds (pid {x['pid']}, {x['t_min']} min)"  # noqa: E731
        lines.append(f"| {name} | {f(p['start'])} | {f(p['end'])} |")
    lines += ["", f"Rule: {s['flatness_rule']}.", "", "| series | start median | end median | limit | flat |",
              "|---|---:|---:|---:|---|"]
    for c in s["checks"]:
        lines.append(f"| {c['series']} | {c['start']} {c['unit']} | {c['end']} {c['unit']} | {c['limit']} | "
                     f"{'yes' if c['flat'] else 'NO'} |")
    lines += ["", "Idle descriptors (no connection open; each process's fewest over a short poll): " + "; ".join(
        f"{i['process']} {i['fds_before']} before, {i['fds_after']} after{'' if i['ok'] else ' (MORE)'}"
        for i in s["idle_fds"]) + "."]
    if s["heads_cut_by_drain"]:
        lines += ["", f"Not counted as failures: {len(s['heads_cut_by_drain'])} slow request head(s) answered 408 "
                  f"by a worker that had begun to drain (recycling; {s['drain_starts']} drains in the run): a "
                  f"draining worker gives a head already begun 1 s, not --header-read-timeout."]
    if s["server_log_warnings"]:
        lines += ["", "Server log, warnings and errors by shape:", ""]
        lines += [f"    {w}" for w in s["server_log_warnings"]]
    if s["server_log_alarms"]:
        lines += ["", "Server log lines about a crash or kill:", ""] + [f"    {a}" for a in s["server_log_alarms"]]
    if s["driver_samples"]:
        lines += ["", "First failures seen by the driver:", ""]
        lines += [f"    {x['t']}s {x['bucket']} {x['kind']}: {x['detail']}" for x in s["driver_samples"][:15]]
    lines += ["", f"Verdict: **{s['verdict']}**" + ("" if not s["failures"] else ": " + "; ".join(s["failures"])), ""]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
