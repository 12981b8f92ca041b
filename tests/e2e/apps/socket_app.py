"""For tests/e2e/test_sockets.py: what a worker sees of a listening socket handed over
(--fd, systemd's LISTEN_FDS). GET /?fd=N answers a JSON object with SERVER_NAME,
SERVER_PORT, the LISTEN_* variables the app can see (os.environ and the C environment),
and whether descriptor N is inheritable and blocking in the worker."""

import json
import os
import socket
from urllib.parse import parse_qs


def app(environ, start_response):
    query = parse_qs(environ.get("QUERY_STRING", ""))
    report = {
        "server_name": environ["SERVER_NAME"],
        "server_port": environ["SERVER_PORT"],
        "os_environ": {k: v for k, v in os.environ.items() if k.startswith("LISTEN_")},
        # os.environ is a copy; a child process shows the C environment.
        "c_environ": sorted(
            line.split("=", 1)[0]
            for line in os.popen("env").read().splitlines()
            if line.startswith("LISTEN_")
        ),
        "pid": os.getpid(),
        "stdin": os.readlink("/proc/self/fd/0"),
    }
    if "fd" in query:
        fd = int(query["fd"][0])
        report["inheritable"] = os.get_inheritable(fd)
        report["blocking"] = os.get_blocking(fd)
        with socket.socket(fileno=os.dup(fd)) as s:
            report["accepting"] = bool(s.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN))
    body = json.dumps(report).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]
