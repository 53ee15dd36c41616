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
from gpufleet.hub.usage import settle
from gpufleet.hub.usage.extension import UsageExtension
from gpufleet.hub.usage.report import usage
from realparts import victoria_metrics
from simfleet import HOUR, Fleet, Job, known_fleet, mig_fleet

pytestmark = pytest.mark.realparts


def fill(data: Path, fleets: list[Fleet], vm: str | None = None, settle: bool = True,
         write: bool = True) -> tuple[Hub, UsageExtension]:
    """A hub given the fleets' snapshots: embedded store, or (vm) --history from VictoriaMetrics and
    (write) --remote-write to it."""
    opts = HubOptions(data=data) if vm is None else \
        HubOptions(data=data, remote_write=f"{vm}/api/v1/write" if write else None, history=f"prometheus+{vm}")
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


LATENCY_S = 20  # VictoriaMetrics' -search.latencyOffset here (30 s by default)


def settled(ext: UsageExtension) -> list[float]:
    with ext.record.lock:
        return [r[0] for r in ext.db.execute("SELECT settled FROM holds ORDER BY id")]


def test_a_live_hub_settles_only_what_the_history_has(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Live, the history lags: samples still on their way (remote write), and VictoriaMetrics
    answers for its newest -search.latencyOffset with the sample before repeated (a counter
    standing still). A hub settled up to its newest push, counting nothing where samples were
    missing and too little energy where repeated. It now waits for them: it settles no closer
    than HISTORY_DELAY_S to now (60 s for the default 30 s; 25 s for 20 s here, to keep the test
    short) and no further than its GPU's newest sample, and loses nothing."""
    monkeypatch.setattr(settle, "HISTORY_DELAY_S", LATENCY_S + 5.0)
    with victoria_metrics(tmp_path, f"-search.latencyOffset={LATENCY_S}s") as (_, vm):
        now = math.floor(time.time())  # VictoriaMetrics is up: the clock of the test starts
        fleet = Fleet(t0=now - 600, nodes={"l1": 2}, jobs=[
            Job("fay", "l1", (0,), 60, 10 * HOUR, (0.5,), (200.0,), slurm="401"),  # running on
            Job("gus", "l1", (1,), 120, 540, (0.9,), (300.0,), container="face0ff1ce00")], length=600, step=10,
            groups={"fay": "ml", "gus": "ml"})
        periods = [(fleet.t0, fleet.t0 + 600)]
        # A hub reading VictoriaMetrics before any of the samples reached it ...
        reader, rext = fill(tmp_path / "reader", [fleet], vm, settle=False, write=False)
        # ... and one that sends them there (--remote-write) and reads them back (--history).
        hub, ext = None, None
        try:
            at = time.time()
            rext.settle(now=at)
            with rext.record.lock:
                starts = [r[0] for r in rext.db.execute("SELECT start FROM holds ORDER BY id")]
            assert settled(rext) == starts  # nothing there yet: nothing settled (it was: all, as 0)
            hub, ext = fill(tmp_path / "history", [fleet], vm, settle=False)
            # On a loaded machine filling can take longer than the delay: keep the newest push
            # inside the delay all the same, or the check below would not test the wait.
            monkeypatch.setattr(settle, "HISTORY_DELAY_S", max(LATENCY_S + 5.0, time.time() - now + 10.0))
            at = time.time()
            ext.settle(now=at)
            assert max(settled(ext)) <= at - settle.HISTORY_DELAY_S < fleet.t0 + 600  # not what VM repeats
            ends = [fleet.t0 + 540, fleet.t0 + 600]  # gus ended, fay's still running: to the newest push
            deadline = time.monotonic() + 60 + settle.HISTORY_DELAY_S
            while (sorted(settled(ext)) != sorted(ends) or sorted(settled(rext)) != sorted(ends)) \
                    and time.monotonic() < deadline:
                time.sleep(0.5)
                ext.settle(now=time.time())
                rext.settle(now=time.time())
            assert sorted(settled(ext)) == sorted(ends) and sorted(settled(rext)) == sorted(ends)
            history = [report(e, periods, now + 86400) for e in (ext, rext)]
        finally:
            for e, h in ((ext, hub), (rext, reader)):
                if e is not None and h is not None:
                    e.close()
                    h.close()
    base, base_ext = fill(tmp_path / "store", [fleet])
    try:
        want = report(base_ext, periods, now + 86400)
    finally:
        base_ext.close()
        base.close()
    for got in history:
        same(want, got)
    for key, w in fleet.expected("user").items():
        assert want[("user", fleet.t0)][key]["gpu_hours_busy"] == pytest.approx(w["gpu_hours_busy"], abs=1e-6)
