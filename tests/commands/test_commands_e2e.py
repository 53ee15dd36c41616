"""Remote commands end to end: a real hub, real agents (simulated backend) and the real CLI."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from access import bearer, make_api_key
from conftest import eventually
from realparts import Proc, free_port, gpufleet

pytestmark = pytest.mark.realparts  # starts real servers or gpufleet processes


@dataclass
class Fleet:
    url: str
    data: Path
    tmp: Path
    agents: dict[str, Proc]


KEY: dict[str, str] = {}  # an admin's API key, made by the fleet fixture


def _cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(gpufleet(*args), capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "GPUFLEET_API_KEY": KEY.get("key", "")})


def _wait(cond, timeout: float = 30.0, what: str = "condition"):  # type: ignore[no-untyped-def]
    return eventually(cond, timeout, what, interval=0.2)  # conftest's, with this file's defaults


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    tmp = tmp_path_factory.mktemp("commands")
    data = tmp / "hub"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    procs: list[Proc] = []
    try:
        hub = Proc(gpufleet("hub", "--listen", f"127.0.0.1:{port}", "--data", str(data)), tmp / "hub.log")
        procs.append(hub)
        hub.wait_http(f"{url}/healthz")
        KEY["key"] = make_api_key(data, "admin", user="ops")  # runs commands and reads the audit log
        token = _cli("token", "create", "--data", str(data)).stdout.split()[-1]
        allow = ["--allow-commands", "echo *", "--allow-commands", "sleep *", "--allow-commands", "false",
                 "--allow-commands", "seq *", "--command-user", "nobody"]
        agents = {}
        for node, extra in (("gpu-a", allow), ("gpu-b", [*allow, "--label", "rack=r2"]), ("plain-c", [])):
            p = Proc(gpufleet("agent", "--simulate", "cpu-only", "--node", node, "--listen",
                              f"127.0.0.1:{free_port()}", "--hub", url, "--token", token,
                              "--spool", str(tmp / f"spool-{node}"), *extra), tmp / f"agent-{node}.log")
            procs.append(p)
            agents[node] = p

        def ready() -> bool:
            r = httpx.get(f"{url}/api/v1/commands/targets", headers=bearer(KEY["key"]), timeout=5).json()["nodes"]
            fetching = {n["name"] for n in r if n["fetching"]}
            return {n["name"] for n in r} == {"gpu-a", "gpu-b", "plain-c"} and fetching == {"gpu-a", "gpu-b"}

        _wait(ready, 60, "agents registered and fetching commands")
        yield Fleet(url, data, tmp, agents)
    finally:
        for p in reversed(procs):
            p.stop()


def _audit_run(fleet: Fleet, run_argv: list[str]) -> dict:
    out = _cli("audit", "--hub", fleet.url, "--since", "1h", "--format", "json")
    assert out.returncode == 0, out.stderr
    runs = [r for r in json.loads(out.stdout) if r["argv"] == run_argv]
    assert runs, out.stdout
    return runs[0]


def test_run_prints_each_nodes_output_and_exits_zero(fleet: Fleet) -> None:
    out = _cli("run", "--hub", fleet.url, "--nodes", "gpu-*", "--", "echo", "hello", "fleet")
    assert out.returncode == 0, out.stdout + out.stderr
    for node in ("gpu-a", "gpu-b"):
        assert f"{node}  ok  exit 0" in out.stdout
    assert out.stdout.count("  | hello fleet") == 2
    assert "2 node(s): 2 ok" in out.stderr


def test_label_selects_nodes(fleet: Fleet) -> None:
    out = _cli("run", "--hub", fleet.url, "--label", "rack=r2", "--", "echo", "rack")
    assert out.returncode == 0, out.stderr
    assert "gpu-b  ok" in out.stdout and "gpu-a" not in out.stdout


def test_any_node_not_succeeding_makes_the_exit_status_nonzero(fleet: Fleet) -> None:
    out = _cli("run", "--hub", fleet.url, "--nodes", "*", "--", "echo", "all")
    assert out.returncode == 1
    assert "plain-c  unavailable  node is not fetching commands" in out.stdout
    assert out.stdout.count("  ok  exit 0") == 2
    failed = _cli("run", "--hub", fleet.url, "--nodes", "gpu-a", "--", "false")
    assert failed.returncode == 1 and "gpu-a  failed  exit 1" in failed.stdout


def test_not_allowed_command_is_refused_and_audited(fleet: Fleet) -> None:
    out = _cli("run", "--hub", fleet.url, "--nodes", "gpu-*", "--", "cat", "/etc/shadow")
    assert out.returncode == 1
    assert out.stdout.count("refused  not allowed on this node") == 2
    run = _audit_run(fleet, ["cat", "/etc/shadow"])
    assert run["who"] and run["nodes"] == ["gpu-a", "gpu-b"] and run["selector"]["nodes"] == "gpu-*"
    assert {(r["node"], r["status"]) for r in run["results"]} == {("gpu-a", "refused"), ("gpu-b", "refused")}
    assert all("not allowed" in r["reason"] for r in run["results"])
    csv = _cli("audit", "--hub", fleet.url, "--since", "1h", "--format", "csv").stdout.splitlines()
    assert csv[0] == "time,who,run,node,status,exit,duration,argv,reason"
    assert any(",gpu-a,refused,,," in line and "cat /etc/shadow" in line for line in csv)


def test_no_matching_node_is_one_clear_line(fleet: Fleet) -> None:
    out = _cli("run", "--hub", fleet.url, "--nodes", "nothing-*", "--", "echo", "x")
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr.strip() == "gpufleet: error: no node matches nodes 'nothing-*': see GET /api/v1/nodes"
    assert _audit_run(fleet, ["echo", "x"])["status"] == "no_match"


def test_timeout_kills_the_command(fleet: Fleet) -> None:
    started = time.monotonic()
    out = _cli("run", "--hub", fleet.url, "--nodes", "gpu-a", "--timeout", "1s", "--", "sleep", "60")
    assert out.returncode == 1 and "gpu-a  timeout  timed out after 1 s" in out.stdout
    assert time.monotonic() - started < 15


def test_ctrl_c_cancels_the_run(fleet: Fleet) -> None:
    logs = {n: fleet.agents[n].log().count("running command") for n in ("gpu-a", "gpu-b")}
    p = subprocess.Popen(gpufleet("run", "--hub", fleet.url, "--nodes", "gpu-*", "--", "sleep", "120"),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env={**os.environ, "GPUFLEET_API_KEY": KEY["key"]})
    try:
        _wait(lambda: all(fleet.agents[n].log().count("running command") > c for n, c in logs.items()), 20,
              "both agents running the command")
        started = time.monotonic()
        p.send_signal(signal.SIGINT)
        stdout, stderr = p.communicate(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 130
    assert time.monotonic() - started < 15
    assert stdout.count("  cancelled  ") == 2, stdout + stderr
    run = _audit_run(fleet, ["sleep", "120"])
    assert run["cancelled_by"] == run["who"]
    assert {r["status"] for r in run["results"]} == {"cancelled"}


def test_audit_log_cannot_be_rewritten(fleet: Fleet) -> None:
    db = sqlite3.connect(fleet.data / "hub.db")
    try:
        assert db.execute("SELECT count(*) FROM command_audit").fetchone()[0] > 0
        for sql in ("UPDATE command_audit SET who='someone else'", "DELETE FROM command_audit"):
            with pytest.raises(sqlite3.DatabaseError, match="append-only"):
                db.execute(sql)
    finally:
        db.close()
    paths = httpx.get(f"{fleet.url}/openapi.json", timeout=5).json()["paths"]
    assert set(paths["/api/v1/audit"]) == {"get"}


def test_hub_key_is_private_and_pinned_by_agents(fleet: Fleet) -> None:
    key = fleet.data / "command_key.pem"
    assert key.stat().st_mode & 0o077 == 0
    pinned = json.loads((fleet.tmp / "spool-gpu-a" / "credential.json").read_text())["hub_keys"][fleet.url]
    from cryptography.hazmat.primitives import serialization

    from gpufleet.command_wire import b64

    private = serialization.load_pem_private_key(key.read_bytes(), password=None)
    public = private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    assert pinned == b64(public)


def test_long_output_arrives_cut_at_64_kb_with_a_marker(fleet: Fleet) -> None:
    out = _cli("run", "--hub", fleet.url, "--nodes", "gpu-a", "--", "seq", "1", "30000")
    assert out.returncode == 0, out.stderr
    lines = [line[4:] for line in out.stdout.splitlines() if line.startswith("  | ")]
    total = sum(len(f"{i}\n") for i in range(1, 30001))
    assert lines[-1] == f"[gpufleet: output truncated: {total} bytes in all, first 65536 kept]"
    assert lines[:100] == [str(i) for i in range(1, 101)]
    assert sum(len(x) + 1 for x in lines[:-1]) in range(65536 - 8, 65536 + 2)  # the cut may split a line


def test_a_report_for_a_command_never_sent_is_audited(fleet: Fleet) -> None:
    cred = json.loads((fleet.tmp / "spool-gpu-b" / "credential.json").read_text())["credentials"]
    credential = next(iter(cred.values()))["credential"]
    r = httpx.post(f"{fleet.url}/api/v1/commands/f0rged0000000000/result", timeout=5,
                   headers={"Authorization": f"Bearer {credential}"},
                   json={"status": "refused", "reason": "bad signature: not signed by the hub key pinned at registration"})
    assert r.status_code == 200 and r.json() == {"accepted": False}
    out = json.loads(_cli("audit", "--hub", fleet.url, "--since", "1h", "--format", "json").stdout)
    run = next(x for x in out if x["id"] == "f0rged0000000000")
    assert run["who"] is None and run["results"][0]["node"] == "gpu-b"
    assert "bad signature" in run["results"][0]["reason"] and "not outstanding" in run["results"][0]["reason"]
    assert httpx.post(f"{fleet.url}/api/v1/commands/x/result", json={"status": "ok"}, timeout=5).status_code == 401
