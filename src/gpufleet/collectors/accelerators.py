"""Accelerators from the backend, and who runs on them (joined with the process table).

Backends report GPU processes by pid and memory only (the simulator fills more); the user,
command and owner come from the host process table the `processes` collector built, and
each host process learns which accelerators it uses.
"""

from __future__ import annotations

from ..snapshot import Gpu, NodeSnapshot, Process
from .base import CollectContext


def join_processes(gpus: list[Gpu], processes: list[Process]) -> None:
    by_pid = {p.pid: p for p in processes}
    for gpu in gpus:
        for gp in gpu.processes:
            host = by_pid.get(gp.pid)
            if host is None:
                continue  # not in our pid namespace, or simulated: keep what the backend said
            if not gp.user:
                gp.user = host.user
            if not gp.command:
                gp.command = host.command
            if gp.owner is None:
                gp.owner = host.owner
            elif host.owner is None:
                host.owner = gp.owner  # the backend knew (the simulator does): show it on the host row too
            if gpu.index not in host.gpus:
                host.gpus.append(gpu.index)


class AcceleratorCollector:
    name = "accelerators"

    def __init__(self, ctx: CollectContext) -> None:
        self._ctx = ctx

    def collect(self, snap: NodeSnapshot) -> None:
        backend = self._ctx.backend
        if backend is None:
            # No accelerator library or device on this node: an empty, successful round.
            snap.gpus = []
            snap.values["gpus"] = 0.0
            return
        snap.backend = backend.name
        gpus = backend.sample()
        for gpu in gpus:
            # `processes` stays as the backend set it: absent when the driver could not list them
            # (no permission, or unsupported), so "unknown" never reads as "idle" (0).
            # MIG instances are GPU instances; several compute instances may share one.
            gpu.values["mig_instances"] = float(len({m.gpu_instance for m in gpu.mig}))
        join_processes(gpus, snap.processes)
        snap.gpus = gpus
        snap.values["gpus"] = float(len(gpus))
