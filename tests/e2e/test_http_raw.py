"""HTTP/1.x on the wire: pipelining, keep-alive, chunked uploads, 100-continue, HEAD and
malformed requests (each answered with a 4xx, the connection closed, the next one served)."""

import base64
import json
import socket

import pytest

from e2e_helpers import RawHTTP, assert_serves, build_request, chunked_body, http_get

HELLO = b"Hello, world!\n"


def env_of(resp):
    assert resp.status == 200, resp
    return json.loads(resp.body)["environ"]


# ---------------------------------------------------------------- pipelining


def test_pipelined_gets_answered_in_order(app_server):
    port = app_server.port
    with RawHTTP(port) as c:
        c.send(b"".join(build_request("GET", f"/environ/{i}", port=port) for i in range(3)))
        paths = [env_of(c.read_response())["PATH_INFO"] for _ in range(3)]
    assert paths == ["/environ/0", "/environ/1", "/environ/2"]


def test_pipelined_mixed_methods_and_bodies(app_server):
    port = app_server.port
    data = (
        build_request("POST", "/echo", [("Content-Type", "text/plain")], b"first body", port=port)
        + build_request("GET", "/environ/second", port=port)
        + build_request("POST", "/echo", [("Transfer-Encoding", "chunked")], port=port)
        + chunked_body(b"third body, chunked", [4, 7])
        + build_request("HEAD", "/hello", port=port)
        + build_request("GET", "/hello", port=port)
    )
    with RawHTTP(port) as c:
        c.send(data)
        r1 = c.read_response()
        r2 = c.read_response()
        r3 = c.read_response()
        r4 = c.read_response(method="HEAD")
        r5 = c.read_response()
    assert r1.body == b"first body"
    assert env_of(r2)["PATH_INFO"] == "/environ/second"
    assert r3.body == b"third body, chunked"
    assert r4.status == 200 and r4.body == b"" and r4.header("Content-Length") == "14"
    assert r5.body == HELLO


def test_many_pipelined_requests(app_server):
    port = app_server.port
    n = 50
    with RawHTTP(port) as c:
        c.send(b"".join(build_request("GET", f"/environ/{i}?i={i}", port=port) for i in range(n)))
        got = [env_of(c.read_response())["QUERY_STRING"] for _ in range(n)]
    assert got == [f"i={i}" for i in range(n)]


def test_requests_sent_byte_by_byte(app_server):
    port = app_server.port
    data = build_request("POST", "/echo", body=b"slow body", port=port) + build_request("GET", "/hello", port=port)
    with RawHTTP(port) as c:
        c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for i in range(len(data)):
            c.send(data[i : i + 1])
        assert c.read_response().body == b"slow body"
        assert c.read_response().body == HELLO


# ---------------------------------------------------------------- keep-alive


def test_http11_keep_alive_by_default(app_server):
    with RawHTTP(app_server.port) as c:
        r1 = c.request("GET", "/environ/one")
        assert not r1.has_token("Connection", "close")
        r2 = c.request("GET", "/environ/two")
        assert env_of(r2)["PATH_INFO"] == "/environ/two"
        r3 = c.request("POST", "/echo", body=b"third")
        assert r3.body == b"third"


def test_http11_connection_close(app_server):
    with RawHTTP(app_server.port) as c:
        resp = c.request("GET", "/hello", [("Connection", "close")])
        assert resp.body == HELLO
        assert resp.has_token("Connection", "close")
        assert c.wait_closed()


def test_requests_after_connection_close_are_not_processed(app_server, token):
    port = app_server.port
    with RawHTTP(port) as c:
        c.send(
            build_request("GET", f"/mark?token={token}-a", [("Connection", "close")], port=port)
            + build_request("GET", f"/mark?token={token}-b", port=port)
        )
        assert c.read_response().status == 200
        assert c.wait_closed(), "nothing may follow the response to a Connection: close request"
    assert_serves(app_server)
    assert app_server.marker(f"ran-{token}-a").exists()
    assert not app_server.marker(f"ran-{token}-b").exists()


def test_http10_closes_by_default(app_server):
    with RawHTTP(app_server.port) as c:
        resp = c.request("GET", "/hello", version="1.0")
        assert resp.status == 200 and resp.body == HELLO
        assert resp.version in ("1.0", "1.1")
        assert not resp.has_token("Connection", "keep-alive")
        assert c.wait_closed()


def test_http10_keep_alive_on_request(app_server):
    with RawHTTP(app_server.port) as c:
        r1 = c.request("GET", "/hello", [("Connection", "keep-alive")], version="1.0")
        assert r1.body == HELLO
        assert r1.has_token("Connection", "keep-alive")
        r2 = c.request("GET", "/environ/again", [("Connection", "keep-alive")], version="1.0")
        assert env_of(r2)["SERVER_PROTOCOL"] == "HTTP/1.0"


def test_http10_keep_alive_with_streamed_body_closes(app_server, token):
    # No chunked coding for 1.0: a body without length can only end by closing.
    with RawHTTP(app_server.port) as c:
        resp = c.request("GET", f"/stream?n=2&size=3&token={token}", [("Connection", "keep-alive")], version="1.0")
        assert resp.body == b"0:x1:x"
        assert c.wait_closed()


@pytest.fixture(scope="module")
def short_keepalive_server(module_server_factory):
    return module_server_factory.start("wsgi_app:app", ["--keep-alive-timeout", "1"])


def test_idle_keep_alive_connection_is_closed(short_keepalive_server):
    with RawHTTP(short_keepalive_server.port) as c:
        assert c.request("GET", "/hello").body == HELLO
        # Idle: the server must close it by itself (bounded by the socket timeout).
        assert c.wait_closed(), "idle keep-alive connection not closed by --keep-alive-timeout 1"
    assert_serves(short_keepalive_server)


# ---------------------------------------------------------------- chunked uploads


def test_chunked_upload_many_chunks(app_server):
    data = bytes(range(256)) * 40
    with RawHTTP(app_server.port) as c:
        c.send(build_request("POST", "/echo", [("Transfer-Encoding", "chunked")], port=app_server.port))
        c.send(chunked_body(data, [1, 2, 3, 250, 1000]))
        resp = c.read_response()
    assert resp.body == data


def test_chunked_upload_in_separate_writes(app_server):
    with RawHTTP(app_server.port) as c:
        c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        c.send(build_request("POST", "/echo", [("Transfer-Encoding", "chunked")], port=app_server.port))
        for piece in (b"5\r\nhel", b"lo\r\n", b"6\r\n", b" world\r\n0", b"\r\n", b"\r\n"):
            c.send(piece)
        resp = c.read_response()
    assert resp.body == b"hello world"


def test_chunk_extensions_are_ignored(app_server):
    # RFC 9112 7.1.1: any number of extensions per chunk, token or quoted values.
    with RawHTTP(app_server.port) as c:
        c.send(build_request("POST", "/echo", [("Transfer-Encoding", "chunked")], port=app_server.port))
        c.send(b'5;a=1;b=2;c="x y"\r\nhello\r\n6;name\r\n world\r\n0;last=1;n=2\r\n\r\n')
        resp = c.read_response()
        assert resp.status == 200
        assert resp.body == b"hello world"
        c.send(build_request("GET", "/hello", port=app_server.port))  # the connection lives on
        assert c.read_response().status == 200


def test_chunk_extensions_with_bws_and_quoted_pairs(app_server):
    # RFC 9112 7.1.1 allows whitespace around ';' and '=' (BWS); RFC 9110 5.6.4 allows
    # backslash escapes in a quoted value. Both are read and ignored.
    with RawHTTP(app_server.port) as c:
        c.send(build_request("POST", "/echo", [("Transfer-Encoding", "chunked")], port=app_server.port))
        c.send(b'5 ; a = 1 ;b\r\nhello\r\n6\t;q="x\\"y"\r\n world\r\n0 ; n=2\r\n\r\n')
        resp = c.read_response()
        assert resp.status == 200, resp
        assert resp.body == b"hello world"
        c.send(build_request("GET", "/hello", port=app_server.port))  # the connection lives on
        assert c.read_response().status == 200


def test_newer_http1_minor_version_is_served_as_http11(app_server):
    # RFC 9110 6.2: HTTP/1.2 is processed as HTTP/1.1 (keep-alive included), not refused.
    with RawHTTP(app_server.port) as c:
        c.send(b"GET /environ HTTP/1.2\r\nHost: localhost\r\n\r\n")
        resp = c.read_response()
        assert resp.status == 200
        assert resp.raw_head.startswith(b"HTTP/1.1 200")
        assert env_of(resp)["SERVER_PROTOCOL"] == "HTTP/1.1"
        c.send(build_request("GET", "/hello", port=app_server.port))
        assert c.read_response().status == 200


# ---------------------------------------------------------------- 100-continue


def test_expect_100_continue_sent_when_app_reads(app_server):
    with RawHTTP(app_server.port) as c:
        c.send(
            build_request(
                "POST", "/input/read", [("Content-Length", "11"), ("Expect", "100-continue")], port=app_server.port
            )
        )
        interim = c.read_response(return_interim=True)
        assert interim.status == 100
        assert interim.raw_head.split(b"\r\n")[0] == b"HTTP/1.1 100 Continue"
        c.send(b"hello world")
        final = c.read_response()
        assert final.status == 200
        assert base64.b64decode(json.loads(final.body)["body"]) == b"hello world"
        assert final.interim == []
        if not final.server_closes:
            assert c.request("GET", "/hello").body == HELLO


def test_expect_100_continue_among_other_expectations(app_server):
    with RawHTTP(app_server.port) as c:
        c.send(
            build_request(
                "POST", "/input/read", [("Content-Length", "5"), ("Expect", "100-continue, x-other")],
                port=app_server.port,
            )
        )
        assert c.read_response(return_interim=True).status == 100
        c.send(b"hello")
        final = c.read_response()
        assert base64.b64decode(json.loads(final.body)["body"]) == b"hello"


def test_expect_100_continue_with_chunked_body(app_server):
    with RawHTTP(app_server.port) as c:
        c.send(
            build_request(
                "POST", "/echo", [("Transfer-Encoding", "chunked"), ("Expect", "100-continue")], port=app_server.port
            )
        )
        assert c.read_response(return_interim=True).status == 100
        c.send(chunked_body(b"chunked after continue", [3]))
        assert c.read_response().body == b"chunked after continue"


def test_expect_100_continue_not_sent_when_app_does_not_read(app_server):
    with RawHTTP(app_server.port) as c:
        c.send(
            build_request(
                "POST", "/input/none", [("Content-Length", "1000"), ("Expect", "100-continue")], port=app_server.port
            )
        )
        # The body is never sent: the final response must come without a 100 before it.
        resp = c.read_response(return_interim=True)
        assert resp.status == 200, f"expected the final response directly, got {resp!r}"
    assert_serves(app_server)


def test_expect_100_continue_body_sent_anyway(app_server):
    # Clients may send the body without waiting for 100: nothing breaks.
    with RawHTTP(app_server.port) as c:
        c.send(
            build_request("POST", "/echo", [("Expect", "100-continue")], b"eager body", port=app_server.port)
        )
        resp = c.read_response()
        assert resp.status == 200 and resp.body == b"eager body"
        assert c.request("GET", "/hello").body == HELLO


def test_no_100_continue_for_http10(app_server):
    with RawHTTP(app_server.port) as c:
        c.send(
            build_request("POST", "/echo", [("Expect", "100-continue")], b"one-oh body", port=app_server.port, version="1.0")
        )
        resp = c.read_response()
        assert resp.interim == [], "100 Continue must not be sent to an HTTP/1.0 client"
        assert resp.body == b"one-oh body"


# ---------------------------------------------------------------- malformed requests

H = b"Host: 127.0.0.1\r\n"
CHUNKED_POST = b"POST /input/read HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n"

MALFORMED = [
    ("garbage-request-line", b"GARBAGE\r\n\r\n", {400}),
    ("no-version", b"GET /hello\r\n" + H + b"\r\n", {400, 505}),
    ("bad-version", b"GET /hello HTTP/1.x\r\n" + H + b"\r\n", {400, 505}),
    ("unsupported-version", b"GET /hello HTTP/3.0\r\n" + H + b"\r\n", {400, 505}),
    ("double-space", b"GET  /hello HTTP/1.1\r\n" + H + b"\r\n", {400}),
    ("space-in-target", b"GET /hel lo HTTP/1.1\r\n" + H + b"\r\n", {400}),
    ("control-char-in-target", b"GET /hel\x01lo HTTP/1.1\r\n" + H + b"\r\n", {400}),
    ("cl-and-te", b"POST /echo HTTP/1.1\r\n" + H + b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", {400}),
    ("te-and-cl", b"POST /echo HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n", {400}),
    ("duplicate-cl-differing", b"POST /echo HTTP/1.1\r\n" + H + b"Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!", {400}),
    ("cl-list-differing", b"POST /echo HTTP/1.1\r\n" + H + b"Content-Length: 5, 6\r\n\r\nhello!", {400}),
    ("cl-negative", b"POST /echo HTTP/1.1\r\n" + H + b"Content-Length: -1\r\n\r\n", {400}),
    ("cl-plus-sign", b"POST /echo HTTP/1.1\r\n" + H + b"Content-Length: +5\r\n\r\nhello", {400}),
    ("cl-not-a-number", b"POST /echo HTTP/1.1\r\n" + H + b"Content-Length: abc\r\n\r\n", {400}),
    ("cl-overflow", b"POST /echo HTTP/1.1\r\n" + H + b"Content-Length: 99999999999999999999999999\r\n\r\n", {400, 413}),
    ("obs-fold", b"GET /hello HTTP/1.1\r\n" + H + b"X-Folded: a\r\n b\r\n\r\n", {400}),
    ("space-before-colon", b"GET /hello HTTP/1.1\r\n" + H + b"X-Test : v\r\n\r\n", {400}),
    ("header-without-colon", b"GET /hello HTTP/1.1\r\n" + H + b"NoColonHere\r\n\r\n", {400}),
    ("header-bad-name-char", b"GET /hello HTTP/1.1\r\n" + H + b"X(Bad): v\r\n\r\n", {400}),
    ("nul-in-header-value", b"GET /hello HTTP/1.1\r\n" + H + b"X-Nul: a\x00b\r\n\r\n", {400}),
    ("cr-in-header-value", b"GET /hello HTTP/1.1\r\n" + H + b"X-Cr: a\rb\r\n\r\n", {400}),
    ("bare-lf-line-endings", b"GET /hello HTTP/1.1\nHost: 127.0.0.1\n\n", {400}),
    ("bare-lf-in-headers", b"GET /hello HTTP/1.1\r\nHost: 127.0.0.1\nX-A: b\r\n\r\n", {400}),
    ("chunk-size-not-hex", CHUNKED_POST + b"zz\r\nhello\r\n0\r\n\r\n", {400}),
    ("chunk-size-negative", CHUNKED_POST + b"-5\r\nhello\r\n0\r\n\r\n", {400}),
    ("chunk-size-overflow", CHUNKED_POST + b"ffffffffffffffffffffff\r\nhello\r\n0\r\n\r\n", {400, 413}),
    ("chunk-data-longer-than-size", CHUNKED_POST + b"3\r\nabcdef\r\n0\r\n\r\n", {400}),
    ("chunk-size-missing", CHUNKED_POST + b"\r\nabc\r\n0\r\n\r\n", {400}),
    ("chunk-size-trailing-space", CHUNKED_POST + b"3 \r\nabc\r\n0\r\n\r\n", {400}),
    ("chunk-ext-space-inside-token", CHUNKED_POST + b"3;a b=c\r\nabc\r\n0\r\n\r\n", {400}),
    ("te-chunked-not-last", b"POST /echo HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n", {400, 501}),
    ("te-unknown", b"POST /echo HTTP/1.1\r\n" + H + b"Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n", {400, 501}),
    ("te-gzip-then-chunked", b"POST /echo HTTP/1.1\r\n" + H + b"Transfer-Encoding: gzip, chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", {501}),
    ("te-gzip-field-then-chunked-field", b"POST /echo HTTP/1.1\r\n" + H + b"Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", {501}),
    ("asterisk-target-with-get", b"GET * HTTP/1.1\r\n" + H + b"\r\n", {400}),
    ("http11-missing-host", b"GET /hello HTTP/1.1\r\n\r\n", {400}),
    ("http11-duplicate-host", b"GET /hello HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", {400}),
    ("http11-invalid-host", b"GET /hello HTTP/1.1\r\nHost: a b\r\n\r\n", {400}),
    ("host-port-not-digits", b"GET /hello HTTP/1.1\r\nHost: a:xx\r\n\r\n", {400}),
    ("host-two-ports", b"GET /hello HTTP/1.1\r\nHost: a:80:80\r\n\r\n", {400}),
    ("host-bad-percent", b"GET /hello HTTP/1.1\r\nHost: a%zz\r\n\r\n", {400}),
    ("host-unclosed-ip-literal", b"GET /hello HTTP/1.1\r\nHost: [::1\r\n\r\n", {400}),
    ("absolute-form-empty-host", b"GET http:///hello HTTP/1.1\r\n" + H + b"\r\n", {400}),
    ("absolute-form-userinfo", b"GET http://u:p@a/hello HTTP/1.1\r\n" + H + b"\r\n", {400}),
    ("absolute-form-bad-port", b"GET http://a:xx/hello HTTP/1.1\r\n" + H + b"\r\n", {400}),
    ("absolute-form-other-scheme", b"GET ftp://a/hello HTTP/1.1\r\n" + H + b"\r\n", {400}),
    ("fragment-in-target", b"GET /hello#top HTTP/1.1\r\n" + H + b"\r\n", {400}),
    ("te-empty-with-cl", b"POST /echo HTTP/1.1\r\n" + H + b"Content-Length: 5\r\nTransfer-Encoding:\r\n\r\nhello", {400}),
    ("te-empty-alone", b"POST /echo HTTP/1.1\r\n" + H + b"Transfer-Encoding: \r\n\r\n5\r\nhello\r\n0\r\n\r\n", {400}),
    ("te-chunked-and-empty-field", b"POST /echo HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\nTransfer-Encoding:\r\n\r\n0\r\n\r\n", {400}),
    ("trailer-ends-with-bare-lf", CHUNKED_POST + b"5\r\nhello\r\n0\r\n\n", {400}),
    ("trailer-field-then-bare-lf", CHUNKED_POST + b"5\r\nhello\r\n0\r\nX-T: a\r\n\n", {400}),
    ("trailer-obs-fold", CHUNKED_POST + b"5\r\nhello\r\n0\r\nX-T: a\r\n b\r\n\r\n", {400}),
    ("trailer-empty-name", CHUNKED_POST + b"5\r\nhello\r\n0\r\n: a\r\n\r\n", {400}),
    ("http2-preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", {505}),
]


@pytest.mark.parametrize("data, allowed", [pytest.param(d, a, id=i) for i, d, a in MALFORMED])
def test_malformed_request_rejected_and_connection_closed(app_server, data, allowed):
    with RawHTTP(app_server.port) as c:
        c.send(data)
        resp = c.read_response()
        assert resp.status in allowed, f"expected one of {sorted(allowed)}, got {resp!r}"
        assert c.wait_closed(), "connection must be closed after a malformed request"
    assert_serves(app_server)


def test_malformed_request_after_good_one_on_same_connection(app_server):
    with RawHTTP(app_server.port) as c:
        c.send(build_request("GET", "/hello", port=app_server.port) + b"NOT A REQUEST\r\n\r\n")
        assert c.read_response().body == HELLO
        assert c.read_response().status == 400
        assert c.wait_closed()
    assert_serves(app_server)


def test_smuggling_attempt_does_not_reach_app(app_server, token):
    """CL+TE: a second request hidden in the body must never be executed."""
    hidden = build_request("GET", f"/mark?token={token}", port=app_server.port)
    body = b"0\r\n\r\n" + hidden
    data = (
        b"POST /echo HTTP/1.1\r\n" + H + b"Content-Length: %d\r\nTransfer-Encoding: chunked\r\n\r\n" % len(body) + body
    )
    with RawHTTP(app_server.port) as c:
        c.send(data)
        assert c.read_response().status == 400
        assert c.wait_closed()
    assert_serves(app_server)
    assert not app_server.marker(f"ran-{token}").exists(), "smuggled request reached the app"


@pytest.mark.parametrize(
    "head, body",
    [
        pytest.param(b"Content-Length: %d\r\nTransfer-Encoding:\r\n", b"", id="empty-te-beside-cl"),
        pytest.param(b"Transfer-Encoding: chunked\r\n", b"5\r\nhello\r\n0\r\n\n", id="trailers-end-at-bare-lf"),
    ],
)
def test_framing_disagreements_do_not_smuggle(app_server, token, head, body):
    """Bytes another parser reads as one request's body must not become a second request."""
    hidden = build_request("GET", f"/mark?token={token}", port=app_server.port)
    if b"%d" in head:
        head = head % len(hidden)
    with RawHTTP(app_server.port) as c:
        c.send(b"POST /echo HTTP/1.1\r\n" + H + head + b"\r\n" + body + hidden, tolerate_close=True)
        assert c.read_response().status == 400
        assert c.wait_closed()
    assert_serves(app_server)
    assert not app_server.marker(f"ran-{token}").exists(), "smuggled request reached the app"


@pytest.mark.parametrize("value", ["close\t", "close\t, foo", "foo,\tclose\t"])
def test_connection_close_token_with_tabs_is_honoured(app_server, token, value):
    """RFC 9110 5.6.1: HTAB is OWS around list elements; RFC 9112 9.6: nothing after close."""
    port = app_server.port
    with RawHTTP(port) as c:
        c.send(
            build_request("GET", f"/mark?token={token}-a", [("Connection", value)], port=port)
            + build_request("GET", f"/mark?token={token}-b", port=port)
        )
        resp = c.read_response()
        assert resp.status == 200
        assert resp.has_token("Connection", "close")
        assert c.wait_closed()
    assert_serves(app_server)
    assert not app_server.marker(f"ran-{token}-b").exists()


def test_huge_header_gets_431(app_server):
    with RawHTTP(app_server.port) as c:
        c.send(build_request("GET", "/hello", [("X-Huge", "a" * (100 * 1024))], port=app_server.port), tolerate_close=True)
        resp = c.read_response()
        assert resp.status == 431, resp
        assert c.wait_closed()
    assert_serves(app_server)


def test_huge_request_line_rejected(app_server):
    with RawHTTP(app_server.port) as c:
        c.send(build_request("GET", "/hello?" + "q" * (100 * 1024), port=app_server.port), tolerate_close=True)
        resp = c.read_response()
        assert resp.status == 414, resp
        assert c.wait_closed()
    assert_serves(app_server)


@pytest.fixture(scope="module")
def small_header_server(module_server_factory):
    return module_server_factory.start("wsgi_app:app", ["--max-header-size", "4096"])


def test_max_header_size_option(small_header_server):
    port = small_header_server.port
    # Just under the limit is served.
    resp = http_get(port, "/hello", [("X-Fill", "a" * 3000)])
    assert resp.status == 200
    for headers in ([("X-Fill", "a" * 8000)], [(f"X-Many-{i}", "v" * 20) for i in range(400)]):
        with RawHTTP(port) as c:
            c.send(build_request("GET", "/hello", headers, port=port), tolerate_close=True)
            resp = c.read_response()
            assert resp.status == 431, resp
            assert c.wait_closed()
        assert_serves(small_header_server)


def test_client_closing_mid_request_does_not_break_server(app_server):
    for partial in (b"GET /hel", b"GET /hello HTTP/1.1\r\nHost: x\r\nX-A", b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc"):
        c = RawHTTP(app_server.port)
        c.send(partial)
        c.close()
    assert_serves(app_server)


# ---------------------------------------------------------------- methods and field whitespace


@pytest.mark.parametrize("method", ["QUERY", "PURGE", "get", "X-Custom.1~"])
def test_any_token_method_reaches_the_app(app_server, method):
    """RFC 9110 9.1: any token is a method; the app, not the server, decides about it
    (llhttp 8.1 alone answers 501 to QUERY and to every method it does not list)."""
    port = app_server.port
    with RawHTTP(port) as c:
        c.send(
            build_request(method, "/environ/m?x=1", port=port)
            + build_request(method, "/echo", [("Content-Type", "text/plain")], b"a body", port=port)
        )
        env = env_of(c.read_response())
        echoed = c.read_response()
    assert env["REQUEST_METHOD"] == method
    assert env["QUERY_STRING"] == "x=1"
    assert echoed.status == 200 and echoed.body == b"a body"
    assert_serves(app_server)


def test_a_method_that_is_not_a_token_is_400(app_server):
    with RawHTTP(app_server.port) as c:
        c.send(b"GE(T /hello HTTP/1.1\r\nHost: x\r\n\r\n", tolerate_close=True)
        assert c.read_response().status == 400
        assert c.wait_closed()
    assert_serves(app_server)


@pytest.mark.parametrize(
    "framing, body",
    [
        (b"Content-Length: 5\t", b"hello"),
        (b"Content-Length:\t5 \t", b"hello"),
        (b"Transfer-Encoding: chunked\t", b"5\r\nhello\r\n0\r\n\r\n"),
        (b"Transfer-Encoding:\tchunked\t\t", b"5\r\nhello\r\n0\r\n\r\n"),
    ],
)
def test_htab_around_framing_field_values_is_accepted(app_server, framing, body):
    """RFC 9110 5.5: OWS is SP or HTAB, also around the fields that decide framing."""
    port = app_server.port
    with RawHTTP(port) as c:
        c.send(b"POST /echo HTTP/1.1\r\nHost: x\r\n" + framing + b"\r\n\r\n" + body)
        resp = c.read_response()
        assert resp.status == 200, resp
        assert resp.body == b"hello"
        c.send(build_request("GET", "/hello", port=port))  # and the connection goes on
        assert c.read_response().body == HELLO
