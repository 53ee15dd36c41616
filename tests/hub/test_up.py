"""`gpufleet up`: hub + local agent in one process, the README's run command."""

from __future__ import annotations

import re
from pathlib import Path

import httpx

import pytest

from conftest import eventually
from realparts import Proc, free_port, gpufleet

pytestmark = pytest.mark.realparts  # starts real servers or gpufleet processes


def test_up_without_gpu_offers_the_demo(tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    p = Proc(gpufleet("up", "--listen", f"127.0.0.1:{port}", "--data", str(tmp_path / "d"), "--interval", "1"),
             tmp_path / "up.log")
    try:
        p.wait_http(f"{url}/healthz")
        nodes = eventually(lambda: (n := httpx.get(f"{url}/api/v1/nodes").json()["nodes"]) and n[0]["timestamp"] and n,
                           timeout=20, what="the local agent's first snapshot")
        assert len(nodes) == 1 and nodes[0]["status"] == "up" and nodes[0]["gpus"] == 0
        log = p.log()
        assert "No accelerator found on this machine" in log and "gpufleet up --simulate 16" in log
        assert f"web UI and API at {url}/" in log
        token = re.search(r"(gft_\S+)$", log, re.M)
        assert token, log  # the first join token is the last word of its line
        assert (tmp_path / "d" / "hub.db").exists()
    finally:
        p.stop()


def test_up_simulate_if_no_gpu(tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    p = Proc(gpufleet("up", "--simulate-if-no-gpu", "3", "--listen", f"127.0.0.1:{port}",
                      "--data", str(tmp_path / "d"), "--interval", "1"), tmp_path / "up.log")
    try:
        p.wait_http(f"{url}/healthz")
        snaps = eventually(lambda: len(sn := httpx.get(f"{url}/api/v1/snapshots").json()["snapshots"]) == 4 and sn,
                           timeout=20, what="four nodes (this machine and three simulated)")
        sim = [s for s in snaps if s.get("labels", {}).get("simulated") == "true"]
        assert len(sim) == 3 and all(s["gpus"] for s in sim if s["labels"]["profile"] != "cpu-only")
        assert "Simulating 3 nodes" in p.log()
    finally:
        p.stop()
