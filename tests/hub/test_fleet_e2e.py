"""Agents and hub as real processes: join with a token, push, survive a hub restart with no gap."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import httpx

import pytest

from access import bearer, make_api_key
from conftest import eventually
from realparts import (Proc, free_port, gpufleet, hub_proc, hub_sd_job, join_token, prom_query, prometheus,
                       scrape_config, static_job)

pytestmark = pytest.mark.realparts  # starts real servers or gpufleet processes


def _agent(tmp: Path, hub_url: str, node: str, token: str, *extra: str) -> tuple[Proc, int]:
    port = free_port()
    env = {"XDG_STATE_HOME": str(tmp / "state")}  # default spools land here, one per node
    p = Proc(gpufleet("agent", "--hub", hub_url, "--token", token, "--node", node, "--simulate", "2xRTX4090",
                      "--listen", f"127.0.0.1:{port}", *extra), tmp / f"agent-{node}.log", env=env)
    p.wait_http(f"http://127.0.0.1:{port}/healthz")
    return p, port


def _nodes(url: str, h: dict[str, str]) -> dict[str, dict]:
    try:
        return {n["name"]: n for n in httpx.get(f"{url}/api/v1/nodes", headers=h, timeout=5).json()["nodes"]}
    except httpx.HTTPError:
        return {}


def test_join_push_restart_without_gap(tmp_path: Path) -> None:
    data = tmp_path / "hubdata"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    hub = hub_proc(tmp_path, data, port)
    h = bearer(make_api_key(data, "viewer"))
    token = join_token(data)
    a1, a1_port = _agent(tmp_path, url, "gpu-a", token, "--interval", "0.5", "--label", "rack=r1")
    a2, _ = _agent(tmp_path, url, "gpu-b", token, "--interval", "0.5")
    bad, _ = _agent(tmp_path, url, "intruder", "gft_not-a-token", "--interval", "0.5")
    try:
        nodes = eventually(lambda: (n := _nodes(url, h)) and {"gpu-a", "gpu-b"} <= set(n) and n, timeout=30, what="both nodes")
        assert nodes["gpu-a"]["status"] == "up" and nodes["gpu-a"]["labels"] == {"rack": "r1"}
        assert "intruder" not in nodes
        eventually(lambda: "unknown or revoked join token" in bad.log(), timeout=30, what="the refused agent's log line")
        # two agents on one machine keep separate default spools
        spools = sorted(p.name for p in (tmp_path / "state" / "gpufleet" / "spool").iterdir())
        assert len(spools) == 3 and spools[0].startswith("gpu-a") and spools[1].startswith("gpu-b")

        # the hub goes away for a few seconds, agents spool, then backfill in order
        time.sleep(3)  # some history from before the outage
        t_stop = time.time()
        assert hub.stop() is not None
        time.sleep(4)
        hub = hub_proc(tmp_path, data, port, name="hub2")
        t_back = time.time()
        snap_ts = []

        def caught_up() -> bool:
            r = httpx.get(f"{url}/api/v1/nodes/gpu-a", headers=h, timeout=5)
            return r.status_code == 200 and (r.json()["timestamp"] or 0) > t_back

        eventually(caught_up, timeout=30, what="gpu-a to catch up")
        q = httpx.get(f"{url}/api/v1/query_range", headers=h, params={
            "metric": "gpufleet_node_memory_total_bytes", "match": ['node="gpu-a"'],
            "start": t_stop - 3, "end": t_back, "step": 0.5, "agg": "last"}, timeout=10).json()
        snap_ts = q["series"][0]["timestamps"]
        gaps = [b - a for a, b in zip(snap_ts, snap_ts[1:])]
        assert snap_ts[0] <= t_stop - 2 and snap_ts[-1] >= t_back - 1.5, (snap_ts[0], snap_ts[-1])
        assert max(gaps) <= 1.0, f"gap of {max(gaps):.2f}s in {snap_ts}"
        # the agent says it pushed everything and its backlog is empty again
        def agent_caught_up() -> bool:
            m = httpx.get(f"http://127.0.0.1:{a1_port}/metrics").text
            v = {line.split("{")[0]: float(line.rsplit(" ", 1)[1]) for line in m.splitlines()
                 if line.startswith(("gpufleet_agent_hub_up{", "gpufleet_agent_push_backlog{"))}
            return v.get("gpufleet_agent_hub_up") == 1 and v.get("gpufleet_agent_push_backlog") == 0

        eventually(agent_caught_up, timeout=30, what="the agent's backlog to drain")
    finally:
        for p in (a1, a2, bad, hub):
            p.stop()


def test_kill_9_loses_at_most_a_second(tmp_path: Path) -> None:
    data = tmp_path / "d"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    hub = hub_proc(tmp_path, data, port)
    h = bearer(make_api_key(data, "viewer"))
    token = join_token(data)
    spool = tmp_path / "spool"
    agent, _ = _agent(tmp_path, url, "k9", token, "--interval", "0.5", "--spool", str(spool))
    try:
        eventually(lambda: (r := httpx.get(f"{url}/api/v1/nodes/k9", headers=h)).status_code == 200 and r.json()["timestamp"],
              what="first push")
        agent.stop()  # nothing can backfill: what the hub has is what survived
        last = httpx.get(f"{url}/api/v1/nodes/k9", headers=h).json()["timestamp"]
        time.sleep(0.3)
        os.kill(hub.pid, signal.SIGKILL)
        hub.p.wait(5)
        hub = hub_proc(tmp_path, data, port, name="hub-after-kill")
        q = httpx.get(f"{url}/api/v1/query_range", headers=h, params={
            "metric": "gpufleet_node_memory_total_bytes", "match": ['node="k9"'],
            "start": last - 30, "end": last + 1, "step": 0.5, "agg": "last"}).json()
        stored = q["series"][0]["timestamps"]
        assert max(stored) >= last - 1.0, (max(stored), last)
    finally:
        agent.stop()
        hub.stop()


def test_prometheus_finds_agents_through_http_sd(tmp_path: Path) -> None:
    data = tmp_path / "d"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    hub = hub_proc(tmp_path, data, port)
    h = bearer(make_api_key(data, "viewer"))
    token = join_token(data)
    # --advertise: an agent on loopback only is left out of http_sd unless its address is given
    agent, agent_port = _agent(tmp_path, url, "sd-node", token, "--interval", "1", "--label", "cluster=lab",
                               "--advertise", "127.0.0.1")
    try:
        eventually(lambda: httpx.get(f"{url}/api/v1/sd/prometheus", headers=h).json(), timeout=30, what="sd targets")
        sd = httpx.get(f"{url}/api/v1/sd/prometheus", headers=h).json()
        assert sd == [{"targets": [f"127.0.0.1:{agent_port}"], "labels": {"cluster": "lab", "node": "sd-node"}}]
        # Prometheus reads http_sd and the hub's own /metrics with an API key from a file (docs/hub.md)
        key_file = tmp_path / "hub.key"
        key_file.write_text(make_api_key(data, "viewer", user="prometheus") + "\n")
        key_file.chmod(0o600)
        assert httpx.get(f"{url}/api/v1/sd/prometheus").status_code == 401  # and nothing without it
        cfg = scrape_config(hub_sd_job("fleet", url, key_file), static_job("hub", url, key_file=key_file))
        with prometheus(tmp_path, cfg) as (_, prom):
            res = eventually(lambda: prom_query(prom, 'gpufleet_gpu_up{job="fleet"}'), timeout=45, what="scraped series")
            assert {r["metric"]["cluster"] for r in res} == {"lab"}
            assert {r["metric"]["node"] for r in res} == {"sd-node"} and len(res) == 2
            own = eventually(lambda: prom_query(prom, 'gpufleet_hub_ingest_snapshots_total{job="hub"}'), timeout=30,
                             what="the hub's own metrics")
            assert float(own[0]["value"][1]) > 0
        # and file_sd for setups that prefer files
        out = tmp_path / "sd.json"
        subprocess.run(gpufleet("sd", "--out", str(out), "--data", str(data)), check=True, capture_output=True)
        assert json.loads(out.read_text()) == sd
    finally:
        agent.stop()
        hub.stop()


def test_hub_bad_input(tmp_path: Path) -> None:
    r = subprocess.run(gpufleet("token", "list", "--data", str(tmp_path / "none")), capture_output=True, text=True)
    assert r.returncode == 2 and "no hub data in" in r.stderr and "Traceback" not in r.stderr
    r = subprocess.run(gpufleet("agent", "--hub", "http://127.0.0.1:9", "--spool", str(tmp_path / "s"),
                                "--listen", f"127.0.0.1:{free_port()}"), capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and "--hub needs --token" in r.stderr
    r = subprocess.run(gpufleet("hub", "--listen", "127.0.0.1:8080", "--targets", str(tmp_path / "no.yaml")),
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and "does not exist" in r.stderr
