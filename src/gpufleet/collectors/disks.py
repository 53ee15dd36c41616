"""Filesystems per real mount (size, used, free) and their devices' I/O counters.

Mounts come from /proc/self/mountinfo, whose major:minor numbers match /proc/diskstats
exactly, so LVM, /dev/root and partitions map onto their counters without guessing names.
Pseudo filesystems are skipped with a list close to node_exporter's default excludes; a
filesystem mounted several times (bind mounts) is reported once.

statvfs on a network filesystem whose server is gone blocks, without timeout, in the
kernel. So network and FUSE mounts are left out by default; with the `disks.remote_usage`
option they are probed from a background thread whose result the next round reports, so a
hung server costs one stuck thread per mount, never a stuck collection.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable

from .. import procfs
from ..hostpolicy import IGNORED_FSTYPES, IGNORED_MOUNTPOINTS, REMOTE_FSTYPES
from ..snapshot import Disk, NodeSnapshot
from .base import CollectContext

StatVfs = Callable[[str], os.statvfs_result]


def may_block(fstype: str) -> bool:
    """Network filesystems, and any FUSE daemon (sshfs, s3fs, ...), can hang statvfs."""
    return fstype in REMOTE_FSTYPES or fstype.startswith("fuse")


def wanted(m: procfs.Mount) -> bool:
    # The root filesystem is always of interest, even when it is a container's overlay.
    if m.mountpoint == "/":
        return True
    return m.fstype not in IGNORED_FSTYPES and not IGNORED_MOUNTPOINTS.match(m.mountpoint)


def select_mounts(mounts: list[procfs.Mount], include_remote: bool = False) -> list[procfs.Mount]:
    """Real mounts, one per filesystem: the whole-filesystem mount (root "/") with the
    shortest path wins over bind mounts of its subdirectories."""
    best: dict[tuple[int, int, str], procfs.Mount] = {}
    order: list[tuple[int, int, str]] = []
    for m in mounts:
        # A network root (diskless nodes) is kept: it goes through the background probe.
        if not wanted(m) or (may_block(m.fstype) and not include_remote and m.mountpoint != "/"):
            continue
        # Anonymous devices (major 0: btrfs, NFS, overlay) are distinct per source.
        key = (m.major, m.minor, m.source if m.major == 0 else "")
        cur = best.get(key)
        if cur is None:
            best[key] = m
            order.append(key)
        elif (m.root != "/", len(m.mountpoint)) < (cur.root != "/", len(cur.mountpoint)):
            best[key] = m
    return [best[k] for k in order]


def usage_values(st: os.statvfs_result) -> dict[str, float]:
    size = st.f_blocks * st.f_frsize
    return {
        "size_bytes": float(size),
        "used_bytes": float((st.f_blocks - st.f_bfree) * st.f_frsize),
        "free_bytes": float(st.f_bavail * st.f_frsize),
    }


class _BackgroundStatvfs:
    """statvfs in a daemon thread per mount; `get` never waits, it returns the last result."""

    def __init__(self, statvfs: StatVfs) -> None:
        self._statvfs = statvfs
        self._results: dict[str, os.statvfs_result | None] = {}
        self._running: dict[str, threading.Thread] = {}

    def _probe(self, path: str) -> None:
        try:
            self._results[path] = self._statvfs(path)
        except OSError:
            self._results[path] = None

    def get(self, path: str) -> os.statvfs_result | None:
        t = self._running.get(path)
        if t is None or not t.is_alive():
            t = threading.Thread(target=self._probe, args=(path,), name=f"statvfs {path}", daemon=True)
            self._running[path] = t
            t.start()
        return self._results.get(path)


def _io_values(d: procfs.DiskStats) -> dict[str, float]:
    return {
        "read_bytes_total": float(d.read_bytes),
        "written_bytes_total": float(d.written_bytes),
        "reads_total": float(d.reads),
        "writes_total": float(d.writes),
        "io_time_seconds_total": d.io_ms / 1000.0,
    }


class DiskCollector:
    name = "disks"

    def __init__(self, ctx: CollectContext, statvfs: StatVfs = os.statvfs) -> None:
        self._ctx = ctx
        self._statvfs = statvfs
        self._remote = bool(ctx.options.get("disks.remote_usage", False))
        self._background = _BackgroundStatvfs(statvfs)

    def _mounts(self) -> list[procfs.Mount]:
        for path in (self._ctx.procfs / "self" / "mountinfo", self._ctx.procfs / "1" / "mountinfo"):
            text = procfs.read_text(path)
            if text is not None:
                return procfs.parse_mountinfo(text)
        raise RuntimeError(f"cannot read {self._ctx.procfs / 'self' / 'mountinfo'}")

    def collect(self, snap: NodeSnapshot) -> None:
        stats = procfs.parse_diskstats(procfs.read_text(self._ctx.procfs / "diskstats") or "")
        by_dev = {(d.major, d.minor): d for d in stats}
        by_name = {d.name: d for d in stats}
        disks: list[Disk] = []
        for m in select_mounts(self._mounts(), self._remote):
            if may_block(m.fstype):
                st = self._background.get(m.mountpoint)
            else:
                try:
                    st = self._statvfs(m.mountpoint)
                except OSError:
                    st = None  # gone or not ours to see: skip this mount only
            if st is None or st.f_blocks == 0:
                continue
            values = usage_values(st)
            io = by_dev.get((m.major, m.minor))
            if io is None and m.source.startswith("/dev/"):
                # btrfs and friends show an anonymous 0:N; the source names the block device.
                io = by_name.get(os.path.basename(os.path.realpath(m.source)))
            if io is not None:
                values.update(_io_values(io))
            disks.append(Disk(device=m.source, mountpoint=m.mountpoint, fstype=m.fstype, values=values))
        snap.disks = disks
