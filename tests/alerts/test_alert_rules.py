"""Rule loading: built-ins, overrides, templates with parameters, errors with file and line."""

from __future__ import annotations

from pathlib import Path

import pytest

from gpufleet.hub.alerts.expr import ExprError, format_duration, parse_duration, parse_expr
from gpufleet.hub.alerts.rules import load_rules, load_rules_text
from gpufleet.hub.alerts.templating import Template, go_float, humanize, humanize_percentage

USER = """\
builtin:
  gpu_temperature_critical: {threshold: 92, for: 1m}
  gpu_waste: {enabled: false}
templates:
  hot:
    metric: gpufleet_gpu_temperature_celsius
    condition: "> {{ threshold }}"
    params: {threshold: 80}
    severity: warning
    annotations: {summary: "GPU {{ $labels.gpu }} above {{ .threshold }} C: {{ $value }}"}
rules:
  - alert: LabGpuHot
    template: hot
    params: {threshold: 75}
    match: {cluster: lab, model: "=~.*H100.*"}
    for: 5m
    labels: {team: ml}
  - alert: BadMetric
    metric: gpufleet_gpu_temprature_celsius
    condition: "> 3"
  - alert: BadDuration
    expr: gpufleet_gpu_up == 0
    for: 5 minutes
  - alert: FromBuiltinTemplate
    template: disk_low
    threshold: 0.2
"""


def test_builtins_load_clean() -> None:
    rs = load_rules(None)
    assert not rs.errors
    ids = [r.id for r in rs.rules]
    for needed in ("gpu_waste", "gpu_temperature_warning", "gpu_temperature_critical", "gpu_memory_full",
                   "gpu_ecc_uncorrected", "gpu_xid", "gpu_lost", "node_down", "disk_low", "memory_low",
                   "hub_ingest_lag", "hub_store_errors", "hub_disk_full"):
        assert needed in ids
    crit = rs.by_id()["gpu_temperature_critical"]
    assert (crit.severity, crit.for_s, crit.promql()) == ("critical", 120.0, "gpufleet_gpu_temperature_celsius > 90")


def test_user_file_overrides_templates_and_errors(tmp_path: Path) -> None:
    f = tmp_path / "alerts.yaml"
    f.write_text(USER)
    rs = load_rules(f)
    by = rs.by_id()
    # bad rules are named with file and line; the others all run
    texts = [str(e) for e in rs.errors]
    assert len(texts) == 2, texts
    assert texts[0].startswith(f"{f}:19:") and "unknown metric 'gpufleet_gpu_temprature_celsius'" in texts[0]
    assert texts[1].startswith(f"{f}:23:") and "'5 minutes' is not a duration" in texts[1]
    assert "BadMetric" not in by and "BadDuration" not in by
    assert "gpu_waste" not in by
    assert by["gpu_temperature_critical"].promql().endswith("> 92") and by["gpu_temperature_critical"].for_s == 60
    lab = by["LabGpuHot"]
    assert lab.promql() == 'gpufleet_gpu_temperature_celsius{cluster="lab",model=~".*H100.*"} > 75'
    assert lab.labels == {"team": "ml", "severity": "warning"} and lab.for_s == 300
    assert lab.annotations["summary"].render({"gpu": "3"}, 77.5) == "GPU 3 above 75 C: 77.5"
    fb = by["FromBuiltinTemplate"]
    assert fb.alert == "FromBuiltinTemplate" and fb.promql().endswith("< 0.2")


@pytest.mark.parametrize("text, fragment", [
    ("rules:\n  - alert: X\n    expr: gpufleet_gpu_up ==\n", "expected a number"),
    ("rules:\n  - alert: X\n    expr: gpufleet_gpu_up / gpufleet_node_memory_total_bytes > 1\n", "one scope"),
    ("rules:\n  - alert: X\n    expr: increase(gpufleet_gpu_temperature_celsius[5m]) > 0\n", "needs a counter"),
    ("rules:\n  - alert: X\n    expr: gpufleet_gpu_up == 0\n    severity: page\n", "severity 'page'"),
    ("rules:\n  - alert: X\n    expr: gpufleet_gpu_up == 0\n    sevrity: info\n", "unknown field 'sevrity'"),
    ("rules:\n  - alert: X\n    expr: gpufleet_gpu_up{gpu=~\"(\"} == 0\n", "bad regular expression"),
    ("rules:\n  - alert: X\n    template: nope\n", "unknown template 'nope'"),
    ("rules:\n  - alert: X\n    expr: gpufleet_gpu_up == 0\n    annotations: {s: '{{ range $x }}'}\n", "unsupported template"),
    ("rules:\n  - alert: X\n    expr: gpufleet_gpu_up == {{ limit }}\n", "parameter 'limit' has no value"),
    ("builtin:\n  gpu_nope: {threshold: 1}\n", "unknown built-in rule 'gpu_nope'"),
    ("rules: [\n", "not valid YAML"),
])
def test_errors_are_clear_and_located(text: str, fragment: str) -> None:
    rs = load_rules_text(text, "my.yaml")
    assert len(rs.errors) == 1, rs.errors
    assert str(rs.errors[0]).startswith("my.yaml:") and fragment in str(rs.errors[0]), str(rs.errors[0])
    assert rs.errors[0].line >= 1
    assert len([r for r in rs.rules if r.builtin]) == len(load_rules(None).rules)  # the built-ins keep running


def test_expr_language_round_trips_to_promql() -> None:
    e = parse_expr('gpufleet_gpu_utilization_ratio{node=~"a.*"} < 0.05 and gpufleet_gpu_processes > 0 '
                   'unless gpufleet_gpu_up == 0')
    assert e.promql() == ('(gpufleet_gpu_utilization_ratio{node=~"a.*"} < 0.05) and (gpufleet_gpu_processes > 0) '
                          'unless (gpufleet_gpu_up == 0)')
    assert parse_expr("increase(gpufleet_gpu_xid_errors_total[1h30m]) > 0").promql() == \
        "increase(gpufleet_gpu_xid_errors_total[1h30m]) > 0"
    with pytest.raises(ExprError, match="unknown metric"):
        parse_expr("nvidia_temp > 3")
    assert parse_duration("1h30m") == 5400 and parse_duration(90) == 90 and format_duration(5400) == "1h30m"
    with pytest.raises(ExprError):
        parse_duration("-5m")


def test_go_formatting_matches_prometheus_templates() -> None:
    assert [go_float(v) for v in (92.0, 0.97, 1e6, 1234567.0, 1e-5, -2.5)] == \
        ["92", "0.97", "1e+06", "1.234567e+06", "1e-05", "-2.5"]
    assert humanize(1234567.0) == "1.235M" and humanize(0.002) == "2m" and humanize(0) == "0"
    assert humanize_percentage(0.0312) == "3.12%"
    t = Template('{{ $labels.node }}: {{ $value | humanizePercentage }} / {{ printf "%.1f" $value }}')
    assert t.render({"node": "n1"}, 0.5) == "n1: 50% / 0.5"
