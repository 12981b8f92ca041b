"""PEP 3333 environ: required keys, types, CGI variables, path/query/header mapping."""

import json
import re

import pytest
import requests

from e2e_helpers import HOST, RawHTTP, assert_serves, http_get

REQUIRED_CGI = ["REQUEST_METHOD", "SCRIPT_NAME", "PATH_INFO", "SERVER_NAME", "SERVER_PORT", "SERVER_PROTOCOL"]


def environ_of(resp):
    assert resp.status == 200, resp
    return json.loads(resp.body)


def get_environ(port, target="/environ", headers=None, method="GET", body=b"", **kw):
    return environ_of(http_get(port, target, headers, method=method, body=body, **kw))


def test_required_keys_and_types(app_server):
    info = get_environ(app_server.port, "/environ?x=1")
    env, types = info["environ"], info["types"]
    assert info["environ_is_dict"], "environ must be a builtin dict"
    for key in REQUIRED_CGI + ["QUERY_STRING"]:
        assert key in env, f"missing {key}"
        assert types[key] == "str", f"{key} is {types[key]}, must be a native str"
    # Every CGI-style key (no dot) must be a native string.
    for key, t in types.items():
        if "." not in key:
            assert t == "str", f"CGI key {key} has type {t}"
    assert env["REQUEST_METHOD"] == "GET"
    assert env["SERVER_PROTOCOL"] == "HTTP/1.1"
    assert env["SERVER_PORT"] == str(app_server.port)
    assert env["SERVER_NAME"]
    assert env["wsgi.version"] == [1, 0] and types["wsgi.version"] == "tuple"
    assert env["wsgi.url_scheme"] == "http"
    for key in ("wsgi.multithread", "wsgi.multiprocess", "wsgi.run_once", "wsgi.input_terminated"):
        assert types.get(key) == "bool", f"{key} must be a bool, got {types.get(key)}"
    assert env["wsgi.run_once"] is False
    assert env["wsgi.input_terminated"] is True
    assert all(info["input_methods"].values()), info["input_methods"]
    assert all(info["errors_methods"].values()), info["errors_methods"]
    assert info["file_wrapper_callable"]
    assert env.get("REMOTE_ADDR") == "127.0.0.1"


def test_multithread_flag_with_several_blocking_threads(app_server):
    # app_server runs --blocking-threads 4: the app may be called from several threads.
    env = get_environ(app_server.port)["environ"]
    assert env["wsgi.multithread"] is True
    assert env["wsgi.multiprocess"] is False  # one worker


def test_wsgiref_validator_accepts_environ(app_server):
    # wsgiref.validate raises inside the app on any PEP 3333 environ violation -> 500.
    r = requests.get(f"{app_server.url}/validate", timeout=10)
    assert r.status_code == 200, r.text
    assert r.text.startswith("valid:")
    r = requests.post(f"{app_server.url}/validate", data=b"payload", timeout=10)
    assert r.status_code == 200, r.text


def test_get_has_no_content_type_or_length(app_server):
    env = get_environ(app_server.port)["environ"]
    for key in ("CONTENT_TYPE", "CONTENT_LENGTH", "HTTP_CONTENT_TYPE", "HTTP_CONTENT_LENGTH"):
        assert key not in env, f"{key} present for a request that did not send it: {env.get(key)!r}"


def test_content_type_and_length_without_http_prefix(app_server):
    env = get_environ(
        app_server.port, "/environ", [("Content-Type", "application/x-test")], method="POST", body=b"12345"
    )["environ"]
    assert env["CONTENT_TYPE"] == "application/x-test"
    assert env["CONTENT_LENGTH"] == "5"
    assert "HTTP_CONTENT_TYPE" not in env
    assert "HTTP_CONTENT_LENGTH" not in env


@pytest.mark.parametrize(
    "target, path_bytes",
    [
        ("/environ/plain", b"/environ/plain"),
        ("/environ/a%20b", b"/environ/a b"),
        ("/environ/caf%C3%A9", b"/environ/caf\xc3\xa9"),  # UTF-8 bytes, exposed as latin-1
        ("/environ/%FFx", b"/environ/\xffx"),
        ("/environ/a%2Fb", b"/environ/a/b"),
        ("/environ/%7euser", b"/environ/~user"),
        ("/environ/a+b", b"/environ/a+b"),
        ("/environ/%25", b"/environ/%"),
        ("/environ/", b"/environ/"),
    ],
)
def test_path_info_is_latin1_of_percent_decoded_bytes(app_server, target, path_bytes):
    env = get_environ(app_server.port, target)["environ"]
    assert env["PATH_INFO"].encode("latin-1") == path_bytes
    assert env["SCRIPT_NAME"] == ""


@pytest.mark.parametrize(
    "query",
    ["a=1&b=2", "q=caf%C3%A9&x=%20y+z", "flag&empty=&=v", "a=1;b=2", "%zz", ""],
)
def test_query_string_is_raw(app_server, query):
    env = get_environ(app_server.port, f"/environ?{query}")["environ"]
    assert env["QUERY_STRING"] == query


def test_no_query_string_is_empty(app_server):
    env = get_environ(app_server.port, "/environ/noquery")["environ"]
    assert env.get("QUERY_STRING", "") == ""
    assert env["PATH_INFO"] == "/environ/noquery"


def test_question_mark_in_query_kept(app_server):
    env = get_environ(app_server.port, "/environ?a=1?b=2")["environ"]
    assert env["QUERY_STRING"] == "a=1?b=2"


def test_request_methods(app_server):
    for method in ("GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"):
        env = get_environ(app_server.port, "/environ", method=method)["environ"]
        assert env["REQUEST_METHOD"] == method


def test_http_headers_mapping(app_server):
    env = get_environ(
        app_server.port,
        "/environ",
        [("X-Custom-Header", "value-1"), ("Accept", "text/plain"), ("user-agent", "e2e-agent/1.0")],
    )["environ"]
    assert env["HTTP_X_CUSTOM_HEADER"] == "value-1"
    assert env["HTTP_ACCEPT"] == "text/plain"
    assert env["HTTP_USER_AGENT"] == "e2e-agent/1.0"
    assert env["HTTP_HOST"] == f"{HOST}:{app_server.port}"


def test_repeated_headers_joined_with_comma_space(app_server):
    env = get_environ(
        app_server.port, "/environ", [("X-Multi", "a"), ("X-Other", "o"), ("X-Multi", "b"), ("x-multi", "c")]
    )["environ"]
    assert env["HTTP_X_MULTI"] == "a, b, c"
    assert env["HTTP_X_OTHER"] == "o"


def test_headers_with_underscore_are_dropped(app_server):
    # X_Auth_User would otherwise collide with X-Auth-User (header spoofing through proxies).
    env = get_environ(
        app_server.port,
        "/environ",
        [("X-Auth-User", "legit"), ("X_Auth_User", "spoofed"), ("X_Only_Underscore", "1")],
    )["environ"]
    assert env["HTTP_X_AUTH_USER"] == "legit"
    assert "HTTP_X_ONLY_UNDERSCORE" not in env
    assert all("spoofed" not in str(v) for v in env.values())


def test_header_value_whitespace_trimmed(app_server):
    with RawHTTP(app_server.port) as c:
        c.send(
            b"GET /environ HTTP/1.1\r\nHost: x\r\nX-Padded: \t  padded value \t \r\n\r\n"
        )
        env = environ_of(c.read_response())["environ"]
    assert env["HTTP_X_PADDED"] == "padded value"


def test_empty_and_tab_header_values(app_server):
    with RawHTTP(app_server.port) as c:
        c.send(b"GET /environ HTTP/1.1\r\nHost: x\r\nX-Empty:\r\nX-Tab: a\tb\r\n\r\n")
        env = environ_of(c.read_response())["environ"]
    assert env["HTTP_X_EMPTY"] == ""
    assert env["HTTP_X_TAB"] == "a\tb"


def test_non_ascii_header_value_is_latin1_str(app_server):
    with RawHTTP(app_server.port) as c:
        c.send(b"GET /environ HTTP/1.1\r\nHost: x\r\nX-Latin: caf\xe9 \xff\r\n\r\n")
        env = environ_of(c.read_response())["environ"]
    assert env["HTTP_X_LATIN"] == "caf\xe9 \xff"


def test_http10_protocol(app_server):
    env = get_environ(app_server.port, "/environ", version="1.0")["environ"]
    assert env["SERVER_PROTOCOL"] == "HTTP/1.0"


def test_absolute_form_target(app_server):
    with RawHTTP(app_server.port) as c:
        c.send(
            f"GET http://{HOST}:{app_server.port}/environ/abs?q=1 HTTP/1.1\r\nHost: {HOST}:{app_server.port}\r\n\r\n".encode()
        )
        env = environ_of(c.read_response())["environ"]
    assert env["PATH_INFO"] == "/environ/abs"
    assert env["QUERY_STRING"] == "q=1"


def test_invalid_percent_escape_is_answered(app_server):
    resp = http_get(app_server.port, "/environ/bad%zzescape")
    # Either rejected clearly or passed through undecoded; never a hang or a dropped connection.
    if resp.status == 200:
        assert "%zz" in json.loads(resp.body)["environ"]["PATH_INFO"]
    else:
        assert resp.status == 400, resp
    assert_serves(app_server)


def test_wsgi_errors_reach_server_log(app_server, token):
    r = requests.get(f"{app_server.url}/errors-log", params={"msg": token}, timeout=10)
    assert r.status_code == 200
    log = app_server.wait_for_log(f"wsgi.errors writelines 2: {token}")
    assert f"wsgi.errors write: {token}" in log
    assert f"wsgi.errors writelines 1: {token}" in log
    # The app's text has no level the server knows: labelled as the app's, not [error].
    line = next(ln for ln in log.splitlines() if f"wsgi.errors write: {token}" in ln)
    # ... and carries the id of the request it was written during.
    assert re.search(r"\] \[wsgi\.errors\] \[request_id=[0-9a-f]{32}\] wsgi\.errors write: ", line), line
    assert "[error]" not in line, line
    # ... while the server's own lines keep their levels.
    assert "] [info] worker 0 ready" in log, log


def test_wsgi_errors_are_not_filtered_by_log_level(server_factory, token):
    server = server_factory.start(args=["--log-level", "critical"])
    http_get(server.port, f"/errors-log?msg={token}")
    server.wait_for_log(f"wsgi.errors write: {token}")


def test_wsgi_errors_partial_line_is_logged_with_its_own_request(app_server, token):
    """A last line without a newline is logged when its request ends, on a line of its own,
    not held until (and joined to) whatever the next request writes."""
    r = requests.get(f"{app_server.url}/errors-log", params={"msg": f"{token}-a", "partial": "1"}, timeout=10)
    assert r.status_code == 200
    log = app_server.wait_for_log(f"partial line without a newline: {token}-a")
    line = next(ln for ln in log.splitlines() if f"partial line without a newline: {token}-a" in ln)
    assert line.endswith(f"partial line without a newline: {token}-a"), line


# ---- SCRIPT_NAME / --url-path-prefix


@pytest.fixture(scope="module")
def prefixed_server(module_server_factory):
    return module_server_factory.start("wsgi_app:app", ["--url-path-prefix", "/prefix"], probe="/prefix/hello")


def test_prefix_sets_script_name(prefixed_server):
    env = get_environ(prefixed_server.port, "/prefix/environ/x?y=1")["environ"]
    assert env["SCRIPT_NAME"] == "/prefix"
    assert env["PATH_INFO"] == "/environ/x"
    assert env["QUERY_STRING"] == "y=1"


def test_prefix_root(prefixed_server):
    for target in ("/prefix", "/prefix/"):
        env = get_environ(prefixed_server.port, target)["environ"]
        assert env["SCRIPT_NAME"] == "/prefix"
        assert env["PATH_INFO"] in ("", "/")
        assert env["PATH_INFO"] == target[len("/prefix") :]


def test_prefix_with_encoded_path(prefixed_server):
    env = get_environ(prefixed_server.port, "/prefix/environ/caf%C3%A9")["environ"]
    assert env["SCRIPT_NAME"] == "/prefix"
    assert env["PATH_INFO"].encode("latin-1") == b"/environ/caf\xc3\xa9"


def test_prefix_matches_whole_segments_only(prefixed_server):
    resp = http_get(prefixed_server.port, "/prefixfoo/environ")
    if resp.status == 200:
        env = json.loads(resp.body)["environ"]
        assert not (env["SCRIPT_NAME"] == "/prefix" and env["PATH_INFO"] == "foo/environ"), env
        assert env["PATH_INFO"] == "" or env["PATH_INFO"].startswith("/")
    else:
        assert 400 <= resp.status < 500, resp
    assert_serves(prefixed_server, "/prefix/hello")
