"""The ingest thread waits while the hub's event loop is awake (hub/loopfirst.py), never for long."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from gpufleet.hub import loopfirst
from gpufleet.hub.ingestworker import IngestWorker
from gpufleet.hub.service import Hub, HubOptions


def _on_loop_while_awake(loop: asyncio.AbstractEventLoop, step: Callable[[], None],
                         busy_s: float) -> tuple[float, float]:
    """Run `step` on a thread started from a loop callback that then stays busy `busy_s`;
    returns (when the callback ended, when `step` returned)."""
    out: dict[str, float] = {}

    def in_thread() -> None:
        step()
        out["returned"] = time.monotonic()

    def callback() -> None:
        t = threading.Thread(target=in_thread)
        t.start()
        time.sleep(busy_s)  # the loop is awake all along: inside a callback
        out["callback_end"] = time.monotonic()
        out["thread"] = t  # type: ignore[assignment]

    loop.call_soon(callback)
    loop.run_until_complete(asyncio.sleep(busy_s + 0.3))
    out["thread"].join(5)  # type: ignore[attr-defined]
    return out["callback_end"], out["returned"]


def _refused(push: Callable[..., Any], *args: Any) -> None:
    with pytest.raises(Exception):  # noqa: B017, PT011 (only when it ran matters here)
        push(*args)


@pytest.fixture
def loop() -> Any:
    lp = loopfirst.new_event_loop()
    yield lp
    lp.close()
    assert not loopfirst.awake()


def test_without_a_gated_loop_the_wait_returns_at_once() -> None:
    plain = asyncio.new_event_loop()
    try:
        plain.run_until_complete(asyncio.sleep(0))
        t0 = time.perf_counter()
        loopfirst.wait()
        assert time.perf_counter() - t0 < 0.01
    finally:
        plain.close()


def test_a_step_waits_while_the_loop_runs_a_callback(loop: asyncio.AbstractEventLoop) -> None:
    end, returned = _on_loop_while_awake(loop, loopfirst.wait, busy_s=0.03)
    assert returned >= end  # let go only once the loop went back to waiting for events
    assert returned - end < 0.03


def test_a_loop_awake_for_long_holds_a_step_at_most_max_wait(loop: asyncio.AbstractEventLoop,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(loopfirst, "MAX_WAIT_S", 0.05)
    waits: list[float] = []

    def steps() -> None:
        for _ in range(3):
            t0 = time.monotonic()
            loopfirst.wait()
            waits.append(time.monotonic() - t0)

    end, returned = _on_loop_while_awake(loop, steps, busy_s=0.4)
    assert returned < end  # the loop was still busy: the steps went after one bounded wait
    assert waits[0] >= 0.045
    assert max(waits[1:]) < 0.02  # and did not wait again before the loop had slept
    # The loop has slept since: the next step waits for it again.
    end, returned = _on_loop_while_awake(loop, loopfirst.wait, busy_s=0.03)
    assert returned >= end


def test_the_loop_itself_never_waits_for_itself(loop: asyncio.AbstractEventLoop) -> None:
    took: list[float] = []

    def callback() -> None:
        assert loopfirst.awake()
        t0 = time.perf_counter()
        loopfirst.wait()
        took.append(time.perf_counter() - t0)

    loop.run_until_complete(asyncio.sleep(0.01))  # it has slept once: its thread is known
    loop.call_soon(callback)
    loop.run_until_complete(asyncio.sleep(0.01))
    assert took and took[0] < 0.01


def test_a_loop_woken_from_a_thread_runs_before_that_threads_next_step(loop: asyncio.AbstractEventLoop) -> None:
    ran: list[str] = []

    def hand_over_then_step() -> None:
        loop.call_soon_threadsafe(ran.append, "loop")
        loopfirst.woke(loop)
        assert loopfirst.awake()
        loopfirst.wait()
        ran.append("thread")

    async def main() -> None:
        await asyncio.sleep(0.05)  # asleep in its selector when the thread hands it work
        t = threading.Thread(target=hand_over_then_step)
        t.start()
        while t.is_alive():
            await asyncio.sleep(0.01)

    loop.run_until_complete(main())
    assert ran == ["loop", "thread"]


def test_the_ingest_worker_counts_the_loop_awake_when_it_hands_back_a_result(loop: asyncio.AbstractEventLoop) -> None:
    worker = IngestWorker("test-loopfirst")
    first: list[asyncio.Future[Any]] = []
    seen: list[bool] = []

    def second_job() -> None:
        loopfirst.wait()  # what the hub's pushes do first
        seen.append(first[0].done())  # the loop has handed the first job's result over by now

    async def main() -> None:
        fut = asyncio.ensure_future(worker.run(lambda: sum(range(10_000))))
        first.append(fut)
        await asyncio.sleep(0)  # the first job is queued before the second
        await worker.run(second_job)

    try:
        for _ in range(5):
            first.clear()
            loop.run_until_complete(main())
    finally:
        worker.stop(5)
    assert seen == [True] * 5


def test_the_hub_waits_for_the_loop_between_pushes_and_in_long_jobs(tmp_path: Path,
                                                                   loop: asyncio.AbstractEventLoop) -> None:
    hub = Hub(HubOptions(data=tmp_path / "hub"))
    try:
        end, returned = _on_loop_while_awake(loop, hub.yield_point, busy_s=0.03)
        assert returned >= end
        end, returned = _on_loop_while_awake(loop, lambda: _refused(hub.ingest_push, b"{", "n1"), busy_s=0.03)
        assert returned >= end
    finally:
        hub.close()


def test_the_served_hub_runs_on_a_gated_loop() -> None:
    from gpufleet.hub.run import _notifying_server
    import uvicorn

    seen: list[type] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        seen.append(type(asyncio.get_running_loop()))
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = _notifying_server()(uvicorn.Config(app, lifespan="off", log_level="warning"))
    t = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    t.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.01)
        with socket.create_connection(sock.getsockname(), timeout=5) as c:
            c.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            assert c.recv(100).startswith(b"HTTP/1.1 204")
    finally:
        server.should_exit = True
        t.join(10)
        sock.close()
    assert seen == [loopfirst.GatedLoop]
