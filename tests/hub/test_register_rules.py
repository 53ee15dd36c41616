"""Registration: what an agent may register, and who may register a name (issue 9 findings)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from access import authed_client
from gpufleet.hub.sd import sd_groups
from gpufleet.hub.service import Hub, HubOptions
from gpufleet.hub.state import HubState


@pytest.fixture
def hub(tmp_path: Path):
    h = Hub(HubOptions(data=tmp_path / "data"))
    yield h
    h.close()


@pytest.fixture
def client(hub: Hub):
    with authed_client(hub, role="viewer", background=False) as c:  # reads with a key; register with tokens
        yield c


def _register(client: TestClient, secret: str, node: str = "n1", **body: object):
    return client.post("/api/v1/register", json={"node": node, **body},
                       headers={"Authorization": f"Bearer {secret}"})


@pytest.mark.parametrize("labels, problem", [
    ({"bad-name": "x"}, "not a valid Prometheus label name"),
    ({"__metrics_path__": "/latest/meta-data"}, "starts with __"),
    ({"__param_x": "1"}, "starts with __"),
    ({"__address__": "169.254.169.254"}, "starts with __"),
    ({f"l{i}": "v" for i in range(10_000)}, "at most 64"),
    ({"rack": "x" * 1025}, "longer than 1024 bytes"),
])
def test_bad_labels_are_refused(client: TestClient, hub: Hub, labels: dict, problem: str) -> None:
    token = hub.state.create_token()
    r = _register(client, token, labels=labels, agent_url="http://10.0.0.1:9401")
    assert r.status_code in (413, 422), r.text
    if r.status_code == 422:
        assert problem in r.json()["detail"]
    assert "n1" not in hub.fleet.nodes and client.get("/api/v1/sd/prometheus").json() == []
    # a refused registration spends nothing: the token still works for a good one
    assert _register(client, token, labels={"rack": "r1"}).status_code == 200


def test_64_labels_of_1kb_are_fine(client: TestClient, hub: Hub) -> None:
    token = hub.state.create_token()
    labels = {f"l{i}": "v" * 900 for i in range(64)}
    assert _register(client, token, labels=labels).status_code == 200


@pytest.mark.parametrize("url, problem", [
    ("http://169.254.169.254/latest/meta-data", "no path"),
    ("http://169.254.169.254:80", "link-local"),
    ("http://10.0.0.1:9401/metrics?x=1", "no path"),
    ("http://10.0.0.1:9401/?collect[]=x", "no path"),
    ("http://user:pw@10.0.0.1:9401", "user:password"),
    ("ftp://10.0.0.1:21", "http://HOST:PORT"),
    ("http://10.0.0.1:99999", "not a valid URL"),
    ("http://bad_host!:9401", "not a host name"),
    ("http://" + "a" * 600 + ":9401", "longer than 512"),
])
def test_bad_agent_urls_are_refused(client: TestClient, hub: Hub, url: str, problem: str) -> None:
    token = hub.state.create_token()
    r = _register(client, token, agent_url=url)
    assert r.status_code in (413, 422), r.text
    if r.status_code == 422:
        assert problem in r.json()["detail"]
    assert "n1" not in hub.fleet.nodes


def test_a_1mb_agent_url_is_refused_by_size(client: TestClient, hub: Hub) -> None:
    token = hub.state.create_token()
    r = _register(client, token, agent_url="http://" + "a" * (1 << 20) + ":9401")
    assert r.status_code == 413 and "limit of 65536" in r.json()["detail"]


def test_good_urls_are_normalised(client: TestClient, hub: Hub) -> None:
    token = hub.state.create_token()
    cred = _register(client, token, agent_url="https://gpu-01.example.org:9401/").json()["credential"]
    assert hub.fleet.nodes["n1"].agent_url == "https://gpu-01.example.org:9401"
    _register(client, cred, agent_url="http://[fd00::1]:9401")
    assert client.get("/api/v1/sd/prometheus").json() == [
        {"targets": ["[fd00::1]:9401"], "labels": {"node": "n1"}}]


def test_register_without_body_limits_and_bad_json(client: TestClient, hub: Hub) -> None:
    token = hub.state.create_token()
    headers = {"Authorization": f"Bearer {token}"}
    r = client.post("/api/v1/register", content=b"x" * (64 * 1024 + 1), headers=headers)
    assert r.status_code == 413
    r = client.post("/api/v1/register", content=b"{not json", headers=headers)
    # not JSON at all is a 400, as for push (issue 8); a wrong field is a 422
    assert r.status_code == 400 and "invalid registration" in r.json()["detail"]
    r = client.post("/api/v1/register", json={"node": "../etc"}, headers=headers)
    assert r.status_code == 422 and "node" in r.json()["detail"]
    # without a credential nothing is parsed: a body that is not even JSON gets 401
    r = client.post("/api/v1/register", content=b"{not json")
    assert r.status_code == 401
    assert "/api/v1/register" in client.get("/openapi.json").json()["paths"]
    schema = client.get("/openapi.json").json()["paths"]["/api/v1/register"]["post"]["requestBody"]
    assert "agent_url" in str(schema)


def test_http_sd_filters_rows_stored_before_the_rules(tmp_path: Path) -> None:
    class Row:
        def __init__(self, name: str, labels: dict, url: str) -> None:
            self.name, self.labels, self.agent_url, self.source = name, labels, url, "push"
            self.advertised = False

    rows = [
        Row("a", {"bad-name": "x", "__metrics_path__": "/m", "__param_x": "1", "rack": "r1"}, "http://10.0.0.1:9401"),
        Row("b", {}, "http://169.254.169.254/latest/meta-data"),
        Row("c", {}, "https://10.0.0.3:9401"),
    ]
    groups = sd_groups(rows)
    assert groups == [
        {"targets": ["10.0.0.1:9401"], "labels": {"rack": "r1", "node": "a"}},
        {"targets": ["10.0.0.3:9401"], "labels": {"node": "c", "__scheme__": "https"}},
    ]


# ---- node identity ------------------------------------------------------------------------------


def test_a_registered_name_needs_its_own_credential(client: TestClient, hub: Hub) -> None:
    token = hub.state.create_token()
    cred = _register(client, token, agent_url="http://10.0.0.1:9401").json()["credential"]
    # an attacker with a join token cannot take the name over
    other = hub.state.create_token()
    r = _register(client, other, agent_url="http://10.6.6.6:9401", labels={"evil": "1"})
    assert r.status_code == 409 and "gpufleet node forget n1" in r.json()["detail"]
    assert hub.fleet.nodes["n1"].agent_url == "http://10.0.0.1:9401"
    assert hub.authenticate(cred) == "n1"
    # the node itself re-registers: join token in the header, its credential in the body
    r = _register(client, token, credential=cred, agent_url="http://10.0.0.2:9401")
    assert r.status_code == 200
    new = r.json()["credential"]
    assert hub.authenticate(new) == "n1" and hub.fleet.nodes["n1"].agent_url == "http://10.0.0.2:9401"
    with pytest.raises(Exception):
        hub.authenticate(cred)
    # a node's credential cannot register another node's name either
    token2 = hub.state.create_token()
    cred2 = _register(client, token2, node="n2").json()["credential"]
    assert _register(client, cred2, node="n1").status_code == 409


def test_revoke_then_forget(client: TestClient, hub: Hub) -> None:
    token = hub.state.create_token()
    cred = _register(client, token).json()["credential"]
    assert hub.state.revoke_node("n1")
    with pytest.raises(Exception):
        hub.authenticate(cred)
    r = _register(client, token, credential=cred)
    assert r.status_code == 403 and "revoked" in r.json()["detail"]
    assert hub.state.forget_node("n1")
    assert _register(client, token).status_code == 200


def test_token_uses_and_expiry(client: TestClient, hub: Hub) -> None:
    once = hub.state.create_token(uses=1)
    assert _register(client, once, node="a").status_code == 200
    r = _register(client, once, node="b")
    assert r.status_code == 401 and "used up" in r.json()["detail"]
    old = hub.state.create_token(expires=time.time() - 1)
    r = _register(client, old, node="c")
    assert r.status_code == 401 and "expired" in r.json()["detail"]
    listed = {t["prefix"]: t for t in hub.state.tokens()}
    assert listed[once[:12]]["uses_left"] == 0 and listed[once[:12]]["used"] == 1


def test_revoke_by_listed_prefix(tmp_path: Path) -> None:
    st = HubState(tmp_path / "hub.db")
    try:
        a, b = st.create_token(), st.create_token()
        shown = st.tokens()[0]["prefix"]
        assert shown == a[:12]
        assert st.revoke_token(f"{shown}...") == 1  # as `token list` prints it
        assert not st.token_valid(a) and st.token_valid(b)
        assert st.revoke_token(b) == 1 and not st.token_valid(b)
        assert st.revoke_token("gft_") == 0  # a bare prefix that is not shown matches nothing
    finally:
        st.close()


def test_old_database_is_upgraded(tmp_path: Path) -> None:
    import sqlite3

    db = sqlite3.connect(tmp_path / "hub.db")
    db.executescript("""
    CREATE TABLE tokens (hash TEXT PRIMARY KEY, prefix TEXT NOT NULL, created REAL NOT NULL,
        note TEXT NOT NULL DEFAULT '', revoked REAL);
    CREATE TABLE nodes (name TEXT PRIMARY KEY, credential_hash TEXT, labels TEXT NOT NULL DEFAULT '{}',
        agent_url TEXT, source TEXT NOT NULL DEFAULT 'push', registered REAL NOT NULL,
        status TEXT NOT NULL DEFAULT 'up', status_since REAL NOT NULL, last_seen REAL);
    """)
    db.close()
    st = HubState(tmp_path / "hub.db")
    try:
        t = st.create_token(uses=2)
        st.register("n1", {}, None, token=t)
        assert st.tokens()[0]["uses_left"] == 1
    finally:
        st.close()


def test_pushed_snapshot_labels_follow_the_same_rules(client: TestClient, hub: Hub) -> None:
    from gpufleet.snapshot import to_json
    from sample_snapshot import sample_snapshot

    cred = _register(client, hub.state.create_token()).json()["credential"]
    for labels in ({"bad-name": "x"}, {"__param_x": "1"}, {f"l{i}": "v" for i in range(65)}):
        s = sample_snapshot("n1")
        s.timestamp = 1000.0
        s.labels = labels
        r = client.post("/api/v1/push", content=b'{"snapshots":[' + to_json(s) + b"]}",
                        headers={"Authorization": f"Bearer {cred}"})
        assert r.status_code == 400 and "snapshots[0].labels" in r.json()["detail"], r.text
