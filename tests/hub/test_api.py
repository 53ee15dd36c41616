"""The hub's HTTP API in-process (FastAPI TestClient): register, push, read back, refuse bad input."""

from __future__ import annotations

import gzip
from pathlib import Path

import msgspec
import pytest
from fastapi.testclient import TestClient

from access import authed_client
from gpufleet.hub.service import Hub, HubOptions
from gpufleet.snapshot import to_json
from sample_snapshot import sample_snapshot


@pytest.fixture
def hub(tmp_path: Path):
    # These tests push fixed timestamps from 1970 (easy to read back): let the age bound allow them.
    h = Hub(HubOptions(data=tmp_path / "data", max_sample_age=1e10))
    yield h
    h.close()


@pytest.fixture
def client(hub: Hub):
    with authed_client(hub, role="viewer", background=False) as c:  # reads with a viewer's API key; agents use their own tokens
        yield c


def _join(client: TestClient, hub: Hub, node: str = "n1", url: str | None = "http://10.1.2.3:9401") -> str:
    token = hub.state.create_token()
    r = client.post("/api/v1/register", json={"node": node, "labels": {"cluster": "c1"}, "agent_url": url},
                    headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200, r.text
    return r.json()["credential"]


def _push(client: TestClient, cred: str, *snaps, gz: bool = False):
    body = b'{"snapshots":[' + b",".join(to_json(s) for s in snaps) + b"]}"
    headers = {"Authorization": f"Bearer {cred}", "Content-Type": "application/json"}
    if gz:
        body = gzip.compress(body)
        headers["Content-Encoding"] = "gzip"
    return client.post("/api/v1/push", content=body, headers=headers)


def _snap(ts: float, util: float = 0.5):
    s = sample_snapshot("n1")
    s.timestamp = ts
    s.gpus[0].values["utilization_ratio"] = util
    return s


def test_register_push_and_read(client: TestClient, hub: Hub) -> None:
    cred = _join(client, hub)
    r = _push(client, cred, _snap(1000.0, 0.1), _snap(1001.0, 0.2), gz=True)
    assert r.json() == {"accepted": 2, "duplicates": 0}
    # resending is idempotent
    assert _push(client, cred, _snap(1001.0, 0.9)).json() == {"accepted": 0, "duplicates": 1}

    nodes = client.get("/api/v1/nodes").json()["nodes"]
    assert [(n["name"], n["status"], n["labels"]) for n in nodes] == [("n1", "up", {"cluster": "c1"})]
    snap = client.get("/api/v1/nodes/n1/snapshot").json()
    assert snap["timestamp"] == 1001.0 and snap["gpus"][0]["values"]["utilization_ratio"] == 0.2
    fleet = client.get("/api/v1/snapshots").json()["snapshots"]
    assert len(fleet) == 1 and "processes" not in fleet[0]

    q = client.get("/api/v1/query_range", params={
        "metric": "gpufleet_gpu_utilization_ratio", "match": ['gpu="0"', 'node=~"n.*"'],
        "start": 999, "end": 1003, "step": 1, "agg": "max"}).json()
    assert len(q["series"]) == 1
    s = q["series"][0]
    assert s["labels"]["cluster"] == "c1" and s["labels"]["uuid"] == "GPU-aaa"
    assert dict(zip(s["timestamps"], s["values"])) == {1000.0: 0.1, 1001.0: 0.2}

    sd = client.get("/api/v1/sd/prometheus").json()
    assert sd == [{"targets": ["10.1.2.3:9401"], "labels": {"cluster": "c1", "node": "n1"}}]
    metrics = client.get("/metrics").text
    assert "gpufleet_hub_ingest_snapshots_total 2" in metrics
    assert "gpufleet_hub_ingest_duplicates_total 1" in metrics


def test_auth_errors(client: TestClient, hub: Hub) -> None:
    r = client.post("/api/v1/register", json={"node": "n1"}, headers={"Authorization": "Bearer gft_nope"})
    assert r.status_code == 401 and "unknown or revoked join token" in r.json()["detail"]
    with TestClient(client.app, base_url="http://127.0.0.1") as bare:
        r = bare.post("/api/v1/register", json={"node": "n1"})
    assert r.status_code == 401 and "Authorization: Bearer" in r.json()["detail"]
    token = hub.state.create_token()
    hub.state.revoke_token(token)
    r = client.post("/api/v1/register", json={"node": "n1"}, headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 401
    assert _push(client, "gfn_forged", _snap(1.0)).status_code == 401
    # re-registering with the node's own credential replaces it
    old = _join(client, hub)
    r = client.post("/api/v1/register", json={"node": "n1"}, headers={"Authorization": f"Bearer {old}"})
    assert r.status_code == 200
    new = r.json()["credential"]
    assert _push(client, old, _snap(5.0)).status_code == 401
    assert _push(client, new, _snap(5.0)).status_code == 200


def test_bad_pushes_store_nothing(client: TestClient, hub: Hub) -> None:
    cred = _join(client, hub)
    good = to_json(_snap(2000.0))
    bad = msgspec.json.decode(to_json(_snap(2001.0)))
    bad["gpus"][0]["index"] = "zero"
    body = b'{"snapshots":[' + good + b"," + msgspec.json.encode(bad) + b"]}"
    r = client.post("/api/v1/push", content=body, headers={"Authorization": f"Bearer {cred}"})
    assert r.status_code == 400 and "$.snapshots[1].gpus[0].index" in r.json()["detail"]
    assert client.get("/api/v1/nodes/n1/snapshot").status_code == 404  # the good half was not stored
    r = client.post("/api/v1/push", content=b"{not json", headers={"Authorization": f"Bearer {cred}"})
    assert r.status_code == 400 and "not valid JSON" in r.json()["detail"]
    other = _snap(2002.0)
    other.node = "someone-else"
    r = _push(client, cred, other)
    assert r.status_code == 400 and "belongs to 'n1'" in r.json()["detail"]
    hub.opts.max_push_bytes = 1000
    r = _push(client, cred, _snap(2003.0))
    assert r.status_code == 413 and "exceeds the limit" in r.json()["detail"]


def test_query_errors(client: TestClient) -> None:
    r = client.get("/api/v1/query_range", params={"metric": "gpufleet_gpu_bogus"})
    assert r.status_code == 400 and "unknown metric" in r.json()["detail"]
    r = client.get("/api/v1/query_range", params={"metric": "gpufleet_gpu_power_watts", "match": ["gpu=0"]})
    assert r.status_code == 400 and 'NAME="VALUE"' in r.json()["detail"]
    r = client.get("/api/v1/query_range", params={"metric": "gpufleet_gpu_power_watts", "agg": "median"})
    assert r.status_code == 400
    assert client.get("/api/v1/nodes/ghost").status_code == 404
    assert client.get("/openapi.json").status_code == 200


def test_status_stale_then_down(hub: Hub) -> None:
    hub.ingest([_snap(1000.0)], now=1000.0)
    hub.ingest([_snap(1005.0)], now=1005.0)
    hub.tick(now=1010.0)
    assert hub.fleet.nodes["n1"].status == "up"
    hub.tick(now=1005.0 + 3 * 5 + 2)
    v = hub.fleet.nodes["n1"]
    assert v.status == "stale" and v.since == pytest.approx(1005.0 + 16)
    hub.tick(now=1005.0 + 121)
    assert v.status == "down" and v.since == pytest.approx(1005.0 + 120)
    hub.ingest([_snap(1200.0)], now=1200.0)
    assert v.status == "up" and v.since == 1200.0


def test_restart_keeps_nodes_and_latest(tmp_path: Path) -> None:
    h = Hub(HubOptions(data=tmp_path / "d"))
    token = h.state.create_token()
    cred = h.register(token, "n1", {"rack": "r1"}, None)
    h.ingest([_snap(1000.0, 0.3)])
    h.close()
    h2 = Hub(HubOptions(data=tmp_path / "d"))
    try:
        assert h2.authenticate(cred) == "n1"
        v = h2.fleet.nodes["n1"]
        assert v.snapshot is not None and v.snapshot.gpus[0].values["utilization_ratio"] == 0.3
        assert v.labels == {"rack": "r1"}
        assert h2.first_token() is not None and h2.first_token() is None  # printed once
    finally:
        h2.close()
