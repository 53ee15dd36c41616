"""The hub hands freed heap memory back to the OS (glibc malloc_trim), at most once per interval."""

from __future__ import annotations

from gpufleet.hub.memtrim import Trimmer


def _rss() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def test_trim_returns_freed_heap_pages() -> None:
    t = Trimmer(every_s=60.0)
    assert t.available  # Debian: glibc
    t.maybe(now=0.0)
    blocks = [bytes(2048) + bytes([i % 256]) for i in range(60_000)]  # ~120 MB from malloc
    keeper = bytes(4096)  # allocated above them: the heap's top cannot shrink by itself
    del blocks
    before = _rss()
    assert not t.maybe(now=30.0)  # not yet due: nothing done
    assert t.maybe(now=61.0)
    after = _rss()
    assert before - after > 50 * 1024 * 1024, (before, after)
    assert keeper
