"""`--api-key` / GPUFLEET_API_KEY reach the hub as `Authorization: Bearer KEY`, and a refusal is a
one-line error naming the fix. The hub's own key checks come with its auth work; until then a
stdlib HTTP server that answers like a key-checking hub (401 without the key) stands in for it."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler

import pytest

from realparts import gpufleet, json_reply, serving

KEY = "gfk_test-key"


class KeyedHub(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802  (http.server's name)
        if self.headers.get("Authorization") != f"Bearer {KEY}":
            json_reply(self, {"detail": "API key required"}, 401)
        elif self.path.startswith("/api/v1/snapshots"):
            json_reply(self, {"snapshots": [{"node": "n1", "timestamp": 1.0, "values": {}, "gpus": [
                {"index": 0, "model": "X", "values": {"up": 1.0, "utilization_ratio": 0.0}}]}]})
        elif self.path.startswith("/api/v1/nodes"):
            json_reply(self, {"nodes": [{"name": "n1", "status": "up"}]})
        else:
            json_reply(self, {"alerts": []})

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def keyed_hub() -> Iterator[str]:
    with serving(KeyedHub) as url:
        yield url


def test_api_key_flag_and_env(keyed_hub: str) -> None:
    env = {k: v for k, v in os.environ.items() if k != "GPUFLEET_API_KEY"}
    r = subprocess.run(gpufleet("free", "--hub", keyed_hub, "--json"), capture_output=True, text=True, env=env,
                       timeout=30)
    assert r.returncode == 2 and "pass --api-key KEY or set GPUFLEET_API_KEY" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    r = subprocess.run(gpufleet("free", "--hub", keyed_hub, "--json", "--api-key", KEY), capture_output=True,
                       text=True, env=env, timeout=30)
    assert r.returncode == 0 and json.loads(r.stdout)["count"] == 1, r.stderr
    r = subprocess.run(gpufleet("ls", "--hub", keyed_hub), capture_output=True, text=True,
                       env={**env, "GPUFLEET_API_KEY": KEY}, timeout=30)
    assert r.returncode == 0 and "n1" in r.stdout, r.stderr
    r = subprocess.run(gpufleet("top", "--hub", keyed_hub, "--once"), capture_output=True, text=True,
                       env={**env, "GPUFLEET_API_KEY": KEY, "COLUMNS": "100"}, timeout=30)
    assert r.returncode == 0 and "1 nodes, 1 GPUs" in r.stdout, r.stderr
