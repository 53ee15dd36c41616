"""The generated stack against real parts: a hub, agents on simulated GPUs (three kinds of node),
and Debian's Prometheus started on the generated prometheus.yml from its folder.

Prometheus finds the agents through the hub's http_sd with the API key file and scrapes them
(`up` is 1 with the node label); then every query of every generated dashboard panel, with the
dashboard's variables set to values Prometheus has, returns data. A panel of a metric only some
hardware reports (fan speed, MIG, ECC) must return data for at least one node of the fleet.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from access import make_api_key
from conftest import eventually
from realparts import Proc, free_port, gpufleet, join_token, prom_query, require, running

from gpufleet.stack.prometheus import AGENTS_JOB, HUB_JOB
from gpufleet.stack.victoriametrics import SCRAPE_FILE, vmagent_flags

pytestmark = pytest.mark.realparts

# node name -> agent options: simulated Hopper (profiling ratios, HBM, ECC, NVLink), a fan-cooled
# workstation card, A100s with MIG on, V100s (page retirement instead of row remapping), vGPU
# guests (licence state), and this machine itself (its real host, no GPU) with --compat node,
# which reads CPU time by mode.
FLEET: dict[str, list[str]] = {"h100": ["--simulate", "8xH100"], "ws": ["--simulate", "2xRTX4090"],
                               "mig": ["--simulate", "4xA100-mig"], "v100": ["--simulate", "4xV100"],
                               "vgpu": ["--simulate", "2xA100-vgpu"], "login": ["--compat", "node"]}
RANGE_S = 60
# Grafana's own variables, as it would set them for a one-minute range at a 1 s scrape interval.
BUILTINS = {"$__rate_interval": "10s", "$__range_s": str(RANGE_S), "$__range": f"{RANGE_S}s", "$__interval": "2s"}


class Fleet:
    def __init__(self, tmp: Path, hub: str, key_file: Path, out: Path, prom: str, agents: dict[str, Proc]) -> None:
        self.tmp, self.hub, self.key_file = tmp, hub, key_file
        self.out, self.prom, self.agents = out, prom, agents
        self.http = httpx.Client(timeout=10)  # one keep-alive connection for the few hundred queries


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    tmp = tmp_path_factory.mktemp("stack")
    data, port = tmp / "hub", free_port()
    hub_url = f"http://127.0.0.1:{port}"
    procs: list[Proc] = []
    try:
        hub = Proc(gpufleet("hub", "--listen", f"127.0.0.1:{port}", "--data", str(data)), tmp / "hub.log")
        procs.append(hub)
        hub.wait_http(f"{hub_url}/healthz", timeout=30)
        token = join_token(data)
        key_file = tmp / "prometheus.key"
        key_file.write_text(make_api_key(data, "viewer", user="prometheus") + "\n")
        key_file.chmod(0o600)
        agents: dict[str, Proc] = {}
        # --advertise: loopback agents are left out of http_sd unless their owner gives the address.
        for node, options in FLEET.items():
            p = free_port()
            agents[node] = Proc(gpufleet("agent", "--hub", hub_url, "--token", token, "--node", node, *options,
                                         "--listen", f"127.0.0.1:{p}", "--advertise", "127.0.0.1", "--interval", "1",
                                         "--spool", str(tmp / f"spool-{node}"), "--label", "cluster=lab"),
                                tmp / f"agent-{node}.log")
            procs.append(agents[node])
        key = {"Authorization": f"Bearer {key_file.read_text().strip()}"}

        def registered() -> bool:
            sd = httpx.get(f"{hub_url}/api/v1/sd/prometheus", headers=key, timeout=5).json()
            return {g["labels"]["node"] for g in sd} == set(FLEET)

        eventually(registered, timeout=60, what="every agent in the hub's http_sd")
        out = tmp / "stack"
        r = subprocess.run(gpufleet("stack", "generate", "--out", str(out), "--hub", hub_url, "--api-key-file",
                                    str(key_file), "--scrape-interval", "1s"), capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        folder = out / "prometheus"
        pport = free_port()
        # Only the listen address and storage path are given: everything else is the generated file.
        cmd = [require("prometheus"), "--config.file=prometheus.yml", f"--storage.tsdb.path={tmp / 'prom-data'}",
               f"--web.listen-address=127.0.0.1:{pport}"]
        prom = f"http://127.0.0.1:{pport}"
        proc = Proc(cmd, tmp / "prometheus.log", cwd=folder)
        procs.append(proc)
        proc.wait_http(f"{prom}/-/ready", timeout=60)
        fleet = Fleet(tmp, hub_url, key_file, out, prom, agents)
        yield fleet
        fleet.http.close()
    finally:
        for p in reversed(procs):
            p.stop()


def test_prometheus_finds_and_scrapes_agents_through_http_sd(fleet: Fleet) -> None:
    def all_up() -> list[dict]:
        res = prom_query(fleet.prom, f'up{{job="{AGENTS_JOB}"}} == 1')
        return res if {r["metric"].get("node") for r in res} == set(FLEET) else []

    res = eventually(all_up, timeout=60, what="up == 1 for every agent, with its node label")
    assert {r["metric"]["cluster"] for r in res} == {"lab"}
    assert eventually(lambda: prom_query(fleet.prom, f'up{{job="{HUB_JOB}"}} == 1'), timeout=30,
                      what="the hub's own /metrics scraped with the key")


def test_vmagent_and_victoriametrics_scrape_the_fleet(fleet: Fleet) -> None:
    out = fleet.tmp / "vm-stack"
    r = subprocess.run(gpufleet("stack", "generate", "--out", str(out), "--hub", fleet.hub, "--tsdb", "victoriametrics",
                                "--api-key-file", str(fleet.key_file), "--scrape-interval", "1s"),
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    vm_port, agent_port = free_port(), free_port()
    vm = f"http://127.0.0.1:{vm_port}"
    # search.latencyOffset=1s: VictoriaMetrics otherwise hides the last 30 s from queries
    vm_cmd = [require("victoria-metrics"), f"-storageDataPath={fleet.tmp / 'vm-data'}",
              f"-httpListenAddr=127.0.0.1:{vm_port}", "-search.latencyOffset=1s"]
    # vmagent from its folder with the generated file and the compose file's flags, local addresses
    agent_cmd = [require("vmagent"), *vmagent_flags(Path(SCRAPE_FILE).name, vm, str(fleet.tmp / "vmagent-data"),
                                                    f"127.0.0.1:{agent_port}")]
    with running(vm_cmd, fleet.tmp / "vm.log", f"{vm}/health", timeout=60), \
            running(agent_cmd, fleet.tmp / "vmagent.log", f"http://127.0.0.1:{agent_port}/health", timeout=60,
                    cwd=out / Path(SCRAPE_FILE).parent):
        def all_up() -> set[str]:
            res = prom_query(vm, f'up{{job="{AGENTS_JOB}"}} == 1')
            nodes = {r["metric"].get("node", "") for r in res}
            return nodes if nodes == set(FLEET) else set()

        eventually(all_up, timeout=60, interval=0.5, what="up == 1 for every agent in VictoriaMetrics")
        assert eventually(lambda: prom_query(vm, f'up{{job="{HUB_JOB}"}} == 1'), timeout=30,
                          what="the hub's own /metrics through vmagent")
        # Grafana's datasource points at VictoriaMetrics in this set-up: the same panels, its MetricsQL
        _wait_for_history(vm)
        boards = _boards(out)
        empty = [e for name, b in boards.items() if name != "alerts.json" for e in _empty_panels(fleet.http, vm, b)]
        assert not empty, "panels without data in VictoriaMetrics:\n" + "\n".join(empty)


def _grafana_vars(expr: str, values: dict[str, str]) -> str:
    for name in sorted({**BUILTINS, **values}, key=len, reverse=True):  # $__range_s before $__range
        v = BUILTINS.get(name) or values[name]
        expr = expr.replace(name, v).replace("${" + name[1:] + "}", v)
    return expr


def _label_values(http: httpx.Client, prom: str, query: str, values: dict[str, str]) -> list[str]:
    m = re.fullmatch(r"label_values\((.*),\s*(\w+)\)", _grafana_vars(query, values))
    assert m, query
    r = http.get(f"{prom}/api/v1/series", params={"match[]": m.group(1), "start": time.time() - RANGE_S})
    r.raise_for_status()
    return sorted({s[m.group(2)] for s in r.json()["data"] if m.group(2) in s})


def _choices(http: httpx.Client, prom: str, variables: list[dict]) -> list[dict[str, str]]:
    """Every setting of the dashboard's variables to test: each value of a single-value variable,
    all values (as Grafana's regex) of a multi-value one; later variables see earlier ones."""
    settings: list[dict[str, str]] = [{}]
    for v in variables:
        nxt = []
        for s in settings:
            vals = _label_values(http, prom, v["query"], s)
            assert vals, f"variable {v['name']} has no values"
            if v.get("multi"):
                nxt.append({**s, "$" + v["name"]: "(" + "|".join(re.escape(x) for x in vals) + ")"})
            else:
                nxt.extend({**s, "$" + v["name"]: x} for x in vals)
        settings = nxt
    return settings


def _has_data(http: httpx.Client, prom: str, expr: str, instant: bool) -> bool:
    now = time.time()
    if instant:
        params = {"query": expr, "time": now}
        url = f"{prom}/api/v1/query"
    else:
        params = {"query": expr, "start": now - 30, "end": now, "step": 2}
        url = f"{prom}/api/v1/query_range"
    r = http.get(url, params=params)
    assert r.status_code == 200, f"{expr}: {r.text}"
    return bool(r.json()["data"]["result"])


def _empty_panels(http: httpx.Client, prom: str, board: dict) -> list[str]:
    settings = _choices(http, prom, board["templating"]["list"])
    empty = []
    for p in board["panels"]:
        for t in p.get("targets", []):
            if not any(_has_data(http, prom, _grafana_vars(t["expr"], s), bool(t.get("instant"))) for s in settings):
                empty.append(f"{board['title']} / {p['title']}: {t['expr']}")
    return empty


def _wait_for_history(url: str) -> None:
    """Enough scrapes of every agent for the rates and increases over the dashboards' windows."""
    def history() -> bool:
        return len(prom_query(url, f'count_over_time(up{{job="{AGENTS_JOB}"}}[1m]) >= 6')) == len(FLEET)

    eventually(history, timeout=60, interval=0.5, what="six scrapes of every agent")


def _boards(out: Path) -> dict[str, dict]:
    folder = out / "grafana/provisioning/dashboards/gpufleet"
    return {f.name: json.loads(f.read_text()) for f in sorted(folder.glob("*.json"))}


def test_every_panel_query_returns_data(fleet: Fleet) -> None:
    # Enough history for rates and increases over the windows the dashboards use.
    _wait_for_history(fleet.prom)
    boards = _boards(fleet.out)
    empty = [e for name, b in boards.items() if name != "alerts.json" for e in _empty_panels(fleet.http, fleet.prom, b)]
    assert not empty, "panels without data:\n" + "\n".join(empty)
    queries = sum(len(p.get("targets", [])) for b in boards.values() for p in b["panels"])
    assert queries > 150  # the GPU, node and user dashboards are not trivially small

    # The alerts dashboard reads ALERTS: an agent that stops makes the node-down rule pending.
    fleet.agents["ws"].stop()
    eventually(lambda: prom_query(fleet.prom, 'ALERTS{alertname="GpufleetNodeDown",node="ws"}'), timeout=30,
               interval=0.5, what="GpufleetNodeDown pending for the stopped agent")
    empty = _empty_panels(fleet.http, fleet.prom, boards["alerts.json"])
    assert not empty, "panels without data:\n" + "\n".join(empty)
