"""Agent soak: CPU and RSS of `gpufleet agent --interval 1` beside node_exporter, same run.

    .venv/bin/python benchmarks/bench_soak.py [--seconds 300] [--scrape-every 15] [--quick]

Both servers run as real processes on loopback. Every second this script samples each
one's utime+stime (/proc/PID/stat) and VmRSS (/proc/PID/status); every --scrape-every
seconds it scrapes both the way Prometheus does (one keep-alive connection per target,
Prometheus's Accept header, gzip). CPU is reported as % of one core averaged over the run
(CPU seconds consumed / wall seconds), so other load on the machine does not enter it.

Goals: the agent uses <= 1 % of one core and <= 60 MB RSS (MB = 10^6 bytes).
"""

from __future__ import annotations

import argparse
import http.client
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    host_processes,
    agent_cmd, free_port, host_process_count, machine_line, median, node_exporter_cmd, percentile,
    proc_cpu_seconds, proc_rss_bytes, server, table, verdict,
)

# What Prometheus 2.x sends when scraping (it prefers OpenMetrics), and gzip.
PROM_ACCEPT = ("application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
               "text/plain;version=0.0.4;q=0.5,*/*;q=0.1")
PROM_HEADERS = {"Accept": PROM_ACCEPT, "Accept-Encoding": "gzip", "User-Agent": "Prometheus/2.45.3"}

GOAL_CPU_PCT = 1.0
GOAL_RSS_MB = 60.0


class Target:
    def __init__(self, name: str, pid: int, port: int) -> None:
        self.name, self.pid, self.port = name, pid, port
        self.conn: http.client.HTTPConnection | None = None
        self.cpu: list[float] = []  # cumulative CPU seconds at each sample
        self.rss: list[int] = []
        self.scrape_ms: list[float] = []
        self.scrape_bytes = 0

    def sample(self) -> None:
        self.cpu.append(proc_cpu_seconds(self.pid))
        self.rss.append(proc_rss_bytes(self.pid))

    def scrape(self) -> None:
        t0 = time.perf_counter()
        for attempt in (0, 1):
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
            try:
                self.conn.request("GET", "/metrics", headers=PROM_HEADERS)
                r = self.conn.getresponse()
                body = r.read()
                break
            except (OSError, http.client.HTTPException):
                self.conn.close()
                self.conn = None  # the server closed an idle connection: reconnect once
                if attempt:
                    raise
        self.scrape_ms.append((time.perf_counter() - t0) * 1000)
        if r.status != 200:
            raise RuntimeError(f"{self.name} answered HTTP {r.status}")
        self.scrape_bytes = len(body)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=int, default=300, help="length of the measured run (default 300)")
    ap.add_argument("--scrape-every", type=float, default=15.0, help="scrape interval in seconds (default 15)")
    ap.add_argument("--interval", type=float, default=1.0, help="the agent's --interval (default 1)")
    ap.add_argument("--warmup", type=float, default=3.0, help="seconds after start before measuring")
    ap.add_argument("--processes", type=int, default=0,
                    help="spawn `sleep` processes to bring the host to this many (default 0: leave it)")
    ap.add_argument("--quick", action="store_true", help="a 20 s smoke run, scraping every 5 s")
    a = ap.parse_args()
    if a.quick:
        a.seconds, a.scrape_every = 20, 5.0
    seconds = max(2, min(a.seconds, 3600))  # bounded

    print(f"machine: {machine_line()}")
    with host_processes(a.processes, seconds + 120) as spawned:
        if spawned:
            print(f"host brought to {host_process_count()} processes ({spawned} `sleep` spawned)")
        return soak(a, seconds)


def soak(a: argparse.Namespace, seconds: int) -> int:
    print(f"soak: {seconds} s, agent --simulate 8xH100 --interval {a.interval}, scrapes every "
          f"{a.scrape_every:g} s (keep-alive, gzip, Prometheus Accept header)")
    tmp = Path(tempfile.mkdtemp(prefix="gpufleet-soak-"))
    ap_, np_ = free_port(), free_port()
    cmd = agent_cmd(ap_, "--simulate", "8xH100", "--interval", str(a.interval))
    print("agent:", " ".join(cmd[1:]))
    with server(cmd, ap_, "/healthz", tmp / "agent.log") as agent, \
            server(node_exporter_cmd(np_), np_, "/metrics", tmp / "node_exporter.log") as nexp:
        targets = [Target("gpufleet agent", agent.pid, ap_), Target("node_exporter", nexp.pid, np_)]
        time.sleep(a.warmup)
        procs: list[int] = []
        t0 = time.monotonic()
        for t in targets:
            t.sample()
        next_scrape = 0.0
        for i in range(1, seconds + 1):
            elapsed = time.monotonic() - t0
            if elapsed >= next_scrape:
                for t in targets:
                    t.scrape()
                next_scrape += a.scrape_every
            procs.append(host_process_count())
            delay = t0 + i - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            for t in targets:
                t.sample()
            if i % 60 == 0:
                ag = targets[0]
                print(f"  {i:4d} s: agent {100 * (ag.cpu[-1] - ag.cpu[0]) / (time.monotonic() - t0):.2f} % "
                      f"of a core, RSS {ag.rss[-1] / 1e6:.1f} MB", flush=True)
        wall = time.monotonic() - t0
        for t in targets:
            if t.conn is not None:
                t.conn.close()

    rows = []
    res = {}
    for t in targets:
        cpu_pct = 100 * (t.cpu[-1] - t.cpu[0]) / wall
        per_sec = [100 * (b - c) for c, b in zip(t.cpu, t.cpu[1:])]
        res[t.name] = (cpu_pct, max(t.rss))
        rows.append([t.name, f"{cpu_pct:.2f}", f"{percentile(per_sec, 99):.1f}", f"{t.rss[0] / 1e6:.1f}",
                     f"{max(t.rss) / 1e6:.1f}", f"{t.rss[-1] / 1e6:.1f}", len(t.scrape_ms),
                     f"{median(t.scrape_ms):.2f}", t.scrape_bytes])
    print()
    print(f"measured {wall:.1f} s; host processes {min(procs)}..{max(procs)}; "
          f"CPU = (utime+stime delta) / wall; 1-s samples have 10 ms tick resolution")
    print(table(["process", "CPU % of 1 core (avg)", "CPU % p99 of 1-s samples", "RSS start MB",
                 "RSS max MB", "RSS end MB", "scrapes", "scrape median ms", "gzip body bytes"], rows))
    ag_cpu, ag_rss = res["gpufleet agent"]
    ne_cpu, ne_rss = res["node_exporter"]
    print(f"ratio node_exporter/gpufleet: CPU {ne_cpu / ag_cpu if ag_cpu else float('inf'):.2f}x, "
          f"RSS {ne_rss / ag_rss:.2f}x")
    verdict(f"soak CPU <= {GOAL_CPU_PCT:g} % of one core", ag_cpu <= GOAL_CPU_PCT,
            f"agent {ag_cpu:.2f} %, node_exporter {ne_cpu:.2f} % in the same run")
    verdict(f"soak RSS <= {GOAL_RSS_MB:g} MB", ag_rss / 1e6 <= GOAL_RSS_MB,
            f"agent max {ag_rss / 1e6:.1f} MB, node_exporter max {ne_rss / 1e6:.1f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
