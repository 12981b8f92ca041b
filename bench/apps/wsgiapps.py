"""Plain WSGI callables for the benchmark workloads (one callable per workload).

Every server under test loads the same callable from this file (module
``wsgiapps``, working directory ``bench/apps``), so the Python work per request
is identical across servers. Constant bodies are built once at import time.
"""

import json as _json
import time

_TEXT = [("Content-Type", "text/plain")]

# 1 hello: a fixed 1 KiB bytes body.
HELLO_BODY = (b"Hello, world! " * 74)[:1023] + b"\n"
assert len(HELLO_BODY) == 1024


def hello(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "1024")])
    return [HELLO_BODY]


# 2 json: a ~4 KiB dict serialized with the stdlib json module on every request.
JSON_DATA = {
    "service": "catalog",
    "version": 3,
    "ok": True,
    "items": [
        {
            "id": i,
            "sku": f"SKU-{i:05d}",
            "name": f"Item number {i}",
            "price": round(9.99 + i * 1.25, 2),
            "tags": ["alpha", "beta", "gamma"][: 1 + i % 3],
            "in_stock": i % 2 == 0,
        }
        for i in range(34)
    ],
}


def json_app(environ, start_response):
    body = _json.dumps(JSON_DATA).encode()
    start_response(
        "200 OK",
        [("Content-Type", "application/json"), ("Content-Length", str(len(body)))],
    )
    return [body]


# 4 upload: read wsgi.input fully (never past CONTENT_LENGTH) and return its length.
def upload(environ, start_response):
    stream = environ["wsgi.input"]
    remaining = int(environ.get("CONTENT_LENGTH") or 0)
    total = 0
    while remaining > 0:
        chunk = stream.read(min(remaining, 65536))
        if not chunk:
            break
        total += len(chunk)
        remaining -= len(chunk)
    body = str(total).encode()
    start_response("200 OK", _TEXT + [("Content-Length", str(len(body)))])
    return [body]


# 5 stream: a generator yielding 64 chunks of 16 KiB, no Content-Length.
STREAM_CHUNK = b"s" * 16384
STREAM_CHUNKS = 64


def stream(environ, start_response):
    start_response("200 OK", [("Content-Type", "application/octet-stream")])

    def gen():
        for _ in range(STREAM_CHUNKS):
            yield STREAM_CHUNK

    return gen()


# 6 io: the app blocks for 10 ms (stand-in for a database or HTTP call).
IO_BODY = b"slept 10 ms\n"


def io_sleep(environ, start_response):
    time.sleep(0.010)
    start_response("200 OK", _TEXT + [("Content-Length", str(len(IO_BODY)))])
    return [IO_BODY]


# Sizes the runner checks each response against (bytes of body).
EXPECTED_BODY_BYTES = {
    "hello": len(HELLO_BODY),
    "json_app": len(_json.dumps(JSON_DATA).encode()),
    "stream": len(STREAM_CHUNK) * STREAM_CHUNKS,
    "io_sleep": len(IO_BODY),
}
