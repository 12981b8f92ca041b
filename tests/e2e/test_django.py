"""A real Django project (SQLite, ORM, forms with CSRF, uploads, admin) behind appserver."""

import hashlib
import random
import re
import subprocess
import sys
import threading

import pytest
import requests

from e2e_helpers import APPS_DIR, RawHTTP, child_env

DJANGO_DIR = APPS_DIR / "djproject"
CSRF_RE = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')
ADMIN_PASSWORD = "e2e-admin-pass-4821"

pytestmark = pytest.mark.timeout(120)


def manage(env, *args):
    result = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=DJANGO_DIR,
        env=child_env(env),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, f"manage.py {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return result


@pytest.fixture(scope="module")
def django_env(tmp_path_factory):
    base = tmp_path_factory.mktemp("django")
    env = {
        "DJANGO_SETTINGS_MODULE": "djproject.settings",
        "E2E_DJANGO_DB": str(base / "db.sqlite3"),
        "E2E_DJANGO_MEDIA": str(base / "media"),
    }
    manage(env, "migrate", "--noinput")
    manage(
        {**env, "DJANGO_SUPERUSER_PASSWORD": ADMIN_PASSWORD},
        "createsuperuser",
        "--noinput",
        "--username",
        "admin",
        "--email",
        "admin@example.com",
    )
    return env


@pytest.fixture(scope="module")
def django_server(module_server_factory, django_env):
    return module_server_factory.start(
        "djproject.wsgi:application",
        ["--workers", "2", "--blocking-threads", "2"],
        env=django_env,
        working_dir=DJANGO_DIR,
        cwd=DJANGO_DIR,
        probe="/",
    )


@pytest.fixture(scope="module")
def prefixed_django_server(module_server_factory, django_env):
    return module_server_factory.start(
        "djproject.wsgi:application",
        ["--url-path-prefix", "/site"],
        env=django_env,
        working_dir=DJANGO_DIR,
        cwd=DJANGO_DIR,
        probe="/site/",
    )


def csrf_token(session, url):
    r = session.get(url, timeout=10)
    assert r.status_code == 200, r.text[:500]
    m = CSRF_RE.search(r.text)
    assert m, "no csrfmiddlewaretoken in the form"
    assert "csrftoken" in session.cookies
    return m.group(1)


def create_item(base, name, price):
    with requests.Session() as s:
        token = csrf_token(s, f"{base}/items/new/")
        return s.post(
            f"{base}/items/new/",
            data={"csrfmiddlewaretoken": token, "name": name, "price_cents": str(price)},
            allow_redirects=False,
            timeout=20,
        )


def test_index(django_server):
    r = requests.get(f"{django_server.url}/", timeout=10)
    assert r.status_code == 200
    assert r.text == "django ok"


def test_form_post_with_csrf_and_orm_query(django_server, token):
    base = django_server.url
    names = {f"{token}-cheap": 100, f"{token}-mid": 250, f"{token}-dear": 900}
    for name, price in names.items():
        r = create_item(base, name, price)
        assert r.status_code == 302, r.text[:500]
        assert r.headers["Location"] == "/items/"
    data = requests.get(f"{base}/items/", params={"min_price": 250}, timeout=10).json()
    mine = [i for i in data["items"] if i["name"].startswith(token)]
    assert [i["name"] for i in mine] == sorted([f"{token}-mid", f"{token}-dear"])
    assert all(i["price_cents"] >= 250 for i in data["items"])


def test_post_without_csrf_token_is_forbidden(django_server):
    r = requests.post(
        f"{django_server.url}/items/new/", data={"name": "nope", "price_cents": "1"}, allow_redirects=False, timeout=10
    )
    assert r.status_code == 403


def test_invalid_form_is_400(django_server, token):
    r = create_item(django_server.url, f"{token}-bad", "not-a-number")
    assert r.status_code == 400
    assert "errorlist" in r.text


def test_concurrent_form_posts(django_server, token):
    results = {}

    def worker(i):
        try:
            results[i] = create_item(django_server.url, f"{token}-c{i}", i + 1).status_code
        except Exception as e:  # noqa: BLE001
            results[i] = repr(e)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert results == {i: 302 for i in range(10)}
    data = requests.get(f"{django_server.url}/items/", timeout=10).json()
    assert len([i for i in data["items"] if i["name"].startswith(f"{token}-c")]) == 10


@pytest.mark.parametrize("size, handler", [(1000, "InMemoryUploadedFile"), (3 * 1024 * 1024 + 5, "TemporaryUploadedFile")])
def test_file_upload(django_server, token, size, handler):
    content = random.Random(size).randbytes(size)
    with requests.Session() as s:
        csrf = csrf_token(s, f"{django_server.url}/upload/")
        r = s.post(
            f"{django_server.url}/upload/",
            data={"csrfmiddlewaretoken": csrf, "note": f"note {token}"},
            files={"file": (f"{token}.bin", content, "application/octet-stream")},
            timeout=30,
        )
    assert r.status_code == 200, r.text[:500]
    info = r.json()
    assert info["size"] == size
    assert info["stored_size"] == size
    assert info["sha256"] == hashlib.sha256(content).hexdigest()
    assert info["note"] == f"note {token}"
    assert info["handler"] == handler


def test_chunked_file_upload_reaches_django(django_server, token):
    """Django reads CONTENT_LENGTH only (its ticket #35838): a chunked upload would reach
    it empty. With --request-buffering on (the default) the server reads the body whole
    first and hands it over with its length, as NGINX in front would."""
    content = random.Random(7).randbytes(300_000)
    with requests.Session() as s:
        csrf = csrf_token(s, f"{django_server.url}/upload/")
        prepared = requests.Request(
            "POST",
            f"{django_server.url}/upload/",
            data={"csrfmiddlewaretoken": csrf, "note": f"chunked {token}"},
            files={"file": (f"{token}.bin", content, "application/octet-stream")},
        ).prepare()
        body = prepared.body

        def pieces():  # a generator body: requests sends it with Transfer-Encoding: chunked
            for at in range(0, len(body), 50_000):
                yield body[at : at + 50_000]

        r = s.post(
            f"{django_server.url}/upload/",
            data=pieces(),
            headers={"Content-Type": prepared.headers["Content-Type"]},
            timeout=30,
        )
    assert r.request.headers.get("Transfer-Encoding") == "chunked"
    assert r.status_code == 200, r.text[:500]
    info = r.json()
    assert info["size"] == len(content)
    assert info["sha256"] == hashlib.sha256(content).hexdigest()
    assert info["note"] == f"chunked {token}"


def test_admin_login_page(django_server):
    r = requests.get(f"{django_server.url}/admin/login/", timeout=10)
    assert r.status_code == 200
    assert "Django administration" in r.text or "Django site admin" in r.text
    assert 'name="username"' in r.text and 'name="password"' in r.text


def test_admin_requires_login(django_server):
    r = requests.get(f"{django_server.url}/admin/", allow_redirects=False, timeout=10)
    assert r.status_code == 302
    assert r.headers["Location"] == "/admin/login/?next=/admin/"


def test_admin_login_flow(django_server):
    with requests.Session() as s:
        csrf = csrf_token(s, f"{django_server.url}/admin/login/")
        r = s.post(
            f"{django_server.url}/admin/login/?next=/admin/",
            data={"csrfmiddlewaretoken": csrf, "username": "admin", "password": ADMIN_PASSWORD, "next": "/admin/"},
            allow_redirects=False,
            timeout=10,
        )
        assert r.status_code == 302, r.text[:1000]
        assert r.headers["Location"] == "/admin/"
        r = s.get(f"{django_server.url}/admin/", timeout=10)
        assert r.status_code == 200
        assert "Site administration" in r.text
        r = s.get(f"{django_server.url}/admin/shop/item/", timeout=10)
        assert r.status_code == 200


def test_streaming_response_is_chunked(django_server):
    with RawHTTP(django_server.port) as c:
        resp = c.request("GET", "/stream/?n=50")
    assert resp.status == 200
    assert resp.chunked
    assert resp.body == "".join(f"row {i}\n" for i in range(50)).encode()


def test_request_meta(django_server):
    r = requests.get(f"{django_server.url}/meta/", params={"a": "1"}, headers={"User-Agent": "e2e-django"}, timeout=10)
    info = r.json()
    assert info["remote_addr"] == "127.0.0.1"
    assert info["path"] == "/meta/"
    assert info["script_name"] == ""
    assert info["absolute_uri"] == f"{django_server.url}/meta/?a=1"
    assert info["get"] == {"a": "1"}
    assert info["user_agent"] == "e2e-django"


def test_not_found(django_server):
    r = requests.get(f"{django_server.url}/no/such/page/", timeout=10)
    assert r.status_code == 404


def test_view_exception_is_500_and_logged(django_server):
    r = requests.get(f"{django_server.url}/error/", timeout=10)
    assert r.status_code == 500
    assert "9b1e" not in r.text
    django_server.wait_for_log("LookupError: django view failure marker 9b1e")
    assert requests.get(f"{django_server.url}/", timeout=10).status_code == 200


def test_prefix_reaches_django_urls(prefixed_django_server):
    base = prefixed_django_server.url
    info = requests.get(f"{base}/site/meta/", timeout=10).json()
    assert info["script_name"] == "/site"
    assert info["path"] == "/site/meta/"
    assert info["path_info"] == "/meta/"
    r = requests.get(f"{base}/site/admin/", allow_redirects=False, timeout=10)
    assert r.status_code == 302
    assert r.headers["Location"] == "/site/admin/login/?next=/site/admin/"
