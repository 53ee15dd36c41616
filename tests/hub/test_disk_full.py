"""Disk full and the free-space floor: pushes get 503 + Retry-After, nothing is lost, the hub resumes."""

from __future__ import annotations

import errno
import re
import sqlite3
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from access import authed_client
from gpufleet.hub.alerts import AlertsExtension
from gpufleet.hub.extensions import load_extensions
from gpufleet.hub.diskspace import GIB, Floor, parse_floor
from gpufleet.hub.service import Hub, HubOptions
from gpufleet.snapshot import to_json
from sample_snapshot import sample_snapshot


def _snap(ts: float):  # type: ignore[no-untyped-def]
    s = sample_snapshot("n1")
    s.timestamp = ts
    return s


def _push(client: TestClient, cred: str, *snaps):  # type: ignore[no-untyped-def]
    body = b'{"snapshots":[' + b",".join(to_json(s) for s in snaps) + b"]}"
    return client.post("/api/v1/push", content=body, headers={"Authorization": f"Bearer {cred}"})


def _metric(client: TestClient, name: str) -> float:
    m = re.search(rf"^{name} (\S+)$", client.get("/metrics").text, re.M)
    assert m, f"{name} missing from /metrics"
    return float(m.group(1))


def _stored(hub: Hub, t0: float, t1: float) -> int:
    """How many snapshots of n1 the store holds in [t0, t1] (one point per 0.1 s step)."""
    res = hub.query_range("gpufleet_node_load1", [], t0 - 0.05, t1 + 0.05, 0.1, "last")
    return sum(1 for v in res[0][2] if v == v) if res else 0


@pytest.fixture
def hub(tmp_path: Path):
    h = Hub(HubOptions(data=tmp_path / "data"))
    yield h
    h.close()


def test_enospc_in_the_store_gives_503_and_the_resend_loses_nothing(hub: Hub, monkeypatch: pytest.MonkeyPatch) -> None:
    import gpufleet.hub.service as service

    monkeypatch.setattr(service, "DISK_FULL_HOLD_S", 0.0)  # try the disk again at the next push
    real_append = hub.store.append
    full = {"after": 2}  # the disk fills up after two more snapshots

    def append(*a, **kw):  # type: ignore[no-untyped-def]
        if full["after"] <= 0:
            raise OSError(errno.ENOSPC, "No space left on device")
        full["after"] -= 1
        return real_append(*a, **kw)

    hub.store.append = append  # type: ignore[method-assign]
    now = time.time()
    batch = [_snap(now - 5 + i) for i in range(5)]
    with authed_client(hub, load_extensions(hub), background=False) as client:
        cred = hub.register(hub.state.create_token(), "n1", {}, None)
        r = _push(client, cred, *batch)
        assert r.status_code == 503 and int(r.headers["retry-after"]) > 0
        assert "disk is full" in r.json()["detail"]
        assert _metric(client, "gpufleet_hub_store_errors_total") == 1
        assert _metric(client, "gpufleet_hub_storage_paused") == 1
        health = client.get("/healthz")
        assert health.status_code == 503 and health.json()["failing"] == {"ingest": "StoragePaused: disk full"}
        # The node's view kept what was stored before the failure.
        assert hub.fleet.nodes["n1"].snapshot.timestamp == batch[1].timestamp
        # Space returns: the agent resends the whole batch; what was stored counts as duplicates.
        full["after"] = 10**9
        r = _push(client, cred, *batch)
        assert r.status_code == 200 and r.json() == {"accepted": 3, "duplicates": 2}
        assert client.get("/healthz").status_code == 200
        assert _metric(client, "gpufleet_hub_storage_paused") == 0
    assert _stored(hub, batch[0].timestamp, batch[-1].timestamp) == 5


def test_sqlite_disk_full_on_register_is_503(hub: Hub) -> None:
    def full(*a: object, **kw: object) -> str:
        raise sqlite3.OperationalError("database or disk is full")

    hub.state.register = full  # type: ignore[method-assign]
    token = hub.state.create_token()
    with authed_client(hub, load_extensions(hub), background=False) as client:
        r = client.post("/api/v1/register", json={"node": "n1"}, headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 503 and "Retry-After" in r.headers
        assert "disk is full" in r.json()["detail"]


def test_free_space_floor_stops_writes_and_raises_the_alert(tmp_path: Path) -> None:
    hub = Hub(HubOptions(data=tmp_path / "data", min_free_space=Floor(bytes=2**62, fraction=None)))
    try:
        alerts = AlertsExtension(hub)
        with authed_client(hub, [alerts], background=False) as client:
            cred = hub.register(hub.state.create_token(), "n1", {}, None)
            r = _push(client, cred, _snap(time.time()))
            assert r.status_code == 503 and "below --min-free-space" in r.json()["detail"]
            assert r.headers["retry-after"] == "30"
            assert _metric(client, "gpufleet_hub_storage_paused") == 1
            assert _metric(client, "gpufleet_hub_disk_free_bytes") > 0
            alerts.evaluate()
            firing = [a for a in alerts.engine.alerts.values() if a.state == "firing"]
            assert [a.alertname for a in firing] == ["GpufleetHubDiskFull"]
            # Lower the floor (as if space was freed): writes resume by themselves.
            hub.free_space.floor = Floor(bytes=0, fraction=None)
            hub.free_space.refresh(force=True)
            assert _push(client, cred, _snap(time.time())).status_code == 200
            assert _metric(client, "gpufleet_hub_storage_paused") == 0
    finally:
        hub.close()


def test_floor_default_and_sizes() -> None:
    d = Floor()
    assert d.of(100 * GIB) == GIB and d.of(10 * GIB) == int(0.5 * GIB)  # 1 GiB or 5%, the smaller
    assert parse_floor("500MiB") == Floor(500 * 2**20, None)
    assert parse_floor("2GiB") == Floor(2 * GIB, None)
    assert parse_floor("5%") == Floor(None, 0.05)
    assert parse_floor("1GiB,5%") == Floor(GIB, 0.05)
    assert parse_floor("0") == Floor(0, None)
    for bad in ("", "lots", "5 parsecs", "150%", "1GiB,2GiB", "-1GiB"):
        with pytest.raises(ValueError):
            parse_floor(bad)


def test_cli_refuses_a_bad_floor_in_one_line(tmp_path: Path) -> None:
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "gpufleet", "hub", "--data", str(tmp_path / "d"),
                        "--listen", "127.0.0.1:0", "--min-free-space", "lots"], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 2 and r.stderr.count("\n") == 1
    assert "--min-free-space" in r.stderr and "500MiB" in r.stderr


def test_in_process_feeds_of_up_stay_quiet_while_storage_is_paused(tmp_path: Path,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    """`gpufleet up` feeds the hub in-process: a paused store must not log a traceback per snapshot."""
    import logging

    from conftest import eventually
    from gpufleet.up import start_local_feeds

    hub = Hub(HubOptions(data=tmp_path / "data", min_free_space=Floor(bytes=2**62, fraction=None)))
    caplog.set_level(logging.WARNING)
    feeds, _ = start_local_feeds(hub, agent=False, simulate=2, interval=0.5)
    try:
        eventually(lambda: hub.jobs.errors_total().get("ingest", 0) >= 4, timeout=20, what="refused local feeds")
    finally:
        feeds.stop()
        hub.close()
    assert not [r for r in caplog.records if r.exc_info], "no traceback for a full disk"
