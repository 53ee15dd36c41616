"""The hub pulls a foreign exporter listed in a targets file: Debian's real node_exporter."""

from __future__ import annotations

from pathlib import Path

import httpx

import pytest

from access import bearer, make_api_key
from conftest import eventually
from realparts import Proc, free_port, gpufleet, node_exporter

pytestmark = pytest.mark.realparts  # starts real servers or gpufleet processes


def test_hub_pulls_node_exporter_and_keeps_last_good_targets(tmp_path: Path) -> None:
    with node_exporter(tmp_path) as (_, ne_url):
        ne_addr = ne_url.removeprefix("http://")
        targets = tmp_path / "targets.yaml"
        targets.write_text(f"""
- targets: ["{ne_addr}"]
  labels: {{node: bare-metal-1, cluster: lab, datacenter: dc1}}
  kind: node_exporter
  interval: 1s
""")
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        hub = Proc(gpufleet("hub", "--listen", f"127.0.0.1:{port}", "--data", str(tmp_path / "d"),
                            "--targets", str(targets)), tmp_path / "hub.log")
        key_h = bearer(make_api_key(tmp_path / "d", "viewer"))
        try:
            hub.wait_http(f"{url}/healthz")
            def cpu_ratios() -> dict | None:  # type: ignore[type-arg]
                r = httpx.get(f"{url}/api/v1/nodes/bare-metal-1/snapshot", headers=key_h)
                cpus = r.json().get("cpus") if r.status_code == 200 else None
                ok = cpus and all("utilization_ratio" in c.get("values", {}) for c in cpus)
                return r.json() if ok else None

            snap = eventually(cpu_ratios, timeout=30, what="two scrapes of node_exporter (CPU ratios need both)")
            ne = httpx.get(f"{ne_url}/metrics").text
            mem = next(float(line.split()[-1]) for line in ne.splitlines()
                       if line.startswith("node_memory_MemTotal_bytes"))
            assert snap["values"]["memory_total_bytes"] == mem
            assert all(0 <= c["values"]["utilization_ratio"] <= 1 for c in snap["cpus"])
            node = httpx.get(f"{url}/api/v1/nodes/bare-metal-1", headers=key_h).json()
            assert node["labels"] == {"cluster": "lab", "datacenter": "dc1"}
            assert node["source"] == "pull" and node["status"] == "up"
            # each target's scrape health is on the hub's /metrics
            own = httpx.get(f"{url}/metrics", headers=key_h).text
            target = f'target="http://{ne_addr}/metrics",node="bare-metal-1"'
            assert f"gpufleet_hub_scrape_successes_total{{{target}}}" in own, own
            samples = next(float(line.split()[-1]) for line in own.splitlines()
                           if line.startswith(f"gpufleet_hub_scrape_samples{{{target}}}"))
            assert samples > 100  # node_exporter exposes hundreds of series

            # a broken file: the hub keeps the last good targets and says where the error is
            targets.write_text("- targets: [\"no-port-here\"]\n")
            health = eventually(lambda: (h := httpx.get(f"{url}/healthz").json()).get("targets_error") and h,
                                timeout=30, what="the targets file's error on /healthz")
            assert "targets.yaml:1" in health["targets_error"], health
            assert health["targets"] == 1
            assert "targets file has an error" in hub.log()
        finally:
            hub.stop()
