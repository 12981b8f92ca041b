"""The soak's WSGI application: a few routes covering the server's paths, keeping no state.

Nothing survives a request here (no caches, no globals written), so memory or descriptors
that grow during a soak are the server's, not the app's.

    /hello                  200, 12 bytes (list body: computed Content-Length)
    /json                   200, a ~2 KiB JSON document built per request
    /echo                   reads wsgi.input to the end in pieces; answers "<length> <crc32>"
    /stream?n=N&size=S      200, N chunks of S bytes from a generator (chunked on HTTP/1.1)
    /slow?ms=M              sleeps M ms (at most 200), then 200
    /stuck?ms=M             busy in Python (short sleeps) for M ms: past --request-timeout it gets 504
    /error                  raises: the server answers 500
    /alloc                  allocates and drops ~1 MiB per request, answers 200
"""

import json
import time
import zlib
from urllib.parse import parse_qs

_BLOCK = bytes(range(256)) * 256  # 64 KiB pattern the stream route slices from


def _int(query: dict, name: str, default: int, top: int) -> int:
    try:
        return max(0, min(top, int(query.get(name, [default])[0])))
    except ValueError:
        return default


def _stream(n: int, size: int):
    for i in range(n):
        start = (i * 7) % 256
        yield (_BLOCK[start:] + _BLOCK[:start])[:size] if size <= len(_BLOCK) else bytes(size)


def app(environ, start_response):
    path = environ["PATH_INFO"]
    query = parse_qs(environ.get("QUERY_STRING", ""))
    if path == "/hello":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"hello, soak\n"]
    if path == "/json":
        doc = {"items": [{"id": i, "name": f"item-{i}", "tags": ["a", "b"]} for i in range(40)]}
        body = json.dumps(doc).encode()
        start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
        return [body]
    if path == "/echo":
        stream = environ["wsgi.input"]
        length, crc = 0, 0
        while True:
            piece = stream.read(65536)
            if not piece:
                break
            length += len(piece)
            crc = zlib.crc32(piece, crc)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [f"{length} {crc}".encode()]
    if path == "/stream":
        n, size = _int(query, "n", 16, 4096), _int(query, "size", 4096, 65536)
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return _stream(n, size)
    if path == "/slow":
        time.sleep(_int(query, "ms", 5, 200) / 1000)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"slept\n"]
    if path == "/stuck":
        end = time.monotonic() + _int(query, "ms", 100, 30000) / 1000
        while time.monotonic() < end:  # short sleeps: the request-timeout exception lands between them
            time.sleep(0.01)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"done\n"]
    if path == "/error":
        raise RuntimeError("soak: this route always fails")
    if path == "/alloc":
        junk = [bytearray(4096) for _ in range(256)]
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [str(len(junk)).encode()]
    start_response("404 Not Found", [("Content-Type", "text/plain")])
    return [b"not found\n"]
