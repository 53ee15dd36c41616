"""`gpufleet status` against a real hub: healthy (0), degraded (1: firing alert, stale node), unreachable (2)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from access import make_api_key
from conftest import eventually
from realparts import Proc, free_port, gpufleet, join_token

pytestmark = pytest.mark.realparts


def _status(url: str, key: str | None, *extra: str) -> subprocess.CompletedProcess[str]:
    args = ["status", "--hub", url, *extra] + (["--api-key", key] if key else [])
    return subprocess.run(gpufleet(*args), capture_output=True, text=True, timeout=30,
                          env={"PATH": "/usr/bin:/bin"})


def test_status_healthy_degraded_unreachable(tmp_path: Path) -> None:
    nowhere = f"http://127.0.0.1:{free_port()}"
    r = _status(nowhere, None)
    assert r.returncode == 2 and f"hub {nowhere} is unreachable" in r.stderr and "Traceback" not in r.stderr
    r = _status(nowhere, None, "--json")
    assert r.returncode == 2 and json.loads(r.stdout)["status"] == "unreachable"
    r = _status("ftp://hub", None)
    assert r.returncode == 2 and "is not a URL" in r.stderr

    data, rules = tmp_path / "d", tmp_path / "alerts.yaml"
    rules.write_text("rules: []\n")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    hub = Proc(gpufleet("hub", "--listen", f"127.0.0.1:{port}", "--data", str(data), "--rules", str(rules)),
               tmp_path / "hub.log", env={"GPUFLEET_ALERT_INTERVAL": "0.5"})
    agent = None
    try:
        hub.wait_http(f"{url}/healthz")
        key = make_api_key(data, "viewer")
        r = _status(url, None)
        assert r.returncode == 2 and "--api-key" in r.stderr
        token = join_token(data)
        agent = Proc(gpufleet("agent", "--hub", url, "--token", token, "--node", "n1", "--simulate", "cpu-only",
                              "--interval", "0.5", "--spool", str(tmp_path / "spool"),
                              "--listen", f"127.0.0.1:{free_port()}"), tmp_path / "agent.log")
        healthy = eventually(lambda: (r := _status(url, key)).returncode == 0 and "agents: 1 up" in r.stdout and r,
                             timeout=60, what="a healthy fleet of one")
        assert healthy.stdout.startswith(f"hub {url}: HEALTHY")
        assert "alerts: 0 firing" in healthy.stdout and "remote write: not configured" in healthy.stdout
        assert "store: embedded, ok" in healthy.stdout
        # the agent listens on loopback only: healthy, with a note saying Prometheus cannot find it
        assert "note: node n1 listens on 127.0.0.1 only" in healthy.stdout

        rules.write_text("rules:\n  - alert: AlwaysOn\n    expr: gpufleet_node_memory_total_bytes > 0\n"
                         "    severity: warning\n")
        firing = eventually(lambda: (r := _status(url, key)).returncode == 1 and r, timeout=60, what="degraded")
        assert "alert AlwaysOn is firing on n1 (warning)" in firing.stdout
        assert firing.stdout.count("AlwaysOn") == 1 and "alerts: 1 firing\n" in firing.stdout  # listed once
        report = json.loads(_status(url, key, "--json").stdout)
        assert report["status"] == "degraded" and report["alerts"]["firing"][0]["alertname"] == "AlwaysOn"
        assert report["agents"]["up"] == 1 and report["hub"] == url

        agent.stop()
        stale = eventually(lambda: "node n1 is stale" in (r := _status(url, key)).stdout and r, timeout=60,
                           what="the silent node reported stale")
        assert stale.returncode == 1 and "1 stale (n1)" in stale.stdout
    finally:
        if agent is not None:
            agent.stop()
        hub.stop()
    r = _status(url, key)
    assert r.returncode == 2 and "unreachable" in r.stderr


def test_status_degraded_by_a_failing_remote_write(tmp_path: Path) -> None:
    data, port = tmp_path / "d", free_port()
    url = f"http://127.0.0.1:{port}"
    sink = f"http://127.0.0.1:{free_port()}/api/v1/write"  # nothing listens there
    hub = Proc(gpufleet("hub", "--listen", f"127.0.0.1:{port}", "--data", str(data), "--remote-write", sink),
               tmp_path / "hub.log")
    agent = None
    try:
        hub.wait_http(f"{url}/healthz")
        key = make_api_key(data, "viewer")
        token = join_token(data)
        agent = Proc(gpufleet("agent", "--hub", url, "--token", token, "--node", "rw1", "--simulate", "cpu-only",
                              "--interval", "0.5", "--spool", str(tmp_path / "spool"),
                              "--listen", f"127.0.0.1:{free_port()}"), tmp_path / "agent.log")
        r = eventually(lambda: f"remote write to {sink} is failing" in (r := _status(url, key)).stdout and r,
                       timeout=45, what="the failing remote write reported")
        assert r.returncode == 1 and f"remote write: {sink} failing: ConnectError" in r.stdout
        report = json.loads(_status(url, key, "--json").stdout)
        rw = report["remote_write"]
        assert rw["configured"] and not rw["ok"] and "Connection refused" in rw["last_error"]
    finally:
        if agent is not None:
            agent.stop()
        hub.stop()
