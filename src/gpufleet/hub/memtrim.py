"""Give freed heap memory back to the OS (glibc `malloc_trim`), every 2 s.

The hub frees large amounts in bursts: a head cut drops a node's buffers, a closed live-update
stream its queues, a round of pushes the previous decoded snapshots. glibc keeps such memory
in its arenas (one per thread that allocated it) and RSS stays at the peak; `malloc_trim(0)`
returns every free page, not only the top of the heap. Elsewhere (musl, macOS) it is a no-op.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import time
from collections.abc import Callable

# Every 2 s, not 20: between two trims the pushes of a 1,000-node fleet leave ~15 MiB freed but
# resident (bench_hub_push at 1,000 nodes: RSS at the end 347-352 -> 334-335 MiB); a trim costs
# ~0.3 ms, with the GIL released.
EVERY_S = 2.0


def _load() -> Callable[[int], int] | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        fn = libc.malloc_trim
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_size_t]
    fn.restype = ctypes.c_int
    return fn


class Trimmer:
    def __init__(self, every_s: float = EVERY_S) -> None:
        self.every_s = every_s
        self._fn = _load()
        self._next = 0.0

    @property
    def available(self) -> bool:
        return self._fn is not None

    def maybe(self, now: float | None = None) -> bool:
        """Trim when due; True if it ran."""
        now = time.monotonic() if now is None else now
        if self._fn is None or now < self._next:
            return False
        self._next = now + self.every_s
        self._fn(0)
        return True
