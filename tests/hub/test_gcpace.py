"""The hub's GC passes on a clock (hub/gcpace.py): young ones often, older ones by CPython's rules,
none while an API read runs."""

from __future__ import annotations

import gc
from pathlib import Path

import pytest

from gpufleet.hub import gcpace
from gpufleet.hub.gcpace import GcPace
from gpufleet.hub.service import Hub, HubOptions


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def _pace(busy: list[bool], heap: list[int] | None = None) -> tuple[GcPace, Clock, list[int]]:
    clock, done = Clock(), []
    blocks = heap if heap is not None else [1000]

    def collect(gen: int) -> int:
        done.append(gen)
        return 0

    return GcPace(lambda: busy[0], clock, collect, lambda: blocks[0]), clock, done


def test_young_passes_run_on_the_clock_not_while_a_read_runs() -> None:
    busy = [False]
    pace, clock, done = _pace(busy)
    assert pace.maybe() is None  # not due yet
    clock.t += gcpace.YOUNG_EVERY_S
    assert pace.maybe() == 0 and done == [0]
    assert pace.maybe() is None  # the next one a period later
    clock.t += gcpace.YOUNG_EVERY_S
    busy[0] = True
    assert pace.maybe() is None and done == [0]  # deferred while the read runs
    busy[0] = False
    assert pace.maybe() == 0 and done == [0, 0]  # and run at the first push after it


def test_the_middle_generation_on_its_own_clock_and_the_oldest_when_the_heap_grew(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gc, "get_threshold", lambda: (50_000, 10, 2))
    heap = [1000]
    pace, clock, done = _pace([False], heap)

    def run_until(gen: int) -> int:
        for n in range(1, 10_000):
            clock.t += gcpace.YOUNG_EVERY_S
            if pace.maybe() == gen:
                return n
        raise AssertionError(f"no pass of generation {gen}")

    per_middle = round(gcpace.MIDDLE_EVERY_S / gcpace.YOUNG_EVERY_S)
    assert run_until(1) == per_middle and set(done[:-1]) == {0}
    assert run_until(1) == per_middle
    for _ in range(3):  # threshold[2] middle passes, but the heap has not grown: no full pass
        assert run_until(1) == per_middle
    heap[0] = 1300  # grown by more than a quarter: the next middle pass is a full one
    assert run_until(2) == per_middle
    full = len(done)
    heap[0] = 1600  # a quarter more than after that pass: not yet
    for _ in range(3):
        assert run_until(1) == per_middle
    assert 2 not in done[full:]
    heap[0] = 1700
    assert run_until(2) == per_middle


def test_the_hub_runs_its_pace_after_each_push(tmp_path: Path) -> None:
    hub = Hub(HubOptions(data=tmp_path / "data"))
    try:
        calls: list[bool] = []

        class Pace:
            def maybe(self) -> None:
                calls.append(hub.reads_first.busy())

        hub.gc_pace = Pace()  # type: ignore[assignment]
        with pytest.raises(Exception):
            hub.ingest_push(b"not json", "n1")  # a refused push is still a push done
        assert calls == [False]
    finally:
        hub.close()
