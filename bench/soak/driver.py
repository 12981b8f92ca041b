#!/usr/bin/env python3
"""The soak's load: a fixed mix of well-formed, malformed, slow and abandoned HTTP/1.1 exchanges.

    python3 bench/soak/driver.py --port PORT --seconds S [--clients 16] [--out RESULT.json]

Standard-library sockets under asyncio, so any byte sequence can be sent. --clients tasks each
pick an action from MIX (weighted; the slow kinds have a cap on how many run at once) until the
time is up, then finish the action in hand (each is bounded by ACTION_TIMEOUT). Every request
written and every response read is counted per action kind; well-formed requests must get their
expected answer with a verified body, and anything else is a failure with its details kept.

The timeouts the server runs with (--keep-alive-timeout, --header-read-timeout, --read-timeout,
--request-timeout, --write-timeout) are passed in so the slow kinds stay on the intended side of them.
"""

import argparse
import asyncio
import json
import os
import random
import socket
import struct
import sys
import time
import zlib
from collections import Counter, defaultdict

HOST = "127.0.0.1"
ACTION_TIMEOUT = 90.0
RANDOM = os.urandom(4 << 20)
BLOCK = bytes(range(256)) * 256


class Failure(Exception):
    """A well-formed exchange that did not end as it should."""


class Unexpected(Exception):
    """A malformed request answered otherwise than docs/behaviour.md says."""


def stream_body(n: int, size: int) -> tuple[int, int]:
    """Length and CRC-32 of what the app's /stream route sends (same construction as app.py)."""
    crc = 0
    for i in range(n):
        start = (i * 7) % 256
        crc = zlib.crc32((BLOCK[start:] + BLOCK[:start])[:size], crc)
    return n * size, crc


class Stats:
    def __init__(self) -> None:
        self.actions: Counter = Counter()
        self.sent: Counter = Counter()  # requests written in full
        self.answered: Counter = Counter()  # responses read in full (final ones, 100 not counted)
        self.outcomes: dict = defaultdict(Counter)  # kind -> status code or outcome -> count
        self.failures: Counter = Counter()
        self.unexpected: Counter = Counter()
        self.samples: list = []  # first details of failures and unexpected answers
        self.timeline: list = []

    def outcome(self, kind: str, what) -> None:
        self.outcomes[kind][str(what)] += 1

    def note(self, bucket: str, kind: str, detail: str) -> None:
        (self.failures if bucket == "failure" else self.unexpected)[kind] += 1
        if len(self.samples) < 5000:
            self.samples.append({"t": round(time.monotonic() - T0, 3), "wall": round(time.time(), 3),
                                 "bucket": bucket, "kind": kind, "detail": detail})


T0 = time.monotonic()
STATS = Stats()


class Conn:
    """One client connection with the counting and response parsing every action uses."""

    def __init__(self, kind: str, reader, writer, sock) -> None:
        self.kind, self.reader, self.writer, self.sock = kind, reader, writer, sock
        self.requests = 0  # requests written on this connection
        self.closed_by_server = False  # a response said Connection: close

    @classmethod
    async def open(cls, kind: str, port: int, rcvbuf: int = 0, limit: int = 1 << 20) -> "Conn":
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.setblocking(False)
        try:
            await asyncio.get_running_loop().sock_connect(sock, (HOST, port))
        except BaseException:
            sock.close()
            raise
        reader, writer = await asyncio.open_connection(sock=sock, limit=limit)
        return cls(kind, reader, writer, sock)

    async def send(self, data: bytes, requests: int = 1) -> None:
        self.writer.write(data)
        await self.writer.drain()
        self.requests += requests
        STATS.sent[self.kind] += requests

    async def send_partial(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    def close(self) -> None:
        self.writer.close()

    def reset(self) -> None:
        """Abortive close: the peer sees a RST, not a FIN."""
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        self.writer.transport.abort()

    async def read_head(self) -> tuple[int, dict, bytes]:
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head[:-4].split(b"\r\n")
        parts = lines[0].split(b" ", 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
            raise Failure(f"bad status line {lines[0][:80]!r}")
        headers: dict = {}
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            headers.setdefault(name.strip().lower().decode("latin-1"), []).append(value.strip().decode("latin-1"))
        return int(parts[1]), headers, lines[0]

    async def read_exact(self, n: int, pace: tuple[int, float] | None) -> bytes:
        if not pace:
            return await self.reader.readexactly(n)
        step, delay = pace
        out = bytearray()
        while len(out) < n:
            out += await self.reader.readexactly(min(step, n - len(out)))
            await asyncio.sleep(delay)
        return bytes(out)

    async def response(self, method: str = "GET", pace=None, body_limit: int | None = None):
        """Reads one final response: (status, headers, body). Interim 1xx are skipped (except 100 when asked)."""
        status, headers, _ = await self.read_head()
        if 100 <= status < 200:
            return status, headers, b""
        te = ",".join(headers.get("transfer-encoding", [])).lower()
        if method == "HEAD" or status in (204, 304):
            body = b""
        elif "chunked" in te:
            parts = []
            while True:
                line = await self.reader.readuntil(b"\r\n")
                size = int(line.split(b";")[0].strip(), 16)
                if size == 0:
                    while (await self.reader.readuntil(b"\r\n")) != b"\r\n":  # trailers
                        pass
                    break
                parts.append(await self.read_exact(size, pace))
                if await self.reader.readexactly(2) != b"\r\n":
                    raise Failure("chunk not followed by CRLF")
                if body_limit is not None and sum(map(len, parts)) >= body_limit:
                    return status, headers, b"".join(parts)
            body = b"".join(parts)
        elif "content-length" in headers:
            n = int(headers["content-length"][0])
            if body_limit is not None:
                n = min(n, body_limit)
            body = await self.read_exact(n, pace)
        else:
            body = await self.reader.read()  # delimited by the end of the connection
        connection = ",".join(headers.get("connection", [])).lower()
        if "close" in connection:
            self.closed_by_server = True
        STATS.answered[self.kind] += 1
        return status, headers, body

    async def expect_eof(self, timeout: float) -> bytes:
        """What the server still sends before it closes (it must close within timeout)."""
        return await asyncio.wait_for(self.reader.read(), timeout)


# ---------------------------------------------------------------------------------------------
# Well-formed requests and how to check their answers


def get(path: str, extra: str = "", method: str = "GET") -> bytes:
    return f"{method} {path} HTTP/1.1\r\nHost: soak\r\nUser-Agent: soak-driver\r\n{extra}\r\n".encode()


def simple_request() -> tuple[bytes, str, callable]:
    """One small well-formed request: (bytes, method, check(status, headers, body) -> outcome)."""
    r = random.random()
    if r < 0.40:
        return get("/hello"), "GET", expect(200, body=b"hello, soak\n")
    if r < 0.60:
        return get("/json"), "GET", expect(200, check=lambda b: len(json.loads(b)["items"]) == 40)
    if r < 0.70:
        ms = random.choice((1, 2, 5, 10, 20))
        return get(f"/slow?ms={ms}"), "GET", expect(200, body=b"slept\n")
    if r < 0.78:
        return get("/alloc"), "GET", expect(200, body=b"256")
    if r < 0.83:
        return get("/error"), "GET", expect(500)
    if r < 0.86:
        return get("/nowhere?x=1"), "GET", expect(404, body=b"not found\n")
    if r < 0.90:
        return get("/hello", method="HEAD"), "HEAD", expect(200, body=b"")
    if r < 0.91:  # any token is a method (RFC 9110 9.1) and reaches the app
        return get("/hello", method=random.choice(("QUERY", "PURGE", "FROB"))), "GET", expect(200, body=b"hello, soak\n")
    if r < 0.96:
        n, size = random.choice(((1, 10), (8, 1000), (16, 4096), (4, 65536)))
        length, crc = stream_body(n, size)
        return get(f"/stream?n={n}&size={size}"), "GET", expect(200, check=lambda b: (len(b), zlib.crc32(b)) == (length, crc))
    size = random.choice((0, 1, 100, 4000))
    body = body_bytes(size)
    return (f"POST /echo HTTP/1.1\r\nHost: soak\r\nContent-Length: {size}\r\n\r\n".encode() + body, "POST",
            expect(200, body=f"{size} {zlib.crc32(body)}".encode()))


def expect(status: int, body: bytes | None = None, check=None):
    def verify(got: int, headers: dict, data: bytes):
        if got != status:
            raise Failure(f"status {got}, expected {status}; body {data[:120]!r}")
        if body is not None and data != body:
            raise Failure(f"status {got}: body {data[:80]!r} ({len(data)} bytes), expected {body[:80]!r}")
        if check is not None:
            try:
                ok = check(data)
            except Exception as e:  # a body that does not parse
                ok, data = False, repr(e).encode()
            if not ok:
                raise Failure(f"status {got}: body check failed ({len(data)} bytes) {data[:80]!r}")
        return got
    return verify


def body_bytes(size: int) -> bytes:
    start = random.randrange(0, len(RANDOM) - size + 1)
    return RANDOM[start:start + size]


def upload_size() -> int:
    return random.choices(
        (0, 1, 100, 4096, 65535, 65536, 65537, 200_000, 1 << 20, 3 << 20),
        weights=(2, 2, 10, 10, 3, 3, 3, 5, 3, 1))[0]


def chunked(body: bytes) -> bytes:
    out, i = [], 0
    while i < len(body):
        n = random.choice((1, 7, 100, 4096, 16384, 65536, 200_000))
        piece = body[i:i + n]
        ext = random.choice(("", "", "", ";a=1", ';x="y z"'))
        out.append(f"{len(piece):x}{ext}\r\n".encode() + piece + b"\r\n")
        i += n
    out.append(b"0\r\n\r\n" if random.random() < 0.8 else b"0\r\nX-Trailer: t\r\n\r\n")
    return b"".join(out)


# ---------------------------------------------------------------------------------------------
# Actions. Each one opens its own connection(s) and closes them; a Failure is a well-formed
# request that went wrong, Unexpected a malformed one answered otherwise than documented.

class Ctx:
    def __init__(self, args) -> None:
        self.port = args.port
        self.keep_alive = args.keep_alive_timeout
        self.header_timeout = args.header_read_timeout
        self.read_timeout = args.read_timeout
        self.request_timeout = args.request_timeout
        self.write_timeout = args.write_timeout


async def a_keepalive(ctx: Ctx, kind: str) -> None:
    """1-30 sequential requests on one connection; reconnects when the server announces a close."""
    conn = await Conn.open(kind, ctx.port)
    try:
        for _ in range(random.randint(1, 30)):
            if conn.closed_by_server:
                conn.close()
                STATS.outcome(kind, "reconnect_after_close")
                conn = await Conn.open(kind, ctx.port)
            data, method, verify = simple_request()
            await conn.send(data)
            try:
                status, headers, body = await conn.response(method)
            except (asyncio.IncompleteReadError, ConnectionError) as e:
                raise Failure(f"{type(e).__name__} on request {conn.requests} of the connection "
                              f"({data[:40]!r})") from None
            STATS.outcome(kind, verify(status, headers, body))
    finally:
        conn.close()


async def a_pipelined(ctx: Ctx, kind: str) -> None:
    """2-16 requests in one write, answers read in order."""
    conn = await Conn.open(kind, ctx.port)
    try:
        reqs = [simple_request() for _ in range(random.randint(2, 16))]
        await conn.send(b"".join(r[0] for r in reqs), requests=len(reqs))
        for i, (data, method, verify) in enumerate(reqs):
            if conn.closed_by_server:
                STATS.outcome(kind, "unanswered_after_announced_close")
                continue
            try:
                status, headers, body = await conn.response(method)
            except (asyncio.IncompleteReadError, ConnectionError) as e:
                raise Failure(f"{type(e).__name__} reading answer {i + 1}/{len(reqs)}") from None
            STATS.outcome(kind, verify(status, headers, body))
    finally:
        conn.close()


async def a_upload(ctx: Ctx, kind: str, use_chunked: bool, expect_continue: bool = False) -> None:
    size = upload_size()
    if expect_continue:
        size = max(size, 1)  # 100 Continue is sent when the app first reads a body there is
    body = body_bytes(size)
    conn = await Conn.open(kind, ctx.port)
    try:
        framing = "Transfer-Encoding: chunked" if use_chunked else f"Content-Length: {size}"
        head = f"POST /echo HTTP/1.1\r\nHost: soak\r\n{framing}\r\n"
        if expect_continue:
            head += "Expect: 100-continue\r\n"
        payload = chunked(body) if use_chunked else body
        if expect_continue:
            await conn.send_partial((head + "\r\n").encode())
            status, _, _ = await conn.response("POST")
            if status != 100:
                raise Failure(f"expected 100 Continue, got {status}")
            await conn.send(payload)
        else:
            await conn.send((head + "\r\n").encode() + payload)
        try:
            status, headers, data = await conn.response("POST")
        except (asyncio.IncompleteReadError, ConnectionError) as e:
            raise Failure(f"{type(e).__name__} after a {size}-byte upload") from None
        STATS.outcome(kind, expect(200, body=f"{size} {zlib.crc32(body)}".encode())(status, headers, data))
    finally:
        conn.close()


async def a_stream(ctx: Ctx, kind: str) -> None:
    n, size = random.choice(((64, 16384), (256, 4096), (16, 65536), (1000, 100)))
    length, crc = stream_body(n, size)
    conn = await Conn.open(kind, ctx.port)
    try:
        await conn.send(get(f"/stream?n={n}&size={size}"))
        status, headers, body = await conn.response()
        STATS.outcome(kind, expect(200, check=lambda b: (len(b), zlib.crc32(b)) == (length, crc))(status, headers, body))
    finally:
        conn.close()


async def dribble(conn: Conn, data: bytes, step: int, total: float) -> None:
    """Sends data step bytes at a time spread over total seconds, by the clock: when this
    process's event loop runs late, what is due goes out together, so the whole still takes
    about total seconds (a busy driver must not turn a slow client into a stalled one)."""
    pieces = [data[i:i + step] for i in range(0, len(data), step)]
    start = time.monotonic()
    sent = 0
    while sent < len(pieces):
        due = min(len(pieces), 1 + int((time.monotonic() - start) / total * len(pieces)))
        await conn.send_partial(b"".join(pieces[sent:due]))
        sent = due
        if sent < len(pieces):
            await asyncio.sleep(max(0.0, start + sent * total / len(pieces) - time.monotonic()))


async def a_slow_headers(ctx: Ctx, kind: str) -> None:
    """The head dribbled byte by byte over 40 % of --header-read-timeout (at most 2 s)."""
    data = get("/hello", extra="X-Slow: " + "s" * 20 + "\r\n")
    conn = await Conn.open(kind, ctx.port)
    try:
        await dribble(conn, data, 1, min(2.0, ctx.header_timeout * 0.4))
        conn.requests += 1
        STATS.sent[kind] += 1
        status, headers, body = await conn.response()
        STATS.outcome(kind, expect(200, body=b"hello, soak\n")(status, headers, body))
    finally:
        conn.close()


async def a_slow_body(ctx: Ctx, kind: str) -> None:
    """A body sent in 40 pieces after the head, over at most 2 s.

    Up to 64 KiB the event loop reads the body before the app runs, so it may take long; a
    larger one is read by the app, and the app's time counts toward --request-timeout (504),
    so it comes within 40 % of that.
    """
    size = random.choice((1000, 30_000, 60_000, 100_000))
    body = body_bytes(size)
    total = min(2.0, ctx.read_timeout * 0.4)
    if size > 65536 and ctx.request_timeout:
        total = min(total, ctx.request_timeout * 0.4)
    conn = await Conn.open(kind, ctx.port)
    try:
        await conn.send_partial(f"POST /echo HTTP/1.1\r\nHost: soak\r\nContent-Length: {size}\r\n\r\n".encode())
        await dribble(conn, body, -(-size // 40), total)
        conn.requests += 1
        STATS.sent[kind] += 1
        status, headers, data = await conn.response("POST")
        STATS.outcome(kind, expect(200, body=f"{size} {zlib.crc32(body)}".encode())(status, headers, data))
    finally:
        conn.close()


async def a_slow_reader(ctx: Ctx, kind: str) -> None:
    """A 2-4 MiB response taken slowly through a small receive buffer (but never stalled)."""
    n = random.choice((128, 256))
    length, crc = stream_body(n, 16384)
    conn = await Conn.open(kind, ctx.port, rcvbuf=8192, limit=8192)
    try:
        await conn.send(get(f"/stream?n={n}&size=16384"))
        status, headers, body = await conn.response(pace=(32768, 0.02))
        STATS.outcome(kind, expect(200, check=lambda b: (len(b), zlib.crc32(b)) == (length, crc))(status, headers, body))
    finally:
        conn.close()


async def a_idle(ctx: Ctx, kind: str) -> None:
    """A keep-alive connection left idle: reused within the timeout, or closed by the server after it."""
    conn = await Conn.open(kind, ctx.port)
    try:
        await conn.send(get("/hello"))
        status, headers, body = await conn.response()
        STATS.outcome(kind, expect(200, body=b"hello, soak\n")(status, headers, body))
        if random.random() < 0.6:
            await asyncio.sleep(random.uniform(0.1, 0.5) * ctx.keep_alive)
            await conn.send(get("/hello"))
            try:
                status, headers, body = await conn.response()
            except (asyncio.IncompleteReadError, ConnectionError):
                # Closed without an answer while idle, before --keep-alive-timeout: a worker
                # replaced by --max-requests closes its idle connections (after 1 s of grace).
                # A client retries such a request (RFC 9112 9.3.1); counted apart, then retried.
                STATS.outcome(kind, "idle_closed_early_retried")
                conn.close()
                conn = await Conn.open(kind, ctx.port)
                await conn.send(get("/hello"))
                status, headers, body = await conn.response()
            STATS.outcome(kind, expect(200, body=b"hello, soak\n")(status, headers, body))
        else:
            started = time.monotonic()
            try:
                rest = await conn.expect_eof(ctx.keep_alive + 3)
            except asyncio.TimeoutError:
                raise Failure(f"idle connection still open {ctx.keep_alive + 3:.1f}s later") from None
            except ConnectionError:
                rest = b""
            waited = time.monotonic() - started
            if rest:
                raise Failure(f"idle connection got {rest[:60]!r}")
            # Earlier than --keep-alive-timeout when its worker was being replaced meanwhile.
            STATS.outcome(kind, "closed_when_idle" if waited >= ctx.keep_alive * 0.9 else "idle_closed_early")
    finally:
        conn.close()


async def a_request_timeout(ctx: Ctx, kind: str) -> None:
    """An app busy past --request-timeout: 504 from the event loop."""
    conn = await Conn.open(kind, ctx.port)
    try:
        await conn.send(get(f"/stuck?ms={int(ctx.request_timeout * 1500)}"))
        status, headers, body = await conn.response()
        STATS.outcome(kind, expect(504)(status, headers, body))
    finally:
        conn.close()


# Malformed requests: (name, bytes, accepted answers). Each is documented in docs/behaviour.md.
def malformed_cases() -> list:
    big = "X-Big: " + "b" * 70_000 + "\r\n"
    return [
        ("cl_and_te", b"POST /echo HTTP/1.1\r\nHost: s\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", {400}),
        ("two_cl", b"POST /echo HTTP/1.1\r\nHost: s\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc", {400}),
        ("cl_list", b"POST /echo HTTP/1.1\r\nHost: s\r\nContent-Length: 3, 3\r\n\r\nabc", {400}),
        ("obs_fold", b"GET /hello HTTP/1.1\r\nHost: s\r\nX-A: a\r\n  folded\r\n\r\n", {400}),
        ("bare_lf", b"GET /hello HTTP/1.1\nHost: s\n\n", {400}),
        ("te_not_chunked", b"POST /echo HTTP/1.1\r\nHost: s\r\nTransfer-Encoding: chunked, identity\r\n\r\n", {400}),
        ("te_gzip", b"POST /echo HTTP/1.1\r\nHost: s\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", {501}),
        ("bad_chunk_size", b"POST /echo HTTP/1.1\r\nHost: s\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n", {400}),
        ("chunk_size_overflow", b"POST /echo HTTP/1.1\r\nHost: s\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffffff\r\n", {400}),
        ("chunk_no_crlf", b"POST /echo HTTP/1.1\r\nHost: s\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcX\r\n0\r\n\r\n", {400}),
        ("oversized_headers", get("/hello", extra=big), {431}),
        ("many_headers", get("/hello", extra="".join(f"X-H{i}: v\r\n" for i in range(150))), {431}),
        ("long_target", ("GET /" + "a" * 70_000 + " HTTP/1.1\r\nHost: s\r\n\r\n").encode(), {414, 431}),
        ("invalid_method", b"G(T /hello HTTP/1.1\r\nHost: s\r\n\r\n", {400}),
        ("bad_version", b"GET /hello HTTP/1.x\r\nHost: s\r\n\r\n", {400}),
        ("http2_version", b"GET /hello HTTP/2.0\r\nHost: s\r\n\r\n", {505}),
        ("no_host", b"GET /hello HTTP/1.1\r\nUser-Agent: x\r\n\r\n", {400}),
        ("bad_host", b"GET /hello HTTP/1.1\r\nHost: a:80:80\r\n\r\n", {400}),
        ("two_spaces", b"GET  /hello HTTP/1.1\r\nHost: s\r\n\r\n", {400}),
        ("nul_in_header", b"GET /hello HTTP/1.1\r\nHost: s\r\nX-A: a\x00b\r\n\r\n", {400}),
        ("fragment", b"GET /hello#frag HTTP/1.1\r\nHost: s\r\n\r\n", {400}),
        ("connect", b"CONNECT s:443 HTTP/1.1\r\nHost: s:443\r\n\r\n", {400, 501}),
        ("garbage", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 40, {400}),
    ]


MALFORMED = malformed_cases()


async def a_malformed(ctx: Ctx, kind: str) -> None:
    """A malformed request, sometimes after a good one on the same connection: the documented 4xx/5xx, then a close."""
    name, data, accepted = random.choice(MALFORMED)
    conn = await Conn.open(kind, ctx.port)
    try:
        if random.random() < 0.3:
            await conn.send(get("/hello"))
            status, headers, body = await conn.response()
            STATS.outcome(kind, expect(200, body=b"hello, soak\n")(status, headers, body))
            if conn.closed_by_server:  # its worker began to drain: the answer said Connection: close
                conn.close()
                STATS.outcome(kind, "reconnect_after_close")
                conn = await Conn.open(kind, ctx.port)
        await conn.send(data)
        try:
            status, headers, body = await conn.response()
        except (asyncio.IncompleteReadError, ConnectionError) as e:
            raise Unexpected(f"{name}: {type(e).__name__} instead of an answer") from None
        STATS.outcome(kind, f"{name}:{status}")
        if status not in accepted:
            raise Unexpected(f"{name}: status {status}, expected {sorted(accepted)}; body {body[:80]!r}")
        try:
            rest = await conn.expect_eof(10)
        except asyncio.TimeoutError:
            raise Unexpected(f"{name}: connection still open 10s after the {status}") from None
        except ConnectionError:
            rest = b""
        if rest:
            raise Unexpected(f"{name}: {len(rest)} more bytes after the {status}: {rest[:60]!r}")
    finally:
        conn.close()


async def a_stalled_head(ctx: Ctx, kind: str) -> None:
    """Half a head, then nothing: 408 after --header-read-timeout, then a close."""
    conn = await Conn.open(kind, ctx.port)
    try:
        await conn.send(b"GET /hello HTTP/1.1\r\nHost: s\r\nX-Wait")
        try:
            status, headers, body = await asyncio.wait_for(conn.response(), ctx.header_timeout + 5)
        except asyncio.TimeoutError:
            raise Unexpected(f"no answer {ctx.header_timeout + 5:.1f}s after a stalled head") from None
        except (asyncio.IncompleteReadError, ConnectionError) as e:
            raise Unexpected(f"{type(e).__name__} instead of 408 for a stalled head") from None
        STATS.outcome(kind, status)
        if status != 408:
            raise Unexpected(f"stalled head answered {status}, expected 408")
    finally:
        conn.close()


async def a_stalled_reader(ctx: Ctx, kind: str) -> None:
    """Asks for a large response and takes none of it: the server gives up after --write-timeout."""
    conn = await Conn.open(kind, ctx.port, rcvbuf=4096, limit=4096)
    try:
        await conn.send(get("/stream?n=1024&size=16384"))
        status, _, _ = await conn.read_head()
        if status != 200:
            raise Failure(f"stalled reader: status {status}")
        await asyncio.sleep(ctx.write_timeout + 3)
        # The server cut the response: whatever is buffered ends before the 16 MiB did.
        got = 0
        try:
            while chunk := await asyncio.wait_for(conn.reader.read(1 << 16), 10):
                got += len(chunk)
        except ConnectionError:
            pass
        except asyncio.TimeoutError:
            raise Failure("stalled reader: server still sending after --write-timeout") from None
        if got >= (16 << 20):
            raise Unexpected("stalled reader: got the whole response although it took nothing for --write-timeout")
        STATS.outcome(kind, "cut_by_write_timeout")
    finally:
        conn.close()


async def a_abort(ctx: Ctx, kind: str, where: str) -> None:
    """Leaves mid-way: mid-headers, mid-body, right after the request, mid-response; FIN or RST."""
    conn = await Conn.open(kind, ctx.port)
    rst = random.random() < 0.5
    try:
        if where == "headers":
            data = get("/hello", extra="X-Long: " + "x" * random.randint(10, 3000) + "\r\n")
            await conn.send_partial(data[:random.randint(1, len(data) - 3)])
        elif where == "body":
            size = random.choice((10_000, 100_000, 1 << 20))
            chunks = random.random() < 0.5
            framing = "Transfer-Encoding: chunked" if chunks else f"Content-Length: {size}"
            payload = chunked(body_bytes(size)) if chunks else body_bytes(size)
            await conn.send_partial(f"POST /echo HTTP/1.1\r\nHost: s\r\n{framing}\r\n\r\n".encode()
                                    + payload[:random.randint(1, len(payload) - 10)])
        elif where == "request":
            await conn.send(get(random.choice(("/slow?ms=20", "/hello", "/stream?n=64&size=16384", "/alloc"))))
        else:  # response
            await conn.send(get("/stream?n=256&size=16384"))
            status, _, _ = await conn.read_head()
            if status != 200:
                raise Failure(f"abort mid-response: status {status}")
            await conn.reader.read(random.randint(1, 200_000))
        STATS.outcome(kind, "rst" if rst else "fin")
    finally:
        conn.reset() if rst else conn.close()


MIX = [
    # (kind, weight, cap on concurrent runs or 0, coroutine)
    ("keepalive", 30, 0, a_keepalive),
    ("pipelined", 10, 0, a_pipelined),
    ("upload_cl", 8, 0, lambda c, k: a_upload(c, k, False)),
    ("upload_chunked", 6, 0, lambda c, k: a_upload(c, k, True)),
    ("upload_expect", 2, 0, lambda c, k: a_upload(c, k, random.random() < 0.5, expect_continue=True)),
    ("stream", 5, 0, a_stream),
    ("slow_headers", 2, 2, a_slow_headers),
    ("slow_body", 2, 2, a_slow_body),
    ("slow_reader", 1, 2, a_slow_reader),
    ("idle_keepalive", 3, 4, a_idle),
    ("request_timeout", 0.3, 1, a_request_timeout),
    ("malformed", 10, 0, a_malformed),
    ("stalled_head", 0.5, 1, a_stalled_head),
    ("stalled_reader", 0.2, 1, a_stalled_reader),
    ("abort_headers", 2, 0, lambda c, k: a_abort(c, k, "headers")),
    ("abort_body", 2, 0, lambda c, k: a_abort(c, k, "body")),
    ("abort_request", 2, 0, lambda c, k: a_abort(c, k, "request")),
    ("abort_response", 2, 0, lambda c, k: a_abort(c, k, "response")),
]
RUNNING: Counter = Counter()


async def client(ctx: Ctx, deadline: float) -> None:
    kinds = [m for m in MIX]
    weights = [m[1] for m in MIX]
    while time.monotonic() < deadline:
        kind, _, cap, action = random.choices(kinds, weights)[0]
        if cap and RUNNING[kind] >= cap:
            continue
        RUNNING[kind] += 1
        STATS.actions[kind] += 1
        try:
            await asyncio.wait_for(action(ctx, kind), ACTION_TIMEOUT)
        except Failure as e:
            STATS.note("failure", kind, str(e))
        except Unexpected as e:
            STATS.note("unexpected", kind, str(e))
        except asyncio.TimeoutError:
            STATS.note("failure", kind, f"no end within {ACTION_TIMEOUT:.0f}s")
        except (OSError, asyncio.IncompleteReadError, ValueError) as e:
            if kind.startswith("abort_"):
                STATS.outcome(kind, f"server_closed_first:{type(e).__name__}")
            else:
                STATS.note("failure", kind, f"{type(e).__name__}: {e}")
        finally:
            RUNNING[kind] -= 1


async def progress(deadline: float, every: float) -> None:
    while time.monotonic() < deadline:
        await asyncio.sleep(min(every, max(0.0, deadline - time.monotonic())))
        snap = {"t": round(time.monotonic() - T0, 1), "sent": sum(STATS.sent.values()),
                "answered": sum(STATS.answered.values()), "actions": sum(STATS.actions.values()),
                "failures": sum(STATS.failures.values()), "unexpected": sum(STATS.unexpected.values())}
        STATS.timeline.append(snap)
        print("driver: " + " ".join(f"{k}={v}" for k, v in snap.items()), flush=True)


async def amain(args) -> dict:
    ctx = Ctx(args)
    deadline = time.monotonic() + args.seconds
    tasks = [asyncio.create_task(client(ctx, deadline)) for _ in range(args.clients)]
    reporter = asyncio.create_task(progress(deadline, args.progress_every))
    await asyncio.gather(*tasks)
    reporter.cancel()
    return {
        "seconds_planned": args.seconds,
        "seconds_run": round(time.monotonic() - T0, 2),
        "clients": args.clients,
        "mix": {k: {"weight": w, "cap": c} for k, w, c, _ in MIX},
        "actions": dict(STATS.actions),
        "requests_sent": dict(STATS.sent),
        "responses_read": dict(STATS.answered),
        "outcomes": {k: dict(v) for k, v in STATS.outcomes.items()},
        "failures": dict(STATS.failures),
        "unexpected": dict(STATS.unexpected),
        "samples": STATS.samples,
        "timeline": STATS.timeline,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--seconds", type=float, required=True)
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--out", help="write the counts here as JSON (default: stdout)")
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--progress-every", type=float, default=30.0)
    ap.add_argument("--keep-alive-timeout", type=float, default=5.0)
    ap.add_argument("--header-read-timeout", type=float, default=10.0)
    ap.add_argument("--read-timeout", type=float, default=60.0)
    ap.add_argument("--request-timeout", type=float, default=2.0)
    ap.add_argument("--write-timeout", type=float, default=60.0)
    args = ap.parse_args()
    random.seed(args.seed)
    result = asyncio.run(amain(args))
    text = json.dumps(result, indent=1, sort_keys=True)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
