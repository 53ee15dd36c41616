"""An agent killed with SIGKILL while the hub holds its long poll: a run answers `unavailable` for
that node within seconds, instead of waiting out the delivery window and the timeout."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import httpx

from access import bearer, make_api_key
from realparts import Proc, free_port, gpufleet, join_token


def test_killed_agent_is_unavailable_within_seconds(tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    hub = Proc(gpufleet("hub", "--listen", f"127.0.0.1:{port}", "--data", str(tmp_path / "hub")), tmp_path / "hub.log")
    agent = None
    try:
        hub.wait_http(f"{url}/healthz")
        key = make_api_key(tmp_path / "hub", "operator")
        token = join_token(tmp_path / "hub")
        agent = Proc(gpufleet("agent", "--simulate", "cpu-only", "--node", "doomed", "--listen",
                              f"127.0.0.1:{free_port()}", "--hub", url, "--token", token, "--spool",
                              str(tmp_path / "spool"), "--allow-commands", "true", "--command-user", "nobody"),
                     tmp_path / "agent.log")

        def fetching() -> bool:
            nodes = httpx.get(f"{url}/api/v1/commands/targets", headers=bearer(key), timeout=5).json()["nodes"]
            return any(n["name"] == "doomed" and n["fetching"] for n in nodes)

        deadline = time.monotonic() + 60
        while not fetching():
            assert time.monotonic() < deadline, "agent never started fetching commands"
            time.sleep(0.1)
        agent.stop(signal.SIGKILL)
        deadline = time.monotonic() + 15
        while fetching():
            assert time.monotonic() < deadline, "a dead agent still counts as fetching after 15 s"
            time.sleep(0.2)
        started = time.monotonic()
        out = subprocess.run(gpufleet("run", "--hub", url, "--nodes", "doomed", "--", "true"), capture_output=True,
                             text=True, timeout=60, env={**os.environ, "GPUFLEET_API_KEY": key})
        assert out.returncode == 1 and "doomed  unavailable" in out.stdout, out.stdout + out.stderr
        assert time.monotonic() - started < 10
    finally:
        if agent is not None:
            agent.stop()
        hub.stop()
