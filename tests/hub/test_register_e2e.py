"""Registration against a real hub process (uvicorn): big bodies are never read without a token."""

from __future__ import annotations

import select
import socket
import time
from pathlib import Path

import httpx

import pytest

from access import make_api_key
from conftest import eventually
from realparts import Proc, free_port, gpufleet, hub_sd_job, join_token, prometheus, scrape_config

pytestmark = pytest.mark.realparts  # starts real servers or gpufleet processes

BIG = 500 * 1024 * 1024


def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def _stream_until_answered(port: int, headers: str, limit: int = BIG) -> tuple[bytes, int]:
    """Send a `limit`-byte body as fast as the server takes it; stop once it answers.

    Returns (the answer's first bytes, body bytes the server had taken by then).
    """
    s = socket.create_connection(("127.0.0.1", port))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)
    s.sendall(f"POST /api/v1/register HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {limit}\r\n"
              f"Content-Type: application/json\r\n{headers}\r\n".encode())
    s.setblocking(False)
    chunk = b"x" * 65536
    sent = 0
    answer = b""
    deadline = time.monotonic() + 60
    try:
        while sent < limit and time.monotonic() < deadline:
            readable, writable, _ = select.select([s], [s], [], 1.0)
            if readable:
                break
            if writable:
                try:
                    sent += s.send(chunk)
                except (BlockingIOError, InterruptedError):
                    pass
                except (BrokenPipeError, ConnectionResetError):
                    break
        s.setblocking(True)
        s.settimeout(10)
        try:
            answer = s.recv(4096)
        except (ConnectionResetError, TimeoutError):
            pass
    finally:
        s.close()
    return answer, sent


def test_huge_body_without_token_is_not_read(tmp_path: Path) -> None:
    data = tmp_path / "data"
    port = free_port()
    hub = Proc(gpufleet("hub", "--listen", f"127.0.0.1:{port}", "--data", str(data)), tmp_path / "hub.log")
    try:
        hub.wait_http(f"http://127.0.0.1:{port}/healthz")
        rss_before = _rss_kb(hub.pid)
        answer, sent = _stream_until_answered(port, "")
        assert answer.startswith(b"HTTP/1.1 401"), answer[:200]
        assert sent < 32 * 1024 * 1024, f"the hub took {sent} bytes of a body it had no reason to read"
        answer, sent = _stream_until_answered(port, "Authorization: Bearer gft_wrong\r\n")
        assert answer.startswith(b"HTTP/1.1 401") and sent < 32 * 1024 * 1024
        # with a good token the declared size alone is refused
        token = join_token(data)
        answer, sent = _stream_until_answered(port, f"Authorization: Bearer {token}\r\n")
        assert answer.startswith(b"HTTP/1.1 413") and sent < 32 * 1024 * 1024
        assert _rss_kb(hub.pid) - rss_before < 100 * 1024
        assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200
    finally:
        hub.stop()


def test_prometheus_keeps_the_fleet_when_a_bad_label_is_tried(tmp_path: Path) -> None:
    """The finding: one label named `bad-name` made Prometheus drop every target."""
    data = tmp_path / "data"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    hub = Proc(gpufleet("hub", "--listen", f"127.0.0.1:{port}", "--data", str(data)), tmp_path / "hub.log")
    try:
        hub.wait_http(f"{url}/healthz")
        token = join_token(data)
        auth = {"Authorization": f"Bearer {token}"}
        key_file = tmp_path / "hub.key"
        key_file.write_text(make_api_key(data, "viewer", user="prometheus"))
        good = httpx.post(f"{url}/api/v1/register", headers=auth, timeout=10,
                          json={"node": "good", "labels": {"rack": "r1"}, "agent_url": "http://127.0.0.1:1",
                                "advertised": True})
        assert good.status_code == 200
        bad = httpx.post(f"{url}/api/v1/register", headers=auth, timeout=10,
                         json={"node": "bad", "labels": {"bad-name": "x"}, "agent_url": "http://127.0.0.1:2"})
        assert bad.status_code == 422
        with prometheus(tmp_path, scrape_config(hub_sd_job("gpufleet", url, key_file))) as (_, prom):
            targets = eventually(lambda: httpx.get(f"{prom}/api/v1/targets", timeout=5).json()["data"]["activeTargets"],
                                 timeout=30, what="Prometheus to discover the registered agent")
            assert [t["labels"]["node"] for t in targets] == ["good"]
            assert not any(k.startswith("__") for k in targets[0]["labels"])
    finally:
        hub.stop()
