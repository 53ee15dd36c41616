"""gpufleet.health: which readings call for a GPU reset or a drain."""

from __future__ import annotations

from gpufleet import health
from gpufleet.catalogue import BY_SCOPE, name_of
from gpufleet.hub.alerts.rules import builtin_templates


def test_healthy_and_unreported_call_for_nothing() -> None:
    assert health.judge({}) == health.Verdict(None, ())
    zeros = {r.key: 0.0 for r in health.RULES}
    assert health.judge(zeros).action is None


def test_drain_outranks_reset_and_every_reason_is_given() -> None:
    v = health.judge({"remapped_rows_pending": 1.0})
    assert v.action == "reset" and v.reasons == ("a row remap waits for a GPU reset",)
    v = health.judge({"retired_pages_pending": 1.0, "remapped_rows_failure": 1.0})
    assert v.action == "drain" and len(v.reasons) == 2


def test_rules_and_counters_name_catalogue_readings() -> None:
    gpu_keys = {m.key for m in BY_SCOPE["gpu"]}
    assert {r.key for r in health.RULES} <= gpu_keys
    assert set(health.COUNTERS) <= gpu_keys
    assert {r.key for r in health.RULES} <= set(health.COUNTERS)  # what a verdict rests on is shown
    assert health.page_json()["rules"][0] == {"key": "remapped_rows_failure", "above": 0, "action": "drain",
                                             "reason": "a row remap failed: no spare memory rows are left"}


def test_built_in_alerts_page_on_every_rule_with_its_action() -> None:
    """The web UI's badge and the alert an admin is paged with say the same thing."""
    specs = [t.data for t in builtin_templates().values()]
    for rule in health.RULES:
        expr = f"{name_of('gpu', rule.key)} > {rule.above:g}"
        alerts = [d for d in specs if d.get("expr") == expr]
        assert alerts, f"no built-in alert with expr {expr!r}"
        assert all(rule.action in d["annotations"]["summary"] for d in alerts), alerts
