"""Secrets stay where they belong, with real processes: the join token an agent was started with
never reaches the hub's API or files (issue 9: it was in the pushed process table and hub.db)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import httpx

import pytest

from gpufleet.hub.state import HubState

from access import bearer, make_api_key
from conftest import eventually
from realparts import Proc, free_port, gpufleet, hub_proc, join_token

pytestmark = pytest.mark.realparts  # starts real servers or gpufleet processes


def _wait(cond, timeout: float = 30.0, what: str = "condition"):  # type: ignore[no-untyped-def]
    return eventually(cond, timeout, what, interval=0.2)  # conftest's, with this file's defaults


KEY: dict[str, str] = {}  # an admin's API key (command lines are shown to admins), made per hub


def _snapshot(url: str, node: str) -> str:
    r = httpx.get(f"{url}/api/v1/nodes/{node}/snapshot", headers=bearer(KEY["key"]), timeout=5)
    return r.text if r.status_code == 200 else ""


def test_join_token_never_reaches_the_hub(tmp_path: Path) -> None:
    data = tmp_path / "data"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    hub = hub_proc(tmp_path, data, port)
    agents: list[Proc] = []
    try:
        KEY["key"] = make_api_key(data, "admin")
        token = join_token(data)
        common = ["--hub", url, "--token", token, "--simulate", "2xRTX4090", "--interval", "0.5"]
        # the default: the agent masks its own --token (and every other secret-looking value)
        agents.append(Proc(gpufleet("agent", *common, "--node", "masked", "--spool", str(tmp_path / "s1"),
                                    "--listen", f"127.0.0.1:{free_port()}"),
                           tmp_path / "a1.log"))
        # masking turned off on the agent: the hub still never keeps or serves its own secrets
        agents.append(Proc(gpufleet("agent", *common, "--node", "unmasked", "--spool", str(tmp_path / "s2"),
                                    "--listen", f"127.0.0.1:{free_port()}", "--mask", ""),
                           tmp_path / "a2.log"))
        for node in ("masked", "unmasked"):
            _wait(lambda: "--token" in _snapshot(url, node), what=f"{node}'s own process in its snapshot")
        masked = _snapshot(url, "masked")
        assert "--token ***" in masked and token not in masked
        unmasked = _snapshot(url, "unmasked")
        assert "--token gft_***" in unmasked and token not in unmasked
        everything = httpx.get(f"{url}/api/v1/snapshots", params={"processes": "true"}, headers=bearer(KEY["key"]),
                               timeout=5).text
        assert token not in everything
        hub.stop()  # saves every node's latest snapshot (zlib'd in hub.db) on the way out
        saved = HubState(next(data.rglob("hub.db"))).load_latest()
        assert {n for n, _, _ in saved} == {"masked", "unmasked"}
        assert all(b"--token " in snap and token.encode() not in snap for _, _, snap in saved)
        for f in data.rglob("*"):
            if f.is_file():
                assert token.encode() not in f.read_bytes(), f"join token in {f}"
        for spool in (tmp_path / "s1",):
            for f in spool.rglob("*"):
                if f.is_file() and f.name != "credential.json":
                    assert token.encode() not in f.read_bytes(), f"join token in {f}"
    finally:
        for a in agents:
            a.stop()
        hub.stop()


def test_token_file_keeps_the_token_off_the_command_line(tmp_path: Path) -> None:
    data = tmp_path / "data"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    hub = hub_proc(tmp_path, data, port)
    agent = None
    try:
        KEY["key"] = make_api_key(data, "admin")
        token = join_token(data)
        tf = tmp_path / "token"
        tf.write_text(token + "\n")
        tf.chmod(0o600)
        agent = Proc(gpufleet("agent", "--hub", url, "--token-file", str(tf), "--node", "n1", "--simulate",
                              "2xRTX4090", "--interval", "0.5", "--spool", str(tmp_path / "s"),
                              "--listen", f"127.0.0.1:{free_port()}"), tmp_path / "agent.log")
        _wait(lambda: "--token-file" in _snapshot(url, "n1"), what="the agent joined with its token file")
        assert token not in Path(f"/proc/{agent.pid}/cmdline").read_text()
        r = subprocess.run(gpufleet("agent", "--hub", url, "--token-file", str(tmp_path / "nope")),
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 2 and "--token-file: cannot read" in r.stderr and "Traceback" not in r.stderr
    finally:
        if agent is not None:
            agent.stop()
        hub.stop()
