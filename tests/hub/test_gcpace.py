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


def _pace(busy: list[bool], heap: list[int] | None = None) -> tuple[GcPace, Clock, list[object]]:
    clock, done = Clock(), []
    blocks = heap if heap is not None else [1000]

    def collect(gen: int) -> int:
        done.append(gen)
        return 0

    return GcPace(lambda: busy[0], clock, collect, lambda: done.append("freeze"),
                  lambda: done.append("unfreeze"), lambda: blocks[0]), clock, done


def test_young_passes_run_on_the_clock_not_while_a_read_runs_and_freeze_what_survives() -> None:
    busy = [False]
    pace, clock, done = _pace(busy)
    assert pace.maybe() is None  # not due yet
    clock.t += gcpace.YOUNG_EVERY_S
    assert pace.maybe() == 0 and done == [0, "freeze"]
    assert pace.maybe() is None  # the next one a period later
    clock.t += gcpace.YOUNG_EVERY_S
    busy[0] = True
    assert pace.maybe() is None and len(done) == 2  # deferred while the read runs
    busy[0] = False
    assert pace.maybe() == 0 and done == [0, "freeze", 0, "freeze"]  # run at the first push after it


def test_a_full_pass_unfreezes_collects_and_freezes_again_once_the_heap_grew(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gc, "get_threshold", lambda: (50_000, 10, 2))
    monkeypatch.setattr(gcpace, "YOUNG_EVERY_S", 0.25)  # a step the clock adds up without rounding
    heap = [1000]
    pace, clock, done = _pace([False], heap)

    def passes(seconds: float) -> list[int | None]:
        out = []
        for _ in range(round(seconds / gcpace.YOUNG_EVERY_S)):
            clock.t += gcpace.YOUNG_EVERY_S
            out.append(pace.maybe())
        return out

    heap[0] = 2000
    assert 2 not in passes(gcpace.OLD_CHECK_S)  # grown, but fewer than threshold[2] checks so far
    del done[:]
    assert passes(gcpace.OLD_CHECK_S)[-1] == 2
    assert done[-3:] == ["unfreeze", 2, "freeze"]
    heap[0] = 2400  # less than a quarter more than after that pass
    assert 2 not in passes(5 * gcpace.OLD_CHECK_S)
    heap[0] = 2600
    assert passes(gcpace.OLD_CHECK_S)[-1] == 2


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


def test_an_alert_evaluation_lets_reads_and_due_gc_passes_go_between_nodes(tmp_path: Path) -> None:
    """A whole evaluation made ~26,000 objects at 1,000 nodes, and the pass after it took 20-30 ms
    holding the GIL: passes now run inside it, each over what the last few nodes made."""
    import time

    from gpufleet.hub.extensions import load_extensions
    from sample_snapshot import sample_snapshot

    hub = Hub(HubOptions(data=tmp_path / "data"))
    try:
        alerts = next(e for e in load_extensions(hub) if type(e).__name__ == "AlertsExtension")
        now = time.time()
        for i in range(5):
            snap = sample_snapshot(f"n{i}")
            snap.timestamp = now
            hub.ingest([snap], now=now)
        calls: list[int] = []

        class Pace:
            def maybe(self) -> None:
                calls.append(hub.reads_first.busy())

        hub.gc_pace = Pace()  # type: ignore[assignment]
        alerts.evaluate(now)
        assert len(calls) >= 5  # at least one turn a node (and one a rule)
        hub.gc_pace = None
        calls.clear()
        alerts.evaluate(now + 5)  # no pace (an in-process hub): the evaluation runs the same
        assert calls == []
    finally:
        hub.close()
