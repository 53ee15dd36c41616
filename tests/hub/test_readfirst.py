"""History reads go before pushes not yet begun (hub/readfirst.py), but never hold them for long."""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from gpufleet.hub import readfirst
from gpufleet.hub.readfirst import ReadFirst
from gpufleet.hub.service import Hub, HubOptions


def _push_in_thread(gate: ReadFirst) -> tuple[threading.Thread, threading.Event]:
    done = threading.Event()

    def push() -> None:
        gate.wait()
        done.set()

    t = threading.Thread(target=push)
    t.start()
    return t, done


def test_a_push_waits_for_the_running_read_and_goes_when_it_ends() -> None:
    gate = ReadFirst()
    with gate.reading():
        t, done = _push_in_thread(gate)
        assert not done.wait(0.1)  # held while the read runs
    assert done.wait(5)  # let go as soon as it ends
    t.join()


def test_without_reads_a_push_does_not_wait() -> None:
    gate = ReadFirst()
    t0 = time.perf_counter()
    gate.wait()
    assert time.perf_counter() - t0 < 0.05


def test_reads_in_a_row_hold_a_push_at_most_max_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(readfirst, "MAX_WAIT_S", 0.2)
    gate = ReadFirst()
    with gate.reading():
        t0 = time.monotonic()
        t, done = _push_in_thread(gate)
        assert done.wait(5)  # the read is still running: the push went after its bounded wait
        assert time.monotonic() - t0 >= 0.19
    t.join()


def test_nested_reads_release_the_gate_only_when_the_last_ends() -> None:
    gate = ReadFirst()
    with gate.reading():
        with gate.reading():
            pass
        t, done = _push_in_thread(gate)
        assert not done.wait(0.1)
    assert done.wait(5)
    t.join()


def test_hub_background_reads_neither_hold_pushes_nor_go_before_api_reads(tmp_path: Path) -> None:
    """Usage settling reads the store for half a second at a time: that held every push 0.25 s and
    week queries ~300 ms every 30 s while it counted as a reader that goes first."""
    hub = Hub(HubOptions(data=tmp_path / "data"))
    try:
        store = hub.store
        assert store is not None
        seen: list[bool] = []
        real = store.query_range

        def query_range(*args: Any, **kwargs: Any) -> Any:
            seen.append(hub.reads_first._reads > 0)  # would a push starting now wait?
            return real(*args, **kwargs)

        store.query_range = query_range  # type: ignore[method-assign]
        q = ("gpufleet_gpu_utilization_ratio", [], 0.0, 10.0, 1.0, "avg")
        hub.query_range(*q)
        hub.query_range(*q, background=True)
        assert seen == [True, False]

        done = threading.Event()
        t = threading.Thread(target=lambda: (hub.query_range(*q, background=True), done.set()))
        with hub.reads_first.reading():  # an API read running: the background one waits for it
            t.start()
            assert not done.wait(0.1)
        assert done.wait(5)
        t.join()
    finally:
        hub.close()


def _api_read_sees(hub: Hub) -> list[int]:
    """How many reads hold the gate while the API's query_range runs on its worker thread."""
    from access import authed_client

    seen: list[int] = []

    def query_range(*args: Any, **kwargs: Any) -> list[Any]:
        seen.append(hub.reads_first._reads)
        return []

    hub.query_range = query_range  # type: ignore[method-assign]
    with authed_client(hub, role="viewer", background=False) as c:
        r = c.get("/api/v1/query_range", params={"metric": "gpufleet_gpu_utilization_ratio"})
        assert r.status_code == 200, r.text
        assert r.json()["series"] == []
        assert c.get("/api/v1/query_range", params={"metric": "nope"}).status_code == 400
    return seen


def test_an_api_read_holds_the_gate_from_the_route_to_its_answer(tmp_path: Path) -> None:
    """Pushes, alert evaluation and snapshot saves wait from the route's start, not only while the
    store is read: the hop to the worker thread and back queued behind them for the GIL."""
    hub = Hub(HubOptions(data=tmp_path / "data"))
    try:
        assert _api_read_sees(hub) == [1]  # held by the route before the store read takes it too
        assert hub.reads_first._reads == 0  # and let go after the answer (and after a refusal)
    finally:
        hub.close()


def test_an_api_read_from_a_remote_history_holds_no_push(tmp_path: Path) -> None:
    """--history: the read waits on the network; pushes must not wait for it."""
    hub = Hub(HubOptions(data=tmp_path / "data"))
    try:
        store, hub.store = hub.store, None
        try:
            assert _api_read_sees(hub) == [0]
        finally:
            hub.store = store
    finally:
        hub.close()


def test_while_reads_run_a_thread_waiting_for_the_gil_asks_for_it_sooner() -> None:
    """The switch interval is short while any hub in the process reads, and back after the last."""
    normal = sys.getswitchinterval()
    a, b = ReadFirst(), ReadFirst()
    with a.reading():
        assert sys.getswitchinterval() == readfirst.READ_SWITCH_S
        with b.reading():  # another hub's read overlapping (the interval is the process's)
            pass
        assert sys.getswitchinterval() == readfirst.READ_SWITCH_S
        with b.reading():
            with a.reading():
                pass
    assert sys.getswitchinterval() == normal
    with a.reading(first=False):  # background reads leave it alone
        assert sys.getswitchinterval() == normal


def test_a_history_read_gets_the_short_interval_from_the_moment_the_app_sees_it(tmp_path: Path) -> None:
    """Before its route holds the gate, a week query's hops (middleware, the API-key check) each
    waited up to a 5 ms interval behind the ingest thread; other requests leave the interval alone."""
    from access import authed_client

    hub = Hub(HubOptions(data=tmp_path / "data"))
    normal = sys.getswitchinterval()
    try:
        with authed_client(hub, role="viewer", background=False) as c:
            auth = c.app.state.auth
            seen: list[float] = []
            identify = auth.identify

            def spy(request: Any) -> Any:
                seen.append(sys.getswitchinterval())  # the credential check, before the route
                return identify(request)

            auth.identify = spy
            assert c.get("/api/v1/query_range", params={"metric": "gpufleet_gpu_utilization_ratio"}).status_code == 200
            assert c.get("/api/v1/metrics").status_code == 200
            assert c.get("/api/v1/query_range", params={"metric": "gpufleet_gpu_utilization_ratio"},
                          headers={"Authorization": "Bearer nope"}).status_code == 401
        assert seen == [readfirst.READ_SWITCH_S, normal, readfirst.READ_SWITCH_S]
        assert sys.getswitchinterval() == normal  # back after each, a refused one too
    finally:
        hub.close()


def test_one_nodes_history_is_read_on_the_event_loop_unless_the_store_is_busy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A read pinned to one node skips the hop to a worker thread and back (each hop waited for
    the GIL behind the ingest thread); one that may span the fleet, or finds the store held by a
    push or its upkeep, goes to a worker thread as before, and answers the same."""
    import asyncio

    from access import authed_client
    from sample_snapshot import sample_snapshot

    hub = Hub(HubOptions(data=tmp_path / "data"))
    try:
        now = time.time()
        for k in range(3):
            snap = sample_snapshot("n1")
            snap.timestamp = now - 20 + 5 * k
            hub.ingest([snap], now=snap.timestamp)
        assert hub.store is not None
        real = hub.store.query_range
        on_loop: list[bool] = []

        def spy(*args: Any, **kwargs: Any) -> Any:
            try:
                asyncio.get_running_loop()
                on_loop.append(True)
            except RuntimeError:
                on_loop.append(False)
            return real(*args, **kwargs)

        hub.store.query_range = spy  # type: ignore[method-assign]
        metric = "gpufleet_gpu_utilization_ratio"
        window = {"start": now - 60, "end": now + 1, "step": 5}

        def ask(client: Any, match: list[str]) -> list[Any]:
            r = client.get("/api/v1/query_range", params={"metric": metric, "match": match, **window})
            assert r.status_code == 200, r.text
            return list(r.json()["series"])

        with authed_client(hub, role="viewer", background=False) as c:
            one = ask(c, ['node="n1"', 'gpu="0"'])
            fleet = ask(c, ['gpu="0"'])
            assert on_loop == [True, False]
            assert one and one == fleet and len(one[0]["values"]) == 3
            # The store held elsewhere (a push storing): not waited for on the loop.
            held = threading.Event()
            release = threading.Event()

            def hold() -> None:
                with hub._store_lock:
                    held.set()
                    release.wait(5)

            t = threading.Thread(target=hold)
            t.start()
            held.wait(5)
            threading.Timer(0.3, release.set).start()
            assert ask(c, ['node="n1"', 'gpu="0"']) == one
            t.join(5)
            assert on_loop == [True, False, False]
            # Many series of one node (its CPU cores, say): a worker thread too.
            from gpufleet.hub import service
            monkeypatch.setattr(service, "INLINE_READ_SERIES", 0)
            assert ask(c, ['node="n1"', 'gpu="0"']) == one
            assert on_loop == [True, False, False, False]
            assert hub.reads_first._reads == 0
    finally:
        hub.close()
