"""Who holds each GPU / MIG slice: states, GPU-equivalents, grants, capacity figures."""

from __future__ import annotations

import pytest

from gpufleet import catalogue
from gpufleet.allocation.derive import allocations, apply, mig_equivalents, node_values
from gpufleet.allocation.grant import Grant
from gpufleet.snapshot import Gpu, GpuProcess, MigInstance, NodeSnapshot, Owner, UserUsage, from_json, to_json


def gpu(index: int, util: float | None, procs: list[GpuProcess] = [], **kw: object) -> Gpu:  # noqa: B006
    values = {} if util is None else {"utilization_ratio": util}
    return Gpu(index=index, uuid=f"GPU-{index}", model="NVIDIA H100 80GB HBM3", vendor="nvidia",
               values=values, processes=list(procs), **kw)  # type: ignore[arg-type]


def proc(pid: int, user: str, **owner: str) -> GpuProcess:
    return GpuProcess(pid=pid, memory_bytes=1 << 30, user=user, owner=Owner(**owner) if owner else None)


def test_free_in_use_idle_held_and_unknown() -> None:
    gpus = [
        gpu(0, 0.0),  # nothing on it, idle: free
        gpu(1, 0.9, [proc(10, "alice", container="3f2a9c1b7d4e", runtime="docker")]),
        gpu(2, 0.01, [proc(11, "bob", slurm_job="81234")]),  # held, idle: the waste case
        gpu(3, 0.7),  # busy but no process we can see: someone unknown uses it
        gpu(4, None, [proc(12, "carol")]),  # utilisation unknown: held counts as in use
        gpu(5, 0.9, [proc(13, "dave")], up=False),  # lost: no capacity, no entry
    ]
    a = {x.gpu: x for x in allocations(gpus)}
    assert sorted(a) == [0, 1, 2, 3, 4]
    assert (a[0].state, a[0].user, a[0].gpu_equivalents) == ("free", "", 1.0)
    assert (a[1].state, a[1].user, a[1].container, a[1].source) == ("in_use", "alice", "3f2a9c1b7d4e", "processes")
    assert (a[2].state, a[2].user, a[2].slurm_job, a[2].utilization_ratio) == ("idle_held", "bob", "81234", 0.01)
    assert (a[3].state, a[3].user) == ("in_use", "unknown")
    assert (a[4].state, a[4].utilization_ratio) == ("in_use", None)
    assert not any(x.unmanaged for x in a.values())  # no allocation source: nothing is "outside"


def test_idle_threshold_is_an_option() -> None:
    g = [gpu(0, 0.08, [proc(1, "alice")])]
    assert allocations(g)[0].state == "in_use"
    assert allocations(g, idle_below=0.1)[0].state == "idle_held"


def test_a_shared_gpu_is_split_evenly_and_capacity_adds_up() -> None:
    g = [gpu(0, 0.5, [proc(1, "alice"), proc(2, "alice"), proc(3, "bob", container="a" * 12)]),
         gpu(1, 0.0)]
    a = allocations(g)
    held = [x for x in a if x.gpu == 0]
    # alice's two processes (same user, no container) are one holder; bob's container another.
    assert sorted((x.user, x.container, x.gpu_equivalents) for x in held) == [
        ("alice", "", 0.5), ("bob", "a" * 12, 0.5)]
    v = node_values(a)
    assert v["gpu_equivalents_capacity"] == 2.0 and v["gpu_equivalents_held"] == 1.0
    assert v["gpus_free"] == 1.0 and v["gpus_held"] == 1.0 and v["gpu_equivalents_idle_held"] == 0.0


@pytest.mark.parametrize(("profile", "model", "want"), [
    ("3g.40gb", "NVIDIA A100-SXM4-80GB", 3 / 7), ("1g.10gb", "NVIDIA H100 80GB HBM3", 1 / 7),
    ("7g.80gb", "NVIDIA H100 80GB HBM3", 1.0), ("1c.3g.40gb", "NVIDIA A100", 3 / 7),
    ("2g.12gb", "NVIDIA A30", 2 / 4), ("1g.12gb+me", "NVIDIA H100", 1 / 7), ("weird", "H100", None),
])
def test_mig_equivalents_are_compute_slices(profile: str, model: str, want: float | None) -> None:
    assert mig_equivalents(profile, model) == want


def test_mig_slices_are_slots() -> None:
    mig = [
        MigInstance(gpu_instance=1, compute_instance=0, profile="3g.40gb", uuid="MIG-a",
                    values={"graphics_engine_active_ratio": 0.0}),
        MigInstance(gpu_instance=1, compute_instance=1, profile="3g.40gb", uuid="MIG-a2",
                    values={"graphics_engine_active_ratio": 0.6}),  # another CI of GI 1: busy
        MigInstance(gpu_instance=2, profile="2g.20gb", uuid="MIG-b", values={"graphics_engine_active_ratio": 0.0}),
        MigInstance(gpu_instance=5, profile="1g.10gb", uuid="MIG-c", values={"graphics_engine_active_ratio": 0.0}),
    ]
    procs = [GpuProcess(pid=1, user="alice", gpu_instance=1), GpuProcess(pid=2, user="bob", gpu_instance=2),
             GpuProcess(pid=3, user="eve")]  # no instance: belongs to no slot
    g = Gpu(index=0, uuid="GPU-0", model="NVIDIA A100-SXM4-80GB", vendor="nvidia", mig=mig, processes=procs)
    a = allocations([g])
    got = [(x.gpu_instance, x.profile, x.uuid, x.state, x.user, round(x.gpu_equivalents * 7)) for x in a]
    assert got == [(1, "3g.40gb", "MIG-a", "in_use", "alice", 3), (2, "2g.20gb", "MIG-b", "idle_held", "bob", 2),
                   (5, "1g.10gb", "MIG-c", "free", "", 1)]
    assert node_values(a)["gpu_equivalents_capacity"] == round(6 / 7, 6)


def test_grants_name_holders_and_flag_unmanaged_containers() -> None:
    gpus = [
        gpu(0, 0.0),  # granted to a Slurm job that has not started its process yet: held, idle
        gpu(1, 0.9, [proc(1, "alice", container="3f2a9c1b7d4e")]),  # alice's granted container
        gpu(2, 0.9, [proc(2, "mallory", container="bbbbbbbbbbbb")]),  # nobody granted GPU 2
        gpu(3, 0.9, [proc(3, "bob", pod="train-0", namespace="ml")]),
    ]
    grants = [
        Grant("slurm", gpu=0, user="bob", slurm_job="99", partition="gpu"),
        Grant("state_file", gpu=1, user="alice", container="thesis"),  # by name: matched by user
        Grant("kubernetes", uuid="GPU-3", pod="train-0", namespace="ml"),
    ]
    a = {x.gpu: x for x in allocations(gpus, grants, managed=True)}
    assert (a[0].state, a[0].user, a[0].slurm_job, a[0].partition, a[0].source) == (
        "idle_held", "bob", "99", "gpu", "slurm")
    assert (a[1].user, a[1].container, a[1].source, a[1].unmanaged) == ("alice", "thesis", "state_file", False)
    assert (a[2].user, a[2].container, a[2].unmanaged, a[2].source) == ("mallory", "bbbbbbbbbbbb", True, "processes")
    assert (a[3].pod, a[3].source, a[3].unmanaged) == ("train-0", "kubernetes", False)
    assert node_values(a.values())["unmanaged_containers"] == 1.0


def test_a_whole_gpu_grant_covers_its_mig_slices() -> None:
    g = Gpu(index=0, uuid="GPU-0", model="NVIDIA H100", vendor="nvidia",
            mig=[MigInstance(gpu_instance=1, profile="4g.40gb"), MigInstance(gpu_instance=2, profile="3g.40gb")])
    a = allocations([g], [Grant("slurm", gpu=0, user="bob", slurm_job="7")], managed=True)
    assert [(x.gpu_instance, x.user, x.state) for x in a] == [(1, "bob", "in_use"), (2, "bob", "in_use")]


def test_apply_fills_node_and_user_figures_with_catalogue_keys() -> None:
    snap = NodeSnapshot(node="n1", timestamp=1.0, gpus=[
        gpu(0, 0.02, [proc(1, "alice")]), gpu(1, 0.8, [proc(2, "alice")]), gpu(2, 0.0)],
        usage=[UserUsage(user="alice", values={"processes": 2.0})])
    apply(snap, [Grant("slurm", gpu=2, user="zed", slurm_job="5")], managed=True, groups={"alice": "nlp"})
    users = {u.user: u for u in snap.usage}
    assert users["alice"].group == "nlp" and users["alice"].values["processes"] == 2.0
    assert users["alice"].values["gpus_allocated"] == 2.0 and users["alice"].values["gpu_equivalents"] == 2.0
    assert users["alice"].values["gpu_equivalents_idle"] == 1.0
    assert users["alice"].values["held_gpu_utilization_ratio"] == pytest.approx(0.41)
    assert users["zed"].values["gpus_allocated"] == 1.0  # known only from its grant
    assert snap.values["gpu_equivalents_idle_held"] == 2.0 and snap.values["gpus_free"] == 0.0
    assert set(snap.values) <= catalogue.keys("node")
    assert all(set(u.values) <= catalogue.keys("user") for u in snap.usage)
    assert [a.group for a in snap.allocations] == ["nlp", "nlp", ""]
    # The field survives the JSON an agent pushes.
    assert from_json(to_json(snap)).allocations == snap.allocations


def test_a_simulated_node_attributes_every_job() -> None:
    from gpufleet.agent.collect import Collection
    from gpufleet.backends.sim import SimBackend
    from gpufleet.collectors import SIMULATED_NODE, build
    from gpufleet.collectors.base import CollectContext
    from gpufleet.exposition import render

    for profile in ("8xH100", "4xA100-mig"):
        backend = SimBackend(profile, node="n", seed=4)
        col = Collection("n", build(CollectContext(backend=backend, options={"node": "n"}), SIMULATED_NODE))
        col.run(now=1000.0)
        snap = col.run(now=1030.0)
        up = [g for g in snap.gpus if g.up]
        total = sum(a.gpu_equivalents for a in snap.allocations)
        want = sum(1.0 if not g.mig else sum(int(m.profile.split("g")[0]) for m in g.mig) / 7 for g in up)
        assert total == pytest.approx(want) and snap.values["gpu_equivalents_capacity"] == pytest.approx(want)
        holders = {(a.gpu, a.gpu_instance, a.user) for a in snap.allocations if a.state != "free"}
        for g in up:
            for p in g.processes:
                assert (g.index, p.gpu_instance, p.user) in holders
        assert any(a.state == "free" for a in snap.allocations) or snap.values["gpus_free"] == 0
        text = render(snap).decode()
        assert 'gpufleet_allocation_info{node="n",gpu="' in text and "gpufleet_node_gpu_equivalents_free" in text
