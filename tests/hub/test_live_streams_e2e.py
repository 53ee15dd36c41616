"""Live-update streams on a real hub process: many pages open and close (some read, some never
do, some hang up before the answer) and the hub keeps nothing of them; pages opening in the
same moment get the same fleet state."""

from __future__ import annotations

import re
import socket
import time
from pathlib import Path

import httpx
import pytest

from access import make_api_key
from conftest import eventually
from realparts import free_port, hub_proc, join_token
from sample_snapshot import sample_snapshot

from gpufleet.snapshot import to_json

pytestmark = pytest.mark.realparts  # starts a real hub process

ROUNDS = 4  # of 15 streams from one client address: past the 16 it may hold at once, so slots must come back


def _open(port: int, key: str) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=20, source_address=("127.0.9.1", 0))
    s.sendall(f"GET /api/v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {key}\r\n\r\n".encode())
    return s


def _full_state(s: socket.socket) -> bytes:
    got = b""
    while True:
        chunk = s.recv(65536)
        assert chunk, f"stream ended early: {got[:300]!r}"
        got += chunk
        m = re.search(rb"event: fleet\nid: [^\n]*\ndata: (.*?)\n\n", got, re.S)
        if m:
            assert got.startswith(b"HTTP/1.1 200"), got[:200]
            return m.group(1)


def _streams_open(url: str, key: str) -> float:
    text = httpx.get(f"{url}/metrics", headers={"Authorization": f"Bearer {key}"}, timeout=10).text
    m = re.search(r"^gpufleet_hub_ui_streams_open (\S+)$", text, re.M)
    assert m, "no gpufleet_hub_ui_streams_open on /metrics"
    return float(m.group(1))


def test_streams_opened_and_closed_leave_nothing(tmp_path: Path) -> None:
    data = tmp_path / "data"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    hub = hub_proc(tmp_path, data, port)
    try:
        token = join_token(data)
        key = make_api_key(data, "viewer")
        for n in ("a", "b"):
            cred = httpx.post(f"{url}/api/v1/register", headers={"Authorization": f"Bearer {token}"},
                              json={"node": n, "labels": {}}, timeout=10).json()["credential"]
            snap = sample_snapshot(n)
            snap.timestamp = time.time()
            r = httpx.post(f"{url}/api/v1/push", content=b'{"snapshots":[' + to_json(snap) + b"]}", timeout=10,
                           headers={"Authorization": f"Bearer {cred}", "Content-Type": "application/json"})
            assert r.status_code == 200, r.text
        def published() -> bool:  # the broker publishes a few times a second: wait for both nodes
            s = _open(port, key)
            try:
                state = _full_state(s)
                return b'"a"' in state and b'"b"' in state and b'"ts"' in state
            finally:
                s.close()

        eventually(published, timeout=20, what="both nodes in the live fleet state")
        for _ in range(ROUNDS):
            socks = [_open(port, key) for _ in range(15)]
            states = [_full_state(s) for s in socks[:5]]  # pages that read
            # (socks[5:10] never read past what the kernel buffers; socks[10:] hang up at once)
            for s in socks[10:]:
                s.close()
            assert len(set(states)) <= 2, "pages opening together share one fleet state (one per publish at most)"
            assert b'"a"' in states[0] and b'"b"' in states[0]
            eventually(lambda: _streams_open(url, key) >= 10, timeout=20, what="the open streams counted")
            for s in socks[:10]:
                s.close()
            eventually(lambda: _streams_open(url, key) == 0, timeout=20, what="every closed stream forgotten")
    finally:
        hub.stop()
