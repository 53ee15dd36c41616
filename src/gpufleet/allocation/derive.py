"""Derive each slot's state and holders from a snapshot: pure, run every interval.

A slot is a whole GPU, or one MIG GPU instance when the GPU has any (several compute
instances of one GPU instance are one slot). A slot is held when a process runs on it or a
source grants it; held slots are `in_use` unless their busy share is known and under the
idle threshold (`idle_held`, the waste case). A slot nobody holds but whose utilisation is
above the threshold is `in_use` by "unknown" (a process outside our pid namespace, or a
driver that lists none). Answering GPUs only: a GPU that is down offers no capacity.

Cost: one pass over each GPU's processes and the grants; no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from ..snapshot import Allocation, Gpu, GpuProcess, NodeSnapshot, UserUsage, gpu_busy_ratio
from .grant import Grant

FREE, IN_USE, IDLE_HELD = "free", "in_use", "idle_held"
STATES = (FREE, IN_USE, IDLE_HELD)
# Under this busy share a held slot is idle: the 5% DS01's waste rules use, and above the
# few percent an idle CUDA context or a driver poll shows.
IDLE_BELOW = 0.05
UNKNOWN_USER = "unknown"

# MIG profiles name their compute slices: "3g.40gb" (GPU instance), "1c.3g.40gb" (compute instance).
_SLICES = re.compile(r"(?:^|\.)(\d+)g\.")
# Compute slices of a whole GPU, by model; 7 for A100/H100/H200/B200 and what MIG adds next.
_MODEL_SLICES = (("A30", 4),)
DEFAULT_SLICES = 7


def model_slices(model: str) -> int:
    for marker, n in _MODEL_SLICES:
        if marker in model:
            return n
    return DEFAULT_SLICES


def mig_equivalents(profile: str, model: str = "") -> float | None:
    """'3g.40gb' on an H100 -> 3/7 (DS01's gpu_equivalents); None when the profile says no slices."""
    m = _SLICES.search(profile)
    if m is None:
        return None
    return min(1.0, int(m.group(1)) / model_slices(model))


@dataclass(slots=True)
class _Holder:
    user: str
    container: str = ""
    pod: str = ""
    namespace: str = ""
    slurm_job: str = ""
    partition: str = ""
    source: str = "processes"
    unmanaged: bool = False
    stopped: bool = False


@dataclass(slots=True)
class Slot:
    gpu: Gpu
    gpu_instance: int | None
    profile: str
    uuid: str
    equivalents: float
    busy: float | None
    processes: list[GpuProcess] = field(default_factory=list)


def slots(gpu: Gpu) -> list[Slot]:
    """The allocatable units of one GPU, each with its processes and busy share."""
    if not gpu.mig:
        return [Slot(gpu, None, "", gpu.uuid, 1.0, gpu_busy_ratio(gpu.values), list(gpu.processes))]
    by_gi: dict[int, Slot] = {}
    for m in gpu.mig:
        active = m.values.get("graphics_engine_active_ratio")
        s = by_gi.get(m.gpu_instance)
        if s is None:
            by_gi[m.gpu_instance] = Slot(gpu, m.gpu_instance, m.profile, m.uuid, 0.0, active)
        elif active is not None and (s.busy is None or active > s.busy):
            s.busy = active  # any busy compute instance makes its GPU instance busy
    out = sorted(by_gi.values(), key=lambda s: s.gpu_instance or 0)
    for s in out:
        eq = mig_equivalents(s.profile, gpu.model)
        s.equivalents = eq if eq is not None else 1.0 / len(out)
    for p in gpu.processes:
        # A process on a MIG GPU that the driver did not place in an instance belongs to no slot.
        if p.gpu_instance is not None and p.gpu_instance in by_gi:
            by_gi[p.gpu_instance].processes.append(p)
    return out


def _process_holders(procs: Iterable[GpuProcess]) -> list[_Holder]:
    seen: dict[tuple[str, str, str, str, str], _Holder] = {}
    for p in procs:
        o = p.owner
        key = (p.user or UNKNOWN_USER, o.container if o else "", o.pod if o else "",
               o.namespace if o else "", o.slurm_job if o else "")
        if key not in seen:
            seen[key] = _Holder(*key)
    return list(seen.values())


def _same_container(a: str, b: str) -> bool:
    # Sources name a container by name or full id, processes by short id: a prefix match of ids.
    return bool(a and b) and (a == b or (len(a) >= 12 and len(b) >= 12 and (a.startswith(b) or b.startswith(a))))


_POD_UID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$|^[0-9a-f]{32}$")


def covers(g: Grant, h: _Holder) -> bool:
    """Whether a grant (on the same slot) accounts for a holder seen through its processes."""
    if g.slurm_job and h.slurm_job:
        return g.slurm_job == h.slurm_job
    if g.pod and h.pod:
        if _POD_UID.match(h.pod) and not _POD_UID.match(g.pod):
            return True  # the process's pod is known only by UID: a pod on its granted slot is that pod
        return g.pod == h.pod and (not g.namespace or not h.namespace or g.namespace == h.namespace)
    if _same_container(g.container, h.container):
        return True
    return bool(g.user) and g.user == h.user


def _grant_holder(g: Grant) -> _Holder:
    return _Holder(g.user or UNKNOWN_USER, g.container, g.pod, g.namespace, g.slurm_job, g.partition, g.source,
                   stopped=not g.running)


def _merge(found: list[_Holder], granted: Sequence[Grant], managed: bool) -> list[_Holder]:
    """Grants first (they name the job or container properly; what they leave out, such as a
    pod's user, comes from the processes they cover), then what processes show that no grant
    covers: with any source configured, those containers and pods are `unmanaged`."""
    holders: list[_Holder] = []
    covered: set[int] = set()
    for g in granted:
        h = _grant_holder(g)
        for i, f in enumerate(found):
            if covers(g, f):
                covered.add(i)
                if not g.user:
                    h.user = f.user
                h.slurm_job = h.slurm_job or f.slurm_job
                h.namespace = h.namespace or f.namespace
                h.stopped = False  # its processes run
        holders.append(h)
    for i, f in enumerate(found):
        if i not in covered:
            f.unmanaged = managed and bool(f.container or f.pod)
            holders.append(f)
    return holders


def _grants_by_slot(grants: Sequence[Grant], gpus: Sequence[Gpu]) -> dict[tuple[int, int | None], list[Grant]]:
    by_uuid: dict[str, tuple[int, int | None]] = {}
    for g in gpus:
        by_uuid[g.uuid] = (g.index, None)
        for m in g.mig:
            if m.uuid:
                by_uuid[m.uuid] = (g.index, m.gpu_instance)
    out: dict[tuple[int, int | None], list[Grant]] = {}
    for gr in grants:
        key = by_uuid.get(gr.uuid) if gr.uuid else None
        if key is None and gr.gpu is not None:
            key = (gr.gpu, gr.gpu_instance)
        if key is not None:
            out.setdefault(key, []).append(gr)
    return out


def allocations(gpus: Sequence[Gpu], grants: Sequence[Grant] = (), *, managed: bool = False,
                idle_below: float = IDLE_BELOW) -> list[Allocation]:
    """One entry per slot and holder of every answering GPU (see snapshot.Allocation).

    `managed`: an allocation source is configured, so containers outside every grant are
    flagged unmanaged (with no source, nothing is "outside").
    """
    granted = _grants_by_slot(grants, gpus)
    out: list[Allocation] = []
    for gpu in gpus:
        if not gpu.up:
            continue
        gpu_slots = slots(gpu)
        for s in gpu_slots:
            g = granted.get((gpu.index, s.gpu_instance))
            if g is None and s.gpu_instance is not None:
                # A source that grants the whole GPU index of a MIG GPU: every slice is its.
                g = granted.get((gpu.index, None))
            holders = _merge(_process_holders(s.processes), g or (), managed)
            if not holders and s.busy is not None and s.busy >= idle_below:
                holders = [_Holder(UNKNOWN_USER)]
            if not holders:
                out.append(_entry(s, FREE, s.equivalents, None))
                continue
            state = IDLE_HELD if s.busy is not None and s.busy < idle_below else IN_USE
            share = s.equivalents / len(holders)
            out.extend(_entry(s, state, share, h) for h in holders)
    return out


def _entry(s: Slot, state: str, equivalents: float, h: _Holder | None) -> Allocation:
    a = Allocation(gpu=s.gpu.index, state=state, gpu_equivalents=equivalents, uuid=s.uuid,
                   gpu_instance=s.gpu_instance, profile=s.profile, utilization_ratio=s.busy)
    if h is not None:
        a.user, a.container, a.pod, a.namespace = h.user, h.container, h.pod, h.namespace
        a.slurm_job, a.partition, a.source, a.unmanaged = h.slurm_job, h.partition, h.source, h.unmanaged
        a.stopped = h.stopped
    return a


def node_values(allocs: Iterable[Allocation]) -> dict[str, float]:
    """Capacity per node: GPUs and GPU-equivalents free / held / idle-held (catalogue node keys)."""
    eq = {FREE: 0.0, IN_USE: 0.0, IDLE_HELD: 0.0}
    held_gpus: set[int] = set()
    all_gpus: set[int] = set()
    unmanaged: set[str] = set()
    for a in allocs:
        eq[a.state] += a.gpu_equivalents
        all_gpus.add(a.gpu)
        if a.state != FREE:
            held_gpus.add(a.gpu)
        if a.unmanaged:
            unmanaged.add(a.container or a.pod)
    held = eq[IN_USE] + eq[IDLE_HELD]
    return {
        "gpus_free": float(len(all_gpus - held_gpus)),
        "gpus_held": float(len(held_gpus)),
        "gpu_equivalents_capacity": round(held + eq[FREE], 6),
        "gpu_equivalents_free": round(eq[FREE], 6),
        "gpu_equivalents_held": round(held, 6),
        "gpu_equivalents_idle_held": round(eq[IDLE_HELD], 6),
        "unmanaged_containers": float(len(unmanaged)),
    }


CONTAINER_STATES = ("running", "stopped")


def containers_by_state(allocs: Iterable[Allocation]) -> dict[str, float]:
    """Containers and pods holding GPUs, running or stopped (a stopped one an allocator still
    gives a GPU); each counted once however many GPUs it holds."""
    seen: dict[str, bool] = {}
    for a in allocs:
        key = a.container or (f"{a.namespace}/{a.pod}" if a.pod else "")
        if key and a.state != FREE:
            seen[key] = seen.get(key, True) and a.stopped
    stopped = sum(1 for s in seen.values() if s)
    return {"running": float(len(seen) - stopped), "stopped": float(stopped)}


@dataclass(slots=True)
class _UserTotals:
    slots: set[tuple[int, int | None]] = field(default_factory=set)
    eq: float = 0.0
    idle_eq: float = 0.0
    busy_weighted: float = 0.0
    busy_weight: float = 0.0


def user_values(allocs: Iterable[Allocation]) -> dict[str, dict[str, float]]:
    """Per user: slots held, GPU-equivalents held and idle-held, and the mean busy share of
    what they hold (weighted by GPU-equivalents; absent when no held slot reports one)."""
    totals: dict[str, _UserTotals] = {}
    for a in allocs:
        if a.state == FREE:
            continue
        t = totals.get(a.user)
        if t is None:
            t = totals[a.user] = _UserTotals()
        t.slots.add((a.gpu, a.gpu_instance))
        t.eq += a.gpu_equivalents
        if a.state == IDLE_HELD:
            t.idle_eq += a.gpu_equivalents
        if a.utilization_ratio is not None:
            t.busy_weighted += a.utilization_ratio * a.gpu_equivalents
            t.busy_weight += a.gpu_equivalents
    out: dict[str, dict[str, float]] = {}
    for user, t in totals.items():
        v = {"gpus_allocated": float(len(t.slots)), "gpu_equivalents": round(t.eq, 6),
             "gpu_equivalents_idle": round(t.idle_eq, 6)}
        if t.busy_weight > 0:
            v["held_gpu_utilization_ratio"] = round(t.busy_weighted / t.busy_weight, 6)
        out[user] = v
    return out


def apply(snap: NodeSnapshot, grants: Sequence[Grant] = (), *, managed: bool = False,
          idle_below: float = IDLE_BELOW, groups: dict[str, str] | None = None) -> None:
    """Fill snap.allocations and the capacity figures on the node and its users."""
    allocs = allocations(snap.gpus, grants, managed=managed, idle_below=idle_below)
    if groups:
        for a in allocs:
            if a.user:
                a.group = groups.get(a.user, "")
    snap.allocations = allocs
    snap.values.update(node_values(allocs))
    per_user = user_values(allocs)
    by_user = {u.user: u for u in snap.usage}
    for user, values in per_user.items():
        u = by_user.get(user)
        if u is None:
            # Known only from a grant (a job holding a GPU with no process yet).
            u = by_user[user] = UserUsage(user=user)
            snap.usage.append(u)
        u.values.update(values)
    if groups:
        for u in snap.usage:
            u.group = groups.get(u.user, "")
    snap.usage.sort(key=lambda u: u.user)
