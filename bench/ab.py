#!/usr/bin/env python3
"""A/B two appserver binaries on one workload: what a hot-path change moved.

    python3 bench/ab.py --a /tmp/before/appserver --b build/release/appserver \
        --app hello --threads 1,4 --concurrency 64 --runs 3 [--rate 60000]

    # one binary, two configurations (what an option costs):
    python3 bench/ab.py --a build/release/appserver --b build/release/appserver \
        --b-args="--metrics --metrics-port 19090" --scrape-port 19090 --runs 7
    python3 bench/ab.py --a build/release/appserver --b build/release/appserver \
        --b-args="--access-log /tmp/ab-access.log" --cleanup /tmp/ab-access.log --runs 7

Runs are interleaved, in the order a b, b a, a b, ... (round by round) so drift on a shared
machine hits both alike and neither always runs first; each run is a fresh server, a 1 s
warm-up and a `wrk -t1 -cN` measurement. Besides requests/s it reports the server's CPU
time per request (every thread of the master and its workers, from /proc/*/task/*/schedstat,
over the measured wrk run, divided by the requests wrk completed): other processes change
how much CPU the server gets, much less what a request costs, so on a shared machine this is
the figure to compare. For each it prints each side's median (min-max spread in % of it),
the ratio b/a of the medians and the median of the per-round ratios, and the 1-minute load
average before and after. Every run also records the CPU other processes used meanwhile (in
% of the machine, /proc/stat minus the server and wrk): the ratios are also given over the
pairs in which others stayed at or under --quiet % (default 5) in both runs, and with
--max-others PCT a pair in which either run saw more is redone (up to --retries times, after
--retry-pause seconds). The server is pinned to CPU 1 and wrk to CPU 0, as in bench/run. With --rate, every run is followed by
an open-loop `oha -q RATE --latency-correction` run and its p99 is reported too. Prints
the median and every run. Loopback only; each server is stopped by PID.
"""

from __future__ import annotations

import argparse
import json
import os
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
import urllib.request
from pathlib import Path

APPS = Path(__file__).resolve().parent / "apps"
HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def wait_ready(p: subprocess.Popen, port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if p.poll() is not None:
            raise SystemExit(f"server exited with {p.returncode}")
        try:
            socket.create_connection((HOST, port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit("server did not start listening")


def start(binary: str, app: str, threads: int, workers: int, port: int, pin: bool,
          extra: list[str]) -> subprocess.Popen:
    argv = [binary, "--host", HOST, "--port", str(port), "--workers", str(workers),
            "--blocking-threads", str(threads), "--log-level", "warning", *extra,
            f"wsgiapps:{app}"]
    if pin:
        argv = ["taskset", "-c", "1"] + argv
    p = subprocess.Popen(argv, cwd=APPS, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_ready(p, port)
    return p


def stop(p: subprocess.Popen) -> None:
    p.send_signal(signal.SIGTERM)
    try:
        p.wait(timeout=30)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()


def wrk(port: int, conns: int, seconds: int, pin: bool) -> tuple[float, int]:
    """Requests per second and total requests of one wrk run."""
    argv = ["wrk", "-t1", f"-c{conns}", f"-d{seconds}s", f"http://{HOST}:{port}/"]
    if pin:
        argv = ["taskset", "-c", "0"] + argv
    out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 30).stdout
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if not m:
        raise SystemExit(f"wrk gave no result:\n{out}")
    if "Non-2xx" in out or "Socket errors" in out:
        print(f"  warning: wrk reported errors:\n{out}", file=sys.stderr)
    total = re.search(r"(\d+) requests in", out)
    return float(m.group(1)), int(total.group(1)) if total else 0


def tree_pids(root: int) -> list[int]:
    """The server's processes: the master and its descendants (the workers)."""
    pids, todo = [], [root]
    while todo:
        pid = todo.pop()
        pids.append(pid)
        try:
            for task in os.listdir(f"/proc/{pid}/task"):
                with open(f"/proc/{pid}/task/{task}/children") as f:
                    todo.extend(int(c) for c in f.read().split())
        except OSError:
            pass
    return pids


def cpu_ns(root: int) -> int:
    """CPU time used so far by every thread of the server's processes (ns, schedstat)."""
    total = 0
    for pid in tree_pids(root):
        try:
            tasks = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for task in tasks:
            try:
                with open(f"/proc/{pid}/task/{task}/schedstat") as f:
                    total += int(f.read().split()[0])
            except (OSError, ValueError, IndexError):
                pass
    return total


def machine_busy_ns() -> int:
    """CPU time used by the whole machine so far (/proc/stat, all but idle and iowait)."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:9]]
    busy = sum(fields) - fields[3] - fields[4]
    return busy * 1_000_000_000 // os.sysconf("SC_CLK_TCK")


def children_cpu_ns() -> int:
    """CPU time of this script's waited-for children (wrk, oha) so far."""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return int((ru.ru_utime + ru.ru_stime) * 1e9)


def oha_p99(oha: str, port: int, rate: int, seconds: int, pin: bool) -> float:
    argv = [oha, "--no-tui", "--output-format", "json", "-z", f"{seconds}s", "-c", "64",
            "-w", "--worker-threads", "1", "-q", str(rate), "--latency-correction",
            f"http://{HOST}:{port}/"]
    if pin:
        argv = ["taskset", "-c", "0"] + argv
    out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60).stdout
    return json.loads(out)["latencyPercentiles"]["p99"] * 1e3


class Scraper(threading.Thread):
    """Scrapes a metrics endpoint once a second until stopped; fails loudly if it cannot."""

    def __init__(self, port: int):
        super().__init__(daemon=True)
        self.port = port
        self.done = threading.Event()
        self.scrapes = 0
        self.error: Exception | None = None

    def run(self) -> None:
        try:
            while not self.done.wait(1.0):
                with urllib.request.urlopen(f"http://{HOST}:{self.port}/metrics",
                                            timeout=5) as r:
                    r.read()
                self.scrapes += 1
        except Exception as e:  # noqa: BLE001 - reported by stop()
            self.error = e

    def stop(self) -> int:
        self.done.set()
        self.join(timeout=10)
        if self.error is not None:
            raise SystemExit(f"scraping /metrics on port {self.port} failed: {self.error!r}")
        return self.scrapes


def cleanup(path: Path) -> tuple[int, int] | None:
    """Lines and bytes of a file the server wrote (an access log), then remove it."""
    if not path.exists():
        return None
    size = path.stat().st_size
    with open(path, "rb") as f:
        lines = sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b""))
    path.unlink()
    return lines, size


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--a", required=True, help="baseline appserver binary")
    ap.add_argument("--b", required=True, help="candidate appserver binary")
    ap.add_argument("--app", default="hello", help="callable in bench/apps/wsgiapps.py")
    ap.add_argument("--threads", default="1,4", help="blocking threads, comma separated")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=4)
    ap.add_argument("--rate", type=int, default=0, help="also measure p99 at this fixed rate")
    ap.add_argument("--no-pin", action="store_true")
    ap.add_argument("--a-args", default="", help="extra server options for a (one string)")
    ap.add_argument("--b-args", default="", help="extra server options for b (one string)")
    ap.add_argument("--scrape-port", type=int, default=0,
                    help="during b's runs, GET /metrics on this port once a second (what a "
                         "Prometheus server does), to measure what scrapes cost")
    ap.add_argument("--cleanup", action="append", default=[], metavar="PATH",
                    help="remove this file after every run (e.g. an access log, which grows "
                         "by ~100 bytes a request); its line count is reported per run. "
                         "Repeatable")
    ap.add_argument("--max-others", type=float, default=0,
                    help="redo an a/b pair when other processes used more than this %% of the "
                         "machine during either run (0: never)")
    ap.add_argument("--retries", type=int, default=3, help="with --max-others: redo a pair at "
                    "most this many times, then keep it")
    ap.add_argument("--retry-pause", type=float, default=10.0,
                    help="seconds to wait before redoing a noisy pair")
    ap.add_argument("--quiet", type=float, default=5.0,
                    help="also report the ratios of the pairs in which other processes used at "
                         "most this %% of the machine in both runs (default 5)")
    args = ap.parse_args()
    ncpu = os.cpu_count() or 1
    cleanups = [Path(c).resolve() for c in args.cleanup]
    for c in cleanups:  # a leftover from an interrupted run would be appended to
        cleanup(c)
    args.a, args.b = (str(Path(x).resolve()) for x in (args.a, args.b))  # servers run in bench/apps
    pin = not args.no_pin and (os.cpu_count() or 1) >= 2 and shutil.which("taskset") is not None
    oha = shutil.which("oha") or str(Path.home() / ".cargo/bin/oha")
    results: dict[tuple[str, int, str], list[float]] = {}
    load_before = os.getloadavg()[0]
    sides = [("a", args.a, args.a_args), ("b", args.b, args.b_args)]

    def run_side(label: str, binary: str, extra: str, threads: int, rnd: int) -> dict:
        port = free_port()
        p = start(binary, args.app, threads, args.workers, port, pin, shlex.split(extra))
        scraper = None
        if label == "b" and args.scrape_port:
            scraper = Scraper(args.scrape_port)
            scraper.start()
        r: dict = {"metrics": {}}
        requests = 0
        try:
            requests += wrk(port, args.concurrency, 1, pin)[1]  # warm-up
            busy0, cpu0, kids0, t0 = machine_busy_ns(), cpu_ns(p.pid), children_cpu_ns(), \
                time.monotonic()
            rps, n = wrk(port, args.concurrency, args.seconds, pin)
            busy, cpu, kids, wall = machine_busy_ns() - busy0, cpu_ns(p.pid) - cpu0, \
                children_cpu_ns() - kids0, time.monotonic() - t0
            requests += n
            r["metrics"]["rps"] = rps
            if n and cpu:
                r["metrics"]["cpu us/req"] = cpu / n / 1e3
            # CPU used by anything but this server and wrk, in % of the machine.
            r["others"] = max(0.0, busy - cpu - kids) / (ncpu * wall * 1e9) * 100
            if args.rate:
                r["metrics"]["p99 ms"] = oha_p99(oha, port, args.rate, args.seconds, pin)
        finally:
            scrapes = scraper.stop() if scraper is not None else None
            stop(p)
            done = [(c, cleanup(c)) for c in cleanups]
        note = f"round {rnd + 1} threads={threads} {label}: {rps:,.0f} rps"
        if "cpu us/req" in r["metrics"]:
            note += f", server CPU {r['metrics']['cpu us/req']:.3f} us/request"
        note += f", others {r['others']:.0f}% of the machine"
        if scrapes is not None:
            note += f", {scrapes} scrapes"
        for c, got in done:
            if got is not None:
                lines, size = got
                note += (f", {c.name}: {lines:,} lines / {requests:,} requests "
                         f"({size / 1e6:,.1f} MB, removed)")
        r["note"] = note
        return r

    retried = 0
    others_kept: list[float] = []
    quiet: dict[tuple[str, int], list[bool]] = {}
    for rnd in range(args.runs):
        for threads in [int(t) for t in args.threads.split(",")]:
            for attempt in range(args.retries + 1):
                pair = {label: run_side(label, binary, extra, threads, rnd)
                        for label, binary, extra in (sides if rnd % 2 == 0 else sides[::-1])}
                noisy = args.max_others and max(r["others"] for r in pair.values()) > args.max_others
                for r in pair.values():
                    print(("  (noisy, redone) " if noisy and attempt < args.retries else "  ")
                          + r["note"], file=sys.stderr, flush=True)
                if not noisy or attempt == args.retries:
                    break
                retried += 1
                time.sleep(args.retry_pause)
            quiet_pair = max(r["others"] for r in pair.values()) <= args.quiet
            for label, r in pair.items():
                others_kept.append(r["others"])
                quiet.setdefault((label, threads), []).append(quiet_pair)
                for metric, v in r["metrics"].items():
                    results.setdefault((label, threads, metric), []).append(v)
    load_after = os.getloadavg()[0]
    print(f"app={args.app} workers={args.workers} c={args.concurrency} runs={args.runs} "
          f"seconds={args.seconds} pinned={pin} rate={args.rate or '-'} "
          f"load1 before/after={load_before:.2f}/{load_after:.2f}")
    print(f"other processes' CPU during the kept runs: median {statistics.median(others_kept):.0f}%, "
          f"max {max(others_kept):.0f}% of the machine; pairs redone as noisy: {retried}"
          + (f" (threshold {args.max_others:.0f}%)" if args.max_others else ""))
    print(f"a: {args.a} {args.a_args}".rstrip())
    print(f"b: {args.b} {args.b_args}".rstrip())
    for (label, threads, metric), xs in sorted(results.items(), key=lambda kv: (kv[0][1], kv[0][2], kv[0][0])):
        med = statistics.median(xs)
        runs = ", ".join(f"{x:,.0f}" if metric == "rps" else
                         f"{x:.3f}" if metric.startswith("cpu") else f"{x:.2f}" for x in xs)
        spread = (max(xs) - min(xs)) / med * 100 if med else 0.0
        print(f"threads={threads} {metric:10} {label}: median {med:,.3f}  "
              f"(spread {spread:.1f}% of median)  [{runs}]")
        if label == "b" and ("a", threads, metric) in results:
            a = results[("a", threads, metric)]
            ratios = [y / x for x, y in zip(a, xs) if x]
            print(f"threads={threads} {metric:10} b/a: {statistics.median(xs) / statistics.median(a):.4f}"
                  f" (ratio of medians); per-round {statistics.median(ratios):.4f} median, "
                  f"{min(ratios):.4f}-{max(ratios):.4f}")
            q = [y / x for x, y, ok in zip(a, xs, quiet[("b", threads)]) if x and ok]
            if q:
                print(f"threads={threads} {metric:10} b/a: {statistics.median(q):.4f} per-round "
                      f"median of the {len(q)} quiet pairs (others <= {args.quiet:.0f}% in both "
                      f"runs), {min(q):.4f}-{max(q):.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
