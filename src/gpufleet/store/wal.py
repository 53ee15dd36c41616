"""Append-only record log with per-record CRC, used for the WAL and the series index.

Each record is ``<u32 length><u32 crc32(payload)><payload>``.  Records are
written with one ``os.write`` straight to the file descriptor (no user-space
buffer), so everything appended is in the OS page cache when ``append``
returns: a ``kill -9`` of the process loses nothing, and ``flush()`` adds an
fsync for power loss.  On open, replay stops at the first record that is
short or fails its CRC (a torn tail) and the file is truncated there, so later
appends never sit behind garbage.
"""
from __future__ import annotations

import os
import struct
import zlib
from collections.abc import Iterator

_REC = struct.Struct("<II")
_MAX_RECORD = 1 << 30


def read_records(path: str) -> tuple[list[bytes], int]:
    """Return the intact records of a log and the byte offset where they end."""
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except FileNotFoundError:
        return [], 0
    out: list[bytes] = []
    pos = 0
    end = len(data)
    while pos + _REC.size <= end:
        length, crc = _REC.unpack_from(data, pos)
        start = pos + _REC.size
        if length > _MAX_RECORD or start + length > end:
            break
        payload = data[start : start + length]
        if zlib.crc32(payload) != crc:
            break
        out.append(payload)
        pos = start + length
    return out, pos


class RecordLog:
    """An open, append-only log file."""

    def __init__(self, path: str) -> None:
        self.path = path
        records, good = read_records(path)
        self.recovered: list[bytes] = records
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        size = os.fstat(self._fd).st_size
        if size != good:
            os.ftruncate(self._fd, good)  # drop the torn tail before appending
        os.lseek(self._fd, good, os.SEEK_SET)
        self.size = good

    def append(self, payload: bytes) -> None:
        self.append_raw(_REC.pack(len(payload), zlib.crc32(payload)) + payload)

    def append_raw(self, buf: bytes) -> None:
        view = memoryview(buf)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]
        self.size += len(buf)

    @staticmethod
    def frame(payload: bytes) -> bytes:
        return _REC.pack(len(payload), zlib.crc32(payload)) + payload

    def flush(self, fsync: bool = True) -> None:
        # Data is already in the OS after append(); fsync only matters for power loss.
        if fsync:
            os.fsync(self._fd)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.recovered)
