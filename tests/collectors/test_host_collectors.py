"""system, cpu, memory, network and users collectors on fixture trees."""

from __future__ import annotations

import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest

from gpufleet.collectors.base import CollectContext
from gpufleet.collectors.cpu import FREQ_TTL, CpuCollector
from gpufleet.collectors.memory import MemoryCollector, memory_values
from gpufleet.collectors.network import NetworkCollector
from gpufleet.collectors.system import SystemCollector
from gpufleet.collectors.users import UsersCollector
from gpufleet.snapshot import NodeSnapshot
from conftest import FIXTURES as ALL_FIXTURES, FakeClock

FIXTURES = ALL_FIXTURES / "proc"


def snap(ts: float = 1700086400.0) -> NodeSnapshot:
    return NodeSnapshot(node="n", timestamp=ts)


@pytest.fixture
def proc(tmp_path: Path) -> Path:
    """A writable copy of the fixture /proc."""
    root = tmp_path / "proc"
    shutil.copytree(FIXTURES, root)
    return root


def write_topology(sysfs: Path, siblings: dict[int, str], package: str = "0") -> None:
    for cpu, sib in siblings.items():
        topo = sysfs / "devices" / "system" / "cpu" / f"cpu{cpu}" / "topology"
        topo.mkdir(parents=True)
        (topo / "core_cpus_list").write_text(sib + "\n")
        (topo / "physical_package_id").write_text(package + "\n")


# ---- system ---------------------------------------------------------------------------------


def test_system_host_identity(tmp_path: Path) -> None:
    release = tmp_path / "os-release"
    release.write_text('NAME="Rocky Linux"\nVERSION_ID="9.3"\nID="rocky"\n')
    sysfs = tmp_path / "sys"
    write_topology(sysfs, {0: "0-1", 1: "0-1"})
    c = SystemCollector(CollectContext(procfs=FIXTURES, sysfs=sysfs, options={"os_release_paths": [release]}))
    s = snap(1700000000.0 + 3600)
    c.collect(s)
    h = s.host
    assert (h.hostname, h.os, h.os_version, h.kernel) == ("gpu-node-01", "Rocky Linux", "9.3", "6.1.0-18-amd64")
    assert h.cpu_model == "Intel(R) Xeon(R) Gold 6338 CPU @ 2.00GHz"
    assert h.boot_time == 1700000000.0 and h.arch
    assert s.values["boot_time_seconds"] == 1700000000.0
    assert s.values["uptime_seconds"] == 3600.0
    assert s.values["cpu_cores"] == 2.0
    assert s.values["cpu_physical_cores"] == 1.0  # two hyperthreads of one core


def test_system_physical_cores_from_cpuinfo_and_two_sockets(tmp_path: Path) -> None:
    no_sysfs = CollectContext(procfs=FIXTURES, sysfs=tmp_path / "none", options={"os_release_paths": []})
    s = snap()
    SystemCollector(no_sysfs).collect(s)
    assert s.values["cpu_physical_cores"] == 1.0  # cpuinfo: both on physical 0, core 0
    assert s.host.os  # falls back to platform.system()
    sysfs = tmp_path / "sys"
    write_topology(sysfs, {0: "0"}, package="0")
    write_topology(sysfs, {1: "0"}, package="1")  # same sibling list, other socket
    s = snap()
    SystemCollector(CollectContext(procfs=FIXTURES, sysfs=sysfs)).collect(s)
    assert s.values["cpu_physical_cores"] == 2.0


def test_system_reads_once(proc: Path) -> None:
    c = SystemCollector(CollectContext(procfs=proc))
    c.collect(snap())
    (proc / "sys" / "kernel" / "hostname").write_text("renamed\n")
    s = snap(1700000000.0 + 10)
    c.collect(s)
    assert s.host.hostname == "gpu-node-01"
    assert s.values["uptime_seconds"] == 10.0


def test_system_without_proc_stat_fails(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="stat"):
        SystemCollector(CollectContext(procfs=tmp_path)).collect(snap())


# ---- cpu ------------------------------------------------------------------------------------


def stat_text(cpu0: tuple[int, int], cpu1: tuple[int, int]) -> str:
    """cpuN (user, idle) with the other fields zero; the aggregate is their sum."""
    tot = (cpu0[0] + cpu1[0], cpu0[1] + cpu1[1])
    return (f"cpu {tot[0]} 0 0 {tot[1]} 0 0 0 0 0 0\ncpu0 {cpu0[0]} 0 0 {cpu0[1]} 0 0 0 0 0 0\n"
            f"cpu1 {cpu1[0]} 0 0 {cpu1[1]} 0 0 0 0 0 0\nbtime 1700000000\n")


def test_cpu_utilisation_is_the_delta_since_the_last_collection(proc: Path, tmp_path: Path) -> None:
    (proc / "stat").write_text(stat_text((100, 900), (0, 1000)))
    c = CpuCollector(CollectContext(procfs=proc, sysfs=tmp_path / "nosys"))
    (proc / "stat").write_text(stat_text((150, 950), (100, 1000)))
    s = snap()
    c.collect(s)
    per = {core.cpu: core.values for core in s.cpus}
    assert per[0]["utilization_ratio"] == 0.5
    assert per[1]["utilization_ratio"] == 1.0
    assert s.values["cpu_utilization_ratio"] == pytest.approx(150 / 200)
    # No time passed: no utilisation rather than a division by zero.
    s = snap()
    c.collect(s)
    assert "cpu_utilization_ratio" not in s.values
    assert all("utilization_ratio" not in core.values for core in s.cpus)
    assert s.values["load1"] == 0.52 and s.values["load5"] == 0.58 and s.values["load15"] == 0.59


def test_cpu_counters_going_backwards_give_no_reading(proc: Path) -> None:
    (proc / "stat").write_text(stat_text((500, 500), (500, 500)))
    c = CpuCollector(CollectContext(procfs=proc))
    (proc / "stat").write_text(stat_text((100, 1000), (600, 600)))
    s = snap()
    c.collect(s)
    per = {core.cpu: core.values for core in s.cpus}
    assert "utilization_ratio" not in per[0]
    assert per[1]["utilization_ratio"] == 0.5


def test_cpu_frequency_from_cpuinfo_when_no_cpufreq(tmp_path: Path) -> None:
    s = snap()
    CpuCollector(CollectContext(procfs=FIXTURES, sysfs=tmp_path)).collect(s)
    per = {core.cpu: core.values for core in s.cpus}
    assert per[0]["frequency_hertz"] == 2.0e9
    assert per[1]["frequency_hertz"] == 3.1005e9
    assert s.values["cpu_frequency_hertz"] == pytest.approx((2.0e9 + 3.1005e9) / 2)


def test_cpu_frequency_from_sysfs_is_cached(tmp_path: Path) -> None:
    sysfs = tmp_path / "sys"
    for cpu, khz in ((0, 1200000), (1, 2400000)):
        d = sysfs / "devices" / "system" / "cpu" / f"cpu{cpu}" / "cpufreq"
        d.mkdir(parents=True)
        (d / "scaling_cur_freq").write_text(f"{khz}\n")
    clock = FakeClock()
    c = CpuCollector(CollectContext(procfs=FIXTURES, sysfs=sysfs), clock=clock)
    s = snap()
    c.collect(s)
    assert [core.values["frequency_hertz"] for core in s.cpus] == [1.2e9, 2.4e9]
    assert s.values["cpu_frequency_hertz"] == 1.8e9
    (sysfs / "devices/system/cpu/cpu0/cpufreq/scaling_cur_freq").write_text("3000000\n")
    clock.t += FREQ_TTL / 2
    s = snap()
    c.collect(s)
    assert s.cpus[0].values["frequency_hertz"] == 1.2e9  # still the cached reading
    clock.t += FREQ_TTL
    s = snap()
    c.collect(s)
    assert s.cpus[0].values["frequency_hertz"] == 3.0e9


def test_cpu_without_proc_stat_fails(tmp_path: Path) -> None:
    c = CpuCollector(CollectContext(procfs=tmp_path))
    with pytest.raises(RuntimeError):
        c.collect(snap())


# ---- memory ---------------------------------------------------------------------------------


def test_memory_from_fixture() -> None:
    s = snap()
    MemoryCollector(CollectContext(procfs=FIXTURES)).collect(s)
    kib = 1024.0
    assert s.values["memory_total_bytes"] == 16384000 * kib
    assert s.values["memory_available_bytes"] == 8192000 * kib
    assert s.values["memory_used_bytes"] == (16384000 - 8192000) * kib
    assert s.values["swap_total_bytes"] == 4194304 * kib
    assert s.values["swap_used_bytes"] == (4194304 - 3145728) * kib


def test_memory_without_memavailable_uses_free_plus_cache() -> None:
    v = memory_values({"MemTotal": 1000, "MemFree": 100, "Buffers": 50, "Cached": 200})
    assert v["memory_available_bytes"] == 350.0 and v["memory_used_bytes"] == 650.0
    assert v["swap_total_bytes"] == 0.0 and v["swap_used_bytes"] == 0.0


def test_memory_failures(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="meminfo"):
        MemoryCollector(CollectContext(procfs=tmp_path)).collect(snap())
    (tmp_path / "meminfo").write_text("garbage\n")
    with pytest.raises(RuntimeError, match="MemTotal"):
        MemoryCollector(CollectContext(procfs=tmp_path)).collect(snap())


# ---- network --------------------------------------------------------------------------------


def test_network_interfaces() -> None:
    s = snap()
    NetworkCollector(CollectContext(procfs=FIXTURES)).collect(s)
    nets = {n.interface: n.values for n in s.networks}
    assert list(nets) == ["lo", "eth0", "ib0"]
    assert nets["eth0"] == {
        "receive_bytes_total": 9876543210.0, "transmit_bytes_total": 1234567890.0,
        "receive_packets_total": 6543210.0, "transmit_packets_total": 3210987.0,
        "receive_errors_total": 3.0, "transmit_errors_total": 5.0,
        "receive_drops_total": 4.0, "transmit_drops_total": 6.0,
    }


def test_network_missing_file_fails(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError):
        NetworkCollector(CollectContext(procfs=tmp_path)).collect(snap())


# ---- users ----------------------------------------------------------------------------------


def test_users_from_source() -> None:
    sessions = [
        SimpleNamespace(name="ann", terminal="pts/0", host="10.0.0.5", started=1700000100.0, pid=4321),
        SimpleNamespace(name="bob", terminal=None, host=None, started=1700000200.0, pid=None),
    ]
    s = snap()
    UsersCollector(CollectContext(), source=lambda: sessions).collect(s)
    assert s.values["users_logged_in"] == 2.0
    assert [(u.name, u.terminal, u.host, u.started, u.pid) for u in s.users] == [
        ("ann", "pts/0", "10.0.0.5", 1700000100.0, 4321),
        ("bob", "", "", 1700000200.0, None),
    ]


def test_users_none_logged_in() -> None:
    s = snap()
    UsersCollector(CollectContext(), source=lambda: []).collect(s)
    assert s.users == [] and s.values["users_logged_in"] == 0.0
