"""The agent runs with nothing but its own dependencies importable (issue 10: `pip install gpufleet`
is the agent alone): it collects, serves /metrics, registers with a real hub, pushes, polls for
commands, and never tries to import a hub-side library. Hub-side commands there say in one line
what to install. (tests/packaging/test_wheel_install.py checks the same on a real install.)"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import httpx
import pytest

from conftest import eventually
from realparts import PYTHON, Proc, free_port, gpufleet, join_token

pytestmark = pytest.mark.realparts  # starts a real hub and agent

AGENT_ONLY = [PYTHON, str(Path(__file__).with_name("agent_only.py"))]


def _metric(url: str, name: str) -> float:
    for line in httpx.get(f"{url}/metrics", timeout=5).text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.split()[-1])
    return 0.0


def test_agent_pushes_with_hub_libraries_unimportable(tmp_path: Path) -> None:
    data, blocked = tmp_path / "data", tmp_path / "blocked.log"
    token = join_token(data, "--new")
    port, agent_port = free_port(), free_port()
    hub_url, agent_url = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{agent_port}"
    hub = Proc(gpufleet("hub", "--listen", f"127.0.0.1:{port}", "--data", str(data)), tmp_path / "hub.log")
    agent = None
    try:
        hub.wait_http(f"{hub_url}/healthz", timeout=90)  # a loaded CI machine starts a hub slowly
        agent = Proc([*AGENT_ONLY, "agent", "--hub", hub_url, "--token", token, "--simulate", "2xRTX4090",
                      "--interval", "0.5", "--listen", f"127.0.0.1:{agent_port}", "--spool", str(tmp_path / "spool"),
                      "--allow-commands", "nvidia-smi *", "--command-user", "nobody"],
                     tmp_path / "agent.log", env={"BLOCKED_LOG": str(blocked)})
        agent.wait_http(f"{agent_url}/healthz", timeout=90)
        eventually(lambda: _metric(agent_url, "gpufleet_agent_push_snapshots_total") >= 2,
                   timeout=30, what="the hub accepting the agent's pushes")
        assert _metric(agent_url, "gpufleet_agent_hub_up") == 1
        assert "remote commands on" in agent.log()  # the command poller (PyNaCl verifier) started too
    finally:
        if agent is not None:
            agent.stop()
        hub.stop()
    log = agent.log_path.read_text()
    assert "Traceback" not in log, log[-3000:]
    assert not blocked.exists(), f"the agent tried to import hub-side libraries: {blocked.read_text()}"


@pytest.mark.parametrize(("args", "extra"), [(["hub"], "hub"), (["up"], "hub"), (["rules", "list"], "hub"),
                                             (["tls", "selfsigned", "--out", "x"], "hub"),
                                             (["stack", "generate", "--out", "x", "--hub", "http://h:8080"], "hub"),
                                             (["top", "--once"], "top"), (["ls"], "top")])
def test_hub_side_commands_say_what_to_install(tmp_path: Path, args: list[str], extra: str) -> None:
    r = subprocess.run([*AGENT_ONLY, *args], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    assert r.stdout == ""
    assert r.stderr.count("\n") == 1, r.stderr  # one line, no traceback
    assert r.stderr.startswith(f"gpufleet: error: `gpufleet {args[0]}` needs gpufleet's {extra} extra")
    assert r.stderr.rstrip().endswith(f"pip install 'gpufleet[{extra}]'")
    assert not list(tmp_path.iterdir())  # nothing half-made (no data directory, no certificate)


def test_help_lists_every_command_without_the_extras() -> None:
    r = subprocess.run([*AGENT_ONLY, "--help"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    for name in ("agent", "hub", "up", "rules", "top", "ls", "user"):
        assert f"\n  {name} " in r.stdout


def test_agent_side_commands_work_without_the_extras(tmp_path: Path) -> None:
    """What a node runs besides the agent: its unit (`service install agent`) and the fleet check."""
    r = subprocess.run([*AGENT_ONLY, "service", "install", "agent", "--hub", "http://hub.example:8080", "--dry-run"],
                       capture_output=True, text=True, timeout=60, env={**os.environ, "BLOCKED_LOG": str(tmp_path / "b")})
    assert r.returncode == 0, r.stderr
    assert "ExecStart=" in r.stdout and "--hub http://hub.example:8080" in r.stdout
    nowhere = f"http://127.0.0.1:{free_port()}"
    r = subprocess.run([*AGENT_ONLY, "status", "--hub", nowhere], capture_output=True, text=True, timeout=60,
                       env={**os.environ, "BLOCKED_LOG": str(tmp_path / "b")})
    assert r.returncode == 2 and f"hub {nowhere} is unreachable" in r.stderr, r.stderr
    assert not (tmp_path / "b").exists(), (tmp_path / "b").read_text()
