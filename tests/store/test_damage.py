"""Damaged store files: set aside with one error line, the rest served, the store always opens (issue 8)."""
from __future__ import annotations

import logging
import os
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest

from gpufleet.store import StoreOptions, TimeSeriesStore, formats
from gpufleet.store.block import Block

T0 = 1_700_006_400.0
KEYS = [("util", (("gpu", str(g)),)) for g in range(4)]


def _fill(path: Path, pushes: int, nodes=("a", "b"), cut_at: int | None = None) -> None:
    s = TimeSeriesStore(str(path))
    for i in range(pushes):
        if i == cut_at:
            s.maintain(T0 + 10.0 * i, full=True)
        for n, node in enumerate(nodes):
            s.append(node, T0 + 10.0 * i, KEYS, [float((i + g + n) % 97) for g in range(4)])
    s.close()


def _points(s: TimeSeriesStore, node: str) -> list[float]:
    got = s.query_range("util", [], T0, T0 + 86400, 1.0, "last")
    return sorted({t for r in got if r.labels["node"] == node for t in r.timestamps.tolist()})


def _errors(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR and r.name == "gpufleet.store"]


def test_wal_with_64_flipped_bytes_keeps_what_follows_and_says_what_was_lost(tmp_path, caplog) -> None:
    path = tmp_path / "db"
    _fill(path, 331, nodes=("a",))
    (wal,) = (path / "wal").glob("*.log")
    data = bytearray(wal.read_bytes())
    at = len(data) // 4
    data[at:at + 64] = bytes(b ^ 0x5A for b in data[at:at + 64])
    wal.write_bytes(bytes(data))
    caplog.set_level(logging.ERROR)
    s = TimeSeriesStore(str(path))
    got = _points(s, "a")
    lost = 331 - len(got)
    assert 1 <= lost <= 2  # the records the 64 bytes hit, not the rest of the WAL
    assert got[-1] == T0 + 3300.0  # the records after the damage are kept
    (line,) = _errors(caplog)
    assert "WAL" in line and f"{lost} damaged record(s) lost" in line and ".corrupt" in line
    assert s.append("a", T0 + 5000.0, KEYS, [1.0] * 4) == 0
    s.close()
    caplog.clear()
    s = TimeSeriesStore(str(path))  # set aside once; the rewritten WAL is clean
    assert not _errors(caplog) and len(_points(s, "a")) == len(got) + 1
    s.close()


def test_a_damaged_schema_record_costs_no_samples(tmp_path, caplog) -> None:
    """Pushes whose series list was in the damaged record wait for the list's next copy."""
    path = tmp_path / "db"
    _fill(path, 200, nodes=("a",))
    (wal,) = (path / "wal").glob("*.log")
    data = bytearray(wal.read_bytes())
    first = data.index(b"\xe7GFr")  # the first record: node a's schema
    data[first + 14] ^= 0xFF
    wal.write_bytes(bytes(data))
    caplog.set_level(logging.ERROR)
    s = TimeSeriesStore(str(path))
    assert _points(s, "a") == [T0 + 10.0 * i for i in range(200)]
    (line,) = _errors(caplog)
    assert "1 damaged record(s) lost" in line
    s.close()


def _victim_block(path: Path) -> Path:
    return sorted((path / "blocks" / "r0").glob("*.blk"))[0]


def test_a_bit_flip_inside_a_block_is_set_aside_on_first_read_and_the_rest_answers(tmp_path, caplog) -> None:
    path = tmp_path / "db"
    _fill(path, 120, cut_at=60)  # a block with pushes 0-59, the head (WAL) with 60-119
    victim = _victim_block(path)
    b = Block(str(victim))
    off = int(b.series[0]["off"]) + int(b.series[0]["len"]) // 2
    b.close()
    data = bytearray(victim.read_bytes())
    data[off] ^= 0x10
    victim.write_bytes(bytes(data))
    caplog.set_level(logging.ERROR)
    s = TimeSeriesStore(str(path))  # opens: the index is intact
    for _ in range(2):  # the first query notices it, later ones never meet it again
        got = _points(s, "a")
        assert got == [T0 + 10.0 * i for i in range(60, 120)]
    assert not victim.exists() and victim.with_name(victim.name + ".corrupt").exists()
    (line,) = _errors(caplog)
    assert victim.name in line and "no longer served" in line
    s.maintain(T0 + 86400 * 3, full=True)  # never raises for data reasons
    s.close()


def test_a_damaged_block_found_by_a_merge_is_set_aside_and_maintain_goes_on(tmp_path, caplog) -> None:
    path = tmp_path / "db"
    s = TimeSeriesStore(str(path), StoreOptions(head_span_s=50.0, merge_fanout=4))
    for i in range(60):
        s.append("a", T0 + 10.0 * i, KEYS, [float(i)] * 4)
        s.maintain(T0 + 10.0 * i)
    victim = s._blocks[0][0]
    data = bytearray(Path(victim.path).read_bytes())
    data[int(victim.series[0]["off"]) + 3] ^= 0x01
    Path(victim.path).write_bytes(bytes(data))
    victim.verified = False
    caplog.set_level(logging.ERROR)
    s.maintain(T0 + 86400, full=True)  # the final merge meets it: no exception
    assert len(_errors(caplog)) == 1 and len(s._blocks[0]) == 1
    assert len(_points(s, "a")) == 60 - victim.samples // len(KEYS)  # all but the damaged block's
    s.close()


@pytest.mark.parametrize("how", ["flipped", "truncated", "deleted"])
def test_a_damaged_series_log_is_rebuilt_from_the_snapshot(tmp_path, caplog, how) -> None:
    path = tmp_path / "db"
    _fill(path, 120, nodes=("a", "b", "c"), cut_at=60)
    log = path / "series.log"
    data = log.read_bytes()
    if how == "flipped":
        log.write_bytes(data[:60] + bytes([data[60] ^ 0xFF]) + data[61:])
    elif how == "truncated":
        log.write_bytes(data[: len(data) // 3])
    else:
        log.unlink()
    caplog.set_level(logging.ERROR)
    s = TimeSeriesStore(str(path))
    (line,) = _errors(caplog)
    assert "series index" in line and "lost: 0 node and 0 series names" in line
    for node in ("a", "b", "c"):
        assert _points(s, node) == [T0 + 10.0 * i for i in range(120)]
    s.close()


def test_a_lost_series_log_without_snapshot_opens_and_never_mixes_ids(tmp_path, caplog) -> None:
    path = tmp_path / "db"
    _fill(path, 30, cut_at=15)
    (path / "series.log").unlink()
    (path / "series.snap").unlink()  # as in a store written before series.snap existed
    caplog.set_level(logging.ERROR)
    s = TimeSeriesStore(str(path))
    assert any("lost: 2 node and 8 series names" in m for m in _errors(caplog))
    assert s.series() == []
    other = [("temp", (("gpu", "0"),))]
    assert s.append("z", T0 + 500.0, other, [42.0]) == 0  # new ids go above the old data's
    got = s.query_range("temp", [], T0, T0 + 1000, 1.0, "last")
    assert [(r.labels["node"], r.values) for r in got] == [("z", [42.0])]
    s.maintain(T0 + 86400 * 3, full=True)
    assert [r.values for r in s.query_range("temp", [], T0, T0 + 1000, 1.0, "last")] == [[42.0]]
    s.close()


def test_a_block_of_a_newer_format_is_refused_not_set_aside(tmp_path) -> None:
    path = tmp_path / "db"
    _fill(path, 30, cut_at=15)
    victim = _victim_block(path)
    b = Block(str(victim))
    b.close()
    data = victim.read_bytes()
    # rewrite the index with a format after this one, as a later release would
    import msgspec
    import zlib

    off, ln, _, magic = struct.unpack_from("<QII4s", data, len(data) - 20)
    meta = msgspec.msgpack.decode(data[off:off + ln])
    meta["format"], meta["writer"] = formats.FORMAT + 1, "gpufleet 7.1.0"
    index = msgspec.msgpack.encode(meta)
    victim.write_bytes(data[:off] + index + struct.pack("<QII4s", off, len(index), zlib.crc32(index), magic))
    with pytest.raises(formats.StoreFormatError, match="gpufleet 7.1.0 or newer"):
        TimeSeriesStore(str(path))
    assert victim.exists()
    with pytest.raises(formats.StoreFormatError):  # the lock was released: same answer again
        TimeSeriesStore(str(path))


def test_store_files_and_directories_are_private_whatever_the_umask(tmp_path) -> None:
    path = tmp_path / "db"
    old = os.umask(0)
    try:
        _fill(path, 30, cut_at=15)
        s = TimeSeriesStore(str(path))
        s.close()
    finally:
        os.umask(old)
    for p in [path, *path.rglob("*")]:
        assert p.stat().st_mode & 0o777 == (0o700 if p.is_dir() else 0o600), p


def test_open_makes_an_older_release_store_private(tmp_path) -> None:
    path = tmp_path / "db"
    _fill(path, 30, cut_at=15)
    for p in [path, *path.rglob("*")]:
        p.chmod(0o755 if p.is_dir() else 0o644)
    TimeSeriesStore(str(path)).close()
    assert all(p.stat().st_mode & 0o077 == 0 for p in [path, *path.rglob("*")])


def test_every_damaged_copy_still_opens(tmp_path) -> None:
    """Each file kind, flipped in the middle: the store opens and answers (no exception)."""
    base = tmp_path / "base"
    _fill(base, 120, nodes=("a", "b", "c"), cut_at=60)
    files = [p for p in base.rglob("*") if p.is_file() and p.name != "LOCK"]
    assert {p.suffix for p in files} >= {".log", ".blk", ".snap"}
    for f in files:
        copy = tmp_path / f"copy-{f.name}"
        shutil.copytree(base, copy)
        target = copy / f.relative_to(base)
        data = bytearray(target.read_bytes())
        mid = len(data) // 2
        data[mid:mid + 8] = bytes(x ^ 0xFF for x in data[mid:mid + 8])
        target.write_bytes(bytes(data))
        s = TimeSeriesStore(str(copy))
        pts = _points(s, "a")
        assert pts and np.all(np.diff(pts) > 0), f
        s.maintain(T0 + 86400 * 3, full=True)
        s.close()


def test_series_snap_follows_in_slices_and_a_torn_frame_is_no_damage(tmp_path, caplog) -> None:
    from gpufleet.store import series_snapshot

    path = tmp_path / "db"
    s = TimeSeriesStore(str(path))
    keys = [("m", (("i", str(i)),)) for i in range(2_000)]
    for n in range(6):  # each node's series are one run (a slice takes whole runs)
        s.append(f"a{n}", T0, keys, [1.0] * len(keys))
    calls = 0
    while s.series_index.write_snapshot(5000):  # what a budgeted maintain() does per call
        calls += 1
    assert calls == 2 and series_snapshot.scan(str(path / "series.snap")).counts == (6, 12_000)
    s.append("b", T0, keys[:10], [2.0] * 10)
    s.close()  # close catches up
    snap = path / "series.snap"
    assert series_snapshot.scan(str(snap)).counts == (7, 12_010)
    snap.write_bytes(snap.read_bytes()[:-7])  # a crash while appending the last frame
    (path / "series.log").unlink()
    caplog.set_level(logging.ERROR)
    s = TimeSeriesStore(str(path))
    lines = _errors(caplog)  # series.log is missing; the torn copy is no damage
    assert not any("series snapshot" in x for x in lines) and len(lines) == 2
    assert "lost: 1 node and 10 series names" in lines[1]  # what only the torn frame held
    assert "10 samples could not be replayed" in lines[0]  # b's push, in the WAL, has no names
    assert len(s.series("m")) == 12_000
    s.close()


def test_damage_set_aside_twice_keeps_both_copies(tmp_path, caplog) -> None:
    path = tmp_path / "db"
    _fill(path, 30, cut_at=15)
    log = path / "series.log"
    caplog.set_level(logging.ERROR)
    for _ in range(2):
        data = bytearray(log.read_bytes())
        data[40] ^= 0xFF
        log.write_bytes(bytes(data))
        TimeSeriesStore(str(path)).close()
    assert (path / "series.log.corrupt").exists() and (path / "series.log.corrupt.2").exists()
    assert "kept as series.log.corrupt.2" in _errors(caplog)[-1]
