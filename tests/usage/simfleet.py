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

from gpufleet.snapshot import Allocation, Gpu, GpuProcess, HostInfo, MigInstance, NodeSnapshot, Owner

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
    # MIG: the GPU instance each entry of `gpus` is (a job may hold several slices of one GPU)
    slices: tuple[int, ...] = ()
    # Busy periods: from each time on (seconds after T0), the utilisation of each entry
    phases: tuple[tuple[float, tuple[float, ...]], ...] = ()

    def key(self) -> str:
        return f"slurm:{self.slurm}" if self.slurm else f"container:{self.container}" if self.container else ""

    def util_at(self, i: int, rel: float) -> float:
        u = self.util[i]
        for at, utils in self.phases:
            if rel >= at:
                u = utils[i]
        return u


def slice_memory(active: float, held: bool) -> float:
    """A MIG slice's memory used: 1 GiB for a held slice's process, 4 GiB more when fully busy."""
    return (1.0 + 4.0 * active) * 2**30 if held else 0.0


@dataclass(frozen=True)
class Slice:
    """One MIG instance of a simulated GPU."""

    gi: int
    profile: str
    eq: float  # GPU-equivalents (compute slices / 7)


@dataclass
class Fleet:
    t0: float
    nodes: dict[str, int]  # node -> GPU count
    jobs: list[Job]
    length: float  # seconds of data after t0
    step: float = MIN
    # user -> group: snapshots then carry the agent's allocations (with groups), not only processes
    groups: dict[str, str] | None = None
    # (node, GPU) -> its MIG instances: NVML's view, no whole-GPU utilisation, each instance's activity
    mig: dict[tuple[str, int], tuple[Slice, ...]] = field(default_factory=dict)

    def job_at(self, node: str, gpu: int, t: float, gi: int | None = None) -> tuple[Job, int] | None:
        for j in self.jobs:
            if j.node != node or not j.start <= t - self.t0 < j.end:
                continue
            for i, (g, s) in enumerate(zip(j.gpus, j.slices or (None,) * len(j.gpus))):
                if g == gpu and s == gi:
                    return j, i
        return None

    def mig_power(self, node: str, gpu: int, t: float) -> float:
        """A MIG GPU draws its idle power plus each running slice job's."""
        power = IDLE_POWER
        for sl in self.mig[(node, gpu)]:
            hit = self.job_at(node, gpu, t, sl.gi)
            if hit is not None:
                power += hit[0].power[hit[1]]
        return power

    def _mig_gpu(self, node: str, g: int, t: float, energy: float) -> tuple[Gpu, list[Allocation], float]:
        """A MIG GPU at t: each instance's activity, processes and allocation; returns its power."""
        procs, migs, allocs = [], [], []
        for sl in self.mig[(node, g)]:
            hit = self.job_at(node, g, t, sl.gi)
            active = 0.0
            if hit is None:
                allocs.append(Allocation(gpu=g, state="free", gpu_equivalents=sl.eq, gpu_instance=sl.gi,
                                         profile=sl.profile))
            else:
                j, i = hit
                active = j.util_at(i, t - self.t0)
                procs.append(GpuProcess(pid=2000 + 10 * g + sl.gi, user=j.user, memory_bytes=2**30,
                                        command="python train.py", gpu_instance=sl.gi,
                                        owner=Owner(slurm_job=j.slurm, container=j.container,
                                                    runtime="docker" if j.container else "")))
                allocs.append(Allocation(gpu=g, state="in_use" if active >= 0.05 else "idle_held",
                                         gpu_equivalents=sl.eq, gpu_instance=sl.gi, profile=sl.profile, user=j.user,
                                         group=(self.groups or {}).get(j.user, ""), slurm_job=j.slurm,
                                         container=j.container, utilization_ratio=active))
            migs.append(MigInstance(gpu_instance=sl.gi, profile=sl.profile, uuid=f"MIG-{node}-{g}-{sl.gi}",
                                    values={"graphics_engine_active_ratio": active,
                                            "memory_used_bytes": slice_memory(active, hit is not None),
                                            "memory_total_bytes": sl.eq * 80 * 2**30}))
        power = self.mig_power(node, g, t)
        gpu = Gpu(index=g, uuid=f"GPU-{node}-{g}", model="Sim A100", vendor="nvidia",
                  values={"power_watts": power, "energy_joules_total": energy, "mig_instances": float(len(migs))},
                  processes=procs, mig=migs)
        return gpu, allocs, power

    def snapshots(self) -> dict[str, list[NodeSnapshot]]:
        out: dict[str, list[NodeSnapshot]] = {n: [] for n in self.nodes}
        steps = int(self.length // self.step) + 1
        for node, ngpus in self.nodes.items():
            prev_power = [0.0] * ngpus
            energy = [1e6 * (g + 1) for g in range(ngpus)]
            for k in range(steps):
                t = self.t0 + k * self.step
                gpus = []
                mig_allocs: list[Allocation] = []
                for g in range(ngpus):
                    if k:
                        energy[g] += prev_power[g] * self.step
                    if (node, g) in self.mig:
                        gpu, a, prev_power[g] = self._mig_gpu(node, g, t, energy[g])
                        gpus.append(gpu)
                        mig_allocs += a
                        continue
                    hit = self.job_at(node, g, t)
                    util, power, procs = 0.0, IDLE_POWER, []
                    if hit is not None:
                        j, i = hit
                        util, power = j.util_at(i, t - self.t0), j.power[i]
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
                allocs = mig_allocs
                if self.groups is not None:
                    for g in gpus:
                        if g.mig:
                            continue
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
            if j.slices:
                self._expect_mig(j, a, b, r)
                continue
            for u, p in zip(j.util, j.power):
                r["gpu_hours_in_use"] += hours
                r["gpu_hours_busy"] += hours * u
                r["energy_kwh"] += p * (b - a) / 3.6e6
                r["waste_gpu_hours"] += hours if u < 0.05 else 0.0
        for r in acc.values():
            r["mean_utilization"] = r["gpu_hours_busy"] / r["gpu_hours_in_use"]
        return acc

    def _expect_mig(self, j: Job, a: float, b: float, r: dict[str, float]) -> None:
        """A MIG job's figures over [a, b): each slice's share of the GPU-hours, its busy and idle
        time from its own busy periods, and its share of the whole GPU's energy. Piecewise
        constant between the schedule's times (job starts, ends, phases), so exact."""
        cuts = {a, b}
        for other in self.jobs:
            cuts |= {self.t0 + other.start, self.t0 + other.end, *(self.t0 + at for at, _ in other.phases)}
        points = sorted(c for c in cuts if a <= c <= b)
        for i, (g, gi) in enumerate(zip(j.gpus, j.slices)):
            eq = next(sl.eq for sl in self.mig[(j.node, g)] if sl.gi == gi)
            for p0, p1 in zip(points, points[1:]):
                hours = (p1 - p0) / HOUR
                u = j.util_at(i, p0 - self.t0)
                r["gpu_hours_in_use"] += hours * eq
                r["gpu_hours_busy"] += hours * eq * u
                r["waste_gpu_hours"] += hours * eq if u < 0.05 else 0.0
                r["energy_kwh"] += eq * self.mig_power(j.node, g, p0) * (p1 - p0) / 3.6e6


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


def mig_fleet(now: float | None = None) -> Fleet:
    """One node: GPU 0 in MIG mode (3g + 2g + two 1g instances), GPU 1 whole; 5 hours ending a
    few hours ago, with busy periods.

    carol's Slurm job 301 holds the 3g slice for 3 h: 90 % for 1 h, idle 40 min, then 60 %.
    dave's container holds the 2g slice (30 %) and a 1g one (idle) for 3 h: one hold of 3/7.
    erin's Slurm job 302 holds the whole GPU 1 at 70 % for 2 h. The other 1g stays free.
    """
    now = time.time() if now is None else now
    t0 = math.floor((now - 8 * HOUR) / HOUR) * HOUR  # hours of the report are hours of the schedule
    jobs = [
        Job("carol", "m1", (0,), 20 * MIN, 3 * HOUR + 20 * MIN, (0.9,), (120.0,), slurm="301", slices=(1,),
            phases=((1 * HOUR + 20 * MIN, (0.0,)), (2 * HOUR, (0.6,)))),
        Job("dave", "m1", (0, 0), 1 * HOUR, 4 * HOUR, (0.3, 0.0), (80.0, 10.0), container="d00dfeed1234",
            slices=(2, 3)),
        Job("erin", "m1", (1,), 30 * MIN, 2 * HOUR + 30 * MIN, (0.7,), (250.0,), slurm="302"),
    ]
    layout = (Slice(1, "3g.40gb", 3 / 7), Slice(2, "2g.20gb", 2 / 7), Slice(3, "1g.10gb", 1 / 7),
              Slice(4, "1g.10gb", 1 / 7))
    return Fleet(t0=t0, nodes={"m1": 2}, jobs=jobs, length=5 * HOUR, groups={"carol": "ml", "dave": "ml",
                                                                             "erin": "vision"},
                 mig={("m1", 0): layout})
