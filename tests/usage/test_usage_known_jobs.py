"""Accounting on a simulated fleet with known jobs: the report equals the schedule, to the minute.

The fleet (simfleet.py) is pushed through the hub's ingest with crafted snapshots; the usage
extension records holders on change and settles figures from the embedded store.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from gpufleet.hub.service import Hub, HubOptions
from gpufleet.hub.usage.extension import UsageExtension
from gpufleet.hub.usage.report import usage
from simfleet import HOUR, MIN, Fleet, known_fleet, mig_fleet

MINUTE_H = 1 / 60  # "to the minute", in hours


def close(got: dict, want: dict) -> None:
    assert set(got) == set(want), (sorted(got), sorted(want))
    for key, w in want.items():
        g = got[key]
        for f in ("gpu_hours_in_use", "gpu_hours_busy", "waste_gpu_hours"):
            assert abs(g[f] - w[f]) < 1e-3, (key, f, g[f], w[f])
        assert abs(g["energy_kwh"] - w["energy_kwh"]) < 1e-4, (key, g["energy_kwh"], w["energy_kwh"])
        assert abs(g["mean_utilization"] - w["mean_utilization"]) < 1e-3, (key, g, w)


def fill(tmp: Path, fleet: Fleet) -> tuple[Hub, UsageExtension]:
    hub = Hub(HubOptions(data=tmp / "data", price_gpu_hour=2.0, price_kwh=0.25))
    ext = UsageExtension(hub)
    for node, snaps in fleet.snapshots().items():
        for i in range(0, len(snaps), 60):
            hub.ingest(snaps[i:i + 60])
    ext.settle()
    return hub, ext


@pytest.fixture(scope="module")
def filled(tmp_path_factory: pytest.TempPathFactory):
    fleet = known_fleet()
    hub, ext = fill(tmp_path_factory.mktemp("usage"), fleet)
    yield fleet, hub, ext
    ext.close()
    hub.close()


def rows(ext: UsageExtension, by: str, since: float, until: float) -> dict[str, dict]:
    with ext.record.lock:
        return {r[by]: r for r in usage(ext.db, since, until, by, now=until + 86400 * 3, prices=ext.prices)}


@pytest.mark.parametrize("by", ["user", "node", "job"])
def test_whole_run_equals_schedule(filled, by: str) -> None:
    fleet, _, ext = filled
    end = fleet.t0 + fleet.length
    close(rows(ext, by, fleet.t0 - 86400, end + HOUR), fleet.expected(by))


@pytest.mark.parametrize("since_m,until_m", [(120, 270), (17, 7 * 60 + 3), (3 * 60, 3 * 60 + 1), (95, 185)])
def test_any_period_to_the_minute(filled, since_m: int, until_m: int) -> None:
    """Periods that start and end inside hours and days (T0 + 3 h is a UTC midnight)."""
    fleet, _, ext = filled
    since, until = fleet.t0 + since_m * MIN, fleet.t0 + until_m * MIN
    for by in ("user", "node"):
        close(rows(ext, by, since, until), fleet.expected(by, since, until))


def test_cost_events_and_waste(filled) -> None:
    fleet, hub, ext = filled
    r = rows(ext, "user", fleet.t0, fleet.t0 + fleet.length)["alice"]
    assert r["waste_gpu_hours"] == pytest.approx(5.0, abs=MINUTE_H)  # GPU 1 held 5 h at 0 %
    assert r["cost"] == pytest.approx(10.0 * 2.0 + 1.8 * 0.25, abs=0.01)
    kinds = dict(ext.db.execute("SELECT kind, COUNT(*) FROM events GROUP BY kind").fetchall())
    # alice: 2 GPUs; bob: container on GPU 0 and a bare process on GPU 1 (no job)
    assert kinds == {"gpu_taken": 4, "gpu_released": 4, "job_started": 2, "job_ended": 2}


def test_allocations_with_groups_equal_the_schedule(tmp_path: Path) -> None:
    """The same fleet reported by the agent's allocations (with groups, and idle_held on alice's
    unused GPU at every collection): the same figures, rolled up by group too."""
    fleet = known_fleet(groups={"alice": "ml", "bob": "vision"})
    hub, ext = fill(tmp_path, fleet)
    try:
        end = fleet.t0 + fleet.length
        for by in ("group", "user", "job"):
            close(rows(ext, by, fleet.t0, end), fleet.expected(by))
        assert ext.db.execute("SELECT COUNT(*) FROM holds").fetchone()[0] == 4  # one per GPU and holder
    finally:
        ext.close()
        hub.close()


def test_mig_holders_busy_by_their_slices(tmp_path: Path) -> None:
    """A MIG GPU reports no whole-GPU utilisation (NVML): each holder's busy and idle hours come
    from its own slices' activity, busy periods and all, to the minute; a whole GPU beside it as before."""
    fleet = mig_fleet()
    hub, ext = fill(tmp_path, fleet)
    try:
        end = fleet.t0 + fleet.length
        for by in ("user", "job", "group"):
            close(rows(ext, by, fleet.t0, end), fleet.expected(by))
        # Periods whose edges cut hours where nothing changes (a part of an hour shares that hour's
        # figures by time held, docs/accounting.md), and whole hours around carol's idle 40 minutes.
        for since_m, until_m in ((50, 130), (60, 180), (130, 250), (140, 170)):
            since, until = fleet.t0 + since_m * MIN, fleet.t0 + until_m * MIN
            close(rows(ext, "user", since, until), fleet.expected("user", since, until))
        r = rows(ext, "user", fleet.t0, end)
        # carol's 3g slice (3/7): 1 h at 90 %, 40 min idle, 1 h 20 min at 60 %
        assert r["carol"]["gpu_hours_busy"] == pytest.approx(3 / 7 * (0.9 + 0.6 * 80 / 60), abs=MINUTE_H)
        assert r["carol"]["waste_gpu_hours"] == pytest.approx(3 / 7 * 40 / 60, abs=MINUTE_H)
        # dave: 2g at 30 % and an idle 1g in one hold of 3/7; the idle slice is waste, the busy one is not
        assert r["dave"]["mean_utilization"] == pytest.approx(0.3 * 2 / 3, abs=1e-3)
        assert r["dave"]["waste_gpu_hours"] == pytest.approx(3 * 1 / 7, abs=MINUTE_H)
        holds = ext.db.execute("SELECT user, eq, mig FROM holds ORDER BY user").fetchall()
        assert holds == [("carol", round(3 / 7, 6), f"1:{round(3 / 7, 6)}"),
                         ("dave", round(3 / 7, 6), f"2:{round(2 / 7, 6)},3:{round(1 / 7, 6)}"), ("erin", 1.0, "")]
    finally:
        ext.close()
        hub.close()


def test_settling_as_it_goes_with_sub_second_times(tmp_path: Path) -> None:
    """A live hub settles every 30 s up to each node's newest snapshot, whose time is rarely a
    whole second (the store answers in one-second bins): step after step, nothing is lost or
    counted twice, and the report still equals the schedule to the minute."""
    base = known_fleet(groups={"alice": "ml", "bob": "vision"})
    fleet = Fleet(t0=base.t0 + 0.37, nodes=base.nodes, jobs=base.jobs, length=base.length, groups=base.groups)
    hub = Hub(HubOptions(data=tmp_path / "data"))
    ext = UsageExtension(hub)
    try:
        snaps = fleet.snapshots()
        for i in range(0, len(snaps["n1"]), 7):  # a settle step after every 7 snapshots of each node
            for s in snaps.values():
                hub.ingest(s[i:i + 7])
            ext.settle(now=fleet.t0 + (i + 7) * fleet.step)
        end = fleet.t0 + fleet.length
        for by in ("user", "job"):
            close(rows(ext, by, fleet.t0, end), fleet.expected(by))
    finally:
        ext.close()
        hub.close()
