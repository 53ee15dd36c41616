"""The hub's dispatcher on its own: parallel slots, unavailable nodes, cancel, lost results, memory bound."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from gpufleet.command_wire import signed_bytes, unb64
from gpufleet.hub.commands import runs as runs_mod
from gpufleet.hub.commands.audit import AuditLog
from gpufleet.hub.commands.runs import Dispatcher
from gpufleet.hub.commands.signing import HubKey


@pytest.fixture
def d(tmp_path: Path) -> Dispatcher:
    return Dispatcher(HubKey.load_or_create(tmp_path), AuditLog(tmp_path / "hub.db"))


def _poll(d: Dispatcher, node: str, hold: float = 0.0) -> list[dict[str, Any]]:
    return asyncio.run(d.next_for(node, hold))


def _fetching(d: Dispatcher, *nodes: str) -> None:
    for n in nodes:
        _poll(d, n)  # a poll just ended: the node counts as fetching commands


def test_parallel_slots_and_signed_messages(d: Dispatcher) -> None:
    nodes = [f"n{i}" for i in range(5)]
    _fetching(d, *nodes)
    run = d.start("alice", ["echo", "hi"], nodes, 10, 2, {"nodes": "n*"})
    got = {n: _poll(d, n) for n in nodes}
    assert [n for n, m in got.items() if m] == ["n0", "n1"]
    msg = got["n0"][0]
    key = Ed25519PublicKey.from_public_bytes(unb64(d.key.public_b64))
    key.verify(unb64(msg["signature"]), signed_bytes(msg["payload"]))  # raises if not valid
    assert msg["payload"]["node"] == "n0" and msg["payload"]["argv"] == ["echo", "hi"]
    assert d.result("n0", run.id, {"status": "ok", "exit_code": 0})
    assert _poll(d, "n2") and not _poll(d, "n3")
    assert not d.result("n4", run.id, {"status": "ok", "exit_code": 0})  # n4 has nothing outstanding


def test_node_not_fetching_is_unavailable_at_once(d: Dispatcher) -> None:
    _fetching(d, "up")
    run = d.start("alice", ["true"], ["up", "silent"], 10, 32, {})
    assert run.results["silent"]["status"] == "unavailable" and "up" not in run.results


def test_cancel_pending_undelivered_and_running(d: Dispatcher) -> None:
    _fetching(d, "a", "b", "c")
    run = d.start("alice", ["sleep", "9"], ["a", "b", "c"], 10, 2, {})
    assert _poll(d, "a")  # delivered to a; b's message waits in its mailbox; c waits for a slot
    d.cancel(run, "bob")
    assert run.results["c"]["status"] == "cancelled" and "bob" in run.results["c"]["reason"]
    assert run.results["b"]["reason"] == "cancelled by bob before delivery" and not _poll(d, "b")
    cancel = _poll(d, "a")
    assert cancel[0]["payload"]["kind"] == "cancel" and cancel[0]["payload"]["id"] == run.id
    assert d.result("a", run.id, {"status": "cancelled"}) and run.done


def test_lost_when_no_result_comes_back(d: Dispatcher) -> None:
    _fetching(d, "a")
    run = d.start("alice", ["true"], ["a"], 10, 1, {})
    run.active["a"] = time.monotonic() - 1  # its deadline has passed
    d.sweep()
    assert run.results["a"]["status"] == "lost" and run.done


def test_finished_runs_holding_too_much_output_are_dropped_oldest_first(d: Dispatcher,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runs_mod, "MAX_HELD_OUTPUT", 1500)
    _fetching(d, "a")
    ids = []
    for _ in range(3):
        run = d.start("alice", ["yes"], ["a"], 10, 1, {})
        d.result("a", run.id, {"status": "ok", "exit_code": 0, "stdout": "y\n" * 500})  # 1,000 characters
        ids.append(run.id)
    d.sweep()
    assert list(d.runs) == ids[2:] and d.held_output == 1000


def test_a_message_never_fetched_makes_the_node_unavailable_at_expiry(d: Dispatcher) -> None:
    _fetching(d, "a")
    run = d.start("alice", ["true"], ["a"], 30, 1, {})
    d._mail["a"][0]["payload"]["expires_at"] = time.time() - 1  # as if 60 s had passed unfetched
    d.sweep()
    assert run.results["a"]["status"] == "unavailable" and "did not fetch" in run.results["a"]["reason"]
    assert not _poll(d, "a")


def test_a_held_poll_whose_agent_left_stops_counting_as_fetching(d: Dispatcher) -> None:
    async def gone() -> None:
        await asyncio.sleep(0.05)  # the client disconnects while its poll is held

    started = time.monotonic()
    assert asyncio.run(d.next_for("a", 20, gone)) == []
    assert time.monotonic() - started < 5
    assert not d.fetching("a")


def test_a_held_poll_gets_a_message_at_once_and_leaves_no_task_behind(d: Dispatcher) -> None:
    async def still_there() -> None:
        await asyncio.Event().wait()  # never disconnects

    async def main() -> tuple[list[dict[str, object]], float, int]:
        poll = asyncio.ensure_future(d.next_for("a", 20, still_there))
        await asyncio.sleep(0.05)
        started = time.monotonic()
        d.start("alice", ["true"], ["a"], 30, 1, {})
        got = await poll
        took = time.monotonic() - started
        await asyncio.sleep(0)  # the cancelled waits finish
        return got, took, len(asyncio.all_tasks()) - 1

    got, took, left = asyncio.run(main())
    assert [m["payload"]["argv"] for m in got] == [["true"]] and took < 5
    assert left == 0 and d.fetching("a")
