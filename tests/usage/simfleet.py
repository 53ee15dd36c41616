"""A simulated fleet with KNOWN jobs: what each GPU ran, when, how busy and at what power.

`snapshots()` yields every node's snapshots at a fixed step (sample-and-hold: a snapshot at t
stands for [t, t + step)); the energy counter is the exact integral of the power, with a
reset where a job says so. `expected()` is what an accounting report must find, computed
from the schedule alone, not from any gpufleet code.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

from gpufleet.snapshot import Allocation, Gpu, GpuProcess, HostInfo, NodeSnapshot, Owner

MIN = 60.0
HOUR = 3600.0
IDLE_POWER = 50.0


@dataclass(frozen=True)
class Job:
    user: str
    node: str
    gpus: tuple[int, ...]
    start: float  # seconds after T0
    end: float
    util: tuple[float, ...]  # per GPU of `gpus`
    power: tuple[float, ...]
    slurm: str = ""
    container: str = ""
    reset_at: float | None = None  # the energy counter of the job's first GPU restarts at 0 here

    def key(self) -> str:
        return f"slurm:{self.slurm}" if self.slurm else f"container:{self.container}" if self.container else ""


@dataclass
class Fleet:
    t0: float
    nodes: dict[str, int]  # node -> GPU count
    jobs: list[Job]
    length: float  # seconds of data after t0
    step: float = MIN
    # user -> group: snapshots then carry the agent's allocations (with groups), not only processes
    groups: dict[str, str] | None = None
    _energy: dict[tuple[str, int], float] = field(default_factory=dict)

    def job_at(self, node: str, gpu: int, t: float) -> tuple[Job, int] | None:
        for j in self.jobs:
            if j.node == node and gpu in j.gpus and j.start <= t - self.t0 < j.end:
                return j, j.gpus.index(gpu)
        return None

    def snapshots(self) -> dict[str, list[NodeSnapshot]]:
        out: dict[str, list[NodeSnapshot]] = {n: [] for n in self.nodes}
        steps = int(self.length // self.step) + 1
        for node, ngpus in self.nodes.items():
            prev_power = [0.0] * ngpus
            energy = [1e6 * (g + 1) for g in range(ngpus)]
            for k in range(steps):
                t = self.t0 + k * self.step
                gpus = []
                for g in range(ngpus):
                    hit = self.job_at(node, g, t)
                    if k:
                        energy[g] += prev_power[g] * self.step
                    util, power, procs = 0.0, IDLE_POWER, []
                    if hit is not None:
                        j, i = hit
                        util, power = j.util[i], j.power[i]
                        procs = [GpuProcess(pid=1000 + g, user=j.user, memory_bytes=2**30, command="python train.py",
                                            owner=Owner(slurm_job=j.slurm, container=j.container,
                                                        runtime="docker" if j.container else "")
                                            if (j.slurm or j.container) else None)]
                        if i == 0 and j.reset_at is not None and t - self.t0 == j.reset_at:
                            energy[g] = prev_power[g] * self.step  # restarted at 0 one step ago
                    prev_power[g] = power
                    gpus.append(Gpu(index=g, uuid=f"GPU-{node}-{g}", model="Sim H100", vendor="nvidia",
                                    values={"utilization_ratio": util, "power_watts": power,
                                            "energy_joules_total": energy[g], "memory_used_bytes": util * 2**34},
                                    processes=procs))
                allocs = []
                if self.groups is not None:
                    for g in gpus:
                        hit = self.job_at(node, g.index, t)
                        if hit is None:
                            allocs.append(Allocation(gpu=g.index, state="free", gpu_equivalents=1.0))
                            continue
                        j, _ = hit
                        state = "in_use" if g.values["utilization_ratio"] >= 0.05 else "idle_held"
                        allocs.append(Allocation(gpu=g.index, state=state, gpu_equivalents=1.0, user=j.user,
                                                 group=self.groups[j.user], slurm_job=j.slurm, container=j.container))
                out[node].append(NodeSnapshot(node=node, timestamp=t, backend="sim", host=HostInfo(hostname=node),
                                              gpus=gpus, allocations=allocs))
        return out

    def expected(self, by: str, since: float | None = None, until: float | None = None) -> dict[str, dict[str, float]]:
        """The report's rows from the schedule: GPU-hours, busy hours, kWh, waste per `by` key."""
        lo = self.t0 if since is None else since
        hi = self.t0 + self.length if until is None else until
        acc: dict[str, dict[str, float]] = {}
        for j in self.jobs:
            a, b = max(lo, self.t0 + j.start), min(hi, self.t0 + j.end)
            if b <= a:
                continue
            key = {"user": j.user, "node": j.node, "job": j.key(),
                   "group": (self.groups or {}).get(j.user, "")}[by]
            if by == "job" and not key:
                continue
            r = acc.setdefault(key, {"gpu_hours_in_use": 0.0, "gpu_hours_busy": 0.0, "energy_kwh": 0.0,
                                     "waste_gpu_hours": 0.0})
            hours = (b - a) / HOUR
            for u, p in zip(j.util, j.power):
                r["gpu_hours_in_use"] += hours
                r["gpu_hours_busy"] += hours * u
                r["energy_kwh"] += p * (b - a) / 3.6e6
                r["waste_gpu_hours"] += hours if u < 0.05 else 0.0
        for r in acc.values():
            r["mean_utilization"] = r["gpu_hours_busy"] / r["gpu_hours_in_use"]
        return acc


def known_fleet(now: float | None = None, groups: dict[str, str] | None = None) -> Fleet:
    """Two nodes of two GPUs, 8 hours that cross a UTC midnight, ending a few hours ago.

    alice's Slurm job 101 holds both GPUs of n1 for 5 h, using only GPU 0 (80 %): '2 GPUs held,
    1 used'. bob runs container abc on n2 GPU 0 (50 %, with an energy-counter reset), then a
    bare process (no job) on n2 GPU 1 at 100 %. Times are whole minutes after T0.
    """
    now = time.time() if now is None else now
    midnight = math.floor(now / 86400) * 86400
    t0 = midnight - 3 * HOUR if now - midnight > 6 * HOUR else midnight - 86400 - 3 * HOUR
    jobs = [
        Job("alice", "n1", (0, 1), 30 * MIN, 5 * HOUR + 30 * MIN, (0.8, 0.0), (300.0, 60.0), slurm="101"),
        Job("bob", "n2", (0,), 1 * HOUR, 2 * HOUR + 15 * MIN, (0.5,), (200.0,), container="abc123def456",
            reset_at=1 * HOUR + 40 * MIN),
        Job("bob", "n2", (1,), 4 * HOUR + 7 * MIN, 7 * HOUR, (1.0,), (400.0,)),
    ]
    return Fleet(t0=t0, nodes={"n1": 2, "n2": 2}, jobs=jobs, length=8 * HOUR, groups=groups)
