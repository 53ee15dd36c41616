"""The occupancy record: holders from allocations (MIG shares, state dips), processes as the
fallback, events, silent nodes, and a hub killed with -9 halfway through a known schedule."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from gpufleet.hub.service import Hub, HubOptions
from gpufleet.hub.usage.extension import UsageExtension
from gpufleet.hub.usage.holders import Holder, node_holders
from gpufleet.hub.usage.report import usage
from gpufleet.snapshot import Allocation, Gpu, GpuProcess, NodeSnapshot, Owner
from simfleet import known_fleet

T = 1_700_000_000.0


def snap(ts: float, allocs: list[Allocation], gpus: int = 2) -> NodeSnapshot:
    return NodeSnapshot(node="n1", timestamp=ts, allocations=allocs,
                        gpus=[Gpu(index=i, uuid=f"GPU-{i}", model="H100", vendor="nvidia") for i in range(gpus)])


def test_holders_from_allocations_add_mig_slices_and_ignore_state() -> None:
    allocs = [
        Allocation(gpu=0, state="in_use", gpu_equivalents=3 / 7, gpu_instance=1, user="ana", group="ml",
                   slurm_job="77"),
        Allocation(gpu=0, state="idle_held", gpu_equivalents=2 / 7, gpu_instance=2, user="ana", group="ml",
                   slurm_job="77"),
        Allocation(gpu=0, state="free", gpu_equivalents=2 / 7, gpu_instance=3),
        Allocation(gpu=1, state="idle_held", gpu_equivalents=1.0, user="ben", container="c0ffee", pod="p",
                   namespace="ns"),
    ]
    sig = node_holders(snap(T, allocs))
    assert sig == ((0, (Holder("ana", "ml", "slurm:77", "77", "", "", round(5 / 7, 6),
                               mig="1:0.428571,2:0.285714"),)),
                   (1, (Holder("ben", "", "pod:ns/p", "", "ns/p", "c0ffee", 1.0),)))
    flipped = [Allocation(**{**{f: getattr(a, f) for f in a.__struct_fields__},
                             "state": "in_use" if a.state == "idle_held" else a.state}) for a in allocs]
    assert node_holders(snap(T, flipped)) == sig  # a utilisation dip is not a new hold


def test_processes_are_the_fallback() -> None:
    g = Gpu(index=0, uuid="u", model="m", vendor="nvidia", processes=[
        GpuProcess(pid=1, user="a", owner=Owner(container="abc")), GpuProcess(pid=2, user="a", owner=Owner(container="abc")),
        GpuProcess(pid=3, user="b")])
    sig = node_holders(NodeSnapshot(node="n", timestamp=T, gpus=[g]))
    assert sig == ((0, (Holder("a", "", "container:abc", "", "", "abc", 0.5), Holder("b", eq=0.5))),)


def test_record_writes_on_change_only_and_closes_silent_nodes(tmp_path: Path) -> None:
    hub = Hub(HubOptions(data=tmp_path / "d", max_sample_age=1e10))
    ext = UsageExtension(hub)
    try:
        held = [Allocation(gpu=0, state="in_use", gpu_equivalents=1.0, user="ana", slurm_job="9")]
        dip = [Allocation(gpu=0, state="idle_held", gpu_equivalents=1.0, user="ana", slurm_job="9")]
        for i in range(30):
            hub.ingest([snap(T + 10 * i, held if i % 3 else dip)])
        assert ext.db.execute("SELECT COUNT(*) FROM holds").fetchone()[0] == 1
        assert ext.db.execute("SELECT kind FROM events").fetchall() == [("gpu_taken",), ("job_started",)]
        hub.ingest([snap(T + 300, [])])
        assert ext.db.execute("SELECT start, end FROM holds").fetchall() == [(T, T + 300)]
        hub.ingest([snap(T + 310, held)])
        ext.record.close_silent(time.time() + 60)  # heard from a minute ago: not silent yet
        assert ext.db.execute("SELECT end FROM holds ORDER BY id").fetchall() == [(T + 300,), (None,)]
        ext.record.close_silent(time.time() + 121)  # silent past --down-after (120 s): released at its last snapshot
        assert ext.db.execute("SELECT end FROM holds ORDER BY id").fetchall() == [(T + 300,), (T + 310,)]
        kinds = [k for (k,) in ext.db.execute("SELECT kind FROM events ORDER BY rowid")]
        assert kinds == ["gpu_taken", "job_started", "gpu_released", "job_ended"] * 2
        values = ext.values()
        assert values["usage_errors_total"] == 0
    finally:
        ext.close()
        hub.close()


CHILD = textwrap.dedent("""
    import os, signal, sys
    sys.path[:0] = [{tests!r}, {usage!r}]
    from gpufleet.hub.service import Hub, HubOptions
    from gpufleet.hub.usage.extension import UsageExtension
    from simfleet import known_fleet
    fleet = known_fleet({now!r})
    hub = Hub(HubOptions(data=__import__("pathlib").Path({data!r})))
    ext = UsageExtension(hub)
    for node, snaps in fleet.snapshots().items():
        half = snaps[: len(snaps) // 2]
        for i in range(0, len(half), 50):
            hub.ingest(half[i:i + 50])
    ext.settle()
    hub.ingest([s for s in fleet.snapshots()["n1"][len(half): len(half) + 7]])  # recorded, not yet settled
    os.kill(os.getpid(), signal.SIGKILL)
""")


def test_kill_9_halfway_then_the_rest(tmp_path: Path) -> None:
    """A hub killed halfway (after settling some, with some recorded and not settled) and started
    again reports the whole schedule: nothing lost, nothing counted twice."""
    now = known_fleet().t0 + 30 * 3600
    fleet = known_fleet(now)
    data = tmp_path / "data"
    here = Path(__file__).resolve().parent
    code = CHILD.format(tests=str(here.parent), usage=str(here), now=now, data=str(data))
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                       env={**os.environ})
    assert r.returncode == -9, r.stderr[-2000:]
    hub = Hub(HubOptions(data=data))
    ext = UsageExtension(hub)
    try:
        for node, snaps in fleet.snapshots().items():
            rest = snaps[len(snaps) // 2:]
            for i in range(0, len(rest), 50):
                hub.ingest(rest[i:i + 50])
        ext.settle()
        with ext.record.lock:
            got = {row["user"]: row for row in usage(ext.db, fleet.t0, fleet.t0 + fleet.length, "user", now=now)}
        for user, want in fleet.expected("user").items():
            for f, v in want.items():
                assert abs(got[user][f] - v) < 1e-3, (user, f, got[user][f], v)
    finally:
        ext.close()
        hub.close()


def test_a_usage_db_of_another_layout_is_set_aside(tmp_path: Path) -> None:
    import sqlite3

    data = tmp_path / "d"
    data.mkdir()
    old = sqlite3.connect(data / "usage.db")
    old.execute("CREATE TABLE holds(id INTEGER PRIMARY KEY, state TEXT NOT NULL)")
    old.commit()
    old.close()
    hub = Hub(HubOptions(data=data, max_sample_age=1e10))
    ext = UsageExtension(hub)
    try:
        hub.ingest([snap(T, [Allocation(gpu=0, state="in_use", gpu_equivalents=1.0, user="ana")])])
        assert ext.db.execute("SELECT user FROM holds").fetchall() == [("ana",)]
        assert [p.name.startswith("usage.db.corrupt-") for p in data.iterdir() if p.name.startswith("usage.db.")] == [True]
    finally:
        ext.close()
        hub.close()


def test_events_api_and_24h_counts(tmp_path: Path) -> None:
    from access import authed_client

    now = time.time()
    hub = Hub(HubOptions(data=tmp_path / "d", compat=("ds01",)))
    ext = UsageExtension(hub)
    try:
        job = [Allocation(gpu=0, state="in_use", gpu_equivalents=1.0, user="ana", slurm_job="5"),
               Allocation(gpu=1, state="in_use", gpu_equivalents=1.0, user="ana", slurm_job="5")]
        hub.ingest([snap(now - 180, job), snap(now - 120, job[:1]), snap(now - 60, [])])
        v = ext.values()
        assert (v["gpus_taken_24h"], v["gpus_released_24h"], v["jobs_started_24h"], v["jobs_ended_24h"]) == (2, 2, 1, 1)
        with authed_client(hub, [ext], role="viewer", background=False) as c:
            events = c.get("/api/v1/usage/events", params={"since": "1h"}).json()["events"]
            assert [(e["t"] - now, e["kind"], e["gpu"]) for e in events][:3] == [
                (-60, "job_ended", 0), (-60, "gpu_released", 0), (-120, "gpu_released", 1)]
            assert sorted(e["kind"] for e in events) == ["gpu_released", "gpu_released", "gpu_taken", "gpu_taken",
                                                         "job_ended", "job_started"]
            assert c.get("/api/v1/usage/events", params={"kind": "nope"}).status_code == 400
            metrics = c.get("/metrics").text
            families = {f.name: f for f in text_string_to_metric_families(metrics)}  # prometheus_client's parser
            got = {s.name: s.value for f in families.values() for s in f.samples if s.name.startswith("gpufleet_hub_")}
            assert (got["gpufleet_hub_gpus_taken_24h"], got["gpufleet_hub_gpus_released_24h"],
                    got["gpufleet_hub_jobs_started_24h"], got["gpufleet_hub_jobs_ended_24h"]) == (2, 2, 1, 1)
            # --compat ds01: DS01's name, type and label for the same counts
            ds01 = families["ds01_events_24h_total"]
            assert ds01.type == "gauge"
            assert {s.labels["event_type"]: s.value for s in ds01.samples} == {
                "gpu.allocated": 2, "gpu.released": 2, "container.started": 1, "container.stopped": 1}
    finally:
        ext.close()
        hub.close()
