"""Fault mix: many clients misbehaving at once, in every way a worker must survive.

A fixed-seed mix of malformed heads, random bytes, connections reset mid-head and
mid-body, abandoned streamed downloads, valid chunked uploads with extensions, pipelined
requests ending in garbage, HEAD, and too many headers, sent concurrently. Every answer
the server gives must be the right one, no worker may die or be replaced, and the server
must serve normally afterwards. Bounded: a fixed number of clients, loopback only."""

import random
import socket
import struct
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from e2e_helpers import RawHTTP, assert_serves, build_request, chunked_body, wait_until

pytestmark = pytest.mark.timeout(120)

CLIENTS = 240
SEED = 20261126


def _reset(sock: socket.socket) -> None:
    """Close with RST instead of FIN (SO_LINGER 0), as a crashed client would."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def garbage_head(port, rng):
    junk = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 300)))
    with RawHTTP(port) as c:
        c.send(junk.replace(b"\r\n\r\n", b"") + b"\r\n\r\n", tolerate_close=True)
        resp = c.read_response_or_eof()
        # Junk can never be a request this app answers 200 to; an answer must be an error.
        assert resp is None or 400 <= resp.status < 600, resp


def reset_mid_head(port, rng):
    c = RawHTTP(port)
    c.send(build_request("GET", "/hello", port=port)[: rng.randrange(1, 30)])
    _reset(c.sock)


def reset_mid_body(port, rng):
    c = RawHTTP(port)
    c.send(build_request("POST", "/echo", [("Content-Length", "100000")], port=port))
    c.send(bytes(rng.randrange(1, 5000)))
    if rng.random() < 0.5:
        _reset(c.sock)
    else:
        c.close()


def abandoned_download(port, rng):
    c = RawHTTP(port)
    c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    c.send(build_request("GET", "/big-stream?mib=4", port=port))
    c.sock.recv(rng.randrange(1, 20000))
    _reset(c.sock)


def chunked_upload(port, rng):
    data = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 3000)))
    sizes = [rng.randrange(1, 700) for _ in range(5)]
    with RawHTTP(port) as c:
        c.send(build_request("POST", "/echo", [("Transfer-Encoding", "chunked")], port=port))
        c.send(chunked_body(data, sizes, ext=';a=1;b="x y"'))
        resp = c.read_response()
    assert resp.status == 200, resp
    assert resp.body == data


def pipelined_then_garbage(port, rng):
    n = rng.randrange(1, 4)
    with RawHTTP(port) as c:
        c.send(build_request("GET", "/hello", port=port) * n + b"NOT HTTP AT ALL\r\n\r\n")
        for _ in range(n):
            assert c.read_response().status == 200
        assert c.read_response().status == 400
        assert c.wait_closed()


def head_request(port, rng):
    with RawHTTP(port) as c:
        c.send(build_request("HEAD", "/hello", port=port))
        resp = c.read_response(method="HEAD")
    assert resp.status == 200 and resp.body == b""


def too_many_headers(port, rng):
    headers = [(f"X-H{i}", "v") for i in range(150)]
    with RawHTTP(port) as c:
        c.send(build_request("GET", "/hello", headers, port=port), tolerate_close=True)
        resp = c.read_response_or_eof()
    assert resp is None or resp.status == 431, resp


def good_request(port, rng):
    with RawHTTP(port) as c:
        c.send(build_request("GET", "/hello", port=port))
        assert c.read_response().status == 200


ACTIONS = [garbage_head, reset_mid_head, reset_mid_body, abandoned_download, chunked_upload,
           pipelined_then_garbage, head_request, too_many_headers, good_request]


def test_workers_survive_a_mix_of_faulty_clients(server_factory):
    server = server_factory.start(args=["--workers", "2", "--blocking-threads", "4"])
    workers_before = sorted(server.workers())
    assert len(workers_before) == 2
    rng = random.Random(SEED)
    plan = [(rng.choice(ACTIONS), random.Random(rng.random())) for _ in range(CLIENTS)]
    failures = []
    lock = threading.Lock()

    def run(item):
        action, own_rng = item
        try:
            action(server.port, own_rng)
        except Exception as e:  # noqa: BLE001 - collected and reported below
            with lock:
                failures.append(f"{action.__name__}: {e!r}")

    with ThreadPoolExecutor(max_workers=24) as pool:
        list(pool.map(run, plan))
    assert not failures, "\n".join(failures[:20])
    assert sorted(server.workers()) == workers_before, "a worker died or was replaced"
    assert "respawning" not in server.log(), server.log_tail()
    # Worker log lines are written by its writer thread, shortly after.
    wait_until(lambda: server.log().count("bad request from") >= 10, 10, "the malformed requests' log lines")
    assert_serves(server)
