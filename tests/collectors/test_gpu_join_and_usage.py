"""accelerators (backend sample joined with the process table) and per-user usage."""

from __future__ import annotations


import pytest

from gpufleet.collectors.accelerators import AcceleratorCollector
from gpufleet.collectors.base import CollectContext
from gpufleet.collectors.processes import ProcessCollector
from gpufleet.collectors.usage import UNKNOWN_USER, UsageCollector
from gpufleet.snapshot import Gpu, GpuProcess, MigInstance, NodeSnapshot, Owner, Process
from conftest import FIXTURES as ALL_FIXTURES

FIXTURES = ALL_FIXTURES / "proc"
GiB = 1024**3


class FakeBackend:
    name = "fake"

    def __init__(self, gpus: list[Gpu]) -> None:
        self.gpus = gpus

    def open(self) -> None:
        pass

    def sample(self) -> list[Gpu]:
        return self.gpus

    def close(self) -> None:
        pass


def gpus() -> list[Gpu]:
    return [
        Gpu(index=0, uuid="GPU-0", model="H100", vendor="nvidia", processes=[
            GpuProcess(pid=5150, memory_bytes=40 * GiB),
            GpuProcess(pid=4242, memory_bytes=1 * GiB, user="preset", command="kept"),
        ]),
        Gpu(index=1, uuid="GPU-1", model="H100", vendor="nvidia",
            mig=[MigInstance(gpu_instance=1), MigInstance(gpu_instance=1, compute_instance=1),
                 MigInstance(gpu_instance=2)],
            processes=[
                GpuProcess(pid=5150, memory_bytes=20 * GiB),
                # Simulated: no such host pid; the backend named the user.
                GpuProcess(pid=99999, memory_bytes=8 * GiB, user="alice", command="python sim.py"),
                GpuProcess(pid=99998, memory_bytes=None),
            ]),
        Gpu(index=2, uuid="GPU-2", model="H100", vendor="nvidia", up=False),
    ]


def host_processes() -> list[Process]:
    return [
        Process(pid=5150, user="bob", command="torchrun train.py", cpu_ratio=2.5, memory_bytes=10 * GiB,
                owner=Owner(pod="trainer", namespace="ml")),
        Process(pid=4242, user="carol", command="python3 app.py", cpu_ratio=0.25, memory_bytes=GiB),
        Process(pid=1, user="root", command="/sbin/init", cpu_ratio=0.0, memory_bytes=1000),
        Process(pid=2, user="root", command="[kthreadd]", cpu_ratio=0.5, memory_bytes=0),
    ]


def test_accelerators_join_with_host_processes() -> None:
    s = NodeSnapshot(node="n", timestamp=0.0, processes=host_processes())
    AcceleratorCollector(CollectContext(backend=FakeBackend(gpus()))).collect(s)
    assert s.backend == "fake"
    assert s.values["gpus"] == 3.0
    g0, g1, g2 = s.gpus
    # The count is the backend's (it knows whether the list is complete): the fake says nothing,
    # so nothing is made up; a driver that cannot list processes must not read as "0 processes".
    assert all("processes" not in g.values for g in (g0, g1, g2))
    assert (g0.values["mig_instances"], g1.values["mig_instances"]) == (0.0, 2.0)
    joined = g0.processes[0]
    assert (joined.user, joined.command) == ("bob", "torchrun train.py")
    assert joined.owner == Owner(pod="trainer", namespace="ml")
    # What the backend filled itself is kept.
    assert (g0.processes[1].user, g0.processes[1].command) == ("preset", "kept")
    assert (g1.processes[1].user, g1.processes[1].owner) == ("alice", None)
    by_pid = {p.pid: p for p in s.processes}
    assert by_pid[5150].gpus == [0, 1]
    assert by_pid[4242].gpus == [0]
    assert by_pid[1].gpus == []
    # A second round does not add the index twice.
    AcceleratorCollector(CollectContext(backend=FakeBackend(gpus()))).collect(s)
    assert by_pid[5150].gpus == [0, 1]


def test_an_unknown_process_count_stays_absent() -> None:
    listed = Gpu(index=0, uuid="GPU-0", model="H100", vendor="nvidia", values={"processes": 0.0})
    unknown = Gpu(index=1, uuid="GPU-1", model="H100", vendor="nvidia")  # NVML: no permission
    s = NodeSnapshot(node="n", timestamp=0.0)
    AcceleratorCollector(CollectContext(backend=FakeBackend([listed, unknown]))).collect(s)
    assert s.gpus[0].values["processes"] == 0.0 and "processes" not in s.gpus[1].values


def test_no_backend_means_no_gpus() -> None:
    s = NodeSnapshot(node="n", timestamp=0.0)
    AcceleratorCollector(CollectContext()).collect(s)
    assert s.gpus == [] and s.values["gpus"] == 0.0 and s.backend == ""


def test_backend_failure_fails_the_collector() -> None:
    class Broken(FakeBackend):
        def sample(self) -> list[Gpu]:
            raise RuntimeError("driver gone")

    with pytest.raises(RuntimeError, match="driver gone"):
        AcceleratorCollector(CollectContext(backend=Broken([]))).collect(NodeSnapshot(node="n", timestamp=0.0))


def test_usage_per_user() -> None:
    s = NodeSnapshot(node="n", timestamp=0.0, processes=host_processes())
    AcceleratorCollector(CollectContext(backend=FakeBackend(gpus()))).collect(s)
    UsageCollector(CollectContext()).collect(s)
    usage = {u.user: u.values for u in s.usage}
    assert list(usage) == sorted(["alice", "bob", "carol", "preset", "root", UNKNOWN_USER])
    assert usage["bob"] == {"gpu_memory_used_bytes": 60.0 * GiB, "gpus_in_use": 2.0, "processes": 1.0,
                            "cpu_utilization_ratio": 2.5, "memory_used_bytes": 10.0 * GiB}
    # carol's host process runs on GPU 0, but the backend reported that process as "preset"'s.
    assert usage["carol"]["gpus_in_use"] == 0.0 and usage["carol"]["processes"] == 1.0
    assert usage["preset"] == {"gpu_memory_used_bytes": 1.0 * GiB, "gpus_in_use": 1.0, "processes": 0.0,
                               "cpu_utilization_ratio": 0.0, "memory_used_bytes": 0.0}
    assert usage["alice"] == {"gpu_memory_used_bytes": 8.0 * GiB, "gpus_in_use": 1.0, "processes": 1.0,
                              "cpu_utilization_ratio": 0.0, "memory_used_bytes": 0.0}
    assert usage["root"]["processes"] == 2.0 and usage["root"]["cpu_utilization_ratio"] == 0.5
    assert usage[UNKNOWN_USER]["processes"] == 1.0 and usage[UNKNOWN_USER]["gpu_memory_used_bytes"] == 0.0


def test_usage_without_gpus_from_fixture_tree() -> None:
    s = NodeSnapshot(node="n", timestamp=0.0)
    ProcessCollector(CollectContext(procfs=FIXTURES)).collect(s)
    AcceleratorCollector(CollectContext()).collect(s)
    UsageCollector(CollectContext()).collect(s)
    usage = {u.user: u.values for u in s.usage}
    assert usage["root"]["processes"] == 4.0  # pids 1, 2, 7000, 7001
    assert usage["424242"]["memory_used_bytes"] > 0
    assert all(v["gpus_in_use"] == 0.0 for v in usage.values())


def test_simulated_users_use_cpu_and_memory() -> None:
    """The simulated host's process table is built before the join and the per-user sums read it."""
    from gpufleet.agent.collect import Collection
    from gpufleet.backends.sim import SimBackend
    from gpufleet.collectors import SIMULATED_NODE, build

    backend = SimBackend("8xH100", node="sim-01", seed=1)
    col = Collection("sim-01", build(CollectContext(backend=backend, options={"node": "sim-01"}), SIMULATED_NODE))
    col.run(now=1000.0)
    s = col.run(now=1030.0)
    job_users = {gp.user for g in s.gpus for gp in g.processes}
    assert job_users
    usage = {u.user: u.values for u in s.usage}
    for user in job_users:
        assert usage[user]["memory_used_bytes"] > 0 and usage[user]["cpu_utilization_ratio"] > 0, usage[user]
    assert sum(usage[u]["cpu_utilization_ratio"] for u in job_users) <= s.values["cpu_cores"]
    host = {p.pid: p for p in s.processes}
    assert all(host[gp.pid].gpus for g in s.gpus for gp in g.processes)  # joined both ways
    # The node page's "Container / pod / job" column reads the host row: the job's owner is there.
    assert all(host[gp.pid].owner == gp.owner and gp.owner for g in s.gpus for gp in g.processes)
