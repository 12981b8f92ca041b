#!/usr/bin/env python3
"""Per-request cost in instructions (callgrind): deterministic, independent of machine load.

    python3 bench/instructions.py \
        --case "base=/tmp/appserver-base" \
        --case "new=/tmp/appserver-new" \
        --case "metrics=/tmp/appserver-new --metrics --metrics-port 19091" \
        --case "alog=/tmp/appserver-new --access-log {tmp}/access.log" \
        --scrape-every 1000 --ref new [--n1 2000 --n2 12000] [--top 5] [--keep DIR]

Each --case is "LABEL=BINARY [SERVER OPTIONS...]" (shell words; "{tmp}" in an option is a
scratch directory of that run, removed afterwards, e.g. for an access log). For each case the
server (--workers 1 --blocking-threads 1, bench/apps/wsgiapps.py:APP, cwd bench/apps,
127.0.0.1) runs twice under `valgrind --tool=callgrind --callgrind-out-file=DIR/callgrind.out.%p`
(the forked worker writes a file of its own): once answering N1 requests, once N2. A small
raw-socket client sends them one at a time on keep-alive connections (--per-conn requests per
connection). The server is stopped by PID with SIGTERM and the worker's total instructions
are read from its out file (the file whose pid is not the master's). Per request:

    (I_worker(N2) - I_worker(N1)) / (N2 - N1)

so start-up, import and shutdown cancel. Threads are included (callgrind counts every thread
of the process: loop, blocking thread, access-log writer).

--scrape-every K: for cases that have --metrics and --metrics-port (all of them, or those
named by --scrape-cases), GET /metrics every K requests; the master's instructions per scrape = (I_master(N2) - I_master(N1)) / (scrapes(N2)
- scrapes(N1)). The master also wakes about once a second on its own, which this attributes
to scrapes: it is small next to a scrape (compare with a --metrics case run without
--scrape-every, where the master's delta is that idle work alone).

--top K: per case after the first, the K functions whose self instructions per request differ
most from the first case's (callgrind_annotate on both runs' worker files); with --ref LABEL
also each other case against that one (e.g. an option's cost over the same binary without it).

The first case is the baseline of the "% of first" column. Instruction counts are exact for
a given binary, Python and input; what varies run to run is small (timers, the Date header
once a second, hash seeds are fixed with PYTHONHASHSEED=0); --repeat R runs everything R
times to show it. Loopback only; servers are stopped by PID, also on errors and Ctrl-C.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

APPS = Path(__file__).resolve().parent / "apps"
HOST = "127.0.0.1"
IO_TIMEOUT = 60.0  # per socket operation; callgrind runs the server ~50x slower
START_TIMEOUT = 180.0
STOP_TIMEOUT = 120.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


@dataclass
class Case:
    label: str
    binary: str
    args: list[str]

    @property
    def metrics_port(self) -> int | None:
        if "--metrics" not in self.args:
            return None
        for i, a in enumerate(self.args):
            if a == "--metrics-port" and i + 1 < len(self.args):
                return int(self.args[i + 1])
            if a.startswith("--metrics-port="):
                return int(a.split("=", 1)[1])
        return 9090


def parse_case(text: str) -> Case:
    words = shlex.split(text)
    if not words or "=" not in words[0]:
        raise SystemExit(f"--case wants 'LABEL=BINARY [OPTIONS...]', got {text!r}")
    label, binary = words[0].split("=", 1)
    binary = str(Path(binary).resolve())
    if not os.access(binary, os.X_OK):
        raise SystemExit(f"{binary}: not an executable")
    return Case(label, binary, words[1:])


# ---------------------------------------------------------------- a tiny HTTP/1.1 client

class Client:
    """Sequential GETs on one keep-alive connection; reads exactly one response each."""

    def __init__(self, port: int, path: str = "/"):
        self.sock = socket.create_connection((HOST, port), timeout=IO_TIMEOUT)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.request = f"GET {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\n\r\n".encode()
        self.buf = b""

    def _fill(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("server closed the connection")
        self.buf += chunk

    def get(self, close: bool = False) -> tuple[int, bytes]:
        req = self.request
        if close:
            req = req[:-2] + b"Connection: close\r\n\r\n"
        self.sock.sendall(req)
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.split(b"\r\n")
        status = int(lines[0].split()[1])
        length = None
        chunked = False
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value.strip())
            elif name == b"transfer-encoding" and b"chunked" in value.lower():
                chunked = True
        if chunked:
            body = b""
            while True:
                while b"\r\n" not in self.buf:
                    self._fill()
                size_line, self.buf = self.buf.split(b"\r\n", 1)
                size = int(size_line.split(b";")[0], 16)
                while len(self.buf) < size + 2:
                    self._fill()
                body += self.buf[:size]
                self.buf = self.buf[size + 2:]
                if size == 0:
                    break
        else:
            if length is None:
                raise ValueError("response without Content-Length or chunked encoding")
            while len(self.buf) < length:
                self._fill()
            body, self.buf = self.buf[:length], self.buf[length:]
        return status, body

    def close(self) -> None:
        self.sock.close()


def get_once(port: int, path: str) -> tuple[int, bytes]:
    c = Client(port, path)
    try:
        return c.get(close=True)
    finally:
        c.close()


# ---------------------------------------------------------------- one server under callgrind

@dataclass
class RunResult:
    n: int
    worker: int
    master: int
    scrapes: int
    access_lines: int | None
    worker_file: Path
    seconds: float
    extra: dict = field(default_factory=dict)


def totals(path: Path) -> int:
    """Total Ir of a callgrind out file: its 'totals:' (or 'summary:') line."""
    summary = None
    with open(path, "rb") as f:
        for raw in f:
            if raw.startswith(b"totals:"):
                return int(raw.split()[1])
            if raw.startswith(b"summary:"):
                summary = int(raw.split()[1])
    if summary is None:
        raise SystemExit(f"{path}: no totals/summary line (did the process exit cleanly?)")
    return summary


def stop(p: subprocess.Popen) -> None:
    if p.poll() is not None:
        return
    p.send_signal(signal.SIGTERM)
    try:
        p.wait(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        print(f"  server {p.pid} did not stop in {STOP_TIMEOUT:.0f}s: SIGKILL to its group",
              file=sys.stderr)
        try:
            os.killpg(p.pid, signal.SIGKILL)  # its own session: only the server and its workers
        except ProcessLookupError:
            pass
        p.wait()


def access_log_path(args: list[str]) -> Path | None:
    for i, a in enumerate(args):
        if a == "--access-log" and i + 1 < len(args):
            return None if args[i + 1] == "-" else Path(args[i + 1])
        if a.startswith("--access-log="):
            v = a.split("=", 1)[1]
            return None if v == "-" else Path(v)
    return None


def run_once(case: Case, n: int, per_conn: int, scrape_every: int, app: str, path: str,
             outdir: Path, log) -> RunResult:
    outdir.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="appserver-instr-"))
    try:
        args = [a.replace("{tmp}", str(scratch)) for a in case.args]
        port = free_port()
        argv = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={outdir}/callgrind.out.%p",
                "--log-file=" + str(outdir / "valgrind.%p.log"),
                case.binary, "--host", HOST, "--port", str(port), "--workers", "1",
                "--blocking-threads", "1", "--log-level", "warning", *args, f"wsgiapps:{app}"]
        env = dict(os.environ, PYTHONHASHSEED="0")
        with open(outdir / "server.stderr", "wb") as err:
            p = subprocess.Popen(argv, cwd=APPS, stdout=subprocess.DEVNULL, stderr=err, env=env,
                                 start_new_session=True)
        t0 = time.monotonic()
        scrapes = 0
        mport = case.metrics_port if scrape_every else None
        try:
            deadline = time.monotonic() + START_TIMEOUT
            while True:  # ready = answers a request (the worker is up, not just the listener)
                if p.poll() is not None:
                    raise SystemExit(f"{case.label}: server exited with {p.returncode}; "
                                     f"see {outdir}/server.stderr")
                try:
                    status, _ = get_once(port, path)
                    if status != 200:
                        raise SystemExit(f"{case.label}: GET {path} answered {status}")
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise SystemExit(f"{case.label}: no answer within {START_TIMEOUT:.0f}s")
                    time.sleep(0.2)
            if mport:  # the metrics endpoint answers too before counting starts
                while True:
                    try:
                        status, _ = get_once(mport, "/metrics")
                        if status == 200:
                            break
                    except OSError:
                        pass
                    if time.monotonic() > deadline:
                        raise SystemExit(f"{case.label}: /metrics on {mport} did not answer")
                    time.sleep(0.2)
            sent = 0
            while sent < n:
                c = Client(port, path)
                try:
                    for _ in range(min(per_conn, n - sent)):
                        status, _ = c.get()
                        if status != 200:
                            raise SystemExit(f"{case.label}: request {sent} answered {status}")
                        sent += 1
                        if mport and sent % scrape_every == 0:
                            status, body = get_once(mport, "/metrics")
                            if status != 200 or b"appserver_" not in body:
                                raise SystemExit(f"{case.label}: bad /metrics answer {status}")
                            scrapes += 1
                finally:
                    c.close()
        finally:
            stop(p)
        seconds = time.monotonic() - t0
        master_pid = p.pid
        files = {int(f.name.rsplit(".", 1)[1]): f for f in outdir.glob("callgrind.out.*")}
        if master_pid not in files:
            raise SystemExit(f"{case.label}: no out file for the master {master_pid} in {outdir}")
        workers = [f for pid, f in files.items() if pid != master_pid]
        if not workers:
            raise SystemExit(f"{case.label}: no worker out file in {outdir}")
        if len(workers) > 1:  # a helper process or a restarted worker: the busiest one served
            workers.sort(key=totals, reverse=True)
            log(f"  {case.label}: {len(workers)} child out files in {outdir}; using the one with "
                f"the most instructions, {workers[0].name}")
        alog = access_log_path(args)
        lines = None
        if alog is not None and alog.exists():
            with open(alog, "rb") as f:
                lines = sum(1 for _ in f)
        res = RunResult(n, totals(workers[0]), totals(files[master_pid]), scrapes, lines,
                        workers[0], seconds)
        log(f"  {case.label:>12} N={n:<6} worker {res.worker:>14,} Ir  master "
            f"{res.master:>12,} Ir  scrapes {scrapes:<3} {seconds:5.1f}s"
            + (f"  access-log lines {lines:,}" if lines is not None else ""))
        return res
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


# ---------------------------------------------------------------- per-function differences

FN_LINE = re.compile(r"^\s*([\d,]+)\s+(?:\([\s\d.]+%\)\s+)?(.+?)\s*$")


def self_costs(path: Path) -> dict[str, int]:
    """Self Ir per function (file:function [object]) from callgrind_annotate."""
    out = subprocess.run(["callgrind_annotate", "--threshold=100", "--show-percs=no", str(path)],
                         capture_output=True, text=True, timeout=600)
    if out.returncode != 0:  # older callgrind_annotate without --show-percs
        out = subprocess.run(["callgrind_annotate", "--threshold=100", str(path)],
                             capture_output=True, text=True, timeout=600)
    costs: dict[str, int] = {}
    started = False
    for line in out.stdout.splitlines():
        if "file:function" in line:
            started = True
            continue
        if not started or not line.strip() or line.startswith("-"):
            continue
        m = FN_LINE.match(line)
        if not m:
            continue
        name = re.sub(r"\s+\[[^\]]*\]$", "", m.group(2))  # drop the object file
        costs[name] = costs.get(name, 0) + int(m.group(1).replace(",", ""))
    return costs


def per_request_fns(r1: RunResult, r2: RunResult) -> dict[str, float]:
    c1, c2 = self_costs(r1.worker_file), self_costs(r2.worker_file)
    dn = r2.n - r1.n
    return {k: (c2.get(k, 0) - c1.get(k, 0)) / dn for k in set(c1) | set(c2)}


# ---------------------------------------------------------------- main

def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n\n", 1)[1])
    ap.add_argument("--case", action="append", required=True,
                    help='"LABEL=BINARY [SERVER OPTIONS...]"; repeat; the first is the baseline')
    ap.add_argument("--app", default="hello", help="callable in bench/apps/wsgiapps.py")
    ap.add_argument("--path", default="/", help="request target")
    ap.add_argument("--n1", type=int, default=2000)
    ap.add_argument("--n2", type=int, default=12000)
    ap.add_argument("--per-conn", type=int, default=1000,
                    help="requests per keep-alive connection (default 1000)")
    ap.add_argument("--scrape-every", type=int, default=0,
                    help="GET /metrics every K requests for cases with --metrics")
    ap.add_argument("--scrape-cases", default="",
                    help="comma-separated labels to scrape (default: every case with --metrics)")
    ap.add_argument("--ref", default="",
                    help="a second reference case: adds a 'Δ %% of REF' column and, with --top, "
                         "the differences of the other cases from it")
    ap.add_argument("--repeat", type=int, default=1, help="run everything R times")
    ap.add_argument("--top", type=int, default=0,
                    help="show the K functions whose per-request self cost differs most from "
                         "the first case's")
    ap.add_argument("--keep", help="keep the callgrind out files under this directory")
    args = ap.parse_args()
    if args.n2 <= args.n1 or args.n1 < 1:
        raise SystemExit("need 0 < n1 < n2")
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed (apt-get install valgrind)")
    cases = [parse_case(c) for c in args.case]
    labels = [c.label for c in cases]
    if len(set(labels)) != len(cases):
        raise SystemExit("case labels must be unique")
    scrape_cases = set(args.scrape_cases.split(",")) if args.scrape_cases else set(labels)
    if not scrape_cases <= set(labels):
        raise SystemExit(f"--scrape-cases: unknown labels {sorted(scrape_cases - set(labels))}")
    if args.ref and args.ref not in labels:
        raise SystemExit(f"--ref: no case labelled {args.ref}")
    root = Path(args.keep).resolve() if args.keep else Path(tempfile.mkdtemp(prefix="callgrind-"))
    log = lambda s: print(s, file=sys.stderr, flush=True)  # noqa: E731
    results: dict[str, list[tuple[RunResult, RunResult]]] = {c.label: [] for c in cases}
    try:
        for rep in range(args.repeat):
            for c in cases:
                pair = []
                for n in (args.n1, args.n2):
                    d = root / f"r{rep}" / c.label / f"n{n}"
                    if d.exists():
                        shutil.rmtree(d)
                    every = args.scrape_every if c.label in scrape_cases else 0
                    pair.append(run_once(c, n, args.per_conn, every, args.app,
                                         args.path, d, log))
                results[c.label].append((pair[0], pair[1]))

        dn = args.n2 - args.n1
        print(f"app={args.app} path={args.path} N1={args.n1} N2={args.n2} "
              f"per-conn={args.per_conn} repeat={args.repeat} workers=1 blocking-threads=1")
        for c in cases:
            print(f"  {c.label}: {c.binary} {shlex.join(c.args)}".rstrip())
        base_label = cases[0].label
        per_req = {lab: [(b.worker - a.worker) / dn for a, b in runs]
                   for lab, runs in results.items()}
        mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
        base = mean(per_req[base_label])
        ref = mean(per_req[args.ref]) if args.ref else None
        print()
        print(f"| case | worker Ir/request | Δ vs {base_label} | Δ % of {base_label} |"
              + (f" Δ % of {args.ref} |" if args.ref else "")
              + " master Ir/scrape | master Ir Δ(N2-N1) | access-log lines/request |")
        print("|:---|---:|---:|---:|" + ("---:|" if args.ref else "") + "---:|---:|---:|")
        for c in cases:
            xs = per_req[c.label]
            v = sum(xs) / len(xs)
            spread = f" (±{(max(xs) - min(xs)) / 2:,.0f})" if len(xs) > 1 else ""
            runs = results[c.label]
            mdelta = [b.master - a.master for a, b in runs]
            sc = [(b.master - a.master) / (b.scrapes - a.scrapes) for a, b in runs
                  if b.scrapes > a.scrapes]
            scrape = f"{sum(sc) / len(sc):,.0f}" if sc else "-"
            lines = [(b.access_lines - a.access_lines) / dn for a, b in runs
                     if a.access_lines is not None and b.access_lines is not None]
            lcol = f"{sum(lines) / len(lines):.3f}" if lines else "-"
            refcol = f"{(v - ref) / ref * 100:+.2f}% | " if ref is not None else ""
            print(f"| {c.label} | {v:,.0f}{spread} | {v - base:+,.0f} | "
                  f"{(v - base) / base * 100:+.2f}% | {refcol}{scrape} | "
                  f"{sum(mdelta) / len(mdelta):,.0f} | {lcol} |")

        if args.top:
            fns = {c.label: per_request_fns(*results[c.label][0]) for c in cases}
            pairs = [(c.label, base_label) for c in cases[1:]]
            if args.ref:
                pairs += [(c.label, args.ref) for c in cases if c.label not in (base_label, args.ref)]
            for lab, against in pairs:
                x, y = fns[lab], fns[against]
                diff = {k: x.get(k, 0.0) - y.get(k, 0.0) for k in set(x) | set(y)}
                top = sorted(diff.items(), key=lambda kv: -abs(kv[1]))[:args.top]
                print(f"\nTop {args.top} per-request self-cost differences, {lab} vs {against} "
                      f"(total {sum(diff.values()):+,.0f} Ir/request; columns: Δ ({lab} / "
                      f"{against})):")
                for name, d in top:
                    print(f"  {d:+9,.1f}  ({x.get(name, 0.0):,.1f} / {y.get(name, 0.0):,.1f})"
                          f"  {name}")
        if args.keep:
            print(f"\ncallgrind out files: {root}/r*/LABEL/nN/callgrind.out.PID")
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
