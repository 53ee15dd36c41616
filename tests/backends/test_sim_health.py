"""The simulator's health readings: NVLink traffic in multi-GPU jobs, throttle time while capped
or hot, memory repair counters, and the fault profile that makes alerts fire (fixed seeds)."""

from __future__ import annotations

from collections.abc import Iterator

from gpufleet import catalogue
from gpufleet.backends.sim import SimBackend
from gpufleet.snapshot import Gpu
from conftest import FakeClock

T0 = 1_700_000_000.0


def run(profile: str, seconds: float, step: float = 60.0, seed: int = 0,
        before: object = None) -> Iterator[tuple[SimBackend, list[Gpu]]]:
    clock = FakeClock(T0)
    b = SimBackend(profile, seed=seed, node="n1", clock=clock)
    end = clock.t + seconds
    while clock.t <= end:
        yield b, b.sample()
        clock.t += step


def test_links_report_catalogue_keys_and_their_totals() -> None:
    gpus = next(run("8xH100", 0))[1]
    link_keys = catalogue.keys("gpu_link")
    for g in gpus:
        assert [x.link for x in g.links] == list(range(18))
        for link in g.links:
            assert set(link.values) <= link_keys and link.values["up"] == 1.0
        assert g.values["nvlink_links_active"] == 18.0
        assert g.values["nvlink_transmit_bytes_total"] == sum(x.values["transmit_bytes_total"] for x in g.links)


def test_nvlink_carries_multi_gpu_jobs_and_stays_quiet_otherwise() -> None:
    busy_seen = quiet_seen = False
    for b, gpus in run("8xH100", 6 * 3600, seed=2):
        multi = {gpu for job in b.jobs() if len(job["gpus"]) > 1 and job["phase"] == "compute"  # type: ignore[arg-type]
                 for gpu in job["gpus"]}  # type: ignore[attr-defined]
        single = {g.index for g in gpus} - {gpu for job in b.jobs() for gpu in job["gpus"]  # type: ignore[attr-defined]
                                            if len(job["gpus"]) > 1}  # type: ignore[arg-type]
        for g in gpus:
            util = max(x.values["utilization_ratio"] for x in g.links)
            if g.index in multi and util > 0.2:
                busy_seen = True
            if g.index in single:
                assert util < 0.001, (g.index, util)
                quiet_seen = True
    assert busy_seen and quiet_seen


def test_power_and_thermal_throttle_time_accumulate_while_capped_or_hot() -> None:
    clock = FakeClock(T0)
    b = SimBackend("8xH100", seed=1, node="n1", clock=clock)
    b.force(0, utilization=1.0)
    b.force(1, utilization=0.3, temperature=95.0)
    first = b.sample()
    clock.t += 600.0
    later = b.sample()
    power = [later[i].values["throttle_power_seconds_total"] - first[i].values["throttle_power_seconds_total"]
             for i in (0, 1)]
    thermal = [later[i].values["throttle_thermal_seconds_total"] - first[i].values["throttle_thermal_seconds_total"]
               for i in (0, 1)]
    assert power[0] > 500.0 and thermal[0] == 0.0  # at the power cap nearly all the time, not hot
    assert thermal[1] == 600.0 and power[1] == 0.0  # hot all the time, far from the cap


def test_hopper_remaps_rows_and_volta_retires_pages() -> None:
    h100 = next(run("8xH100", 0))[1][0].values
    v100 = next(run("4xV100", 0))[1][0].values
    assert "remapped_rows_uncorrectable_total" in h100 and "retired_pages_pending" not in h100
    assert "retired_pages_pending" in v100 and "remapped_rows_failure" not in v100
    assert len(next(run("4xV100", 0))[1][0].links) == 6
    for v in (h100, v100):
        assert v["ecc_corrected_errors_aggregate_total"] >= v["ecc_corrected_errors_total"]
    amd = next(run("2xMI300X", 0))[1][0]
    assert len(amd.links) == 7 and "remapped_rows_failure" not in amd.values  # XGMI, no NVIDIA memory repair
    assert "crc_flit_errors_total" not in amd.links[0].values


def test_the_fault_profile_fails_memory_flakes_a_link_and_runs_hot() -> None:
    pending_seen = failure_at = None
    xids: set[int] = set()
    last: list[Gpu] = []
    first: list[Gpu] = []
    for _, gpus in run("8xH100-faults", 4 * 3600, seed=0):
        first = first or gpus
        last = gpus
        for g in gpus:
            xids |= {int(e.split()[1]) for e in g.events if e.startswith("xid ")}
        g3 = gpus[3].values
        if g3.get("remapped_rows_pending") == 1.0 and pending_seen is None:
            pending_seen = True
        if g3.get("remapped_rows_failure") == 1.0 and failure_at is None:
            failure_at = True
    assert pending_seen and failure_at
    assert {63, 64} <= xids
    healthy = [g for g in last if g.index not in (1, 3, 5) and g.up]
    assert all(g.values["remapped_rows_failure"] == 0.0 for g in healthy)
    crc = [x.links[0].values["crc_flit_errors_total"] for x in (first[5], last[5])]
    assert crc[1] - crc[0] > 100  # the flaky link keeps throwing errors
    assert all(g.links[0].values["crc_flit_errors_total"] < 5 for g in healthy)
    assert last[1].values["throttle_thermal_seconds_total"] > max(g.values["throttle_thermal_seconds_total"]
                                                                  for g in healthy)
