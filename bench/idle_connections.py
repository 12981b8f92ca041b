#!/usr/bin/env python3
"""Memory per idle keep-alive connection: starts one server (one worker), opens N
connections that each make one request and then stay open and idle, and reports how much
the worker's resident memory grew per connection.

    python3 bench/idle_connections.py --server build/release/appserver --connections 5000

Loopback only; stops the server it started. Needs RLIMIT_NOFILE above N (for this
process and the server)."""

import argparse
import os
import resource
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def children(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        out += [int(x) for x in text]
    return out


def request(port: int) -> bytes:
    return f"GET /hello HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()


def read_response(sock: socket.socket) -> None:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise RuntimeError("closed before a response")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(int(l.split(b":")[1]) for l in head.split(b"\r\n") if l.lower().startswith(b"content-length"))
    while len(body) < length:
        body += sock.recv(65536)


def measure(server: str, n: int, extra: list[str]) -> tuple[float, int, int]:
    port = free_port()
    cmd = [server, "--port", str(port), "--workers", "1", "--keep-alive-timeout", "600",
           "--working-dir", str(HERE / "apps"), *extra, "wsgiapps:hello"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    socks = []
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
                    s.sendall(request(port))
                    read_response(s)
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("server did not start")
                time.sleep(0.05)
        worker = children(proc.pid)[0]
        # Warm up: the first connections grow pools and arenas that later ones reuse.
        warm = []
        for _ in range(200):
            s = socket.create_connection(("127.0.0.1", port))
            s.sendall(request(port))
            read_response(s)
            warm.append(s)
        before = rss_kib(worker)
        for _ in range(n):
            s = socket.create_connection(("127.0.0.1", port))
            s.sendall(request(port))
            read_response(s)
            socks.append(s)
        after = rss_kib(worker)
        for s in warm:
            s.close()
        return (after - before) * 1024 / n, before, after
    finally:
        for s in socks:
            s.close()
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--server", action="append", required=True, help="server binary (repeatable)")
    ap.add_argument("--connections", type=int, default=5000)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = args.connections + 500
    if soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(need, hard), hard))
    for server in args.server:
        results = sorted(measure(server, args.connections, [])[0] for _ in range(args.runs))
        median = results[len(results) // 2]
        print(f"{server}: {median:,.0f} bytes of worker RSS per idle keep-alive connection "
              f"(median of {args.runs}, {args.connections} connections; runs: "
              f"{', '.join(f'{r:,.0f}' for r in results)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
