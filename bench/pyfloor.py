#!/usr/bin/env python3
"""Python floor, measured in Python: the cost of one WSGI call in a tight loop.

Same interface as appserver's C++ `appserver-bench-pyfloor`:

    pyfloor.py --working-dir DIR --iterations N module:attr [--method GET --path / --body-size B]

prints JSON {"ns_per_call": ..., "cpu_ns_per_call": ..., "iterations": N, "source": "python"}:
wall and thread-CPU nanoseconds per call of the fastest of --repeat batches.

One call = build a fresh environ dict the way a server would for a typical request
(request line, a few headers, wsgi.* keys, a fresh wsgi.input), call the app with a
start_response, iterate the response to the end and call close(). The runner uses
this when appserver's C++ floor is not available, and reports both when it is.
"""

import argparse
import importlib
import io
import json
import os
import sys
import time


class _Errors:
    def write(self, s):
        return len(s)

    def writelines(self, lines):
        pass

    def flush(self):
        pass


def load(target, working_dir):
    if working_dir:
        working_dir = os.path.abspath(working_dir)
        os.chdir(working_dir)
        sys.path.insert(0, working_dir)
    module_name, _, attr = target.partition(":")
    obj = importlib.import_module(module_name)
    for part in (attr or "application").split("."):
        obj = getattr(obj, part)
    return obj


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("target")
    ap.add_argument("--working-dir", default=None)
    ap.add_argument("--iterations", type=int, default=0, help="0: calibrate to --target-seconds")
    ap.add_argument("--target-seconds", type=float, default=0.5)
    ap.add_argument("--method", default="GET")
    ap.add_argument("--path", default="/")
    ap.add_argument("--body-size", type=int, default=0)
    ap.add_argument("--repeat", type=int, default=5, help="batches; the fastest batch is reported")
    args = ap.parse_args(argv)

    app = load(args.target, args.working_dir)
    body = b"u" * args.body_size
    errors = _Errors()
    method = args.method
    path = args.path

    def make_environ():
        env = {
            "REQUEST_METHOD": method,
            "SCRIPT_NAME": "",
            "PATH_INFO": path,
            "QUERY_STRING": "",
            "SERVER_NAME": "127.0.0.1",
            "SERVER_PORT": "8000",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "REMOTE_ADDR": "127.0.0.1",
            "REMOTE_PORT": "40000",
            "HTTP_HOST": "127.0.0.1:8000",
            "HTTP_USER_AGENT": "bench/1.0",
            "HTTP_ACCEPT": "*/*",
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": "http",
            "wsgi.input": io.BytesIO(body),
            "wsgi.errors": errors,
            "wsgi.multithread": True,
            "wsgi.multiprocess": False,
            "wsgi.run_once": False,
            "wsgi.input_terminated": True,
        }
        if body:
            env["CONTENT_LENGTH"] = str(len(body))
            env["CONTENT_TYPE"] = "application/octet-stream"
        return env

    status_box = []

    def start_response(status, headers, exc_info=None):
        status_box.append(status)
        return lambda data: None

    def one_call():
        result = app(make_environ(), start_response)
        try:
            n = 0
            for chunk in result:
                n += len(chunk)
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()
        return n

    # Warm up (imports, template caches, DB connections) and check the app answers 200.
    for _ in range(5):
        one_call()
    if not status_box or not status_box[-1].startswith("200"):
        print(json.dumps({"error": f"app answered {status_box[-1:]}"}))
        return 1

    iterations = args.iterations
    if iterations <= 0:
        t0 = time.perf_counter()
        probe = 0
        while time.perf_counter() - t0 < 0.05 or probe < 3:
            one_call()
            probe += 1
        per = (time.perf_counter() - t0) / probe
        iterations = max(10, int(args.target_seconds / per))

    # Several batches; report the least-disturbed one (like timeit): on a shared machine the
    # slower batches measure other processes, not the call.
    repeat = max(1, args.repeat)
    per_batch = max(1, iterations // repeat)
    walls, cpus = [], []
    for _ in range(repeat):
        c0 = time.thread_time_ns()
        t0 = time.perf_counter_ns()
        for _ in range(per_batch):
            one_call()
        t1 = time.perf_counter_ns()
        c1 = time.thread_time_ns()
        walls.append((t1 - t0) / per_batch)
        cpus.append((c1 - c0) / per_batch)
    print(
        json.dumps(
            {
                "ns_per_call": min(walls),
                "cpu_ns_per_call": min(cpus),
                "batch_ns": walls,
                "iterations": per_batch * repeat,
                "source": "python",
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
