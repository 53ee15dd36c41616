"""Who holds each GPU of a snapshot: the per-GPU holders the occupancy record compares.

A holder is (state, user, group, job key, Slurm job, pod, container, GPU-equivalents). Until
the agent reports an allocation for each GPU, holders come from the GPU's processes: each
distinct (user, job) among them holds an equal share of the GPU, in state `in_use`; a GPU
without processes is free (no holder). Pure functions over snapshot records, so the ingest
hook (record.py) costs one tuple build and one compare per GPU when nothing changed.
"""

from __future__ import annotations

from typing import NamedTuple

from ...snapshot import Gpu, Owner

IN_USE = "in_use"
IDLE_HELD = "idle_held"
FREE = "free"


class Holder(NamedTuple):
    state: str  # in_use | idle_held
    user: str
    group: str = ""
    job: str = ""  # job key (job_key): "slurm:ID", "pod:NAMESPACE/NAME", "container:ID", or ""
    slurm_job: str = ""
    pod: str = ""
    container: str = ""
    eq: float = 1.0  # GPU-equivalents held (a MIG slice or a shared GPU: a fraction)


def job_key(slurm_job: str, pod: str, namespace: str, container: str) -> str:
    """One name per job across nodes: a Slurm job, else a pod, else a container."""
    if slurm_job:
        return f"slurm:{slurm_job}"
    if pod:
        return f"pod:{namespace}/{pod}" if namespace else f"pod:{pod}"
    if container:
        return f"container:{container}"
    return ""


def _owner_key(owner: Owner | None) -> tuple[str, str, str, str]:
    if owner is None:
        return "", "", "", ""
    pod = f"{owner.namespace}/{owner.pod}" if owner.pod and owner.namespace else owner.pod
    return job_key(owner.slurm_job, owner.pod, owner.namespace, owner.container), owner.slurm_job, pod, owner.container


def gpu_holders(gpu: Gpu) -> tuple[Holder, ...]:
    """The holders of one GPU, sorted (so equal states compare equal); () when it is free."""
    if not gpu.processes:
        return ()
    seen = sorted({(p.user or "?", *_owner_key(p.owner)) for p in gpu.processes})
    share = 1.0 / len(seen)
    return tuple(Holder(IN_USE, user, "", job, slurm, pod, container, share)
                 for user, job, slurm, pod, container in seen)
