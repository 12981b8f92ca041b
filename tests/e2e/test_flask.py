"""A real Flask application behind appserver."""

import hashlib
import random

import httpx
import pytest
import requests

from e2e_helpers import RawHTTP


@pytest.fixture(scope="module")
def flask_server(module_server_factory):
    return module_server_factory.start("flask_app:app", ["--workers", "1", "--blocking-threads", "2"], probe="/")


@pytest.fixture(scope="module")
def prefixed_flask_server(module_server_factory):
    return module_server_factory.start("flask_app:app", ["--url-path-prefix", "/api"], probe="/api/")


def test_index(flask_server):
    r = requests.get(f"{flask_server.url}/", timeout=10)
    assert r.status_code == 200
    assert r.text == "flask ok"


def test_json_round_trip(flask_server):
    payload = {"name": "caf\u00e9", "n": [1, 2, 3], "nested": {"ok": True}}
    r = requests.post(f"{flask_server.url}/json", json=payload, timeout=10)
    assert r.status_code == 200
    assert r.json() == {"received": payload, "content_type": "application/json"}


def test_form_post(flask_server):
    r = requests.post(f"{flask_server.url}/form", data=[("a", "1"), ("a", "2"), ("b", "x y")], timeout=10)
    assert r.json() == {"fields": {"a": ["1", "2"], "b": ["x y"]}}


@pytest.mark.parametrize("size", [10, 2 * 1024 * 1024 + 3])
def test_file_upload(flask_server, size):
    content = random.Random(size).randbytes(size)
    r = requests.post(
        f"{flask_server.url}/upload",
        files={"file": ("data.bin", content)},
        data={"note": "hello"},
        timeout=30,
    )
    assert r.status_code == 200, r.text[:300]
    assert r.json() == {
        "filename": "data.bin",
        "size": size,
        "sha256": hashlib.sha256(content).hexdigest(),
        "note": "hello",
    }


def test_streamed_response(flask_server):
    with RawHTTP(flask_server.port) as c:
        resp = c.request("GET", "/stream?n=20")
    assert resp.status == 200
    assert resp.chunked
    assert resp.body == "".join(f"line {i} of 20\n" for i in range(20)).encode()


def test_streamed_response_with_httpx(flask_server):
    with httpx.Client(timeout=10) as client:
        with client.stream("GET", f"{flask_server.url}/stream", params={"n": 3}) as r:
            text = "".join(r.iter_text())
    assert text == "line 0 of 3\nline 1 of 3\nline 2 of 3\n"


def test_session_cookie(flask_server):
    with requests.Session() as s:
        assert s.get(f"{flask_server.url}/session/set", params={"v": "remembered"}, timeout=10).text == "stored"
        assert s.get(f"{flask_server.url}/session/get", timeout=10).json() == {"value": "remembered"}


def test_redirect(flask_server):
    r = requests.get(f"{flask_server.url}/redirect", allow_redirects=False, timeout=10)
    assert r.status_code == 302
    assert r.headers["Location"] == "/"


def test_error_is_500_and_logged_via_wsgi_errors(flask_server):
    r = requests.get(f"{flask_server.url}/error", timeout=10)
    assert r.status_code == 500
    assert "51c2" not in r.text
    # Flask logs unhandled exceptions to environ["wsgi.errors"].
    log = flask_server.wait_for_log("ZeroDivisionError: flask route failure marker 51c2")
    assert "Traceback" in log
    assert requests.get(f"{flask_server.url}/", timeout=10).status_code == 200


def test_not_found(flask_server):
    assert requests.get(f"{flask_server.url}/nope", timeout=10).status_code == 404


def test_url_for_under_prefix(prefixed_flask_server):
    base = prefixed_flask_server.url
    info = requests.get(f"{base}/api/urls", timeout=10).json()
    assert info["script_root"] == "/api"
    assert info["path"] == "/urls"
    assert info["index"] == "/api/"
    assert info["external"] == f"{base}/api/"
    r = requests.get(f"{base}/api/redirect", allow_redirects=False, timeout=10)
    assert r.headers["Location"] == "/api/"
