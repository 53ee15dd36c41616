"""Load: 1,000 simulated 8-GPU agents push every 5 s at a real hub process for a minute
(`--nightly`: an hour). Nothing may be dropped; ingest lag and memory growth stay bounded.

The load generator is benchmarks/_hubload.py (the one bench_hub.py measures with), run as its
own process so its CPU does not count as the hub's.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from access import bearer, make_api_key
from realparts import ROOT, Proc, free_port, gpufleet, join_token

pytestmark = pytest.mark.realparts

NODES = 1000
INTERVAL = 5.0


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


H: dict[str, str] = {}  # a viewer's API key, made once the hub runs


def _hub_values(url: str) -> dict[str, float]:
    text = httpx.get(f"{url}/metrics", headers=H, timeout=10).text
    return {m.group(1): float(m.group(2)) for m in re.finditer(r"^gpufleet_hub_(\w+) (\S+)$", text, re.M)}


def test_1000_agents_push_and_nothing_is_dropped(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    seconds = 3600.0 if request.config.getoption("--nightly") else 60.0
    data = tmp_path / "data"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    hub = Proc(gpufleet("hub", "--listen", f"127.0.0.1:{port}", "--data", str(data), "--log-level", "warning"),
               tmp_path / "hub.log")
    try:
        hub.wait_http(f"{url}/healthz", timeout=60)
        H.update(bearer(make_api_key(data, "viewer")))
        token = join_token(data)
        sys.path.insert(0, str(ROOT / "benchmarks"))
        import _hubload

        creds = {}
        with httpx.Client(base_url=url, timeout=30) as c:
            for i in range(NODES):
                name = _hubload.node_name(i)
                r = c.post("/api/v1/register", json={"node": name, "labels": _hubload.node_labels(i)},
                           headers={"Authorization": f"Bearer {token}"})
                assert r.status_code == 200, r.text
                creds[name] = r.json()["credential"]
        (tmp_path / "creds.json").write_text(json.dumps(creds))
        t_start = time.time()
        gen = subprocess.Popen(
            [sys.executable, str(ROOT / "benchmarks" / "_hubload.py"), "--target", "hub", "--url", url,
             "--creds", str(tmp_path / "creds.json"), "--nodes", str(NODES), "--interval", str(INTERVAL),
             # 45 s warm-up: the first push of each node creates its 730 series (RESULTS.md, "Hub").
             "--warmup", "45", "--seconds", str(seconds), "--connections", "32"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        samples: list[tuple[float, float, float]] = []  # (t, rss MB, lag max s)
        events: dict[str, dict] = {}

        def read() -> None:
            assert gen.stdout is not None
            for line in gen.stdout:
                if line.startswith("{"):
                    ev = json.loads(line)
                    events[ev["event"]] = ev

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        while gen.poll() is None:
            if "measure_start" in events:
                v = _hub_values(url)
                samples.append((time.monotonic(), _rss_mb(hub.pid), v.get("ingest_lag_max_seconds", 0.0)))
            time.sleep(5)
        reader.join(30)
        res = events["result"]
        assert gen.returncode == 0 and res["error_count"] == 0, res
        assert res["ok_total"] == res["pushes_total"] and res["pushes"] >= NODES * seconds / INTERVAL * 0.95
        v = _hub_values(url)
        # Samples dropped: every acknowledged push is a stored snapshot, none refused or lost.
        assert v["ingest_snapshots_total"] == res["ok_total"], (v, res)
        assert v["ingest_duplicates_total"] == 0 and v["store_errors_total"] == 0
        q = httpx.get(f"{url}/api/v1/query_range", headers=H, params={
            "metric": "gpufleet_gpu_power_watts", "match": ['node="bench-00000"', 'gpu="0"'],
            "start": t_start - 5, "end": time.time(), "step": 1, "agg": "last"}, timeout=30).json()
        now = time.time()
        got = [round(t - now, 1) for t, x in zip(q["series"][0]["timestamps"], q["series"][0]["values"]) if x is not None]
        assert len(got) >= res["ok_total"] // NODES, (got, res["ok_total"], q["step"], len(q["series"]))
        # The hub's lag metric covers the last minute: read it once the warm-up has left that window.
        steady = [x for x in samples if x[0] >= samples[0][0] + min(60.0, seconds / 2)] or samples[-1:]
        lag = max(x[2] for x in steady)
        rss0, rss1 = samples[0][1], max(x[1] for x in samples)
        print(f"\n{NODES} agents x {seconds:.0f} s: {res['ok_total']} pushes, 0 dropped; push p99 "
              f"{res['latency_p99'] * 1000:.0f} ms; ingest lag max {lag:.1f} s (steady state; generator slip max "
              f"{res['slip_max']:.1f} s); RSS "
              f"{rss0:.0f} -> {rss1:.0f} MB max")
        # The lag includes the generator's own slip (it shares the cores): 0.3 s on a quiet machine
        # (RESULTS.md, bench_hub.py is the goal's judge), up to 150 s on a 2-core VM running other
        # test suites at once, where the hub's own share stayed under a second. What is the hub's
        # fails here: a backlog of its own beyond the generator's lateness (60 s: 12 rounds behind).
        own = lag - res["slip_max"]
        assert own < 60, f"ingest lag reached {lag:.1f} s, {own:.1f} s beyond the generator's slip"
        # The store's head holds raw samples until it is cut, so RSS grows with the window; it must
        # stay bounded (1.5-1.6 GB at this fleet in benchmarks/RESULTS.md), never run away.
        assert rss1 < 3072, f"the hub's RSS reached {rss1:.0f} MB"
        assert "Traceback" not in hub.log()
    finally:
        hub.stop()
