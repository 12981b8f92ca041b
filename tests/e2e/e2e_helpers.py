"""Process control and raw-HTTP helpers shared by the end-to-end tests.

Everything here is bounded: sockets time out, process waits have deadlines, and the
processes we start are stopped by PID (SIGTERM, then SIGKILL after a bounded wait).
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

E2E_DIR = Path(__file__).resolve().parent
APPS_DIR = E2E_DIR / "apps"
REPO_ROOT = E2E_DIR.parents[1]

HOST = "127.0.0.1"
SOCKET_TIMEOUT = 10.0  # every socket operation in the suite
STARTUP_TIMEOUT = 30.0  # port accepting + first probe answered
STOP_TIMEOUT = 20.0  # SIGTERM -> exit, before SIGKILL
CLOSE_TIMEOUT = 5.0  # how long a connection may take to be closed by the server "at once"
POLL_INTERVAL = 0.02  # granularity of readiness/marker polling (never used as a sync point)
WHEEL_BUILD_TIMEOUT = 1200.0  # scripts/wheel from a cold build tree, two jobs

# child_env() extras for what runs from a virtualenv the tests made: nothing of the source
# tree or of another environment can be imported by accident.
ISOLATED = {"PYTHONPATH": None, "VIRTUAL_ENV": None, "PYTHONHOME": None, "PYTHONNOUSERSITE": "1"}


# --------------------------------------------------------------------------- paths


def binary_path() -> Path:
    # Absolute: servers start in tests/e2e/apps, so a path relative to the caller's
    # directory (APPSERVER_BIN=build/asan-ubsan/appserver) would not be found there.
    return Path(os.environ.get("APPSERVER_BIN", REPO_ROOT / "build" / "dev" / "appserver")).absolute()


def python_package_dir() -> Path:
    return Path(os.environ.get("APPSERVER_PYTHONPATH", REPO_ROOT / "build" / "dev" / "python"))


class SetupError(RuntimeError):
    """The server under test is not there (not built) or could not be started."""


def frontdoor_command(frontdoor: str) -> tuple[list[str], dict[str, str]]:
    """argv prefix and extra environment for one of the two front doors."""
    if frontdoor == "binary":
        path = binary_path()
        if not path.is_file() or not os.access(path, os.X_OK):
            raise SetupError(
                f"appserver binary not found at {path} (build it, or set APPSERVER_BIN)"
            )
        return [str(path)], {}
    if frontdoor == "python":
        pkg = python_package_dir()
        if not (pkg / "appserver").is_dir():
            raise SetupError(
                f"python package 'appserver' not found under {pkg} "
                "(build it, or set APPSERVER_PYTHONPATH)"
            )
        return [sys.executable, "-m", "appserver"], {"PYTHONPATH": str(pkg)}
    raise ValueError(f"unknown front door {frontdoor!r}")


def child_env(extra: dict[str, str | None] | None = None) -> dict[str, str]:
    """The test process's environment without any APPSERVER_* variable (they are options).

    A value of None in extra removes that variable."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("APPSERVER_")}
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    for key, value in (extra or {}).items():
        if value is None:
            env.pop(key, None)
            continue
        if key == "PYTHONPATH" and env.get("PYTHONPATH"):
            # Caller-supplied entries first: the package under test wins over stale copies.
            value = value + os.pathsep + env["PYTHONPATH"]
        env[key] = value
    return env


def free_port(host: str = HOST) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def port_accepts(port: int, host: str = HOST, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_until(predicate, timeout: float, what: str, interval: float = POLL_INTERVAL):
    """Poll predicate() until it returns a truthy value; raise AssertionError on deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def wait_for_file(path: Path, timeout: float = 20.0) -> str:
    wait_until(path.exists, timeout, f"file {path.name}")
    return path.read_text(encoding="utf-8", errors="replace")


# --------------------------------------------------------------------------- /proc


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """(state, ppid) of a process, or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read().decode("ascii", "replace")
    except OSError:
        return None
    rest = data[data.rfind(")") + 2 :].split()
    return rest[0], int(rest[1])


def pid_alive(pid: int) -> bool:
    stat = _proc_stat(pid)
    return stat is not None and stat[0] != "Z"


def children_of(pid: int) -> list[int]:
    """Live (non-zombie) direct children of pid."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        stat = _proc_stat(int(entry))
        if stat and stat[1] == pid and stat[0] != "Z":
            out.append(int(entry))
    return sorted(out)


def descendants_of(pid: int) -> list[int]:
    parent_of = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = _proc_stat(int(entry))
            if stat and stat[0] != "Z":
                parent_of[int(entry)] = stat[1]
    result, frontier = [], [pid]
    while frontier:
        parent = frontier.pop()
        kids = [p for p, pp in parent_of.items() if pp == parent]
        result.extend(kids)
        frontier.extend(kids)
    return sorted(result)


def _kill_quietly(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


# --------------------------------------------------------------------------- processes


@dataclass
class StopResult:
    returncode: int | None
    forced: bool  # SIGKILL was needed
    leftovers: list[int] = field(default_factory=list)  # descendants alive after the master exited


class ServerProcess:
    """One started server (master PID = self.pid), its logs and its state directory."""

    def __init__(
        self,
        argv: list[str],
        env: dict[str, str],
        cwd: Path,
        port: int,
        log_dir: Path,
        name: str,
        state_dir: Path | None = None,
        pass_fds: tuple[int, ...] = (),
    ):
        self.argv = argv
        self.port = port
        self.host = HOST
        self.name = name
        self.state_dir = state_dir
        self.stderr_path = log_dir / f"{name}.stderr.log"
        self.stdout_path = log_dir / f"{name}.stdout.log"
        self._stopped: StopResult | None = None
        self._seen_children: set[int] = set()  # every worker PID observed, for cleanup
        with open(self.stderr_path, "wb") as err, open(self.stdout_path, "wb") as out:
            self.proc = subprocess.Popen(
                argv,
                env=env,
                cwd=str(cwd),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=True,  # signals aimed at pytest do not hit it
                pass_fds=pass_fds,  # a listening socket handed over (tests/e2e/test_sockets.py)
            )
        self.pid = self.proc.pid

    # ---- info
    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def log(self) -> str:
        try:
            return self.stderr_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def stdout(self) -> str:
        try:
            return self.stdout_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, n: int = 60) -> str:
        return "\n".join(self.log().splitlines()[-n:])

    def wait_for_log(self, pattern: str, timeout: float = 15.0, regex: bool = False) -> str:
        """Wait until stderr contains pattern (substring or regex); returns the log."""

        def found():
            text = self.log()
            hit = re.search(pattern, text) if regex else (pattern in text)
            return text if hit else None

        try:
            return wait_until(found, timeout, f"log line matching {pattern!r}")
        except AssertionError as e:
            raise AssertionError(f"{e}\n--- server stderr tail ---\n{self.log_tail()}") from None

    def alive(self) -> bool:
        return self.proc.poll() is None

    def workers(self) -> list[int]:
        pids = children_of(self.pid)
        self._seen_children.update(pids)
        return pids

    def marker(self, name: str) -> Path:
        assert self.state_dir is not None
        return self.state_dir / name

    # ---- lifecycle
    def wait_ready(self, timeout: float = STARTUP_TIMEOUT, probe: str | None = "/") -> None:
        """Ready = port accepts connections (while the process is alive), then a probe
        request gets any HTTP answer."""
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise SetupError(
                    f"server exited with code {self.proc.returncode} before accepting "
                    f"connections\nargv: {self.argv}\n--- stderr ---\n{self.log_tail(80)}"
                )
            if port_accepts(self.port, self.host, timeout=1.0):
                break
            if time.monotonic() >= deadline:
                raise SetupError(
                    f"server did not accept connections on port {self.port} within "
                    f"{timeout:.0f}s\n--- stderr ---\n{self.log_tail(80)}"
                )
            time.sleep(POLL_INTERVAL)
        if probe is None:
            return
        remaining = max(deadline - time.monotonic(), SOCKET_TIMEOUT)
        try:
            with RawHTTP(self.port, timeout=remaining) as c:
                c.send(build_request("GET", probe, port=self.port))
                c.read_response()
        except (OSError, ProtocolError) as e:
            raise SetupError(
                f"server accepted connections but the probe GET {probe} failed: {e!r}\n"
                f"--- stderr ---\n{self.log_tail(80)}"
            ) from None

    def send_signal(self, sig: int) -> None:
        _kill_quietly(self.pid, sig)

    def wait_exit(self, timeout: float) -> int | None:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = STOP_TIMEOUT) -> StopResult:
        """Signal the master by PID; SIGKILL it and its descendants after `timeout`."""
        if self._stopped is not None:
            return self._stopped
        family = sorted(set(descendants_of(self.pid) if self.alive() else []) | self._seen_children)
        forced = False
        if self.alive():
            _kill_quietly(self.pid, sig)
            if self.wait_exit(timeout) is None:
                forced = True
                family = sorted(set(family) | set(descendants_of(self.pid)))
                _kill_quietly(self.pid, signal.SIGKILL)
                self.wait_exit(timeout)
        # Workers must not outlive their master; reap any that did (by PID) and report them.
        leftovers = []
        deadline = time.monotonic() + 5.0
        for pid in family:
            while pid_alive(pid) and time.monotonic() < deadline:
                time.sleep(POLL_INTERVAL)
            if pid_alive(pid):
                leftovers.append(pid)
                _kill_quietly(pid, signal.SIGKILL)
        self._stopped = StopResult(self.proc.returncode, forced, leftovers)
        return self._stopped


def server_argv(
    port: int,
    app: str | None,
    args: list[str] | None = None,
    *,
    interface: bool = True,
    host: bool = True,
) -> list[str]:
    argv = []
    if interface:
        argv += ["--interface", "wsgi"]
    if host:
        argv += ["--host", HOST]
    argv += ["--port", str(port)]
    argv += list(args or [])
    if app is not None:
        argv.append(app)
    return argv


@dataclass
class CliResult:
    returncode: int | None
    stdout: str
    stderr: str
    timed_out: bool


def run_cli(
    args: list[str],
    *,
    frontdoor: str = "binary",
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float = 30.0,
    pass_fds: tuple[int, ...] = (),
    command: list[str] | None = None,
) -> CliResult:
    """Run the server expecting it to exit by itself (errors, --version, --help).

    command replaces the front door's command (an installed appserver, a venv's python)."""
    prefix, door_env = (command, {}) if command is not None else frontdoor_command(frontdoor)
    proc = subprocess.Popen(
        prefix + list(args),
        env=child_env({**door_env, **(env or {})}),
        cwd=str(cwd or APPS_DIR),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
        pass_fds=pass_fds,
    )
    timed_out = False
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        # It is serving instead of exiting: stop it and everything it forked, by PID.
        timed_out = True
        family = descendants_of(proc.pid)
        _kill_quietly(proc.pid, signal.SIGTERM)
        try:
            out, err = proc.communicate(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            _kill_quietly(proc.pid, signal.SIGKILL)
            out, err = proc.communicate(timeout=STOP_TIMEOUT)
        for pid in family:
            if pid_alive(pid):
                _kill_quietly(pid, signal.SIGKILL)
    return CliResult(
        proc.returncode,
        out.decode("utf-8", "replace"),
        err.decode("utf-8", "replace"),
        timed_out,
    )


# --------------------------------------------------------------------------- raw HTTP


class ProtocolError(Exception):
    """The server sent bytes that are not a valid HTTP/1.x response."""


class IncompleteResponse(ProtocolError):
    """The connection ended in the middle of a response."""

    def __init__(self, msg: str, response: "HTTPResponse | None" = None, partial: bytes = b""):
        super().__init__(msg)
        self.response = response
        self.partial = partial


TOKEN_RE = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
STATUS_RE = re.compile(r"^HTTP/(\d)\.(\d) (\d{3})(?: (.*))?$")


@dataclass
class HTTPResponse:
    version: str
    status: int
    reason: str
    headers: list[tuple[str, str]]
    body: bytes = b""
    chunked: bool = False
    trailers: list[tuple[str, str]] = field(default_factory=list)
    interim: list["HTTPResponse"] = field(default_factory=list)
    raw_head: bytes = b""

    def header(self, name: str) -> str | None:
        values = self.header_all(name)
        return ", ".join(values) if values else None

    def header_all(self, name: str) -> list[str]:
        name = name.lower()
        return [v for k, v in self.headers if k.lower() == name]

    def has_token(self, name: str, token: str) -> bool:
        value = self.header(name) or ""
        return token.lower() in [t.strip().lower() for t in value.split(",")]

    @property
    def server_closes(self) -> bool:
        """Whether the response announces that the server closes the connection."""
        if self.has_token("Connection", "close"):
            return True
        if self.version == "1.0":
            return not self.has_token("Connection", "keep-alive")
        return False

    def __repr__(self) -> str:
        return (
            f"<HTTPResponse {self.version} {self.status} {self.reason!r} "
            f"headers={self.headers!r} body={self.body[:200]!r}{'...' if len(self.body) > 200 else ''}>"
        )


def build_request(
    method: str,
    target: str,
    headers: list[tuple[str, str]] | None = None,
    body: bytes = b"",
    *,
    port: int | None = None,
    version: str = "1.1",
    host: bool = True,
    content_length: bool | None = None,
) -> bytes:
    """Bytes of one request. Content-Length is added when there is a body unless the
    caller passes its own framing headers or content_length=False."""
    lines = [f"{method} {target} HTTP/{version}"]
    names = {k.lower() for k, _ in (headers or [])}
    if host and "host" not in names:
        lines.append(f"Host: {HOST}:{port}" if port else f"Host: {HOST}")
    for k, v in headers or []:
        lines.append(f"{k}: {v}")
    if content_length is None:
        content_length = bool(body) and not ({"content-length", "transfer-encoding"} & names)
    if content_length:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def chunked_body(data: bytes, sizes: list[int] | None = None, trailers: str = "", ext: str = "") -> bytes:
    """Encode data with Transfer-Encoding: chunked, split at the given sizes (repeating)."""
    sizes = sizes or [len(data) or 1]
    out, pos, i = [], 0, 0
    while pos < len(data):
        n = sizes[i % len(sizes)]
        i += 1
        piece = data[pos : pos + n]
        pos += n
        out.append(b"%x%s\r\n%s\r\n" % (len(piece), ext.encode(), piece))
    out.append(b"0\r\n" + trailers.encode("latin-1") + b"\r\n")
    return b"".join(out)


class RawHTTP:
    """A client socket plus a strict, minimal HTTP/1.x response reader.

    Responses are read one at a time from a carried-over buffer, so pipelined
    responses are parsed in order and any stray byte makes the next parse fail.
    """

    MAX_HEAD = 256 * 1024

    def __init__(self, port: int, host: str = HOST, timeout: float = SOCKET_TIMEOUT, unix_path: str | None = None):
        self.port = port
        if unix_path is not None:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                self.sock.settimeout(timeout)
                self.sock.connect(unix_path)
            except OSError:
                self.sock.close()  # no descriptor left behind by a failed connect
                raise
        else:
            self.sock = socket.create_connection((host, port), timeout=timeout)
        self.buf = b""
        self.eof = False

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def send(self, data: bytes, tolerate_close: bool = False) -> None:
        """sendall; with tolerate_close, a peer that already answered and closed (e.g. a
        431 before the whole oversized head was sent) is not an error here."""
        try:
            self.sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            if not tolerate_close:
                raise

    def request(self, method: str, target: str, headers=None, body: bytes = b"", **kw) -> "HTTPResponse":
        self.send(build_request(method, target, headers, body, port=self.port, **kw))
        return self.read_response(method=method)

    # ---- low level
    def _recv(self) -> bool:
        """Read more bytes into buf; False at EOF (or reset)."""
        if self.eof:
            return False
        try:
            data = self.sock.recv(65536)
        except ConnectionResetError:
            data = b""
        if not data:
            self.eof = True
            return False
        self.buf += data
        return True

    def _read_line(self, limit: int = MAX_HEAD) -> bytes:
        while b"\r\n" not in self.buf:
            if len(self.buf) > limit:
                raise ProtocolError(f"line longer than {limit} bytes")
            if not self._recv():
                raise IncompleteResponse("connection closed inside a line", partial=self.buf)
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _read_exact(self, n: int) -> bytes:
        while len(self.buf) < n:
            if not self._recv():
                raise IncompleteResponse(
                    f"connection closed after {len(self.buf)} of {n} body bytes", partial=self.buf
                )
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def _read_head(self) -> HTTPResponse:
        while b"\r\n\r\n" not in self.buf:
            if len(self.buf) > self.MAX_HEAD:
                raise ProtocolError("response head too large")
            if not self._recv():
                if not self.buf:
                    raise IncompleteResponse("connection closed before a response")
                raise IncompleteResponse("connection closed inside a response head", partial=self.buf)
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        m = STATUS_RE.match(lines[0])
        if not m:
            raise ProtocolError(f"bad status line {lines[0]!r}")
        headers = []
        for line in lines[1:]:
            if "\n" in line or "\r" in line or "\x00" in line:
                raise ProtocolError(f"control character in header line {line!r}")
            name, sep, value = line.partition(":")
            if not sep or not TOKEN_RE.match(name):
                raise ProtocolError(f"bad header line {line!r}")
            headers.append((name, value.strip(" \t")))
        return HTTPResponse(
            version=f"{m.group(1)}.{m.group(2)}",
            status=int(m.group(3)),
            reason=m.group(4) or "",
            headers=headers,
            raw_head=head,
        )

    def read_response(self, method: str = "GET", return_interim: bool = False) -> HTTPResponse:
        """Read one response. 1xx interim responses are collected into .interim (or
        returned as such when return_interim=True)."""
        interim = []
        while True:
            resp = self._read_head()
            if 100 <= resp.status < 200 and resp.status != 101:
                if return_interim:
                    return resp
                interim.append(resp)
                continue
            break
        resp.interim = interim
        self._read_body(resp, method)
        return resp

    def _read_body(self, resp: HTTPResponse, method: str) -> None:
        if method == "HEAD" or resp.status in (204, 304) or 100 <= resp.status < 200:
            return
        te = [t.strip().lower() for t in (resp.header("Transfer-Encoding") or "").split(",") if t.strip()]
        cls = resp.header_all("Content-Length")
        if te:
            if te[-1] != "chunked":
                raise ProtocolError(f"unsupported transfer-encoding {te!r}")
            if cls:
                raise ProtocolError("response has both Content-Length and Transfer-Encoding")
            resp.chunked = True
            parts = []
            try:
                while True:
                    line = self._read_line(4096).decode("latin-1")
                    size_txt = line.split(";", 1)[0].strip()
                    if not re.fullmatch(r"[0-9a-fA-F]{1,15}", size_txt):
                        raise ProtocolError(f"bad chunk size line {line!r}")
                    size = int(size_txt, 16)
                    if size == 0:
                        break
                    parts.append(self._read_exact(size))
                    if self._read_exact(2) != b"\r\n":
                        raise ProtocolError("chunk data not followed by CRLF")
                while True:
                    line = self._read_line(8192)
                    if not line:
                        break
                    name, _, value = line.decode("latin-1").partition(":")
                    resp.trailers.append((name, value.strip()))
            except IncompleteResponse as e:
                resp.body = b"".join(parts)
                raise IncompleteResponse(str(e), resp, resp.body) from None
            resp.body = b"".join(parts)
            return
        if cls:
            if len(set(cls)) != 1 or not cls[0].isdigit():
                raise ProtocolError(f"bad Content-Length {cls!r}")
            try:
                resp.body = self._read_exact(int(cls[0]))
            except IncompleteResponse as e:
                resp.body = e.partial
                raise IncompleteResponse(str(e), resp, e.partial) from None
            return
        # No framing: the body runs until the server closes the connection.
        resp.body = self.read_until_close()

    def read_response_or_eof(self, method: str = "GET") -> "HTTPResponse | None":
        """The next response, or None when the server closed the connection cleanly first."""
        if not self.buf and not self._recv():
            return None
        return self.read_response(method=method)

    def read_until_close(self) -> bytes:
        while self._recv():
            pass
        data, self.buf = self.buf, b""
        return data

    def wait_closed(self, timeout: float = CLOSE_TIMEOUT) -> bool:
        """True when the server closes the connection (EOF/reset) with no further bytes
        within `timeout`; False when more data arrives or it stays open.

        The test servers run with idle timers far longer than this (see conftest), so a
        close seen here is the behaviour under test, not an idle timeout."""
        if self.buf:
            return False
        previous = self.sock.gettimeout()
        self.sock.settimeout(timeout)
        try:
            got_more = self._recv()
        except socket.timeout:
            return False
        finally:
            self.sock.settimeout(previous)
        return not got_more


def http_get(port: int, target: str, headers=None, method: str = "GET", body: bytes = b"", **kw) -> HTTPResponse:
    """One request on a fresh connection."""
    with RawHTTP(port) as c:
        return c.request(method, target, headers, body, **kw)


def assert_serves(server, target: str = "/hello", expect: bytes | None = b"Hello, world!\n") -> HTTPResponse:
    """The server still answers a fresh request correctly."""
    with RawHTTP(server.port) as c:
        c.send(build_request("GET", target, port=server.port))
        resp = c.read_response()
    assert resp.status == 200, f"server no longer serves {target}: {resp!r}"
    if expect is not None:
        assert resp.body == expect, resp
    return resp


# ---- blocking-route helpers (the /block route of apps/wsgi_app.py) ------------------------


def release(server, token):
    """Lets the /block request with this token finish."""
    server.marker(f"release-{token}").write_text("go")


def server_has_read(client: "RawHTTP") -> bool:
    """True once the server side of this TCP connection has no unread bytes: the worker's
    event loop took (and so parsed and queued) what the client sent. Linux /proc only."""
    local_port = client.sock.getsockname()[1]
    want_local, want_remote = f":{client.port:04X}", f":{local_port:04X}"
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[1].endswith(want_local) and fields[2].endswith(want_remote):
                return int(fields[4].split(":")[1], 16) == 0
    return False


def start_blocked_request(server, token) -> RawHTTP:
    """Send GET /block on its own connection and wait until the app is running it."""
    c = RawHTTP(server.port, timeout=30)
    c.send(build_request("GET", f"/block?token={token}", port=server.port))
    wait_for_file(server.marker(f"started-{token}"), timeout=20)
    return c
