"""Node identity with real processes: a name is the node's own; admins revoke and forget it."""

from __future__ import annotations

import subprocess
from pathlib import Path

import httpx

import pytest

from access import bearer, make_api_key
from conftest import eventually
from realparts import Proc, free_port, gpufleet, hub_proc

pytestmark = pytest.mark.realparts  # starts real servers or gpufleet processes


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(gpufleet(*args), capture_output=True, text=True, timeout=60)


def _wait(cond, timeout: float = 30.0, what: str = "condition"):  # type: ignore[no-untyped-def]
    return eventually(cond, timeout, what, interval=0.2)  # conftest's, with this file's defaults


def _agent(tmp: Path, url: str, token: str, spool: Path, name: str, listen_port: int) -> Proc:
    return Proc(gpufleet("agent", "--hub", url, "--token", token, "--node", "gpu-a", "--simulate", "2xRTX4090",
                         "--interval", "0.5", "--spool", str(spool), "--listen", f"127.0.0.1:{listen_port}"),
                tmp / f"{name}.log")


KEY: dict[str, str] = {}  # a viewer's API key, made once the hub's data directory exists


def _last_seen(url: str) -> float:
    try:
        return float(httpx.get(f"{url}/api/v1/nodes/gpu-a", headers=bearer(KEY["key"]), timeout=5).json()
                     .get("last_seen") or 0)
    except (httpx.HTTPError, ValueError):
        return 0.0


def _backlog(agent_port: int) -> float:
    text = httpx.get(f"http://127.0.0.1:{agent_port}/metrics", timeout=5).text
    return next((float(line.split()[-1]) for line in text.splitlines()
                 if line.startswith("gpufleet_agent_push_backlog ") or line.startswith("gpufleet_agent_push_backlog{")),
                0.0)


def test_takeover_refused_revoke_and_forget(tmp_path: Path) -> None:
    data = tmp_path / "data"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    hub = hub_proc(tmp_path, data, port)
    agents: list[Proc] = []
    try:
        KEY["key"] = make_api_key(data, "viewer")
        token = _run("token", "create", "--data", str(data), "--uses", "3", "--expires", "1d").stdout.split()[-1]
        real_port = free_port()
        real = _agent(tmp_path, url, token, tmp_path / "spool-real", "real", real_port)
        agents.append(real)
        _wait(lambda: _last_seen(url) > 0, what="the real node pushing")

        # An impostor with a join token but without the node's credential: refused, clearly.
        impostor = _agent(tmp_path, url, token, tmp_path / "spool-impostor", "impostor", free_port())
        agents.append(impostor)
        _wait(lambda: "already registered to another agent" in impostor.log(), what="the impostor's refusal")
        seen = _last_seen(url)
        _wait(lambda: _last_seen(url) > seen, what="the real node still pushing")  # not locked out
        impostor.stop()

        # Revoke: the real node's credential stops working on the running hub.
        r = _run("node", "revoke", "gpu-a", "--data", str(data))
        assert r.returncode == 0, r.stderr
        _wait(lambda: "was revoked by an admin" in real.log(), what="the revoked agent's log line")
        assert "gpu-a" in _run("node", "list", "--data", str(data)).stdout
        assert "revoked" in _run("node", "list", "--data", str(data)).stdout
        stopped = _last_seen(url)
        # A revoked node must not push: wait until it has kept three collections back (its own
        # backlog says so), then the hub must still have nothing newer.
        _wait(lambda: _backlog(real_port) >= 3, what="three collections held back by the revoked agent")
        assert _last_seen(url) == stopped

        # Forget: the name is free again; the agent joins again with its join token.
        r = _run("node", "forget", "gpu-a", "--data", str(data))
        assert r.returncode == 0, r.stderr
        _wait(lambda: _last_seen(url) > stopped, timeout=60, what="the node back after forget")

        r = _run("node", "forget", "ghost", "--data", str(data))
        assert r.returncode == 2 and "no node named 'ghost'" in r.stderr

        listed = _run("token", "list", "--data", str(data)).stdout
        assert "uses 2/3" in listed and "expires" in listed
        prefix = listed.split()[0]
        assert _run("token", "revoke", prefix, "--data", str(data)).returncode == 0
        assert "revoked" in _run("token", "list", "--data", str(data)).stdout
        bad = _run("token", "create", "--data", str(data), "--uses", "0")
        assert bad.returncode == 2 and "--uses" in bad.stderr
        bad = _run("token", "create", "--data", str(data), "--expires", "soon")
        assert bad.returncode == 2 and "not a duration" in bad.stderr
    finally:
        for a in agents:
            a.stop()
        hub.stop()
