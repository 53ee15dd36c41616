"""Disks: mount selection, usage via an injected statvfs, I/O counters, hung network mounts."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from gpufleet import procfs
from gpufleet.collectors.base import CollectContext
from gpufleet.collectors.disks import DiskCollector, may_block, select_mounts
from gpufleet.snapshot import NodeSnapshot
from conftest import FIXTURES as ALL_FIXTURES
from conftest import eventually

FIXTURES = ALL_FIXTURES / "proc"
BLOCK = 4096


def fake_stat(blocks: int, bfree: int, bavail: int) -> os.statvfs_result:
    return os.statvfs_result((BLOCK, BLOCK, blocks, bfree, bavail, 1000, 500, 500, 0, 255))


class FakeStatvfs:
    def __init__(self, fail: set[str] = frozenset(), block: dict[str, threading.Event] | None = None) -> None:
        self.fail = fail
        self.block = block or {}
        self.calls: list[str] = []

    def __call__(self, path: str) -> os.statvfs_result:
        self.calls.append(path)
        if path in self.block:
            self.block[path].wait()
        if path in self.fail:
            raise OSError(116, "Stale file handle")
        return fake_stat(1000, 400, 300)


def snap() -> NodeSnapshot:
    return NodeSnapshot(node="n", timestamp=0.0)


def fixture_mounts() -> list[procfs.Mount]:
    return procfs.parse_mountinfo((FIXTURES / "self" / "mountinfo").read_text())


def test_select_mounts_skips_pseudo_and_dedupes_binds() -> None:
    chosen = [m.mountpoint for m in select_mounts(fixture_mounts())]
    # proc, sys, devtmpfs, tmpfs, cgroup2, squashfs snap, docker overlay, nfs and fuse are left out;
    # /srv/projects is a bind mount of a /data subdirectory.
    assert chosen == ["/", "/boot/efi", "/data", "/mnt/my disk"]
    remote = [m.mountpoint for m in select_mounts(fixture_mounts(), include_remote=True)]
    assert remote == ["/", "/boot/efi", "/data", "/home", "/mnt/my disk", "/mnt/s3"]


def test_bind_mount_seen_first_loses_to_the_whole_filesystem() -> None:
    mounts = procfs.parse_mountinfo(
        "40 1 8:16 /sub /bind rw - ext4 /dev/sdb rw\n41 1 8:16 / /real rw - ext4 /dev/sdb rw\n"
    )
    assert [m.mountpoint for m in select_mounts(mounts)] == ["/real"]


def test_container_overlay_root_is_kept() -> None:
    mounts = procfs.parse_mountinfo("1 0 0:30 / / rw - overlay overlay rw,lowerdir=/a\n")
    assert [m.mountpoint for m in select_mounts(mounts)] == ["/"]


def test_may_block() -> None:
    assert may_block("nfs4") and may_block("cifs") and may_block("fuse.sshfs") and may_block("lustre")
    assert not may_block("ext4") and not may_block("xfs") and not may_block("zfs")


def test_disk_usage_and_io() -> None:
    fake = FakeStatvfs()
    s = snap()
    DiskCollector(CollectContext(procfs=FIXTURES), statvfs=fake).collect(s)
    disks = {d.mountpoint: d for d in s.disks}
    assert list(disks) == ["/", "/boot/efi", "/data", "/mnt/my disk"]
    root = disks["/"]
    assert (root.device, root.fstype) == ("/dev/mapper/vg-root", "ext4")
    assert root.values == {
        "size_bytes": 1000.0 * BLOCK, "used_bytes": 600.0 * BLOCK, "free_bytes": 300.0 * BLOCK,
        # dm-0 (253:0), matched by device number, not by the /dev/mapper name.
        "read_bytes_total": 28000000 * 512.0, "written_bytes_total": 18000000 * 512.0,
        "reads_total": 140000.0, "writes_total": 85000.0, "io_time_seconds_total": 58.0,
    }
    assert disks["/boot/efi"].values["reads_total"] == 100.0  # the partition's own counters
    assert disks["/data"].values["writes_total"] == 6000.0
    # sdb1 is not in diskstats: usage only.
    assert set(disks["/mnt/my disk"].values) == {"size_bytes", "used_bytes", "free_bytes"}
    assert "/home" not in fake.calls and "/mnt/s3" not in fake.calls  # network/FUSE never touched


def test_failing_statvfs_skips_that_mount_only() -> None:
    s = snap()
    DiskCollector(CollectContext(procfs=FIXTURES), statvfs=FakeStatvfs(fail={"/data"})).collect(s)
    assert [d.mountpoint for d in s.disks] == ["/", "/boot/efi", "/mnt/my disk"]


def test_hung_network_mount_never_blocks_the_collection() -> None:
    hang = threading.Event()
    fake = FakeStatvfs(block={"/home": hang})
    c = DiskCollector(CollectContext(procfs=FIXTURES, options={"disks.remote_usage": True}), statvfs=fake)
    try:
        for _ in range(3):
            t0 = time.monotonic()
            s = snap()
            c.collect(s)
            assert time.monotonic() - t0 < 1.0
            assert "/home" not in [d.mountpoint for d in s.disks]
        # One probe thread per hung mount, not one per round.
        assert fake.calls.count("/home") == 1
    finally:
        hang.set()
    # Once the server answers, the next rounds report it (from the background probe's result).
    def collected_home() -> object:
        s = snap()
        c.collect(s)
        return next((d for d in s.disks if d.mountpoint == "/home"), None)

    home = eventually(collected_home, timeout=5, what="/home reported once its server answers", interval=0.01)
    assert home.fstype == "nfs4" and home.device == "fileserver:/export/home"
    assert home.values["size_bytes"] == 1000.0 * BLOCK


def test_stale_network_mount_is_skipped() -> None:
    fake = FakeStatvfs(fail={"/home"})
    c = DiskCollector(CollectContext(procfs=FIXTURES, options={"disks.remote_usage": True}), statvfs=fake)
    s = snap()
    c.collect(s)  # starts the background probe of /home, which fails
    eventually(lambda: "/home" in c._background._results, timeout=5, what="the failed probe of /home")
    for _ in range(3):  # rounds after the failed probe: skipped, not reported stale or empty
        s = snap()
        c.collect(s)
    assert "/home" not in [d.mountpoint for d in s.disks]
    assert "/mnt/s3" in [d.mountpoint for d in s.disks]


def test_missing_mountinfo_fails(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="mountinfo"):
        DiskCollector(CollectContext(procfs=tmp_path), statvfs=FakeStatvfs()).collect(snap())
