"""Regression tests for defects found in a code review (one test, or a small group, each).

Each test fails against the behaviour the review found and passes with the fix. Where the
old behaviour was a stall of tens of seconds, the server's own timeouts are set far
beyond the client's socket timeout (10 s), so a stall shows up as a client timeout and
nothing asserts how long anything took. Synchronisation is by marker files and by
answers the event loop gives itself, never by sleeping."""

import json
import signal
import socket

import pytest

from e2e_helpers import (
    release,
    start_blocked_request,
    APPS_DIR,
    RawHTTP,
    assert_serves,
    build_request,
    descendants_of,
    http_get,
    pid_alive,
    run_cli,
    wait_for_file,
    wait_until,
)

pytestmark = pytest.mark.timeout(60)




def loop_barrier(server) -> None:
    """A malformed request on a fresh connection, answered (400) by the worker's event loop
    itself. Requests fully sent on earlier connections have been read and queued by the
    loop before it gets to this later connection's bytes, so once the 400 is here they
    wait in the request queue in the order they were sent."""
    with RawHTTP(server.port) as c:
        c.send(b"GET /hello HTTP/1.1\r\nHost: x\r\nthis is not a header\r\n\r\n")
        resp = c.read_response()
    assert resp.status == 400, resp


def worker_pid(server) -> int:
    resp = http_get(server.port, "/pid")
    assert resp.status == 200, resp
    return json.loads(resp.body)["pid"]


# ------------------------------------------------------------------ 1. hand-back stall


@pytest.mark.parametrize(
    "kind",
    ["http10-stream", "connection-close"],
)
def test_finished_response_is_not_held_behind_a_slow_request(server_factory, token, kind):
    """With one blocking thread, a finished response (its end is the server's FIN) must
    reach the client while the next request, a slow one, still runs. Formerly the
    finished exchange was handed back to the loop only after the slow request ended."""
    server = server_factory.start(args=["--blocking-threads", "1", "--request-queue-size", "8"])
    port = server.port
    holder_token, slow_token = f"{token}-holder", f"{token}-slow"
    # The holder keeps the only thread busy while A and then B are queued behind it, so
    # the thread takes B straight after finishing A.
    holder = start_blocked_request(server, holder_token)
    a = RawHTTP(port)
    b = RawHTTP(port, timeout=30)
    try:
        if kind == "http10-stream":
            # Close-delimited body (an iterator, no Content-Length): the server's FIN ends it.
            a.send(build_request("GET", "/empty-chunks", port=port, version="1.0"))
        else:
            a.send(build_request("GET", "/hello", [("Connection", "close")], port=port))
        loop_barrier(server)  # A is queued ...
        b.send(build_request("GET", f"/block?token={slow_token}", port=port))
        loop_barrier(server)  # ... and B behind it
        release(server, holder_token)
        assert holder.read_response().status == 200
        wait_for_file(server.marker(f"started-{slow_token}"), timeout=20)  # B now holds the thread
        try:
            resp = a.read_response()
            if kind == "connection-close":
                assert resp.server_closes, resp
                assert a.wait_closed(timeout=10), "A's connection was not closed while B was blocked"
        except TimeoutError:
            pytest.fail("A's response did not end (no FIN) while the next request was still blocked")
        assert resp.status == 200, resp
        if kind == "http10-stream":
            assert resp.body == b"onetwo", resp
        else:
            assert resp.body == b"Hello, world!\n"
        assert not server.marker(f"finished-{slow_token}").exists(), "B was not blocked any more"
    finally:
        release(server, holder_token)
        release(server, slow_token)
        a.close()
    resp = b.read_response()
    b.close()
    holder.close()
    assert resp.status == 200 and resp.body == f"released {slow_token}".encode(), resp
    assert_serves(server)


# ------------------------------------------------------------------ 2. post-response drain


def test_unread_body_still_on_its_way_does_not_hold_the_worker(server_factory):
    """The app ignored a body the client has not sent yet: after the response, the only
    blocking thread must not wait (up to --read-timeout) for that body; the connection is
    closed instead, since the unknown body would be taken for the next request."""
    server = server_factory.start(args=["--blocking-threads", "1", "--read-timeout", "120"])
    port = server.port
    c1 = RawHTTP(port)
    try:
        # Head only, announcing a body too large for the event loop to read before it
        # queues the request (up to 64 KiB it would, and the app would not run yet).
        c1.send(build_request("POST", "/hello", [("Content-Length", "100000")], port=port))
        resp = c1.read_response()
        assert resp.status == 200 and resp.body == b"Hello, world!\n", resp
        # The server cannot reuse the connection, and it says so up front.
        assert resp.has_token("Connection", "close"), resp
        try:
            with RawHTTP(port, timeout=10) as c2:
                other = c2.request("GET", "/hello")
        except TimeoutError:
            pytest.fail("the worker's only thread is held by a body the client never sent")
        assert other.status == 200 and other.body == b"Hello, world!\n", other
        # The client still has not sent its body: the server cannot keep this connection.
        assert c1.wait_closed(timeout=10), "connection with a body still on its way was kept alive"
    finally:
        c1.close()  # (with the old behaviour this also frees the stuck thread)
    assert_serves(server)


# ------------------------------------------------------------------ 3. lingering close


def test_early_answer_reaches_a_client_still_uploading(server_factory):
    """The app answers without reading a 10 MiB body (as a 401 or 413 would): the client,
    which sends its whole body before it reads (http.client, Go, Node), must still get the
    answer, not a reset. The server drains the body in its lingering close."""
    server = server_factory.start()
    port = server.port
    size = 10 * 1024 * 1024
    with RawHTTP(port, timeout=30) as c:
        c.send(build_request("POST", "/hello", [("Content-Length", str(size))], port=port))
        c.sock.sendall(b"u" * size)  # a reset here (EPIPE) is the failure
        resp = c.read_response()
    assert resp.status == 200 and resp.body == b"Hello, world!\n", resp
    assert_serves(server)


def test_lingering_close_is_bounded_for_a_client_that_keeps_sending(server_factory):
    """After a 413, the server reads and drops what the client still sends before closing,
    but only so much: a client that keeps sending is cut off (formerly every block that
    arrived extended the lingering close, forever)."""
    server = server_factory.start(args=["--max-body-size", "1000"])
    port = server.port
    block = b"x" * 65536
    limit = 64 * 1024 * 1024
    sent = 0
    with RawHTTP(port, timeout=10) as c:
        c.send(build_request("POST", "/echo", [("Content-Length", "100000000")], port=port))
        resp = c.read_response()
        assert resp.status == 413, resp
        cut_off = False
        try:
            while sent < limit:
                c.sock.sendall(block)
                sent += len(block)
        except (BrokenPipeError, ConnectionResetError):
            cut_off = True
        except TimeoutError:
            pytest.fail(f"the server stopped reading after {sent} bytes but kept the connection open")
    assert cut_off, f"the server kept reading {sent} bytes after its 413 without closing"
    assert_serves(server)


# ------------------------------------------------------------------ 4. bogus exc_info


def test_bogus_exc_info_after_write_does_not_crash_the_worker(server_factory, token):
    server = server_factory.start()
    before = worker_pid(server)
    assert server.workers() == [before]
    with RawHTTP(server.port) as c:
        c.send(build_request("GET", f"/exc-info-bogus-after?token={token}", port=server.port))
        try:
            resp = c.read_response()
        except Exception:  # noqa: BLE001 - a cut-off response is expected
            resp = None
        # The head and first chunk went out; the app failed afterwards, so the body
        # cannot end cleanly: whatever arrived, the connection ends.
        assert resp is None or resp.status == 200, resp
        if resp is None:
            assert c.eof or c.wait_closed()
    assert_serves(server)
    assert worker_pid(server) == before, "the worker was replaced (it crashed)"
    assert server.workers() == [before]
    log = server.log()
    assert "Segmentation fault" not in log and "respawning" not in log, server.log_tail()
    # The app saw an exception from start_response (written before the response ended).
    outcome = wait_for_file(server.marker(f"bogus-{token}"), timeout=5)
    assert outcome.startswith("raised:"), f"start_response accepted a bogus exc_info: {outcome}"


def test_bogus_exc_info_before_headers_is_500(server_factory):
    server = server_factory.start()
    before = worker_pid(server)
    resp = http_get(server.port, "/exc-info-bogus-before")
    assert resp.status == 500, resp
    assert resp.header("X-Bogus") is None
    assert worker_pid(server) == before
    assert "respawning" not in server.log()


# ------------------------------------------------------------------ 5. child signal mask


def test_processes_spawned_by_the_app_have_a_clean_signal_mask(server_factory):
    server = server_factory.start()
    resp = http_get(server.port, "/child-sigmask")
    assert resp.status == 200, resp
    info = json.loads(resp.body)
    assert info["returncode"] == 0, info
    line = info["stdout"].strip()
    assert line.startswith("SigBlk:"), info
    mask = line.split(":", 1)[1].strip()
    assert int(mask, 16) == 0, f"a process spawned by the app starts with blocked signals: {mask}"


# ------------------------------------------------------------------ 6. --uds


def uds_answers(path) -> bool:
    """Whether something accepts connections on the unix socket path."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(5)
        try:
            s.connect(str(path))
            return True
        except OSError:
            return False


def start_uds_server(server_factory, path):
    server = server_factory.start(
        argv_override=["--uds", str(path), "--working-dir", str(APPS_DIR), "wsgi_app:app"], wait=False
    )

    def connectable():
        assert server.alive(), f"server exited:\n{server.log_tail()}"
        return uds_answers(path)

    wait_until(connectable, 30, "the unix socket to accept connections")
    return server


def uds_pid(path) -> int:
    with RawHTTP(0, unix_path=str(path)) as c:
        resp = c.request("GET", "/pid")
    assert resp.status == 200, resp
    return json.loads(resp.body)["pid"]


def test_uds_path_of_a_running_server_is_not_taken(server_factory, tmp_path):
    path = tmp_path / "live.sock"
    first = start_uds_server(server_factory, path)
    pid = uds_pid(path)
    result = run_cli(["--uds", str(path), "--working-dir", str(APPS_DIR), "wsgi_app:app"], timeout=20)
    assert not result.timed_out, "a second server started serving on the path of a running one"
    assert result.returncode not in (0, None), result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and str(path) in lines[0], f"expected a one-line error naming the path:\n{result.stderr}"
    # The first server still owns the path.
    assert uds_pid(path) == pid
    assert first.alive()
    first.send_signal(signal.SIGTERM)
    assert first.wait_exit(30) == 0
    assert not path.exists(), "the socket file was left behind after a clean stop"


def test_uds_stale_socket_file_is_replaced(server_factory, tmp_path):
    path = tmp_path / "stale.sock"
    crashed = start_uds_server(server_factory, path)
    family = descendants_of(crashed.pid)
    crashed.send_signal(signal.SIGKILL)
    assert crashed.wait_exit(10) is not None
    wait_until(lambda: not any(pid_alive(p) for p in family), 20, "the killed server's workers to exit")
    assert path.exists(), "expected the killed server to leave its socket file"
    assert not uds_answers(path)  # stale: nobody answers
    second = start_uds_server(server_factory, path)
    assert uds_pid(path) in second.workers()
    second.send_signal(signal.SIGTERM)
    assert second.wait_exit(30) == 0
    assert not path.exists()


# ------------------------------------------------------------------ 7. master exit code


def test_master_exits_1_when_a_worker_had_to_be_forced(server_factory, token):
    server = server_factory.start(args=["--graceful-timeout", "1", "--blocking-threads", "2"])
    c = start_blocked_request(server, token)
    try:
        server.send_signal(signal.SIGTERM)
        code = server.wait_exit(20)
        assert code is not None, "a stuck request held shutdown past --graceful-timeout"
        assert code == 1, f"exit code after a forced stop: {code} (0 means every worker stopped cleanly)"
    finally:
        release(server, token)
        c.close()


# ------------------------------------------------------------------ 8. HEAD and Content-Length


def test_head_of_an_empty_list_body_invents_no_length(server_factory):
    server = server_factory.start()
    with RawHTTP(server.port) as c:
        head = c.request("HEAD", "/empty-list")
        assert head.status == 200, head
        assert "0" not in head.header_all("Content-Length"), (
            "HEAD answered Content-Length: 0 for a resource whose length the app did not give"
        )
        assert head.header_all("Content-Length") == [], head
        assert head.header("Transfer-Encoding") == "chunked", head  # length unknown, stated
        # No body bytes followed the HEAD response: the next answer parses cleanly.
        get = c.request("GET", "/empty-list")
        assert get.status == 200 and get.body == b"", get
        head2 = c.request("HEAD", "/head-aware")
        assert head2.status == 200, head2
        assert head2.header_all("Content-Length") == ["12"], head2
        get2 = c.request("GET", "/head-aware")
        assert get2.body == b"twelve bytes", get2


@pytest.mark.parametrize(
    "raw, status, args",
    [
        (b"HEAD /error HTTP/1.1\r\nHost: x\r\n\r\n", 500, []),  # the app raised
        (b"HEAD /hello HTTP/1.1\r\n\r\n", 400, []),  # no Host
        (b"HEAD /hello HTTP/1.1\r\nHost: x\r\nBad Name: v\r\n\r\n", 400, []),
        (b"HEAD /hello HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501, []),
        (b"HEAD /hello HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n", 413, ["--max-body-size", "100"]),
        (b"HEAD /hello HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n", 431, ["--max-header-size", "8192"]),
    ],
)
def test_server_errors_to_head_carry_no_content(server_factory, raw, status, args):
    """RFC 9110 9.3.2: no content in any response to HEAD, the server's own errors included
    (a client reading the next response would take the error text for its start)."""
    server = server_factory.start("wsgi_app:app", args)
    with RawHTTP(server.port) as c:
        c.send(raw, tolerate_close=True)
        resp = c.read_response(method="HEAD")
        assert resp.status == status, resp
        assert c.read_until_close() == b"", "content followed the head of a HEAD response"
    assert_serves(server)
