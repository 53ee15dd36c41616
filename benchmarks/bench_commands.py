"""`gpufleet run -- true` on N simulated agents: all results back in at most 3 s?

A real hub process, N command-polling nodes (benchmarks/_cmdagents.py: --hosts processes sharing
the N nodes, each node with the agent's own poller, verifier and executor on its own thread and
long poll: 200 full agent processes do not fit on a 2-core machine), and the real CLI timed from
start to exit. CPU seconds of the hub and of the node hosts per run are printed beside. The peer is the naive way, measured in the same run: one node at
a time, one fresh client per node (what `for n in $NODES; do ssh $n true; done` does), timed on a
sample of nodes and scaled to N.

    .venv/bin/python benchmarks/bench_commands.py [--nodes 200] [--repeat 5] [--sample 10]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import command_nodes, hub_with_token, machine_line, median, proc_cpu_seconds, table, verdict

GOAL_S = 3.0


def gpufleet(*args: str) -> list[str]:
    return [sys.executable, "-m", "gpufleet", *args]


KEY: dict[str, str] = {}  # the API key the CLI and the checks use, when the hub has accounts


def timed(args: list[str]) -> tuple[float, subprocess.CompletedProcess[str]]:
    env = {**os.environ, "GPUFLEET_API_KEY": KEY["key"]} if KEY else None
    t = time.perf_counter()
    out = subprocess.run(args, capture_output=True, text=True, timeout=120, env=env)
    return time.perf_counter() - t, out


def _headers() -> dict[str, str]:
    return {"Authorization": f"Bearer {KEY['key']}"} if KEY else {}


def _make_key(data: Path, tmp: Path) -> None:
    """An admin's API key, made the way a user would (`gpufleet user add`, `gpufleet apikey create`)."""
    if subprocess.run(gpufleet("apikey", "--help"), capture_output=True).returncode != 0:
        return  # a hub without accounts: nothing to send
    import secrets

    pw = tmp / "password"
    pw.write_text(secrets.token_urlsafe(16) + "\n")
    subprocess.run(gpufleet("user", "add", "bench", "--role", "admin", "--data", str(data), "--password-file", str(pw)),
                   capture_output=True, text=True, check=True)
    out = subprocess.run(gpufleet("apikey", "create", "--user", "bench", "--data", str(data)), capture_output=True,
                         text=True, check=True).stdout
    KEY["key"] = out.split()[-1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, default=200)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--sample", type=int, default=10, help="nodes timed one at a time for the naive peer")
    ap.add_argument("--hosts", type=int, default=4, help="processes hosting the nodes")
    a = ap.parse_args()
    print(machine_line())
    with tempfile.TemporaryDirectory(prefix="bench-commands-") as tmp_s:
        tmp = Path(tmp_s)
        with hub_with_token(tmp) as (hub, url, token):
            _make_key(tmp / "hub", tmp)
            with command_nodes(url, token, a.nodes, a.hosts, tmp) as hosts:
                _wait_fetching(url, a.nodes)
                pids = [hub.pid] + [p.pid for p in hosts]
                rows, fan = _fan_out(url, a, pids)
                seq = _sequential(url, a.sample)
    per_node = median(seq)
    naive = per_node * a.nodes
    best = median([w for w, _ in fan])
    print(table(["way", "parallel", "runs", "median s", "max s", "request to last result (hub) s",
                 "hub CPU s/run", "node hosts CPU s/run"], rows))
    print(f"naive, one node at a time: {per_node:.3f} s per node (median of {len(seq)}), "
          f"{naive:.1f} s for {a.nodes} nodes (estimated)")
    print(f"speed-up over one at a time: {naive / best:.0f}x")
    worst = max(w for w, _ in fan)
    verdict(f"{a.nodes} nodes in at most {GOAL_S:g} s", best <= GOAL_S,
            f"CLI start to exit at the default --parallel 32: median {best:.2f} s of {len(fan)}, worst {worst:.2f} s; "
            f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")


def _wait_fetching(url: str, n: int) -> None:
    import httpx

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        nodes = httpx.get(f"{url}/api/v1/commands/targets", headers=_headers(), timeout=10).json()["nodes"]
        if sum(1 for x in nodes if x["fetching"]) >= n:
            return
        time.sleep(0.2)
    sys.exit("not every node is fetching commands after 120 s")


def _fan_out(url: str, a: argparse.Namespace, pids: list[int]) -> tuple[list[list[object]], list[tuple[float, float]]]:
    rows = []
    default: list[tuple[float, float]] = []
    for parallel in (32, a.nodes):
        got = []
        hub_cpu, host_cpu = [], []
        for _ in range(a.repeat):
            cpu0 = [proc_cpu_seconds(p) for p in pids]
            wall, out = timed(gpufleet("run", "--hub", url, "--nodes", "bench-*", "--parallel", str(parallel),
                                       "--", "true"))
            if out.returncode != 0 or out.stdout.count("  ok  exit 0") != a.nodes:
                sys.exit(f"run failed (exit {out.returncode}):\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}")
            cpu1 = [proc_cpu_seconds(p) for p in pids]
            hub_cpu.append(cpu1[0] - cpu0[0])
            host_cpu.append(sum(cpu1[1:]) - sum(cpu0[1:]))
            got.append((wall, _hub_span(url)))
        if parallel == 32:
            default = got
        walls = [w for w, _ in got]
        rows.append(["gpufleet run -- true (CLI start to exit)", parallel, len(got), f"{median(walls):.2f}",
                     f"{max(walls):.2f}", f"{median([h for _, h in got]):.2f}", f"{median(hub_cpu):.2f}",
                     f"{median(host_cpu):.2f}"])
    return rows, default


def _hub_span(url: str) -> float:
    """Request to last result of the newest run, from the hub's audit log."""
    import httpx

    run = httpx.get(f"{url}/api/v1/audit", params={"since": "1h", "limit": 1}, headers=_headers(),
                    timeout=10).json()["runs"][0]
    return max(r["at"] for r in run["results"]) - run["at"]


def _sequential(url: str, sample: int) -> list[float]:
    out = []
    for i in range(sample):
        wall, res = timed(gpufleet("run", "--hub", url, "--nodes", f"bench-{i:04d}", "--", "true"))
        if res.returncode != 0:
            sys.exit(f"sequential run failed: {res.stdout}{res.stderr}")
        out.append(wall)
    return out


if __name__ == "__main__":
    main()
