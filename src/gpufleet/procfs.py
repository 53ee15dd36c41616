"""Fast /proc readers: pure parse functions over file text, plus small readers with a root.

Every parser takes the file's text and returns plain values, so tests feed it strings; every
reader takes the procfs root (a fixture tree in tests) and returns None when the file cannot
be read, because a missing or vanished file is normal on a live host, never an agent crash.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

# /proc/diskstats counts in 512-byte sectors whatever the device's real sector size is.
DISKSTATS_SECTOR_BYTES = 512

CLOCK_TICKS: int = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
PAGE_SIZE: int = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def read_text(path: Path | str) -> str | None:
    """The whole file as text, or None when it is missing, unreadable or vanished."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return None


def read_bytes(path: str) -> bytes | None:
    """Raw bytes through os.open/os.read: about half the cost of open() for tiny /proc files."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        chunks = []
        while True:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)
    except OSError:
        return None
    finally:
        os.close(fd)


# ---- /proc/stat ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CpuTimes:
    """Jiffies one CPU (or all, for the aggregate line) spent busy and in total."""

    busy: int
    total: int
    # Jiffies per mode, in CPU_MODES order (node_exporter's node_cpu_seconds_total modes).
    modes: tuple[int, ...] = field(default=(), compare=False)


# /proc/stat's first eight columns; guest and guest_nice are already inside user and nice.
CPU_MODES = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")


@dataclass(frozen=True, slots=True)
class Stat:
    total: CpuTimes | None
    per_cpu: dict[int, CpuTimes]
    boot_time: float | None


def _cpu_times(fields: list[str]) -> CpuTimes:
    nums = [int(x) for x in fields[:8]]
    nums += [0] * (8 - len(nums))
    user, nice, system, idle, iowait, irq, softirq, steal = nums
    # guest and guest_nice are already counted inside user and nice: adding them double-counts.
    idle_all = idle + iowait
    total = user + nice + system + idle_all + irq + softirq + steal
    return CpuTimes(busy=total - idle_all, total=total, modes=tuple(nums))


def parse_stat(text: str) -> Stat:
    total: CpuTimes | None = None
    per_cpu: dict[int, CpuTimes] = {}
    boot: float | None = None
    for line in text.splitlines():
        if line.startswith("cpu"):
            parts = line.split()
            if len(parts) < 5:
                continue
            label = parts[0]
            try:
                times = _cpu_times(parts[1:])
            except ValueError:
                continue
            if label == "cpu":
                total = times
            elif label[3:].isdigit():
                per_cpu[int(label[3:])] = times
        elif line.startswith("btime"):
            parts = line.split()
            if len(parts) == 2 and parts[1].isdigit():
                boot = float(parts[1])
    return Stat(total=total, per_cpu=per_cpu, boot_time=boot)


def read_boot_time(procfs: Path) -> float | None:
    text = read_text(procfs / "stat")
    return parse_stat(text).boot_time if text is not None else None


# ---- /proc/loadavg, /proc/meminfo ---------------------------------------------------------


def parse_loadavg(text: str) -> tuple[float, float, float]:
    parts = text.split()
    if len(parts) < 3:
        raise ValueError(f"loadavg: expected 3 numbers, got {text!r}")
    return float(parts[0]), float(parts[1]), float(parts[2])


def parse_meminfo(text: str) -> dict[str, int]:
    """Fields in bytes (the file says kB, which means KiB); unit-less fields stay counts."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        key, sep, rest = line.partition(":")
        if not sep:
            continue
        parts = rest.split()
        if not parts or not parts[0].isdigit():
            continue
        value = int(parts[0])
        if len(parts) > 1 and parts[1] == "kB":
            value *= 1024
        out[key.strip()] = value
    return out


# ---- /proc/net/dev ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NetDev:
    interface: str
    receive_bytes: int
    receive_packets: int
    receive_errors: int
    receive_drops: int
    transmit_bytes: int
    transmit_packets: int
    transmit_errors: int
    transmit_drops: int


def parse_net_dev(text: str) -> list[NetDev]:
    out: list[NetDev] = []
    for line in text.splitlines():
        name, sep, rest = line.partition(":")
        if not sep or "|" in line:
            continue  # the two header lines
        f = rest.split()
        if len(f) < 12:
            continue
        try:
            nums = [int(x) for x in f[:16]]
        except ValueError:
            continue
        out.append(NetDev(
            interface=name.strip(),
            receive_bytes=nums[0], receive_packets=nums[1], receive_errors=nums[2], receive_drops=nums[3],
            transmit_bytes=nums[8], transmit_packets=nums[9], transmit_errors=nums[10], transmit_drops=nums[11],
        ))
    return out


# ---- /proc/diskstats, /proc/self/mountinfo ------------------------------------------------


@dataclass(frozen=True, slots=True)
class DiskStats:
    major: int
    minor: int
    name: str
    reads: int
    read_bytes: int
    writes: int
    written_bytes: int
    io_ms: int = 0  # milliseconds spent doing I/O (field 13)


def parse_diskstats(text: str) -> list[DiskStats]:
    out: list[DiskStats] = []
    for line in text.splitlines():
        f = line.split()
        if len(f) < 10:
            continue
        try:
            out.append(DiskStats(
                major=int(f[0]), minor=int(f[1]), name=f[2],
                reads=int(f[3]), read_bytes=int(f[5]) * DISKSTATS_SECTOR_BYTES,
                writes=int(f[7]), written_bytes=int(f[9]) * DISKSTATS_SECTOR_BYTES,
                io_ms=int(f[12]) if len(f) > 12 else 0,
            ))
        except ValueError:
            continue
    return out


@dataclass(frozen=True, slots=True)
class Mount:
    major: int
    minor: int
    root: str  # the path inside the filesystem that is mounted: "/" unless a bind mount
    mountpoint: str
    fstype: str
    source: str


def _unescape(field: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as \ooo octal.
    if "\\" not in field:
        return field
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and i + 4 <= len(field) and field[i + 1:i + 4].isdigit():
            out.append(chr(int(field[i + 1:i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def parse_mountinfo(text: str) -> list[Mount]:
    """`36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue`."""
    out: list[Mount] = []
    for line in text.splitlines():
        left, sep, right = line.partition(" - ")
        if not sep:
            continue
        lf, rf = left.split(), right.split()
        if len(lf) < 5 or len(rf) < 2:
            continue
        major, _, minor = lf[2].partition(":")
        if not (major.isdigit() and minor.isdigit()):
            continue
        out.append(Mount(
            major=int(major), minor=int(minor), root=_unescape(lf[3]), mountpoint=_unescape(lf[4]),
            fstype=rf[0], source=_unescape(rf[1]),
        ))
    return out


# ---- /proc/cpuinfo, /proc/uptime, os-release ----------------------------------------------


def parse_cpuinfo(text: str) -> list[dict[str, str]]:
    """One dict per processor block (blank-line separated); ARM adds a trailing global block."""
    blocks: list[dict[str, str]] = []
    cur: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            if cur:
                blocks.append(cur)
                cur = {}
            continue
        key, sep, value = line.partition(":")
        if sep:
            cur[key.strip()] = value.strip()
    if cur:
        blocks.append(cur)
    return blocks


def cpu_model(blocks: list[dict[str, str]]) -> str:
    # x86 says "model name"; POWER "cpu"; ARM "Model"/"Hardware" in the trailing block or nothing.
    for key in ("model name", "Model", "cpu model", "Hardware", "cpu", "Processor"):
        for b in blocks:
            if b.get(key):
                return b[key]
    return ""


def parse_os_release(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep:
            continue
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1].replace('\\"', '"').replace("\\\\", "\\")
        out[key.strip()] = value
    return out


# ---- /proc/PID/* --------------------------------------------------------------------------


class PidStat(NamedTuple):
    """The fields of /proc/PID/stat the agent uses; times in clock ticks, rss in pages.

    A NamedTuple, not a dataclass: it is built for every process every round, and tuple
    construction is the cheapest record Python has.
    """

    comm: str
    state: str
    ppid: int
    utime: int
    stime: int
    starttime: int
    rss_pages: int


def parse_pid_stat(data: bytes) -> PidStat:
    """The command name may hold spaces and parentheses, so split at the *last* ')'.

    Raises ValueError or IndexError on a truncated or garbled file.
    """
    head, sep, tail = data.rpartition(b")")
    if not sep:
        raise ValueError("pid stat: no ')' after comm")
    f = tail.split()
    # f[0] is field 3 (state): field N of proc(5) is f[N - 3].
    return PidStat(
        head.partition(b"(")[2].decode("utf-8", "replace"), f[0].decode("ascii", "replace"),
        int(f[1]), int(f[11]), int(f[12]), int(f[19]), int(f[21]),
    )


def parse_cmdline(data: bytes) -> list[str]:
    """argv from NUL-separated bytes; a process that rewrote its argv may use spaces instead."""
    if not data:
        return []
    parts = data.rstrip(b"\0").split(b"\0")
    return [p.decode("utf-8", "replace") for p in parts]


def parse_status_uid(data: bytes) -> int | None:
    """The real uid from /proc/PID/status ("Uid:\treal\teffective\tsaved\tfs")."""
    for line in data.splitlines():
        if line.startswith(b"Uid:"):
            parts = line.split()
            if len(parts) >= 2 and parts[1].isdigit():
                return int(parts[1])
            return None
    return None
