"""A real agent process fed signed command messages straight from a hub the test controls.

The test hub hands out its own Ed25519 public key at registration (the agent pins it), then
serves whatever messages a test queues on the long poll and collects the agent's reports. So each
case reaches the real agent's verifier and executor exactly as a message from a hub would:
forged, replayed, expired, tampered, misaddressed and not-allowed messages must be refused and
reported; allowed ones run as the command user, with output capped and timeouts killing the
whole process group.
"""

from __future__ import annotations

import json
import os
import queue
import secrets
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gpufleet.command_wire import MAX_OUTPUT, b64, signed_bytes
from conftest import eventually
from realparts import Proc, free_port, gpufleet, json_reply

NODE = "cmd-node"


def _pub(key: Ed25519PrivateKey) -> str:
    return b64(key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw))


class ScriptedHub:
    """Just enough of a hub: register, push, the command long poll and result reports."""

    def __init__(self) -> None:
        self.key = Ed25519PrivateKey.generate()
        self.outbox: queue.Queue[dict[str, Any]] = queue.Queue()
        self.results: dict[str, dict[str, Any]] = {}
        self.cond = threading.Condition()
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802
                msgs = []
                try:
                    msgs.append(hub.outbox.get(timeout=0.5))
                    while True:  # and whatever else is queued, in one answer as a hub would
                        msgs.append(hub.outbox.get_nowait())
                except queue.Empty:
                    pass
                json_reply(self, {"messages": msgs})

            def do_POST(self) -> None:  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))) or b"{}")
                if self.path == "/api/v1/register":
                    json_reply(self, {"node": body["node"], "credential": "gfn_test", "command_key": _pub(hub.key)})
                elif self.path == "/api/v1/push":
                    json_reply(self, {"accepted": 1, "duplicates": 0})
                else:
                    run_id = self.path.split("/")[4]
                    with hub.cond:
                        hub.results.setdefault(run_id, body)
                        hub.results.setdefault(run_id + "#all", []).append(body)  # type: ignore[arg-type]
                        hub.cond.notify_all()
                    json_reply(self, {"accepted": True})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def payload(self, argv: list[str], *, node: str = NODE, timeout: float = 10, age: float = 0,
                kind: str = "run", run_id: str | None = None) -> dict[str, Any]:
        now = time.time() - age
        return {"kind": kind, "id": run_id or secrets.token_hex(8), "node": node, "argv": argv,
                "nonce": secrets.token_urlsafe(12), "issued_at": round(now, 3), "expires_at": round(now + 60, 3),
                "timeout": timeout}

    def sign(self, payload: dict[str, Any], key: Ed25519PrivateKey | None = None) -> dict[str, Any]:
        return {"payload": payload, "signature": b64((key or self.key).sign(signed_bytes(payload)))}

    def send(self, message: dict[str, Any]) -> None:
        self.outbox.put(message)

    def result(self, run_id: str, timeout: float = 20, count: int = 1) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        with self.cond:
            while len(self.results.get(run_id + "#all", [])) < count:  # type: ignore[arg-type]
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no report for command {run_id} after {timeout} s")
                self.cond.wait(left)
            return self.results[run_id + "#all"][count - 1]  # type: ignore[index,no-any-return]


@pytest.fixture(scope="module")
def hub_and_agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ScriptedHub, Proc]]:
    tmp = tmp_path_factory.mktemp("cmdagent")
    hub = ScriptedHub()
    port = free_port()
    args = gpufleet("agent", "--simulate", "cpu-only", "--node", NODE, "--listen", f"127.0.0.1:{port}",
                    "--hub", hub.url, "--token", "gft_test", "--spool", str(tmp / "spool"),
                    "--allow-commands", "echo *", "--allow-commands", "seq *", "--allow-commands", "sh -c *",
                    "--allow-commands", "id -un", "--allow-commands", "sleep *", "--command-user", "nobody")
    agent = Proc(args, tmp / "agent.log", env={"GPUFLEET_SECRET_TEST": "s3cret"})
    try:
        agent.wait_http(f"http://127.0.0.1:{port}/healthz")
        yield hub, agent
    finally:
        agent.stop()
        hub.server.shutdown()


def _run(hub: ScriptedHub, argv: list[str], **kw: Any) -> dict[str, Any]:
    p = hub.payload(argv, **kw)
    hub.send(hub.sign(p))
    return hub.result(p["id"])


def test_allowed_command_runs_as_the_command_user(hub_and_agent: tuple[ScriptedHub, Proc]) -> None:
    hub, _ = hub_and_agent
    r = _run(hub, ["echo", "hello", "world"])
    assert r["status"] == "ok" and r["exit_code"] == 0 and r["stdout"] == "hello world\n"
    assert _run(hub, ["id", "-un"])["stdout"].strip() == "nobody"


def test_command_gets_no_agent_environment(hub_and_agent: tuple[ScriptedHub, Proc]) -> None:
    hub, _ = hub_and_agent
    r = _run(hub, ["sh", "-c", "echo [$GPUFLEET_SECRET_TEST] $PATH"])
    assert r["stdout"].startswith("[] /usr/local/sbin:"), r


def test_forged_signature_is_refused(hub_and_agent: tuple[ScriptedHub, Proc]) -> None:
    hub, agent = hub_and_agent
    p = hub.payload(["echo", "forged"])
    hub.send(hub.sign(p, key=Ed25519PrivateKey.generate()))
    r = hub.result(p["id"])
    assert r["status"] == "refused" and "bad signature" in r["reason"]
    assert "stdout" not in r


def test_tampered_argv_is_refused(hub_and_agent: tuple[ScriptedHub, Proc]) -> None:
    hub, _ = hub_and_agent
    p = hub.payload(["echo", "harmless"])
    msg = hub.sign(p)
    msg["payload"] = {**p, "argv": ["echo", "changed after signing"]}
    hub.send(msg)
    r = hub.result(p["id"])
    assert r["status"] == "refused" and "bad signature" in r["reason"]


def test_replayed_nonce_is_refused(hub_and_agent: tuple[ScriptedHub, Proc]) -> None:
    hub, _ = hub_and_agent
    p = hub.payload(["echo", "once"])
    msg = hub.sign(p)
    hub.send(msg)
    assert hub.result(p["id"])["status"] == "ok"
    hub.send(msg)
    second = hub.result(p["id"], count=2)
    assert second["status"] == "refused" and "replayed" in second["reason"]


def test_expired_message_is_refused(hub_and_agent: tuple[ScriptedHub, Proc]) -> None:
    hub, _ = hub_and_agent
    r = _run(hub, ["echo", "late"], age=120)  # issued 2 min ago, valid for 60 s
    assert r["status"] == "refused" and "expired" in r["reason"]


def test_message_for_another_node_is_refused(hub_and_agent: tuple[ScriptedHub, Proc]) -> None:
    hub, _ = hub_and_agent
    r = _run(hub, ["echo", "x"], node="some-other-node")
    assert r["status"] == "refused" and "not this node" in r["reason"]


def test_not_allowed_argv_is_refused_though_signed(hub_and_agent: tuple[ScriptedHub, Proc]) -> None:
    hub, _ = hub_and_agent
    for argv in (["cat", "/etc/shadow"], ["id"], ["id", "-un", "root"], ["/bin/echo", "x"]):
        r = _run(hub, argv)
        assert r["status"] == "refused" and "not allowed" in r["reason"], (argv, r)


def test_output_is_capped_with_a_marker(hub_and_agent: tuple[ScriptedHub, Proc]) -> None:
    hub, _ = hub_and_agent
    r = _run(hub, ["seq", "1", "30000"])
    full = "".join(f"{i}\n" for i in range(1, 30001))
    assert r["status"] == "ok" and r["stdout_bytes"] == len(full)
    kept, marker = r["stdout"][:MAX_OUTPUT], r["stdout"][MAX_OUTPUT:]
    assert kept == full[:MAX_OUTPUT]
    assert f"output truncated: {len(full)} bytes in all" in marker


def test_timeout_kills_the_process_group(hub_and_agent: tuple[ScriptedHub, Proc]) -> None:
    hub, _ = hub_and_agent
    started = time.monotonic()
    # The shell starts a background sleep, prints its pid and waits: a kill of the shell alone
    # would leave the sleep running.
    r = _run(hub, ["sh", "-c", "sleep 300 & echo $!; wait"], timeout=1)
    assert r["status"] == "timeout" and r["exit_code"] is None, r
    assert time.monotonic() - started < 10
    child = int(r["stdout"].split()[0])
    eventually(lambda: not Path(f"/proc/{child}").exists(), timeout=5,
               what="the command's background child to be gone after the timeout")


def test_signed_cancel_kills_a_running_command(hub_and_agent: tuple[ScriptedHub, Proc]) -> None:
    hub, _ = hub_and_agent
    p = hub.payload(["sh", "-c", "echo started; sleep 300"], timeout=600)
    hub.send(hub.sign(p))
    # A cancel for a command not running (yet) is a no-op by design: repeat until it lands.
    deadline = time.monotonic() + 20
    while p["id"] not in hub.results and time.monotonic() < deadline:
        hub.send(hub.sign(hub.payload([], kind="cancel", run_id=p["id"])))
        with hub.cond:
            hub.cond.wait(0.5)
    r = hub.result(p["id"])
    assert r["status"] == "cancelled" and r["duration"] < 30


def test_nonces_survive_an_agent_restart(tmp_path: Path) -> None:
    from gpufleet.agent.command_verify import Refused, Verifier

    hub = ScriptedHub()
    try:
        key = _pub(hub.key)
        msg = hub.sign(hub.payload(["echo", "x"]))
        first = Verifier(NODE, lambda: key, ["echo *"], nonce_file=tmp_path / "nonces")
        first.check(msg)
        again = Verifier(NODE, lambda: key, ["echo *"], nonce_file=tmp_path / "nonces")
        with pytest.raises(Refused, match="replayed"):
            again.check(msg)
        assert os.stat(tmp_path / "nonces").st_mode & 0o077 == 0
    finally:
        hub.server.shutdown()


def test_background_leftovers_do_not_hold_the_result(hub_and_agent: tuple[ScriptedHub, Proc]) -> None:
    hub, _ = hub_and_agent
    # The shell exits at once, leaving a sleep that holds stdout open: the result must come back
    # now (not at the timeout), and the sleep must be gone with it.
    r = _run(hub, ["sh", "-c", "sleep 300 & echo $!"], timeout=60)
    assert r["status"] == "ok" and r["exit_code"] == 0 and r["duration"] < 10, r
    child = int(r["stdout"].split()[0])
    eventually(lambda: not Path(f"/proc/{child}").exists(), timeout=5,
               what="the sleep left holding stdout to be gone")


def test_closing_the_pipes_does_not_escape_the_timeout(hub_and_agent: tuple[ScriptedHub, Proc]) -> None:
    hub, _ = hub_and_agent
    r = _run(hub, ["sh", "-c", "echo before; exec >&- 2>&-; sleep 300"], timeout=1)
    assert r["status"] == "timeout" and r["stdout"] == "before\n", r


def test_a_cancel_that_overtakes_its_command_still_stops_it(hub_and_agent: tuple[ScriptedHub, Proc]) -> None:
    hub, _ = hub_and_agent
    p = hub.payload(["sleep", "300"], timeout=600)
    # Both in one poll answer: the cancel is handled while the command's thread is still starting.
    hub.outbox.put(hub.sign(p))
    hub.outbox.put(hub.sign(hub.payload([], kind="cancel", run_id=p["id"])))
    r = hub.result(p["id"])
    assert r["status"] == "cancelled" and r["duration"] < 30, r
