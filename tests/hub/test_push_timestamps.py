"""Absurd timestamps are refused with 400 naming the field; the hub measures each node's clock skew."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from access import authed_client
from gpufleet.hub.extensions import load_extensions
from gpufleet.hub.service import MAX_SAMPLE_AGE_S, Hub, HubOptions
from gpufleet.snapshot import to_json
from sample_snapshot import sample_snapshot


def _snap(ts: float):  # type: ignore[no-untyped-def]
    s = sample_snapshot("n1")
    s.timestamp = ts
    return s


def _push(client: TestClient, cred: str, *snaps, sent_at: float | None = None, body: bytes | None = None):  # type: ignore[no-untyped-def]
    if body is None:
        body = b'{"snapshots":[' + b",".join(to_json(s) for s in snaps) + b"]}"
    headers = {"Authorization": f"Bearer {cred}"}
    if sent_at is not None:
        headers["X-Gpufleet-Sent-At"] = f"{sent_at:.3f}"
    return client.post("/api/v1/push", content=body, headers=headers)


def _open(data: Path, **kw: float) -> tuple[Hub, TestClient]:
    hub = Hub(HubOptions(data=data, **kw))  # type: ignore[arg-type]
    return hub, authed_client(hub, load_extensions(hub), role="viewer", background=False)


@pytest.mark.parametrize("ahead", [1e308, 86400.0, 301.0])
def test_a_timestamp_from_the_future_does_not_poison_the_node(tmp_path: Path, ahead: float) -> None:
    """The finding: one push at 1e308 (or a day ahead) made every later real push a duplicate."""
    data = tmp_path / "data"
    hub, client = _open(data)
    with client:
        cred = hub.register(hub.state.create_token(), "n1", {}, None)
        now = time.time()
        bad = ahead if ahead > 1e300 else now + ahead
        body = (b'{"snapshots":[' + to_json(_snap(now)) + b"," +
                to_json(_snap(1.0)).replace(b'"timestamp":1.0', f'"timestamp":{bad!r}'.encode()) + b"]}")
        r = _push(client, cred, body=body)
        assert r.status_code == 400
        detail = r.json()["detail"]
        assert detail.startswith("snapshots[1].timestamp") and "--max-clock-ahead 5m" in detail, detail
        assert _push(client, cred, _snap(now)).json() == {"accepted": 1, "duplicates": 0}
        assert _push(client, cred, _snap(now + 1)).json() == {"accepted": 1, "duplicates": 0}
    hub.close()
    hub, client = _open(data)  # and across a restart
    with client:
        assert _push(client, cred, _snap(now + 2)).json() == {"accepted": 1, "duplicates": 0}
        assert hub.fleet.nodes["n1"].snapshot.timestamp == now + 2
    hub.close()


def test_too_old_is_refused_and_both_bounds_are_settable(tmp_path: Path) -> None:
    hub, client = _open(tmp_path / "a")
    with client:
        cred = hub.register(hub.state.create_token(), "n1", {}, None)
        now = time.time()
        r = _push(client, cred, _snap(now - MAX_SAMPLE_AGE_S - 60))
        assert r.status_code == 400 and "snapshots[0].timestamp" in r.json()["detail"]
        assert "--max-sample-age 7d" in r.json()["detail"]
        assert _push(client, cred, _snap(now - MAX_SAMPLE_AGE_S + 60)).status_code == 200
    hub.close()
    hub, client = _open(tmp_path / "b", max_sample_age=60.0, max_clock_ahead=1800.0)
    with client:
        cred = hub.register(hub.state.create_token(), "n1", {}, None)
        now = time.time()
        assert _push(client, cred, _snap(now - 120)).status_code == 400
        assert _push(client, cred, _snap(now + 1200)).status_code == 200
    hub.close()


def test_default_age_covers_a_full_default_spool() -> None:
    from gpufleet.agent.spool import DEFAULT_MAX_ENTRIES
    from gpufleet.config import AgentConfig

    assert MAX_SAMPLE_AGE_S >= DEFAULT_MAX_ENTRIES * AgentConfig().interval


def test_clock_skew_is_measured_shown_stored_and_alerted(tmp_path: Path) -> None:
    hub, client = _open(tmp_path / "data")
    with client:
        cred = hub.register(hub.state.create_token(), "n1", {}, None)
        now = time.time()
        # The node's clock runs 90 s fast: its snapshots are 90 s ahead (within --max-clock-ahead).
        r = _push(client, cred, _snap(now + 90), sent_at=now + 90)
        assert r.status_code == 200
        node = client.get("/api/v1/nodes/n1").json()
        assert node["clock_skew_seconds"] == pytest.approx(90, abs=5)
        res = hub.query_range("gpufleet_agent_clock_skew_seconds", [], now - 10, now + 100, 1.0, "last")
        assert [v for v in res[0][2] if v == v] == [pytest.approx(90, abs=5)]
        alerts = next(e for e in hub.extensions if type(e).__name__ == "AlertsExtension")
        alerts.evaluate(now=now + 90)
        pending = {a.alertname: a.state for a in alerts.engine.alerts.values()}
        assert pending == {"GpufleetNodeClockAhead": "pending"}
        # 10 minutes fast: refused, but the skew is still measured and the node says why.
        r = _push(client, cred, _snap(now + 600), sent_at=now + 600)
        assert r.status_code == 400 and "set the node's clock right" in r.json()["detail"]
        node = client.get("/api/v1/nodes/n1").json()
        assert node["clock_skew_seconds"] == pytest.approx(600, abs=5)
        assert "--max-clock-ahead" in node["error"]
        page = client.get("/nodes/n1")
        assert page.status_code == 200 and "clock_skew_seconds" in page.text
    hub.close()
