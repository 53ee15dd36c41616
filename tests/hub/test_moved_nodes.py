"""A node silent on this hub but heard by another hub sharing its history is "moved", not down
(hub/elsewhere.py, Fleet.sweep): the sweep's rules, with the history's answer given by hand."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from gpufleet.hub.alerts.rules import NODE_STATUSES, load_rules_text
from gpufleet.hub.elsewhere import NODE_LABEL, SIGN_METRIC, Elsewhere
from gpufleet.hub.fleet import Fleet
from gpufleet.hub.history import HistoryError
from gpufleet.hub.service import Hub, HubOptions
from realparts import free_port
from sample_snapshot import sample_snapshot


def _fleet(*names: str, ts: float = 1000.0) -> Fleet:
    f = Fleet(down_after=120)
    for n in names:
        s = msgspec.structs.replace(sample_snapshot(n), timestamp=ts)
        f.update(s, now=ts)
    return f


def test_silent_node_heard_elsewhere_is_moved_and_back_up_when_it_returns() -> None:
    f = _fleet("a", "b")
    now = 1000.0 + 30  # both silent here past 3 intervals
    changes = f.sweep(now, {"a": 1028.0})  # a: a sample after its last one here, 2 s ago
    assert ("a", "up", "moved") in changes and ("b", "up", "stale") in changes
    assert f.nodes["a"].status == "moved" and f.nodes["a"].since == now
    assert f.counts() == {"up": 0, "stale": 1, "down": 0, "moved": 1}
    assert sorted(f.silent()) == ["a", "b"]
    # still heard elsewhere long after down_after here: still moved, never down
    assert f.sweep(1000.0 + 600, {"a": 1598.0}) == [("b", "stale", "down")]
    # it pushes here again: up
    f.update(msgspec.structs.replace(sample_snapshot("a"), timestamp=1601.0), now=1601.0)
    assert f.nodes["a"].status == "up"
    assert f.sweep(1602.0, {"a": 1598.0}) == []


def test_own_samples_and_old_ones_do_not_count() -> None:
    f = _fleet("a")
    # the history's newest sample is the one this hub wrote itself: the node is just silent
    assert f.sweep(1030.0, {"a": 1000.0}) == [("a", "up", "stale")]
    assert f.sweep(1200.0, {"a": 1000.0}) == [("a", "stale", "down")]
    # heard elsewhere, but longer ago than down_after: silent everywhere, so down
    assert f.sweep(1400.0, {"a": 1250.0}) == []
    assert f.nodes["a"].status == "down"
    # a moved node that falls silent everywhere becomes down
    g = _fleet("a")
    assert g.sweep(1030.0, {"a": 1029.0}) == [("a", "up", "moved")]
    assert g.sweep(1160.0, {"a": 1029.0}) == [("a", "moved", "down")]
    # down from now (not since its silence here), so NodeDown's `for` counts from now
    assert g.nodes["a"].since == 1160.0


def test_no_history_answer_keeps_todays_statuses() -> None:
    f = _fleet("a")
    assert f.sweep(1030.0, {}) == [("a", "up", "stale")]
    assert f.sweep(1200.0, None) == [("a", "stale", "down")]


def test_failed_scrape_stays_down() -> None:
    f = _fleet("a")
    f.mark_failed("a", "connection refused", 1001.0)
    f.sweep(1030.0, {"a": 1029.0})  # a pulled node is never "moved": no other hub pushes it
    assert f.nodes["a"].status != "moved" and f.silent() == []


def test_refresh_asks_once_for_all_and_keeps_the_last_answer_on_errors(caplog: pytest.LogCaptureFixture) -> None:
    asked: list[tuple[str, str, list[str]]] = []
    answers: list[dict[str, float] | Exception] = [{"a": 5.0}, HistoryError("history server down"), {"b": 7.0}]

    def newest(metric: str, label: str, nodes: list[str], timeout: float) -> dict[str, float]:
        asked.append((metric, label, nodes))
        a = answers.pop(0)
        if isinstance(a, Exception):
            raise a
        return a

    e = Elsewhere(newest, every=10)
    assert e.due(0.0) and e.take_turn(0.0) and not e.take_turn(1.0)  # one refresh per turn
    e.refresh(["b", "a", "a"])
    assert asked == [(SIGN_METRIC, NODE_LABEL, ["a", "b"])] and e.heard == {"a": 5.0}
    assert not e.due()  # rate-limited
    e.refresh(["a"])
    assert e.heard == {"a": 5.0} and "history server down" in e.error  # kept: it ages out in the sweep
    assert "cannot ask the shared history" in caplog.text
    e.refresh(["b"])
    assert e.heard == {"b": 7.0} and e.error == ""
    e.refresh([])  # nobody silent: nothing asked, nothing kept
    assert e.heard == {} and len(asked) == 3


def test_moved_is_a_node_status_the_builtin_node_down_rule_leaves_out() -> None:
    assert "moved" in NODE_STATUSES
    rules = load_rules_text("")
    (down,) = [r for r in rules.rules if r.alert == "GpufleetNodeDown"]
    assert "moved" not in down.statuses and "down" in down.statuses


def test_hub_with_an_unreachable_history_keeps_todays_statuses(tmp_path: Path) -> None:
    hub = Hub(HubOptions(data=tmp_path / "data", history=f"prometheus+http://127.0.0.1:{free_port()}"))
    try:
        assert hub.elsewhere is not None
        t = 1000.0
        hub.fleet.update(msgspec.structs.replace(sample_snapshot("a"), timestamp=t), now=t)
        hub.tick(t + 30)
        assert hub.fleet.silent() == ["a"]
        hub.elsewhere.refresh(hub.fleet.silent())  # the TSDB is not there: an error, no answer
        assert "unreachable" in hub.elsewhere.error and hub.elsewhere.heard == {}
        hub.tick(t + 200)
        assert hub.fleet.nodes["a"].status == "down" and hub.values()["nodes_moved"] == 0
    finally:
        hub.close()
