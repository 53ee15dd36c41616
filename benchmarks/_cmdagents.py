"""N command-polling agents in one process, for bench_commands.py (which starts a few of these).

200 agent processes would need ~10 GB of RSS and more CPU than a 2-core machine has just to start,
so this hosts many nodes in one process instead: each registers with the hub with the join token
(pinning the hub's key as a real agent does), then runs the agent's own CommandPoller, Verifier and
Executor (agent/commands.py) on its own thread, with its own HTTP client and long poll. Only
collection and pushing are left out: commands do not use them. Commands run as this process's own
user, as they do on an agent not started as root: switching users (--command-user) rules out
vfork, and forking a process hosting 50 nodes' threads then costs ~2 ms more CPU per command here,
a cost a real node pays once for itself, not 200 times on 2 cores.

    python benchmarks/_cmdagents.py --hub URL --token T [--first 0] --nodes 50 --dir DIR

Prints {"event": "ready"} once every node is polling; runs until killed.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

import httpx  # noqa: E402

from gpufleet.agent.command_exec import Executor  # noqa: E402
from gpufleet.agent.command_policy import resolve_user  # noqa: E402
from gpufleet.agent.command_verify import Verifier  # noqa: E402
from gpufleet.agent.commands import CommandPoller  # noqa: E402
from gpufleet.agent.credentials import CredentialStore  # noqa: E402


def node_name(i: int) -> str:
    return f"bench-{i:04d}"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--hub", required=True)
    ap.add_argument("--token", required=True)
    ap.add_argument("--first", type=int, default=0, help="number of the first node hosted here")
    ap.add_argument("--nodes", type=int, default=200)
    ap.add_argument("--dir", type=Path, required=True)
    a = ap.parse_args()
    run_as = resolve_user(None, allow_root=True)
    client = httpx.Client(timeout=30)
    pollers = []
    for i in range(a.first, a.first + a.nodes):
        node = node_name(i)
        r = client.post(f"{a.hub}/api/v1/register", json={"node": node, "labels": {"bench": "commands"}},
                        headers={"Authorization": f"Bearer {a.token}"})
        r.raise_for_status()
        body = r.json()
        store = CredentialStore(a.dir / node / "credential.json")
        store.save(a.hub, node, body["credential"])
        store.pin_hub_key(a.hub, body["command_key"])
        cred = body["credential"]
        verifier = Verifier(node, lambda s=store: s.hub_key(a.hub), ["true", "true *"],
                            nonce_file=a.dir / node / "command_nonces")
        p = CommandPoller(a.hub, lambda c=cred: c, verifier, Executor(run_as))
        p.start()
        pollers.append(p)
    print(json.dumps({"event": "ready", "nodes": len(pollers)}), flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        for p in pollers:
            p.stop()
        time.sleep(0.1)


if __name__ == "__main__":
    main()
