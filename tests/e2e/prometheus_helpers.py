"""A real Prometheus server (Debian's /usr/bin/prometheus) for the end-to-end tests, plus
helpers to scrape appserver's metrics endpoint and read the text exposition.

Everything is bounded: HTTP calls time out, waits poll a condition with a deadline, and
the Prometheus process is stopped by PID (SIGTERM, then SIGKILL). It listens on
127.0.0.1 only, on a free port, with its storage in the test's tmp_path.
"""

from __future__ import annotations

import http.client
import json
import math
import os
import re
import signal
import subprocess
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

from e2e_helpers import HOST, SOCKET_TIMEOUT, STOP_TIMEOUT, SetupError, free_port, wait_until

PROMETHEUS_BIN = Path(os.environ.get("E2E_PROMETHEUS_BIN", "/usr/bin/prometheus"))
PROMTOOL_BIN = Path(os.environ.get("E2E_PROMTOOL_BIN", "/usr/bin/promtool"))
PROMETHEUS_STARTUP_TIMEOUT = 30.0

# What Prometheus 2.x asks for unless told otherwise (scrape/scrape.go, acceptHeader).
TEXT_ACCEPT = "text/plain;version=0.0.4;q=1,*/*;q=0.1"
OPENMETRICS_ACCEPT = (
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
    "text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)

# Every family the server must export (the names docs/metrics.md documents), and its type.
PER_WORKER_FAMILIES = {
    "appserver_request_queue_depth": "gauge",
    "appserver_request_queue_capacity": "gauge",
    "appserver_request_queue_wait_seconds": "histogram",
    "appserver_request_queue_rejected_total": "counter",
    "appserver_request_queue_expired_total": "counter",
    "appserver_request_queue_abandoned_total": "counter",
    "appserver_event_loop_busy_ratio": "gauge",
    "appserver_event_loop_busy_seconds_total": "counter",
    "appserver_event_loop_lag_seconds": "histogram",
    "appserver_blocking_threads": "gauge",
    "appserver_blocking_threads_busy": "gauge",
    "appserver_gil_wait_seconds_total": "counter",
    "appserver_worker_resident_memory_bytes": "gauge",
    "appserver_worker_cpu_seconds_total": "counter",
    "appserver_worker_open_fds": "gauge",
    "appserver_worker_up": "gauge",
}
AGGREGATED_FAMILIES = {
    "appserver_listen_queue_depth": "gauge",  # TCP only
    "appserver_listen_queue_capacity": "gauge",  # TCP only
    "appserver_requests_total": "counter",
    "appserver_request_duration_seconds": "histogram",
    "appserver_request_body_bytes_total": "counter",
    "appserver_response_body_bytes_total": "counter",
    "appserver_connections_open": "gauge",
    "appserver_connections_accepted_total": "counter",
    "appserver_connections_closed_total": "counter",
    "appserver_workers": "gauge",
    "appserver_worker_restarts_total": "counter",
    "appserver_access_log_dropped_total": "counter",
    "appserver_log_dropped_total": "counter",
    "appserver_build_info": "gauge",
}
PROCESS_FAMILIES = {
    "process_cpu_seconds_total": "counter",
    "process_resident_memory_bytes": "gauge",
    "process_open_fds": "gauge",
    "process_max_fds": "gauge",
    "process_start_time_seconds": "gauge",
}
HISTOGRAM_BOUNDS = {
    "appserver_request_duration_seconds": [
        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
    "appserver_request_queue_wait_seconds": [
        0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    "appserver_event_loop_lag_seconds": [
        0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1],
}


METRICS_DOC = Path(__file__).resolve().parents[2] / "docs" / "metrics.md"


def documented_families() -> set[str]:
    """Every `appserver_...` name docs/metrics.md mentions (the doc is the contract)."""
    return set(re.findall(r"`(appserver_[a-z0-9_]+)", METRICS_DOC.read_text(encoding="utf-8")))


def documented_label_values(metric: str, label: str) -> set[str]:
    """The first column of the table that follows the line "`metric{label}`:" in
    docs/metrics.md (e.g. the reasons of appserver_worker_restarts_total)."""
    lines = METRICS_DOC.read_text(encoding="utf-8").splitlines()
    start = lines.index(f"`{metric}{{{label}}}`:")
    values = set()
    for line in lines[start + 1:]:
        if not line.strip():
            if values:
                break
            continue
        m = re.match(r"^\|\s*`([^`]+)`\s*\|", line)
        if m:
            values.add(m.group(1))
        elif not line.startswith("|"):
            break
    return values


def require_binary(path: Path) -> None:
    """A missing Prometheus fails the test: scripts/install-deps installs it."""
    if not path.is_file() or not os.access(path, os.X_OK):
        raise SetupError(f"{path} not found: install the Debian package 'prometheus' (bash scripts/install-deps)")


# --------------------------------------------------------------------------- HTTP


@dataclass
class HttpResult:
    status: int
    headers: dict[str, str]  # lower-case names
    body: bytes

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "")

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


def http_request(port: int, path: str, headers: dict[str, str] | None = None, method: str = "GET",
                 timeout: float = SOCKET_TIMEOUT, host: str = HOST) -> HttpResult:
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request(method, path, headers=headers or {})
        resp = conn.getresponse()
        body = resp.read()
        return HttpResult(resp.status, {k.lower(): v for k, v in resp.getheaders()}, body)
    finally:
        conn.close()


def scrape(port: int, accept: str | None = None) -> HttpResult:
    """GET /metrics from appserver's metrics endpoint (no Accept header unless given)."""
    return http_request(port, "/metrics", {"Accept": accept} if accept else None)


def wait_metrics_endpoint(port: int, timeout: float = 20.0) -> HttpResult:
    def ready():
        try:
            r = scrape(port)
        except OSError:
            return None
        return r if r.status == 200 else None

    return wait_until(ready, timeout, f"the metrics endpoint on port {port} to answer 200")


# --------------------------------------------------------------------------- exposition


@dataclass
class Sample:
    name: str
    labels: dict[str, str]
    value: float


_SAMPLE_RE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)(\s+\S+)?$")
_LABEL_RE = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"\s*(,|$)')


def _parse_labels(text: str) -> dict[str, str]:
    labels, pos = {}, 0
    while pos < len(text):
        m = _LABEL_RE.match(text, pos)
        if not m:
            raise ValueError(f"bad label set {{{text}}}")
        labels[m.group(1)] = m.group(2).replace('\\"', '"').replace("\\n", "\n").replace("\\\\", "\\")
        pos = m.end()
    return labels


def _parse_value(text: str) -> float:
    special = {"+Inf": math.inf, "-Inf": -math.inf, "NaN": math.nan}
    return special[text] if text in special else float(text)


@dataclass
class Exposition:
    types: dict[str, str]  # family -> type, from # TYPE lines
    helps: dict[str, str]
    samples: list[Sample]

    def find(self, name: str, **labels: str) -> list[Sample]:
        return [s for s in self.samples
                if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())]

    def value(self, name: str, **labels: str) -> float:
        found = self.find(name, **labels)
        assert len(found) == 1, f"expected one sample {name}{labels}, got {found!r}"
        return found[0].value

    def total(self, name: str, **labels: str) -> float:
        return sum(s.value for s in self.find(name, **labels))


def parse_exposition(text: str) -> Exposition:
    """A small reader of the Prometheus text format (and of OpenMetrics' subset we need)."""
    types, helps, samples = {}, {}, []
    for line in text.splitlines():
        if not line.strip():
            continue
        if line.startswith("#"):
            parts = line.split(None, 3)
            if len(parts) >= 4 and parts[1] == "TYPE":
                types[parts[2]] = parts[3].strip()
            elif len(parts) >= 3 and parts[1] == "HELP":
                helps[parts[2]] = parts[3] if len(parts) > 3 else ""
            continue
        m = _SAMPLE_RE.match(line)
        if not m:
            raise ValueError(f"bad sample line {line!r}")
        samples.append(Sample(m.group(1), _parse_labels(m.group(3) or ""), _parse_value(m.group(4))))
    return Exposition(types, helps, samples)


# --------------------------------------------------------------------------- Prometheus


class Prometheus:
    """One Prometheus server with a generated config, on 127.0.0.1:<free port>."""

    def __init__(self, work_dir: Path, jobs: dict[str, list[str]], scrape_interval: str = "1s"):
        require_binary(PROMETHEUS_BIN)
        self.work_dir = work_dir
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.config_path = work_dir / "prometheus.yml"
        self.log_path = work_dir / "prometheus.log"
        lines = [
            "global:",
            f"  scrape_interval: {scrape_interval}",
            f"  scrape_timeout: {scrape_interval}",
            f"  evaluation_interval: {scrape_interval}",
            "scrape_configs:",
        ]
        for job, targets in jobs.items():
            lines += [
                f"  - job_name: {json.dumps(job)}",
                "    metrics_path: /metrics",
                "    static_configs:",
                f"      - targets: {json.dumps(targets)}",
            ]
        self.config_path.write_text("\n".join(lines) + "\n")
        self.proc: subprocess.Popen | None = None
        self.port = 0
        self._start()

    def _start(self) -> None:
        last = ""
        for _attempt in range(3):
            self.port = free_port()
            argv = [
                str(PROMETHEUS_BIN),
                f"--config.file={self.config_path}",
                f"--storage.tsdb.path={self.work_dir / 'data'}",
                f"--web.listen-address={HOST}:{self.port}",
                "--log.level=info",
            ]
            with open(self.log_path, "ab") as log:
                self.proc = subprocess.Popen(
                    argv, cwd=str(self.work_dir), stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                    start_new_session=True,
                )
            deadline = time.monotonic() + PROMETHEUS_STARTUP_TIMEOUT
            while time.monotonic() < deadline and self.proc.poll() is None:
                try:
                    if http_request(self.port, "/-/ready", timeout=2).status == 200:
                        return
                except OSError:
                    pass
                time.sleep(0.1)
            last = self.log_tail()
            self.stop()
            if "address already in use" not in last:
                break
        raise SetupError(f"prometheus did not become ready:\n{last}")

    # ---- info
    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def log(self) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, n: int = 40) -> str:
        return "\n".join(self.log().splitlines()[-n:])

    # ---- HTTP API
    def api(self, path: str, params: dict[str, str] | None = None) -> dict:
        query = ("?" + urllib.parse.urlencode(params)) if params else ""
        r = http_request(self.port, f"/api/v1/{path}{query}")
        payload = json.loads(r.body)
        if r.status != 200 or payload.get("status") != "success":
            raise AssertionError(f"prometheus API {path}{query}: {r.status} {r.text[:500]}")
        return payload["data"]

    def query(self, expr: str) -> list[tuple[dict[str, str], float]]:
        """Instant query: [(labels, value)] of a vector result (a scalar as one entry)."""
        data = self.api("query", {"query": expr})
        if data["resultType"] == "scalar":
            return [({}, float(data["result"][1]))]
        return [(item["metric"], float(item["value"][1])) for item in data["result"]]

    def samples(self, expr: str) -> list[tuple[dict[str, str], list[float]]]:
        """An instant query of a range selector (`metric[5m]`): [(labels, values in time order)]."""
        data = self.api("query", {"query": expr})
        assert data["resultType"] == "matrix", data["resultType"]
        return [(item["metric"], [float(v) for _t, v in item["values"]]) for item in data["result"]]

    def targets(self) -> list[dict]:
        return self.api("targets", {"state": "active"})["activeTargets"]

    def wait_query(self, expr: str, predicate, timeout: float, what: str):
        """Poll an instant query until predicate(result) holds; returns the result."""
        last = [None]

        def check():
            last[0] = self.query(expr)
            return last[0] if predicate(last[0]) else None

        try:
            return wait_until(check, timeout, what, interval=0.25)
        except AssertionError as e:
            try:
                health = [(t["scrapeUrl"], t["health"], t.get("lastError")) for t in self.targets()]
            except (OSError, AssertionError, ValueError) as err:
                health = repr(err)
            raise AssertionError(f"{e}; last result of {expr!r}: {last[0]!r}; targets: {health}") from None

    def wait_targets_up(self, jobs: list[str], timeout: float = 30.0) -> list[dict]:
        last = [None]

        def check():
            targets = [t for t in self.targets() if t["labels"].get("job") in jobs]
            last[0] = targets
            if len(targets) < len(jobs):
                return None
            ok = all(t["health"] == "up" and not t.get("lastError") for t in targets)
            return targets if ok else None

        try:
            return wait_until(check, timeout, f"targets {jobs} to be up", interval=0.25)
        except AssertionError as e:
            raise AssertionError(f"{e}; targets: {json.dumps(last[0], indent=1)}") from None

    # ---- lifecycle
    def stop(self) -> None:
        """SIGTERM by PID, SIGKILL after STOP_TIMEOUT."""
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            os.kill(self.proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            try:
                os.kill(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(timeout=STOP_TIMEOUT)


def run_promtool(args: list[str], stdin: bytes = b"", timeout: float = 30.0) -> subprocess.CompletedProcess:
    require_binary(PROMTOOL_BIN)
    return subprocess.run([str(PROMTOOL_BIN), *args], input=stdin, capture_output=True, timeout=timeout)
