"""``series.snap``: a compressed, append-only copy of the series index.

series.log is the index itself (one record per name, fsynced with the WAL);
this copy is what series.log is rebuilt from when it is damaged, truncated or
deleted.  It grows by frames, each holding the names registered since the
previous one, so keeping it current costs in proportion to new series, in
small slices within ``maintain``'s budget::

    header (magic, version, writer, crc)
    frame: <u32 body length><u32 crc32(body)><u32 node ids covered><u32 series ids covered> body
    body: zstd (with checksum) of a msgpack list of series.log record payloads

A frame cut short at the end (a crash mid-append) is dropped silently; a frame
that fails its CRC makes the file damaged: its intact frames are still used,
and the file is set aside and written again.
"""
from __future__ import annotations

import os
import struct
import zlib
from dataclasses import dataclass, field

import msgspec
import zstandard

from . import formats

NAME = "series.snap"
MAGIC = b"GFSS"
_FRAME = struct.Struct("<IIII")

_enc = msgspec.msgpack.Encoder()
_dec = msgspec.msgpack.Decoder(list[bytes])


@dataclass
class SnapshotScan:
    exists: bool = False
    version: int = 0
    counts: tuple[int, int] = (0, 0)  # node and series ids the intact frames cover
    bodies: list[bytes] = field(default_factory=list)
    trouble: str = ""  # damage, for the error line; '' when sound
    end: int = 0  # where the intact frames end (a torn tail after it is cut off)
    size: int = 0


def scan(path: str) -> SnapshotScan:
    """Read series.snap without changing it. Raises StoreFormatError for a newer format."""
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except FileNotFoundError:
        return SnapshotScan()
    out = SnapshotScan(exists=True, size=len(data))
    head = formats.parse_header(data, MAGIC)
    if head is None:
        out.trouble = "bad header"
        return out
    version, writer, pos = head
    if version > formats.FORMAT:
        raise formats.too_new(path, version, writer)
    out.version = version
    out.end = pos
    while pos + _FRAME.size <= len(data):
        ln, crc, nodes, series = _FRAME.unpack_from(data, pos)
        body = data[pos + _FRAME.size:pos + _FRAME.size + ln]
        if len(body) < ln:
            break  # torn: a crash while appending
        if zlib.crc32(body) != crc:
            out.trouble = f"frame at byte {pos} fails its CRC"
            break
        out.bodies.append(body)
        out.counts = (nodes, series)
        pos += _FRAME.size + ln
        out.end = pos
    return out


def records(got: SnapshotScan) -> list[bytes]:
    """The series.log record payloads of the intact frames."""
    out: list[bytes] = []
    zd = zstandard.ZstdDecompressor()
    for body in got.bodies:
        try:
            out.extend(_dec.decode(zd.decompress(body)))
        except (zstandard.ZstdError, msgspec.DecodeError):
            continue  # passed its CRC: not written by us; skip it
    return out


def check(path: str) -> str:
    """'' if series.snap is absent or sound, else what is wrong with it (for ``store check``)."""
    got = scan(path)
    if got.trouble:
        return got.trouble
    zd = zstandard.ZstdDecompressor()
    for body in got.bodies:
        try:
            _dec.decode(zd.decompress(body))
        except (zstandard.ZstdError, msgspec.DecodeError) as e:
            return f"a frame does not decode ({e})"
    return ""


def append(path: str, counts: tuple[int, int], recs: list[bytes]) -> None:
    """Add a frame (creating the file when it does not exist)."""
    body = zstandard.ZstdCompressor(level=3, write_checksum=True).compress(_enc.encode(recs))
    frame = _FRAME.pack(len(body), zlib.crc32(body), *counts) + body
    if not os.path.exists(path):
        formats.write_atomic(path, formats.header(MAGIC) + frame)
        return
    fd = formats.open_file(path, os.O_WRONLY | os.O_APPEND)
    try:
        view = memoryview(frame)
        while view:
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)
