"""CPU utilisation (per core and total), frequency and load average.

Utilisation is the busy share of the jiffies /proc/stat counted between two collections;
the constructor takes the first reading so that the first collection already has a delta.
Frequency is read at most every FREQ_TTL seconds: scaling_cur_freq makes the kernel poll
every core (an IPI each) and takes milliseconds on large hosts.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

from .. import procfs
from ..snapshot import CpuCore, NodeSnapshot
from .base import CollectContext

FREQ_TTL = 10.0
# /proc/stat counts in USER_HZ ticks (100 on every Linux architecture in use).
CLK_TCK = float(os.sysconf("SC_CLK_TCK")) if hasattr(os, "sysconf") else 100.0
MODE_KEYS = tuple(f"{mode}_seconds_total" for mode in procfs.CPU_MODES)


def utilisation(prev: procfs.CpuTimes, cur: procfs.CpuTimes) -> float | None:
    """Busy share between two readings; None when no time passed or the counters went back."""
    total = cur.total - prev.total
    busy = cur.busy - prev.busy
    if total <= 0 or busy < 0:
        return None
    return min(1.0, busy / total)


def read_frequencies(sysfs: Path, procfs_root: Path, cpus: list[int]) -> dict[int, float]:
    """Hertz per CPU from cpufreq, else from cpuinfo's `cpu MHz` (VMs often lack cpufreq)."""
    out: dict[int, float] = {}
    base = sysfs / "devices" / "system" / "cpu"
    for cpu in cpus:
        text = procfs.read_text(base / f"cpu{cpu}" / "cpufreq" / "scaling_cur_freq")
        if text is not None and text.strip().isdigit():
            out[cpu] = int(text) * 1000.0  # kHz
    if out:
        return out
    for block in procfs.parse_cpuinfo(procfs.read_text(procfs_root / "cpuinfo") or ""):
        try:
            out[int(block["processor"])] = float(block["cpu MHz"]) * 1e6
        except (KeyError, ValueError):
            continue
    return out


class CpuCollector:
    name = "cpu"

    def __init__(self, ctx: CollectContext, clock: Callable[[], float] = time.monotonic) -> None:
        self._ctx = ctx
        self._clock = clock
        self._prev = self._read_stat()
        self._freq: dict[int, float] = {}
        self._freq_at: float | None = None
        # --compat node asks for time per mode (node_cpu_seconds_total); otherwise not collected.
        self._modes = bool(ctx.options.get("cpu.mode_seconds", False))

    def _read_stat(self) -> procfs.Stat | None:
        text = procfs.read_text(self._ctx.procfs / "stat")
        return procfs.parse_stat(text) if text is not None else None

    def _frequencies(self, cpus: list[int]) -> dict[int, float]:
        now = self._clock()
        if self._freq_at is None or now - self._freq_at >= FREQ_TTL:
            self._freq = read_frequencies(self._ctx.sysfs, self._ctx.procfs, cpus)
            self._freq_at = now
        return self._freq

    def collect(self, snap: NodeSnapshot) -> None:
        cur = self._read_stat()
        if cur is None:
            raise RuntimeError(f"cannot read {self._ctx.procfs / 'stat'}")
        prev, self._prev = self._prev, cur
        cpus = sorted(cur.per_cpu)
        freqs = self._frequencies(cpus)
        cores: list[CpuCore] = []
        for cpu in cpus:
            values: dict[str, float] = {}
            before = prev.per_cpu.get(cpu) if prev else None
            if before is not None:
                u = utilisation(before, cur.per_cpu[cpu])
                if u is not None:
                    values["utilization_ratio"] = u
            if cpu in freqs:
                values["frequency_hertz"] = freqs[cpu]
            if self._modes:
                values.update(zip(MODE_KEYS, (j / CLK_TCK for j in cur.per_cpu[cpu].modes)))
            cores.append(CpuCore(cpu=cpu, values=values))
        snap.cpus = cores
        if prev is not None and prev.total is not None and cur.total is not None:
            u = utilisation(prev.total, cur.total)
            if u is not None:
                snap.values["cpu_utilization_ratio"] = u
        known = [freqs[c] for c in cpus if c in freqs]
        if known:
            snap.values["cpu_frequency_hertz"] = sum(known) / len(known)
        load_text = procfs.read_text(self._ctx.procfs / "loadavg")
        if load_text is not None:
            try:
                snap.values["load1"], snap.values["load5"], snap.values["load15"] = procfs.parse_loadavg(load_text)
            except ValueError:
                pass  # a malformed loadavg loses the load only, not the utilisation above
