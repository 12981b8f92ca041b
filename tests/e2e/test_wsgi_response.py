"""PEP 3333 responses: start_response, write(), iterables and close(), file_wrapper, errors."""

import hashlib
import json
import random
import socket

import httpx
import pytest

from e2e_helpers import (
    wait_until,
    IncompleteResponse,
    RawHTTP,
    assert_serves,
    build_request,
    http_get,
    wait_for_file,
)
from e2e_helpers import HOST


def pattern(size: int) -> bytes:
    return random.Random(size).randbytes(size)


def assert_closed_marker(server, token):
    wait_for_file(server.marker(f"closed-{token}"), timeout=20)


def pipelined(server, first: bytes, method: str = "GET"):
    """Send `first` and a GET /hello in one write; return both responses."""
    with RawHTTP(server.port) as c:
        c.send(first + build_request("GET", "/hello", port=server.port))
        r1 = c.read_response(method=method)
        r2 = c.read_response()
    assert r2.status == 200 and r2.body == b"Hello, world!\n", f"connection out of sync after {r1!r}: {r2!r}"
    return r1


def test_hello_has_content_length(app_server):
    resp = http_get(app_server.port, "/hello")
    assert resp.status == 200
    assert resp.header("Content-Length") == "14"
    assert resp.body == b"Hello, world!\n"
    assert not resp.chunked


def test_generator_without_length_is_chunked(app_server, token):
    resp = http_get(app_server.port, f"/stream?n=5&size=10&token={token}")
    assert resp.status == 200
    assert resp.chunked, f"expected Transfer-Encoding: chunked, got {resp.headers}"
    assert resp.header("Content-Length") is None
    assert resp.body == b"".join((b"%d:" % i).ljust(10, b"x") for i in range(5))
    assert_closed_marker(app_server, token)


def test_generator_with_length_is_not_chunked(app_server, token):
    resp = http_get(app_server.port, f"/stream-cl?token={token}")
    assert resp.status == 200
    assert not resp.chunked
    assert resp.header("Content-Length") == "16"
    assert resp.body == b"alpha-beta-gamma"
    assert_closed_marker(app_server, token)


def test_generator_http10_is_close_delimited(app_server, token):
    with RawHTTP(app_server.port) as c:
        resp = c.request("GET", f"/stream?n=3&size=4&token={token}", version="1.0")
        assert resp.header("Transfer-Encoding") is None, "HTTP/1.0 clients do not know chunked"
        assert resp.body == b"0:xx1:xx2:xx"
        assert c.wait_closed()
    assert_closed_marker(app_server, token)


def test_stream_is_sent_incrementally(app_server, token):
    # The generator runs for ~30 s; the first chunk must arrive long before it ends.
    with httpx.Client(timeout=10) as client:
        with client.stream("GET", f"{app_server.url}/stream-slow?token={token}") as r:
            assert r.status_code == 200
            received = b""
            for piece in r.iter_raw():
                received += piece
                if len(received) >= len(b"first-chunk"):
                    break
            assert received.startswith(b"first-chunk")
    # Leaving the stream closed the connection: the server must call close().
    assert_closed_marker(app_server, token)


def test_client_disconnect_calls_close(app_server, token):
    c = RawHTTP(app_server.port)
    c.send(build_request("GET", f"/stream-slow?token={token}", port=app_server.port))
    while b"first-chunk" not in c.buf:
        assert c._recv(), "connection closed before the first chunk"
    c.close()
    assert_closed_marker(app_server, token)
    assert not app_server.marker(f"exhausted-{token}").exists(), "server kept iterating after disconnect"
    assert_serves(app_server)


def test_empty_iterable(app_server, token):
    r1 = pipelined(app_server, build_request("GET", f"/empty?token={token}", port=app_server.port))
    assert r1.status == 200 and r1.body == b""
    assert_closed_marker(app_server, token)


def test_empty_chunks_do_not_end_the_stream(app_server):
    r1 = pipelined(app_server, build_request("GET", "/empty-chunks", port=app_server.port))
    assert r1.status == 200
    assert r1.body == b"onetwo"


def test_lazy_start_response(app_server, token):
    resp = http_get(app_server.port, f"/lazy-start?token={token}")
    assert resp.status == 201, resp
    assert resp.header("X-Lazy") == "yes"
    assert resp.body == b"lazy body"
    assert_closed_marker(app_server, token)


@pytest.mark.parametrize("mode, expected", [("list", b"one,two,three"), ("gen", b"one,two,three,four")])
def test_write_callable(app_server, mode, expected):
    r1 = pipelined(app_server, build_request("GET", f"/write?mode={mode}", port=app_server.port))
    assert r1.status == 200
    assert r1.body == expected


def test_exc_info_before_headers_sent_replaces_response(app_server):
    resp = http_get(app_server.port, "/exc-info-before")
    assert resp.status == 503, resp
    assert resp.header("X-Replaced") == "1"
    assert resp.header("X-First") is None
    assert resp.body == b"replaced-body"


def test_exc_info_after_headers_sent_reraises_and_aborts(app_server, token):
    with RawHTTP(app_server.port) as c:
        c.send(build_request("GET", f"/exc-info-after?token={token}", port=app_server.port))
        with pytest.raises(IncompleteResponse) as info:
            c.read_response()
    partial = info.value.partial
    assert info.value.response is not None and info.value.response.status == 200
    assert b"first-chunk" in partial
    assert b"must-not-be-sent" not in partial
    outcome = wait_for_file(app_server.marker(f"reraised-{token}"))
    assert outcome == f"ValueError:late failure {token}", "start_response(exc_info) must re-raise it"
    assert_closed_marker(app_server, token)
    app_server.wait_for_log(f"late failure {token}")
    assert_serves(app_server)


def test_exc_info_after_only_empty_chunks_replaces_response(app_server, token):
    # An empty chunk sends nothing, so the headers are still replaceable.
    resp = http_get(app_server.port, f"/exc-info-after-empty?token={token}")
    assert resp.status == 502, resp
    assert resp.header("X-Replaced") == "1"
    assert resp.header("X-First") is None
    assert resp.body == b"replaced-after-empty"
    assert_closed_marker(app_server, token)


def test_close_raising_is_logged_and_harmless(app_server, token):
    resp = http_get(app_server.port, f"/close-raises?token={token}")
    assert resp.status == 200 and resp.body == b"body"
    assert_closed_marker(app_server, token)
    app_server.wait_for_log(f"close failure {token}")
    assert_serves(app_server)


def test_large_streamed_body(app_server):
    block = pattern(65536)
    resp = http_get(app_server.port, "/big-stream?mib=20")
    assert resp.status == 200
    assert len(resp.body) == 20 * 1024 * 1024
    assert hashlib.sha256(resp.body).hexdigest() == hashlib.sha256(block * 320).hexdigest()


def test_single_content_length_and_a_date(app_server):
    resp = http_get(app_server.port, "/hello")
    assert resp.header_all("Content-Length") == ["14"]
    assert resp.header("Date"), "an origin server with a clock sends Date"


def test_start_response_twice_without_exc_info_raises(app_server):
    resp = http_get(app_server.port, "/start-response-twice")
    assert resp.status == 200
    assert resp.body.startswith(b"raised:"), resp.body
    assert resp.header("X-Second") is None


# ---- wsgi.file_wrapper


@pytest.mark.parametrize("kind", ["real", "bytesio"])
@pytest.mark.parametrize(
    "size, seek, cl",
    [
        (1000, 0, "auto"),
        (2 * 1024 * 1024 + 17, 0, "auto"),
        (50_000, 123, "auto"),  # transmission starts at the current file position
        (50_000, 0, "1000"),  # never more than Content-Length
        (50_000, 0, "none"),  # no length: chunked or close-delimited
        (0, 0, "auto"),
    ],
)
def test_file_wrapper(app_server, token, kind, size, seek, cl):
    data = pattern(size)
    expected = data[seek:] if cl in ("auto", "none") else data[seek : seek + int(cl)]
    target = f"/file-wrapper?kind={kind}&size={size}&seek={seek}&cl={cl}&token={token}"
    with RawHTTP(app_server.port) as c:
        c.send(build_request("GET", target, port=app_server.port) + build_request("GET", "/hello", port=app_server.port))
        resp = c.read_response()
        assert resp.status == 200, resp
        assert len(resp.body) == len(expected)
        assert resp.body == expected
        if cl not in ("auto", "none"):
            assert resp.header("Content-Length") == cl
        nxt = None if resp.server_closes else c.read_response_or_eof()
        if nxt is not None:
            assert nxt.body == b"Hello, world!\n", "bytes beyond Content-Length leaked into the connection"
    assert_closed_marker(app_server, token)


@pytest.mark.parametrize("kind", ["gzip", "upper"])
def test_file_wrapper_over_a_file_whose_read_transforms(app_server, token, kind):
    """PEP 3333: a file_wrapper response means iter(filelike.read, b""). A file object with
    a real fileno() but its own read() (gzip.open, a transforming subclass) must be read,
    not sent raw from disk with sendfile."""
    data = pattern(200_000)
    expected = data.upper() if kind == "upper" else data
    resp = http_get(app_server.port, f"/file-wrapper?kind={kind}&size=200000&token={token}")
    assert resp.status == 200, resp
    assert resp.body == expected
    assert_closed_marker(app_server, token)


def test_file_wrapper_iterated_by_middleware(app_server, token):
    # The app re-wraps the file_wrapper in a generator: the server can only iterate it.
    data = pattern(300_000)
    resp = http_get(app_server.port, f"/file-wrapper?kind=real&size=300000&wrap=1&token={token}")
    assert resp.status == 200
    assert resp.body == data
    assert_closed_marker(app_server, token)


def test_file_wrapper_small_block_size(app_server, token):
    data = pattern(10_000)
    resp = http_get(app_server.port, f"/file-wrapper?kind=bytesio&size=10000&blksize=7&token={token}")
    assert resp.body == data
    assert_closed_marker(app_server, token)


def test_file_wrapper_whose_read_returns_no_bytes_is_a_500(app_server, token):
    """read() returning an object without a length is the app's bug: a 500 naming it,
    and the worker serves on."""
    resp = http_get(app_server.port, f"/file-wrapper?kind=nolen&size=100&cl=none&token={token}")
    assert resp.status == 500, resp
    app_server.wait_for_log("read() returned int, which has no length")
    assert_serves(app_server)


# ---- Content-Length disagreeing with the body


def test_file_wrapper_over_a_file_that_reports_size_zero(app_server, token):
    """/proc files are regular files with st_size 0: PEP 3333 defines the body as what
    read() gives, so the server must not trust the size and send nothing."""
    resp = http_get(app_server.port, f"/file-wrapper-proc?token={token}")
    assert resp.status == 200, resp
    assert b"Name:" in resp.body and b"\nPid:" in resp.body, resp.body[:200]
    assert resp.body.endswith(b"\n")
    assert_closed_marker(app_server, token)


def test_body_longer_than_content_length_is_cut(app_server, token):
    with RawHTTP(app_server.port) as c:
        c.send(
            build_request("GET", f"/cl-mismatch?declared=5&actual=20&token={token}", port=app_server.port)
            + build_request("GET", "/hello", port=app_server.port)
        )
        resp = c.read_response()
        assert resp.body == b"zzzzz"
        # Either the connection is closed cleanly, or the next response follows with no stray byte.
        nxt = c.read_response_or_eof()
        if nxt is not None:
            assert nxt.body == b"Hello, world!\n"
    assert_closed_marker(app_server, token)
    assert_serves(app_server)


@pytest.mark.parametrize("declared", [5, 7, 14], ids=["mid-chunk", "at-a-chunk-end", "after-two-chunks"])
def test_endless_body_past_content_length_ends_at_the_length(app_server, token, declared):
    """The response is complete at its Content-Length: the server stops iterating (an
    endless generator must not keep a thread busy or flood the log) and closes, whether
    the length falls inside a chunk or exactly at the end of one (chunks are 7 bytes)."""
    with RawHTTP(app_server.port) as c:
        c.send(
            build_request(
                "GET",
                f"/cl-mismatch?declared={declared}&actual=-1&token={token}",
                [("X-Request-ID", token)],
                port=app_server.port,
            )
        )
        resp = c.read_response()
        assert resp.body == b"z" * declared
        assert c.wait_closed()
    assert_closed_marker(app_server, token)
    # One line about it (the request's id tells it from other tests' lines); worker log
    # lines are written by its writer thread, shortly after.
    line = f"[request_id={token}] application sent more than its Content-Length"
    app_server.wait_for_log(line)
    assert_serves(app_server)
    assert app_server.log().count(line) == 1


@pytest.mark.parametrize("first", ["abc", "abcde"], ids=["mid-write", "after-a-full-write"])
def test_write_past_content_length_raises_and_the_response_ends_there(app_server, token, first):
    with RawHTTP(app_server.port) as c:
        c.send(build_request("GET", f"/write-past-length?first={first}&token={token}", port=app_server.port))
        resp = c.read_response()
        assert resp.status == 200 and resp.body == b"abcde"
        assert c.wait_closed()
    raised = wait_for_file(app_server.marker(f"raised-{token}"))
    assert raised.startswith("ValueError") and "Content-Length" in raised, raised
    assert_serves(app_server)


def test_body_shorter_than_content_length_closes(app_server, token):
    with RawHTTP(app_server.port) as c:
        c.send(build_request("GET", f"/cl-mismatch?declared=100&actual=10&token={token}", port=app_server.port))
        with pytest.raises(IncompleteResponse) as info:
            c.read_response()
    assert info.value.partial == b"z" * 10
    assert_closed_marker(app_server, token)
    assert_serves(app_server)


# ---- invalid responses from the app never reach the wire


BAD_HEADER_KINDS = [
    "value-crlf",
    "value-lf",
    "value-cr",
    "value-nul",
    "value-non-latin1",
    "value-bytes",
    "value-none",
    "name-crlf",
    "name-space",
    "name-colon",
    "name-empty",
    "name-bytes",
    "not-a-pair",
    "content-length-letters",
    "content-length-negative",
]


def assert_closed_unless_start_response_raised(server, token):
    # Rejected inside start_response: the app never returned an iterable, nothing to close.
    if not server.marker(f"start-response-raised-{token}").exists():
        assert_closed_marker(server, token)


def assert_server_500(resp, *, forbidden=(b"Injected", b"X-Bad", b"must-not-be-sent")):
    assert resp.status == 500, resp
    raw = resp.raw_head + resp.body
    for needle in forbidden:
        assert needle.lower() not in raw.lower(), f"{needle!r} reached the client: {raw!r}"


@pytest.mark.parametrize("kind", BAD_HEADER_KINDS)
def test_bad_response_header_gives_500(app_server, kind, token):
    with RawHTTP(app_server.port) as c:
        resp = c.request("GET", f"/bad-header?kind={kind}&token={token}")
        assert_server_500(resp)
        if not resp.server_closes:
            assert c.request("GET", "/hello").body == b"Hello, world!\n"
    assert_closed_unless_start_response_raised(app_server, token)
    assert_serves(app_server)


@pytest.mark.parametrize("kind", ["crlf", "letters", "two-digits", "four-digits", "no-space", "empty", "zero", "bytes", "none",
                                  "interim-100", "interim-103", "above-599", "nine-nine-nine"])
def test_bad_status_gives_500(app_server, kind, token):
    resp = http_get(app_server.port, f"/bad-status?kind={kind}&token={token}")
    assert_server_500(resp, forbidden=(b"Injected", b"must-not-be-sent"))
    assert_closed_unless_start_response_raised(app_server, token)
    assert_serves(app_server)


@pytest.mark.parametrize("query", ["header=value-crlf", "header=name-space", "header=value-bytes",
                                   "header=content-length-letters", "status=no-space", "status=interim-100"])
def test_start_response_rejects_a_bad_head_at_once(app_server, query):
    """PEP 3333: errors in the headers are raised by start_response itself, while the app
    can still catch them and answer otherwise."""
    resp = http_get(app_server.port, f"/bad-head-recover?{query}")
    assert resp.status == 502, resp
    assert resp.body.startswith(b"recovered from "), resp.body
    assert b"must-not-be-sent" not in resp.raw_head + resp.body
    assert_serves(app_server)


def test_failed_replacement_with_exc_info_leaves_the_first_head(app_server):
    """start_response(..., exc_info) with an invalid head raises and counts as not made:
    the head given before stands."""
    resp = http_get(app_server.port, "/exc-info-bad-replacement")
    assert resp.status == 200, resp
    assert resp.header("X-First") == "1"
    assert resp.body == b"first head kept"
    assert_serves(app_server)


def test_app_exception_gives_500_and_traceback(app_server, token):
    resp = http_get(app_server.port, f"/error?token={token}")
    assert resp.status == 500
    assert f"boom {token}".encode() not in resp.body, "tracebacks must not leak to clients"
    log = app_server.wait_for_log(f"RuntimeError: boom {token}")
    assert "Traceback" in log
    # The log line says which request failed.
    assert f"exception in the WSGI application (GET /error?token={token} from 127.0.0.1)" in log
    assert_serves(app_server)


def test_exception_in_iterable_before_body_gives_500(app_server, token):
    resp = http_get(app_server.port, f"/error-in-iter?token={token}")
    assert resp.status == 500, resp
    assert_closed_marker(app_server, token)
    app_server.wait_for_log(f"iter boom {token}")
    assert_serves(app_server)


def test_exception_mid_stream_aborts_response(app_server, token):
    with RawHTTP(app_server.port) as c:
        c.send(build_request("GET", f"/error-mid-stream?token={token}", port=app_server.port))
        with pytest.raises(IncompleteResponse) as info:
            c.read_response()
    assert info.value.response.status == 200
    assert info.value.partial.startswith(b"partial-body") or info.value.partial == b""
    assert_closed_marker(app_server, token)
    app_server.wait_for_log(f"mid-stream boom {token}")
    assert_serves(app_server)


@pytest.mark.parametrize("route", ["/error-mid-stream", "/write-then-raise"])
def test_exception_mid_stream_on_http10_resets_the_connection(app_server, token, route):
    """Without chunked framing (HTTP/1.0) the body ends where the connection does: an
    orderly close would pass the truncated body off as complete, so it is a reset."""
    s = socket.create_connection((HOST, app_server.port), timeout=30)
    try:
        s.sendall(build_request("GET", f"{route}?token={token}", version="1.0", port=app_server.port))
        received = b""
        with pytest.raises(ConnectionResetError):
            while chunk := s.recv(65536):
                received += chunk
        assert received == b"" or received.startswith(b"HTTP/1.1 200"), received
    finally:
        s.close()
    assert_closed_marker(app_server, token)
    assert_serves(app_server)


def test_yielding_str_gives_500_and_closes_iterable(app_server, token):
    resp = http_get(app_server.port, f"/yield-str?token={token}")
    assert resp.status == 500, resp
    assert_closed_marker(app_server, token)


def test_close_called_when_client_left_before_the_response(app_server, token):
    c = RawHTTP(app_server.port)
    c.send(build_request("GET", f"/block?token={token}&iterable=1", port=app_server.port))
    wait_for_file(app_server.marker(f"started-{token}"))
    c.close()
    app_server.marker(f"release-{token}").write_text("go")
    assert_closed_marker(app_server, token)
    assert_serves(app_server)


@pytest.mark.parametrize("route", ["/return-none", "/yield-str", "/no-start-response", "/gen-without-start-response"])
def test_protocol_violations_give_500(app_server, route):
    resp = http_get(app_server.port, route)
    assert resp.status == 500, resp
    assert b"not a body" not in resp.body and b"start_response" not in resp.body
    assert_serves(app_server)


def test_worker_survives_many_errors(app_server):
    c = RawHTTP(app_server.port)
    try:
        for _ in range(30):
            resp = c.request("GET", "/error?token=many")
            assert resp.status == 500
            if resp.server_closes:
                c.close()
                c = RawHTTP(app_server.port)
    finally:
        c.close()
    assert_serves(app_server)


# ---- bodiless responses


@pytest.mark.parametrize("code", [204, 304])
@pytest.mark.parametrize("app_body", ["0", "1"])
def test_no_body_statuses(app_server, token, code, app_body):
    r1 = pipelined(app_server, build_request("GET", f"/status?code={code}&body={app_body}&token={token}", port=app_server.port))
    assert r1.status == code
    assert r1.header("Transfer-Encoding") is None
    if code == 204:
        assert r1.header("Content-Length") is None
    assert_closed_marker(app_server, token)


@pytest.mark.parametrize("app_body", ["0", "1"])
def test_205_has_empty_content_and_says_so(app_server, token, app_body):
    """RFC 9110 15.3.6: no content in a 205; unlike 204 its framing must be stated."""
    r1 = pipelined(app_server, build_request("GET", f"/status?code=205&body={app_body}&token={token}", port=app_server.port))
    assert r1.status == 205
    assert r1.header("Content-Length") == "0"
    assert r1.header("Transfer-Encoding") is None
    assert r1.body == b""
    assert_closed_marker(app_server, token)


def test_head_has_headers_but_no_body(app_server):
    get = http_get(app_server.port, "/hello")
    head = pipelined(app_server, build_request("HEAD", "/hello", port=app_server.port), method="HEAD")
    assert head.status == 200
    assert head.header("Content-Length") == get.header("Content-Length")
    assert head.body == b""


def test_head_on_streamed_response(app_server, token):
    head = pipelined(app_server, build_request("HEAD", f"/stream?token={token}", port=app_server.port), method="HEAD")
    assert head.status == 200
    assert head.body == b""
    assert head.header("Transfer-Encoding") == "chunked", "what the GET would carry (RFC 9110 9.3.2)"
    assert not head.server_closes
    assert_closed_marker(app_server, token)


def test_custom_reason_phrase(app_server):
    resp = http_get(app_server.port, "/reason")
    assert resp.status == 299
    assert resp.reason == "Custom Reason"


def test_bare_status_code_gets_the_standard_reason_phrase(app_server):
    """RFC 9112 4: status-line = HTTP-version SP status-code SP [reason-phrase]."""
    with RawHTTP(app_server.port) as c:
        resp = c.request("GET", "/reason?status=404")
    assert resp.raw_head.split(b"\r\n")[0] == b"HTTP/1.1 404 Not Found"


def test_hop_by_hop_headers_from_the_app_are_dropped_and_logged(server_factory):
    """PEP 3333: a server that discards an application header must record it in its log
    (once per header name here, not once per request)."""
    server = server_factory.start()
    with RawHTTP(server.port) as c:
        for _ in range(3):
            resp = c.request("GET", "/hop-headers")
            assert resp.body == b"hop" and resp.header("Content-Length") == "3", resp
            for name in ("Keep-Alive", "Transfer-Encoding", "Proxy-Connection"):
                assert resp.header(name) is None, resp
            assert resp.header("X-Hop-Test-Keep-Alive") == "x"
    for name in ("Keep-Alive", "Transfer-Encoding", "Connection", "Proxy-Connection"):
        line = f"hop-by-hop response header '{name}'"
        server.wait_for_log(line)
        assert server.log().count(line) == 1, server.log()


def test_repeated_response_headers_kept_separate(app_server):
    resp = http_get(app_server.port, "/set-cookies")
    assert resp.header_all("Set-Cookie") == ["a=1; Path=/", "b=2; Path=/"]
    assert resp.header("X-Mixed-Case-Header") == "MiXeD"
    assert resp.body == b"cookies"


def test_slow_reader_of_a_list_response_does_not_hold_the_thread(server_factory, token):
    # Once the app has returned its list, what the client has not taken yet is written by
    # the event loop: the only blocking thread serves other requests meanwhile (the job a
    # buffering NGINX did in front of uWSGI).
    server = server_factory.start(
        args=["--workers", "1", "--blocking-threads", "1", "--write-timeout", "120"]
    )
    # Loopback absorbs up to tcp_wmem's maximum (4 MiB here) before a write blocks.
    kib = 6 * 1024
    size = kib * 1024
    slow = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a client that reads slowly
    slow.settimeout(30)
    try:
        slow.connect((HOST, server.port))
        slow.sendall(build_request("GET", f"/big-list?kib={kib}&token={token}", port=server.port))
        wait_for_file(server.marker(f"started-{token}"), timeout=20)
        resp = http_get(server.port, "/hello")  # would wait for the slow client otherwise
        assert resp.status == 200 and resp.body == b"Hello, world!\n"
        data = bytearray()
        while b"\r\n\r\n" not in data or len(data) < data.index(b"\r\n\r\n") + 4 + size:
            chunk = slow.recv(1 << 20)
            assert chunk, f"connection closed after {len(data)} bytes"
            data += chunk
    finally:
        slow.close()
    head, body = bytes(data).split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 200")
    assert body == pattern(size), "the deferred tail arrives whole and in order"
    assert_serves(server)


def test_overlapping_write_calls_from_two_app_threads_are_refused(app_server, token):
    """write() waits for a slow client with the GIL dropped; a second thread writing
    meanwhile gets RuntimeError instead of interleaving bytes into the same response."""
    with RawHTTP(app_server.port, timeout=60) as c:
        c.send(build_request("GET", f"/write-race?token={token}", port=app_server.port))
        wait_for_file(app_server.marker(f"error-{token}"), timeout=30)
        resp = c.read_response()
    assert resp.status == 200, resp
    assert resp.body == b"w" * (16 * 1024 * 1024), "exactly one write's bytes, intact"
    errors = json.loads(wait_for_file(app_server.marker(f"errors-{token}"), timeout=30))
    assert len(errors) == 1 and "another thread" in next(iter(errors.values())), errors
    assert_serves(app_server)
