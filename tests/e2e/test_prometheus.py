"""The metrics path end to end, with a real Prometheus server scraping appserver.

appserver runs with --metrics on a free loopback port; a Prometheus (Debian's
/usr/bin/prometheus, installed by scripts/install-deps) scrapes it every second with a
generated config, storage in tmp_path; the tests read the results back through
Prometheus's HTTP API. A missing Prometheus fails these tests (never skips them).
"""

from __future__ import annotations

import http.server
import math
import threading

import pytest

from e2e_helpers import (
    HOST,
    RawHTTP,
    SetupError,
    build_request,
    free_port,
    release,
    server_has_read,
    start_blocked_request,
    wait_for_file,
    wait_until,
)
from prometheus_helpers import (
    AGGREGATED_FAMILIES,
    HISTOGRAM_BOUNDS,
    OPENMETRICS_ACCEPT,
    PER_WORKER_FAMILIES,
    PROCESS_FAMILIES,
    PROMETHEUS_BIN,
    TEXT_ACCEPT,
    Prometheus,
    documented_families,
    documented_label_values,
    parse_exposition,
    require_binary,
    run_promtool,
    scrape,
    wait_metrics_endpoint,
)

pytestmark = pytest.mark.timeout(150)

METHODS = {"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE", "other"}
CODES = {"1xx", "2xx", "3xx", "4xx", "5xx"}
CLOSE_REASONS = {"client", "keep_alive_timeout", "read_timeout", "write_timeout", "bad_request",
                 "overload", "response", "shutdown", "error"}
RESTART_REASONS = {"crash", "boot_failure", "exit"}
PROM_WAIT = 30.0  # how long a value may take to show in Prometheus (1 s scrapes)


# --------------------------------------------------------------------------- fixtures


@pytest.fixture
def prometheus_factory(tmp_path):
    """Starts Prometheus servers for one test; stops each by PID at teardown. Called from
    the test body, so a missing binary is a test failure, not a setup error."""
    started: list[Prometheus] = []

    def start(jobs: dict[str, list[str]]) -> Prometheus:
        require_binary(PROMETHEUS_BIN)
        prom = Prometheus(tmp_path / f"prometheus{len(started)}", jobs)
        started.append(prom)
        return prom

    yield start
    for prom in started:
        prom.stop()
        # Shown by pytest under "Captured stdout teardown" when the test failed.
        print(f"--- prometheus (pid {prom.pid}, port {prom.port}) log tail ---\n{prom.log_tail(30)}")


def start_with_metrics(server_factory, args: list[str]):
    """Starts appserver with --metrics on a free loopback port; returns (server, metrics port)."""
    for attempt in range(3):
        metrics_port = free_port()
        try:
            server = server_factory.start(
                args=args + ["--metrics", "--metrics-address", HOST, "--metrics-port", str(metrics_port)]
            )
        except SetupError:
            if attempt < 2 and "in use" in server_factory.servers[-1].log().lower():
                continue  # the metrics port was taken between free_port() and the bind
            raise
        wait_metrics_endpoint(metrics_port)
        return server, metrics_port
    raise AssertionError("unreachable")


def single_value(result, what: str) -> float:
    assert len(result) == 1, f"expected one series for {what}, got {result!r}"
    return result[0][1]


# --------------------------------------------------------------------------- queue depth


def test_queue_depth_reaches_prometheus_and_drains(server_factory, prometheus_factory, token):
    """Every blocking thread held, more requests queued behind them: Prometheus sees the
    queue depth (scraped from the master, read from the worker's shared slot), then 0
    once the threads are released."""
    threads, queued_n, capacity = 2, 5, 16
    server, metrics_port = start_with_metrics(
        server_factory,
        ["--workers", "1", "--blocking-threads", str(threads), "--request-queue-size", str(capacity)],
    )
    prom = prometheus_factory({"appserver": [f"{HOST}:{metrics_port}"]})
    prom.wait_targets_up(["appserver"])
    depth_q = 'appserver_request_queue_depth{job="appserver"}'
    prom.wait_query(depth_q, lambda r: len(r) == 1 and r[0][1] == 0, PROM_WAIT, "queue depth 0 before the load")

    tokens = [f"{token}-{i}" for i in range(threads)]
    holders: list[RawHTTP] = []
    queued: list[RawHTTP] = []
    try:
        for t in tokens:
            holders.append(start_blocked_request(server, t))  # returns once the app runs it
        for _ in range(queued_n):
            c = RawHTTP(server.port, timeout=30)
            queued.append(c)
            c.send(build_request("GET", "/hello", port=server.port))
            wait_until(lambda c=c: server_has_read(c), 20, "the worker to read a queued request")

        result = prom.wait_query(
            depth_q, lambda r: len(r) == 1 and r[0][1] >= queued_n, PROM_WAIT,
            f"Prometheus to report a queue depth of {queued_n}",
        )
        labels, depth = result[0]
        assert labels.get("worker") == "0", labels
        assert depth == queued_n, f"queue depth {depth}, {queued_n} requests queued"
        busy = single_value(prom.query('appserver_blocking_threads_busy{job="appserver"}'), "threads busy")
        assert busy == threads, f"{busy} threads busy, {threads} held by the app"
        assert single_value(prom.query('appserver_blocking_threads{job="appserver"}'), "threads") == threads
        assert single_value(prom.query('appserver_request_queue_capacity{job="appserver"}'), "capacity") == capacity
        assert single_value(prom.query('appserver_worker_up{job="appserver"}'), "worker up") == 1
    finally:
        for t in tokens:
            release(server, t)
        try:
            for c in holders:
                assert c.read_response().status == 200
            for c in queued:
                resp = c.read_response()
                assert resp.status == 200 and resp.body == b"Hello, world!\n", resp
        finally:
            for c in holders + queued:
                c.close()

    prom.wait_query(depth_q, lambda r: len(r) == 1 and r[0][1] == 0, PROM_WAIT, "the queue depth back to 0")
    prom.wait_query('appserver_blocking_threads_busy{job="appserver"}', lambda r: len(r) == 1 and r[0][1] == 0,
                    PROM_WAIT, "no thread busy after the release")
    # Every request that went through the queue was observed by the wait histogram
    # (the held ones, the queued ones, and the readiness probe).
    prom.wait_query('appserver_request_queue_wait_seconds_count{job="appserver"}',
                    lambda r: len(r) == 1 and r[0][1] >= threads + queued_n, PROM_WAIT,
                    "the queue-wait histogram to count the queued requests")
    rejected = prom.query('sum(appserver_request_queue_rejected_total{job="appserver"})'
                          ' + sum(appserver_request_queue_expired_total{job="appserver"})')
    assert single_value(rejected, "rejected + expired") == 0, "nothing was refused"


# --------------------------------------------------------------------------- promtool


def _traffic(server) -> int:
    """Requests of several kinds, so many series exist; returns how many were answered."""
    n = 0
    with RawHTTP(server.port) as c:
        for _ in range(3):
            assert c.request("GET", "/hello").status == 200
            n += 1
        assert c.request("HEAD", "/hello").status == 200
        assert c.request("POST", "/echo", body=b"x" * 1000).body == b"x" * 1000
        assert c.request("GET", "/no-such-route").status == 404
        assert c.request("PROPFIND", "/hello").status == 200  # method label "other"
        n += 4
    with RawHTTP(server.port) as c:
        # HTTP/1.1 without Host: the server's own 400, and the connection closed.
        c.send(b"GET /hello HTTP/1.1\r\n\r\n")
        assert c.read_response().status == 400
        n += 1
    return n


def _check_families(expo, workers: int) -> list[str]:
    """Problems with the families, types, labels and buckets of one text scrape."""
    problems = []
    expected = {**PER_WORKER_FAMILIES, **AGGREGATED_FAMILIES, **PROCESS_FAMILIES}
    for family, kind in expected.items():
        got = expo.types.get(family)
        if got is None:
            problems.append(f"missing family {family} ({kind})")
        elif got != kind:
            problems.append(f"{family}: type {got}, expected {kind}")
        elif family not in expo.helps:
            problems.append(f"{family}: no HELP")
    documented = documented_families()
    for name in sorted(set(expo.types) - set(expected)):
        if name.startswith("appserver_") and name not in documented:
            problems.append(f"family {name} ({expo.types[name]}) is not in docs/metrics.md")
    slots = {str(i) for i in range(workers)}
    for family, kind in PER_WORKER_FAMILIES.items():
        name = family + "_count" if kind == "histogram" else family
        found = {s.labels.get("worker") for s in expo.find(name)}
        if found != slots:
            problems.append(f"{name}: worker labels {sorted(map(str, found))}, expected {sorted(slots)}")
    for family in AGGREGATED_FAMILIES:
        name = family + "_count" if AGGREGATED_FAMILIES[family] == "histogram" else family
        if any("worker" in s.labels for s in expo.find(name)):
            problems.append(f"{name} carries a worker label")
    for family, bounds in HISTOGRAM_BOUNDS.items():
        groups: dict[tuple, list[float]] = {}
        for s in expo.find(family + "_bucket"):
            key = tuple(sorted((k, v) for k, v in s.labels.items() if k != "le"))
            groups.setdefault(key, []).append(float(s.labels["le"]))
        if not groups:
            problems.append(f"{family}: no buckets")
        for key, les in groups.items():
            want = [float(b) for b in bounds] + [math.inf]
            if sorted(les) != want:
                problems.append(f"{family}{dict(key)}: le {sorted(les)}, expected {want}")
    methods = {s.labels.get("method") for s in expo.find("appserver_requests_total")}
    codes = {s.labels.get("code") for s in expo.find("appserver_requests_total")}
    if methods != METHODS or codes != CODES:
        problems.append(f"appserver_requests_total: methods {sorted(map(str, methods))}, "
                        f"codes {sorted(map(str, codes))}")
    # Each fixed label set: the required values exported (every one from the start, zeros
    # included), and nothing that docs/metrics.md does not explain.
    for family, label, required in (("appserver_connections_closed_total", "reason", CLOSE_REASONS),
                                    ("appserver_worker_restarts_total", "reason", RESTART_REASONS)):
        exported = {s.labels.get(label) for s in expo.find(family)}
        documented = documented_label_values(family, label)
        if not required <= documented:
            problems.append(f"docs/metrics.md lacks {family}{{{label}}} {sorted(required - documented)}")
        if missing := required - exported:
            problems.append(f"{family}: no series for {label} {sorted(missing)}")
        if undocumented := exported - documented:
            problems.append(f"{family}: {label} {sorted(map(str, undocumented))} not in docs/metrics.md")
    info = expo.find("appserver_build_info")
    if len(info) != 1 or info[0].value != 1 or not {"version", "python"} <= set(info[0].labels):
        problems.append(f"appserver_build_info: {info!r}")
    return problems


def test_promtool_check_metrics_is_clean_on_a_real_scrape(server_factory):
    """promtool's linter finds nothing to complain about in a scrape taken after varied
    traffic (2xx, a 404, a 400, several methods) on two workers; and every documented
    family is there with its type, labels and buckets."""
    workers = 2
    server, metrics_port = start_with_metrics(server_factory, ["--workers", str(workers)])
    answered = _traffic(server)

    def expectations(expo):
        # Counted as each exchange (or connection) ends, so the scrape may be a moment early.
        return {
            f"all {answered} answers counted": expo.total("appserver_requests_total") >= answered,
            "the 404 and the 400 counted as 4xx": expo.total("appserver_requests_total", code="4xx") >= 2,
            "PROPFIND counted as method other": expo.total("appserver_requests_total", method="other") >= 1,
            "HEAD counted": expo.total("appserver_requests_total", method="HEAD") >= 1,
            "the POST body counted": expo.total("appserver_request_body_bytes_total") >= 1000,
            "the echoed body counted": expo.total("appserver_response_body_bytes_total") >= 1000,
            "the 400's connection closed as bad_request":
                expo.total("appserver_connections_closed_total", reason="bad_request") >= 1,
        }

    last = {}

    def counted():
        r = scrape(metrics_port)
        expo = parse_exposition(r.text)
        last["unmet"] = [what for what, ok in expectations(expo).items() if not ok]
        return None if last["unmet"] else (r, expo)

    try:
        r, expo = wait_until(counted, 20, "the scrape to count the test's traffic")
    except AssertionError as e:
        raise AssertionError(f"{e}; still unmet: {last['unmet']}") from None
    assert r.status == 200
    assert r.content_type.replace(" ", "").startswith("text/plain;version=0.0.4"), r.content_type

    lint = run_promtool(["check", "metrics"], stdin=r.body)
    out = (lint.stdout + lint.stderr).decode("utf-8", "replace").strip()
    assert lint.returncode == 0 and not out, f"promtool check metrics (exit {lint.returncode}):\n{out}"

    assert expo.total("appserver_workers") == workers
    assert expo.total("appserver_worker_up") == workers
    assert expo.find("appserver_listen_queue_capacity") and expo.total("appserver_listen_queue_capacity") > 0
    problems = _check_families(expo, workers)
    assert not problems, "scrape problems:\n  " + "\n  ".join(problems)


# --------------------------------------------------------------------------- OpenMetrics


class _Recorder(http.server.ThreadingHTTPServer):
    """A pass-through in front of appserver's metrics endpoint that records what Prometheus
    asked for (Accept) and what appserver answered (Content-Type, body)."""

    daemon_threads = True

    def __init__(self, upstream_port: int):
        self.upstream_port = upstream_port
        self.seen: list[tuple[str, str, bytes]] = []
        self.lock = threading.Lock()
        super().__init__((HOST, 0), _RecorderHandler)


class _RecorderHandler(http.server.BaseHTTPRequestHandler):
    server: _Recorder
    timeout = 10

    def do_GET(self):  # noqa: N802 - http.server's naming
        accept = self.headers.get("Accept", "")
        try:
            r = scrape(self.server.upstream_port, accept=accept or None)
        except OSError as e:
            self.send_error(502, str(e))
            return
        with self.server.lock:
            self.server.seen.append((accept, r.content_type, r.body))
        self.send_response(r.status)
        self.send_header("Content-Type", r.content_type)
        self.send_header("Content-Length", str(len(r.body)))
        self.end_headers()
        self.wfile.write(r.body)

    def log_message(self, *args):
        pass


def test_openmetrics_negotiation_through_prometheus(server_factory, prometheus_factory):
    """Prometheus asks for OpenMetrics by default; appserver answers in it, and
    Prometheus's (strict) OpenMetrics parser accepts the scrape: the target is up with no
    error, and the values are queryable. A plain text request still gets 0.0.4."""
    server, metrics_port = start_with_metrics(server_factory, ["--workers", "1"])

    text = scrape(metrics_port, accept=TEXT_ACCEPT)
    assert text.content_type.replace(" ", "").startswith("text/plain;version=0.0.4"), text.content_type
    assert "# EOF" not in text.text
    om = scrape(metrics_port, accept=OPENMETRICS_ACCEPT)
    assert om.content_type.replace(" ", "").startswith("application/openmetrics-text;version=1.0.0"), om.content_type
    assert om.text.endswith("# EOF\n") and om.text.count("# EOF") == 1, om.text[-200:]

    recorder = _Recorder(metrics_port)
    serving = threading.Thread(target=recorder.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    serving.start()
    try:
        rec_port = recorder.server_address[1]
        prom = prometheus_factory({
            "appserver": [f"{HOST}:{metrics_port}"],
            "appserver-recorded": [f"{HOST}:{rec_port}"],
        })
        targets = prom.wait_targets_up(["appserver", "appserver-recorded"])
        for t in targets:
            assert t["health"] == "up" and t["lastError"] == "", t
        for job in ("appserver", "appserver-recorded"):
            prom.wait_query(f'appserver_build_info{{job="{job}"}}', lambda r: len(r) == 1 and r[0][1] == 1,
                            PROM_WAIT, f"build info scraped by job {job}")
            prom.wait_query(f'sum(appserver_requests_total{{job="{job}"}})', lambda r: len(r) == 1 and r[0][1] >= 1,
                            PROM_WAIT, f"request counts scraped by job {job}")
        with recorder.lock:
            seen = list(recorder.seen)
    finally:
        recorder.shutdown()
        recorder.server_close()
        serving.join(timeout=10)

    assert seen, "Prometheus never scraped the recorder"
    accept, content_type, body = seen[-1]
    assert accept.startswith("application/openmetrics-text"), f"Prometheus asked for {accept!r}"
    assert content_type.replace(" ", "").startswith("application/openmetrics-text;version=1.0.0"), (
        f"appserver answered {content_type!r} to Accept: {accept!r}")
    assert body.endswith(b"# EOF\n"), body[-200:]


# --------------------------------------------------------------------------- worker replacement


def test_counters_do_not_reset_when_a_worker_is_replaced(server_factory, prometheus_factory, token):
    """A worker dies mid-request and is replaced in the same slot: Prometheus sees the
    restart counted as a crash, the slot up again, and no counter series reset."""
    server, metrics_port = start_with_metrics(server_factory, ["--workers", "1"])
    prom = prometheus_factory({"appserver": [f"{HOST}:{metrics_port}"]})
    prom.wait_targets_up(["appserver"])
    (old,) = wait_until(lambda: (w := server.workers()) and len(w) == 1 and w, 20, "1 worker")

    with RawHTTP(server.port) as c:
        for _ in range(5):
            assert c.request("GET", "/hello").status == 200
    before = prom.wait_query('sum(appserver_requests_total{job="appserver"})',
                             lambda r: len(r) == 1 and r[0][1] >= 5, PROM_WAIT, "the first requests counted")
    before_total = before[0][1]

    with RawHTTP(server.port) as c:
        c.send(build_request("GET", f"/crash?token={token}", port=server.port))
        resp = c.read_response_or_eof()
        assert resp is None or resp.status >= 500, resp
    wait_for_file(server.marker(f"crashing-{token}"))
    wait_until(lambda: (w := server.workers()) and len(w) == 1 and old not in w, 20, "a replacement worker")

    prom.wait_query('appserver_worker_restarts_total{job="appserver", reason="crash"}',
                    lambda r: len(r) == 1 and r[0][1] == 1, PROM_WAIT, "the crash counted")
    prom.wait_query('appserver_worker_up{job="appserver", worker="0"}', lambda r: len(r) == 1 and r[0][1] == 1,
                    PROM_WAIT, "slot 0 up again")
    with RawHTTP(server.port) as c:
        for _ in range(5):
            assert c.request("GET", "/hello").status == 200
    after = prom.wait_query('sum(appserver_requests_total{job="appserver"})',
                            lambda r: len(r) == 1 and r[0][1] >= before_total + 5, PROM_WAIT,
                            "the new worker's requests added to the old ones")
    assert after[0][1] >= before_total + 5
    went_back = []
    for labels, values in prom.samples(
        '{job="appserver", __name__=~"appserver_.*(_total|_count|_sum|_bucket)"}[5m]'
    ):
        drops = [(a, b) for a, b in zip(values, values[1:]) if b < a]
        if drops:
            name = labels.pop("__name__", "?")
            went_back.append(f"{name}{labels}: {drops[0][0]} -> {drops[0][1]}")
    assert not went_back, "counter series went backwards across the replacement:\n  " + "\n  ".join(went_back)
