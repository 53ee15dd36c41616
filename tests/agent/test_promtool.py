"""promtool check metrics on the output of every simulator profile and compat mode."""

from __future__ import annotations

import pytest

from gpufleet.agent.service import AgentService
from gpufleet.backends.sim_profiles import profile_names
from gpufleet.config import AgentConfig
from realparts import promtool_check_metrics

pytestmark = pytest.mark.realparts  # starts real servers or gpufleet processes


def _render(profile: str, compat: list[str], openmetrics: bool = False) -> bytes:
    svc = AgentService(AgentConfig(node="lint", simulate=profile, backend="sim", compat=compat))
    svc.collect_once()
    r = svc.collect_once()  # second round: rates and per-core utilisation present
    return r.body("openmetrics" if openmetrics else "text", False)


@pytest.mark.parametrize("profile", profile_names())
@pytest.mark.parametrize("compat", [[], ["all-smi"]])
def test_promtool_clean(profile: str, compat: list[str]) -> None:
    rc, out = promtool_check_metrics(_render(profile, compat))
    assert rc == 0, out


@pytest.mark.parametrize("profile", ["4xA100-mig"])
def test_promtool_clean_all_smi_legacy(profile: str) -> None:
    rc, out = promtool_check_metrics(_render(profile, ["all-smi-legacy"]))
    assert rc == 0, out


@pytest.mark.parametrize("profile", ["8xH100", "4xA100-mig"])
def test_promtool_dcgm_only_flags_what_dcgm_exporter_gets(profile: str) -> None:
    # promtool's lint flags three things in dcgm-exporter's own output, and so in ours: the
    # camelCase label `modelName`, counters whose names lack `_total` (energy, ECC totals,
    # remapped rows, violations), and DCGM_FI_DEV_PCIE_REPLAY_COUNTER's name holding its type.
    # We keep them (NVIDIA's dashboards and users' queries use the names, and rate() needs the
    # counter type): those are the only findings allowed.
    rc, out = promtool_check_metrics(_render(profile, ["dcgm", "all-smi"]))
    problems = [line for line in out.splitlines() if line.strip()]
    assert rc in (0, 3), out
    camel = "label names should be written in 'snake_case' not 'camelCase'"
    total = 'counter metrics should have "_total" suffix'
    assert any(camel in p for p in problems), "expected the camelCase finding for modelName"
    assert any(p.startswith("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION") and total in p for p in problems), out
    named = "DCGM_FI_DEV_PCIE_REPLAY_COUNTER metric name should not include type 'counter'"
    assert all(camel in p or total in p or named in p for p in problems), out
    assert all(p.startswith("DCGM_FI_") for p in problems)


@pytest.mark.parametrize("profile", profile_names())
def test_openmetrics_parses_strictly(profile: str) -> None:
    # promtool reads only the text format; prometheus_client's OpenMetrics parser is strict
    # (and the real Prometheus in test_agent_process negotiates OpenMetrics when it scrapes).
    from prometheus_client.openmetrics.parser import text_string_to_metric_families

    text = _render(profile, ["dcgm", "all-smi"], openmetrics=True).decode()
    families = list(text_string_to_metric_families(text))
    assert any(f.name == "gpufleet_node" and f.type == "info" for f in families)
