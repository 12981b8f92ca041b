"""Plain WSGI application exercising PEP 3333 for the end-to-end tests.

One route per behaviour. Things the tests cannot see on the wire (close() calls, what
start_response raised, whether a request reached Python) are written as marker files
into $E2E_STATE_DIR, named after a `token` query parameter, so they work across
workers and threads.
"""

import base64
import hashlib
import io
import json
import os
import random
import sys
import threading
import time
import urllib.parse
import wsgiref.validate

STATE_DIR = os.environ.get("E2E_STATE_DIR", "")
NOT_CALLABLE = 42  # for the CLI test "app attribute is not callable"
if os.environ.get("E2E_FAULTHANDLER_USR1"):
    import faulthandler
    import signal

    faulthandler.register(signal.SIGUSR1, all_threads=True)  # stack dumps on demand
if os.environ.get("E2E_PRINT_AT_IMPORT"):
    print(f"imported-{os.environ['E2E_PRINT_AT_IMPORT']}")  # no flush: it waits in the buffer

# Strong references to file-likes handed to wsgi.file_wrapper: their close() must come
# from the server, not from garbage collection.
_KEEP = []
_KEEP_LOCK = threading.Lock()


# --------------------------------------------------------------------------- helpers


def mark(name, content=""):
    if not STATE_DIR:
        return
    path = os.path.join(STATE_DIR, name)
    tmp = f"{path}.tmp-{os.getpid()}-{threading.get_ident()}"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(content)
    os.replace(tmp, path)


def marker_exists(name):
    return bool(STATE_DIR) and os.path.exists(os.path.join(STATE_DIR, name))


def wait_released(token, timeout=30.0):
    deadline = time.monotonic() + timeout
    while not marker_exists(f"release-{token}"):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def query(environ):
    return dict(urllib.parse.parse_qsl(environ.get("QUERY_STRING", ""), keep_blank_values=True))


def respond_json(start_response, obj, status="200 OK", headers=()):
    body = json.dumps(obj).encode("ascii")
    start_response(
        status,
        [("Content-Type", "application/json"), ("Content-Length", str(len(body)))] + list(headers),
    )
    return [body]


def respond_text(start_response, text, status="200 OK", headers=()):
    body = text if isinstance(text, bytes) else text.encode("utf-8")
    start_response(
        status,
        [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))]
        + list(headers),
    )
    return [body]


class ClosingIterable:
    """Wraps a generator; records the server's call of close() as marker closed-<token>."""

    def __init__(self, gen, token):
        self._gen = gen
        self._token = token

    def __iter__(self):
        return self._gen

    def close(self):
        mark(f"closed-{self._token}", "closed")
        self._gen.close()


def pattern_bytes(size):
    """Deterministic, non-periodic content (the tests regenerate it the same way)."""
    return random.Random(size).randbytes(size)


def b64(data):
    return base64.b64encode(data).decode("ascii")


# --------------------------------------------------------------------------- environ


def describe_environ(environ):
    values, types = {}, {}
    for key, value in environ.items():
        types[key] = type(value).__name__
        if value is None or isinstance(value, (str, bool, int)):
            values[key] = value
        elif isinstance(value, tuple) and all(isinstance(x, int) for x in value):
            values[key] = list(value)
        else:
            values[key] = repr(value)
    inp, err = environ.get("wsgi.input"), environ.get("wsgi.errors")
    return {
        "environ": values,
        "types": types,
        "environ_is_dict": type(environ) is dict,
        "input_methods": {m: callable(getattr(inp, m, None)) for m in ("read", "readline", "readlines", "__iter__")},
        "errors_methods": {m: callable(getattr(err, m, None)) for m in ("write", "writelines", "flush")},
        "file_wrapper_callable": callable(environ.get("wsgi.file_wrapper")),
        "pid": os.getpid(),
        "ppid": os.getppid(),
        "cwd": os.getcwd(),
        "thread": threading.get_ident(),
    }


def route_environ(environ, start_response):
    return respond_json(start_response, describe_environ(environ))


def _validated_inner(environ, start_response):
    inp = environ["wsgi.input"]
    length = int(environ.get("CONTENT_LENGTH") or 0)
    body = inp.read(length) if length else b""
    payload = b"valid:" + hashlib.sha256(body).hexdigest().encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(payload)))])
    return [payload]


# wsgiref's validator asserts on every PEP 3333 rule it knows (environ keys and types,
# input/errors methods, iterator protocol); a violation raises -> the server answers 500.
route_validate = wsgiref.validate.validator(_validated_inner)


# --------------------------------------------------------------------------- wsgi.input


def route_input(environ, start_response):
    mode = environ["PATH_INFO"].rsplit("/", 1)[-1]
    q = query(environ)
    inp = environ["wsgi.input"]
    result = {"mode": mode}
    body = b""
    if mode == "read":
        body = inp.read()
        result["after_eof"] = [len(inp.read()), len(inp.read(10))]
    elif mode == "read-neg":
        body = inp.read(-1)
        result["after_eof"] = [len(inp.read(-1)), len(inp.read(10))]
    elif mode == "read-n":
        n = int(q["n"])
        chunks = []
        for _ in range(10_000_000):
            c = inp.read(n)
            if not c:
                break
            chunks.append(c)
        body = b"".join(chunks)
        result["chunk_sizes"] = [len(c) for c in chunks]
        result["after_eof"] = [len(inp.read(n)), len(inp.read())]
    elif mode == "readline":
        lines = []
        for _ in range(10_000_000):
            line = inp.readline()
            if not line:
                break
            lines.append(line)
        body = b"".join(lines)
        result["lines"] = [b64(x) for x in lines]
        result["after_eof"] = [len(inp.readline()), len(inp.read())]
    elif mode == "readline-n":
        n = int(q["n"])
        lines = []
        for _ in range(10_000_000):
            line = inp.readline(n)
            if not line:
                break
            lines.append(line)
        body = b"".join(lines)
        result["lines"] = [b64(x) for x in lines]
        result["after_eof"] = [len(inp.readline(n))]
    elif mode == "readlines":
        lines = inp.readlines()
        body = b"".join(lines)
        result["lines"] = [b64(x) for x in lines]
        result["after_eof"] = [len(inp.readlines()), len(inp.read())]
    elif mode == "iter":
        lines = list(inp)
        body = b"".join(lines)
        result["lines"] = [b64(x) for x in lines]
        result["after_eof"] = [len(inp.read())]
    elif mode == "mixed":
        first = inp.readline()
        second = inp.read(3)
        rest = inp.read()
        body = first + second + rest
        result["parts"] = [b64(first), b64(second), b64(rest)]
    elif mode == "partial":
        body = inp.read(int(q["n"]))
    elif mode == "none":
        body = b""
    elif mode == "guarded":
        # Reads with the outcome recorded: used when the client vanishes mid-body.
        token = q["token"]
        try:
            data = inp.read()
            outcome = f"returned:{len(data)}"
            body = data
        except Exception as e:  # noqa: BLE001 - any error is an acceptable outcome
            outcome = f"raised:{type(e).__name__}"
        mark(f"read-{token}", outcome)
    else:
        return respond_text(start_response, f"unknown input mode {mode}", "404 Not Found")
    result["length"] = len(body)
    result["sha256"] = hashlib.sha256(body).hexdigest()
    if len(body) <= 1 << 20:
        result["body"] = b64(body)
    return respond_json(start_response, result)


def route_duplex(environ, start_response):
    """Reads the body piece by piece while already streaming the response."""
    inp = environ["wsgi.input"]
    start_response("200 OK", [("Content-Type", "application/octet-stream")])

    def gen():
        yield b"start;"
        while True:
            piece = inp.read(1024)
            if not piece:
                break
            yield piece
        yield b";end"

    return gen()


def route_echo(environ, start_response):
    body = environ["wsgi.input"].read()
    ctype = environ.get("CONTENT_TYPE", "application/octet-stream")
    start_response("200 OK", [("Content-Type", ctype), ("Content-Length", str(len(body)))])
    return [body]


# --------------------------------------------------------------------------- responses


def route_hello(environ, start_response):
    return respond_text(start_response, "Hello, world!\n")


def route_stream(environ, start_response):
    """Generator body without Content-Length: chunked on HTTP/1.1."""
    q = query(environ)
    n, size, token = int(q.get("n", 5)), int(q.get("size", 10)), q.get("token", "stream")
    start_response("200 OK", [("Content-Type", "application/octet-stream")])

    def gen():
        for i in range(n):
            yield (b"%d:" % i).ljust(size, b"x")

    return ClosingIterable(gen(), token)


def route_stream_cl(environ, start_response):
    """Generator body with a correct Content-Length."""
    parts = [b"alpha-", b"beta-", b"gamma"]
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(sum(map(len, parts))))])
    return ClosingIterable(iter(parts), query(environ).get("token", "streamcl"))


def route_stream_slow(environ, start_response):
    """Endless-ish paced stream (bounded to ~30 s) for client-disconnect tests."""
    token = query(environ)["token"]
    start_response("200 OK", [("Content-Type", "application/octet-stream")])

    def gen():
        yield b"first-chunk"
        for _ in range(3000):
            time.sleep(0.01)
            yield b"y" * 1024
        mark(f"exhausted-{token}")

    return ClosingIterable(gen(), token)


def route_empty(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return ClosingIterable(iter([]), query(environ).get("token", "empty"))


def route_empty_chunks(environ, start_response):
    """Empty byte strings in the middle of a stream must not end a chunked body."""
    start_response("200 OK", [("Content-Type", "text/plain")])
    return iter([b"", b"one", b"", b"", b"two", b""])


def route_lazy_start(environ, start_response):
    """start_response is first called from inside the iterable (PEP 3333 allows it)."""
    token = query(environ).get("token", "lazy")

    def gen():
        start_response("201 Created", [("Content-Type", "text/plain"), ("X-Lazy", "yes")])
        yield b""
        yield b"lazy body"

    return ClosingIterable(gen(), token)


def route_write(environ, start_response):
    mode = query(environ).get("mode", "list")
    write = start_response("200 OK", [("Content-Type", "text/plain")])
    write(b"one,")
    write(b"two,")
    if mode == "gen":

        def gen():
            yield b"three,"
            yield b"four"

        return gen()
    return [b"three"]


def route_exc_info_before(environ, start_response):
    """exc_info replaces the pending status/headers while nothing has been sent."""
    start_response("200 OK", [("Content-Type", "text/plain"), ("X-First", "1")])
    try:
        raise ValueError("replace the response")
    except ValueError:
        start_response("503 Replaced", [("Content-Type", "text/plain"), ("X-Replaced", "1")], sys.exc_info())
    return [b"replaced-body"]


def route_exc_info_after(environ, start_response):
    """exc_info after the headers went out: start_response must re-raise it."""
    token = query(environ)["token"]

    def gen():
        start_response("200 OK", [("Content-Type", "text/plain")])
        yield b"first-chunk"
        try:
            raise ValueError(f"late failure {token}")
        except ValueError:
            try:
                start_response("500 Internal Server Error", [("Content-Type", "text/plain")], sys.exc_info())
            except ValueError as e:
                mark(f"reraised-{token}", f"ValueError:{e}")
                raise
            except BaseException as e:  # noqa: BLE001
                mark(f"reraised-{token}", f"other:{type(e).__name__}")
                raise
            mark(f"reraised-{token}", "not-reraised")
        yield b"must-not-be-sent"

    return ClosingIterable(gen(), token)


def route_exc_info_after_empty(environ, start_response):
    """Only an empty chunk was yielded: nothing is sent yet, so exc_info may still replace it."""
    token = query(environ).get("token", "excempty")

    def gen():
        start_response("200 OK", [("Content-Type", "text/plain"), ("X-First", "1")])
        yield b""
        try:
            raise ValueError("replace after empty chunk")
        except ValueError:
            start_response("502 Replaced Late", [("Content-Type", "text/plain"), ("X-Replaced", "1")], sys.exc_info())
        yield b"replaced-after-empty"

    return ClosingIterable(gen(), token)


def route_close_raises(environ, start_response):
    token = query(environ)["token"]
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "4")])

    class Body:
        def __iter__(self):
            return iter([b"body"])

        def close(self):
            mark(f"closed-{token}", "closed")
            raise RuntimeError(f"close failure {token}")

    return Body()


def route_big_list(environ, start_response):
    """A large body returned as a one-element list (size in KiB), deterministic content."""
    q = query(environ)
    if "token" in q:
        mark(f"started-{q['token']}")
    body = pattern_bytes(int(q.get("kib", 512)) * 1024)
    start_response("200 OK", [("Content-Type", "application/octet-stream"),
                              ("Content-Length", str(len(body)))])
    return [body]


def route_big_stream(environ, start_response):
    """A large generator body (size in MiB), deterministic content."""
    mib = int(query(environ).get("mib", 20))
    block = pattern_bytes(65536)
    start_response("200 OK", [("Content-Type", "application/octet-stream")])
    return (block for _ in range(mib * 16))


def route_crash(environ, start_response):
    """The worker process dies in the middle of a request."""
    token = query(environ)["token"]
    mark(f"crashing-{token}", str(os.getpid()))
    if query(environ).get("how") == "abort":
        os.abort()
    os._exit(int(query(environ).get("code", 3)))


def route_start_response_twice(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    try:
        start_response("202 Accepted", [("Content-Type", "text/plain"), ("X-Second", "1")])
        outcome = "no-error"
    except Exception as e:  # noqa: BLE001
        outcome = f"raised:{type(e).__name__}"
    return [outcome.encode()]


class TrackedFile(io.FileIO):
    token = ""

    def close(self):
        if not self.closed:
            mark(f"closed-{self.token}", "closed")
        super().close()


class UppercasingFile(TrackedFile):
    """A real file whose read() transforms: its bytes on disk are not the body."""

    def read(self, size=-1):
        return super().read(size).upper()

    def readinto(self, buffer):  # noqa: D401 - keep the transformation on every path
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


class TrackedBytesIO(io.BytesIO):
    token = ""

    def close(self):
        if not self.closed:
            mark(f"closed-{self.token}", "closed")
        super().close()


def _marking_close(filelike, token):
    inner = filelike.close

    def close():
        if not filelike.closed:
            mark(f"closed-{token}", "closed")
        inner()

    return close


class NoLengthReads(io.BytesIO):
    """A file-like whose read() returns something without a length (an app bug)."""

    def read(self, size=-1):
        return 42


def route_file_wrapper(environ, start_response):
    q = query(environ)
    kind, size, token = q.get("kind", "real"), int(q.get("size", 1000)), q.get("token", "fw")
    seek, cl = int(q.get("seek", 0)), q.get("cl", "auto")
    data = pattern_bytes(size)
    if kind == "real":
        path = os.path.join(STATE_DIR, f"fw-{size}.bin")
        if not os.path.exists(path):
            tmp = f"{path}.tmp-{os.getpid()}-{threading.get_ident()}"
            with open(tmp, "wb") as f:
                f.write(data)
            os.replace(tmp, path)
        filelike = TrackedFile(path, "rb")
    elif kind in ("gzip", "upper"):
        # Real files with a fileno() whose read() is not their bytes on disk.
        path = os.path.join(STATE_DIR, f"fw-{kind}-{size}-{token}.bin")
        if kind == "gzip":
            import gzip

            with gzip.open(path, "wb") as f:
                f.write(data)
            filelike = gzip.open(path, "rb")
            filelike.close = _marking_close(filelike, token)
        else:
            with open(path, "wb") as f:
                f.write(data)
            filelike = UppercasingFile(path, "rb")
    elif kind == "nolen":
        filelike = NoLengthReads(data)
    else:
        filelike = TrackedBytesIO(data)
    filelike.token = token
    filelike.seek(seek)
    with _KEEP_LOCK:
        _KEEP.append(filelike)
        del _KEEP[:-200]
    headers = [("Content-Type", "application/octet-stream")]
    if cl == "auto":
        headers.append(("Content-Length", str(size - seek)))
    elif cl != "none":
        headers.append(("Content-Length", cl))
    start_response("200 OK", headers)
    wrapper = environ["wsgi.file_wrapper"](filelike, int(q.get("blksize", 8192)))
    if q.get("wrap") == "1":
        # Middleware-style re-wrapping: the server cannot recognise the file any more and
        # must simply iterate; close() reaches the file through the wrapper.
        def gen():
            for block in wrapper:
                yield block

        return _Rewrapped(gen(), wrapper)
    return wrapper


def route_file_wrapper_proc(environ, start_response):
    """A regular file whose size says 0 although reading it gives bytes (procfs, sysfs)."""
    token = query(environ).get("token", "fwproc")
    filelike = TrackedFile("/proc/self/status", "rb")
    filelike.token = token
    start_response("200 OK", [("Content-Type", "text/plain")])
    return environ["wsgi.file_wrapper"](filelike)


class _Rewrapped:
    def __init__(self, gen, inner):
        self._gen, self._inner = gen, inner

    def __iter__(self):
        return self._gen

    def close(self):
        self._gen.close()
        self._inner.close()


def route_content_length_mismatch(environ, start_response):
    q = query(environ)
    declared, actual = int(q["declared"]), int(q["actual"])
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(declared))])

    def gen():
        remaining = actual  # -1: never ends
        while remaining:
            n = min(remaining, 7) if remaining > 0 else 7
            if remaining > 0:
                remaining -= n
            yield b"z" * n

    return ClosingIterable(gen(), q.get("token", "clmismatch"))


def route_write_then_raise(environ, start_response):
    """write() part of a body (no Content-Length), then fail: the response is cut short."""
    token = query(environ).get("token", "writeraise")
    write = start_response("200 OK", [("Content-Type", "text/plain")])
    write(b"partial-write")
    mark(f"closed-{token}")  # nothing to close(): the marker the tests wait for
    raise RuntimeError(f"write-then-raise boom {token}")


def route_write_past_length(environ, start_response):
    """write() more than the declared Content-Length; records what the second write raised."""
    q = query(environ)
    token = q["token"]
    first = q.get("first", "abc").encode()
    write = start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "5")])
    write(first)
    try:
        write(b"defgh"[len(first) - 3:])  # "abc" + "defgh": past the length mid-write
        mark(f"raised-{token}", "nothing")
    except Exception as e:  # noqa: BLE001 - recording whatever it is
        mark(f"raised-{token}", f"{type(e).__name__}: {e}")
    return []


BAD_HEADERS = {
    "value-crlf": ("X-Bad", "a\r\nInjected: yes"),
    "value-lf": ("X-Bad", "a\nInjected: yes"),
    "value-cr": ("X-Bad", "a\rInjected: yes"),
    "value-nul": ("X-Bad", "a\x00b"),
    "value-non-latin1": ("X-Bad", "\u20ac"),
    "value-bytes": ("X-Bad", b"bytes"),
    "value-none": ("X-Bad", None),
    "name-crlf": ("X-Bad\r\nInjected", "yes"),
    "name-space": ("X Bad", "v"),
    "name-colon": ("X-Bad:", "v"),
    "name-empty": ("", "v"),
    "name-bytes": (b"X-Bad", "v"),
    "not-a-pair": ("X-Bad", "v", "extra"),
    "content-length-letters": ("Content-Length", "abc"),
    "content-length-negative": ("Content-Length", "-1"),
}

BAD_STATUSES = {
    "crlf": "200 OK\r\nInjected: yes",
    "letters": "abc OK",
    "two-digits": "20 OK",
    "four-digits": "2000 OK",
    "no-space": "200OK",
    "empty": "",
    "zero": "000 Zero",
    "bytes": b"200 OK",
    "none": None,
    "interim-100": "100 Continue",
    "interim-103": "103 Early Hints",
    "above-599": "600 Too High",
    "nine-nine-nine": "999 Whatever",
}


def _start_or_record(start_response, token, status, headers):
    """start_response may reject bad arguments at once (then no iterable exists to close)."""
    try:
        start_response(status, headers)
    except Exception as e:
        mark(f"start-response-raised-{token}", type(e).__name__)
        raise


def route_bad_header(environ, start_response):
    q = query(environ)
    token = q.get("token", "badheader")
    _start_or_record(start_response, token, "200 OK", [("Content-Type", "text/plain"), BAD_HEADERS[q["kind"]]])
    return ClosingIterable(iter([b"must-not-be-sent"]), token)


def route_bad_head_recover(environ, start_response):
    """PEP 3333: start_response checks the head when called, so the app can catch the
    error there and answer something else (nothing was started)."""
    q = query(environ)
    status, headers = "200 OK", [("Content-Type", "text/plain")]
    if "header" in q:
        headers = headers + [BAD_HEADERS[q["header"]]]
    else:
        status = BAD_STATUSES[q["status"]]
    try:
        start_response(status, headers)
    except (ValueError, TypeError) as e:
        start_response("502 Bad Gateway", [("Content-Type", "text/plain")])
        return [f"recovered from {type(e).__name__}".encode()]
    return [b"must-not-be-sent"]


def route_exc_info_bad_replacement(environ, start_response):
    """A valid head, then an error page whose head is invalid: the failed call counts as
    not made, so the first head stands."""
    start_response("200 OK", [("Content-Type", "text/plain"), ("X-First", "1")])
    try:
        raise RuntimeError("something failed")
    except RuntimeError:
        try:
            start_response("500 Internal Server Error", [("X-Bad", "a\r\nb")], sys.exc_info())
        except ValueError:
            pass
    return [b"first head kept"]


def route_bad_status(environ, start_response):
    q = query(environ)
    token = q.get("token", "badstatus")
    _start_or_record(start_response, token, BAD_STATUSES[q["kind"]], [("Content-Type", "text/plain")])
    return ClosingIterable(iter([b"must-not-be-sent"]), token)


def route_error(environ, start_response):
    raise RuntimeError(f"boom {query(environ).get('token', '')}")


def route_error_in_iter(environ, start_response):
    """Exception from the iterable before any body: still a clean 500."""
    token = query(environ).get("token", "erriter")

    def gen():
        start_response("200 OK", [("Content-Type", "text/plain")])
        raise RuntimeError(f"iter boom {token}")
        yield b"never"  # noqa: unreachable - makes this a generator

    return ClosingIterable(gen(), token)


def route_error_mid_stream(environ, start_response):
    token = query(environ).get("token", "errmid")
    start_response("200 OK", [("Content-Type", "text/plain")])

    def gen():
        yield b"partial-body"
        raise RuntimeError(f"mid-stream boom {token}")

    return ClosingIterable(gen(), token)


def route_return_none(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return None


def route_yield_str(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return ClosingIterable(iter(["a native string is not a body"]), query(environ).get("token", "yieldstr"))


def route_no_start_response(environ, start_response):
    return [b"body without start_response"]


def route_status(environ, start_response):
    """Any status; with body=1 the app (wrongly) supplies a body the server must drop."""
    q = query(environ)
    code = int(q["code"])
    reasons = {200: "OK", 204: "No Content", 205: "Reset Content", 304: "Not Modified", 404: "Not Found",
               418: "I'm a teapot"}
    headers = [("X-Status-Route", str(code))]
    body = b"body-that-must-not-be-sent" if q.get("body") == "1" else b""
    if code not in (204, 304):
        headers.append(("Content-Type", "text/plain"))
    start_response(f"{code} {reasons.get(code, 'Whatever')}", headers)
    return ClosingIterable(iter([body] if body else []), q.get("token", "status"))


def route_reason(environ, start_response):
    status = query(environ).get("status", "299 Custom Reason")
    start_response(status, [("Content-Type", "text/plain"), ("Content-Length", "2")])
    return [b"ok"]


def route_hop_headers(environ, start_response):
    """Hop-by-hop headers from the app: the server owns them, drops them, and logs so."""
    start_response("200 OK", [("Content-Type", "text/plain"), ("X-Hop-Test-Keep-Alive", "x"),
                              ("Keep-Alive", "timeout=99"), ("Transfer-Encoding", "identity"),
                              ("Connection", "keep-alive"), ("Proxy-Connection", "keep-alive")])
    return [b"hop"]


def route_set_cookies(environ, start_response):
    start_response(
        "200 OK",
        [
            ("Content-Type", "text/plain"),
            ("Set-Cookie", "a=1; Path=/"),
            ("Set-Cookie", "b=2; Path=/"),
            ("X-Mixed-Case-Header", "MiXeD"),
            ("Content-Length", "7"),
        ],
    )
    return [b"cookies"]


def route_errors_log(environ, start_response):
    msg = query(environ)["msg"]
    errors = environ["wsgi.errors"]
    errors.write(f"wsgi.errors write: {msg}\n")
    errors.writelines([f"wsgi.errors writelines 1: {msg}\n", f"wsgi.errors writelines 2: {msg}\n"])
    errors.flush()
    if "partial" in query(environ):
        errors.write(f"partial line without a newline: {msg}")  # no flush: ends with the request
    return respond_text(start_response, "logged")


def route_block(environ, start_response):
    """Signals that it started, then holds its blocking thread until released."""
    token = query(environ)["token"]
    mark(f"started-{token}", str(os.getpid()))
    released = wait_released(token)
    mark(f"finished-{token}", "released" if released else "timeout")
    if not released:
        return respond_text(start_response, "never released", "504 Gateway Timeout")
    if query(environ).get("iterable") == "1":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return ClosingIterable(iter([b"released ", token.encode()]), token)
    return respond_text(start_response, f"released {token}")


def route_block_then_read(environ, start_response):
    """Holds the request (body unread) until released, then reads the whole body."""
    token = query(environ)["token"]
    mark(f"started-{token}", str(os.getpid()))
    if not wait_released(token):
        return respond_text(start_response, "never released", "504 Gateway Timeout")
    body = environ["wsgi.input"].read()
    return respond_json(start_response, {"length": len(body), "sha256": hashlib.sha256(body).hexdigest()})


def route_input_race(environ, start_response):
    """Two threads read wsgi.input at once (an app bug): one read must be refused with
    RuntimeError while the other waits for the body, which the test sends only after
    the refusal (marker error-<token>)."""
    token = query(environ)["token"]
    inp = environ["wsgi.input"]
    results, errors = {}, {}

    def reader(name):
        try:
            results[name] = inp.read(5).decode()
        except RuntimeError as e:
            errors[name] = str(e)
            mark(f"error-{token}")

    t = threading.Thread(target=reader, args=("thread",))
    t.start()
    reader("main")
    t.join(30)
    return respond_json(start_response, {"results": results, "errors": errors})


def route_input_after_return(environ, start_response):
    """Leaves a thread reading wsgi.input after the app has returned (an app bug): the
    server must wait for that read before it reuses the request's state."""
    token = query(environ)["token"]
    inp = environ["wsgi.input"]

    def late_reader():
        mark(f"reading-{token}")
        try:
            mark(f"late-read-{token}", inp.read(5).decode())
        except Exception as e:  # noqa: BLE001 - recorded for the test
            mark(f"late-read-{token}", f"{type(e).__name__}: {e}")

    t = threading.Thread(target=late_reader)
    t.start()
    wait_for = time.monotonic() + 20
    while not marker_exists(f"reading-{token}") and time.monotonic() < wait_for:
        time.sleep(0.001)
    return respond_text(start_response, "returned")


def route_write_race(environ, start_response):
    """Two threads call write() with more than the socket buffers hold while the client is
    not reading (an app bug): the second must be refused while the first waits for the
    client. The test starts reading only after the refusal (marker error-<token>)."""
    token = query(environ)["token"]
    write = start_response("200 OK", [("Content-Type", "application/octet-stream")])
    big = b"w" * (16 * 1024 * 1024)
    errors = {}

    def writer(name):
        try:
            write(big)
        except RuntimeError as e:
            errors[name] = str(e)
            mark(f"error-{token}", str(e))

    t = threading.Thread(target=writer, args=("thread",))
    t.start()
    writer("main")
    t.join(60)
    mark(f"errors-{token}", json.dumps(errors))
    return []


def route_stream_paused(environ, start_response):
    """Sends a first chunk, waits until released, then sends the rest."""
    token = query(environ)["token"]
    start_response("200 OK", [("Content-Type", "text/plain")])

    def gen():
        yield b"before-pause;"
        mark(f"paused-{token}")
        if not wait_released(token):
            yield b"never released"
            return
        yield b"after-pause"

    return ClosingIterable(gen(), token)


def route_gen_without_start_response(environ, start_response):
    def gen():
        yield b"data before start_response"

    return gen()


def route_mark(environ, start_response):
    """Records that this request reached Python."""
    token = query(environ)["token"]
    mark(f"ran-{token}", str(os.getpid()))
    return respond_text(start_response, f"ran {token}")


def route_pid(environ, start_response):
    return respond_json(start_response, {
        "pid": os.getpid(),
        "ppid": os.getppid(),
        "tid": threading.get_native_id(),
        "policy": os.sched_getscheduler(0),
    })


def route_osenv(environ, start_response):
    key = query(environ)["key"]
    return respond_json(start_response, {"key": key, "value": os.environ.get(key)})


ROUTES = {
    "/hello": route_hello,
    "/echo": route_echo,
    "/duplex": route_duplex,
    "/validate": route_validate,
    "/stream": route_stream,
    "/stream-cl": route_stream_cl,
    "/stream-slow": route_stream_slow,
    "/empty": route_empty,
    "/empty-chunks": route_empty_chunks,
    "/lazy-start": route_lazy_start,
    "/write": route_write,
    "/exc-info-before": route_exc_info_before,
    "/exc-info-after": route_exc_info_after,
    "/start-response-twice": route_start_response_twice,
    "/exc-info-after-empty": route_exc_info_after_empty,
    "/close-raises": route_close_raises,
    "/big-stream": route_big_stream,
    "/big-list": route_big_list,
    "/crash": route_crash,
    "/file-wrapper": route_file_wrapper,
    "/file-wrapper-proc": route_file_wrapper_proc,
    "/cl-mismatch": route_content_length_mismatch,
    "/bad-header": route_bad_header,
    "/bad-status": route_bad_status,
    "/bad-head-recover": route_bad_head_recover,
    "/exc-info-bad-replacement": route_exc_info_bad_replacement,
    "/error": route_error,
    "/error-in-iter": route_error_in_iter,
    "/error-mid-stream": route_error_mid_stream,
    "/return-none": route_return_none,
    "/yield-str": route_yield_str,
    "/no-start-response": route_no_start_response,
    "/status": route_status,
    "/reason": route_reason,
    "/set-cookies": route_set_cookies,
    "/errors-log": route_errors_log,
    "/block": route_block,
    "/mark": route_mark,
    "/block-then-read": route_block_then_read,
    "/input-race": route_input_race,
    "/write-race": route_write_race,
    "/input-after-return": route_input_after_return,
    "/stream-paused": route_stream_paused,
    "/gen-without-start-response": route_gen_without_start_response,
    "/pid": route_pid,
    "/osenv": route_osenv,
}



# --------------------------------------------------------------------------- regressions
# Routes for tests/e2e/test_regressions.py (one defect of a code review each).


def route_exc_info_bogus_after(environ, start_response):
    """write() already sent data, then start_response gets an exc_info that is a 3-tuple
    but no exception: the server must raise in the app, not crash the worker."""
    token = query(environ)["token"]
    write = start_response("200 OK", [("Content-Type", "text/plain")])
    write(b"first-chunk;")
    try:
        start_response("500 Internal Server Error", [("Content-Type", "text/plain")], (None, None, None))
    except BaseException as e:  # noqa: BLE001 - recorded, then propagated
        mark(f"bogus-{token}", f"raised:{type(e).__name__}")
        raise
    mark(f"bogus-{token}", "returned")
    return [b"after-bogus-exc-info"]


def route_exc_info_bogus_before(environ, start_response):
    """A bogus exc_info while nothing has been sent yet (the app does not catch the error)."""
    start_response("200 OK", [("Content-Type", "text/plain")])
    start_response("200 OK", [("Content-Type", "text/plain"), ("X-Bogus", "1")], (None, None, None))
    return [b"bogus-exc-info-accepted"]


def route_child_sigmask(environ, start_response):
    """A process the app spawns reports its own blocked-signal mask."""
    import subprocess

    proc = subprocess.run(["grep", "SigBlk", "/proc/self/status"], capture_output=True, timeout=20)
    return respond_json(
        start_response,
        {
            "returncode": proc.returncode,
            "stdout": proc.stdout.decode("ascii", "replace"),
            "stderr": proc.stderr.decode("ascii", "replace"),
        },
    )


def route_empty_list(environ, start_response):
    """An empty list body and no Content-Length (HEAD must not invent a length)."""
    start_response("200 OK", [("Content-Type", "text/plain")])
    return []


def route_head_aware(environ, start_response):
    """Sets the Content-Length a GET carries, but sends no body for HEAD."""
    body = b"twelve bytes"
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [] if environ["REQUEST_METHOD"] == "HEAD" else [body]


def _square(x):
    return x * x


def route_interpreter(environ, start_response):
    """What apps do with sys.executable: run it, and start a multiprocessing pool with it."""
    import multiprocessing
    import subprocess

    out = {"executable": sys.executable}
    r = subprocess.run([sys.executable, "-c", "import sys; print(sys.version_info[:2])"],
                       capture_output=True, text=True, timeout=60)
    out["subprocess"] = {"rc": r.returncode, "stdout": r.stdout.strip(), "stderr": r.stderr[-500:]}
    method = query(environ).get("start_method")
    if method:
        with multiprocessing.get_context(method).Pool(1) as pool:
            out["pool"] = pool.map(_square, [1, 2, 3])
    return respond_json(start_response, out)


def route_print(environ, start_response):
    """print() without a flush: under a block-buffered stdout it waits in Python's buffer."""
    print(f"printed-{query(environ)['token']}")
    return respond_text(start_response, "printed")


ROUTES.update(
    {
        "/write-past-length": route_write_past_length,
        "/hop-headers": route_hop_headers,
        "/write-then-raise": route_write_then_raise,
        "/print": route_print,
        "/interpreter": route_interpreter,
        "/exc-info-bogus-after": route_exc_info_bogus_after,
        "/exc-info-bogus-before": route_exc_info_bogus_before,
        "/child-sigmask": route_child_sigmask,
        "/empty-list": route_empty_list,
        "/head-aware": route_head_aware,
    }
)

def app(environ, start_response):
    path = environ.get("PATH_INFO", "")
    if path == "" or path == "/" or path.startswith("/environ"):
        return route_environ(environ, start_response)
    if path.startswith("/input/"):
        return route_input(environ, start_response)
    handler = ROUTES.get(path)
    if handler is None:
        return respond_text(start_response, f"no route {path!r}", "404 Not Found")
    return handler(environ, start_response)


def create_app():
    """Factory for --factory: the same app, tagging responses so the test can tell."""

    def factory_app(environ, start_response):
        def tagging_start_response(status, headers, exc_info=None):
            return start_response(status, list(headers) + [("X-Factory", "1")], exc_info)

        return app(environ, tagging_start_response)

    return factory_app


application = app  # what a module-only TARGET ("wsgi_app") names, as in gunicorn
