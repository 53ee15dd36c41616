"""Format versions of the store's files, file modes, and the refusal of a newer format.

Every file the store writes says which format it is in: record logs (WAL,
series index) and the series snapshot start with a header ``magic, version,
writer`` under a CRC; blocks keep ``format`` and ``writer`` in their index.

    version 1  gpufleet 0.1.0 before checksummed headers: logs without a header,
               records ``<len><crc>``; blocks without ``format``/``data_crc``
    version 2  headers; log records with a sync mark and a CRC over length and
               payload (a damaged record is skipped, not the rest of the file);
               blocks with a CRC over all their frames; the series snapshot
    version 3  the series index names a batch of series as one run of ids over a shared
               shape (``P`` and ``T`` records, see ``series_index``); older logs are
               rewritten in this format when opened, other files are as in version 2

A file of a version above ``FORMAT`` is refused (``StoreFormatError``), never
set aside: it is not damaged, this release is too old for it.
"""
from __future__ import annotations

import os
import struct
import zlib

from .. import __version__

FORMAT = 3
WRITER = f"gpufleet {__version__}"

FILE_MODE = 0o600  # samples and series names are the fleet's business, not every local user's
DIR_MODE = 0o700

_HEADER = struct.Struct("<4sHH")  # magic, version, writer length; then writer, then <u32 crc>
_CRC = struct.Struct("<I")


class StoreFormatError(ValueError):
    """A store file in a format this release cannot read (written by a newer release)."""


def too_new(path: str, version: int, writer: str) -> StoreFormatError:
    by = writer or "a newer gpufleet"
    return StoreFormatError(
        f"{path} is in store format version {version} (written by {by}); this {WRITER} reads "
        f"versions 1 to {FORMAT}: run {by} or newer on this data directory")


def header(magic: bytes) -> bytes:
    w = WRITER.encode()
    head = _HEADER.pack(magic, FORMAT, len(w)) + w
    return head + _CRC.pack(zlib.crc32(head))


def parse_header(data: bytes, magic: bytes) -> tuple[int, str, int] | None:
    """(version, writer, header length) of a file starting with ``magic``, or None if absent/damaged."""
    if len(data) < _HEADER.size or data[:4] != magic:
        return None
    _, version, wlen = _HEADER.unpack_from(data, 0)
    end = _HEADER.size + wlen
    if len(data) < end + _CRC.size or _CRC.unpack_from(data, end)[0] != zlib.crc32(data[:end]):
        return None
    return version, data[_HEADER.size:end].decode("utf-8", "replace"), end + _CRC.size


def make_dir(path: str) -> None:
    """Create a store directory (and missing parents) with DIR_MODE whatever the umask."""
    missing = []
    p = os.path.abspath(path)
    while not os.path.isdir(p):
        missing.append(p)
        p = os.path.dirname(p)
    for d in reversed(missing):
        try:
            os.mkdir(d, DIR_MODE)
        except FileExistsError:
            pass
        os.chmod(d, DIR_MODE)  # mkdir's mode is filtered by the umask
    if os.stat(path).st_mode & 0o777 != DIR_MODE:
        os.chmod(path, DIR_MODE)


def open_file(path: str, flags: int) -> int:
    """os.open with FILE_MODE (and fix the mode of a file an older release left 0644)."""
    fd = os.open(path, flags, FILE_MODE)
    try:
        if os.fstat(fd).st_mode & 0o777 != FILE_MODE:
            os.fchmod(fd, FILE_MODE)
    except BaseException:
        os.close(fd)
        raise
    return fd


def fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def set_aside(path: str) -> str:
    """Rename a damaged file to ``NAME.corrupt`` (``NAME.corrupt.2``... if taken); returns the new base name."""
    aside = path + ".corrupt"
    n = 1
    while os.path.lexists(aside):
        n += 1
        aside = f"{path}.corrupt.{n}"
    os.replace(path, aside)
    return os.path.basename(aside)


def write_atomic(path: str, data: bytes, keep_old: bool = False) -> str:
    """Write a whole file under a temporary name, fsync, and rename it into place.

    With ``keep_old``, the file being replaced is first set aside (kept for
    inspection) rather than overwritten; returns its new base name ('' if none).
    """
    tmp = path + ".tmp"
    fd = open_file(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)
    aside = set_aside(path) if keep_old and os.path.exists(path) else ""
    os.replace(tmp, path)
    fsync_dir(os.path.dirname(path) or ".")
    return aside


def make_private(root: str) -> None:
    """Give every directory and file under root DIR_MODE / FILE_MODE (older releases used 0755/0644)."""
    for d, dirs, files in os.walk(root):
        for name, mode in [(d, DIR_MODE)] + [(os.path.join(d, f), FILE_MODE) for f in files]:
            try:
                if os.lstat(name).st_mode & 0o777 != mode:
                    os.chmod(name, mode)
            except FileNotFoundError:
                pass


class StoreInUse(OSError):
    """The store directory is locked by another process (an OSError, like the lock that failed)."""
