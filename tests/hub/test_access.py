"""Issue 9's findings about people and access, each as a regression test against the whole app.

No credential for reads, acks, silences or test-notify; a cross-site form POST; any Host header;
missing security headers; unlimited streams and requests. In-process (TestClient) for speed;
tests/ui/test_ui.py logs in through the real page in a real browser.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from access import bearer, make_api_key, make_user
from gpufleet.hub.app import create_app
from gpufleet.hub.auth.options import AccessOptions
from gpufleet.hub.auth.policy import Role
from gpufleet.hub.auth.service import COOKIE, csrf_token
from gpufleet.hub.auth.store import AuthStore
from gpufleet.hub.extensions import load_extensions
from gpufleet.hub.service import Hub, HubOptions

BASE = "http://127.0.0.1"
READS = ["/api/v1/nodes", "/api/v1/nodes/n1", "/api/v1/nodes/n1/snapshot", "/api/v1/snapshots?processes=true",
         "/api/v1/query_range?metric=gpufleet_gpu_utilization_ratio", "/api/v1/metrics", "/api/v1/sd/prometheus",
         "/metrics", "/api/v1/alerts", "/api/v1/alerts/rules", "/api/v1/silences", "/api/v1/notifications",
         "/api/v1/events"]
PAGES = ["/", "/nodes/n1", "/nodes/n1/gpus/0", "/users", "/users/alice", "/alerts"]
SILENCE = {"matchers": {"node": "=~.*"}, "duration": "87600h", "author": "mallory"}
CHANGES = [("POST", "/api/v1/alerts/abc/ack", {"by": "mallory"}), ("DELETE", "/api/v1/alerts/abc/ack", None),
           ("POST", "/api/v1/silences", SILENCE), ("DELETE", "/api/v1/silences/abc", None),
           ("POST", "/api/v1/notifications/test", {})]


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[Hub]:
    h = Hub(HubOptions(data=tmp_path / "data"))
    h.extensions.extend(load_extensions(h))  # alerts and web UI: every app built below mounts them
    yield h
    h.close()


def _client(hub: Hub, access: AccessOptions | None = None, **kw: object) -> TestClient:
    return TestClient(create_app(hub, background=False, access=access), base_url=kw.pop("base_url", BASE), **kw)  # type: ignore[arg-type]


def _login(c: TestClient, name: str, password: str) -> str:
    r = c.post("/login", data={"name": name, "password": password, "next": "/"}, follow_redirects=False)
    assert r.status_code == 303, r.text
    return c.cookies[COOKIE]


def test_no_credential_no_reads_no_changes(hub: Hub) -> None:
    with _client(hub) as c:
        for path in READS:
            r = c.get(path)
            assert r.status_code == 401, path
            assert r.headers["www-authenticate"] == "Bearer" and "apikey create" in r.json()["detail"]
        for path in PAGES:  # a browser is sent to the login page, and back afterwards
            r = c.get(path, headers={"Accept": "text/html"}, follow_redirects=False)
            assert r.status_code == 303 and r.headers["location"] == f"/login?next={path}", path
        for method, path, body in CHANGES:
            assert c.request(method, path, json=body).status_code == 401, path
        assert c.get("/healthz").status_code == 200  # public
        assert c.get("/login").status_code == 200 and c.get("/ui/static/app.css").status_code == 200
        assert c.get("/openapi.json").status_code == 200


def test_roles_and_keys(hub: Hub) -> None:
    viewer, operator = make_api_key(hub.opts.data, "viewer"), make_api_key(hub.opts.data, "operator")
    with _client(hub) as c:
        assert c.get("/api/v1/nodes", headers=bearer(viewer)).status_code == 200
        for method, path, body in CHANGES:  # a viewer reads only
            r = c.request(method, path, json=body, headers=bearer(viewer))
            assert r.status_code == 403 and "needs operator" in r.json()["detail"], path
        # an operator acks and silences (404: no such alert, so the check let it through)
        assert c.post("/api/v1/alerts/abc/ack", json={"by": "op"}, headers=bearer(operator)).status_code == 404
        assert c.post("/api/v1/silences", json=SILENCE, headers=bearer(operator)).status_code == 201
        assert c.post("/api/v1/notifications/test", json={}, headers=bearer(operator)).status_code == 409
        assert c.get("/api/v1/nodes", headers=bearer("gfk_forged")).status_code == 401
        assert c.get("/api/v1/nodes", headers={"Authorization": "Basic dTpw"}).status_code == 401
        # Prometheus 2.42's http_sd sends a key file's content without "Bearer " unless told: accepted
        assert c.get("/api/v1/sd/prometheus", headers={"Authorization": viewer}).status_code == 200

    st = AuthStore(hub.opts.data / "hub.db")
    try:
        with pytest.raises(ValueError, match="a key cannot be admin"):
            st.create_key("test-operator", Role.ADMIN)
        low = st.create_key("test-operator", Role.VIEWER)
        expired = st.create_key("test-operator", expires=time.time() - 1)
        with _client(hub) as c:
            assert c.post("/api/v1/silences", json=SILENCE, headers=bearer(low)).status_code == 403
            assert c.get("/api/v1/nodes", headers=bearer(expired)).status_code == 401
            assert st.revoke_key(operator[:12]) == 1
            assert c.get("/api/v1/nodes", headers=bearer(operator)).status_code == 401
            st.remove_user("test-viewer")  # a removed user's keys stop at once
            assert c.get("/api/v1/nodes", headers=bearer(viewer)).status_code == 401
    finally:
        st.close()


def test_sessions_csrf_and_cross_site_form_post(hub: Hub) -> None:
    password = make_user(hub.opts.data, "olga", "operator")
    with _client(hub) as c:
        session = _login(c, "olga", password)
        cookie = c.cookies.get_dict() if hasattr(c.cookies, "get_dict") else dict(c.cookies)
        assert c.get("/api/v1/nodes").status_code == 200  # reads with the session cookie
        token = csrf_token(session)
        # the finding: test-notify fired from another site's form; now refused in every variant
        form = {"receiver": ""}
        for headers in ({"Origin": "http://evil.example"}, {"Sec-Fetch-Site": "cross-site"}, {"Origin": "null"}):
            r = c.post("/api/v1/notifications/test", data=form, headers=headers)
            assert r.status_code == 403 and "refused" in r.json()["detail"], headers
        r = c.post("/api/v1/notifications/test", data={"csrf_token": token}, headers={"Origin": "http://evil.example"})
        assert r.status_code == 403  # even with the right token
        # same-origin without the token (an attacker cannot read it) is refused too
        r = c.post("/api/v1/silences", json=SILENCE)
        assert r.status_code == 403 and "CSRF" in r.json()["detail"]
        r = c.post("/api/v1/silences", json=SILENCE, headers={"X-CSRF-Token": "0" * 64})
        assert r.status_code == 403
        r = c.post("/api/v1/silences", json=SILENCE, headers={"X-CSRF-Token": token})
        assert r.status_code == 201
        assert r.headers["cache-control"] == "no-store"
        # the form field works where a header cannot be set (logout buttons)
        r = c.post("/logout", data={"csrf_token": token}, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"] == "/login?done=out"
        assert 'Max-Age=0' in r.headers["set-cookie"] or COOKIE + '=""' in r.headers["set-cookie"]
    with _client(hub, cookies=cookie) as c:  # the old cookie is dead on the server too
        assert c.get("/api/v1/nodes").status_code == 401


def test_session_cookie_flags_and_secure_under_tls(hub: Hub) -> None:
    password = make_user(hub.opts.data, "vic", "viewer")
    for base, secure in ((BASE, False), ("https://127.0.0.1", True)):
        with _client(hub, base_url=base) as c:
            r = c.post("/login", data={"name": "vic", "password": password}, follow_redirects=False)
            flags = r.headers["set-cookie"].lower()
            assert "httponly" in flags and "samesite=strict" in flags and ("secure" in flags) == secure


def test_login_rate_limits_answer_429_with_retry_after(hub: Hub) -> None:
    password = make_user(hub.opts.data, "ann", "viewer")
    access = AccessOptions(login_failures_per_account=3, login_failures_per_client=5)
    with _client(hub, access) as c:
        for _ in range(3):
            assert c.post("/login", data={"name": "ann", "password": "wrong-password"}).status_code == 401
        r = c.post("/login", data={"name": "ann", "password": password})  # even the right one, for now
        assert r.status_code == 429 and int(r.headers["retry-after"]) > 0 and "failed logins for account" in r.text
        for _ in range(2):  # other names from the same client count against the client
            c.post("/login", data={"name": "bob", "password": "wrong-password"})
        r = c.post("/login", data={"name": "carl", "password": "wrong-password"})
        assert r.status_code == 429 and "client" in r.text and int(r.headers["retry-after"]) > 0


def test_host_header_allow_list(hub: Hub) -> None:
    key = make_api_key(hub.opts.data, "viewer")
    access = AccessOptions(allowed_hosts=["gpus.lab.example"], listen_host="127.0.0.1")
    with _client(hub, access, headers=bearer(key)) as c:
        for host in ("evil.example", "evil.example:8080", "gpus.lab.example.evil.example", ""):
            r = c.get("/api/v1/nodes", headers={"Host": host})
            assert r.status_code == 421 and "--allowed-host" in r.text, host
        assert c.get("/healthz", headers={"Host": "evil.example"}).status_code == 421  # even public routes
        for host in ("gpus.lab.example:8080", "localhost:8080", "127.0.0.1", "[::1]:8080", "10.1.2.3:8080"):
            assert c.get("/api/v1/nodes", headers={"Host": host}).status_code == 200, host


def test_security_headers_on_every_answer(hub: Hub) -> None:
    key = make_api_key(hub.opts.data, "viewer")
    with _client(hub, headers=bearer(key)) as c:
        for path in ("/", "/api/v1/nodes", "/login", "/healthz", "/api/v1/nodes/none", "/ui/static/app.css"):
            h = c.get(path).headers
            assert h["x-frame-options"] == "DENY" and h["x-content-type-options"] == "nosniff", path
            assert h["referrer-policy"] == "same-origin"
            csp = h["content-security-policy"]
            assert "script-src 'self';" in csp and "frame-ancestors 'none'" in csp and "unsafe-inline'; img" in csp
        assert c.get("/api/v1/nodes").headers["cache-control"] == "no-store"
        page = c.get("/").text
        # no inline script in any page: every <script> has a src or is JSON data
        for tag in re.findall(r"<script[^>]*>", page):
            assert "src=" in tag or 'type="application/json"' in tag, tag


def test_anonymous_read_is_viewer_only(hub: Hub) -> None:
    with _client(hub, AccessOptions(anonymous_read=True)) as c:
        assert c.get("/api/v1/nodes").status_code == 200
        assert c.get("/", headers={"Accept": "text/html"}).status_code == 200
        for method, path, body in CHANGES:
            assert c.request(method, path, json=body).status_code == 403, path


def test_one_time_login_link(hub: Hub) -> None:
    from gpufleet.hub.auth.local import local_admin_link

    link = local_admin_link(hub.opts.data)
    with _client(hub) as c:
        r = c.get(link, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"] == "/" and COOKIE in r.headers["set-cookie"]
        assert c.get("/api/v1/nodes").status_code == 200
    with _client(hub) as c:
        assert c.get(link).status_code == 401  # used up
    st = AuthStore(hub.opts.data / "hub.db")
    try:
        stale = st.new_link("admin", ttl=-1)
    finally:
        st.close()
    with _client(hub) as c:
        assert c.get(f"/login/link?token={stale}").status_code == 401


def test_open_redirects_refused(hub: Hub) -> None:
    password = make_user(hub.opts.data, "ned", "viewer")
    with _client(hub) as c:
        for target in ("//evil.example/", "https://evil.example/", "/\\evil.example"):
            r = c.post("/login", data={"name": "ned", "password": password, "next": target}, follow_redirects=False)
            assert r.headers["location"] == "/", target


def test_request_rate_and_stream_caps(hub: Hub) -> None:
    key = make_api_key(hub.opts.data, "viewer")
    with _client(hub, AccessOptions(request_rate=1, request_burst=3), headers=bearer(key)) as c:
        codes = [c.get("/api/v1/nodes").status_code for _ in range(4)]
        assert codes == [200, 200, 200, 429]
        r = c.get("/healthz")  # public routes count too
        assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
    with _client(hub, AccessOptions(streams_per_client=0), headers=bearer(key)) as c:
        r = c.get("/api/v1/events")
        assert r.status_code == 429 and "live streams open" in r.json()["detail"]


def test_stream_slots_are_given_back() -> None:
    from gpufleet.hub.auth.limits import StreamCaps, TooMany

    caps = StreamCaps(per_client=2, total=3)
    a, b = caps.acquire("1.2.3.4"), caps.acquire("1.2.3.4")
    with pytest.raises(TooMany):
        caps.acquire("1.2.3.4")
    c = caps.acquire("5.6.7.8")
    with pytest.raises(TooMany, match="the hub has 3"):
        caps.acquire("9.9.9.9")
    a.release()
    a.release()  # once only
    assert caps.count == 2
    del b  # a stream that never started gives its slot back when dropped
    assert caps.count == 1 and caps.open == {"5.6.7.8": 1}
    c.release()
    assert caps.count == 0 and caps.open == {}
