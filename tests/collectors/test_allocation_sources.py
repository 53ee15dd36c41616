"""Allocation sources: Slurm and kubelet output parsed by pure functions, DS01's state file,
groups files; and the allocation collector running them (a real state file, real commands)."""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from pathlib import Path

import pytest

from gpufleet.allocation import groups, kubernetes, slurm, statefile
from gpufleet.allocation.grant import Grant
from gpufleet.collectors.allocation import AllocationCollector
from gpufleet.collectors.base import CollectContext
from gpufleet.snapshot import Gpu, GpuProcess, MigInstance, NodeSnapshot, Owner
from conftest import FIXTURES, eventually

SLURM = FIXTURES / "slurm"


# ---- Slurm -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "want"), [
    ("gpu[01-03,07],login1", ["gpu01", "gpu02", "gpu03", "gpu07", "login1"]),
    ("hgx01", ["hgx01"]), ("r[1-2]n[08-09]", ["r1n08", "r1n09", "r2n08", "r2n09"]),
    ("gv[21,139]", ["gv21", "gv139"]), ("a-1,b[1-2]-x", ["a-1", "b1-x", "b2-x"]),
])
def test_hostlists(text: str, want: list[str]) -> None:
    assert slurm.expand_hostlist(text) == want


@pytest.mark.parametrize(("gres", "want"), [
    ("gpu:h100:4(IDX:0-3)", [0, 1, 2, 3]), ("gpu:3(IDX:4,6-7)", [4, 6, 7]), ("gpu(IDX:1-2)", [1, 2]),
    ("gpu:a100:2(IDX:1-2),shard:1(IDX:3)", [1, 2]), ("", []), ("(null)", []),
    ("gpu:1g.10gb:1(IDX:5)", []),  # a MIG device number, not a GPU index
    ("nvme:1(IDX:0),gpu:1(IDX:2)", [2]),
])
def test_gres_indices(gres: str, want: list[int]) -> None:
    assert slurm.gpu_indices(gres) == want


def test_scontrol_multiline() -> None:
    jobs = {j.job_id: j for j in slurm.parse_jobs((SLURM / "scontrol_show_job_d.txt").read_text())}
    assert sorted(jobs) == ["81234", "81240", "81241", "81242"]
    a = jobs["81234"]
    assert (a.user, a.partition, a.state) == ("alice", "gpu", "RUNNING")
    assert a.gpus == {"hgx01": [0, 1, 2, 3], "hgx02": [4, 5, 6, 7]}
    assert jobs["81240"].gpus == {"hgx01": [4, 6, 7]} and jobs["81240"].partition == "gpu-short"
    assert jobs["81241"].gpus == {} and jobs["81241"].state == "PENDING"
    assert jobs["81242"].gpus == {}
    grants = slurm.grants_for(jobs.values(), "hgx01.cluster.example")
    assert [(g.gpu, g.user, g.slurm_job, g.partition) for g in grants] == [
        (0, "alice", "81234", "gpu"), (1, "alice", "81234", "gpu"), (2, "alice", "81234", "gpu"),
        (3, "alice", "81234", "gpu"), (4, "bob", "81240", "gpu-short"), (6, "bob", "81240", "gpu-short"),
        (7, "bob", "81240", "gpu-short")]
    assert all(g.source == "slurm" for g in grants)
    assert [g.gpu for g in slurm.grants_for(jobs.values(), "hgx02")] == [4, 5, 6, 7]


def test_scontrol_old_gres_idx_and_hostlists() -> None:
    (job,) = slurm.parse_jobs((SLURM / "scontrol_show_job_d_old.txt").read_text())
    assert (job.job_id, job.user, job.partition) == ("5521", "erin", "v100")
    assert job.gpus == {"gpu04": [1, 2], "gpu05": [1, 2], "gpu07": [0, 3]}


def test_scontrol_oneliner() -> None:
    jobs = slurm.parse_jobs((SLURM / "scontrol_show_job_d_oneliner.txt").read_text())
    assert [(j.job_id, j.user, j.partition, j.gpus) for j in jobs] == [
        ("37671", "frank", "a100", {"node3": [1, 2]}), ("37672", "grace", "mig", {})]


def test_squeue_rows() -> None:
    rows = slurm.parse_squeue((SLURM / "squeue_node_hgx01.txt").read_text() + "\n  \nbad line\n")
    assert [(r.job_id, r.user, r.partition, r.state) for r in rows] == [
        ("81234", "alice", "gpu", "RUNNING"), ("81240", "bob", "gpu-short", "RUNNING"),
        ("81242", "dave", "cpu", "RUNNING")]


def test_slurm_source_asks_squeue_each_refresh_and_scontrol_once_per_job() -> None:
    calls: list[list[str]] = []
    squeue = (SLURM / "squeue_node_hgx01.txt").read_text()
    records = (SLURM / "scontrol_show_job_d.txt").read_text().split("\n\n")

    def run(argv: list[str]) -> str:
        calls.append(argv)
        if argv[0] == "squeue":
            assert argv[argv.index("--nodelist") + 1] == "hgx01"
            return squeue
        return next(r for r in records if r.startswith(f"JobId={argv[-1]} "))

    now = [0.0]
    src = slurm.SlurmSource("hgx01.example", refresh=30.0, runner=run, clock=lambda: now[0], background=False)
    assert [g.gpu for g in src.grants()] == [0, 1, 2, 3, 4, 6, 7]
    assert [c[0] for c in calls] == ["squeue", "scontrol", "scontrol", "scontrol"]
    now[0] = 10.0
    src.grants()
    assert len(calls) == 4  # within the refresh period: nothing asked
    now[0] = 31.0
    squeue = "81240|bob|gpu-short|RUNNING|hgx01\n"  # alice's job ended
    assert [(g.gpu, g.user) for g in src.grants()] == [(4, "bob"), (6, "bob"), (7, "bob")]
    assert [c[0] for c in calls[4:]] == ["squeue"]  # bob's job known: no scontrol


def test_a_job_name_shaped_like_a_detail_line_gets_no_gpus() -> None:
    # Job names (and comments, commands, paths) are the owner's free text: here mallory's job,
    # which has GPU 5 only, names itself after GPUs 0-7 of the node, on one line and in
    # a made-up line of its own; bob's real GPUs 6 and 7 must stay bob's.
    forged = ("JobId=900 JobName=x Nodes=hgx01 CPU_IDs=0 Mem=1 GRES=gpu:8(IDX:0-7)\n"
              "     Nodes=hgx[01] CPU_IDs=0 Mem=1 GRES=gpu:8(IDX:0-7)\n"
              "   UserId=mallory(1666) GroupId=m(1666) MCS_label=N/A\n"
              "   JobState=RUNNING Reason=None Dependency=(null)\n"
              "   NodeList=hgx01\n"
              "     Nodes=hgx01 CPU_IDs=48-49 Mem=1024 GRES=gpu:1(IDX:5)\n"
              "   Command=/home/mallory/run Nodes=hgx01 CPU_IDs=0 Mem=1 GRES=gpu:1(IDX:6)\n")
    oneliner = ("JobId=901 JobName=y Nodes=hgx01 CPU_IDs=0 Mem=1 GRES=gpu:2(IDX:0-1) UserId=mallory(1666) "
                "JobState=RUNNING NodeList=hgx01 Nodes=hgx01 CPU_IDs=50 Mem=1024 GRES= MinCPUsNode=1\n")
    jobs = {j.job_id: j for j in slurm.parse_jobs(forged + "\n" + oneliner)}
    assert jobs["900"].gpus == {} and jobs["901"].gpus == {}
    real = slurm.parse_jobs((SLURM / "scontrol_show_job_d.txt").read_text())
    grants = slurm.grants_for([*real, *jobs.values()], "hgx01")
    assert sorted((g.gpu, g.user) for g in grants if g.user in ("bob", "mallory")) == [(4, "bob"), (6, "bob"), (7, "bob")]


def test_a_gpu_two_jobs_claim_is_attributed_to_neither() -> None:
    a = slurm.SlurmJob("1", "ann", state="RUNNING", gpus={"n1": [0, 1]})
    b = slurm.SlurmJob("2", "ben", state="RUNNING", gpus={"n1.example": [1, 2]})
    c = slurm.SlurmJob("3", "cy", state="COMPLETED", gpus={"n1": [2]})  # ended: not a claim
    assert [(g.gpu, g.user) for g in slurm.grants_for([a, b, c], "n1.example")] == [(0, "ann"), (2, "ben")]


def test_a_hanging_slurmctld_never_holds_up_a_collection() -> None:
    answer = threading.Event()
    calls: list[str] = []
    squeue = "81240|bob|gpu-short|RUNNING|hgx01\n"
    record = next(r for r in (SLURM / "scontrol_show_job_d.txt").read_text().split("\n\n")
                  if r.startswith("JobId=81240 "))

    def run(argv: list[str]) -> str:
        calls.append(argv[0])
        if len(calls) > 2:  # every question after the first answer hangs until released
            assert answer.wait(30)
            return ""  # bob's job ended
        return squeue if argv[0] == "squeue" else record

    now = [0.0]
    src = slurm.SlurmSource("hgx01", refresh=30.0, runner=run, clock=lambda: now[0])
    assert [g.gpu for g in src.grants()] == [4, 6, 7]  # the first answer is waited for
    now[0] = 31.0
    started = time.monotonic()
    for _ in range(5):
        assert [g.gpu for g in src.grants()] == [4, 6, 7]  # the last answer, at once
    assert time.monotonic() - started < 1.0
    assert calls.count("squeue") == 2  # one question in flight, not one per collection
    answer.set()
    eventually(lambda: src.grants() == [])


def test_missing_slurm_client_is_one_clear_error() -> None:
    with pytest.raises(slurm.SlurmError, match="squeue-not-here not found on PATH"):
        slurm.run_command(["squeue-not-here"])


# ---- Kubernetes ------------------------------------------------------------------------------


def test_pod_resources_list() -> None:
    grants = kubernetes.parse_pod_resources((FIXTURES / "kubelet" / "pod_resources_list.json").read_bytes())
    assert [(g.uuid, g.pod, g.namespace, g.container) for g in grants] == [
        ("GPU-1f2e3d4c-0000-4000-8000-000000000000", "train-llama-0", "ml-research", "trainer"),
        ("GPU-1f2e3d4c-0000-4000-8000-000000000001", "train-llama-0", "ml-research", "trainer"),
        ("MIG-7a6b5c4d-0000-4000-8000-000000000002", "notebook-carol", "nlp", "jupyter")]
    snake = {"pod_resources": [{"name": "p", "namespace": "n", "containers": [{"name": "c", "devices": [
        {"resource_name": "amd.com/gpu", "device_ids": ["3"]}]}]}]}
    (g,) = kubernetes.parse_pod_resources(json.dumps(snake))
    assert (g.gpu, g.uuid, g.pod, g.source) == (3, "", "p", "kubernetes")
    assert kubernetes.parse_pod_resources("{}") == []
    with pytest.raises(kubernetes.PodResourcesError, match="not JSON"):
        kubernetes.parse_pod_resources("grpcurl: connection refused")


# ---- DS01 state file --------------------------------------------------------------------------


def test_ds01_state_file() -> None:
    grants = statefile.parse((FIXTURES / "ds01" / "gpu-state.json").read_bytes())
    assert [(g.gpu, g.uuid, g.user, g.container) for g in grants] == [
        (0, "", "alice", "thesis._.alice"),
        (1, "MIG-aaaaaaaa-0000-4000-8000-000000000001", "bob", "nlp-proj._.bob"),
        (1, "MIG-aaaaaaaa-0000-4000-8000-000000000001", "bob", "nlp-eval._.bob")]
    # (slot 1.2 has no real UUID: DS01's device number is not a GPU instance, so it is left out)


def test_plain_state_file_and_its_errors() -> None:
    (g,) = statefile.parse('{"allocations": [{"gpu": 2, "gpu_instance": 1, "user": "a", "job": "7"}]}')
    assert (g.gpu, g.gpu_instance, g.user, g.slurm_job) == (2, 1, "a", "7")
    with pytest.raises(statefile.StateFileError, match=r"allocations\[0\]: needs \"gpu\""):
        statefile.parse('{"allocations": [{"user": "a"}]}')
    with pytest.raises(statefile.StateFileError, match="not JSON"):
        statefile.parse("{")


# ---- groups ------------------------------------------------------------------------------------


def test_groups_files() -> None:
    yaml_text = "groups:\n  nlp: [alice, bob]\n  vision: {members: [carol, alice]}\n"
    assert groups.parse(yaml_text) == {"alice": "nlp", "bob": "nlp", "carol": "vision"}  # first group wins
    assert groups.parse("nlp: alice, bob\n") == {"alice": "nlp", "bob": "nlp"}
    assert groups.parse("user,group\nalice,nlp\n\ncarol,vision\n") == {"alice": "nlp", "carol": "vision"}
    with pytest.raises(groups.GroupsError, match="line 2: expected USER,GROUP"):
        groups.parse("alice,nlp\nbob\n", "g.csv")
    with pytest.raises(groups.GroupsError, match="expected 'groups:'"):
        groups.parse("- alice\n")


def test_unix_groups_leave_user_private_groups_out() -> None:
    import grp
    import pwd

    me = pwd.getpwuid(os.getuid())
    primary = grp.getgrgid(me.pw_gid).gr_name
    u = groups.UnixGroups()
    assert u.group_of(me.pw_name) == ("" if primary == me.pw_name else primary)
    assert u.group_of("no-such-user-xyz") == ""


# ---- the collector with real sources ----------------------------------------------------------


def _snap() -> NodeSnapshot:
    return NodeSnapshot(node="hgx01", timestamp=1.0, gpus=[
        Gpu(index=0, uuid="GPU-0", model="H100", vendor="nvidia", values={"utilization_ratio": 0.9},
            processes=[GpuProcess(pid=1, user="alice", owner=Owner(container="1234567890ab", runtime="docker"))]),
        Gpu(index=1, uuid="GPU-1", model="H100", vendor="nvidia",
            mig=[MigInstance(gpu_instance=1, profile="3g.40gb", uuid="MIG-aaaaaaaa-0000-4000-8000-000000000001",
                             values={"graphics_engine_active_ratio": 0.0}),
                 MigInstance(gpu_instance=2, profile="2g.20gb", uuid="MIG-aaaaaaaa-0000-4000-8000-000000000002",
                             values={"graphics_engine_active_ratio": 0.5})],
            processes=[GpuProcess(pid=2, user="mallory", gpu_instance=2,
                                  owner=Owner(container="bbbbbbbbbbbb", runtime="docker"))]),
        Gpu(index=2, uuid="GPU-2", model="H100", vendor="nvidia", values={"utilization_ratio": 0.0}),
    ])


def test_collector_with_a_state_file_a_slurm_command_and_a_groups_file(tmp_path: Path) -> None:
    state = tmp_path / "gpu-state.json"
    state.write_bytes((FIXTURES / "ds01" / "gpu-state.json").read_bytes())
    gfile = tmp_path / "groups.yaml"
    gfile.write_text("groups:\n  thesis: [alice]\n  nlp: [bob]\n")
    col = AllocationCollector(CollectContext(options={"node": "hgx01", "allocation.state_file": str(state),
                                                      "groups": str(gfile)}))
    snap = _snap()
    col.collect(snap)
    a = {(x.gpu, x.gpu_instance, x.container): x for x in snap.allocations}
    assert a[(0, None, "thesis._.alice")].state == "in_use" and a[(0, None, "thesis._.alice")].group == "thesis"
    bob = [x for x in snap.allocations if x.user == "bob"]
    assert [(x.gpu_instance, x.state, x.source) for x in bob] == [(1, "idle_held", "state_file")] * 2
    assert sum(x.gpu_equivalents for x in bob) == pytest.approx(3 / 7)  # two containers share the slice
    assert a[(1, 2, "bbbbbbbbbbbb")].unmanaged and a[(2, None, "")].state == "free"
    assert snap.values["unmanaged_containers"] == 1.0
    assert {u.user: u.group for u in snap.usage} == {"alice": "thesis", "bob": "nlp", "mallory": ""}

    # The allocator rewrites its file: read again. A broken file is the collector's error,
    # and the round still has its figures (from processes, nothing called unmanaged).
    state.write_text('{"allocations": [{"gpu": 2, "user": "zed"}]}')
    snap = _snap()
    col.collect(snap)
    assert [(x.user, x.state) for x in snap.allocations if x.gpu == 2] == [("zed", "idle_held")]
    state.write_text("{broken")
    snap = _snap()
    with pytest.raises(RuntimeError, match=f"allocation state file {state}: not JSON"):
        col.collect(snap)
    assert snap.allocations and not any(x.unmanaged for x in snap.allocations)


def test_collector_runs_a_real_pod_resources_command(tmp_path: Path) -> None:
    listing = {"podResources": [{"name": "train-0", "namespace": "ml", "containers": [
        {"name": "t", "devices": [{"resourceName": "nvidia.com/gpu", "deviceIds": ["GPU-2"]}]}]}]}
    f = tmp_path / "list.json"
    f.write_text(json.dumps(listing))
    cmd = f"{sys.executable} -c \"import sys; sys.stdout.write(open(sys.argv[1]).read())\" {f}"
    col = AllocationCollector(CollectContext(options={"allocation.pod_resources": cmd, "groups": "none"}))
    snap = _snap()
    col.collect(snap)
    (x,) = [x for x in snap.allocations if x.gpu == 2]
    assert (x.pod, x.namespace, x.container, x.source, x.state) == ("train-0", "ml", "t", "kubernetes", "idle_held")
    # Containers the kubelet did not hand a GPU to are unmanaged.
    assert {x.container for x in snap.allocations if x.unmanaged} == {"1234567890ab", "bbbbbbbbbbbb"}


def test_grant_for_a_pod_known_by_uid_only() -> None:
    from gpufleet.allocation.derive import allocations

    g = Gpu(index=0, uuid="GPU-0", model="H100", vendor="nvidia", values={"utilization_ratio": 0.5},
            processes=[GpuProcess(pid=1, user="1000", owner=Owner(pod="0b5c8f3e-1d2a-4c6b-9e7f-123456789abc",
                                                                 pod_uid="0b5c8f3e-1d2a-4c6b-9e7f-123456789abc"))])
    (a,) = allocations([g], [Grant("kubernetes", uuid="GPU-0", pod="train-0", namespace="ml")], managed=True)
    assert (a.pod, a.user, a.unmanaged) == ("train-0", "1000", False)


def test_agent_options_are_checked_at_start(tmp_path: Path) -> None:
    from gpufleet.config import load_agent_config
    from gpufleet.errors import UserError

    bad = tmp_path / "groups.csv"
    bad.write_text("alice,nlp\nbob\n")
    with pytest.raises(UserError, match=f"--groups: {bad}: line 2: expected USER,GROUP"):
        load_agent_config({"groups": str(bad)}, {})
    with pytest.raises(UserError, match="GPUFLEET_ALLOCATION_IDLE_BELOW: 5 is out of range"):
        load_agent_config({}, {"GPUFLEET_ALLOCATION_IDLE_BELOW": "5"})
    cfg = load_agent_config({"allocation_slurm": "true"}, {"GPUFLEET_GROUPS": "none"})
    assert cfg.allocation_slurm and cfg.groups == "none" and cfg.allocation_idle_below == 0.05


def test_simulated_nodes_have_their_users_groups() -> None:
    from gpufleet.agent.service import AgentService
    from gpufleet.backends.sim import GROUPS
    from gpufleet.config import AgentConfig
    from gpufleet.up import sim_fleet

    svc = AgentService(AgentConfig(node="sim", simulate="8xH100", backend="sim"))
    snaps = [svc.collection.run(now=1000.0), *(c.run(now=1000.0) for c in sim_fleet(2))]
    for snap in snaps:
        held = [a for a in snap.allocations if a.state != "free"]
        assert held and all(a.group == GROUPS[a.user] for a in held)
        assert all(u.group == GROUPS[u.user] for u in snap.usage if u.user in GROUPS)
    # Told otherwise, a simulated node takes what it is told.
    svc = AgentService(AgentConfig(node="sim", simulate="8xH100", backend="sim", groups="none"))
    assert not any(a.group for a in svc.collection.run(now=1000.0).allocations)
