"""What N nodes holding their command long polls cost an idle hub: its CPU and RSS with and without them.

A real hub process; the nodes are benchmarks/_cmdagents.py's (the agent's own poller, verifier
and executor per node, several nodes a process), each re-opening `GET /api/v1/commands/next`
every 25 s as agents with --allow-commands do. No command runs: this is the price of waiting.

    .venv/bin/python benchmarks/bench_command_polls.py [--nodes 1000] [--hosts 4] [--seconds 60]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from _common import command_nodes, hub_with_token, machine_line, proc_cpu_seconds, proc_rss_bytes

MiB = 2**20


def cpu_pct(pids: list[int], seconds: float) -> float:
    before = sum(proc_cpu_seconds(p) for p in pids)
    time.sleep(seconds)
    return 100 * (sum(proc_cpu_seconds(p) for p in pids) - before) / seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, default=1000)
    ap.add_argument("--hosts", type=int, default=4, help="processes hosting the nodes")
    ap.add_argument("--seconds", type=float, default=60.0, help="window measured with the polls held")
    a = ap.parse_args()
    print(machine_line())
    with tempfile.TemporaryDirectory(prefix="bench-polls-") as tmp_s:
        tmp = Path(tmp_s)
        with hub_with_token(tmp) as (hub, url, token):
            time.sleep(5)
            idle_cpu, idle_rss = cpu_pct([hub.pid], 30.0), proc_rss_bytes(hub.pid)
            with command_nodes(url, token, a.nodes, a.hosts, tmp):
                time.sleep(40)  # every node polling, the polls' 25 s cycle under way
                held_cpu = cpu_pct([hub.pid], a.seconds)
                held_rss = proc_rss_bytes(hub.pid)
    print(f"hub alone: {idle_cpu:.1f}% of a core, RSS {idle_rss / MiB:.0f} MiB")
    print(f"hub with {a.nodes} nodes' polls held: {held_cpu:.1f}% of a core, RSS {held_rss / MiB:.0f} MiB "
          f"(+{held_cpu - idle_cpu:.1f} points, +{(held_rss - idle_rss) / MiB:.0f} MiB)")


if __name__ == "__main__":
    main()
