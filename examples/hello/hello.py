"""A small WSGI app to try appserver with: / greets, /echo echoes a POST body,
/stream streams a few chunks."""

import json
import time


def application(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/echo" and environ["REQUEST_METHOD"] == "POST":
        body = environ["wsgi.input"].read()
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return [body]
    if path == "/stream":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return (f"chunk {i} at {time.time():.3f}\n".encode() for i in range(5))
    if path == "/environ":
        keys = {k: v for k, v in environ.items() if isinstance(v, str)}
        start_response("200 OK", [("Content-Type", "application/json")])
        return [json.dumps(keys, indent=2, sort_keys=True).encode()]
    start_response("200 OK", [("Content-Type", "text/plain; charset=utf-8")])
    return [b"Hello from appserver!\n"]
