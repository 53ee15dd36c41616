"""A damaged hub.db or alerts.db is set aside and replaced; a store that fails to open does not stop the hub."""

from __future__ import annotations

import logging
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from access import authed_client
from gpufleet.hub.extensions import load_extensions
from gpufleet.hub.service import Hub, HubOptions
from realparts import free_port, gpufleet, hub_proc


def _made(data: Path) -> None:
    """A hub data directory with a registered node, then closed."""
    hub = Hub(HubOptions(data=data))
    hub.extensions.extend(load_extensions(hub))  # alerts.db too
    hub.first_token()
    hub.register(hub.state.create_token(), "n1", {"rack": "r1"}, None)
    hub.close()


def _zero_header(f: Path) -> None:
    with open(f, "r+b") as fh:
        fh.write(b"\0" * 100)


def _truncate(f: Path) -> None:
    size = f.stat().st_size
    with open(f, "r+b") as fh:
        fh.truncate(size // 2)


@pytest.mark.parametrize("damage", [_zero_header, _truncate], ids=["zeroed-header", "truncated"])
def test_damaged_hub_db_is_set_aside_and_the_hub_starts(tmp_path: Path, damage, caplog: pytest.LogCaptureFixture) -> None:  # type: ignore[no-untyped-def]
    data = tmp_path / "data"
    _made(data)
    db = data / "hub.db"
    # Fold the WAL into the file first, so the damage is in the database proper.
    import sqlite3

    c = sqlite3.connect(db)
    c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    c.close()
    damage(db)
    caplog.set_level(logging.ERROR, logger="gpufleet.hub")
    t0 = time.monotonic()
    hub = Hub(HubOptions(data=data))
    took = time.monotonic() - t0
    try:
        aside = sorted(data.glob("hub.db.corrupt-*"))
        assert len(aside) == 1 and not aside[0].name.endswith(("-wal", "-shm"))
        lines = [r.getMessage() for r in caplog.records if "is damaged" in r.getMessage()]
        assert len(lines) == 1, lines
        assert aside[0].name in lines[0] and "register again" in lines[0] and "--token" in lines[0]
        # A fresh database: the old node is gone, a new first join token is offered, registration works.
        assert hub.state.nodes() == []
        token = hub.first_token()
        assert token and hub.state.token_valid(token)
        with authed_client(hub, load_extensions(hub), background=False) as client:
            r = client.post("/api/v1/register", json={"node": "n1"}, headers={"Authorization": f"Bearer {token}"})
            assert r.status_code == 200
        print(f"\n{damage.__name__}: hub.db set aside and a fresh one made in {took:.2f} s")
    finally:
        hub.close()


def test_damaged_alerts_db_is_set_aside(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    data = tmp_path / "data"
    _made(data)
    alerts_db = next(data.glob("alerts*.db"))
    _zero_header(alerts_db)
    caplog.set_level(logging.ERROR, logger="gpufleet.hub")
    hub = Hub(HubOptions(data=data))
    exts = load_extensions(hub)
    hub.extensions.extend(exts)  # the hub closes them
    try:
        assert any(e for e in exts if type(e).__name__ == "AlertsExtension")
        assert len(list(data.glob(f"{alerts_db.name}.corrupt-*"))) == 1
        assert any("silences" in r.getMessage() for r in caplog.records)
        assert [n.name for n in hub.state.nodes()] == ["n1"], "hub.db is untouched"
    finally:
        hub.close()


def test_real_hub_with_a_zeroed_hub_db_starts_and_says_so_in_one_line(tmp_path: Path) -> None:
    data = tmp_path / "data"
    _made(data)
    _zero_header(data / "hub.db")
    port = free_port()
    hub = hub_proc(tmp_path, data, port)
    try:
        log = hub.log()
        assert "Traceback" not in log
        damaged = [line for line in log.splitlines() if "is damaged" in line]
        assert len(damaged) == 1 and "hub.db.corrupt-" in damaged[0]
        assert "gpufleet agent --hub" in log, "a new join token is printed for the agents"
        assert httpx.get(f"http://127.0.0.1:{port}/healthz").json()["status"] == "ok"
    finally:
        hub.stop()


def test_a_store_that_fails_to_open_does_not_stop_the_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import gpufleet.store as store

    class Broken:
        def __init__(self, *a: object, **kw: object) -> None:
            raise KeyError("series 17 missing from the index")

    monkeypatch.setattr(store, "TimeSeriesStore", Broken)
    hub = Hub(HubOptions(data=tmp_path / "data"))
    try:
        with authed_client(hub, load_extensions(hub), background=False) as client:
            h = client.get("/healthz")
            assert h.status_code == 503 and "series 17" in h.json()["failing"]["store"]
            cred = hub.register(hub.state.create_token(), "n1", {}, None)
            r = client.post("/api/v1/push", content=b'{"snapshots":[]}', headers={"Authorization": f"Bearer {cred}"})
            assert r.status_code == 503 and "could not be opened" in r.json()["detail"] and "Retry-After" in r.headers
            q = client.get("/api/v1/query_range", params={"metric": "gpufleet_gpu_power_watts"})
            assert q.status_code == 503
    finally:
        hub.close()


def test_unexpected_error_opening_the_data_dir_is_one_line(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    (data / "tsdb").write_text("not a directory")
    r = subprocess.run(gpufleet("hub", "--listen", f"127.0.0.1:{free_port()}", "--data", str(data)),
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert r.stderr.startswith("gpufleet: error: cannot open the hub's data directory") and r.stderr.count("\n") == 1
