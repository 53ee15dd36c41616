"""Host identity (name, OS, kernel, CPU model, boot time) and core counts.

None of it changes while the agent runs, except uptime, so it is read once, on the first
collection, and only uptime is computed per round.
"""

from __future__ import annotations

import os
import platform
import socket
from collections.abc import Iterable
from pathlib import Path
from typing import cast

from .. import procfs
from ..snapshot import HostInfo, NodeSnapshot
from .base import CollectContext

OS_RELEASE_PATHS = (Path("/etc/os-release"), Path("/usr/lib/os-release"))


def os_name_version(release: dict[str, str]) -> tuple[str, str]:
    name = release.get("NAME") or release.get("ID") or ""
    version = release.get("VERSION_ID") or release.get("VERSION") or release.get("BUILD_ID") or ""
    return name, version


def count_physical_cores(sysfs: Path, cpuinfo: list[dict[str, str]]) -> int | None:
    """Distinct sibling sets in sysfs topology (works on ARM too), else cpuinfo's core ids."""
    cpu_dir = sysfs / "devices" / "system" / "cpu"
    sets: set[str] = set()
    try:
        entries = [e for e in os.listdir(cpu_dir) if e.startswith("cpu") and e[3:].isdigit()]
    except OSError:
        entries = []
    for e in entries:
        for leaf in ("core_cpus_list", "thread_siblings_list"):
            text = procfs.read_text(cpu_dir / e / "topology" / leaf)
            if text is not None:
                # Each sibling set is qualified by its package so cores on two sockets differ.
                pkg = procfs.read_text(cpu_dir / e / "topology" / "physical_package_id") or ""
                sets.add(f"{pkg.strip()}/{text.strip()}")
                break
    if sets:
        return len(sets)
    pairs = {(b.get("physical id", ""), b["core id"]) for b in cpuinfo if "core id" in b}
    return len(pairs) or None


class SystemCollector:
    name = "system"

    def __init__(self, ctx: CollectContext) -> None:
        self._ctx = ctx
        self._host: HostInfo | None = None
        self._static: dict[str, float] = {}

    def _read_host(self) -> HostInfo:
        root = self._ctx.procfs
        hostname = (procfs.read_text(root / "sys" / "kernel" / "hostname") or "").strip() or socket.gethostname()
        kernel = (procfs.read_text(root / "sys" / "kernel" / "osrelease") or "").strip() or platform.release()
        # Tests (and containerised agents reading the host's /etc) can point elsewhere.
        release_paths = cast("Iterable[Path | str]", self._ctx.options.get("os_release_paths", OS_RELEASE_PATHS))
        os_name, os_version = "", ""
        for p in release_paths:
            text = procfs.read_text(p)
            if text is not None:
                os_name, os_version = os_name_version(procfs.parse_os_release(text))
                break
        if not os_name:
            os_name = platform.system()
        cpuinfo = procfs.parse_cpuinfo(procfs.read_text(root / "cpuinfo") or "")
        model = procfs.cpu_model(cpuinfo) or platform.processor()
        stat_text = procfs.read_text(root / "stat")
        if stat_text is None:
            raise RuntimeError(f"cannot read {root / 'stat'}")
        stat = procfs.parse_stat(stat_text)
        # Online logical CPUs: /proc/stat lists exactly those (cpuinfo may too, not on all arches).
        logical = len(stat.per_cpu) or sum(1 for b in cpuinfo if "processor" in b) or (os.cpu_count() or 0)
        physical = count_physical_cores(self._ctx.sysfs, cpuinfo) or logical
        host = HostInfo(
            hostname=hostname, os=os_name, os_version=os_version, kernel=kernel,
            arch=platform.machine(), cpu_model=model, boot_time=stat.boot_time or 0.0,
        )
        self._static = {"cpu_cores": float(logical), "cpu_physical_cores": float(physical)}
        if stat.boot_time:
            self._static["boot_time_seconds"] = stat.boot_time
        return host

    def collect(self, snap: NodeSnapshot) -> None:
        host = self._host
        if host is None:
            host = self._host = self._read_host()
        snap.host = host
        snap.values.update(self._static)
        if host.boot_time:
            snap.values["uptime_seconds"] = max(0.0, snap.timestamp - host.boot_time)
