#!/usr/bin/env python3
"""Worker memory around a burst of idle keep-alive connections.

    python3 bench/idle_burst.py BINARY [--connections 10000] [--rounds 2]

Starts BINARY (one worker) on the test app, then, per round: opens N keep-alive
connections to 127.0.0.1, each answered once, prints the worker's RSS and what it grew
per connection; closes them, waits for the worker's once-a-second sweep, prints the RSS
again. The second round (pools and arenas already grown) gives the memory one idle
keep-alive connection costs. Stops the server by PID.
"""

import argparse
import resource
import socket
import subprocess
import time
from pathlib import Path

APPS = Path(__file__).resolve().parent.parent / "tests" / "e2e" / "apps"
HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return -1


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("binary")
    ap.add_argument("--connections", type=int, default=10000)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, args.connections + 1000), hard))
    port = free_port()
    server = subprocess.Popen([str(Path(args.binary).resolve()), "--port", str(port), "--log-level", "warning",
                               "--keep-alive-timeout", "600", "wsgi_app:app"],
                              cwd=APPS, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection((HOST, port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise SystemExit("server did not start")
                time.sleep(0.05)
        worker = int(subprocess.check_output(["pgrep", "-P", str(server.pid)]).split()[0])
        print(f"idle: {rss_kib(worker) / 1024:.1f} MiB")
        for r in range(args.rounds):
            before = rss_kib(worker)
            conns = []
            for _ in range(args.connections):
                s = socket.create_connection((HOST, port))
                s.sendall(b"GET /hello HTTP/1.1\r\nHost: a\r\n\r\n")
                conns.append(s)
            for s in conns:
                s.recv(4096)
            grown = rss_kib(worker)
            print(f"round {r + 1}: {args.connections} open: {grown / 1024:.1f} MiB "
                  f"({(grown - before) * 1024 / args.connections:,.0f} bytes per connection)", end="")
            for s in conns:
                s.close()
            time.sleep(2.5)  # the sweep runs once a second
            print(f", closed: {rss_kib(worker) / 1024:.1f} MiB")
    finally:
        server.terminate()
        server.wait(30)


if __name__ == "__main__":
    main()
