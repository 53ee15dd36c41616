"""Faults with real processes: kill -9 of the hub mid-push, a full disk, a node clock minutes off.

"Acknowledged" is what the hub answered 2xx to: the agent's spool keeps everything else and
resends it, and ingest is idempotent per (node, timestamp), so the hub must end up holding every
snapshot the agent collected. Each test prints its time to recover (benchmarks/RESULTS.md).
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from gpufleet.hub.state import HubState
from gpufleet.store.series_index import SNAPSHOT

from access import bearer, make_api_key
from conftest import eventually
from realparts import Proc, free_port, gpufleet, hub_proc, join_token

pytestmark = pytest.mark.realparts  # starts real gpufleet processes


H: dict[str, str] = {}  # a viewer's API key for the hub of the running test


def _hub(tmp: Path, data: Path, port: int, *extra: str, name: str = "hub") -> Proc:
    p = hub_proc(tmp, data, port, *extra, name=name, ok=(200, 503))  # short of disk space it is up but answers 503
    H.update(bearer(make_api_key(data, "viewer")))  # this file's reads
    return p


def _agent(tmp: Path, hub_url: str, node: str, token: str, *extra: str,
           env: dict[str, str] | None = None) -> tuple[Proc, str]:
    port = free_port()
    p = Proc(gpufleet("agent", "--hub", hub_url, "--token", token, "--node", node, "--simulate", "2xRTX4090",
                      "--listen", f"127.0.0.1:{port}", "--spool", str(tmp / f"spool-{node}"), *extra),
             tmp / f"agent-{node}.log", env=env)
    p.wait_http(f"http://127.0.0.1:{port}/healthz")
    return p, f"http://127.0.0.1:{port}"


def _agent_values(agent_url: str) -> dict[str, float]:
    text = httpx.get(f"{agent_url}/metrics", timeout=5).text
    out = {}
    for name in ("collections_total", "push_backlog", "push_dropped_total", "push_snapshots_total", "hub_up"):
        m = re.search(rf"^gpufleet_agent_{name}(?:{{[^}}]*}})? (\S+)$", text, re.M)
        if m:
            out[name] = float(m.group(1))
    return out


def _stored(hub_url: str, node: str, since: float) -> list[int]:
    """The agent's collection numbers (1, 2, ...) of every snapshot of `node` the hub holds."""
    end = time.time() + 1
    r = httpx.get(f"{hub_url}/api/v1/query_range", headers=H, params={
        "metric": "gpufleet_agent_collections_total", "match": [f'node="{node}"'],
        "start": since, "end": end, "step": max(0.05, (end - since) / 10000), "agg": "last"}, timeout=30)
    r.raise_for_status()
    series = r.json()["series"]
    return [int(v) for v in series[0]["values"] if v is not None] if series else []


def _nothing_lost(hub_url: str, agent_url: str, node: str, since: float) -> int:
    """Once the agent's backlog is empty, the hub must hold collections 1..N without a gap."""
    eventually(lambda: (v := _agent_values(agent_url)).get("push_backlog") == 0 and v.get("hub_up") == 1,
               timeout=60, what="the agent's backlog to drain")
    collected = _agent_values(agent_url)
    assert collected["push_dropped_total"] == 0
    stored = eventually(lambda: (got := _stored(hub_url, node, since)) and got[-1] >= collected["collections_total"] - 1
                        and got, timeout=30, what="the last collections stored")
    # The agent's first collection (at start, before its pusher listens) is never pushed.
    assert stored[0] <= 2, f"the first stored collection is number {stored[0]}"
    missing = sorted(set(range(stored[0], stored[-1] + 1)) - set(stored))
    assert not missing, f"collections {missing[:20]} of {stored[-1]} are not in the hub"
    return stored[-1]


def test_kill_9_of_the_hub_mid_push_loses_no_acknowledged_sample(tmp_path: Path) -> None:
    data = tmp_path / "data"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    since = time.time() - 1
    hub = _hub(tmp_path, data, port)
    agent, agent_url = _agent(tmp_path, url, "k9", join_token(data), "--interval", "0.5")
    recover: list[float] = []
    try:
        eventually(lambda: _agent_values(agent_url).get("push_snapshots_total", 0) > 5, timeout=30,
                   what="first pushes")
        rng = random.Random(8)
        for i in range(3):
            time.sleep(rng.uniform(0.5, 2.0))  # the agent pushes every 0.5 s: the kill lands mid-push
            os.kill(hub.pid, signal.SIGKILL)
            hub.p.wait(5)
            hub.stop()
            time.sleep(1.0)  # the agent spools meanwhile
            t0 = time.monotonic()
            hub = _hub(tmp_path, data, port, name=f"hub-{i}")
            eventually(lambda: _agent_values(agent_url).get("push_backlog") == 0, timeout=60,
                       what="the backlog to drain after the restart")
            recover.append(time.monotonic() - t0)
        n = _nothing_lost(url, agent_url, "k9", since)
        print(f"\nkill -9 x3: collections 1..{n} all stored, 0 lost; "
              f"backlog drained {max(recover):.1f} s after each restart (worst)")
    finally:
        agent.stop()
        hub.stop()


@contextlib.contextmanager
def _small_filesystem(path: Path, size_mb: int) -> Iterator[bool]:
    """A tmpfs of `size_mb` at `path` when this machine lets us mount one; yields whether it did."""
    path.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mb}m", "tmpfs", str(path)],
                       capture_output=True, text=True)
    try:
        yield r.returncode == 0
    finally:
        if r.returncode == 0:
            subprocess.run(["umount", "-l", str(path)], capture_output=True)


def _fill(filler: Path) -> Path:
    """Grow `filler` until the filesystem is full (ENOSPC); returns it."""
    chunk = b"\0" * (256 * 1024)
    with open(filler, "ab") as f:
        with contextlib.suppress(OSError):
            while True:
                f.write(chunk)
                f.flush()
    return filler


def test_a_full_disk_pauses_pushes_and_the_hub_resumes_by_itself(tmp_path: Path) -> None:
    """A real ENOSPC on a small tmpfs where mounting is allowed; the free-space floor otherwise."""
    with _small_filesystem(tmp_path / "fs", 48) as real_fs:
        data = (tmp_path / "fs" if real_fs else tmp_path) / "data"
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        extra = ("--min-free-space", "0") if real_fs else ()
        since = time.time() - 1
        filler = (tmp_path / "fs") / "filler"
        if real_fs:
            # Space set aside before the hub starts: on a slow machine the hub may fill the
            # rest itself before the test does, and removing this must still give space back.
            filler.write_bytes(b"\0" * 8 * 2**20)
        hub = _hub(tmp_path, data, port, *extra)
        agent, agent_url = _agent(tmp_path, url, "df", join_token(data), "--interval", "0.5")
        try:
            eventually(lambda: _agent_values(agent_url).get("push_snapshots_total", 0) > 5, timeout=30,
                       what="first pushes")
            if real_fs:
                _fill(filler)
            else:  # restart the hub with a floor just above what is free now, then use up the margin
                hub.stop()
                free = os.statvfs(data).f_bavail * os.statvfs(data).f_frsize
                hub = _hub(tmp_path, data, port, "--min-free-space", str(free - 8 * 2**20), name="hub-floor")
                filler.write_bytes(b"\0" * 16 * 2**20)
            # 503 naming `ingest` (the refused pushes); `save` (SQLite) may fail first or too.
            eventually(lambda: "ingest" in httpx.get(f"{url}/healthz").json().get("failing", {}), timeout=30,
                       what="healthz 503 naming ingest")
            assert httpx.get(f"{url}/healthz").status_code == 503
            eventually(lambda: _agent_values(agent_url).get("push_backlog", 0) >= 5, timeout=30,
                       what="the agent to spool")
            metrics = httpx.get(f"{url}/metrics", headers=H).text
            assert re.search(r"^gpufleet_hub_storage_paused 1$", metrics, re.M)
            if real_fs:
                assert float(re.search(r"^gpufleet_hub_store_errors_total (\S+)$", metrics, re.M).group(1)) >= 1
            time.sleep(3)  # a few seconds of refused pushes: more than 3 intervals
            # The node is alive and pushing: the hub's full disk must not make it stale.
            assert httpx.get(f"{url}/api/v1/nodes/df", headers=H).json()["status"] == "up"
            filler.unlink()
            t0 = time.monotonic()
            eventually(lambda: httpx.get(f"{url}/healthz").status_code == 200, timeout=60, what="recovery")
            n = _nothing_lost(url, agent_url, "df", since)
            took = time.monotonic() - t0
            assert "Traceback" not in hub.log()
            how = "real ENOSPC on a 48 MB tmpfs" if real_fs else "--min-free-space floor"
            print(f"\ndisk full ({how}): collections 1..{n} all stored, 0 lost; "
                  f"backlog drained {took:.1f} s after space returned")
        finally:
            agent.stop()
            hub.stop()


def test_node_clocks_minutes_apart(tmp_path: Path) -> None:
    data = tmp_path / "data"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    hub = _hub(tmp_path, data, port)
    token = join_token(data)
    fast, _ = _agent(tmp_path, url, "fast", token, "--interval", "0.5", env={"GPUFLEET_TEST_CLOCK_OFFSET": "120"})
    slow, _ = _agent(tmp_path, url, "slow", token, "--interval", "0.5", env={"GPUFLEET_TEST_CLOCK_OFFSET": "-180"})
    wrong, _ = _agent(tmp_path, url, "wrong", token, "--interval", "0.5", env={"GPUFLEET_TEST_CLOCK_OFFSET": "900"})
    try:
        def node(name: str) -> dict:
            r = httpx.get(f"{url}/api/v1/nodes/{name}", headers=H, timeout=5)
            return r.json() if r.status_code == 200 else {}

        eventually(lambda: node("fast").get("timestamp") and node("slow").get("timestamp"), timeout=30,
                   what="both skewed nodes stored")
        assert node("fast")["clock_skew_seconds"] == pytest.approx(120, abs=5)
        assert node("slow")["clock_skew_seconds"] == pytest.approx(-180, abs=5)
        assert node("fast")["status"] == "up" and node("slow")["status"] == "up"
        # 15 minutes ahead: refused, measured, and the node says why
        eventually(lambda: node("wrong").get("clock_skew_seconds") is not None, timeout=30, what="skew of 'wrong'")
        w = node("wrong")
        assert w["clock_skew_seconds"] == pytest.approx(900, abs=5) and w["timestamp"] is None
        assert "--max-clock-ahead" in w["error"]
        q = httpx.get(f"{url}/api/v1/query_range", headers=H, params={
            "metric": "gpufleet_agent_clock_skew_seconds", "start": time.time() - 600, "end": time.time() + 300,
            "step": 5, "agg": "last"}, timeout=10).json()
        seen = {s["labels"]["node"]: [v for v in s["values"] if v is not None][-1] for s in q["series"]}
        assert seen["fast"] == pytest.approx(120, abs=5) and seen["slow"] == pytest.approx(-180, abs=5)
    finally:
        for p in (fast, slow, wrong, hub):
            p.stop()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_stop_signal_closes_the_hub_before_it_exits(tmp_path: Path, sig: signal.Signals) -> None:
    # SIGTERM is how systemd and Kubernetes stop the hub. uvicorn raises the signal again when it
    # has stopped serving, which ended the process before the hub closed: every node's latest
    # snapshot (saved every 5 minutes) and the store's series snapshot were never written.
    data, port = tmp_path / "data", free_port()
    hub = _hub(tmp_path, data, port)
    agent, _ = _agent(tmp_path, f"http://127.0.0.1:{port}", "n1", join_token(data), "--interval", "0.5")
    try:
        eventually(lambda: _stored(f"http://127.0.0.1:{port}", "n1", time.time() - 60), what="n1's pushes stored")
        code = hub.stop(sig)
    finally:
        agent.stop()
        hub.stop()
    assert code == (-signal.SIGTERM if sig == signal.SIGTERM else 130), code  # exits as the signal asks
    saved = HubState(data / "hub.db").load_latest()
    assert [n for n, _, _ in saved] == ["n1"]
    assert any(data.rglob(SNAPSHOT)), "the store's series snapshot was not written at exit"
