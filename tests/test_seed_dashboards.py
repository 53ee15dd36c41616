"""The seeds' own dashboards and alerts keep working: one real Prometheus scrapes one simulated agent
(--compat dcgm,all-smi,node) and every query of NVIDIA's DCGM dashboard, DS01's DCGM- and node-based
alerts and recording rules, Algalon's all-smi dashboards and Node Exporter Full's Quick and Basic rows
gets data (the queries, and where each comes from: fixtures/seeds/queries.yaml)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from conftest import FIXTURES, eventually
from realparts import agent, prom_query, prometheus, scrape_config, static_job

pytestmark = pytest.mark.realparts

QUERIES: list[dict[str, Any]] = yaml.safe_load((FIXTURES / "seeds" / "queries.yaml").read_text())["queries"]
LABEL_VALUES = re.compile(r"label_values\((?:(.+),\s*)?(\w+)\)")


def _fill(expr: str, target: str) -> str:
    return (expr.replace("$__rate_interval", "1m").replace("$instance", ".*").replace("$node", target)
            .replace("$job", "gpufleet").replace("$gpu", ".*"))


def _label_values(prom: str, expr: str) -> list[str]:
    m = LABEL_VALUES.fullmatch(expr)
    assert m, expr
    params = {"match[]": m.group(1)} if m.group(1) else {}
    r = httpx.get(f"{prom}/api/v1/label/{m.group(2)}/values", params=params, timeout=10)
    r.raise_for_status()
    return list(r.json()["data"])


def test_seed_queries_get_data(tmp_path: Path) -> None:
    with agent(tmp_path, "--simulate", "8xH100", "--interval", "1", "--node", "seed-node",
               "--compat", "dcgm,all-smi,node") as (_, url):
        target = url.removeprefix("http://")
        with prometheus(tmp_path, scrape_config(static_job("gpufleet", url))) as (_, prom):
            # rate() over 1m needs two scrapes of each counter
            eventually(lambda: prom_query(prom, 'count(rate(node_cpu_seconds_total{mode="idle"}[1m]))')
                       and prom_query(prom, "count(rate(DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION[1m]))"),
                       timeout=30, what="two scrapes of the agent")
            failures: list[str] = []
            for q in QUERIES:
                expr = _fill(q["expr"], target)
                status, kind = q.get("status", "data"), q.get("kind", "panel")
                where = f"{q['source']} {q.get('title', '')}: {q['expr']}"
                if kind == "variable":
                    if not _label_values(prom, expr):
                        failures.append(f"{where}: no values")
                    continue
                if kind == "alert":
                    prom_query(prom, expr)  # the rule's own expression evaluates (it may be quiet)
                    probes = q["probe"] if isinstance(q["probe"], list) else [q["probe"]]
                    got = [r for p in probes if (r := prom_query(prom, _fill(p, target)))]
                    if len(got) < len(probes):
                        failures.append(f"{where}: a probe has no data")
                    continue
                got = prom_query(prom, expr)
                if status == "data" and not got:
                    failures.append(f"{where}: no data")
                elif status == "data" and "series" in q and len(got) != q["series"]:
                    failures.append(f"{where}: {len(got)} series, want {q['series']}")
                elif status == "absent-upstream" and got:
                    failures.append(f"{where}: gpufleet answers a name the exporter itself does not export")
                elif status == "pending" and got:
                    failures.append(f"{where}: gets data now: drop its `pending` mark")
            assert not failures, "\n".join(failures)
