"""All collectors on the machine running the tests: sane values, keys from the catalogue."""

from __future__ import annotations

import os
import pwd
import time

import psutil

from gpufleet import catalogue
from gpufleet.collectors import build, collector_names
from gpufleet.collectors.base import CollectContext
from gpufleet.snapshot import NodeSnapshot, from_json, to_json


def run_all() -> NodeSnapshot:
    snap = NodeSnapshot(node="test", timestamp=time.time())
    for c in build(CollectContext()):
        c.collect(snap)
    return snap


def test_table_builds_the_host_collectors_in_order() -> None:
    host = ["system", "cpu", "memory", "disks", "network", "users", "processes", "accelerators", "usage",
            "allocation"]
    assert [n for n in collector_names() if n in host] == host
    # accelerators joins what processes built, usage sums both, allocation adds to usage: the
    # default build keeps that order.
    assert [c.name for c in build(CollectContext())] == host


def test_real_host_values_are_sane() -> None:
    snap = run_all()
    v = snap.values
    assert v["memory_total_bytes"] > 0
    assert 0 < v["memory_available_bytes"] <= v["memory_total_bytes"]
    assert v["cpu_cores"] == psutil.cpu_count() and v["cpu_physical_cores"] >= 1
    assert abs(v["boot_time_seconds"] - psutil.boot_time()) < 2
    assert v["uptime_seconds"] > 0
    assert v["load1"] >= 0 and v["gpus"] == 0.0
    assert len(snap.cpus) == v["cpu_cores"]
    assert snap.host.hostname and snap.host.kernel == os.uname().release and snap.host.arch == os.uname().machine
    assert any(n.interface == "lo" for n in snap.networks)
    assert any(d.mountpoint == "/" and d.values["size_bytes"] > 0 for d in snap.disks)

    assert v["processes"] > 0 and v["processes"] == len(snap.processes)
    me = next(p for p in snap.processes if p.pid == os.getpid())
    assert me.user == pwd.getpwuid(os.getuid()).pw_name
    assert me.command == " ".join(psutil.Process().cmdline())
    assert me.ppid == os.getppid() and me.memory_bytes > 0
    assert abs(me.started - psutil.Process().create_time()) < 1
    assert abs(me.cpu_seconds - sum(os.times()[:2])) < 0.5
    # The process table matches psutil's view (processes may come and go in between).
    ours, theirs = {p.pid for p in snap.processes}, set(psutil.pids())
    assert len(ours ^ theirs) <= 5
    usage = {u.user: u for u in snap.usage}
    assert usage[me.user].values["processes"] >= 1


def test_own_cpu_use_is_seen() -> None:
    from gpufleet.collectors.processes import ProcessCollector

    c = ProcessCollector(CollectContext())
    end = time.process_time() + 0.3
    while time.process_time() < end:
        pass
    snap = NodeSnapshot(node="test", timestamp=time.time())
    c.collect(snap)
    me = next(p for p in snap.processes if p.pid == os.getpid())
    assert me.cpu_ratio > 0.2


def test_every_value_key_is_in_the_catalogue() -> None:
    snap = run_all()
    checks = [("node", snap.values)]
    checks += [("cpu", c.values) for c in snap.cpus]
    checks += [("disk", d.values) for d in snap.disks]
    checks += [("net", n.values) for n in snap.networks]
    checks += [("user", u.values) for u in snap.usage]
    for scope, values in checks:
        unknown = set(values) - catalogue.keys(scope)
        assert not unknown, f"{scope}: {unknown}"
    # And the whole snapshot survives its JSON form.
    assert from_json(to_json(snap)) == snap
