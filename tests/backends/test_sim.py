"""The simulator: determinism, profile shapes, physics, jobs, faults, force(), cost."""

from __future__ import annotations

import time
from collections.abc import Iterator

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from gpufleet import catalogue
from gpufleet.backends.sim import USERS, SimBackend
from gpufleet.backends.sim_profiles import PROFILES, profile_names
from gpufleet.exposition import render
from gpufleet.snapshot import Gpu, NodeSnapshot, from_json, to_json
from conftest import FakeClock

T0 = 1_700_000_000.0
GPM = ("graphics_engine_active_ratio", "sm_active_ratio", "sm_occupancy_ratio",
       "tensor_active_ratio", "dram_active_ratio")


def make(profile: str = "8xH100", seed: int = 0, node: str = "n1") -> tuple[SimBackend, FakeClock]:
    clock = FakeClock(T0)
    b = SimBackend(profile, seed=seed, node=node, clock=clock)
    b.open()
    return b, clock


def run(b: SimBackend, clock: FakeClock, seconds: float, step: float) -> Iterator[list[Gpu]]:
    """Sample every `step` simulated seconds for `seconds`, first sample at the start."""
    yield b.sample()
    end = clock.t + seconds
    while clock.t < end:
        clock.t += step
        yield b.sample()


def encoded(gpus: list[Gpu]) -> bytes:
    return msgspec.json.encode(gpus)


# ---- determinism ---------------------------------------------------------------------------

def test_same_seed_same_times_give_identical_samples() -> None:
    a, ca = make(seed=7)
    b, cb = make(seed=7)
    for sa, sb in zip(run(a, ca, 7200, 137), run(b, cb, 7200, 137)):
        assert encoded(sa) == encoded(sb)


def test_different_seed_or_node_gives_different_samples() -> None:
    base = encoded(make(seed=1)[0].sample())
    assert encoded(make(seed=2)[0].sample()) != base
    assert encoded(make(seed=1, node="other")[0].sample()) != base


def test_state_follows_time_not_call_count() -> None:
    # Sampling twice at one instant changes nothing: time, not calls, drives the state.
    b, clock = make()
    first = b.sample()
    again = b.sample()
    assert [g.values for g in first] == [g.values for g in again]


# ---- profile shapes ----------------------------------------------------------------------------

def test_profile_names_cover_the_required_ones() -> None:
    names = profile_names()
    for required in ("8xH100", "4xA100-mig", "2xMI300X", "cpu-only", "4xL40S", "8xA100", "2xRTX4090"):
        assert required in names


def test_unknown_profile_is_named_with_the_valid_ones() -> None:
    with pytest.raises(ValueError) as e:
        SimBackend("16xB200")
    assert "16xB200" in str(e.value) and "8xH100" in str(e.value) and "cpu-only" in str(e.value)


@pytest.mark.parametrize("name", list(PROFILES))
def test_every_profile_uses_catalogue_keys_only(name: str) -> None:
    b, clock = make(name)
    gpu_keys, mig_keys = catalogue.keys("gpu"), catalogue.keys("mig")
    for gpus in run(b, clock, 1800, 60):
        assert len(gpus) == PROFILES[name].gpus
        for g in gpus:
            assert set(g.values) <= gpu_keys, set(g.values) - gpu_keys
            for m in g.mig:
                assert set(m.values) <= mig_keys
            assert g.values["up"] == 1.0


def test_8xH100_shape() -> None:
    gpus = make("8xH100")[0].sample()
    assert len(gpus) == 8
    assert len({g.uuid for g in gpus}) == 8
    assert [g.index for g in gpus] == list(range(8))
    for g in gpus:
        assert g.vendor == "nvidia" and g.model == "NVIDIA H100 80GB HBM3"
        assert g.uuid.startswith("GPU-")
        assert g.values["power_limit_watts"] == 700.0
        assert 79e9 < g.values["memory_total_bytes"] < 86e9
        assert all(k in g.values for k in GPM)
        assert "ecc_corrected_errors_total" in g.values and "fan_speed_ratio" not in g.values
        assert g.mig == [] and g.info["mig_mode"] == "Disabled"
        assert g.values["mig_instances"] == 0.0


def test_4xA100_mig_shape() -> None:
    gpus = make("4xA100-mig")[0].sample()
    assert len(gpus) == 4
    seen_profiles: set[str] = set()
    for g in gpus:
        assert g.model == "NVIDIA A100-SXM4-80GB" and g.info["mig_mode"] == "Enabled"
        assert g.mig and g.values["mig_instances"] == len(g.mig)
        assert not any(k in g.values for k in GPM)  # GPM is Hopper-only
        assert "utilization_ratio" not in g.values  # NVML gives none in MIG mode
        assert "ecc_uncorrected_errors_total" in g.values
        assert sum(m.values["memory_total_bytes"] for m in g.mig) <= g.values["memory_total_bytes"]
        assert len({m.uuid for m in g.mig}) == len(g.mig)
        ids = {m.gpu_instance for m in g.mig}
        for p in g.processes:
            assert p.gpu_instance in ids
        seen_profiles |= {m.profile for m in g.mig}
        for m in g.mig:
            assert m.uuid.startswith("MIG-")
            assert 0.0 <= m.values["graphics_engine_active_ratio"] <= 1.0
            assert m.values["memory_used_bytes"] <= m.values["memory_total_bytes"]
    assert {"3g.40gb", "2g.20gb", "1g.10gb"} <= seen_profiles


def test_2xMI300X_shape() -> None:
    gpus = make("2xMI300X")[0].sample()
    assert len(gpus) == 2
    for g in gpus:
        assert g.vendor == "amd" and g.model == "AMD Instinct MI300X"
        assert g.values["memory_total_bytes"] > 190e9
        assert g.values["power_limit_watts"] == 750.0
        for nvidia_only in (*GPM, "xid_errors_total", "last_xid", "performance_state",
                            "clock_throttle_reasons", "mig_instances"):
            assert nvidia_only not in g.values
        assert "ecc_corrected_errors_total" in g.values
        assert not g.uuid.startswith("GPU-")


def test_cpu_only_has_no_accelerators() -> None:
    b, clock = make("cpu-only")
    for gpus in run(b, clock, 600, 60):
        assert gpus == []


def test_consumer_and_passive_cards() -> None:
    for g in make("2xRTX4090")[0].sample():
        assert "ecc_corrected_errors_total" not in g.values  # GeForce: no ECC
        assert "fan_speed_ratio" in g.values and "memory_temperature_celsius" not in g.values
        assert "mig_mode" not in g.info
    for g in make("4xL40S")[0].sample():
        assert "fan_speed_ratio" not in g.values  # passively cooled
        assert "ecc_corrected_errors_total" in g.values


def test_every_device_says_it_is_a_gpu_in_its_info_series() -> None:
    # all-smi fills gpufleet_gpu_info{type} (GPU/NPU/TPU); the simulated NVIDIA and AMD boards are GPUs.
    for profile in ("8xH100", "2xMI300X"):
        snap = NodeSnapshot(node="n1", timestamp=T0, backend="sim", gpus=make(profile)[0].sample())
        fams = {f.name: f for f in text_string_to_metric_families(render(snap).decode())}
        assert [s.labels["type"] for s in fams[catalogue.name_of("gpu", "info")].samples] == ["GPU"] * len(snap.gpus)


def test_samples_encode_as_a_node_snapshot() -> None:
    gpus = make("4xA100-mig")[0].sample()
    snap = NodeSnapshot(node="n1", timestamp=T0, backend="sim", gpus=gpus)
    assert from_json(to_json(snap)).gpus == gpus


# ---- physics -----------------------------------------------------------------------------------

@settings(max_examples=25, deadline=None)
@given(name=st.sampled_from([n for n in PROFILES if PROFILES[n].gpus]),
       seed=st.integers(0, 2**31),
       steps=st.lists(st.floats(0.0, 1800.0), min_size=1, max_size=40))
def test_invariants_hold_for_any_sampling(name: str, seed: int, steps: list[float]) -> None:
    b, clock = make(name, seed)
    last_energy: dict[int, float] = {}
    last_counter: dict[tuple[int, int, str], float] = {}  # (gpu, link or -1, key) -> value
    counters = {m.key for m in catalogue.BY_SCOPE["gpu"] if m.kind == "counter"}
    link_counters = {m.key for m in catalogue.BY_SCOPE["gpu_link"] if m.kind == "counter"}
    limit = PROFILES[name].model.power_limit_w  # type: ignore[union-attr]
    for dt in [0.0, *steps]:
        clock.t += dt
        for g in b.sample():
            v = g.values
            if not g.up:
                continue
            for k, x in v.items():
                if k.endswith("_ratio"):
                    assert 0.0 <= x <= 1.0, (k, x)
            # every counter only grows, per GPU and per link
            got = [((g.index, -1, k), x) for k, x in v.items() if k in counters]
            got += [((g.index, link.link, k), x) for link in g.links for k, x in link.values.items()
                    if k in link_counters]
            for key, x in got:
                assert x >= last_counter.get(key, 0.0), key
                last_counter[key] = x
            assert 0.0 <= v["memory_used_bytes"] <= v["memory_total_bytes"]
            assert v["memory_used_bytes"] + v["memory_free_bytes"] + v["memory_reserved_bytes"] == \
                v["memory_total_bytes"]
            assert 0.0 < v["power_watts"] <= limit
            assert 15.0 <= v["temperature_celsius"] <= 100.0
            assert v["energy_joules_total"] >= last_energy.get(g.index, 0.0)
            last_energy[g.index] = v["energy_joules_total"]
            for p in g.processes:
                assert p.memory_bytes is not None and p.memory_bytes <= v["memory_used_bytes"]


def test_load_heats_and_idle_cools_with_lag() -> None:
    b, clock = make("8xH100", seed=3)
    b.force(0, utilization=0.0)
    cold = list(run(b, clock, 1200, 10))[-1][0].values
    b.force(0, utilization=1.0)
    clock.t += 10
    early = b.sample()[0].values
    hot = list(run(b, clock, 1200, 10))[-1][0].values
    b.force(0, utilization=0.0)
    cooled = list(run(b, clock, 1200, 10))[-1][0].values

    assert cold["power_watts"] < 120 and hot["power_watts"] > 650
    assert hot["temperature_celsius"] > cold["temperature_celsius"] + 25
    # Power answers in seconds; the die temperature lags behind it.
    assert early["power_watts"] > 500
    assert early["temperature_celsius"] < cold["temperature_celsius"] + 10
    assert cooled["power_watts"] < 120
    assert cooled["temperature_celsius"] < hot["temperature_celsius"] - 25
    assert hot["sm_clock_hertz"] > cold["sm_clock_hertz"]
    assert hot["performance_state"] == 0.0


def test_power_cap_throttle_at_full_load() -> None:
    b, clock = make("8xH100")
    b.force(1, utilization=1.0)
    g = list(run(b, clock, 300, 10))[-1][1]
    assert "sw_power_cap" in g.throttle_reasons
    assert int(g.values["clock_throttle_reasons"]) & 0x4
    assert g.values["power_watts"] >= 0.95 * g.values["power_limit_watts"]


def test_power_and_temperature_follow_utilisation_in_a_natural_run() -> None:
    b, clock = make("8xH100", seed=11)
    busy: list[tuple[float, float]] = []
    idle: list[tuple[float, float]] = []
    for gpus in run(b, clock, 6 * 3600, 60):
        for g in gpus:
            if not g.up:
                continue
            u = g.values["utilization_ratio"]
            pair = (g.values["power_watts"], g.values["temperature_celsius"])
            (busy if u > 0.8 else idle if u < 0.05 else []).append(pair)
    assert busy and idle
    mean = lambda xs, i: sum(x[i] for x in xs) / len(xs)  # noqa: E731
    assert mean(busy, 0) > mean(idle, 0) + 300
    assert mean(busy, 1) > mean(idle, 1) + 20


def test_energy_is_power_times_time() -> None:
    b, clock = make("8xH100")
    b.force(2, utilization=1.0)
    list(run(b, clock, 300, 10))  # settle at the cap
    e0 = b.sample()[2].values["energy_joules_total"]
    clock.t += 100
    g = b.sample()[2].values
    assert g["energy_joules_total"] - e0 == pytest.approx(100 * g["power_watts"], rel=0.05)


def test_big_clock_jumps_and_backward_steps_are_safe() -> None:
    b, clock = make("8xH100")
    e0 = b.sample()[0].values["energy_joules_total"]
    clock.t += 30 * 86400  # a month without samples
    started = time.process_time()
    e1 = b.sample()[0].values["energy_joules_total"]
    assert time.process_time() - started < 0.5
    assert e1 > e0 + 30 * 86400 * 50
    clock.t -= 3600  # NTP stepped back
    assert b.sample()[0].values["energy_joules_total"] == e1


# ---- jobs and users --------------------------------------------------------------------------

def test_jobs_start_and_end_with_owners() -> None:
    b, clock = make("8xH100", seed=5)
    first_pids: set[int] = set()
    seen: dict[int, tuple[int, int]] = {}  # pid -> (first sample, last sample)
    owners = {"container": 0, "pod": 0, "slurm": 0}
    jumps_up = jumps_down = 0
    mem: dict[int, list[int]] = {}  # pid -> memory seen over its life
    prev: list[Gpu] | None = None
    for i, gpus in enumerate(run(b, clock, 3 * 3600, 30)):
        for g in gpus:
            for p in g.processes:
                if i == 0:
                    first_pids.add(p.pid)
                seen.setdefault(p.pid, (i, i))
                seen[p.pid] = (seen[p.pid][0], i)
                mem.setdefault(p.pid, []).append(p.memory_bytes or 0)
                assert p.pid >= 400_000 and p.user in USERS and p.command
                assert p.owner is not None and p.memory_bytes is not None and p.memory_bytes > 0
                owners["container"] += bool(p.owner.container)
                owners["pod"] += bool(p.owner.pod and p.owner.namespace)
                owners["slurm"] += bool(p.owner.slurm_job)
            if prev is not None:
                before = prev[g.index]
                if not before.processes and g.processes:
                    jumps_up += g.values["memory_used_bytes"] > before.values["memory_used_bytes"]
                if before.processes and not g.processes and g.up:
                    jumps_down += g.values["memory_used_bytes"] < before.values["memory_used_bytes"]
        prev = gpus
    last = i
    started_later = [p for p, (a, _) in seen.items() if a > 0]
    ended = [p for p, (_, z) in seen.items() if z < last]
    assert first_pids, "a node starts with jobs running"
    assert len(started_later) >= 5 and len(ended) >= 5
    assert all(owners.values()), owners
    assert jumps_up >= 3 and jumps_down >= 3
    # A process starts with its CUDA context and allocates its tensors after loading.
    allocating = [m for p, m in mem.items() if min(m) <= 2**29 and max(m) > 4 * 2**30]
    assert len(allocating) >= 3


def test_an_allocated_gpu_sits_idle_for_a_long_time() -> None:
    # The "waste" case: processes holding memory, utilisation under 5% for 40 minutes.
    for name in ("8xH100", "4xL40S", "2xMI300X"):
        b, clock = make(name, seed=9)
        idle_all_along: set[str] | None = None
        for gpus in run(b, clock, 40 * 60, 60):
            now = {g.uuid for g in gpus if g.processes and g.values.get("utilization_ratio", 1) < 0.05
                   and g.values["memory_used_bytes"] > 2**30}
            idle_all_along = now if idle_all_along is None else idle_all_along & now
        if name == "2xMI300X":
            continue  # too few GPUs to guarantee one; larger profiles always have one
        assert idle_all_along, name


# ---- faults and force() -----------------------------------------------------------------------

def test_an_xid_happens_over_a_long_run() -> None:
    b, clock = make("8xH100", seed=0)
    counted: dict[int, int] = {}
    last: dict[int, float] = {}
    corrected = 0.0
    for gpus in run(b, clock, 12 * 3600, 60):
        for g in gpus:
            xids = [e for e in g.events if e.startswith("xid ")]
            counted[g.index] = counted.get(g.index, 0) + len(xids)
            if g.up:
                assert g.values["xid_errors_total"] == counted[g.index]
                last[g.index] = g.values["last_xid"]
                corrected += g.values["ecc_corrected_errors_total"]
    assert sum(counted.values()) >= 1
    assert {int(x) for x in last.values()} <= {0, 13, 31, 43, 48, 79}
    assert any(last.values())
    assert corrected > 0


def test_amd_has_no_xids() -> None:
    b, clock = make("2xMI300X", seed=0)
    for gpus in run(b, clock, 12 * 3600, 300):
        for g in gpus:
            assert not any(e.startswith("xid") for e in g.events)


def test_force_hot_then_release() -> None:
    b, clock = make("8xH100")
    b.force(2, temperature=95.0)
    g = list(run(b, clock, 30, 10))[-1][2]
    assert g.values["temperature_celsius"] == 95.0
    assert "sw_thermal_slowdown" in g.throttle_reasons and "hw_thermal_slowdown" in g.throttle_reasons
    b.force(2)
    g = list(run(b, clock, 1800, 10))[-1][2]
    assert g.values["temperature_celsius"] < 80.0


def test_force_idle_keeps_processes() -> None:
    b, clock = make("8xH100", seed=4)
    busy = next(g.index for g in b.sample() if g.processes)
    b.force(busy, utilization=0.0)
    g = list(run(b, clock, 120, 10))[-1][busy]
    assert g.values["utilization_ratio"] == 0.0 and g.values["graphics_engine_active_ratio"] == 0.0


def test_force_lost_then_back() -> None:
    b, clock = make("8xH100")
    busy = next(g for g in b.sample() if g.processes)
    n = busy.index
    before = {p.pid for p in busy.processes}
    b.force(n, lost=True)
    clock.t += 10
    gpus = b.sample()
    lost = gpus[n]
    assert lost.up is False and lost.values == {"up": 0.0} and lost.processes == []
    assert lost.uuid and lost.model
    assert all(g.up for g in gpus if g.index != n)
    b.force(n)
    clock.t += 10
    back = b.sample()[n]
    assert back.up and back.values["up"] == 1.0
    assert not before & {p.pid for p in back.processes}  # its processes died with it


def test_force_rejects_bad_arguments() -> None:
    b, _ = make("2xRTX4090")
    with pytest.raises(ValueError, match="no GPU 5"):
        b.force(5, temperature=90)
    with pytest.raises(ValueError, match="0-1"):
        b.force(0, utilization=1.5)


def test_force_before_first_sample() -> None:
    b, _ = make("8xH100")
    b.force(0, temperature=91.0)
    assert b.sample()[0].values["temperature_celsius"] == 91.0


def test_default_clock_is_wall_time() -> None:
    b = SimBackend("2xRTX4090")
    b.open()
    assert len(b.sample()) == 2
    b.close()
