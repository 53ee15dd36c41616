"""Prometheus parity: the export passes promtool check, and promtool's own evaluation of the
exported rules over the scenario's series fires exactly the alerts the hub's engine fired."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from gpufleet.hub.alerts.export import (
    Scenario, Series, builtin_scenario, dump, prometheus_rules, promtool_tests, run_scenario,
)
from gpufleet.hub.alerts.rules import load_rules, load_rules_text
from realparts import require

pytestmark = pytest.mark.realparts


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([require("promtool"), *args], capture_output=True, text=True, timeout=60)


def test_cli_export_passes_promtool_check_and_test(tmp_path: Path) -> None:
    user = tmp_path / "alerts.yaml"
    user.write_text("rules:\n  - alert: LabHot\n    metric: gpufleet_gpu_temperature_celsius\n"
                    "    match: {cluster: lab}\n    condition: '> 80'\n    for: 1m\n")
    out, tests = tmp_path / "rules.yml", tmp_path / "tests.yml"
    r = subprocess.run([sys.executable, "-c", "from gpufleet.hub.alerts.cli import rules; rules()", "export",
                        "--out", str(out), "--rules", str(user), "--tests", str(tests)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    check = _promtool("check", "rules", str(out))
    found = f"SUCCESS: {len(load_rules(None).rules) + 1} rules found"  # the built-ins and LabHot
    assert check.returncode == 0 and found in check.stdout, check.stdout + check.stderr
    test = _promtool("test", "rules", str(tests))
    assert test.returncode == 0, test.stdout + test.stderr


def test_engine_and_promtool_fire_the_same_alerts(tmp_path: Path) -> None:
    rs = load_rules(None)
    sc = builtin_scenario()
    fired = run_scenario(rs.rules, sc)
    # the scenario is not vacuous: every built-in metric rule fires at some point
    names = {labels["alertname"] for step in fired for labels, _ in step}
    assert names == {r.alert for r in rs.rules if r.expr is not None}
    (tmp_path / "rules.yml").write_text(dump(prometheus_rules(rs.rules)))
    (tmp_path / "tests.yml").write_text(dump(promtool_tests(rs.rules, sc, "rules.yml")))
    r = _promtool("test", "rules", str(tmp_path / "tests.yml"))
    assert r.returncode == 0, r.stdout[-3000:]


def test_parity_on_user_rules_with_matchers_ratios_and_unless(tmp_path: Path) -> None:
    rs = load_rules_text("""\
builtin: {gpu_waste: {enabled: false}}
rules:
  - alert: HotH100NotLost
    expr: gpufleet_gpu_temperature_celsius{model=~".*H100.*"} > 80 unless gpufleet_gpu_up == 0
    for: 2m
    severity: info
    labels: {team: ml}
    annotations: {summary: "{{ $labels.node }}/{{ $labels.gpu }} {{ $value | humanize }} ({{ printf \\"%.2f\\" $value }})"}
  - alert: MemHalf
    expr: gpufleet_gpu_memory_used_bytes{node!="b"} / gpufleet_gpu_memory_total_bytes >= 0.5
""")
    assert not rs.errors
    lab = {"cluster": "x", "uuid": "u", "vendor": "nvidia"}
    series = []
    for node, model in (("a", "NVIDIA H100"), ("b", "NVIDIA A100")):
        for g in ("0", "1"):
            labels = {"node": node, "gpu": g, "model": model, **lab}
            series.append(Series("gpufleet_gpu_temperature_celsius", labels, [70.0 + 3 * i for i in range(12)]))
            series.append(Series("gpufleet_gpu_up", labels, [1.0 if g == "0" or i < 6 else 0.0 for i in range(12)]))
            series.append(Series("gpufleet_gpu_memory_used_bytes", labels, [10.0 * i for i in range(12)]))
            series.append(Series("gpufleet_gpu_memory_total_bytes", labels, [100.0] * 12))
    sc = Scenario(series, 12)
    user = [r for r in rs.rules if not r.builtin]
    fired = run_scenario(user, sc)
    assert any(fired[i] for i in range(12))
    (tmp_path / "rules.yml").write_text(dump(prometheus_rules(user)))
    (tmp_path / "tests.yml").write_text(dump(promtool_tests(user, sc, "rules.yml")))
    assert _promtool("check", "rules", str(tmp_path / "rules.yml")).returncode == 0
    r = _promtool("test", "rules", str(tmp_path / "tests.yml"))
    assert r.returncode == 0, r.stdout[-3000:]
