"""The hub's data and the agent's spool are private to their user, whatever the umask (issue 9:
the data directory was 0755 and hub.db, holding every process table, 0644)."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import httpx

from access import bearer, make_api_key
from conftest import eventually
from realparts import Proc, free_port, gpufleet


def _mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def test_hub_and_agent_files_under_umask_0(tmp_path: Path) -> None:
    data = tmp_path / "data"
    spool = tmp_path / "spool"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    # every process below starts with umask 0: only the code's own modes protect the files
    umask0 = lambda: os.umask(0)  # noqa: E731
    token = subprocess.run(gpufleet("token", "create", "--new", "--data", str(data)), capture_output=True,
                           text=True, check=True, preexec_fn=umask0).stdout.split()[-1]
    assert _mode(data) == 0o700 and _mode(data / "hub.db") == 0o600
    old = os.umask(0)
    try:
        hub = Proc(gpufleet("hub", "--listen", f"127.0.0.1:{port}", "--data", str(data)), tmp_path / "hub.log")
        agent = Proc(gpufleet("agent", "--hub", url, "--token", token, "--node", "n1", "--simulate", "2xRTX4090",
                              "--interval", "0.5", "--spool", str(spool), "--listen", f"127.0.0.1:{free_port()}"),
                     tmp_path / "agent.log")
    finally:
        os.umask(old)
    try:
        hub.wait_http(f"{url}/healthz")
        h = bearer(make_api_key(data, "viewer"))
        eventually(lambda: httpx.get(f"{url}/api/v1/nodes/n1/snapshot", headers=h, timeout=5).status_code == 200,
                   timeout=30, what="the agent's first push")
        hub.stop()
        agent.stop()
        assert _mode(data) == 0o700
        dbs = [p for p in data.iterdir() if p.name.endswith((".db", ".db-wal", ".db-shm"))]
        assert {p.name for p in dbs} >= {"hub.db"}
        for p in dbs:
            assert _mode(p) == 0o600, f"{p} is {oct(_mode(p))}"
        assert _mode(spool) == 0o700
        files = [p for p in spool.rglob("*") if p.is_file()]
        assert any(p.name == "credential.json" for p in files)
        for p in files:
            assert _mode(p) == 0o600, f"{p} is {oct(_mode(p))}"
        for p in spool.rglob("*"):
            if p.is_dir():
                assert _mode(p) == 0o700, f"{p} is {oct(_mode(p))}"
    finally:
        hub.stop()
        agent.stop()


def test_existing_loose_files_are_tightened(tmp_path: Path) -> None:
    from gpufleet.hub.service import Hub, HubOptions

    data = tmp_path / "data"
    Hub(HubOptions(data=data)).close()
    os.chmod(data, 0o755)
    os.chmod(data / "hub.db", 0o644)
    Hub(HubOptions(data=data)).close()
    assert _mode(data) == 0o700 and _mode(data / "hub.db") == 0o600
