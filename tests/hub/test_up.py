"""`gpufleet up`: hub + local agent in one process, the README's run command."""

from __future__ import annotations

import re
from pathlib import Path

import httpx

import pytest

from access import bearer, make_api_key
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
        assert httpx.get(f"{url}/api/v1/nodes").status_code == 401  # the demo is not open to the network
        # the one-time login link opens the demo in one step: a session cookie, then the fleet page
        link = re.search(r"Log in \(a one-time link, valid 10 minutes\): (\S+)$", p.log(), re.M)
        assert link and link.group(1).startswith(f"{url}/login/link?token=gfl_"), p.log()
        browser = httpx.Client(follow_redirects=True, timeout=10)
        page = browser.get(link.group(1))
        assert page.status_code == 200 and str(page.url) == f"{url}/" and 'data-page="fleet"' in page.text
        again = httpx.get(link.group(1))
        assert again.status_code == 401 and "used up or has expired" in again.text  # single use
        nodes = eventually(lambda: (n := browser.get(f"{url}/api/v1/nodes").json()["nodes"]) and n[0]["timestamp"] and n,
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
        h = bearer(make_api_key(tmp_path / "d", "viewer"))
        snaps = eventually(lambda: len(sn := httpx.get(f"{url}/api/v1/snapshots", headers=h).json()["snapshots"]) == 4 and sn,
                           timeout=20, what="four nodes (this machine and three simulated)")
        sim = [s for s in snaps if s.get("labels", {}).get("simulated") == "true"]
        assert len(sim) == 3 and all(s["gpus"] for s in sim if s["labels"]["profile"] != "cpu-only")
        assert "Simulating 3 nodes" in p.log()
    finally:
        p.stop()
