"""Proxies end to end: --forwarded-allow-ips (X-Forwarded-For/-Proto/-Host/-Port and RFC 7239
Forwarded, believed only from trusted peers) and --proxy-protocol (HAProxy's PROXY header,
versions 1 and 2), against the real server process over raw sockets."""

from __future__ import annotations

import json
import socket
import struct

import pytest

from e2e_helpers import (
    APPS_DIR,
    HOST,
    RawHTTP,
    assert_serves,
    build_request,
    run_cli,
    wait_until,
)


# --------------------------------------------------------------------------- helpers


def environ_of(resp) -> dict:
    assert resp.status == 200, resp
    return json.loads(resp.body)["environ"]


def environ_via(port: int, headers=None, prefix: bytes = b"", target: str = "/environ") -> dict:
    """One request on a fresh connection (prefix: bytes sent before it, a PROXY header)."""
    with RawHTTP(port) as c:
        c.send(prefix + build_request("GET", target, headers, port=port))
        return environ_of(c.read_response())


def proxy_v2(command: int, family_protocol: int, addresses: bytes) -> bytes:
    signature = b"\r\n\r\n\x00\r\nQUIT\n"
    return signature + bytes([0x20 | command, family_protocol]) + struct.pack(">H", len(addresses)) + addresses


def proxy_v2_tcp4(src: str, sport: int, dst: str = "127.0.0.1", dport: int = 80) -> bytes:
    addresses = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack(">HH", sport, dport)
    return proxy_v2(1, 0x11, addresses)


def proxy_v2_tcp6(src: str, sport: int, dst: str = "::1", dport: int = 80) -> bytes:
    addresses = (
        socket.inet_pton(socket.AF_INET6, src) + socket.inet_pton(socket.AF_INET6, dst) + struct.pack(">HH", sport, dport)
    )
    return proxy_v2(1, 0x21, addresses)


def access_lines(path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return []


def access_line_for(path, marker: str) -> str:
    """The access log line of the request whose path contains marker (format '%(h)s %(U)s')."""

    def found():
        return next((line for line in access_lines(path) if marker in line), None)

    return wait_until(found, 10, f"an access log line for {marker}")


def assert_closed_without_answer(c: RawHTTP) -> None:
    assert c.wait_closed(), "the server answered or kept the connection open"


# --------------------------------------------------------------------------- servers


@pytest.fixture(scope="module")
def access_log(tmp_path_factory):
    return tmp_path_factory.mktemp("proxies") / "access.log"


@pytest.fixture(scope="module")
def trusting(module_server_factory, access_log):
    """Default --forwarded-allow-ips (127.0.0.1,::1): the test client is a trusted proxy."""
    return module_server_factory.start(
        "wsgi_app:app", ["--access-log", str(access_log), "--access-log-format", "%(h)s %(U)s"]
    )


@pytest.fixture(scope="module")
def distrusting(module_server_factory):
    """--forwarded-allow-ips 10.0.0.0/8: the test client (127.0.0.1) is not trusted."""
    return module_server_factory.start("wsgi_app:app", ["--forwarded-allow-ips", "10.0.0.0/8"])


@pytest.fixture(scope="module")
def proxied(module_server_factory):
    """--proxy-protocol (from the default trusted peers), 1 s to send the header."""
    # The readiness probe is a plain GET, which this server must refuse: no probe.
    return module_server_factory.start(
        "wsgi_app:app", ["--proxy-protocol", "--header-read-timeout", "1"], probe=None
    )


# --------------------------------------------------------------------------- X-Forwarded-*


def test_trusted_peer_x_forwarded_headers_are_believed(trusting, access_log):
    env = environ_via(
        trusting.port,
        [
            ("X-Forwarded-For", "203.0.113.7"),
            ("X-Forwarded-Proto", "https"),
            ("X-Forwarded-Host", "shop.example:8443"),
        ],
        target="/environ/xff-one",
    )
    assert env["REMOTE_ADDR"] == "203.0.113.7"
    assert "REMOTE_PORT" not in env  # not known; the proxy's own port would be wrong
    assert env["wsgi.url_scheme"] == "https"
    assert env["HTTP_HOST"] == "shop.example:8443"
    assert env["SERVER_NAME"] == "shop.example"
    assert env["SERVER_PORT"] == "8443"
    # The headers themselves still reach the app.
    assert env["HTTP_X_FORWARDED_FOR"] == "203.0.113.7"
    assert env["HTTP_X_FORWARDED_PROTO"] == "https"
    # The access log's client address is the believed one.
    assert access_line_for(access_log, "/environ/xff-one") == "203.0.113.7 /environ/xff-one"


def test_forwarded_port_and_scheme_default(trusting):
    env = environ_via(trusting.port, [("X-Forwarded-Proto", "https"), ("X-Forwarded-Host", "shop.example")])
    assert (env["HTTP_HOST"], env["SERVER_NAME"], env["SERVER_PORT"]) == ("shop.example", "shop.example", "443")
    assert env["REMOTE_ADDR"] == "127.0.0.1"  # no X-Forwarded-For: the peer
    env = environ_via(trusting.port, [("X-Forwarded-Port", "8080")])
    assert env["HTTP_HOST"] == f"{HOST}:8080"  # the request's own host, the forwarded port
    assert env["SERVER_PORT"] == "8080"


def test_untrusted_peer_forwarding_headers_stay_plain_headers(distrusting):
    headers = [
        ("X-Forwarded-For", "203.0.113.7"),
        ("X-Forwarded-Proto", "https"),
        ("X-Forwarded-Host", "evil.example"),
        ("X-Forwarded-Port", "443"),
        ("Forwarded", "for=198.51.100.9;proto=https"),
    ]
    with RawHTTP(distrusting.port) as c:
        local_port = c.sock.getsockname()[1]
        env = environ_of(c.request("GET", "/environ", headers))
    assert env["REMOTE_ADDR"] == "127.0.0.1"
    assert env["REMOTE_PORT"] == str(local_port)
    assert env["wsgi.url_scheme"] == "http"
    assert env["HTTP_HOST"] == f"{HOST}:{distrusting.port}"
    assert env["SERVER_PORT"] == str(distrusting.port)
    assert env["HTTP_X_FORWARDED_FOR"] == "203.0.113.7"
    assert env["HTTP_FORWARDED"] == "for=198.51.100.9;proto=https"


def test_x_forwarded_for_is_walked_from_the_right(trusting):
    def client(xff: str) -> str:
        return environ_via(trusting.port, [("X-Forwarded-For", xff)])["REMOTE_ADDR"]

    # What a client writes itself (6.6.6.6) is left of what the trusted proxies appended.
    assert client("6.6.6.6, 203.0.113.7, 127.0.0.1") == "203.0.113.7"
    assert client("6.6.6.6, 203.0.113.7") == "203.0.113.7"
    # Every hop a trusted proxy: the leftmost.
    assert client("127.0.0.1, ::1") == "127.0.0.1"
    # IPv6 and ports.
    assert client("[2001:db8::17]:4711") == "2001:db8::17"
    # Several fields are one list.
    env = environ_via(trusting.port, [("X-Forwarded-For", "6.6.6.6, 203.0.113.8"), ("X-Forwarded-For", "127.0.0.1")])
    assert env["REMOTE_ADDR"] == "203.0.113.8"


def test_forwarded_header_wins_over_x_forwarded(trusting):
    env = environ_via(
        trusting.port,
        [
            ("X-Forwarded-For", "198.51.100.1"),
            ("X-Forwarded-Proto", "http"),
            ("Forwarded", 'for="[2001:db8:cafe::17]:4711";proto=https;host=example.com, for=127.0.0.1'),
        ],
    )
    assert env["REMOTE_ADDR"] == "2001:db8:cafe::17"
    assert env["REMOTE_PORT"] == "4711"
    assert env["wsgi.url_scheme"] == "https"
    assert env["HTTP_HOST"] == "example.com"
    assert env["SERVER_PORT"] == "443"
    # Obfuscated: the peer's address stays, the element's proto still applies.
    env = environ_via(trusting.port, [("Forwarded", 'for="_hidden";proto=https')])
    assert env["REMOTE_ADDR"] == "127.0.0.1"
    assert env["wsgi.url_scheme"] == "https"


@pytest.mark.parametrize(
    "headers",
    [
        [("X-Forwarded-For", "not-an-address")],
        [("X-Forwarded-For", "1.2.3.4, <script>")],
        [("X-Forwarded-For", "999.1.1.1")],
        [("X-Forwarded-For", ",,,")],
        [("X-Forwarded-For", "1.2.3.4:99999")],
        [("X-Forwarded-Proto", "gopher")],
        [("X-Forwarded-Host", "a b")],
        [("X-Forwarded-Host", "u@host")],
        [("X-Forwarded-Port", "70000")],
        [("X-Forwarded-Port", "-1")],
        [("Forwarded", "for=2001:db8::1")],
        [("Forwarded", 'for="1.2.3.4')],
        [("Forwarded", "for=1.2.3.4;for=5.6.7.8")],
        [("Forwarded", "garbage")],
        [("Forwarded", "for=1.2.3.4"), ("Forwarded", ";;=;")],
        [("X-Forwarded-For", "1.2.3.4"), ("Forwarded", "for")],  # malformed Forwarded: neither
    ],
    ids=lambda h: "|".join(f"{k}:{v}" for k, v in h),
)
def test_malformed_values_are_ignored(trusting, headers):
    env = environ_via(trusting.port, headers)
    assert env["REMOTE_ADDR"] == "127.0.0.1"
    assert env["wsgi.url_scheme"] == "http"
    assert env["HTTP_HOST"] == f"{HOST}:{trusting.port}"
    assert env["SERVER_PORT"] == str(trusting.port)
    assert_serves(trusting)


def test_forwarding_is_per_request_on_a_kept_alive_connection(trusting):
    with RawHTTP(trusting.port) as c:
        local_port = c.sock.getsockname()[1]
        first = environ_of(c.request("GET", "/environ", [("X-Forwarded-For", "203.0.113.7"), ("X-Forwarded-Proto", "https")]))
        second = environ_of(c.request("GET", "/environ"))
    assert (first["REMOTE_ADDR"], first["wsgi.url_scheme"]) == ("203.0.113.7", "https")
    assert (second["REMOTE_ADDR"], second["REMOTE_PORT"], second["wsgi.url_scheme"]) == (
        "127.0.0.1",
        str(local_port),
        "http",
    )


def test_unix_socket_peers_are_trusted_by_default(server_factory, tmp_path):
    path = tmp_path / "app.sock"
    server = server_factory.start(
        argv_override=["--uds", str(path), "--working-dir", str(APPS_DIR), "wsgi_app:app"], wait=False
    )

    def answers():
        assert server.alive(), f"server exited:\n{server.log_tail()}"
        try:
            RawHTTP(0, unix_path=str(path)).close()
            return True
        except OSError:
            return False

    wait_until(answers, 30, "the unix socket to accept connections")
    with RawHTTP(0, unix_path=str(path)) as c:
        env = environ_of(c.request("GET", "/environ", [("X-Forwarded-For", "203.0.113.7"), ("X-Forwarded-Port", "8443")]))
    assert env["REMOTE_ADDR"] == "203.0.113.7"
    assert env["SERVER_PORT"] == "8443"


# --------------------------------------------------------------------------- --proxy-protocol


def test_proxy_protocol_v1_sets_the_client_address(proxied):
    env = environ_via(proxied.port, prefix=b"PROXY TCP4 192.0.2.1 192.0.2.11 56324 443\r\n")
    assert (env["REMOTE_ADDR"], env["REMOTE_PORT"]) == ("192.0.2.1", "56324")
    env = environ_via(proxied.port, prefix=b"PROXY TCP6 2001:db8::1 2001:db8::2 4711 443\r\n")
    assert (env["REMOTE_ADDR"], env["REMOTE_PORT"]) == ("2001:db8::1", "4711")
    # UNKNOWN keeps the socket's address.
    with RawHTTP(proxied.port) as c:
        local_port = c.sock.getsockname()[1]
        c.send(b"PROXY UNKNOWN\r\n" + build_request("GET", "/environ", port=proxied.port))
        env = environ_of(c.read_response())
    assert (env["REMOTE_ADDR"], env["REMOTE_PORT"]) == ("127.0.0.1", str(local_port))


def test_proxy_protocol_v2_sets_the_client_address(proxied):
    env = environ_via(proxied.port, prefix=proxy_v2_tcp4("198.51.100.20", 40000))
    assert (env["REMOTE_ADDR"], env["REMOTE_PORT"]) == ("198.51.100.20", "40000")
    env = environ_via(proxied.port, prefix=proxy_v2_tcp6("2001:db8::20", 40001))
    assert (env["REMOTE_ADDR"], env["REMOTE_PORT"]) == ("2001:db8::20", "40001")
    # LOCAL (a proxy's health check) keeps the socket's address.
    env = environ_via(proxied.port, prefix=proxy_v2(0, 0x00, b""))
    assert env["REMOTE_ADDR"] == "127.0.0.1"


def test_proxy_protocol_header_split_across_writes_and_kept_for_the_connection(proxied):
    header = proxy_v2_tcp4("198.51.100.21", 40002)
    with RawHTTP(proxied.port) as c:
        for i in range(0, len(header), 5):  # a few bytes at a time
            c.send(header[i : i + 5])
        first = environ_of(c.request("GET", "/environ"))
        # The PROXY source is the next hop out: it is not a trusted proxy, so its
        # X-Forwarded-For is a plain header.
        second = environ_of(c.request("GET", "/environ", [("X-Forwarded-For", "203.0.113.7")]))
    assert first["REMOTE_ADDR"] == second["REMOTE_ADDR"] == "198.51.100.21"
    assert second["HTTP_X_FORWARDED_FOR"] == "203.0.113.7"
    # A PROXY source that is itself trusted (127.0.0.1 here) may forward.
    env = environ_via(
        proxied.port, [("X-Forwarded-For", "203.0.113.7")], prefix=b"PROXY TCP4 127.0.0.1 127.0.0.1 1 2\r\n"
    )
    assert env["REMOTE_ADDR"] == "203.0.113.7"


@pytest.mark.parametrize(
    "start",
    [
        b"GET /environ HTTP/1.1\r\nHost: x\r\n\r\n",  # no header at all
        b"PROXY TCP4 192.0.2.1 192.0.2.11 56324\r\n",  # a field missing
        b"PROXY TCP4 192.0.2.01 192.0.2.11 1 2\r\n",  # leading zero
        b"PROXY TCP4 192.0.2.1 192.0.2.11 1 2\n",  # bare LF
        b"PROXY UNKNOWN " + b"x" * 120,  # no CRLF within 107 bytes
        b"\r\n\r\n\x00\r\nQUIT\n\x22\x11\x00\x0c" + b"\x00" * 12,  # v2, unknown command
        b"\r\n\r\n\x00\r\nQUIT\n\x21\x11\xff\xff",  # v2, longer than 4096 bytes
        b"\x16\x03\x01\x00\xa5\x01\x00",  # a TLS ClientHello
    ],
    ids=["plain-http", "missing-field", "leading-zero", "bare-lf", "too-long-v1", "v2-command", "v2-length", "tls"],
)
def test_proxy_protocol_bad_start_closes_the_connection(proxied, start):
    with RawHTTP(proxied.port) as c:
        c.send(start, tolerate_close=True)
        assert_closed_without_answer(c)
    env = environ_via(proxied.port, prefix=b"PROXY TCP4 192.0.2.2 192.0.2.11 1000 443\r\n")
    assert env["REMOTE_ADDR"] == "192.0.2.2"
    proxied.wait_for_log("connection from 127.0.0.1 closed: ")


def test_proxy_protocol_header_must_arrive_in_time(proxied):
    # --header-read-timeout 1: half a header, then nothing.
    with RawHTTP(proxied.port) as c:
        c.send(b"PROXY TCP4 192.0.2.1 ")
        assert_closed_without_answer(c)
    proxied.wait_for_log("its PROXY protocol header did not arrive in time")
    env = environ_via(proxied.port, prefix=b"PROXY TCP4 192.0.2.3 192.0.2.11 1000 443\r\n")
    assert env["REMOTE_ADDR"] == "192.0.2.3"


def test_proxy_protocol_only_from_trusted_peers(server_factory):
    server = server_factory.start(
        "wsgi_app:app", ["--proxy-protocol", "--forwarded-allow-ips", "10.0.0.0/8"], probe=None
    )
    for _ in range(2):
        with RawHTTP(server.port) as c:
            c.send(b"PROXY TCP4 192.0.2.1 192.0.2.11 56324 443\r\n" + build_request("GET", "/hello", port=server.port), tolerate_close=True)
            assert_closed_without_answer(c)
    server.wait_for_log("headers are accepted only from --forwarded-allow-ips")
    assert server.alive()


# --------------------------------------------------------------------------- option checks


@pytest.mark.parametrize(
    "value, words",
    [
        ("10.0.0.1/8", "bits set after the /8 prefix (the range starts at 10.0.0.0/8)"),
        ("10.0.0.0/33", "prefix length is not 0 to 32"),
        ("127.0.0.1,nginx", "'nginx' that is not an IP address"),
        ("127.0.0.1,,::1", "has an empty entry"),
    ],
)
def test_bad_forwarded_allow_ips_exit_2_naming_the_option(value, words):
    result = run_cli(["--forwarded-allow-ips", value, "wsgi_app:app"])
    assert result.returncode == 2, result
    assert f"--forwarded-allow-ips: value '{value}'" in result.stderr and words in result.stderr, result.stderr
    result = run_cli(["wsgi_app:app"], env={"APPSERVER_FORWARDED_ALLOW_IPS": value})
    assert result.returncode == 2, result
    assert "(from APPSERVER_FORWARDED_ALLOW_IPS)" in result.stderr, result.stderr


def test_proxy_protocol_flag_from_the_environment_takes_a_boolean():
    result = run_cli(["wsgi_app:app"], env={"APPSERVER_PROXY_PROTOCOL": "maybe"})
    assert result.returncode == 2, result
    assert "--proxy-protocol" in result.stderr, result.stderr
