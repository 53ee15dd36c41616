"""Verify a store without changing it (``gpufleet store check``), and repair it (``store repair``).

``check`` takes no lock, so it may run beside the hub: a file the hub
replaces meanwhile is skipped, and a WAL record being written is a torn tail,
not damage.

``check`` reads every file the way opening would, but only reports: a
damaged log record, a block whose index or frames fail their checksums or
that holds impossible timestamps, a damaged series snapshot, series ids in
use that no file names.  ``repair`` opens the store (which sets damaged files
aside as ``.corrupt`` and rebuilds the WAL and the series index from what is
intact), checks every block's frames, and closes it.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

from . import formats
from .block import Block
from .recordlog import scan_log
from .recovery import WAL_MAGIC
from .series_index import MAGIC as INDEX_MAGIC
from . import series_snapshot
from .series_index import SNAPSHOT
from .types import MAX_TS, RESOLUTIONS, StoreOptions


@dataclass
class CheckReport:
    files: int = 0
    damaged: list[str] = field(default_factory=list)  # "path: what", one per damaged file
    notes: list[str] = field(default_factory=list)  # not damage: files set aside earlier


def check_store(path: str, options: StoreOptions | None = None) -> CheckReport:
    """Inspect the store in ``path`` read-only. Raises StoreFormatError for a newer format."""
    opts = options or StoreOptions()
    out = CheckReport()
    limit = min(time.time() + opts.max_future_s, MAX_TS)
    used_nodes = used_series = 0
    for res in RESOLUTIONS:
        d = os.path.join(path, "blocks", f"r{res}")
        for name in sorted(os.listdir(d)) if os.path.isdir(d) else []:
            full = os.path.join(d, name)
            if ".corrupt" in name:
                out.notes.append(f"{full}: set aside earlier")
            if not name.endswith(".blk"):
                continue
            try:
                b = Block(full)
            except formats.StoreFormatError:
                raise
            except FileNotFoundError:
                continue  # merged or expired by a running hub while we looked
            except Exception as e:  # whatever a damaged index makes the reader raise
                out.damaged.append(f"{full}: unreadable index ({type(e).__name__}: {e})")
                continue
            out.files += 1
            try:
                why = b.verify()
                if not why and (b.window < 0 or b.min_ts < 0 or b.min_ts > limit):
                    why = f"holds only impossible timestamps ({b.min_ts:g} .. {b.max_ts:g})"
                if why:
                    out.damaged.append(f"{full}: {why}")
                    continue
                if b.nodes.size:
                    used_nodes = max(used_nodes, int(b.nodes["nid"].max()) + 1)
                if b.series.size:
                    used_series = max(used_series, int(b.series["sid"].max()) + 1)
            finally:
                b.close()
    wal_dir = os.path.join(path, "wal")
    for name in sorted(os.listdir(wal_dir)) if os.path.isdir(wal_dir) else []:
        full = os.path.join(wal_dir, name)
        if ".corrupt" in name:
            out.notes.append(f"{full}: set aside earlier")
        if name.endswith(".log"):
            out.files += 1
            scan = scan_log(full, WAL_MAGIC)
            if scan.damaged:
                out.damaged.append(f"{full}: {scan.describe()}")
    index = os.path.join(path, "series.log")
    scan = scan_log(index, INDEX_MAGIC)
    for name in sorted(os.listdir(path)):
        if ".corrupt" in name:
            out.notes.append(f"{os.path.join(path, name)}: set aside earlier")
    if scan.exists:
        out.files += 1
    if scan.damaged:
        out.damaged.append(f"{index}: {scan.describe()}")
    elif not scan.exists and (used_nodes or used_series):
        out.damaged.append(f"{index}: missing, while blocks use {used_series} series ids")
    snap = os.path.join(path, SNAPSHOT)
    if os.path.exists(snap):
        out.files += 1
        why = series_snapshot.check(snap)
        if why:
            out.damaged.append(f"{snap}: {why}")
    if scan.exists and not scan.damaged:
        # a truncated series.log reads clean: compare with what the data and the snapshot use
        counts = series_snapshot.scan(snap).counts
        nodes, series = _ids(scan.records)
        need_n, need_s = max(used_nodes, counts[0]), max(used_series, counts[1])
        if nodes < need_n or series < need_s:
            out.damaged.append(f"{index}: names {series} series ids, the store uses {need_s} (truncated?)")
    return out


def _ids(records: list[bytes]) -> tuple[int, int]:
    import msgspec

    nodes = series = 0
    sizes: dict[int, int] = {}  # shape id -> ids in a run of it
    for r in records:
        try:
            rec = msgspec.msgpack.decode(r)
            if rec[0] == "N":
                nodes = max(nodes, int(rec[1]) + 1)
            elif rec[0] == "P":
                sizes[int(rec[1])] = len(rec[2])
            elif rec[0] == "T":
                series = max(series, int(rec[1]) + sizes.get(int(rec[3]), 1))
            else:
                series = max(series, int(rec[1]) + 1)
        except (msgspec.DecodeError, ValueError, TypeError, IndexError):
            continue
    return nodes, series


def repair_store(path: str, options: StoreOptions | None = None) -> list[str]:
    """Open the store (setting damage aside, rebuilding logs), check every block, close. Returns what was done."""
    from .tsdb import TimeSeriesStore

    s = TimeSeriesStore(path, options)
    try:
        s.verify_blocks()
        return list(s.damage)
    finally:
        s.close()
