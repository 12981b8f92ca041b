"""An app with views that do not answer: one loops in Python (interruptible), one waits in
C (time.sleep: not interruptible until it returns). For --request-timeout tests."""

import os
import time
import urllib.parse

STATE_DIR = os.environ.get("E2E_STATE_DIR", "")


def mark(name):
    if STATE_DIR:
        with open(os.path.join(STATE_DIR, name), "w") as f:
            f.write(str(os.getpid()))


def app(environ, start_response):
    path = environ["PATH_INFO"]
    query = dict(urllib.parse.parse_qsl(environ.get("QUERY_STRING", "")))
    token = query.get("token", "")
    if path == "/spin":
        mark(f"started-{token}")
        try:
            while True:
                pass
        except BaseException as e:
            from appserver import RequestTimeout  # noqa: PLC0415 - the server provides it

            mark(f"interrupted-{token}-{type(e).__name__}-{isinstance(e, RequestTimeout)}")
            raise
    if path == "/sleep":
        mark(f"started-{token}")
        time.sleep(float(query.get("seconds", "60")))
    body = f"hello from {os.getpid()}".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
