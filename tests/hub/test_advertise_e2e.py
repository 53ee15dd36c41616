"""Reachable addresses: what agents register for Prometheus, and the join command the hub prints.

The finding: every node was discovered as 127.0.0.1:9401 (agents listen on loopback by
default), so a real Prometheus scraped itself and labelled the answer as each node.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import httpx
import pytest

from access import bearer, make_api_key
from conftest import eventually
from gpufleet.agent.push import agent_url_for
from gpufleet.config import parse_advertise
from gpufleet.netaddr import host_port, is_loopback, primary_address
from realparts import Proc, free_port, gpufleet, hub_sd_job, join_token, prom_query, prometheus, scrape_config

pytestmark = pytest.mark.realparts


def test_addresses_an_agent_registers() -> None:
    primary = primary_address()
    assert not is_loopback(primary) and primary not in ("0.0.0.0", "::")
    assert agent_url_for(("0.0.0.0", 9401)) == f"http://{host_port(primary, 9401)}"
    assert agent_url_for(("127.0.0.1", 9401), advertise=("gpu01.lab", 9500)) == "http://gpu01.lab:9500"
    assert agent_url_for(("0.0.0.0", 9401), "https", ("10.0.0.7", 0)) == "https://10.0.0.7:9401"
    assert agent_url_for(("0.0.0.0", 0), advertise=("10.0.0.7", 0)) is None  # known once bound
    assert parse_advertise("[2001:db8::7]:9401") == ("2001:db8::7", 9401)
    assert parse_advertise("2001:db8::7") == ("2001:db8::7", 0)
    for bad in ("0.0.0.0:9401", "http://x:1", "a b:1", "x:70000"):
        with pytest.raises(ValueError):
            parse_advertise(bad)
    r = subprocess.run(gpufleet("agent", "--advertise", "0.0.0.0:9401"), capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and "--advertise" in r.stderr and "others can reach" in r.stderr
    assert "Traceback" not in r.stderr


def _nodes(url: str, h: dict[str, str]) -> dict[str, dict]:
    return {n["name"]: n for n in httpx.get(f"{url}/api/v1/nodes", headers=h, timeout=5).json()["nodes"]}


def test_loopback_agents_are_left_out_and_wildcard_ones_found(tmp_path: Path) -> None:
    data = tmp_path / "d"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    hub = Proc(gpufleet("hub", "--listen", f"127.0.0.1:{port}", "--data", str(data)), tmp_path / "hub.log")
    procs = [hub]
    try:
        hub.wait_http(f"{url}/healthz")
        token = join_token(data)
        key = make_api_key(data, "viewer")
        h = bearer(key)
        ports = {n: free_port() for n in ("lo", "wild", "adv")}
        listen = {"lo": f"127.0.0.1:{ports['lo']}", "wild": f"0.0.0.0:{ports['wild']}",
                  "adv": f"127.0.0.1:{ports['adv']}"}
        for node in ports:
            extra = ["--advertise", "gpu-adv.example.org:19401"] if node == "adv" else []
            p = Proc(gpufleet("agent", "--hub", url, "--token", token, "--node", node, "--simulate", "2xRTX4090",
                              "--interval", "1", "--spool", str(tmp_path / f"spool-{node}"),
                              "--listen", listen[node], *extra), tmp_path / f"agent-{node}.log")
            procs.append(p)
        eventually(lambda: set(_nodes(url, h)) == set(ports), timeout=30, what="three agents registered")
        primary = primary_address()
        sd = httpx.get(f"{url}/api/v1/sd/prometheus", headers=h, timeout=5).json()
        assert sd == [{"targets": ["gpu-adv.example.org:19401"], "labels": {"node": "adv"}},
                      {"targets": [host_port(primary, ports["wild"])], "labels": {"node": "wild"}}]
        nodes = _nodes(url, h)
        assert "the hub leaves this node out of Prometheus' service discovery" in procs[1].log()
        assert "service discovery" not in procs[2].log() + procs[3].log()
        why = f"node lo listens on 127.0.0.1 only: start its agent with --listen 0.0.0.0:{ports['lo']} or --advertise"
        assert nodes["lo"]["scrape_problem"].startswith(why)
        assert nodes["wild"]["scrape_problem"] is None and nodes["adv"]["scrape_problem"] is None
        # the node page says it too (its first data carries it; node.js shows it under "Scraped at")
        page = httpx.get(f"{url}/nodes/lo", headers=h, timeout=5)
        assert page.status_code == 200 and "listens on 127.0.0.1 only" in page.text
        # and the fleet overview's card (its live summary carries the reason as `sp`)
        with httpx.stream("GET", f"{url}/api/v1/events", params={"fleet": "true"}, headers=h, timeout=10) as ev:
            first = next(d for line in ev.iter_lines() if line.startswith("data:")
                         and "full" in (d := json.loads(line[5:])))
        assert first["full"]["lo"]["sp"].startswith(why) and "sp" not in first["full"]["wild"]
        out = tmp_path / "sd.json"
        r = subprocess.run(gpufleet("sd", "--out", str(out), "--data", str(data)), capture_output=True, text=True,
                           check=True)
        assert f"left out: {why}" in r.stderr and "wrote 2 target(s)" in r.stdout
        r = subprocess.run(gpufleet("node", "list", "--data", str(data)), capture_output=True, text=True, check=True)
        assert "not in service discovery: node lo listens on 127.0.0.1 only" in r.stdout
        # a real Prometheus finds the wildcard agent at this node's primary address, not at itself
        key_file = tmp_path / "key"
        key_file.write_text(key)
        with prometheus(tmp_path, scrape_config(hub_sd_job("fleet", url, key_file))) as (_, prom):
            up = eventually(lambda: prom_query(prom, 'up{job="fleet",node="wild"} == 1'), timeout=45,
                            what="Prometheus scraping the wildcard agent at the primary address")
            assert up[0]["metric"]["instance"] == host_port(primary, ports["wild"])
            gpu = eventually(lambda: prom_query(prom, 'gpufleet_gpu_up{job="fleet"}'), timeout=30, what="GPU series")
            assert {s["metric"]["node"] for s in gpu} == {"wild"}
    finally:
        for p in procs:
            p.stop()


def _first_lines(proc: Proc, needle: str) -> str:
    return eventually(lambda: needle in proc.log() and proc.log(), timeout=30, what=f"{needle!r} in the log")


def test_the_join_command_names_a_reachable_hub(tmp_path: Path) -> None:
    ports = [free_port() for _ in range(3)]
    hubs = [  # started together: each takes seconds to import and open its store
        Proc(gpufleet("hub", "--listen", f"0.0.0.0:{ports[0]}", "--data", str(tmp_path / "a")), tmp_path / "a.log"),
        Proc(gpufleet("hub", "--listen", f"127.0.0.1:{ports[1]}", "--data", str(tmp_path / "b"),
                      "--public-url", "https://gpus.example.org/"), tmp_path / "b.log"),
        Proc(gpufleet("hub", "--listen", f"127.0.0.1:{ports[2]}", "--data", str(tmp_path / "c")), tmp_path / "c.log"),
    ]
    try:
        log = _first_lines(hubs[0], "gpufleet agent --hub")
        reach = f"http://{host_port(primary_address(), ports[0])}"
        assert f"web UI and API at {reach}/" in log and f"gpufleet agent --hub {reach} --token-file FILE" in log
        assert "0.0.0.0" not in log.replace("--listen 0.0.0.0:9401", "")

        log = _first_lines(hubs[1], "gpufleet agent --hub")
        assert "gpufleet agent --hub https://gpus.example.org --token-file FILE" in log
        # requests through the proxy name it as Host: the hub answers them
        r = httpx.get(f"http://127.0.0.1:{ports[1]}/healthz", headers={"Host": "gpus.example.org"}, timeout=5)
        assert r.status_code == 200

        log = _first_lines(hubs[2], "gpufleet agent --hub")
        assert f"this hub listens on 127.0.0.1 only: agents on other machines need `--listen 0.0.0.0:{ports[2]}`" in log
    finally:
        for h in hubs:
            h.stop()
    r = subprocess.run(gpufleet("hub", "--public-url", "http://0.0.0.0:8080", "--data", str(tmp_path / "d")),
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and "--public-url" in r.stderr and not (tmp_path / "d").exists()
