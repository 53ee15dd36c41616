"""The live-update broker does no work while no page listens, and loses nothing by it: a page
that opens afterwards gets the whole current state, one reconnecting after the quiet spell
gets the deltas that bring it to the same state, and a page already open keeps getting
every change (issue 14: re-summarising 1,000 nodes for nobody was ~2 % of the hub's CPU)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gpufleet.hub.service import Hub, HubOptions
from gpufleet.hub.ui.events import Broker, Subscriber
from sample_snapshot import sample_snapshot


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[Hub]:
    h = Hub(HubOptions(data=tmp_path / "data"))
    yield h
    h.close()


def _push(hub: Hub, node: str, t: float, used: float) -> None:
    s = sample_snapshot(node)
    s.timestamp = t
    s.values["memory_used_bytes"] = used
    hub.ingest([s], now=t)


def _data(msg: bytes) -> dict[str, Any]:
    line = next(x for x in msg.split(b"\n") if x.startswith(b"data: "))
    return json.loads(line[len(b"data: "):])  # type: ignore[no-any-return]


def _apply(state: dict[str, dict[str, Any]], body: dict[str, Any]) -> None:
    """What the overview page does with a fleet event."""
    if "full" in body:
        state.clear()
        state.update(json.loads(json.dumps(body["full"])))
        return
    for node, d in body["d"].items():
        s = state.setdefault(node, {})
        for k, v in d.items():
            if v is None:
                s.pop(k, None)
            else:
                s[k] = v
    for node in body.get("x", ()):
        state.pop(node, None)


def _shown(state: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """A delta's null is "gone" or "unknown" alike: the page shows both the same."""
    return {n: {k: v for k, v in s.items() if v is not None} for n, s in state.items()}


def _reference(hub: Hub) -> dict[str, Any]:
    """The state a broker that ticked all along would hold (a fresh one summarises everything)."""
    ref = Broker(hub)
    ref.tick()
    return _shown(json.loads(json.dumps(ref.state)))


def test_no_page_no_work_and_a_new_page_gets_the_whole_state(hub: Hub) -> None:
    b = Broker(hub)
    _push(hub, "a", 1000.0, 10e9)
    _push(hub, "b", 1000.0, 20e9)
    for _ in range(3):
        b.publish()
    assert b.seq == 0 and b.state == {}, "the broker summarised nodes with no page open"

    sub = b.subscribe(Subscriber())
    first = b.initial(None)
    assert len(first) == 1
    state: dict[str, Any] = {}
    _apply(state, _data(first[0]))
    assert _shown(state) == _reference(hub)
    assert state["a"]["m"] == round(10e9 / 64e9 * 100) and state["b"]["m"] == round(20e9 / 64e9 * 100)

    # while the page is open every change reaches it
    _push(hub, "a", 1005.0, 40e9)
    b.publish()
    while not sub.queue.empty():
        _apply(state, _data(sub.queue.get_nowait()))
    assert state["a"]["m"] == round(40e9 / 64e9 * 100)
    assert _shown(state) == _reference(hub)


def test_a_page_reconnecting_after_a_quiet_spell_catches_up(hub: Hub) -> None:
    b = Broker(hub)
    _push(hub, "a", 1000.0, 10e9)
    _push(hub, "b", 1000.0, 20e9)
    sub = b.subscribe(Subscriber())
    state: dict[str, Any] = {}
    for m in b.initial(None):
        _apply(state, _data(m))
    last_id = f"{b.epoch}.{b.seq}"
    b.unsubscribe(sub)  # the page goes away (a laptop closed); the hub goes on

    _push(hub, "a", 1005.0, 30e9)
    b.publish()
    _push(hub, "b", 1010.0, 50e9)
    hub.fleet.forget("b")
    _push(hub, "c", 1010.0, 5e9)
    b.publish()

    b.subscribe(Subscriber())
    missed = b.initial(last_id)
    assert missed and all(b'"full"' not in m for m in missed), "expected only the missed deltas"
    for m in missed:
        _apply(state, _data(m))
    assert set(state) == {"a", "c"}
    assert _shown(state) == _reference(hub)
