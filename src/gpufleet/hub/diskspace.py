"""The free-space floor under the hub's data directory (`--min-free-space`).

Below the floor the hub stops writing (pushes get 503 with Retry-After, agents keep their
snapshots spooled) before the disk is actually full, so SQLite and the store never meet
ENOSPC halfway through a write in the common case; a built-in alert says why.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass

GIB = 1024 ** 3
DEFAULT_FLOOR_BYTES = GIB
DEFAULT_FLOOR_FRACTION = 0.05
DEFAULT_SPEC = "1GiB,5%"
CHECK_EVERY_S = 1.0

_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1000, "m": 1000 ** 2, "mb": 1000 ** 2, "g": 1000 ** 3, "gb": 1000 ** 3,
          "t": 1000 ** 4, "tb": 1000 ** 4, "kib": 1024, "mib": 1024 ** 2, "gib": GIB, "tib": 1024 ** 4}
_SIZE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*|%)\s*")


@dataclass(frozen=True, slots=True)
class Floor:
    """Free space to keep: the smaller of `bytes` and `fraction` of the filesystem (either may be None)."""

    bytes: int | None = DEFAULT_FLOOR_BYTES
    fraction: float | None = DEFAULT_FLOOR_FRACTION

    def of(self, fs_size: int) -> int:
        parts = []
        if self.bytes is not None:
            parts.append(self.bytes)
        if self.fraction is not None:
            parts.append(int(fs_size * self.fraction))
        return min(parts) if parts else 0


def parse_floor(text: str) -> Floor:
    """'500MiB', '2GiB', '5%', '0', or two of them ('1GiB,5%': the smaller). ValueError names the problem."""
    size: int | None = None
    fraction: float | None = None
    items = [p for p in (text or "").split(",")]
    if not 1 <= len(items) <= 2:
        raise ValueError(f"{text!r} is not a size like 500MiB, 2GiB or 5% (or two, e.g. 1GiB,5%)")
    for item in items:
        m = _SIZE.fullmatch(item)
        unit = (m.group(2) if m else "").lower()
        if not m or (unit != "%" and unit not in _UNITS):
            raise ValueError(f"{item.strip()!r} is not a size like 500MiB, 2GiB or 5%")
        value = float(m.group(1))
        if unit == "%":
            if value > 100 or fraction is not None:
                raise ValueError(f"{item.strip()!r}: give one percentage, at most 100%")
            fraction = value / 100
        else:
            if size is not None:
                raise ValueError(f"{text!r}: give one size and at most one percentage")
            size = int(value * _UNITS[unit])
    return Floor(size, fraction)


def format_bytes(n: float) -> str:
    for unit, size in (("TiB", 1024 ** 4), ("GiB", GIB), ("MiB", 1024 ** 2), ("KiB", 1024)):
        if abs(n) >= size:
            return f"{n / size:.1f} {unit}"
    return f"{int(n)} B"


class FreeSpace:
    """Free space of the data directory's filesystem, read at most once a second."""

    def __init__(self, path: str | os.PathLike[str], floor: Floor) -> None:
        self.path = path
        self.floor = floor
        self.free = -1
        self.floor_bytes = 0
        self._checked = -CHECK_EVERY_S

    def refresh(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._checked < CHECK_EVERY_S:
            return
        self._checked = now
        try:
            st = os.statvfs(self.path)
        except OSError:
            return  # the data directory vanished or is unreadable: the writes themselves will say so
        self.free = st.f_bavail * st.f_frsize
        self.floor_bytes = self.floor.of(st.f_blocks * st.f_frsize)

    def below_floor(self) -> str:
        """Why writes must stop now ('' when they may go on)."""
        self.refresh()
        if 0 <= self.free < self.floor_bytes:
            return (f"the hub's disk has {format_bytes(self.free)} free, below --min-free-space "
                    f"({format_bytes(self.floor_bytes)}): free space or lower the floor")
        return ""
