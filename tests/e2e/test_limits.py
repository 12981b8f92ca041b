"""Limits and deadlines: body size, header count, stalled heads and bodies, graceful timeout.

Deadlines are configured short (1 s) and only bounded from above by the socket timeout:
the tests check that a stalled peer is dealt with, never how fast."""

import hashlib
import json
import random
import signal
import socket
import time

import pytest

from e2e_helpers import (
    HOST,
    RawHTTP,
    server_has_read,
    assert_serves,
    build_request,
    chunked_body,
    descendants_of,
    pid_alive,
    wait_for_file,
    wait_until,
)

pytestmark = pytest.mark.timeout(90)


@pytest.fixture(scope="module")
def limited_server(module_server_factory):
    return module_server_factory.start(
        "wsgi_app:app",
        [
            "--max-body-size", "1000",
            "--max-headers", "20",
            "--header-read-timeout", "1",
            "--read-timeout", "1",
            "--write-timeout", "1",
            "--keep-alive-timeout", "1",
        ],
    )


def test_body_at_limit_is_accepted(limited_server):
    with RawHTTP(limited_server.port) as c:
        resp = c.request("POST", "/echo", body=b"b" * 1000)
    assert resp.status == 200 and resp.body == b"b" * 1000


def test_declared_body_over_limit_is_413_without_calling_app(limited_server, token):
    with RawHTTP(limited_server.port) as c:
        c.send(build_request("POST", f"/mark?token={token}", body=b"b" * 1001, port=limited_server.port), tolerate_close=True)
        resp = c.read_response()
        assert resp.status == 413, resp
        assert c.wait_closed()
    assert_serves(limited_server)
    assert not limited_server.marker(f"ran-{token}").exists()


def test_chunked_body_over_limit_is_413(limited_server):
    with RawHTTP(limited_server.port) as c:
        c.send(
            build_request("POST", "/input/read", [("Transfer-Encoding", "chunked")], port=limited_server.port)
            + chunked_body(b"c" * 1500, [500]),
            tolerate_close=True,
        )
        resp = c.read_response()
        assert resp.status == 413, resp
        assert c.wait_closed()
    assert_serves(limited_server)


def test_too_many_headers_is_431(limited_server):
    with RawHTTP(limited_server.port) as c:
        c.send(build_request("GET", "/hello", [(f"X-H{i}", "v") for i in range(25)], port=limited_server.port))
        resp = c.read_response()
        assert resp.status == 431, resp
        assert c.wait_closed()
    assert_serves(limited_server)


def test_stalled_request_head_is_closed(limited_server):
    with RawHTTP(limited_server.port) as c:
        c.send(b"GET /hello HTTP/1.1\r\nHost: x\r\n")  # ... and nothing more
        resp = c.read_response_or_eof()
        if resp is not None:
            assert resp.status == 408, resp
            assert c.wait_closed()
    assert_serves(limited_server)


def test_idle_connection_without_request_is_closed(limited_server):
    with RawHTTP(limited_server.port) as c:
        resp = c.read_response_or_eof()
        assert resp is None or resp.status == 408, resp


def test_stalled_body_unblocks_the_reading_app(limited_server, token):
    port = limited_server.port
    with RawHTTP(port) as c:
        c.send(
            build_request(
                "POST",
                f"/input/guarded?token={token}",
                [("Content-Length", "100"), ("Expect", "100-continue")],
                port=port,
            )
        )
        assert c.read_response(return_interim=True).status == 100
        c.send(b"x" * 10)  # then stall without closing
        outcome = wait_for_file(limited_server.marker(f"read-{token}"), timeout=20)
        assert outcome.startswith("raised:"), f"a stalled body must make read() fail, got {outcome}"
        # Whatever the app answered, the connection cannot be reused: its framing is broken.
        resp = c.read_response_or_eof()
        if resp is not None:
            assert c.wait_closed()
    assert_serves(limited_server)


def test_stalled_small_body_is_408_without_reaching_the_app(limited_server, token):
    """A small body is read by the event loop before the request is queued; when it
    stops arriving (--read-timeout 1), the client gets 408 and the app never runs."""
    port = limited_server.port
    with RawHTTP(port) as c:
        c.send(build_request("POST", f"/mark?token={token}", [("Content-Length", "100")], port=port) + b"x" * 10)
        resp = c.read_response()
        assert resp.status == 408, resp
        assert c.wait_closed()
    assert_serves(limited_server)
    assert not limited_server.marker(f"ran-{token}").exists()


def test_slow_small_body_holds_no_blocking_thread(server_factory):
    """With one blocking thread, a client trickling a small body must not keep others
    waiting: the event loop reads that body; only a complete request takes the thread."""
    server = server_factory.start(args=["--blocking-threads", "1"])
    port = server.port
    slow = RawHTTP(port, timeout=30)
    try:
        for chunked in (False, True):
            if chunked:
                slow.send(build_request("POST", "/echo", [("Transfer-Encoding", "chunked")], port=port) + b"5\r\nhel")
            else:
                slow.send(build_request("POST", "/echo", [("Content-Length", "10")], port=port) + b"hel")
            wait_until(lambda: server_has_read(slow), 20, "the server took the slow client's bytes")
            with RawHTTP(port, timeout=15) as other:  # would wait for the trickling client
                assert other.request("GET", "/hello").body == b"Hello, world!\n"
            slow.send(b"lo\r\n0\r\n\r\n" if chunked else b"loworld")
            assert slow.read_response().body == (b"hello" if chunked else b"helloworld")
    finally:
        slow.close()
    assert_serves(server)


def a_server_timeout_has_elapsed(server) -> None:
    """Proof that more than the 1 s deadlines passed on the server, without sleeping: an idle
    keep-alive connection of our own is closed by the server's --keep-alive-timeout 1."""
    with RawHTTP(server.port) as c:
        assert c.request("GET", "/hello").status == 200
        assert c.wait_closed()


def test_deadlines_do_not_cut_a_long_running_request(limited_server, token):
    c = RawHTTP(limited_server.port, timeout=30)
    c.send(build_request("GET", f"/block?token={token}", port=limited_server.port))
    wait_for_file(limited_server.marker(f"started-{token}"))
    a_server_timeout_has_elapsed(limited_server)
    a_server_timeout_has_elapsed(limited_server)
    limited_server.marker(f"release-{token}").write_text("go")
    resp = c.read_response()
    c.close()
    assert resp.status == 200 and resp.body == f"released {token}".encode()


def test_read_timeout_does_not_fire_while_the_app_is_not_reading(module_server_factory, token):
    # The client sent the whole body at once; the app only reads it after a while.
    server = module_server_factory.start(
        "wsgi_app:app", ["--read-timeout", "1", "--keep-alive-timeout", "1", "--header-read-timeout", "1"]
    )
    body = bytes(range(256)) * 800  # 200 KiB: fits in the socket buffers, so the client never stalls
    c = RawHTTP(server.port, timeout=30)
    c.send(build_request("POST", f"/block-then-read?token={token}", body=body, port=server.port))
    wait_for_file(server.marker(f"started-{token}"))
    a_server_timeout_has_elapsed(server)
    a_server_timeout_has_elapsed(server)
    server.marker(f"release-{token}").write_text("go")
    resp = c.read_response()
    c.close()
    assert resp.status == 200, resp
    assert json.loads(resp.body) == {"length": len(body), "sha256": hashlib.sha256(body).hexdigest()}


def test_write_timeout_does_not_fire_while_the_app_is_slow(limited_server, token):
    c = RawHTTP(limited_server.port, timeout=30)
    c.send(build_request("GET", f"/stream-paused?token={token}", port=limited_server.port))
    wait_for_file(limited_server.marker(f"paused-{token}"))
    a_server_timeout_has_elapsed(limited_server)
    a_server_timeout_has_elapsed(limited_server)
    limited_server.marker(f"release-{token}").write_text("go")
    resp = c.read_response()
    c.close()
    assert resp.status == 200
    assert resp.body == b"before-pause;after-pause"


def _slow_client(port: int, path: str) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)  # small window: the server must wait
    s.settimeout(30)
    s.connect((HOST, port))
    s.sendall(build_request("GET", path, port=port))
    return s


def test_write_timeout_spares_a_client_that_keeps_reading(limited_server):
    """--write-timeout is 1 s without progress, not 1 s for the whole body: a client that
    reads steadily (a small window, pausing 5 ms between reads) gets every byte of a body
    that takes it seconds to read. A 20 MiB list is written by the blocking thread until
    the rest fits the event loop's share (8 MiB), then by the loop: both keep waiting."""
    size = 20 * 1024 * 1024
    s = _slow_client(limited_server.port, f"/big-list?kib={size // 1024}")
    data = bytearray()
    try:
        while b"\r\n\r\n" not in data or len(data) < data.index(b"\r\n\r\n") + 4 + size:
            chunk = s.recv(65536)
            assert chunk, f"the server cut the response after {len(data)} bytes"
            data += chunk
            time.sleep(0.005)  # pacing a slow reader, not synchronisation
    finally:
        s.close()
    head, body = bytes(data).split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 200")
    assert body == random.Random(size).randbytes(size)
    assert_serves(limited_server)


def test_write_timeout_drops_a_client_that_stops_reading(limited_server):
    s = _slow_client(limited_server.port, f"/big-list?kib={16 * 1024}")
    try:
        limited_server.wait_for_log("the client took nothing for 1s (--write-timeout)", timeout=30)
    finally:
        s.close()
    assert_serves(limited_server)


def test_graceful_timeout_bounds_shutdown(server_factory, token):
    server = server_factory.start(args=["--graceful-timeout", "1", "--blocking-threads", "2"])
    family = descendants_of(server.pid)
    c = RawHTTP(server.port, timeout=30)
    c.send(build_request("GET", f"/block?token={token}", port=server.port))
    wait_for_file(server.marker(f"started-{token}"), timeout=20)
    try:
        server.send_signal(signal.SIGTERM)
        code = server.wait_exit(20)
        assert code is not None, "a request that never finishes must not hold shutdown past --graceful-timeout"
        wait_until(lambda: not any(pid_alive(p) for p in family), 10, "workers to exit")
        # The stuck request was cut: the client sees the connection end (maybe after an error).
        resp = c.read_response_or_eof()
        assert resp is None or resp.status >= 500, resp
    finally:
        server.marker(f"release-{token}").write_text("go")
        c.close()


# ---------------------------------------------------------------- --max-connections


def _metrics(server):
    from test_observability import scrape, value  # the exposition parsers live there

    text = scrape(server.metrics_port)[2]
    return lambda name, **labels: value(text, name, **labels)


def _limited(server_factory, limit):
    from test_observability import metrics_server

    return metrics_server(server_factory, ["--max-connections", str(limit)])


def test_max_connections_closes_idle_keep_alive_connections_for_new_ones(server_factory):
    server = _limited(server_factory, 3)
    idle = []
    try:
        for _ in range(3):
            c = RawHTTP(server.port)
            idle.append(c)
            c.send(build_request("GET", "/hello", port=server.port))
            assert c.read_response().status == 200  # kept alive, now idle
        with RawHTTP(server.port) as newcomer:
            newcomer.send(build_request("GET", "/hello", port=server.port))
            assert newcomer.read_response().status == 200
        wait_until(
            lambda: _metrics(server)("appserver_connections_closed_total", reason="connection_limit") >= 1,
            10, "an idle connection closed to make room",
        )
        assert any(c.wait_closed() for c in idle)
    finally:
        for c in idle:
            c.close()
    assert_serves(server)


def test_max_connections_with_none_idle_leaves_new_ones_in_the_listen_queue(server_factory):
    server = _limited(server_factory, 2)
    busy = [RawHTTP(server.port) for _ in range(2)]
    try:
        for c in busy:  # a head begun and not finished: not idle, not closable
            c.send(b"GET /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n")
        wait_until(lambda: _metrics(server)("appserver_connections_open") == 2, 10, "two open")
        with RawHTTP(server.port) as waiting:
            waiting.send(build_request("GET", "/hello", port=server.port))
            # The kernel holds it: the worker does not accept past its limit.
            wait_until(lambda: _metrics(server)("appserver_listen_queue_depth") >= 1, 10, "queued in the kernel")
            assert _metrics(server)("appserver_connections_open") == 2
            busy[0].send(b"\r\n")  # that request completes, its connection closes: room
            assert busy[0].read_response().status == 200
            assert waiting.read_response().status == 200
    finally:
        for c in busy:
            c.close()
    assert_serves(server)
