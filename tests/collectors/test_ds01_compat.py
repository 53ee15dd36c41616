"""`--compat ds01`: DS01's names and labels over the allocation model (crafted snapshots)."""

from __future__ import annotations

from gpufleet.allocation.derive import apply
from gpufleet.allocation.grant import Grant
from gpufleet.compat import COMPAT_MODES, render_compat
from gpufleet.compat.ds01 import FAMILIES
from gpufleet.snapshot import Gpu, GpuProcess, LoginUser, MigInstance, NodeSnapshot, Owner, UserUsage
from realparts import promtool_check_metrics

REFERENCE = ("ds01_exporter_info", "ds01_gpu_allocated", "ds01_gpu_equivalents", "ds01_containers_total",
             "ds01_user_gpus_allocated", "ds01_user_gpu_equivalents", "ds01_user_containers_count",
             "ds01_lifecycle_events_total", "ds01_ssh_sessions_active", "ds01_ssh_sessions_total",
             "ds01_gpu_slot_info", "ds01_mig_slot_info", "ds01_mig_mapping_status", "ds01_unmanaged_gpu_container",
             "ds01_unmanaged_gpu_count", "ds01_unmanaged_gpu_running", "ds01_user_group_info",
             "ds01_group_members_total", "ds01_user_memory_current_bytes")


def snapshot() -> NodeSnapshot:
    snap = NodeSnapshot(node="ds01", timestamp=1.0, users=[
        LoginUser(name="alice", terminal="pts/0", host="10.0.0.5"), LoginUser(name="alice", terminal="pts/1", host="h"),
        LoginUser(name="root", terminal="tty1")], gpus=[
        Gpu(index=0, uuid="GPU-0", model="NVIDIA A100-SXM4-80GB", vendor="nvidia", values={"utilization_ratio": 0.9},
            processes=[GpuProcess(pid=1, user="alice", owner=Owner(container="aaaaaaaaaaaa"))]),
        Gpu(index=1, uuid="GPU-1", model="NVIDIA A100-SXM4-80GB", vendor="nvidia", mig=[
            MigInstance(gpu_instance=5, profile="3g.40gb", uuid="MIG-5", values={"graphics_engine_active_ratio": 0.0}),
            MigInstance(gpu_instance=2, profile="2g.20gb", uuid="MIG-2", values={"graphics_engine_active_ratio": 0.4}),
        ], processes=[GpuProcess(pid=2, user="eve", gpu_instance=2, owner=Owner(container="eeeeeeeeeeee"))]),
        Gpu(index=2, uuid="GPU-2", model="NVIDIA A100-SXM4-80GB", vendor="nvidia", values={"utilization_ratio": 0.0}),
    ], usage=[UserUsage(user="alice", values={"memory_used_bytes": 2e9})])
    apply(snap, [Grant("state_file", gpu=0, user="alice", container="thesis._.alice"),
                 Grant("state_file", uuid="MIG-5", user="bob", container="nlp._.bob", running=False)],
          managed=True, groups={"alice": "phd", "bob": "msc"})
    return snap


def render(snap: NodeSnapshot, openmetrics: bool = False) -> str:
    out: list[str] = []
    render_compat(snap, ["ds01"], openmetrics, out)
    return "\n".join(out) + "\n"


def test_ds01_is_a_compat_mode_with_the_reference_names() -> None:
    assert "ds01" in COMPAT_MODES
    assert tuple(FAMILIES) == REFERENCE


def test_ds01_series() -> None:
    lines = set(render(snapshot()).splitlines())
    for want in (
        'ds01_gpu_allocated{gpu_slot="0",container="thesis._.alice",user="alice",interface="state_file",profile="full"} 1',
        # GPU 1's MIG instances are numbered in GPU-instance order: GI 2 is slot 1.0, GI 5 is 1.1
        'ds01_gpu_allocated{gpu_slot="1.1",container="nlp._.bob",user="bob",interface="state_file",profile="3g.40gb"} 1',
        'ds01_gpu_allocated{gpu_slot="1.0",container="eeeeeeeeeeee",user="eve",interface="processes",profile="2g.20gb"} 1',
        'ds01_gpu_equivalents{gpu_slot="1.1",user="bob",interface="state_file",profile="3g.40gb"} 0.428571',
        'ds01_containers_total{status="running",interface="state_file"} 1',
        'ds01_containers_total{status="stopped",interface="state_file"} 1',
        'ds01_containers_total{status="running",interface="processes"} 1',
        'ds01_user_gpus_allocated{user="bob"} 1', 'ds01_user_gpu_equivalents{user="alice"} 1',
        'ds01_user_containers_count{user="alice"} 1',
        'ds01_lifecycle_events_total{action="bare_metal_warning"} 0',
        'ds01_ssh_sessions_active{user="alice"} 2', "ds01_ssh_sessions_total 2",
        'ds01_gpu_slot_info{gpu="0",slot="0",gpu_uuid="GPU-0",mig_enabled="false"} 1',
        'ds01_mig_slot_info{gpu="1",gpu_i_id="5",slot="1.1",mig_uuid="MIG-5"} 1',
        'ds01_mig_mapping_status{mapped="2",unmapped="0"} 1',
        'ds01_unmanaged_gpu_container{container="eeeeeeeeeeee",user="eve",gpu_count="1",access_type="observed",'
        'running="true"} 1',
        "ds01_unmanaged_gpu_count 1", "ds01_unmanaged_gpu_running 1",
        'ds01_user_group_info{user="alice",group="phd"} 1', 'ds01_group_members_total{group="msc"} 1',
        'ds01_user_memory_current_bytes{user="alice",group="phd"} 2000000000',
    ):
        assert want in lines, want
    assert not any(line.startswith("ds01_gpu_allocated") and 'gpu_slot="2"' in line for line in lines)  # free


def test_promtool_flags_only_the_suffixes_ds01_itself_chose() -> None:
    rc, out = promtool_check_metrics(render(snapshot()).encode())
    flagged = {line.split()[0] for line in out.splitlines() if line.strip()}
    # DS01 names some gauges *_total and *_count: promtool's lint says so for DS01's exporter too,
    # and says nothing else about ours.
    assert flagged == {"ds01_containers_total", "ds01_group_members_total", "ds01_lifecycle_events_total",
                       "ds01_ssh_sessions_total", "ds01_unmanaged_gpu_count", "ds01_user_containers_count"}, out


def test_openmetrics_types_ds01_total_gauges_unknown() -> None:
    text = render(snapshot(), openmetrics=True)
    assert "# TYPE ds01_containers_total unknown" in text and "# TYPE ds01_gpu_allocated gauge" in text
    assert "# TYPE ds01_unmanaged_gpu_count unknown" in text
