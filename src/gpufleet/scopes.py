"""Scopes: which records of a NodeSnapshot a catalogue metric lives on, and their labels.

One table, beside snapshot.py: for each scope its identity labels, the stem of its metric
names (gpufleet_<stem>_<key>), its title in docs/metrics.md, whether the hub keeps its series
as history, and how to read its records out of a snapshot. The catalogue's SCOPE_LABELS and
SCOPE_STEM, the exposition, the series the store and remote write take, the alert engine and
the metric reference all read it, so a new kind of record is one entry here.

A record is (identity label values in `labels` order, values, info labels).
"""

from __future__ import annotations

import platform
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

from . import __version__
from .snapshot import Gpu, NodeSnapshot

Record = tuple[tuple[str, ...], Mapping[str, float], Mapping[str, str]]
Reader = Callable[[NodeSnapshot], Iterator[Record]]

_EMPTY: Mapping[str, str] = {}
COMMAND_LABEL_MAX = 80  # long command lines would bloat every scrape and the TSDB index


@dataclass(frozen=True, slots=True)
class Scope:
    name: str
    labels: tuple[str, ...]  # identity labels of its records (besides `node`, which every series has)
    stem: str  # metric names are gpufleet_<stem>_<key>
    title: str  # its section in docs/metrics.md
    stored: bool  # the hub keeps its series as history (not: per-process churn, the hub's own)
    read: Reader | None  # its records in a snapshot; None for scopes the hub fills itself


def gpu_ids(g: Gpu) -> tuple[str, str, str, str]:
    return (str(g.index), g.uuid, g.model, g.vendor)


def _node(snap: NodeSnapshot) -> Iterator[Record]:
    h = snap.host
    yield ((), snap.values, {"hostname": h.hostname, "os": h.os, "os_version": h.os_version, "kernel": h.kernel,
                             "cpu_model": h.cpu_model, "arch": h.arch, "backend": snap.backend or "none"})


def _agent(snap: NodeSnapshot) -> Iterator[Record]:
    yield ((), snap.agent, {"version": __version__, "python_version": platform.python_version()})


def _cpu(snap: NodeSnapshot) -> Iterator[Record]:
    for c in snap.cpus:
        yield ((str(c.cpu),), c.values, _EMPTY)


def _disk(snap: NodeSnapshot) -> Iterator[Record]:
    for d in snap.disks:
        yield ((d.device, d.mountpoint, d.fstype), d.values, _EMPTY)


def _net(snap: NodeSnapshot) -> Iterator[Record]:
    for n in snap.networks:
        yield ((n.interface,), n.values, _EMPTY)


def _gpu(snap: NodeSnapshot) -> Iterator[Record]:
    for g in snap.gpus:
        yield (gpu_ids(g), g.values, g.info)


def _gpu_link(snap: NodeSnapshot) -> Iterator[Record]:
    for g in snap.gpus:
        ids = gpu_ids(g)
        for link in g.links:
            yield (ids + (str(link.link),), link.values, _EMPTY)


def _mig(snap: NodeSnapshot) -> Iterator[Record]:
    for g in snap.gpus:
        ids = gpu_ids(g)
        for m in g.mig:
            yield (ids + (str(m.gpu_instance), str(m.compute_instance), m.profile), m.values, _EMPTY)


def _gpu_process(snap: NodeSnapshot) -> Iterator[Record]:
    for g in snap.gpus:
        for p in g.processes:
            if p.memory_bytes is None:
                continue
            o = p.owner
            yield ((str(g.index), g.uuid, str(p.pid), p.user, p.command[:COMMAND_LABEL_MAX],
                    o.container if o else "", o.pod if o else "", o.namespace if o else "",
                    o.slurm_job if o else ""),
                   {"memory_used_bytes": float(p.memory_bytes)}, _EMPTY)


def _user(snap: NodeSnapshot) -> Iterator[Record]:
    for u in snap.usage:
        yield ((u.user,), u.values, _EMPTY)


def _allocation(snap: NodeSnapshot) -> Iterator[Record]:
    for a in snap.allocations:
        gi = "" if a.gpu_instance is None else str(a.gpu_instance)
        yield ((str(a.gpu), a.uuid, gi, a.profile, a.user, a.group, a.container, a.pod, a.namespace, a.slurm_job),
               {"gpu_equivalents": a.gpu_equivalents},
               {"state": a.state, "source": a.source, "unmanaged": "true" if a.unmanaged else "false"})


def _node_containers(snap: NodeSnapshot) -> Iterator[Record]:
    if snap.allocations:
        from .allocation.derive import containers_by_state

        for state, n in containers_by_state(snap.allocations).items():
            yield ((state,), {"gpu_containers": n}, _EMPTY)


def _collector(snap: NodeSnapshot) -> Iterator[Record]:
    for c in snap.collectors:
        yield ((c.collector,), {"duration_seconds": c.duration, "success": 1.0 if c.success else 0.0,
                                "errors_total": float(c.errors_total)}, _EMPTY)


_GPU = ("gpu", "uuid", "model", "vendor")

# In the order docs/metrics.md lists them.
SCOPES: dict[str, Scope] = {s.name: s for s in (
    Scope("node", (), "node", "Node", True, _node),
    Scope("cpu", ("cpu",), "cpu", "CPU cores", True, _cpu),
    Scope("disk", ("device", "mountpoint", "fstype"), "disk", "Disks (per mount)", True, _disk),
    Scope("net", ("interface",), "network", "Network (per interface)", True, _net),
    Scope("gpu", _GPU, "gpu", "Accelerators", True, _gpu),
    # Links are live only (snapshot, /metrics, Prometheus): 18 links x 9 readings x 8 GPUs would
    # add ~1300 series per HGX node to the hub's store; their per-GPU sums (gpu scope) are stored.
    Scope("gpu_link", _GPU + ("link",), "gpu_link", "GPU-to-GPU links (NVLink, XGMI)", False, _gpu_link),
    Scope("mig", _GPU + ("gpu_instance", "compute_instance", "profile"), "mig", "MIG instances", True, _mig),
    Scope("gpu_process", ("gpu", "uuid", "pid", "user", "command", "container", "pod", "namespace", "slurm_job"),
          "gpu_process", "Processes on accelerators", False, _gpu_process),
    Scope("user", ("user",), "user", "Per-user usage", True, _user),
    Scope("node_containers", ("state",), "node", "Containers holding accelerators (per state)", True,
          _node_containers),
    # Not kept as history: holders come and go (like processes); the hub accounts from snapshots.
    Scope("allocation", ("gpu", "uuid", "gpu_instance", "profile", "user", "group", "container", "pod",
                         "namespace", "slurm_job"), "allocation", "Allocations (who holds each GPU or MIG slice)",
          False, _allocation),
    Scope("collector", ("collector",), "collector", "Collectors", True, _collector),
    Scope("agent", (), "agent", "The agent", True, _agent),
    Scope("hub", (), "hub", "The hub", False, None),
    Scope("group", ("group",), "group", "Per-group usage (the hub's rollup of its nodes' users)", False, None),
    Scope("hub_job", ("job",), "hub_background", "The hub's background jobs", False, None),
    Scope("hub_scrape", ("target", "node"), "hub_scrape", "The hub's pull scrapes (per target)", False, None),
)}

STORED_SCOPES: tuple[str, ...] = tuple(name for name, s in SCOPES.items() if s.stored)


def records(snap: NodeSnapshot, scope: str) -> Iterator[Record]:
    """The snapshot's records for one scope (none for scopes a snapshot does not hold)."""
    read = SCOPES[scope].read
    return read(snap) if read is not None else iter(())
