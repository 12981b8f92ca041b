#!/usr/bin/env python3
"""A/B two appserver binaries on one workload: what a hot-path change moved.

    python3 bench/ab.py --a /tmp/before/appserver --b build/release/appserver \
        --app hello --threads 1,4 --concurrency 64 --runs 3 [--rate 60000]

    # one binary, two configurations (what an option costs):
    python3 bench/ab.py --a build/release/appserver --b build/release/appserver \
        --b-args="--metrics --metrics-port 19090" --runs 5

Runs are interleaved (a, b, a, b, ...) so drift on a shared machine hits both alike;
each run is a fresh server, a 1 s warm-up and a `wrk -t1 -cN` measurement. The server is
pinned to CPU 1 and wrk to CPU 0, as in bench/run. With --rate, every run is followed by
an open-loop `oha -q RATE --latency-correction` run and its p99 is reported too. Prints
the median and every run. Loopback only; each server is stopped by PID.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
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


def wrk(port: int, conns: int, seconds: int, pin: bool) -> float:
    argv = ["wrk", "-t1", f"-c{conns}", f"-d{seconds}s", f"http://{HOST}:{port}/"]
    if pin:
        argv = ["taskset", "-c", "0"] + argv
    out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 30).stdout
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if not m:
        raise SystemExit(f"wrk gave no result:\n{out}")
    if "Non-2xx" in out or "Socket errors" in out:
        print(f"  warning: wrk reported errors:\n{out}", file=sys.stderr)
    return float(m.group(1))


def oha_p99(oha: str, port: int, rate: int, seconds: int, pin: bool) -> float:
    argv = [oha, "--no-tui", "--output-format", "json", "-z", f"{seconds}s", "-c", "64",
            "-w", "--worker-threads", "1", "-q", str(rate), "--latency-correction",
            f"http://{HOST}:{port}/"]
    if pin:
        argv = ["taskset", "-c", "0"] + argv
    out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60).stdout
    return json.loads(out)["latencyPercentiles"]["p99"] * 1e3


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
    args = ap.parse_args()
    args.a, args.b = (str(Path(x).resolve()) for x in (args.a, args.b))  # servers run in bench/apps
    pin = not args.no_pin and (os.cpu_count() or 1) >= 2 and shutil.which("taskset") is not None
    oha = shutil.which("oha") or str(Path.home() / ".cargo/bin/oha")
    results: dict[tuple[str, int, str], list[float]] = {}
    for _ in range(args.runs):
        for threads in [int(t) for t in args.threads.split(",")]:
            for label, binary, extra in (("a", args.a, args.a_args), ("b", args.b, args.b_args)):
                port = free_port()
                p = start(binary, args.app, threads, args.workers, port, pin, shlex.split(extra))
                try:
                    wrk(port, args.concurrency, 1, pin)  # warm-up
                    results.setdefault((label, threads, "rps"), []).append(
                        wrk(port, args.concurrency, args.seconds, pin))
                    if args.rate:
                        results.setdefault((label, threads, "p99 ms"), []).append(
                            oha_p99(oha, port, args.rate, args.seconds, pin))
                finally:
                    stop(p)
    print(f"app={args.app} workers={args.workers} c={args.concurrency} runs={args.runs} "
          f"pinned={pin} rate={args.rate or '-'}")
    print(f"a: {args.a} {args.a_args}".rstrip())
    print(f"b: {args.b} {args.b_args}".rstrip())
    for (label, threads, metric), xs in sorted(results.items(), key=lambda kv: (kv[0][1], kv[0][2], kv[0][0])):
        med = statistics.median(xs)
        runs = ", ".join(f"{x:,.0f}" if metric == "rps" else f"{x:.2f}" for x in xs)
        print(f"threads={threads} {metric:7} {label}: median {med:,.2f}  [{runs}]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
