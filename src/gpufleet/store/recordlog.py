"""Append-only record logs (the WAL and the series index), checksummed per record.

Format version 2 (see ``formats``)::

    header: magic | u16 version | u16 writer length | writer | u32 crc
    record: SYNC (4 bytes) | u32 length | u32 crc32(length, payload) | payload

Records are written with one ``os.write`` straight to the file descriptor, so
everything appended is in the OS page cache when ``append`` returns: a
``kill -9`` loses nothing, and ``flush()`` adds an fsync for power loss.

Reading tells two kinds of trouble apart.  A *torn tail* (the last record
cut short by a crash mid-write, or zeros after it) is normal and silently
cut off.  *Damage* (a record that is whole but fails its CRC, bytes that are
no record at all) is skipped: the reader looks for the next sync mark whose
record checks out and carries on there, so a flipped byte costs one record,
not the rest of the file.  Version 1 logs (no header, ``<len><crc>`` records)
are read too; resyncing them tries every offset.
"""
from __future__ import annotations

import os
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field

from . import formats

SYNC = b"\xe7GFr"
_REC = struct.Struct("<4sII")  # sync, length, crc
_V1 = struct.Struct("<II")  # version 1: length, crc32(payload)
_MAX_RECORD = 1 << 30


@dataclass
class LogScan:
    """What a log file holds: intact records, and where it is damaged."""

    path: str
    version: int
    records: list[bytes] = field(default_factory=list)
    end: int = 0  # where the last intact record ends (appends go here)
    size: int = 0
    damaged: list[tuple[int, int, int]] = field(default_factory=list)  # (start, end, records lost)
    estimated: bool = False  # a count above came from the average record size
    torn: int = 0  # bytes of an unfinished last record, cut off without a word
    exists: bool = True
    has_header: bool = False
    header_len: int = 0

    @property
    def lost_records(self) -> int:
        return sum(n for _, _, n in self.damaged)

    def describe(self) -> str:
        spans = ", ".join(f"bytes {a}-{b}" if n else f"the header, bytes {a}-{b}" for a, b, n in self.damaged)
        about = "about " if self.estimated else ""
        return (f"{about}{self.lost_records} damaged record(s) lost ({spans}), "
                f"{len(self.records)} intact record(s) kept")


def _v2_at(data: bytes, pos: int, end: int) -> int:
    """End of a valid version 2 record at pos, or -1."""
    if pos + _REC.size > end:
        return -1
    sync, ln, crc = _REC.unpack_from(data, pos)
    start = pos + _REC.size
    if sync != SYNC or ln == 0 or ln > _MAX_RECORD or start + ln > end:
        return -1
    if zlib.crc32(data[start:start + ln], zlib.crc32(data[pos + 4:pos + 8])) != crc:
        return -1
    return start + int(ln)


def _v1_at(data: bytes, pos: int, end: int) -> int:
    if pos + _V1.size > end:
        return -1
    ln, crc = _V1.unpack_from(data, pos)
    start = pos + _V1.size
    if ln == 0 or ln > _MAX_RECORD or start + ln > end:
        return -1
    if zlib.crc32(data[start:start + ln]) != crc:
        return -1
    return start + int(ln)


def _torn(data: bytes, pos: int, end: int, version: int) -> bool:
    """Do the bytes from pos to the end look like one record cut short (or zero fill)?"""
    rest = data[pos:end]
    if not rest.strip(b"\x00"):
        return True
    if version >= 2:
        if end - pos < _REC.size:
            return SYNC.startswith(rest[:4])
        sync, ln, _ = _REC.unpack_from(data, pos)
        return bool(sync == SYNC and 0 < ln <= _MAX_RECORD and pos + _REC.size + ln > end)
    if end - pos < _V1.size:
        return True
    ln, _ = _V1.unpack_from(data, pos)
    return bool(0 < ln <= _MAX_RECORD and pos + _V1.size + ln > end)


def _lost(data: bytes, a: int, b: int, version: int, avg: float) -> tuple[int, bool]:
    """How many records the damaged bytes [a, b) held: walk the headers that still make
    sense; where one does not, estimate from the file's average record size."""
    n, p, exact = 0, a, True
    while p < b:
        if version >= 2 and p + _REC.size <= b and data[p:p + 4] == SYNC:
            ln = _REC.unpack_from(data, p)[1]
            if p + _REC.size + ln <= b:
                n += 1
                p += _REC.size + ln
                continue
        q = data.find(SYNC, p + 1, b) if version >= 2 else -1
        gap = (q if q >= 0 else b) - p
        guess = max(1, round(gap / avg)) if avg > 0 else 1
        exact = exact and guess == 1 and gap < 2 * _REC.size
        n += guess
        if q < 0:
            break
        p = q
    return max(n, 1), exact


def _scan(data: bytes, pos: int, version: int, out: LogScan) -> None:
    end = len(data)
    at = _v2_at if version >= 2 else _v1_at
    while pos < end:
        nxt = at(data, pos, end)
        if nxt > 0:
            out.records.append(data[pos + (_REC.size if version >= 2 else _V1.size):nxt])
            out.end = pos = nxt
            continue
        # Not a record here: resync on the next position where one checks out.
        q = pos + 1
        found = -1
        while q < end:
            if version >= 2:
                q = data.find(SYNC, q)
                if q < 0:
                    break
            if at(data, q, end) > 0:
                found = q
                break
            q += 1
        if found < 0:
            if _torn(data, pos, end, version):
                out.torn = end - pos
            else:
                out.damaged.append((pos, end, 0))
            break
        out.damaged.append((pos, found, 0))
        pos = found
    if out.damaged:
        head = _REC.size if version >= 2 else _V1.size
        avg = head + sum(map(len, out.records)) / len(out.records) if out.records else 0.0
        counted = [(a, b, _lost(data, a, b, version, avg) if b > a else (0, True)) for a, b, _ in out.damaged]
        out.damaged = [(a, b, n) for a, b, (n, _) in counted]
        out.estimated = not all(exact for _, _, (_, exact) in counted)


def scan_log(path: str, magic: bytes) -> LogScan:
    """Read a log without changing it. Raises StoreFormatError for a newer format."""
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except FileNotFoundError:
        return LogScan(path, formats.FORMAT, exists=False)
    out = LogScan(path, formats.FORMAT, size=len(data))
    if not data:
        return out
    head = formats.parse_header(data, magic)
    if head is not None:
        version, writer, hlen = head
        if version > formats.FORMAT:
            raise formats.too_new(path, version, writer)
        out.version = version
        out.has_header = True
        out.end = out.header_len = hlen
        _scan(data, hlen, version, out)
        return out
    if data[:4] == magic or data.find(SYNC) >= 0:
        # a version 2 log whose header is damaged: its records still carry sync marks
        _scan(data, 0, formats.FORMAT, out)
        if out.damaged and out.damaged[0][0] == 0:
            out.damaged[0] = (0, out.damaged[0][1], 0)  # the header, not a record
        elif not out.damaged:
            out.damaged.insert(0, (0, 0, 0))
        return out
    out.version = 1
    _scan(data, 0, 1, out)
    return out


def encode(payload: bytes) -> bytes:
    ln = struct.pack("<I", len(payload))
    return SYNC + ln + struct.pack("<I", zlib.crc32(payload, zlib.crc32(ln))) + payload


class RecordLog:
    """An open, append-only log file in the current format."""

    def __init__(self, path: str, magic: bytes, scan: LogScan | None = None,
                 on_damage: Callable[[str], None] | None = None, what: str = "log") -> None:
        """Open (creating) a log. Damage is set aside as ``<path>.corrupt`` and reported once.

        ``scan`` may be given when the caller already read the file (and may have
        replaced its records, as the series index does when it rebuilds).
        """
        self.path = path
        self.magic = magic
        scan = scan if scan is not None else scan_log(path, magic)
        self.recovered: list[bytes] = scan.records
        self.aside = ""  # the base name the damaged file was kept under
        if scan.damaged:
            self.rewrite(scan.records, set_aside=True)
            if on_damage is not None:
                on_damage(f"{what} {path} is damaged: {scan.describe()}; the damaged file is kept as {self.aside}")
        elif not scan.has_header or scan.version < formats.FORMAT:
            self.rewrite(scan.records)  # new, empty, or an older version: write it in this format
        self._fd = formats.open_file(path, os.O_RDWR | os.O_CREAT)
        size = os.fstat(self._fd).st_size
        rewritten = not scan.has_header or bool(scan.damaged) or scan.version < formats.FORMAT
        end = self._end if rewritten else scan.end
        if size != end:
            os.ftruncate(self._fd, end)  # drop the torn tail before appending
        os.lseek(self._fd, end, os.SEEK_SET)
        self.size = end - (len(formats.header(magic)) if rewritten else scan.header_len)  # bytes of records

    def rewrite(self, records: list[bytes], set_aside: bool = False) -> None:
        data = formats.header(self.magic) + b"".join(encode(r) for r in records)
        self.aside = formats.write_atomic(self.path, data, keep_old=set_aside)
        self._end = len(data)

    def append(self, payload: bytes) -> None:
        view = memoryview(encode(payload))
        self.size += len(view)
        while view:
            view = view[os.write(self._fd, view):]

    def append_many(self, payloads: list[bytes]) -> None:
        """Append several records with one write; on failure none of them stays in the file."""
        data = b"".join(encode(p) for p in payloads)
        start = os.lseek(self._fd, 0, os.SEEK_CUR)
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(self._fd, view):]
        except BaseException:
            # A short write (disk full) must not leave records the caller will not use: their
            # ids would be handed out again for other series.
            try:
                os.ftruncate(self._fd, start)
                os.lseek(self._fd, start, os.SEEK_SET)
            except OSError:
                pass
            raise
        self.size += len(data)

    def flush(self, fsync: bool = True) -> None:
        # Data is already in the OS after append(); fsync only matters for power loss.
        if fsync:
            os.fsync(self._fd)

    def dup(self) -> int:
        """A descriptor of the same file (for an fsync outside the caller's lock; close it after):
        it stays valid if this log is closed or replaced meanwhile."""
        return os.dup(self._fd)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
