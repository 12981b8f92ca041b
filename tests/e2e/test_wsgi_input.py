"""wsgi.input: every reading style, for Content-Length and chunked bodies, never past the body."""

import base64
import hashlib
import json
import random

import pytest
import requests

from e2e_helpers import RawHTTP, assert_serves, build_request, chunked_body, wait_for_file

SMALL = b"first line\nsecond line\r\n\nthird\x00with NUL\n\xff\xfe binary\nno newline at end"


def pattern(size: int) -> bytes:
    return random.Random(size).randbytes(size)


MEDIUM = pattern(20_000)  # about 80 random '\n' in it
LARGE = pattern(300_000)

FRAMINGS = ["content-length", "chunked"]


def split_lines(data: bytes) -> list[bytes]:
    lines, start = [], 0
    while start < len(data):
        i = data.find(b"\n", start)
        if i < 0:
            lines.append(data[start:])
            break
        lines.append(data[start : i + 1])
        start = i + 1
    return lines


def request_bytes(port, target, body: bytes, framing: str, chunk_sizes=None, headers=None) -> bytes:
    headers = list(headers or [])
    if framing == "chunked":
        headers.append(("Transfer-Encoding", "chunked"))
        return build_request("POST", target, headers, port=port) + chunked_body(body, chunk_sizes or [1000, 1, 4096, 17])
    return build_request("POST", target, headers, body, port=port, content_length=True)


def post_input(port, mode: str, body: bytes, framing: str, query: str = "", chunk_sizes=None) -> dict:
    target = f"/input/{mode}" + (f"?{query}" if query else "")
    with RawHTTP(port) as c:
        c.send(request_bytes(port, target, body, framing, chunk_sizes))
        resp = c.read_response()
    assert resp.status == 200, resp
    return json.loads(resp.body)


def decoded(result, key):
    return [base64.b64decode(x) for x in result[key]]


def check_body(result, body):
    assert result["length"] == len(body)
    assert result["sha256"] == hashlib.sha256(body).hexdigest()


@pytest.mark.parametrize("framing", FRAMINGS)
@pytest.mark.parametrize("body", [SMALL, LARGE, b"x"], ids=["small", "large", "one-byte"])
def test_read_all(app_server, framing, body):
    result = post_input(app_server.port, "read", body, framing)
    check_body(result, body)
    assert result["after_eof"] == [0, 0], "read() after EOF must return b''"


@pytest.mark.parametrize("framing", FRAMINGS)
def test_read_negative_size_reads_all(app_server, framing):
    result = post_input(app_server.port, "read-neg", MEDIUM, framing)
    check_body(result, MEDIUM)
    assert result["after_eof"] == [0, 0]


@pytest.mark.parametrize("framing", FRAMINGS)
@pytest.mark.parametrize("n", [1, 7, 4096, 1 << 20])
def test_read_n(app_server, framing, n):
    body = MEDIUM if n < 100 else LARGE
    result = post_input(app_server.port, "read-n", body, framing, f"n={n}")
    check_body(result, body)
    assert result["chunk_sizes"], "no data read"
    assert max(result["chunk_sizes"]) <= n, f"read({n}) returned more than {n} bytes"
    assert result["after_eof"] == [0, 0]


@pytest.mark.parametrize("framing", FRAMINGS)
@pytest.mark.parametrize("body", [SMALL, MEDIUM], ids=["small", "medium"])
def test_readline(app_server, framing, body):
    result = post_input(app_server.port, "readline", body, framing)
    check_body(result, body)
    assert decoded(result, "lines") == split_lines(body)
    assert result["after_eof"] == [0, 0]


@pytest.mark.parametrize("framing", FRAMINGS)
@pytest.mark.parametrize("n", [1, 5, 64])
def test_readline_with_size(app_server, framing, n):
    result = post_input(app_server.port, "readline-n", SMALL, framing, f"n={n}")
    check_body(result, SMALL)
    expected = []
    for line in split_lines(SMALL):
        expected += [line[i : i + n] for i in range(0, len(line), n)]
    assert decoded(result, "lines") == expected
    assert result["after_eof"] == [0]


@pytest.mark.parametrize("framing", FRAMINGS)
def test_readlines(app_server, framing):
    result = post_input(app_server.port, "readlines", MEDIUM, framing)
    check_body(result, MEDIUM)
    assert decoded(result, "lines") == split_lines(MEDIUM)
    assert result["after_eof"] == [0, 0]


@pytest.mark.parametrize("framing", FRAMINGS)
def test_iteration(app_server, framing):
    result = post_input(app_server.port, "iter", SMALL, framing)
    check_body(result, SMALL)
    assert decoded(result, "lines") == split_lines(SMALL)
    assert result["after_eof"] == [0]


@pytest.mark.parametrize("framing", FRAMINGS)
def test_mixed_readline_read_n_read(app_server, framing):
    result = post_input(app_server.port, "mixed", SMALL, framing, chunk_sizes=[3, 5, 2])
    first, second, rest = decoded(result, "parts")
    assert first == b"first line\n"
    assert second == b"sec"
    assert rest == SMALL[len(first) + 3 :]


@pytest.mark.parametrize("framing", FRAMINGS)
def test_empty_body(app_server, framing):
    result = post_input(app_server.port, "read", b"", framing)
    assert result["length"] == 0
    assert result["after_eof"] == [0, 0]


def test_get_without_body_reads_empty(app_server):
    # No Content-Length, no Transfer-Encoding: the body is empty and read() must not block.
    with RawHTTP(app_server.port) as c:
        resp = c.request("GET", "/input/read")
    assert resp.status == 200, resp
    assert json.loads(resp.body)["length"] == 0


def test_large_body_via_requests(app_server):
    body = pattern(5 * 1024 * 1024)
    r = requests.post(f"{app_server.url}/input/read-n?n=65536", data=body, timeout=30)
    assert r.status_code == 200, r.text[:500]
    result = r.json()
    assert result["length"] == len(body)
    assert result["sha256"] == hashlib.sha256(body).hexdigest()


def test_chunked_upload_via_requests_generator(app_server):
    pieces = [pattern(1000 + i) for i in range(20)]
    r = requests.post(f"{app_server.url}/input/read", data=iter(pieces), timeout=30)  # chunked
    assert r.status_code == 200, r.text[:500]
    body = b"".join(pieces)
    assert r.json()["sha256"] == hashlib.sha256(body).hexdigest()


def test_chunked_with_extensions_and_trailers(app_server):
    data = b"hello chunked world with extensions"
    with RawHTTP(app_server.port) as c:
        c.send(
            build_request("POST", "/input/read", [("Transfer-Encoding", "chunked")], port=app_server.port)
            + chunked_body(data, [5, 3], trailers="X-Trailer: yes\r\n", ext=";name=value")
        )
        resp = c.read_response()
        assert resp.status == 200, resp
        assert base64.b64decode(json.loads(resp.body)["body"]) == data
        # the connection is still in sync after the trailer section
        resp2 = c.request("GET", "/hello")
        assert resp2.body == b"Hello, world!\n"


def test_chunked_one_byte_chunks(app_server):
    result = post_input(app_server.port, "read", SMALL, "chunked", chunk_sizes=[1])
    check_body(result, SMALL)


@pytest.fixture(scope="module")
def streaming_server(module_server_factory):
    """--request-buffering off: chunked bodies stream to the app as they arrive."""
    return module_server_factory.start("wsgi_app:app", ["--request-buffering", "off"])


def test_streamed_chunked_body_has_no_content_length_in_environ(streaming_server):
    with RawHTTP(streaming_server.port) as c:
        c.send(
            build_request("POST", "/environ", [("Transfer-Encoding", "chunked")], port=streaming_server.port)
            + chunked_body(b"abc")
        )
        resp = c.read_response()
    env = json.loads(resp.body)["environ"]
    assert env.get("CONTENT_LENGTH", "") == ""
    assert env["HTTP_TRANSFER_ENCODING"] == "chunked"
    assert env["wsgi.input_terminated"] is True


@pytest.mark.parametrize("size", [3, 200_000])
def test_buffered_chunked_body_gets_a_content_length(app_server, size):
    """--request-buffering on (the default): the whole chunked body is read before the app
    is called, which then sees it as a Content-Length request (what Django needs)."""
    body = pattern(size)
    with RawHTTP(app_server.port) as c:
        c.send(
            build_request("POST", "/environ", [("Transfer-Encoding", "chunked")], port=app_server.port)
            + chunked_body(body, [1000, 7, 50_000])
        )
        env = json.loads(c.read_response().body)["environ"]
        c.send(
            build_request("POST", "/echo", [("Transfer-Encoding", "chunked")], port=app_server.port)
            + chunked_body(body, [1000, 7, 50_000])
        )
        echoed = c.read_response()
    assert env["CONTENT_LENGTH"] == str(size)
    assert "HTTP_TRANSFER_ENCODING" not in env
    assert env["wsgi.input_terminated"] is True
    assert echoed.status == 200 and echoed.body == body


def test_buffered_chunked_upload_holds_no_blocking_thread(server_factory, token):
    """A slow chunked upload is read by the event loop (spooled past 64 KiB): with one
    blocking thread, other requests are served while it trickles in."""
    server = server_factory.start("wsgi_app:app", ["--blocking-threads", "1"])
    body = pattern(3 * 1024 * 1024 + 11)
    with RawHTTP(server.port, timeout=30) as upload:
        framed = chunked_body(body, [65536, 100_000, 1, 4096])
        upload.send(build_request("POST", "/echo", [("Transfer-Encoding", "chunked")], port=server.port)
                    + framed[: len(framed) // 2])
        with RawHTTP(server.port) as other:  # while the upload is half-way
            other.send(build_request("GET", "/hello", port=server.port))
            assert other.read_response().status == 200
        upload.send(framed[len(framed) // 2 :])
        resp = upload.read_response()
    assert resp.status == 200
    assert hashlib.sha256(resp.body).hexdigest() == hashlib.sha256(body).hexdigest()
    assert_serves(server)


def test_buffered_chunked_body_with_expect_continue(app_server):
    """The client waits for 100 Continue before sending: the loop, which reads the body
    whole, sends it."""
    port = app_server.port
    with RawHTTP(port) as c:
        c.send(build_request("POST", "/echo", [("Transfer-Encoding", "chunked"), ("Expect", "100-continue")], port=port))
        interim = c.read_response(return_interim=True)
        assert interim.status == 100
        c.send(chunked_body(LARGE, [70_000]))
        resp = c.read_response()
    assert resp.status == 200 and resp.body == LARGE


@pytest.mark.parametrize("framing", FRAMINGS)
def test_read_stops_at_body_end_when_pipelined(app_server, framing):
    """The next request's bytes are already in the buffer; read() must not return them."""
    port = app_server.port
    with RawHTTP(port) as c:
        c.send(
            request_bytes(port, "/input/read", b"AAAA", framing)
            + build_request("GET", "/hello", port=port)
        )
        first = c.read_response()
        second = c.read_response()
    assert base64.b64decode(json.loads(first.body)["body"]) == b"AAAA"
    assert second.status == 200 and second.body == b"Hello, world!\n"


@pytest.mark.parametrize("framing", FRAMINGS)
@pytest.mark.parametrize("mode", ["none", "partial"])
def test_unread_body_is_discarded_on_keep_alive(app_server, framing, mode):
    port = app_server.port
    body = LARGE[:70_000]
    target = "/input/none" if mode == "none" else "/input/partial?n=10"
    with RawHTTP(port) as c:
        c.send(request_bytes(port, target, body, framing))
        first = c.read_response()
        assert first.status == 200, first
        if first.server_closes:
            # Closing instead of draining is allowed, but then it must really close.
            assert c.wait_closed()
            return
        # Sequential (not pipelined) second request on the same connection.
        c.send(build_request("GET", "/hello", port=port))
        second = c.read_response()
    assert second.status == 200 and second.body == b"Hello, world!\n"


def test_client_disconnect_mid_body_unblocks_app(app_server, token):
    """The app is blocked in read(); the client sends part of the body and leaves.

    Expect: 100-continue makes the sequence deterministic: the 100 arrives only once the
    app has started reading, then the client sends 1000 of 100000 bytes and closes."""
    port = app_server.port
    c = RawHTTP(port)
    c.send(
        build_request(
            "POST",
            f"/input/guarded?token={token}",
            [("Content-Length", "100000"), ("Expect", "100-continue")],
            port=port,
        )
    )
    interim = c.read_response(return_interim=True)
    assert interim.status == 100, interim
    c.send(b"x" * 1000)
    c.close()
    outcome = wait_for_file(app_server.marker(f"read-{token}"), timeout=30)
    assert outcome != "returned:100000", outcome
    assert_serves(app_server)


@pytest.mark.parametrize("framing", FRAMINGS)
def test_reading_input_while_streaming_the_response(app_server, framing):
    with RawHTTP(app_server.port) as c:
        c.send(request_bytes(app_server.port, "/duplex", MEDIUM, framing))
        resp = c.read_response()
    assert resp.status == 200
    assert resp.body == b"start;" + MEDIUM + b";end"


BAD_BODIES_SEEN_BY_THE_APP = {
    # A framing error found while the app reads wsgi.input: the app's read raises, and the
    # client gets the 4xx its bytes earned (RFC 9112 2.2), not a 500.
    "bad-chunk-size": (b"5\r\nhello\r\nZZ\r\nxx\r\n0\r\n\r\n", 400),
    "chunk-longer-than-its-size": (b"3\r\nabcXX\r\n0\r\n\r\n", 400),
    # RFC 9110 5.4: fields larger than the server processes get a 4xx.
    "trailers-too-large": (
        b"5\r\nhello\r\n0\r\n"
        + b"".join(b"X-T%d: " % i + b"v" * 1000 + b"\r\n" for i in range(100))
        + b"\r\n",
        431,
    ),
}


# The event loop reads up to 64 KiB of a body before it queues the request; past that the
# app owns the connection and reads the rest itself.
PAST_PREBUFFER = b"%x\r\n" % 65536 + b"p" * 65536 + b"\r\n"


@pytest.mark.parametrize("case", sorted(BAD_BODIES_SEEN_BY_THE_APP))
def test_bad_chunked_body_read_by_the_app_gets_4xx(streaming_server, token, case):
    body, status = BAD_BODIES_SEEN_BY_THE_APP[case]
    with RawHTTP(streaming_server.port, timeout=30) as c:
        # The head and a first chunk: the app owns the connection (and reads the body) from
        # here on.
        c.send(build_request("POST", f"/block-then-read?token={token}",
                             [("Transfer-Encoding", "chunked")], port=streaming_server.port) + PAST_PREBUFFER)
        wait_for_file(streaming_server.marker(f"started-{token}"), timeout=20)
        c.send(body)
        streaming_server.marker(f"release-{token}").write_text("go")
        resp = c.read_response()
        assert resp.status == status, resp
        assert c.wait_closed(), "the connection cannot be reused after a framing error"
    assert_serves(streaming_server)


@pytest.mark.parametrize("case", sorted(BAD_BODIES_SEEN_BY_THE_APP))
def test_bad_buffered_chunked_body_gets_4xx_before_the_app(app_server, token, case):
    """Read whole by the loop, a chunked body with bad framing is answered by the server;
    the app never sees the request."""
    body, status = BAD_BODIES_SEEN_BY_THE_APP[case]
    with RawHTTP(app_server.port, timeout=30) as c:
        c.send(build_request("POST", f"/block-then-read?token={token}",
                             [("Transfer-Encoding", "chunked")], port=app_server.port) + PAST_PREBUFFER + body,
               tolerate_close=True)
        resp = c.read_response()
        assert resp.status == status, resp
        assert c.wait_closed()
    assert not app_server.marker(f"started-{token}").exists()
    assert_serves(app_server)


BIG = 100_000  # bytes: more than the event loop reads before queueing a request


def test_overlapping_reads_from_two_app_threads_are_refused(app_server, token):
    """A read waits for the client with the GIL dropped; a second thread reading meanwhile
    gets RuntimeError instead of racing the first inside the body parser."""
    with RawHTTP(app_server.port, timeout=30) as c:
        # A body too large for the event loop to read first: the app's reads wait for it.
        c.send(build_request("POST", f"/input-race?token={token}", [("Content-Length", str(BIG))],
                             port=app_server.port))
        wait_for_file(app_server.marker(f"error-{token}"), timeout=20)
        c.send(b"hello" + b"." * (BIG - 5))
        resp = c.read_response()
    assert resp.status == 200, resp
    result = json.loads(resp.body)
    assert list(result["results"].values()) == ["hello"], result
    assert len(result["errors"]) == 1, result
    assert "another thread" in next(iter(result["errors"].values()))
    assert_serves(app_server)


def test_read_left_running_after_the_app_returned_is_waited_for(app_server, token):
    """The request's state is reused only after a read the app left running on a thread of
    its own has ended: that read gets the body, and the worker keeps serving."""
    with RawHTTP(app_server.port, timeout=30) as c:
        c.send(build_request("POST", f"/input-after-return?token={token}", [("Content-Length", str(BIG))],
                             port=app_server.port))
        resp = c.read_response()
        assert resp.status == 200 and resp.body == b"returned", resp
        c.send(b"hello" + b"." * (BIG - 5), tolerate_close=True)
        assert wait_for_file(app_server.marker(f"late-read-{token}"), timeout=20) == "hello"
        # The head went out before the body was read, so the response said "close".
        assert resp.server_closes
    assert_serves(app_server)
