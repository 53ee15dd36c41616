"""Grant: what an allocation source says about one GPU (or MIG slice) and who holds it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Grant:
    """One holder of one slot according to a source (state file, Slurm, Kubernetes).

    A slot is named by `gpu` (index) and optionally `gpu_instance` (MIG), or by `uuid`
    (the GPU's or the MIG instance's) when the source knows only that.
    """

    source: str  # state_file | slurm | kubernetes
    gpu: int | None = None
    gpu_instance: int | None = None
    uuid: str = ""
    user: str = ""
    container: str = ""  # container name or id, as the source spells it
    pod: str = ""
    namespace: str = ""
    slurm_job: str = ""
    partition: str = ""
    running: bool = True  # False: a stopped container that still holds its GPU (DS01 keeps these)
