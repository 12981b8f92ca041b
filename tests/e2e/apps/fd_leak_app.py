"""Runs a process the way os.system does (fork and exec, no descriptors closed) and
reports which of the worker's client connections that process holds."""

import json
import os
import subprocess
import sys

CHILD = (
    "import os\n"
    "for n in os.listdir('/proc/self/fd'):\n"
    "    try:\n"
    "        t = os.readlink('/proc/self/fd/' + n)\n"
    "    except OSError:\n"
    "        continue\n"
    "    if t.startswith('socket:['):\n"
    "        print(t[8:-1])\n"
)


def socket_inodes(fd_dir):
    out = set()
    for name in os.listdir(fd_dir):
        try:
            target = os.readlink(os.path.join(fd_dir, name))
        except OSError:
            continue
        if target.startswith("socket:["):
            out.add(int(target[8:-1]))
    return out


def established_tcp_inodes():
    out = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                next(f)
                for line in f:
                    fields = line.split()
                    if fields[3] == "01":  # ESTABLISHED
                        out.add(int(fields[9]))
        except OSError:
            pass
    return out


def app(environ, start_response):
    child = subprocess.run(
        [sys.executable, "-c", CHILD], close_fds=False, capture_output=True, text=True, timeout=30
    )
    in_child = {int(x) for x in child.stdout.split()}
    connections = socket_inodes("/proc/self/fd") & established_tcp_inodes()
    body = json.dumps(
        {"connections": sorted(connections), "leaked": sorted(in_child & connections)}
    ).encode()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body]
