"""What the engine keeps between evaluations (a node's columns while its snapshot stays, its
series' identities while its labels and records stay, counter columns with no new value, the
annotations that do not print the value) changes nothing it answers (issue 14)."""

from __future__ import annotations

from pathlib import Path

import pytest

from gpufleet.hub.alerts.engine import FIRING, PENDING, RESOLVED, Alert, Engine, NodeInput
from gpufleet.hub.alerts.rules import Rule, load_rules
from gpufleet.snapshot import Gpu, NodeSnapshot

RULES = """\
rules:
  - alert: TestHot
    expr: gpufleet_gpu_temperature_celsius > 90
    labels: {team: ml}
    annotations:
      summary: "GPU {{ $labels.gpu }} on {{ $labels.node }} is at {{ $value }} C"
      runbook: "see the {{ $labels.node }} page"
  - alert: TestXid
    expr: increase(gpufleet_gpu_xid_errors_total[1m]) > 0
"""


def _rules(tmp_path: Path, text: str = RULES) -> list[Rule]:
    f = tmp_path / "alerts.yaml"
    f.write_text(text)
    rs = load_rules(f)
    assert not rs.errors, rs.errors
    return [r for r in rs.rules if r.alert.startswith("Test")]


def _snap(node: str, t: float, temps: list[float], xid: float | None = 0.0,
          labels: dict[str, str] | None = None) -> NodeSnapshot:
    gpus = []
    for i, temp in enumerate(temps):
        values = {"temperature_celsius": temp}
        if xid is not None:
            values["xid_errors_total"] = xid
        gpus.append(Gpu(index=i, uuid=f"GPU-{node}-{i}", model="H100", vendor="nvidia", values=values))
    return NodeSnapshot(node=node, timestamp=t, labels=labels or {"rack": "r1"}, gpus=gpus)


def _inputs(*snaps: NodeSnapshot) -> list[NodeInput]:
    return [NodeInput(s.node, dict(s.labels), s) for s in snaps]


def _active(eng: Engine, alertname: str) -> dict[tuple[str, str], Alert]:
    return {(a.labels["node"], a.labels["gpu"]): a for a in eng.alerts.values()
            if a.alertname == alertname and a.state in (PENDING, FIRING)}


def test_an_unchanged_node_keeps_its_alert_and_a_changed_one_is_evaluated_again(tmp_path: Path) -> None:
    eng = Engine(_rules(tmp_path))
    a1, b1 = _snap("a", 1000.0, [95.0, 50.0]), _snap("b", 1000.0, [95.0, 50.0])
    changed = eng.evaluate(_inputs(a1, b1), now=1001.0)
    hot = _active(eng, "TestHot")
    assert set(hot) == {("a", "0"), ("b", "0")} and all(x.state == FIRING for x in hot.values())
    assert {x.fingerprint for x in changed} == {x.fingerprint for x in hot.values()}

    # a pushed nothing since (the same snapshot object: its cached columns), b cooled down
    changed = eng.evaluate(_inputs(a1, _snap("b", 1005.0, [50.0, 50.0])), now=1006.0)
    assert [(x.labels["node"], x.state) for x in changed] == [("b", RESOLVED)]
    assert set(_active(eng, "TestHot")) == {("a", "0")}
    assert _active(eng, "TestHot")[("a", "0")] is hot[("a", "0")] and hot[("a", "0")].last_eval == 1006.0

    # now a cools and b's other GPU heats up: both are read again
    changed = eng.evaluate(_inputs(_snap("a", 1010.0, [50.0, 50.0]), _snap("b", 1010.0, [50.0, 97.0])), now=1011.0)
    assert sorted((x.labels["node"], x.labels["gpu"], x.state) for x in changed) == [
        ("a", "0", RESOLVED), ("b", "1", FIRING)]
    assert _active(eng, "TestHot")[("b", "1")].value == 97.0


def test_a_node_whose_labels_or_gpus_change_gets_alerts_under_its_new_identity(tmp_path: Path) -> None:
    eng = Engine(_rules(tmp_path))
    eng.evaluate(_inputs(_snap("a", 1000.0, [95.0, 95.0, 95.0])), now=1001.0)
    before = _active(eng, "TestHot")
    assert {x.labels["rack"] for x in before.values()} == {"r1"}
    # the same records with new values: the same alerts, nothing changed
    assert eng.evaluate(_inputs(_snap("a", 1005.0, [96.0, 96.0, 96.0])), now=1006.0) == []
    # a GPU gone: its alert resolves, the others stay as they are
    changed = eng.evaluate(_inputs(_snap("a", 1010.0, [96.0, 96.0])), now=1011.0)
    assert [(x.labels["gpu"], x.state) for x in changed] == [("2", RESOLVED)]
    # moved to another rack: new alerts with the new label, the old ones resolve
    changed = eng.evaluate(_inputs(_snap("a", 1015.0, [96.0, 96.0], labels={"rack": "r2"})), now=1016.0)
    assert sorted((x.labels["rack"], x.state) for x in changed) == [
        ("r1", RESOLVED), ("r1", RESOLVED), ("r2", FIRING), ("r2", FIRING)]
    assert {x.labels["rack"] for x in _active(eng, "TestHot").values()} == {"r2"}


def test_counter_increases_hold_for_their_window_with_no_new_value(tmp_path: Path) -> None:
    """increase(x[1m]) > 0 holds while the sample before an increase is inside the window,
    however many snapshots repeat the counter's value since (and a reset counts from zero)."""
    eng = Engine(_rules(tmp_path))
    xid = {t: 0.0 for t in range(1000, 1030, 5)} | {t: 1.0 for t in range(1030, 1200, 5)}
    xid |= {t: 1.0 for t in range(1200, 1230, 5)} | {t: 3.0 for t in range(1230, 1400, 5)}
    xid[1300] = 1.0  # a reset (driver reload) to 1: an increase of 1
    states = {}
    for t in sorted(xid):
        eng.evaluate(_inputs(_snap("a", float(t), [50.0], xid=xid[t])), now=float(t))
        got = _active(eng, "TestXid")
        states[t] = got[("a", "0")].value if got else None
    # the first increase: from the sample at 1025 to the one at 1030, seen until 1025 + 60
    assert all(states[t] is None for t in range(1000, 1030, 5))
    assert all(states[t] == 1.0 for t in range(1030, 1090, 5)), states
    assert all(states[t] is None for t in range(1090, 1230, 5)), states
    # +2 at 1230; the reset at 1300 counts 1 and the rise back to 3 at 1305 counts 2
    assert all(states[t] == 2.0 for t in range(1230, 1290, 5)), states
    assert all(states[t] is None for t in range(1290, 1300, 5)), states
    assert states[1300] == 1.0 and states[1305] == 3.0 and states[1360] == 2.0 and states[1365] is None


def test_a_missing_counter_value_ends_the_series_and_its_return_picks_up(tmp_path: Path) -> None:
    eng = Engine(_rules(tmp_path))
    eng.evaluate(_inputs(_snap("a", 1000.0, [50.0], xid=0.0)), now=1000.0)
    eng.evaluate(_inputs(_snap("a", 1005.0, [50.0], xid=2.0)), now=1005.0)
    assert _active(eng, "TestXid")[("a", "0")].value == 2.0
    eng.evaluate(_inputs(_snap("a", 1010.0, [50.0], xid=None)), now=1010.0)
    assert _active(eng, "TestXid") == {}
    eng.evaluate(_inputs(_snap("a", 1015.0, [50.0], xid=2.0)), now=1015.0)
    assert _active(eng, "TestXid")[("a", "0")].value == 2.0  # the increase before the gap still counts


def test_counter_series_that_can_no_longer_count_are_forgotten(tmp_path: Path) -> None:
    """Nodes and records come and go (containers, users, a GPU taken out): the counters'
    trackers must not keep every series ever seen for as long as the hub runs."""
    eng = Engine(_rules(tmp_path))
    t = 1000.0
    eng.evaluate(_inputs(_snap("a", t, [50.0, 50.0]), _snap("b", t, [50.0, 50.0])), now=t)
    assert eng.columns.counter_series == 4
    # b is gone, a's GPU 1 too; a's GPU 0 counts on, a snapshot every 5 s
    while t < 1000.0 + eng.lookback + 60.0 + 2 * eng.columns.SWEEP_S:  # past the lookback and the 1m window
        t += 5.0
        eng.evaluate(_inputs(_snap("a", t, [50.0])), now=t)
    assert eng.columns.counter_series == 1
    t += 5.0
    eng.evaluate(_inputs(_snap("a", t, [50.0], xid=1.0)), now=t)
    assert _active(eng, "TestXid")[("a", "0")].value == 1.0  # the series that stayed counts on
    # a GPU back after a long gap starts from its value then (its old samples are out of every window)
    t += 5.0
    eng.evaluate(_inputs(_snap("a", t, [50.0, 50.0], xid=7.0)), now=t)
    assert set(_active(eng, "TestXid")) == {("a", "0")} and eng.columns.counter_series == 2
    # no rule counts any more: nothing is tracked
    eng.set_rules(_rules(tmp_path, RULES.split("  - alert: TestXid")[0]))
    t += eng.columns.SWEEP_S
    eng.evaluate(_inputs(_snap("a", t, [50.0, 50.0], xid=8.0)), now=t)
    assert eng.columns.counter_series == 0


def test_annotations_follow_the_value_and_a_reloaded_rule(tmp_path: Path) -> None:
    eng = Engine(_rules(tmp_path))
    eng.evaluate(_inputs(_snap("a", 1000.0, [92.0])), now=1000.0)
    a = _active(eng, "TestHot")[("a", "0")]
    assert a.annotations == {"summary": "GPU 0 on a is at 92 C", "runbook": "see the a page"}
    eng.evaluate(_inputs(_snap("a", 1005.0, [93.5])), now=1005.0)
    assert a.annotations == {"summary": "GPU 0 on a is at 93.5 C", "runbook": "see the a page"}
    assert list(a.annotations) == ["summary", "runbook"]

    # the same rule reloaded with other annotations and labels: both apply at once
    eng.set_rules(_rules(tmp_path, RULES.replace("see the", "open the").replace("team: ml", "team: infra")))
    changed = eng.evaluate(_inputs(_snap("a", 1010.0, [94.0])), now=1010.0)
    assert sorted((x.labels["team"], x.state) for x in changed) == [("infra", FIRING), ("ml", RESOLVED)]
    b = _active(eng, "TestHot")[("a", "0")]
    assert b.labels["team"] == "infra"
    assert b.annotations == {"summary": "GPU 0 on a is at 94 C", "runbook": "open the a page"}


def test_the_columns_cache_does_not_keep_a_replaced_snapshot_alive(tmp_path: Path) -> None:
    """The cache knows a snapshot by its values dict, not by holding it: with each node's previous
    snapshot kept until the next evaluation, the hub held two of every node (~85 MiB at 1,000)."""
    import sys

    eng = Engine(_rules(tmp_path))
    old = _snap("a", 1000.0, [95.0, 50.0])
    refs = sys.getrefcount(old)
    eng.evaluate(_inputs(old), now=1001.0)
    assert sys.getrefcount(old) == refs  # nothing of the engine's holds it
    assert eng.columns.cached == 1
    # The same snapshot again is read from the cache; a new one with the same time is read anew.
    eng.evaluate(_inputs(old), now=1002.0)
    assert set(_active(eng, "TestHot")) == {("a", "0")}
    new = _snap("a", 1000.0, [50.0, 95.0])
    eng.evaluate(_inputs(new), now=1003.0)
    assert set(_active(eng, "TestHot")) == {("a", "1")}


def test_the_texts_that_print_the_value_are_rendered_when_read_not_at_each_evaluation(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Thousands of pending alerts whose value moves at every push (GPUs allocated but idle) had
    their texts rendered at every evaluation, a quarter of its time; now when somebody reads them."""
    from gpufleet.hub.alerts import templating

    eng = Engine(_rules(tmp_path))
    eng.evaluate(_inputs(_snap("a", 1000.0, [92.0])), now=1000.0)
    a = _active(eng, "TestHot")[("a", "0")]
    renders: list[str] = []
    real = templating.Template.render

    def counting(self: templating.Template, labels: dict[str, str], value: float) -> str:
        renders.append(self.text)
        return real(self, labels, value)

    monkeypatch.setattr(templating.Template, "render", counting)
    for i, temp in enumerate((93.0, 94.0, 95.5)):
        eng.evaluate(_inputs(_snap("a", 1005.0 + 5 * i, [temp])), now=1005.0 + 5 * i)
    assert renders == [] and a.value == 95.5
    assert a.annotations == {"summary": "GPU 0 on a is at 95.5 C", "runbook": "see the a page"}
    assert len(renders) == 1  # the summary, once; the runbook prints no value
    assert a.as_dict()["annotations"]["summary"] == "GPU 0 on a is at 95.5 C" and len(renders) == 1
