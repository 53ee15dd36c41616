"""Who holds each GPU and MIG slice, and the node's free / held capacity.

Runs after `accelerators` (GPUs joined with their processes' users, containers, pods and
Slurm jobs) and `usage` (per-user totals it adds to). The work is allocation/derive.py:
pure, one pass over the GPUs' processes. Optional allocation sources add what processes
cannot show (a GPU held by a job that runs nothing yet, the job's partition, which
containers are outside every allocation): a DS01-style state file (re-read when it
changes), Slurm and the kubelet's pod resources (asked at most every `allocation.refresh`
seconds, 30 by default).

Options (agent config): `allocation.idle_below` (busy share under which a held slot is
idle, 0.05), `allocation.state_file`, `allocation.slurm`, `allocation.pod_resources` (a
command), `allocation.refresh`, `groups` ("unix", "none", a groups file, or a user -> group dict).
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from ..allocation import derive, groups
from ..allocation.grant import Grant
from ..allocation.kubernetes import PodResourcesSource
from ..allocation.slurm import SlurmSource
from ..allocation.statefile import StateFile
from ..snapshot import NodeSnapshot
from .base import CollectContext


class Source(Protocol):
    def grants(self) -> list[Grant]: ...


def _float(v: object, default: float) -> float:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else default


class AllocationCollector:
    name = "allocation"

    def __init__(self, ctx: CollectContext) -> None:
        o = ctx.options
        self._idle_below = _float(o.get("allocation.idle_below"), derive.IDLE_BELOW)
        refresh = _float(o.get("allocation.refresh"), 30.0)
        self.sources: list[tuple[str, Source]] = []
        state_file = o.get("allocation.state_file")
        if state_file:
            self.sources.append(("state file", StateFile(Path(str(state_file)))))
        if o.get("allocation.slurm"):
            self.sources.append(("slurm", SlurmSource(str(o.get("node") or ""), refresh)))
        pod_resources = o.get("allocation.pod_resources")
        if pod_resources:
            self.sources.append(("pod resources", PodResourcesSource(str(pod_resources), refresh)))
        how = o.get("groups") or "unix"
        self._unix = groups.UnixGroups() if how == "unix" else None
        if isinstance(how, dict):  # given directly (simulated nodes: their made-up users' groups)
            self._groups: dict[str, str] = {str(k): str(v) for k, v in how.items()}
        else:
            # A bad groups file fails the agent's start, with the file named (GroupsError is a ValueError).
            self._groups = groups.load(Path(str(how))) if how not in ("unix", "none") else {}

    def collect(self, snap: NodeSnapshot) -> None:
        grants: list[Grant] = []
        errors: list[str] = []
        for _, source in self.sources:
            try:
                grants.extend(source.grants())
            except (ValueError, RuntimeError, OSError) as e:
                errors.append(str(e))
        group_of = self._groups
        if self._unix is not None:
            group_of = self._unix.mapping(sorted({p.user for g in snap.gpus for p in g.processes if p.user}
                                                 | {g.user for g in grants if g.user}
                                                 | {u.user for u in snap.usage}))
        # While a source fails, nothing is called unmanaged: the containers it would cover
        # are not outside it for want of an answer.
        derive.apply(snap, grants, managed=bool(self.sources) and not errors, idle_below=self._idle_below, groups=group_of)
        if errors:
            # Reported as this collector's error (gpufleet_collector_success 0), figures kept.
            raise RuntimeError("; ".join(errors))
