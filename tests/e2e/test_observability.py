"""Observability end to end: the Prometheus endpoint (--metrics), the health endpoint
(--health-path), the access log (--access-log), request ids and JSON server logs, all
against the real server process."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import uuid

import pytest
from prometheus_client.parser import text_string_to_metric_families

from e2e_helpers import (
    HOST,
    RawHTTP,
    assert_serves,
    build_request,
    free_port,
    http_get,
    release,
    run_cli,
    server_has_read,
    start_blocked_request,
    wait_for_file,
    wait_until,
)


# --------------------------------------------------------------------------- helpers


def scrape(port: int, accept: str | None = None) -> tuple[int, dict[str, str], str]:
    headers = [("Accept", accept)] if accept else None
    resp = http_get(port, "/metrics", headers=headers)
    return resp.status, {k.lower(): v for k, v in resp.headers}, resp.body.decode()


def samples(text: str) -> dict[tuple[str, tuple], float]:
    """{(sample name, sorted labels): value} of a Prometheus text exposition."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(text: str, name: str, **labels) -> float:
    return samples(text).get((name, tuple(sorted(labels.items()))), 0.0)


def metrics_server(factory, extra=(), **kw):
    port = free_port()
    server = factory.start("wsgi_app:app", ["--metrics", "--metrics-port", str(port), *extra], **kw)
    server.metrics_port = port
    return server


# --------------------------------------------------------------------------- metrics


def test_metrics_count_requests_by_method_and_code(server_factory):
    server = metrics_server(server_factory)
    # The start-up probe (GET /hello) is counted a moment after it was answered.
    wait_until(
        lambda: value(scrape(server.metrics_port)[2], "appserver_requests_total", method="GET", code="2xx") >= 1,
        10,
        "the probe to be counted",
    )
    _, _, before = scrape(server.metrics_port)
    for _ in range(3):
        assert_serves(server)
    assert http_get(server.port, "/no-such-route").status == 404
    assert http_get(server.port, "/hello", method="POST", body=b"x=1").status == 200
    # A request is counted by the worker's event loop once its thread hands it back,
    # which can be a moment after the client has the response.
    wait_until(
        lambda: value(scrape(server.metrics_port)[2], "appserver_requests_total", method="POST", code="2xx")
        - value(before, "appserver_requests_total", method="POST", code="2xx")
        == 1,
        10,
        "the last request to be counted",
    )
    status, headers, text = scrape(server.metrics_port)
    assert status == 200
    assert headers["content-type"].startswith("text/plain; version=0.0.4")
    got = lambda **l: value(text, "appserver_requests_total", **l) - value(  # noqa: E731
        before, "appserver_requests_total", **l
    )
    assert got(method="GET", code="2xx") == 3
    assert got(method="GET", code="4xx") == 1
    assert got(method="POST", code="2xx") == 1
    assert value(text, "appserver_request_body_bytes_total") >= 3
    assert value(text, "appserver_response_body_bytes_total") >= 3 * len(b"Hello, world!\n")
    # Every request's duration is in the histogram.
    count = value(text, "appserver_request_duration_seconds_count")
    assert count == value(text, "appserver_request_duration_seconds_bucket", le="+Inf")
    assert count >= 5
    assert value(text, "appserver_request_queue_capacity", worker="0") == 4096
    assert value(text, "appserver_blocking_threads", worker="0") == 4
    assert value(text, "appserver_workers") == 1
    assert value(text, "appserver_worker_up", worker="0") == 1
    assert value(text, "appserver_worker_resident_memory_bytes", worker="0") > 1 << 20
    assert value(text, "appserver_build_info", version="0.1.0", python=_python_version()) == 1


def _python_version() -> str:
    import sys

    return "%d.%d.%d" % sys.version_info[:3]


def test_metrics_show_the_queue_while_every_thread_is_stuck(server_factory, token):
    server = metrics_server(server_factory, ["--blocking-threads", "2"])
    holders = [start_blocked_request(server, f"{token}{i}") for i in range(2)]
    queued = []
    try:
        for i in range(3):
            c = RawHTTP(server.port, timeout=30)
            c.send(build_request("GET", f"/hello?q={i}", port=server.port))
            queued.append(c)
            wait_until(lambda: server_has_read(c), 10, "the loop to read the queued request")
        # The endpoint is the master's: it answers while no worker thread is free.
        wait_until(
            lambda: value(scrape(server.metrics_port)[2], "appserver_request_queue_depth", worker="0") == 3,
            10,
            "three queued requests in the scrape",
        )
        _, _, text = scrape(server.metrics_port)
        assert value(text, "appserver_request_queue_depth", worker="0") == 3
        assert value(text, "appserver_blocking_threads_busy", worker="0") == 2
        assert value(text, "appserver_connections_open") >= 5
    finally:
        for i in range(2):
            release(server, f"{token}{i}")
    for c in holders + queued:
        assert c.read_response().status == 200
        c.close()
    wait_until(
        lambda: value(scrape(server.metrics_port)[2], "appserver_blocking_threads_busy", worker="0") == 0,
        10,
        "the threads to be idle again",
    )
    _, _, text = scrape(server.metrics_port)
    assert value(text, "appserver_request_queue_depth", worker="0") == 0
    # The three queued requests waited at least until a thread was released.
    wait_until(
        lambda: value(scrape(server.metrics_port)[2], "appserver_request_queue_wait_seconds_count", worker="0")
        >= 5,
        10,
        "every queue wait to be counted",
    )
    _, _, text = scrape(server.metrics_port)
    assert value(text, "appserver_request_queue_wait_seconds_sum", worker="0") > 0.0005


def test_metrics_count_server_answers_and_closed_connections(server_factory):
    server = metrics_server(server_factory)
    _, _, before = scrape(server.metrics_port)
    with RawHTTP(server.port) as c:
        c.send(b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n")
        resp = c.read_response()
        assert resp.status == 400
        assert c.wait_closed()
    assert_serves(server)
    wait_until(
        lambda: value(scrape(server.metrics_port)[2], "appserver_requests_total", method="GET", code="2xx")
        > value(before, "appserver_requests_total", method="GET", code="2xx"),
        10,
        "the last request to be counted",
    )
    _, _, text = scrape(server.metrics_port)
    diff = lambda n, **l: value(text, n, **l) - value(before, n, **l)  # noqa: E731
    assert diff("appserver_requests_total", method="GET", code="4xx") == 1
    wait_until(
        lambda: value(scrape(server.metrics_port)[2], "appserver_connections_closed_total", reason="bad_request")
        >= 1,
        10,
        "the bad request's connection to be counted as closed",
    )
    assert diff("appserver_connections_accepted_total") >= 2


def test_counters_survive_a_worker_replacement(server_factory, token):
    server = metrics_server(server_factory)
    for _ in range(4):
        assert_serves(server)
    _, _, before = scrape(server.metrics_port)
    old = server.workers()
    with RawHTTP(server.port) as c:
        c.send(build_request("GET", f"/crash?token={token}", port=server.port))
        c.read_until_close()
    wait_until(lambda: server.workers() and server.workers() != old, 15, "a new worker")
    server.wait_for_log("worker 0 ready", timeout=15)
    wait_until(
        lambda: value(scrape(server.metrics_port)[2], "appserver_worker_up", worker="0") == 1,
        15,
        "the new worker to be up",
    )
    _, _, after = scrape(server.metrics_port)
    for name, labels in [
        ("appserver_requests_total", {"method": "GET", "code": "2xx"}),
        ("appserver_connections_accepted_total", {}),
        ("appserver_request_duration_seconds_count", {}),
        ("appserver_response_body_bytes_total", {}),
    ]:
        assert value(after, name, **labels) >= value(before, name, **labels) > 0, name
    assert value(after, "appserver_worker_restarts_total", reason="crash") == 1
    assert value(after, "appserver_worker_cpu_seconds_total", worker="0") >= value(
        before, "appserver_worker_cpu_seconds_total", worker="0"
    )


def test_metrics_openmetrics_negotiation_and_other_paths(server_factory):
    server = metrics_server(server_factory)
    status, headers, text = scrape(
        server.metrics_port, "application/openmetrics-text;version=1.0.0,text/plain;q=0.5"
    )
    assert status == 200
    assert headers["content-type"].startswith("application/openmetrics-text")
    assert text.endswith("# EOF\n")
    assert "# TYPE appserver_requests counter" in text
    assert http_get(server.metrics_port, "/nope").status == 404
    assert http_get(server.metrics_port, "/metrics", method="POST").status == 405
    head = http_get(server.metrics_port, "/metrics", method="HEAD")
    assert head.status == 200 and head.body == b""
    # A malformed request to the endpoint gets an answer, and the endpoint goes on.
    with RawHTTP(server.metrics_port) as c:
        c.send(b"GET /metrics HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n")
        assert c.read_response().status == 400
    assert scrape(server.metrics_port)[0] == 200


def test_metrics_port_in_use_is_a_clean_startup_error(server_factory):
    with socket.socket() as taken:
        taken.bind((HOST, 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        server = server_factory.start(
            "wsgi_app:app", ["--metrics", "--metrics-port", str(port)], wait=False
        )
        assert server.wait_exit(20) == 1
    assert f"{port}" in server.log() and "in use" in server.log().lower()


def test_metrics_off_by_default(server_factory):
    port = free_port()
    server = server_factory.start("wsgi_app:app", ["--metrics-port", str(port)])
    assert_serves(server)
    with pytest.raises(OSError):
        socket.create_connection((HOST, port), timeout=2).close()


# --------------------------------------------------------------------------- health


def test_health_answers_without_python_and_keeps_the_connection(server_factory, token):
    server = server_factory.start("wsgi_app:app", ["--blocking-threads", "1", "--health-path", "/healthz"])
    holder = start_blocked_request(server, token)
    try:
        with RawHTTP(server.port) as c:
            # Every blocking thread is stuck; the event loop still answers, keep-alive.
            for method in ("GET", "HEAD", "GET"):
                c.send(build_request(method, "/healthz?probe=1", port=server.port))
                resp = c.read_response(method)
                assert resp.status == 200
                assert resp.body == (b"ok\n" if method == "GET" else b"")
                assert resp.header("Cache-Control") == "no-store"
                assert not resp.server_closes
            c.send(build_request("POST", "/healthz", port=server.port, body=b"x"))
            resp = c.read_response()
            assert resp.status == 405 and resp.header("Allow") == "GET, HEAD"
    finally:
        release(server, token)
    assert holder.read_response().status == 200
    holder.close()
    # Only that exact path: anything else goes to the app.
    assert http_get(server.port, "/healthz/more").status == 404


def test_health_says_503_once_the_worker_drains(server_factory, token):
    server = server_factory.start("wsgi_app:app", ["--health-path", "/healthz", "--graceful-timeout", "20"])
    holder = start_blocked_request(server, token)  # keeps the worker draining, not gone
    probe = RawHTTP(server.port, timeout=30)
    probe.send(build_request("GET", "/healthz", port=server.port))
    assert probe.read_response().status == 200
    server.send_signal(signal.SIGTERM)
    server.wait_for_log("finishing", timeout=10)
    # The idle keep-alive connection may still bring one request (within the drain
    # grace): the health check now says the worker is going.
    probe.send(build_request("GET", "/healthz", port=server.port))
    resp = probe.read_response()
    assert resp.status == 503 and resp.body == b"draining\n"
    assert resp.server_closes
    probe.close()
    release(server, token)
    assert holder.read_response().status == 200
    holder.close()
    assert server.wait_exit(20) == 0


def test_health_path_must_be_a_path():
    result = run_cli(["--health-path", "healthz", "wsgi_app:app"])
    assert result.returncode == 2
    assert "--health-path" in result.stderr


# --------------------------------------------------------------------------- access log


def read_lines(path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return []


def wait_lines(path, n: int, timeout: float = 10.0) -> list[str]:
    return wait_until(lambda: (lambda l: l if len(l) >= n else None)(read_lines(path)), timeout, f"{n} access log lines in {path.name}")


def test_access_log_combined_includes_server_answers(server_factory, tmp_path):
    log = tmp_path / "access.log"
    server = server_factory.start("wsgi_app:app", ["--access-log", str(log)], probe=None)
    assert_serves(server)
    http_get(server.port, "/hello?x=1", headers=[("Referer", "http://r/"), ("User-Agent", 'ua "quoted"')])
    with RawHTTP(server.port) as c:
        c.send(b"GET /bad\x01 HTTP/1.1\r\nHost: x\r\n\r\n")
        assert c.read_response().status == 400
    lines = wait_lines(log, 3)
    pattern = re.compile(
        r'^127\.0\.0\.1 - - \[\d{2}/[A-Z][a-z]{2}/\d{4}:\d{2}:\d{2}:\d{2} [+-]\d{4}\] '
        r'"(?P<r>[^"]*)" (?P<s>\d{3}) (?P<b>\d+|-) "(?P<f>[^"]*)" "(?P<a>.*)"$'
    )
    parsed = [pattern.match(line) for line in lines]
    assert all(parsed), lines
    # A line is written when its response is complete: requests on different connections
    # and threads may finish in either order.
    by_request = {m["r"]: m for m in parsed}
    plain = by_request["GET /hello HTTP/1.1"]
    assert plain["s"] == "200" and plain["b"] == "14"
    query = by_request["GET /hello?x=1 HTTP/1.1"]
    assert query["f"] == "http://r/" and query["a"] == 'ua \\x22quoted\\x22'
    # The server's own answer to a bad request is logged too, its control byte escaped.
    assert [m["s"] for m in parsed].count("400") == 1
    assert not any("\x01" in line for line in lines)


def test_access_log_json_and_request_ids(server_factory, tmp_path):
    log = tmp_path / "access.jsonl"
    server = server_factory.start(
        "wsgi_app:app", ["--access-log", str(log), "--access-log-format", "json"], probe=None
    )
    given = "req-" + uuid.uuid4().hex
    sent = http_get(server.port, "/environ", headers=[("X-Request-ID", given)])
    made = http_get(server.port, "/environ")
    bad = http_get(server.port, "/environ", headers=[("X-Request-ID", "has space")])
    ids = [json.loads(r.body)["environ"]["HTTP_X_REQUEST_ID"] for r in (sent, made, bad)]
    assert ids[0] == given
    assert re.fullmatch(r"[0-9a-f]{32}", ids[1]), ids[1]
    assert re.fullmatch(r"[0-9a-f]{32}", ids[2]) and ids[2] != ids[1]
    entries = [json.loads(line) for line in wait_lines(log, 3)]
    # Lines are written as responses complete: in any order across connections.
    assert sorted(e["request_id"] for e in entries) == sorted(ids)
    first = next(e for e in entries if e["request_id"] == given)
    assert first["method"] == "GET" and first["path"] == "/environ" and first["status"] == 200
    assert first["protocol"] == "HTTP/1.1" and first["remote_addr"] == "127.0.0.1"
    assert first["response_bytes"] == len(sent.body)
    assert first["duration_ms"] >= 0
    assert first["worker"] == 0 and first["pid"] in server.workers()


def test_access_log_custom_format(server_factory, tmp_path):
    log = tmp_path / "custom.log"
    fmt = "%(m)s %(U)s %(q)s %(s)s %(B)s %(D)s %({x-trace}i)s %({content-length}o)s %(rid)s %%"
    server = server_factory.start(
        "wsgi_app:app", ["--access-log", str(log), "--access-log-format", fmt], probe=None
    )
    http_get(server.port, "/hello?a=b", headers=[("X-Trace", "t1"), ("X-Request-ID", "abc")])
    (line,) = wait_lines(log, 1)
    m, path, query, status, size, micros, trace, length, rid, pct = line.split(" ")
    assert (m, path, query, status, size) == ("GET", "/hello", "a=b", "200", "14")
    assert int(micros) >= 0 and trace == "t1" and length == "14"
    assert rid == "abc" and pct == "%"


def test_access_log_reopens_on_sigusr1(server_factory, tmp_path):
    log = tmp_path / "access.log"
    rotated = tmp_path / "access.log.1"
    server = server_factory.start(
        "wsgi_app:app", ["--workers", "2", "--access-log", str(log)], probe=None
    )
    for _ in range(3):
        assert_serves(server)
    wait_lines(log, 3)
    os.rename(log, rotated)
    server.send_signal(signal.SIGUSR1)
    server.wait_for_log("reopening the access log", timeout=10)
    sent = 3

    def reopened():
        nonlocal sent
        assert_serves(server)
        sent += 1
        return log.exists() and read_lines(log)

    wait_until(reopened, 15, "lines in the reopened access log")
    total = wait_until(
        lambda: (lambda n: n if n == sent else None)(len(read_lines(log)) + len(read_lines(rotated))),
        10,
        "every line in one of the two files",
    )
    assert total == sent
    assert server.alive() and len(server.workers()) == 2


def test_access_log_bad_settings_are_refused(tmp_path):
    result = run_cli(["--access-log-format", "%(h)s %(nope)s", "wsgi_app:app"])
    assert result.returncode == 2
    assert "--access-log-format" in result.stderr and "nope" in result.stderr
    result = run_cli(["--access-log", str(tmp_path / "missing" / "a.log"), "wsgi_app:app"], timeout=30)
    assert result.returncode == 1
    assert "access log" in result.stderr


# --------------------------------------------------------------------------- server log


def test_json_server_log_with_request_id(server_factory):
    server = server_factory.start("wsgi_app:app", ["--log-format", "json"])
    resp = http_get(server.port, "/error", headers=[("X-Request-ID", "rid-500")])
    assert resp.status == 500
    server.wait_for_log("rid-500", timeout=10)
    entries = [json.loads(line) for line in server.log().splitlines() if line.strip()]
    assert any(e.get("process") == "master" and e.get("level") == "info" for e in entries)
    traceback = [e for e in entries if e.get("request_id") == "rid-500"]
    assert traceback and "Traceback" in traceback[0]["message"]
