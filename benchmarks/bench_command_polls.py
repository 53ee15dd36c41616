"""What N nodes holding their command long polls cost an idle hub: its CPU and RSS with and without them.

A real hub process; the nodes are benchmarks/_cmdagents.py's (the agent's own poller, verifier
and executor per node, several nodes a process), each re-opening `GET /api/v1/commands/next`
every 25 s as agents with --allow-commands do. No command runs: this is the price of waiting.

    .venv/bin/python benchmarks/bench_command_polls.py [--nodes 1000] [--hosts 4] [--seconds 60]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import ROOT, free_port, machine_line, proc_cpu_seconds, proc_rss_bytes, server

MiB = 2**20


def gpufleet(*args: str) -> list[str]:
    return [sys.executable, "-m", "gpufleet", *args]


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
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        with server(gpufleet("hub", "--listen", f"127.0.0.1:{port}", "--data", str(tmp / "hub")), port,
                    "/healthz", tmp / "hub.log") as hub:
            token = subprocess.run(gpufleet("token", "create", "--data", str(tmp / "hub")), capture_output=True,
                                   text=True, check=True).stdout.split()[-1]
            time.sleep(5)
            idle_cpu, idle_rss = cpu_pct([hub.pid], 30.0), proc_rss_bytes(hub.pid)
            hosts: list[subprocess.Popen[str]] = []
            try:
                share = -(-a.nodes // a.hosts)
                for h in range(a.hosts):
                    with open(tmp / f"agents-{h}.log", "wb") as log:
                        hosts.append(subprocess.Popen(
                            [sys.executable, str(ROOT / "benchmarks" / "_cmdagents.py"), "--hub", url, "--token", token,
                             "--first", str(h * share), "--nodes", str(min(share, a.nodes - h * share)),
                             "--dir", str(tmp / "agents")],
                            stdout=subprocess.PIPE, stderr=log, text=True, start_new_session=True))
                for h, p in enumerate(hosts):
                    if '"ready"' not in (p.stdout.readline() if p.stdout else ""):
                        sys.exit(f"node host {h} did not start: {(tmp / f'agents-{h}.log').read_text()[-2000:]}")
                time.sleep(40)  # every node polling, the polls' 25 s cycle under way
                held_cpu = cpu_pct([hub.pid], a.seconds)
                held_rss = proc_rss_bytes(hub.pid)
            finally:
                for p in hosts:
                    p.terminate()
                for p in hosts:
                    p.wait(10)
    print(f"hub alone: {idle_cpu:.1f}% of a core, RSS {idle_rss / MiB:.0f} MiB")
    print(f"hub with {a.nodes} nodes' polls held: {held_cpu:.1f}% of a core, RSS {held_rss / MiB:.0f} MiB "
          f"(+{held_cpu - idle_cpu:.1f} points, +{(held_rss - idle_rss) / MiB:.0f} MiB)")


if __name__ == "__main__":
    main()
