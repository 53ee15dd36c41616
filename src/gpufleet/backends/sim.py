"""Simulated accelerators: a node that behaves like real hardware, for demos and tests.

State advances with the clock, not with the number of calls: each `sample()` integrates
the time since the previous one in steps of at most `STEP_S` seconds. Everything random
comes from one `random.Random` seeded from (profile, seed, node), so the same sequence of
sample times always yields the same samples; tests drive hours of "hardware time" in
milliseconds by passing a fake clock.

The model, per GPU (or per MIG instance, the unit a job is placed on):
- jobs owned by simulated users arrive on free slots, run through phases (load, compute,
  eval, idle) and end; a "notebook" kind holds memory while doing nothing (the waste case);
- utilisation follows the phase with noise; memory jumps when the job allocates and drops
  when it ends;
- power follows utilisation between idle and the limit (capped there: sw_power_cap);
  temperature follows power with a first-order thermal lag; clocks follow load and drop
  when power- or thermally limited; energy integrates power;
- rare faults: corrected ECC errors, uncorrected ones (XID 48 on NVIDIA), application
  XIDs (13/31/43) that kill the job, XID 79 (fallen off the bus) that loses the GPU for a
  while, as if an admin reset it.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass, field
from typing import Callable

import msgspec

from ..snapshot import Gpu, GpuProcess, MigInstance, Owner
from .sim_health import Health
from .sim_profiles import Faults, MigSlice, Profile, get_profile, profile_names

__all__ = ["SimBackend", "profile_names", "THROTTLE_BITS"]

STEP_S = 10.0  # longest physics step; samples further apart are integrated in several
MAX_STEPS = 720  # most steps one sample integrates (a few ms of CPU at worst)
MAX_CATCHUP_S = 2 * 86400.0  # longer clock jumps skip ahead instead of integrating it all
MEAN_GAP_S = 420.0  # mean wait before a freed slot gets its next job (~80% allocated)
MIB = 1024 * 1024
CONTEXT_BYTES = 512 * 1024 * 1024  # what a process holds before it allocates its tensors

# NVML clocks-event (throttle) reason bits, so the bitmask means what NVML's does.
THROTTLE_BITS: dict[str, int] = {
    "gpu_idle": 0x1,
    "sw_power_cap": 0x4,
    "sw_thermal_slowdown": 0x20,
    "hw_thermal_slowdown": 0x40,
}

# Fault rates per GPU-hour. App XIDs only while a job runs (they are the job's fault).
RATE_ECC_CORRECTED = 0.25
RATE_ECC_UNCORRECTED = 0.004
RATE_XID_APP = 0.05
RATE_XID_79 = 0.002
APP_XIDS = (13, 13, 31, 31, 43)

USERS = ("alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi")
USER_WEIGHTS = (5, 4, 3, 3, 2, 2, 1, 1)  # a few heavy users, like any real cluster
# The simulated users' groups (they are in no passwd file): what `--groups` gives simulated nodes.
GROUPS = {"alice": "nlp", "bob": "nlp", "carol": "vision", "dave": "vision", "erin": "robotics",
          "frank": "robotics", "grace": "theory", "heidi": "theory"}
NAMESPACES = ("ml-research", "inference", "nlp", "vision")
BUS_IDS = (0x18, 0x2A, 0x3A, 0x5D, 0x9A, 0xAB, 0xBA, 0xDB)


@dataclass(frozen=True, slots=True)
class _Phase:
    util: tuple[float, float]  # utilisation target, drawn when the phase starts
    membw: float  # memory-bandwidth busy share per unit of utilisation
    tensor: float  # tensor-core share per unit of utilisation
    rx: float  # PCIe bytes/s into the device at full utilisation
    tx: float
    seconds: tuple[float, float]
    noise: float  # per-step jitter (sd) of utilisation


PHASES: dict[str, _Phase] = {
    "load": _Phase((0.03, 0.2), 0.2, 0.0, 9e9, 3e8, (20.0, 90.0), 0.02),
    "compute": _Phase((0.88, 0.99), 0.55, 0.55, 1.5e9, 4e8, (120.0, 900.0), 0.025),
    "eval": _Phase((0.4, 0.7), 0.4, 0.25, 6e8, 8e8, (30.0, 150.0), 0.04),
    "idle": _Phase((0.0, 0.03), 0.02, 0.0, 2e4, 1e4, (10.0, 60.0), 0.004),
}


@dataclass(frozen=True, slots=True)
class _Kind:
    name: str
    weight: float
    minutes: tuple[float, float]
    commands: tuple[str, ...]
    max_gpus: int
    intensity: tuple[float, float]  # scales compute/eval utilisation (serving runs lighter)
    mem_frac: tuple[float, float]  # share of the slot's memory it allocates
    idle: bool = False  # allocated and doing nothing: the "waste" alerts look for


KINDS: tuple[_Kind, ...] = (
    _Kind("train", 0.4, (20.0, 150.0), (
        "python train.py --model llama-7b --epochs 3",
        "torchrun --nproc_per_node={n} train.py --config configs/llama-13b.yaml",
        "deepspeed pretrain_gpt.py --zero-stage 2 --micro-batch 8",
        "accelerate launch finetune.py --model mistral-7b --lora-r 16",
    ), 8, (0.92, 1.0), (0.6, 0.95)),
    _Kind("serve", 0.15, (30.0, 240.0), (
        "python -m vllm.entrypoints.openai.api_server --model meta-llama/Llama-2-13b-chat-hf",
        "text-generation-launcher --model-id mistralai/Mistral-7B-Instruct-v0.2",
    ), 2, (0.25, 0.6), (0.85, 0.92)),
    _Kind("eval", 0.25, (4.0, 20.0), (
        "python eval.py --ckpt runs/{r}/best.pt",
        "python -m lm_eval --model hf --tasks mmlu,hellaswag --batch_size 16",
        "python infer.py --batch 64 --split test",
    ), 1, (0.6, 0.9), (0.2, 0.6)),
    _Kind("notebook", 0.2, (60.0, 360.0), (
        "jupyter-lab --no-browser --port 88{r2}",
        "python -m ipykernel_launcher -f /run/user/kernel-{r}.json",
    ), 1, (1.0, 1.0), (0.05, 0.5), idle=True),
)
_KIND_TOTAL = sum(k.weight for k in KINDS)
_NOTEBOOK = next(k for k in KINDS if k.idle)


@dataclass(slots=True)
class _Job:
    kind: _Kind
    user: str
    command: str
    owner: Owner
    slots: list[int]
    pids: list[int]
    start: float
    end: float
    mem_frac: float
    intensity: float
    occupancy: float
    phase: str = "load"
    phase_end: float = 0.0
    level: float = 0.0


@dataclass(slots=True)
class _Slot:
    """Where a job runs: a whole GPU, or one MIG instance of it."""

    dev: int
    mig: MigSlice | None
    uuid: str
    memory_bytes: int
    share: float  # share of the GPU's compute this slot has
    job: _Job | None = None
    next_start: float = 0.0
    util: float = 0.0
    membw: float = 0.0
    tensor: float = 0.0
    rx: float = 0.0
    tx: float = 0.0
    mem_used: int = 0


@dataclass(slots=True)
class _Dev:
    index: int
    uuid: str
    info: dict[str, str]
    slots: list[int]
    temp: float = 0.0
    mem_temp: float = 0.0
    power: float = 0.0
    energy: float = 0.0
    util: float = 0.0
    membw: float = 0.0
    tensor: float = 0.0
    occupancy: float = 0.0
    rx: float = 0.0
    tx: float = 0.0
    sm_clock: float = 0.0
    mem_clock: float = 0.0
    pstate: int = 8
    throttle: int = 0
    ecc_corrected: int = 0
    ecc_uncorrected: int = 0
    xid_total: int = 0
    last_xid: int = 0
    lost_until: float = 0.0  # fallen off the bus until then (XID 79)
    health: Health | None = None
    events: list[str] = field(default_factory=list)
    forced_temp: float | None = None
    forced_util: float | None = None
    stress_util: float | None = None  # `gpufleet stress` (sim_control.py): at least this busy
    forced_lost: bool = False


def _uuid(rng: random.Random) -> str:
    h = f"{rng.getrandbits(128):032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _clamp(x: float, lo: float = 0.0, hi: float = 1.0) -> float:
    return lo if x < lo else hi if x > hi else x


class SimBackend:
    """Simulated accelerators of a named profile (see sim_profiles.PROFILES)."""

    name = "sim"

    def __init__(self, profile: str, seed: int = 0, node: str = "",
                 clock: Callable[[], float] = time.time) -> None:
        self.profile: Profile = get_profile(profile)
        self.seed = seed
        self.node = node
        self._clock = clock
        # A str seed is hashed with SHA-512 by random.seed: stable across processes.
        self._rng = random.Random(f"gpufleet-sim|{profile}|{seed}|{node}")
        # Health counters draw from their own stream, so adding them changed no older reading.
        self._hrng = random.Random(f"gpufleet-sim-health|{profile}|{seed}|{node}")
        self._faults_of: Faults = self.profile.faults or Faults(rate=1.0)
        self._t: float | None = None
        self._jobs: list[_Job] = []
        self._devs: list[_Dev] = []
        self._slots: list[_Slot] = []
        self._build()

    # ---- Backend protocol -------------------------------------------------------------
    def open(self) -> None:
        """Nothing to open; state starts at the first sample's time."""

    def close(self) -> None:
        pass

    def sample(self) -> list[Gpu]:
        now = float(self._clock())
        self._apply_stress(now)
        self._advance(now)
        return [self._render(d, now) for d in self._devs]

    def _apply_stress(self, now: float) -> None:
        from .sim_control import shared_reader

        # The wall clock decides whether a stress run is on (its file says until when), even
        # under a test's clock: it is a request from another process, made in real time.
        stress = shared_reader().current(time.time())
        on = stress is not None and stress.applies(self.node, time.time())
        for dev in self._devs:
            dev.stress_util = stress.load_of(dev.index) if on and stress is not None else None

    # ---- hooks for tests and demos ----------------------------------------------------
    def force(self, gpu: int, *, temperature: float | None = None,
              utilization: float | None = None, lost: bool = False) -> None:
        """Pin GPU `gpu`'s temperature (C) and/or utilisation (0-1), or make it lost.

        Each call replaces the previous forcing of that GPU; `force(gpu)` releases it. A
        lost GPU is still listed by sample(), with up=False, and its jobs die.
        """
        if not 0 <= gpu < len(self._devs):
            raise ValueError(f"no GPU {gpu} in profile {self.profile.name!r} "
                             f"(it has {len(self._devs)})")
        if utilization is not None and not 0.0 <= utilization <= 1.0:
            raise ValueError(f"utilization must be within 0-1, got {utilization}")
        dev = self._devs[gpu]
        dev.forced_temp = temperature
        dev.forced_util = utilization
        dev.forced_lost = lost
        if temperature is not None:
            dev.temp = temperature

    def jobs(self) -> list[dict[str, object]]:
        """Running jobs (for demos and tests): user, kind, phase, GPUs, times."""
        return [{"user": j.user, "kind": j.kind.name, "phase": j.phase, "command": j.command,
                 "gpus": sorted({self._slots[s].dev for s in j.slots}), "start": j.start,
                 "end": j.end, "pids": list(j.pids)} for j in self._jobs]

    # ---- construction -----------------------------------------------------------------
    def _build(self) -> None:
        p, rng = self.profile, self._rng
        model = p.model
        if model is None:
            return
        for i in range(p.gpus):
            bus = BUS_IDS[i % len(BUS_IDS)] + (i // len(BUS_IDS))
            if model.vendor == "nvidia":
                uuid = "GPU-" + _uuid(rng)
                info = {"driver_version": model.driver_version, "pci_bus_id": f"00000000:{bus:02X}:00.0",
                        "serial": str(rng.randint(1_320_000_000_000, 1_659_999_999_999)),
                        "vbios_version": model.vbios_version, "compute_mode": "default", "type": "GPU"}
            else:
                uuid = _uuid(rng)
                info = {"driver_version": model.driver_version, "pci_bus_id": f"0000:{bus:02x}:00.0",
                        "serial": f"{rng.getrandbits(64):016X}", "vbios_version": model.vbios_version,
                        "type": "GPU"}
            layout = p.mig[i % len(p.mig)] if p.mig else ()
            if model.mig_capable:
                info["mig_mode"] = "Enabled" if layout else "Disabled"
            dev = _Dev(index=i, uuid=uuid, info=info, slots=[],
                       health=Health(model, flaky_link=i in self._faults_of.flaky_links,
                                     failing_memory=i in self._faults_of.failing_memory))
            if layout:
                # A memory slice is 1/8 of the board less what the driver keeps back.
                per_slice = int(model.memory_bytes * 0.98) // 8
                for m in layout:
                    dev.slots.append(len(self._slots))
                    self._slots.append(_Slot(i, m, "MIG-" + _uuid(rng), per_slice * m.memory_slices,
                                             m.compute_slices / 7.0))
            else:
                dev.slots.append(len(self._slots))
                self._slots.append(_Slot(i, None, uuid, model.memory_bytes, 1.0))
            self._devs.append(dev)

    def _init(self, t0: float) -> None:
        """First sample: a node that has been up for days, some jobs already running."""
        model, rng = self.profile.model, self._rng
        self._t = t0
        if model is None:
            return
        for dev in self._devs:
            days = rng.uniform(1.0, 40.0)
            dev.energy = days * 86400.0 * (model.idle_power_w + 0.4 * (model.power_limit_w - model.idle_power_w))
            dev.power = model.idle_power_w
            dev.temp = dev.mem_temp = model.temp_c[0]
            if model.ecc:
                dev.ecc_corrected = rng.choice((0, 0, 0, 1, 2))
            assert dev.health is not None
            dev.health.settle(self._hrng, days)
        order = list(range(len(self._slots)))
        rng.shuffle(order)
        # Demos and alert tests want the waste case from the start on any real-sized node.
        first_kind = _NOTEBOOK if len(self._slots) >= 4 else None
        for s in order:
            slot = self._slots[s]
            if slot.job is not None:
                continue
            if first_kind is not None:
                # At least an hour left, so a 30-minute "allocated but idle" rule can fire.
                self._start_job(t0, s, kind=first_kind, running=True, min_left=3600.0)
                first_kind = None
            elif rng.random() < 0.6:
                self._start_job(t0, s, running=True)
            else:
                slot.next_start = t0 + rng.expovariate(1.0 / MEAN_GAP_S)
        # Settle temperatures and power at the running jobs' steady state, without faults.
        for _ in range(12):
            self._physics(t0, 60.0)

    # ---- jobs -------------------------------------------------------------------------
    def _pick_kind(self) -> _Kind:
        r = self._rng.random() * _KIND_TOTAL
        for k in KINDS:
            r -= k.weight
            if r < 0:
                return k
        return KINDS[-1]

    def _free(self, s: int, t: float) -> bool:
        slot = self._slots[s]
        dev = self._devs[slot.dev]
        return slot.job is None and not dev.forced_lost and dev.lost_until <= t

    def _start_job(self, t: float, s: int, kind: _Kind | None = None, running: bool = False,
                   min_left: float = 0.0) -> None:
        rng = self._rng
        kind = kind or self._pick_kind()
        slots = [s]
        if self._slots[s].mig is None and kind.max_gpus > 1:
            want = min(kind.max_gpus, rng.choice((1, 1, 1, 2, 2, 4, 4, 8)))
            for o in range(1, len(self._slots)):
                if len(slots) >= want:
                    break
                other = (s + o) % len(self._slots)
                if self._free(other, t):
                    slots.append(other)
        user = rng.choices(USERS, USER_WEIGHTS)[0]
        cmd = rng.choice(kind.commands).format(n=len(slots), r=rng.randint(1, 999), r2=rng.randint(10, 99))
        owner = self._owner(kind, user)
        duration = rng.uniform(*kind.minutes) * 60.0
        start = t - rng.uniform(0.0, 0.8) * duration if running else t
        job = _Job(kind=kind, user=user, command=cmd, owner=owner, slots=slots,
                   pids=[rng.randint(400_000, 4_000_000) for _ in slots], start=start,
                   end=max(start + duration, t + min_left), mem_frac=rng.uniform(*kind.mem_frac),
                   intensity=rng.uniform(*kind.intensity), occupancy=rng.uniform(0.25, 0.6))
        self._enter(job, "load", start)
        while job.phase_end <= t:  # a job already running: play its phases forward to now
            self._next_phase(job, job.phase_end)
        for x in slots:
            self._slots[x].job = job
        self._jobs.append(job)

    def _owner(self, kind: _Kind, user: str) -> Owner:
        rng = self._rng
        r = rng.random()
        cid = f"{rng.getrandbits(48):012x}"
        if kind.name == "serve" or r < 0.25:
            pod = f"{kind.name}-{user}-{rng.getrandbits(20):05x}"
            return Owner(container=cid, runtime="containerd", pod=pod, pod_uid=_uuid(rng),
                         namespace=rng.choice(NAMESPACES))
        if r < 0.5:
            return Owner(container=cid, runtime="docker")
        if r < 0.85:
            return Owner(slurm_job=str(rng.randint(100_000, 999_999)))
        return Owner()  # a bare process in someone's shell

    def _enter(self, job: _Job, phase: str, t: float) -> None:
        rng = self._rng
        ph = PHASES[phase]
        job.phase = phase
        job.phase_end = min(job.end, t + rng.uniform(*ph.seconds))
        level = rng.uniform(*ph.util)
        job.level = level * job.intensity if phase in ("compute", "eval") else level

    def _next_phase(self, job: _Job, t: float) -> None:
        if job.kind.idle:
            self._enter(job, "idle", t)
            job.phase_end = job.end  # a forgotten notebook stays idle until it is killed
            return
        if job.phase == "compute":
            nxt = "eval" if self._rng.random() < 0.6 else "idle"
        elif job.kind.name == "eval" and job.phase == "load":
            nxt = "eval"
        else:
            nxt = "compute"
        self._enter(job, nxt, t)

    def _end_job(self, job: _Job, t: float) -> None:
        for s in job.slots:
            slot = self._slots[s]
            slot.job = None
            slot.next_start = t + self._rng.expovariate(1.0 / MEAN_GAP_S)
        self._jobs.remove(job)

    # ---- time ---------------------------------------------------------------------------
    def _advance(self, now: float) -> None:
        if self._t is None:
            self._init(now)
            return
        dt = now - self._t
        if dt <= 0.0:  # same instant, or the clock stepped back: nothing happened
            return
        if dt > MAX_CATCHUP_S:
            # Don't integrate weeks of downtime step by step: count its energy at the
            # current draw and resume close to now.
            skip = dt - MAX_CATCHUP_S
            for dev in self._devs:
                dev.energy += dev.power * skip
            self._t += skip
            dt = MAX_CATCHUP_S
        # Bounded work per sample: a long gap (a suspended laptop) is integrated in
        # coarser steps; the exponential updates stay stable at any step length.
        n = max(1, min(MAX_STEPS, math.ceil(dt / STEP_S)))
        h = dt / n
        t = self._t
        for i in range(1, n + 1):
            self._step(t + h * i, h)
        self._t = now

    def _step(self, t: float, h: float) -> None:
        for job in list(self._jobs):
            if t >= job.end:
                self._end_job(job, t)
                continue
            while job.phase_end <= t and job.phase_end < job.end:
                self._next_phase(job, job.phase_end)
        for s, slot in enumerate(self._slots):
            if slot.job is None and slot.next_start <= t and self._free(s, t):
                self._start_job(t, s)
        self._physics(t, h)
        self._faults(t, h)

    def _physics(self, t: float, h: float) -> None:
        model = self.profile.model
        if model is None:
            return
        rng = self._rng
        gauss = rng.gauss
        for slot in self._slots:
            job = slot.job
            if job is None:
                slot.util = slot.membw = slot.tensor = slot.rx = slot.tx = 0.0
                slot.mem_used = 0
                continue
            ph = PHASES[job.phase]
            u = _clamp(job.level + gauss(0.0, ph.noise))
            slot.util = u
            slot.membw = _clamp(u * ph.membw + gauss(0.0, 0.01))
            slot.tensor = u * ph.tensor
            scale = slot.share * (0.5 + u)
            slot.rx = ph.rx * scale
            slot.tx = ph.tx * scale
            # Memory jumps once loading is done (the framework allocates its tensors then).
            full = int(slot.memory_bytes * job.mem_frac)
            slot.mem_used = min(CONTEXT_BYTES, full) if job.phase == "load" else full
        lo_p, hi_p = model.idle_power_w, model.power_limit_w
        lo_t, hi_t = model.temp_c
        a_power = 1.0 - math.exp(-h / 3.0)
        a_temp = 1.0 - math.exp(-h / model.thermal_tau_s)
        a_mem = 1.0 - math.exp(-h / (model.thermal_tau_s * 1.5))
        for dev in self._devs:
            if dev.forced_lost or dev.lost_until > t:
                continue
            if dev.lost_until:  # back from XID 79: the reset applied pending memory repairs
                dev.lost_until = 0.0
                assert dev.health is not None
                dev.health.reset()
            util = membw = tensor = rx = tx = occ = collective = decode = 0.0
            busy = False
            for s in dev.slots:
                slot = self._slots[s]
                job = slot.job
                if job is not None and len(job.slots) > 1:  # all-reduce traffic over NVLink
                    collective = max(collective, slot.util * (0.4 if job.phase == "compute" else 0.08))
                if job is not None and job.kind.name == "eval":
                    decode = max(decode, slot.util * 0.2)  # input pipelines decode video/images
                util += slot.util * slot.share
                membw += slot.membw * slot.share
                tensor += slot.tensor * slot.share
                rx += slot.rx
                tx += slot.tx
                if slot.job is not None:
                    busy = True
                    occ = slot.job.occupancy
            if dev.forced_util is not None:
                util = dev.forced_util
                membw = util * 0.5
                tensor = util * 0.5
            elif dev.stress_util is not None and util < dev.stress_util:
                # duty-cycled matmuls on top of whatever runs: compute-bound, tensor cores busy
                util = dev.stress_util
                membw = max(membw, util * 0.3)
                tensor = max(tensor, util * 0.8)
                busy = True
            dev.util, dev.membw, dev.tensor, dev.occupancy = util, membw, tensor, occ
            noise = 1.0 + gauss(0.0, 0.04)
            dev.rx = min(model.pcie_max_bytes_per_s, rx * noise) + 2e4
            dev.tx = min(model.pcie_max_bytes_per_s, tx * noise) + 1e4
            # Power: idle draw plus a convex share of the headroom; a held context costs a bit.
            want = lo_p * (1.08 if busy else 1.0) + (hi_p - lo_p) * (util ** 1.2) * 1.06
            capped = want >= hi_p * 0.97
            if capped:
                want = hi_p * rng.uniform(0.965, 0.995)
            dev.power += (want - dev.power) * a_power
            dev.power = min(hi_p, dev.power * (1.0 + gauss(0.0, 0.008)))
            dev.energy += dev.power * h
            # Temperature: first-order lag towards the steady state for this power.
            if dev.forced_temp is not None:
                dev.temp = dev.forced_temp
            else:
                eq = lo_t + (hi_t - lo_t) * (dev.power - lo_p) / (hi_p - lo_p)
                if dev.index in self._faults_of.hot:
                    eq += 18.0 * (dev.power - lo_p) / (hi_p - lo_p) + 4.0  # poor airflow
                dev.temp += (eq - dev.temp) * a_temp
            dev.mem_temp += (dev.temp * 0.92 + 3.0 - dev.mem_temp) * a_mem
            hot = dev.temp >= model.slowdown_temp_c
            very_hot = dev.temp >= model.slowdown_temp_c + 5.0
            idle = util < 0.01 and not busy
            lo_c, hi_c = model.sm_clock_mhz
            if idle:
                clock = float(lo_c)
            else:
                clock = lo_c + (hi_c - lo_c) * min(1.0, 0.35 + 1.5 * util)
                if capped:
                    clock *= 0.93
                if hot:
                    clock *= 0.85 if very_hot else 0.92
            dev.sm_clock = round(clock / 15.0) * 15.0
            dev.pstate = 8 if idle else 0
            dev.mem_clock = float(model.memory_clock_mhz[0 if idle and not model.hbm else 1])
            dev.throttle = ((THROTTLE_BITS["gpu_idle"] if idle else 0)
                            | (THROTTLE_BITS["sw_power_cap"] if capped else 0)
                            | (THROTTLE_BITS["sw_thermal_slowdown"] if hot else 0)
                            | (THROTTLE_BITS["hw_thermal_slowdown"] if very_hot else 0))
            assert dev.health is not None
            dev.health.step(self._hrng, h, util=util, capped=capped, hot=hot, idle=idle,
                            collective=collective, decode=decode)

    def _faults(self, t: float, h: float) -> None:
        model = self.profile.model
        if model is None:
            return
        rng = self._rng
        nvidia = model.vendor == "nvidia"
        per_h = h / 3600.0 * self._faults_of.rate
        hrng = self._hrng
        for dev in self._devs:
            lost = dev.forced_lost or dev.lost_until > t
            jobs = {id(self._slots[s].job): self._slots[s].job for s in dev.slots
                    if self._slots[s].job is not None}
            if lost:
                for job in jobs.values():  # processes die with their GPU
                    if job in self._jobs:
                        self._end_job(job, t)
                continue
            health = dev.health
            assert health is not None
            if health.failing_memory and model.ecc and hrng.random() < 0.3 * per_h:
                # Failing memory: errors the ECC cannot fix, each repaired by a row remap (XID 63)
                # until the spare rows run out (XID 64).
                dev.ecc_uncorrected += 1
                health.uncorrected()
                self._xid(dev, 64 if health.remap_failure else 63, t)
                continue
            # One draw per GPU and step, against stacked probabilities: cheap and stable.
            r = rng.random()
            p = RATE_ECC_CORRECTED * per_h if model.ecc else 0.0
            if r < p:
                dev.ecc_corrected += rng.choice((1, 1, 1, 2, 4))
                health.corrected(hrng)
                continue
            p_ue = p + (RATE_ECC_UNCORRECTED * per_h if model.ecc else 0.0)
            if r < p_ue:
                dev.ecc_uncorrected += 1
                health.uncorrected()
                if nvidia:
                    self._xid(dev, 48, t)
                else:
                    dev.events.append("ecc uncorrected error")
                self._kill(jobs, t)
                continue
            if not nvidia:
                continue
            p_app = p_ue + (RATE_XID_APP * per_h if jobs else 0.0)
            if r < p_app:
                self._xid(dev, rng.choice(APP_XIDS), t)
                self._kill(jobs, t)
                continue
            if r < p_app + RATE_XID_79 * per_h:
                self._xid(dev, 79, t)
                dev.lost_until = t + rng.uniform(600.0, 2400.0)
                self._kill(jobs, t)

    def _xid(self, dev: _Dev, code: int, t: float) -> None:
        dev.xid_total += 1
        dev.last_xid = code
        dev.events.append(f"xid {code}")

    def _kill(self, jobs: dict[int, _Job | None], t: float) -> None:
        for job in jobs.values():
            if job is not None and job in self._jobs:
                self._end_job(job, t)

    # ---- output -------------------------------------------------------------------------
    def _render(self, dev: _Dev, now: float) -> Gpu:
        model = self.profile.model
        assert model is not None
        events, dev.events = dev.events, []
        if dev.forced_lost or dev.lost_until > now:
            return Gpu(index=dev.index, uuid=dev.uuid, model=model.name, vendor=model.vendor,
                       up=False, info=dict(dev.info), values={"up": 0.0}, events=events)
        nvidia = model.vendor == "nvidia"
        procs: list[GpuProcess] = []
        migs: list[MigInstance] = []
        used = 2 * 1024 * 1024  # the driver's own reservation
        for s in dev.slots:
            slot = self._slots[s]
            job = slot.job
            used += slot.mem_used
            if job is not None:
                procs.append(GpuProcess(
                    pid=job.pids[job.slots.index(s)], memory_bytes=slot.mem_used, user=job.user,
                    command=job.command, owner=msgspec.structs.replace(job.owner),
                    gpu_instance=slot.mig.gpu_instance if slot.mig else None))
            if slot.mig is not None:
                migs.append(MigInstance(gpu_instance=slot.mig.gpu_instance, compute_instance=0,
                                        profile=slot.mig.profile, uuid=slot.uuid, values={
                                            "memory_used_bytes": float(slot.mem_used + 12 * 1024 * 1024),
                                            "memory_total_bytes": float(slot.memory_bytes),
                                            "graphics_engine_active_ratio": round(slot.util, 4),
                                        }))
                used += 12 * 1024 * 1024
        total = model.memory_bytes
        reserved = (total // 170) // MIB * MIB  # what the driver keeps back (~0.6%)
        used = min(used, total - reserved)
        v: dict[str, float] = {
            "up": 1.0,
            "memory_used_bytes": float(used),
            "memory_free_bytes": float(total - used - reserved),
            "memory_reserved_bytes": float(reserved),
            "memory_total_bytes": float(total),
            # Sensors report whole degrees.
            "temperature_celsius": float(round(dev.temp)),
            "power_watts": round(dev.power, 3),
            "power_limit_watts": model.power_limit_w,
            "energy_joules_total": round(dev.energy, 3),
            "sm_clock_hertz": dev.sm_clock * 1e6,
            "memory_clock_hertz": dev.mem_clock * 1e6,
            "sm_clock_max_hertz": model.sm_clock_mhz[1] * 1e6,  # as NVML's max clock info reports it
            "memory_clock_max_hertz": model.memory_clock_mhz[1] * 1e6,
            "pcie_receive_bytes_per_second": float(round(dev.rx)),
            "pcie_transmit_bytes_per_second": float(round(dev.tx)),
            "processes": float(len(procs)),
        }
        if not migs:
            # NVML reports no whole-GPU utilisation while MIG is on: only per instance.
            v["utilization_ratio"] = round(dev.util, 4)
            v["memory_bandwidth_utilization_ratio"] = round(dev.membw, 4)
        if model.hbm:
            v["memory_temperature_celsius"] = float(round(dev.mem_temp))
        if model.fan:
            # Fan curve: 30% floor, ramping with temperature; reported in whole percent.
            v["fan_speed_ratio"] = round(_clamp(0.3 + (dev.temp - 45.0) / 40.0 * 0.7, 0.3, 1.0), 2)
        if model.ecc:
            v["ecc_corrected_errors_total"] = float(dev.ecc_corrected)
            v["ecc_uncorrected_errors_total"] = float(dev.ecc_uncorrected)
        reasons: list[str] = []
        if nvidia:
            v["performance_state"] = float(dev.pstate)
            v["clock_throttle_reasons"] = float(dev.throttle)
            v["xid_errors_total"] = float(dev.xid_total)
            v["last_xid"] = float(dev.last_xid)
            v["mig_instances"] = float(len(migs))
            reasons = [name for name, bit in THROTTLE_BITS.items() if dev.throttle & bit]
        if model.gpm:
            sm_active = dev.util * 0.9
            v["graphics_engine_active_ratio"] = round(dev.util, 4)
            v["sm_active_ratio"] = round(sm_active, 4)
            v["sm_occupancy_ratio"] = round(sm_active * dev.occupancy, 4)
            v["tensor_active_ratio"] = round(dev.tensor, 4)
            v["dram_active_ratio"] = round(dev.membw * 0.9, 4)
        assert dev.health is not None
        links = dev.health.render(v, ecc=(dev.ecc_corrected, dev.ecc_uncorrected) if model.ecc else None,
                                  gpm=model.gpm, nvidia=nvidia)
        return Gpu(index=dev.index, uuid=dev.uuid, model=model.name, vendor=model.vendor,
                   info=dict(dev.info), values=v, throttle_reasons=reasons, processes=procs,
                   mig=migs, links=links, events=events)

