"""Who holds each GPU of a snapshot: the per-GPU holders the occupancy record compares.

A holder is (user, group, job key, Slurm job, pod, container, GPU-equivalents, MIG slices).
They come from the snapshot's `allocations` (the agent's allocation collector: processes and
allocation sources, MIG slices as fractions): each non-free entry of a GPU is a holder, and
one holder's entries on one GPU (several MIG slices) add up, each slice kept with its share.
A snapshot without allocations (an agent before them) falls back to the GPU's processes:
each distinct (user, job) among them holds an equal share. A GPU with no holder is free.

Whether a held GPU is busy or idle is not part of a holder: it changes from one collection to
the next, and is measured over time when figures are settled (settle.py), so a dip in
utilisation neither ends a hold nor starts a job again. Pure functions, so the ingest hook
(record.py) costs a tuple build and one compare per GPU when nothing changed.
"""

from __future__ import annotations

from typing import NamedTuple

from ...snapshot import Gpu, NodeSnapshot, Owner

FREE = "free"


class Holder(NamedTuple):
    user: str
    group: str = ""
    job: str = ""  # job key (job_key): "slurm:ID", "pod:NAMESPACE/NAME", "container:ID", or ""
    slurm_job: str = ""
    pod: str = ""  # NAMESPACE/NAME when the namespace is known
    container: str = ""
    eq: float = 1.0  # GPU-equivalents held (a MIG slice or a shared GPU: a fraction)
    # The MIG slices held, "GI:EQ,GI:EQ" (GPU instance and its share), "" for a whole GPU: settling
    # reads each slice's own activity (NVML gives no whole-GPU utilisation with MIG on).
    mig: str = ""


GpuHolders = tuple[Holder, ...]
Ident = tuple[str, str, str, str, str, str]  # a Holder without its share
Sig = tuple[tuple[int, GpuHolders], ...]  # per GPU (index, holders), in snapshot order


def job_key(slurm_job: str, pod: str, namespace: str, container: str) -> str:
    """One name per job across nodes: a Slurm job, else a pod, else a container."""
    if slurm_job:
        return f"slurm:{slurm_job}"
    if pod:
        return f"pod:{namespace}/{pod}" if namespace else f"pod:{pod}"
    if container:
        return f"container:{container}"
    return ""


def _ident(user: str, group: str, slurm_job: str, pod: str, namespace: str, container: str) -> Ident:
    full_pod = f"{namespace}/{pod}" if pod and namespace else pod
    return user, group, job_key(slurm_job, pod, namespace, container), slurm_job, full_pod, container


def _owner(user: str, owner: Owner | None) -> Ident:
    if owner is None:
        return user, "", "", "", "", ""
    return _ident(user, "", owner.slurm_job, owner.pod, owner.namespace, owner.container)


def process_holders(gpu: Gpu) -> GpuHolders:
    """Holders of one GPU from its processes (agents without allocations), sorted."""
    if not gpu.processes:
        return ()
    seen = sorted({_owner(p.user or "?", p.owner) for p in gpu.processes})
    share = 1.0 / len(seen)
    return tuple(Holder(*ident, eq=share) for ident in seen)


def node_holders(snap: NodeSnapshot) -> Sig:
    """Every GPU of the snapshot with its holders (free: ())."""
    if not snap.allocations:
        return tuple((g.index, process_holders(g)) for g in snap.gpus)
    per_gpu: dict[int, dict[Ident, float]] = {g.index: {} for g in snap.gpus}
    slices: dict[tuple[int, Ident], dict[int, float]] = {}
    for a in snap.allocations:
        if a.state == FREE:
            continue
        ident = _ident(a.user or "?", a.group, a.slurm_job, a.pod, a.namespace, a.container)
        held = per_gpu.setdefault(a.gpu, {})
        held[ident] = held.get(ident, 0.0) + a.gpu_equivalents
        if a.gpu_instance is not None:
            mine = slices.setdefault((a.gpu, ident), {})
            mine[a.gpu_instance] = mine.get(a.gpu_instance, 0.0) + a.gpu_equivalents
    return tuple((gpu, tuple(Holder(*ident, eq=round(eq, 6), mig=mig_text(slices.get((gpu, ident))))
                             for ident, eq in sorted(held.items())))
                 for gpu, held in per_gpu.items())


def mig_text(slices: dict[int, float] | None) -> str:
    """{GPU instance: share} -> "GI:EQ,..." in instance order ("" for none)."""
    return ",".join(f"{gi}:{round(eq, 6)}" for gi, eq in sorted(slices.items())) if slices else ""


def parse_mig(text: str) -> dict[str, float]:
    """"GI:EQ,..." -> {GPU instance label: share}."""
    out: dict[str, float] = {}
    for part in text.split(","):
        gi, _, eq = part.partition(":")
        if gi and eq:
            out[gi] = float(eq)
    return out


def fingerprint(snap: NodeSnapshot) -> tuple[object, ...]:
    """What holders are built from, read off cheaply (~2 us for 8 GPUs, a tenth of node_holders):
    equal fingerprints mean equal holders, so the ingest hook usually stops here."""
    if snap.allocations:
        return tuple([(a.gpu, a.gpu_instance, a.state == FREE, a.user, a.group, a.slurm_job, a.pod, a.namespace,
                       a.container, a.gpu_equivalents) for a in snap.allocations])
    return tuple([(g.index, tuple([(p.user, p.owner) for p in g.processes])) for g in snap.gpus])
