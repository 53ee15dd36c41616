"""Settling through `--history`: a hub keeping no store, its samples sent by `--remote-write` to a
real VictoriaMetrics and read back through its query API, gives the report an embedded-store hub
gives for the same known schedules (whole GPUs, MIG slices with busy periods)."""

from __future__ import annotations

import math
import time
from pathlib import Path

import httpx
import pytest

from gpufleet.hub.service import Hub, HubOptions
from gpufleet.hub.usage.extension import UsageExtension
from gpufleet.hub.usage.report import usage
from realparts import victoria_metrics
from simfleet import HOUR, Fleet, Job, known_fleet, mig_fleet

pytestmark = pytest.mark.realparts


def fill(data: Path, fleets: list[Fleet], vm: str | None = None, settle: bool = True) -> tuple[Hub, UsageExtension]:
    opts = HubOptions(data=data) if vm is None else \
        HubOptions(data=data, remote_write=f"{vm}/api/v1/write", history=f"prometheus+{vm}")
    hub = Hub(opts)
    ext = UsageExtension(hub)
    for fleet in fleets:
        for snaps in fleet.snapshots().values():
            for i in range(0, len(snaps), 60):
                hub.ingest(snaps[i:i + 60])
    if hub.remote is not None:
        assert hub.remote.flush(60), "remote write did not drain"
        st = hub.remote.stats()
        assert st.samples_failed == 0 and st.samples_sent > 0, st
        httpx.get(f"{vm}/internal/force_flush", timeout=10).raise_for_status()  # searchable now
    if settle:
        ext.settle()
    return hub, ext


def report(ext: UsageExtension, periods: list[tuple[float, float]], now: float) -> dict:
    with ext.record.lock:
        return {(by, a): {r[by]: r for r in usage(ext.db, a, b, by, now=now)}
                for by in ("user", "group", "job", "node") for a, b in periods}


def same(store: dict, history: dict) -> None:
    assert store.keys() == history.keys()
    for key, rows in store.items():
        assert rows.keys() == history[key].keys(), key
        for k, row in rows.items():
            for f in ("gpu_hours_in_use", "gpu_hours_busy", "mean_utilization", "energy_kwh", "waste_gpu_hours"):
                assert history[key][k][f] == pytest.approx(row[f], abs=1e-6), (key, k, f)


def test_settling_through_history_equals_the_embedded_store(tmp_path: Path) -> None:
    fleets = [known_fleet(groups={"alice": "ml", "bob": "vision"}), mig_fleet()]
    lo = min(f.t0 for f in fleets)
    hi = max(f.t0 + f.length for f in fleets)
    periods = [(lo - HOUR, hi + HOUR), (fleets[0].t0 + 17 * 60, fleets[0].t0 + 7 * HOUR + 180),
               (fleets[1].t0 + 50 * 60, fleets[1].t0 + 130 * 60)]
    reports = []
    with victoria_metrics(tmp_path) as (_, vm):
        for name, url in (("store", None), ("history", vm)):
            hub, ext = fill(tmp_path / name, fleets, url)
            try:
                assert (hub.store is None) == (url is not None)
                reports.append(report(ext, periods, hi + 3 * 86400))
                with ext.record.lock:
                    assert ext.db.execute("SELECT COUNT(*) FROM holds WHERE settled < end").fetchone()[0] == 0
            finally:
                ext.close()
                hub.close()
    store, history = reports
    same(store, history)
    # and both are the schedule's (the embedded store's figures are checked against it elsewhere)
    whole = store[("user", lo - HOUR)]
    assert whole["carol"]["gpu_hours_busy"] == pytest.approx(3 / 7 * 1.7, abs=1e-3)
    assert whole["alice"]["gpu_hours_busy"] == pytest.approx(4.0, abs=1e-3)


def test_a_live_hub_settles_only_what_the_history_answers(tmp_path: Path) -> None:
    """VictoriaMetrics leaves its newest samples out of query answers (-search.latencyOffset, 30 s
    by default; 10 s here to keep the test short): a hub settling right after its newest push
    stops at the newest sample the history gives, and settles the rest once it appears, losing
    nothing (it used to settle up to its newest push and lose the part the history lacked)."""
    now = math.floor(time.time())
    fleet = Fleet(t0=now - 600, nodes={"l1": 2}, jobs=[
        Job("fay", "l1", (0,), 60, 10 * HOUR, (0.5,), (200.0,), slurm="401"),  # running on
        Job("gus", "l1", (1,), 120, 540, (0.9,), (300.0,), container="face0ff1ce00")], length=600, step=10,
        groups={"fay": "ml", "gus": "ml"})
    periods = [(fleet.t0, fleet.t0 + 600)]
    with victoria_metrics(tmp_path, "-search.latencyOffset=10s") as (_, vm):
        base, base_ext = fill(tmp_path / "store", [fleet])
        hub, ext = fill(tmp_path / "history", [fleet], vm, settle=False)
        try:
            ext.settle(now=time.time())
            newest = ext.record.horizon("l1")
            assert newest == fleet.t0 + 600
            with ext.record.lock:
                (first,) = ext.db.execute("SELECT settled FROM holds WHERE user = 'fay'").fetchone()
            assert first < newest  # the last samples were not in the history's answer yet
            deadline = time.monotonic() + 60
            while first < newest and time.monotonic() < deadline:
                time.sleep(0.5)
                ext.settle(now=time.time())
                with ext.record.lock:
                    (first,) = ext.db.execute("SELECT settled FROM holds WHERE user = 'fay'").fetchone()
            assert first == newest
            history = report(ext, periods, now + 86400)
            same(report(base_ext, periods, now + 86400), history)
            for key, want in fleet.expected("user").items():
                assert history[("user", fleet.t0)][key]["gpu_hours_busy"] == pytest.approx(
                    want["gpu_hours_busy"], abs=1e-6)
        finally:
            for e, h in ((ext, hub), (base_ext, base)):
                e.close()
                h.close()
