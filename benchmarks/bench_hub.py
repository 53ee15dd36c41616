"""Benchmark of the hub: push ingest from a simulated fleet, history and fleet queries.

Run: .venv/bin/python benchmarks/bench_hub.py [--seconds 60] [--quick]

Goals (from the issue), every figure measured in this run, on loopback:

* ingest: N simulated nodes (8 GPUs + host each; default 1,000) pushing every 5 s to a real
  `gpufleet hub` process: ingest lag under one interval and <= 1 core busy. Reports samples/s,
  hub CPU (% of one core, /proc/PID/stat) and RSS, push latency p50/p99 and the load
  generator's own CPU (benchmarks/_hubload.py, a separate process). Peers in the same run,
  one after the other on the same machine: VictoriaMetrics importing the same samples as
  Prometheus text (CPU per million samples, as a ratio), and the naive way (SQLite, a row per
  sample, in-process) beside the hub's in-process decode+ingest.
* query: 7 days of one GPU's utilisation at 1,000 points in <= 20 ms (a store of 1 node x
  8 GPUs at 5 s, filled through TimeSeriesStore.append_rows + maintain; median of 50, in-process
  and over HTTP); the fleet's latest snapshot of every node (GET /api/v1/snapshots) in <= 100 ms
  (after the ingest run, median of 20 over HTTP).

The measurement interface (issue 14): `--nodes N --seconds S --warmup 0 --no-naive --json FILE`;
warm-up 0 opens the window as the whole fleet joins (each node's first push registers its
series), and FILE gets every figure, at least hub_rss_max_mib, vm_rss_max_mib,
hub_cpu_s_per_million, vm_cpu_s_per_million and lag_max_s (the hub's own lag metric or the
generator's due-to-answer time, whichever is worse), with VictoriaMetrics on the same load in
the same run. RSS is sampled every 0.2 s through the window; the 7-day query also runs once a
second over HTTP while the fleet pushes, and is asked of VictoriaMetrics (holding the same week of
that GPU) once a second while it takes the same load; beside both, a process that only sleeps
1 ms at a time shows how late the machine itself wakes anything then (its floor for a p99).

The simulated agents push as agents do, in the compact encoding (gpufleet/compact.py: series
shape once, then values); `--encoding json` sends the JSON push instead, for comparison.

--quick: 15 s window, 200 nodes. --profile DIR: also run py-spy over the hub during the window
(perturbs the figures; for finding what costs, not for the record). Exit status 0 either way.
"""

from __future__ import annotations

import argparse
import gzip
import http.client
import json
import os
import queue
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import (  # noqa: E402
    machine_line, median, percentile, proc_cpu_seconds, proc_rss_bytes, table, wait_http, free_port,
)
import _hubload  # noqa: E402

import numpy as np  # noqa: E402

PY = sys.executable
DAY = 86400.0
Q_NODE = "q-node-01"
Q_METRIC = "gpufleet_gpu_utilization_ratio"
MiB = 1 << 20


# ---- small HTTP helpers (keep-alive, loopback) -----------------------------------------------------

def bench_key(data: Path) -> str:
    """A viewer's API key for the benchmark's reads (the hub answers nothing but /healthz without one)."""
    import secrets

    from gpufleet.hub.auth.policy import Role
    from gpufleet.hub.auth.store import AuthStore

    st = AuthStore(data / "hub.db")
    try:
        if st.user("bench") is None:
            st.add_user("bench", Role.VIEWER, secrets.token_urlsafe(16))
        return st.create_key("bench")
    finally:
        st.close()


class Http:
    def __init__(self, port: int, key: str | None = None) -> None:
        self.port = port
        self.auth = {"Authorization": f"Bearer {key}"} if key else {}
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    def call(self, method: str, path: str, body: bytes | None = None,
             headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        for attempt in range(2):
            try:
                self.conn.request(method, path, body=body, headers={**self.auth, **(headers or {})})
                r = self.conn.getresponse()
                return r.status, r.read()
            except (OSError, http.client.HTTPException):
                self.conn.close()
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
                if attempt:
                    raise
        raise AssertionError

    def timed_get(self, path: str) -> tuple[float, int, bytes]:
        t0 = time.perf_counter()
        status, body = self.call("GET", path)
        return time.perf_counter() - t0, status, body


def prom_values(text: bytes, name: str) -> float:
    """Sum of every sample of metric `name` in a Prometheus text body (nan if absent)."""
    total, seen = 0.0, False
    for m in re.finditer(rb"^" + re.escape(name.encode()) + rb"(?:\{[^}]*\})? (\S+)", text, re.M):
        total += float(m.group(1))
        seen = True
    return total if seen else float("nan")


class Proc:
    def __init__(self, args: list[str], log: Path, **kw) -> None:
        self.log = log
        self._logf = open(log, "wb")
        self.p = subprocess.Popen(args, stdout=kw.pop("stdout", self._logf), stderr=self._logf,
                                  stdin=subprocess.DEVNULL, start_new_session=True, **kw)
        self.pid = self.p.pid

    def stop(self) -> None:
        if self.p.poll() is None:
            self.p.terminate()  # by its own pid
            try:
                self.p.wait(20)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait(5)
        self._logf.close()


# ---- 7 days of one node's GPUs -------------------------------------------------------------------

def gpu_keys() -> tuple[list, list[float]]:
    from gpufleet.series import snapshot_series

    snap = _hubload.build_snapshots(1)["8xH100"][0]
    keys, values = snapshot_series(snap, dict(snap.labels))
    out_k, out_v = [], []
    for (metric, labels), v in zip(keys, values):
        d = dict(labels)
        if "gpu" not in d:
            continue
        d["node"] = Q_NODE
        out_k.append((metric, tuple(sorted(d.items()))))
        out_v.append(v)
    return out_k, out_v


def util_pattern(rng: np.random.Generator, n: int) -> np.ndarray:
    """Utilisation at 5 s in [0, 1]: idle gaps and training jobs of 20 min - 10 h with dips."""
    load = np.zeros(n)
    t = 0
    while t < n:
        t += int(rng.integers(12, 720))  # 1 min - 1 h idle
        job = int(rng.integers(240, 7200))
        seg = np.full(max(0, min(job, n - t)), rng.uniform(0.7, 1.0))
        period = int(rng.integers(6, 60))
        seg[(np.arange(seg.size) % period) == 0] *= 0.3
        load[t:t + seg.size] = seg
        t += job
    return np.clip(np.round(load + rng.normal(0, 0.01, n) * (load > 0), 2), 0, 1)


def fill_week(path: str) -> dict[str, Any]:
    """7 days of 1 node x 8 GPUs at 5 s through append_rows (2 h chunks), maintain() after each."""
    from gpufleet.store import TimeSeriesStore

    keys, tmpl = gpu_keys()
    gpu_of = np.array([int(dict(k[1])["gpu"]) for k in keys])
    is_util = np.array([k[0] == Q_METRIC for k in keys])
    tmpl_a = np.array(tmpl)
    step = 5.0
    end = float(int(time.time() // step) * step) - step
    n = int(7 * DAY / step)
    ts_all = end - step * np.arange(n)[::-1]
    rng = np.random.default_rng(7)
    util = np.stack([util_pattern(rng, n) for _ in range(8)])  # 8 x n
    t0 = time.perf_counter()
    store = TimeSeriesStore(path)
    chunk = 1440
    for lo in range(0, n, chunk):
        hi = min(n, lo + chunk)
        u = util[gpu_of][:, lo:hi].T  # rows x series
        rows = tmpl_a * (0.6 + 0.4 * u)
        rows = np.where(is_util, u, np.round(rows, 1))
        store.append_rows(Q_NODE, ts_all[lo:hi], keys, rows)
        store.maintain(now=float(ts_all[hi - 1]))
    store.maintain(now=time.time(), full=True)
    build_s = time.perf_counter() - t0
    st = store.stats()
    store.close()
    q = next(i for i, k in enumerate(keys) if k[0] == Q_METRIC and dict(k[1])["gpu"] == "0")
    return {"build_s": build_s, "series": len(keys), "samples": n * len(keys), "end": end,
            "bytes": float(st.get("bytes_on_disk", 0)),
            # the queried series, for the peer's copy (VictoriaMetrics is asked the same question)
            "q_series": (keys[q], ts_all, util[gpu_of[q]])}


def query_inprocess(path: str, start: float, end: float, runs: int) -> tuple[float, int, int]:
    from gpufleet.store import Matcher, TimeSeriesStore

    store = TimeSeriesStore(path)
    ms = [Matcher("node", "=", Q_NODE), Matcher("gpu", "=", "0")]
    step = (end - start) / 1000
    store.query_range(Q_METRIC, ms, start, end, step, "avg")  # open blocks once
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        out = store.query_range(Q_METRIC, ms, start, end, step, "avg")
        times.append(time.perf_counter() - t0)
    points = len(out[0].timestamps) if out else 0
    res = store.choose_resolution(start, end, step)
    store.close()
    return median(times), points, res


def query_http(c: Http, start: float, end: float, runs: int, warm: bool = True) -> tuple[float, int]:
    m_node, m_gpu = quote(f'node="{Q_NODE}"'), quote('gpu="0"')
    path = f"/api/v1/query_range?metric={Q_METRIC}&match={m_node}&match={m_gpu}&start={start}&end={end}&points=1000"
    if warm:
        c.timed_get(path)
    times, points = [], 0
    for _ in range(runs):
        dt, status, body = c.timed_get(path)
        if status != 200:
            raise RuntimeError(f"query_range answered {status}: {body[:300]!r}")
        times.append(dt)
    series = json.loads(body)["series"]
    points = len(series[0]["timestamps"]) if series else 0
    return median(times), points


# ---- ingest ------------------------------------------------------------------------------------

def register(c: Http, token: str, nodes: int) -> dict[str, str]:
    creds = {}
    for i in range(nodes):
        name = _hubload.node_name(i)
        body = json.dumps({"node": name, "labels": _hubload.node_labels(i)}).encode()
        status, reply = c.call("POST", "/api/v1/register", body,
                               {"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
        if status != 200:
            raise RuntimeError(f"register {name}: {status} {reply[:300]!r}")
        creds[name] = json.loads(reply)["credential"]
    return creds


def proc_rss_peak_bytes(pid: int) -> int:
    """VmHWM (the kernel's peak resident set of the process so far) in bytes, 0 when absent."""
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            for line in f:
                if line.startswith(b"VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


class RssSampler:
    """The server's RSS every 0.2 s while the window runs (a 5 s poll misses short peaks)."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak, self.on = pid, 0, threading.Event()
        self._stop = threading.Event()
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            if self.on.is_set():
                try:
                    self.peak = max(self.peak, proc_rss_bytes(self.pid))
                except OSError:
                    return

    def stop(self) -> None:
        self._stop.set()


class BusyQueries:
    """A query once a second while the load runs (its own connection): `query()` returns its
    seconds and raises on a wrong answer."""

    def __init__(self, query: Callable[[], float]) -> None:
        self.query = query
        self.times: list[float] = []
        self.stamps: list[tuple[float, float]] = []  # (wall clock at the start, seconds): to line up with hub traces
        self.errors = 0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            try:
                t = time.time()
                dt = self.query()
                self.times.append(dt)
                self.stamps.append((t, dt))
            except (OSError, RuntimeError, http.client.HTTPException, ValueError):
                self.errors += 1

    def stop(self) -> None:
        self._stop.set()
        self._t.join(30)

    def summary(self) -> dict[str, float | None]:
        t = self.times
        return {"n": len(t), "median_ms": median(t) * 1e3 if t else None,
                "p99_ms": percentile(t, 99) * 1e3 if t else None, "max_ms": max(t) * 1e3 if t else None,
                "errors": self.errors}


# A process that only sleeps 1 ms at a time and notes how late it wakes: what the machine itself
# (other processes, the hypervisor taking the vCPU: "steal") adds to anything timed in the same
# window. Stops when its stdin closes.
_STALL_PROBE = r"""
import json, select, sys, time
late, last = [], time.perf_counter()
while not select.select([sys.stdin], [], [], 0.001)[0]:
    now = time.perf_counter()
    late.append(now - last - 0.001)
    last = now
print(json.dumps(late))
"""


class StallProbe:
    def __init__(self) -> None:
        self.p = subprocess.Popen([PY, "-c", _STALL_PROBE], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.steal0 = cpu_steal_s()

    def stop(self) -> dict[str, float]:
        out, _ = self.p.communicate(b"", timeout=60)
        late = json.loads(out or b"[]")
        steal = cpu_steal_s() - self.steal0
        return {"wakeups": len(late), "late_p99_ms": percentile(late, 99) * 1e3,
                "late_max_ms": max(late, default=float("nan")) * 1e3,
                "late_over_20ms": sum(1 for x in late if x > 0.020), "steal_s": steal}


def cpu_steal_s() -> float:
    """Seconds of CPU time the hypervisor gave to others, all CPUs (/proc/stat 'steal')."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()
        return int(fields[8]) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return float("nan")


def vm_import_series(port: int, series: tuple[Any, Any, Any]) -> None:
    """The week's queried series into VictoriaMetrics (its JSON-lines import), flushed for reads."""
    (metric, labels), ts, values = series
    line = {"metric": {"__name__": metric, **dict(labels)},
            "values": [float(v) for v in values], "timestamps": [int(t * 1000) for t in ts]}
    c = Http(port)
    status, body = c.call("POST", "/api/v1/import", json.dumps(line).encode())
    if status != 204:
        raise RuntimeError(f"VictoriaMetrics import answered {status}: {body[:300]!r}")
    c.call("GET", "/internal/force_flush")


def vm_week_query(c: Http, start: float, end: float) -> tuple[float, int]:
    """The same question of VictoriaMetrics: the GPU's mean utilisation per step, 1,000 steps over
    the week, its result cache off (the hub keeps none)."""
    step = (end - start) / 1000
    q = f'avg_over_time({Q_METRIC}{{node="{Q_NODE}",gpu="0"}}[{step:.0f}s])'
    path = "/api/v1/query_range?" + urlencode({"query": q, "start": start, "end": end, "step": step, "nocache": 1})
    dt, status, body = c.timed_get(path)
    if status != 200:
        raise RuntimeError(f"VictoriaMetrics query_range answered {status}: {body[:300]!r}")
    res = json.loads(body)["data"]["result"]
    return dt, len(res[0]["values"]) if res else 0


def drive(gen_args: list[str], server_pid: int, log: Path, poll: callable | None = None,
          profile_cmd: list[str] | None = None) -> dict:
    """Run the load generator; sample server + generator CPU at the window's edges, RSS all along."""
    gen = Proc([PY, str(Path(__file__).parent / "_hubload.py"), *gen_args], log, stdout=subprocess.PIPE)
    events: queue.Queue = queue.Queue()
    rss = RssSampler(server_pid)

    def reader() -> None:
        for line in gen.p.stdout:
            try:
                events.put(json.loads(line))
            except ValueError:
                pass
        events.put({"event": "eof"})

    threading.Thread(target=reader, daemon=True).start()
    out: dict = {"polls": []}
    prof = None
    try:
        while True:
            try:
                ev = events.get(timeout=5.0)
            except queue.Empty:
                ev = {"event": "tick"}
            kind = ev["event"]
            if kind == "ready":
                out["payload_bytes"] = ev["payload_bytes"]
            elif kind == "measure_start":
                out["t0"], out["cpu0"], out["gcpu0"] = time.monotonic(), proc_cpu_seconds(server_pid), \
                    proc_cpu_seconds(gen.pid)
                out["start_poll"] = poll() if poll else {}
                out["rss_max"] = proc_rss_bytes(server_pid)
                out["measuring"] = True
                rss.on.set()
                if profile_cmd:
                    prof = subprocess.Popen(profile_cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            elif kind == "tick" and out.get("measuring"):
                out["rss_max"] = max(out["rss_max"], proc_rss_bytes(server_pid))
                if poll:
                    out["polls"].append(poll())
            elif kind == "measure_end":
                out["t1"], out["cpu1"], out["gcpu1"] = time.monotonic(), proc_cpu_seconds(server_pid), \
                    proc_cpu_seconds(gen.pid)
                out["measuring"] = False
                rss.on.clear()
                out["rss_end"] = proc_rss_bytes(server_pid)
                out["rss_max"] = max(out["rss_max"], out["rss_end"], rss.peak)
                out["rss_hwm"] = proc_rss_peak_bytes(server_pid)
                out["end_poll"] = poll() if poll else {}
                out["backlog"] = ev.get("backlog", 0)
            elif kind == "result":
                out["result"] = ev
            elif kind == "eof":
                break
        gen.p.wait(60)
    finally:
        rss.stop()
        gen.stop()
        if prof is not None:
            prof.wait(120)
    if "result" not in out or "t1" not in out:
        raise RuntimeError(f"load generator failed:\n{log.read_text()[-3000:]}")
    wall = out["t1"] - out["t0"]
    out["wall"] = wall
    out["cpu_pct"] = 100 * (out["cpu1"] - out["cpu0"]) / wall
    out["gen_cpu_pct"] = 100 * (out["gcpu1"] - out["gcpu0"]) / wall
    return out


# ---- the naive way and the hub's own path, in-process --------------------------------------------

def cpu_per_million_inprocess(work: Path, pushes: int) -> dict[str, float]:
    """CPU seconds per million samples, no HTTP: the hub's decode_push + ingest vs SQLite rows."""
    import logging

    from gpufleet.hub.service import Hub, HubOptions
    from gpufleet.series import snapshot_series

    logging.getLogger("gpufleet").setLevel(logging.CRITICAL)
    tmpl = _hubload.build_templates(20, "hub")
    nodes = 50
    base = time.time() - pushes // nodes * 5 - 60
    bodies = []
    for k in range(pushes):
        i = k % nodes
        parts = tmpl[_hubload.profile_of(i)][k % 20]
        ts = repr(round(base + 5 * (k // nodes) + i * 0.01, 3)).encode()
        bodies.append((_hubload.node_name(i), _hubload.stamp(parts, _hubload.node_name(i).encode(), ts)))
    out: dict[str, float] = {}

    hub = Hub(HubOptions(data=work / "inproc-hub"))
    for i in range(nodes):
        hub.fleet.view(_hubload.node_name(i)).labels = _hubload.node_labels(i)
    s0 = hub.counters.samples
    c0 = time.process_time()
    for name, body in bodies:
        hub.ingest_push(body, name)
    c1 = time.process_time()
    out["hub"] = (c1 - c0) / ((hub.counters.samples - s0) / 1e6)
    hub.close()

    db = sqlite3.connect(work / "naive.db")
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("CREATE TABLE samples (node TEXT, metric TEXT, labels TEXT, ts REAL, value REAL)")
    db.execute("CREATE INDEX samples_idx ON samples (metric, node, ts)")
    rows_total = 0
    c0 = time.process_time()
    from gpufleet.snapshot import NodeSnapshot  # the naive server still needs the same samples
    import msgspec

    dec = msgspec.json.Decoder(dict)
    for name, body in bodies:
        snap = msgspec.convert(dec.decode(body)["snapshots"][0], NodeSnapshot)
        keys, values = snapshot_series(snap, dict(snap.labels))
        rows = [(name, m, json.dumps(dict(lab)), snap.timestamp, v) for (m, lab), v in zip(keys, values)]
        with db:
            db.executemany("INSERT INTO samples VALUES (?, ?, ?, ?, ?)", rows)
        rows_total += len(rows)
    c1 = time.process_time()
    db.close()
    out["sqlite"] = (c1 - c0) / (rows_total / 1e6)
    out["sqlite_bytes_per_sample"] = sum(p.stat().st_size for p in work.glob("naive.db*")) / rows_total
    return out


# ---- main --------------------------------------------------------------------------------------

def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=60.0, help="measurement window after warm-up")
    ap.add_argument("--warmup", type=float, default=15.0,
                    help="seconds of load before the window; 0: the whole fleet joins as the window opens")
    ap.add_argument("--nodes", type=int, default=1000)
    ap.add_argument("--interval", type=float, default=5.0)
    ap.add_argument("--connections", type=int, default=32,
                    help="keep-alive connections of the load generator (real agents: one each)")
    ap.add_argument("--quick", action="store_true", help="15 s window, 200 nodes")
    ap.add_argument("--no-vm", action="store_true")
    ap.add_argument("--no-naive", action="store_true")
    ap.add_argument("--storeless", action="store_true",
                    help="the hub without its store: --remote-write and --history to a VictoriaMetrics running "
                         "beside it (both measured in the same window; no separate VM run)")
    ap.add_argument("--encoding", choices=("json", "compact"), default="compact",
                    help="how the simulated agents push to the hub: the compact push (as agents do) or JSON")
    ap.add_argument("--profile", metavar="DIR", help="py-spy record the hub during the window into DIR")
    ap.add_argument("--json", metavar="FILE", help="also write the figures to FILE as JSON (keys: hub_rss_max_mib, "
                    "vm_rss_max_mib, hub_cpu_s_per_million, vm_cpu_s_per_million, lag_max_s, ...)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    a = ap.parse_args()
    if a.quick:
        a.seconds, a.nodes, a.warmup = 15.0, 200, 10.0
    print(f"# bench_hub: {machine_line()}")
    print(f"# {a.nodes} nodes x (8 GPUs + host) every {a.interval:g} s, {a.connections} connections, "
          f"warm-up {a.warmup:g} s, window {a.seconds:g} s")
    work = Path(tempfile.mkdtemp(prefix="bench-hub-"))
    rows: list[list[object]] = []
    verdicts: list[str] = []
    try:
        run(a, work, rows, verdicts)
    finally:
        if a.keep:
            print(f"# kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    print()
    print(table(["goal", "figure", "peer figure", "ratio", "verdict"], rows))
    print()
    for v in verdicts:
        print(v)
    return 0


def fmt_ratio(x: float, y: float) -> str:
    return f"{x / y:.2f}x" if y and y == y and x == x else "-"


def run(a: argparse.Namespace, work: Path, rows: list, verdicts: list) -> None:
    hub_dir = work / "hub"
    hub_dir.mkdir()
    interval = a.interval

    # 1. 7 days of one node's GPUs, then the query in-process (a store-less hub has no store to fill)
    side_vm = None  # --storeless: the VictoriaMetrics the hub writes to and reads from
    hub_extra: list[str] = []
    if a.storeless:
        vm_bin = shutil.which("victoria-metrics")
        if not vm_bin:
            raise SystemExit("--storeless needs victoria-metrics (apt install victoria-metrics)")
        sport = free_port()
        side_vm = Proc([vm_bin, f"-storageDataPath={work / 'vm-side'}", f"-httpListenAddr=127.0.0.1:{sport}",
                        "-retentionPeriod=100y", "-loggerLevel=ERROR", "-search.latencyOffset=5s"], work / "vm-side.log")
        wait_http("127.0.0.1", sport, "/health", side_vm.p, timeout=60)
        hub_extra = ["--remote-write", f"http://127.0.0.1:{sport}/api/v1/write",
                     "--history", f"prometheus+http://127.0.0.1:{sport}"]
        end = time.time()
        start = end - 7 * DAY
        q_in, q_pts, q_res = float("nan"), 0, 0
        q_series = None
    else:
        wk = fill_week(str(hub_dir / "tsdb"))
        end, start = wk["end"], wk["end"] - 7 * DAY
        q_series = wk["q_series"]
        print(f"# week store: {wk['series']} series, {wk['samples'] / 1e6:.1f} M samples, built in "
              f"{wk['build_s']:.1f} s, {wk['bytes'] / MiB:.1f} MiB")
        q_in, q_pts, q_res = query_inprocess(str(hub_dir / "tsdb"), start, end, 50)
        print(f"# 7-day query in-process: {q_in * 1e3:.2f} ms median of 50, {q_pts} points (resolution {q_res} s)")

    # 2. the hub process
    port = free_port()
    hub = Proc([PY, "-m", "gpufleet", "hub", "--listen", f"127.0.0.1:{port}", "--data", str(hub_dir),
                "--log-level", "warning", *hub_extra], work / "hub.log")
    try:
        wait_http("127.0.0.1", port, "/healthz", hub.p, timeout=60)
        key = bench_key(hub_dir)
        c = Http(port, key)
        q_http, q_http_pts = query_http(c, start, end, 50)
        print(f"# 7-day query over HTTP: {q_http * 1e3:.2f} ms median of 50, {q_http_pts} points")

        tok = subprocess.run([PY, "-m", "gpufleet", "token", "create", "--data", str(hub_dir)],
                             capture_output=True, text=True, check=True).stdout.split()[-1]
        t0 = time.perf_counter()
        creds = register(c, tok, a.nodes)
        print(f"# registered {a.nodes} nodes in {time.perf_counter() - t0:.1f} s")
        (work / "creds.json").write_text(json.dumps(creds))

        def hub_poll() -> dict[str, float]:
            _, body = Http(port, key).call("GET", "/metrics")
            got = {k: prom_values(body, f"gpufleet_hub_{k}") for k in
                   ("ingest_lag_max_seconds", "ingest_samples_total", "ingest_snapshots_total",
                    "ingest_rejected_total", "store_errors_total", "remote_write_dropped_total",
                    "remote_write_queue_samples")}
            if side_vm is not None:
                got["side_vm_cpu_s"] = proc_cpu_seconds(side_vm.pid)
                got["side_vm_rss"] = float(proc_rss_bytes(side_vm.pid))
            return got

        profile_cmd = None
        if a.profile:
            pyspy = shutil.which("py-spy") or str(Path(PY).parent / "py-spy")
            Path(a.profile).mkdir(parents=True, exist_ok=True)
            profile_cmd = [pyspy, "record", "--pid", str(hub.pid), "--duration", str(int(a.seconds)),
                           "--rate", "100", "--gil", "--format", "raw", "--nonblocking",
                           "-o", str(Path(a.profile) / "hub.folded")]
        gen_common = ["--nodes", str(a.nodes), "--interval", str(interval), "--warmup", str(a.warmup),
                      "--seconds", str(a.seconds), "--connections", str(a.connections)]
        print("# ingest: hub ...", flush=True)
        qc = Http(port, key)
        busy = BusyQueries(lambda: query_http(qc, start, end, 1, warm=False)[0])
        probe = StallProbe()
        try:
            h = drive(["--target", "hub", "--url", f"http://127.0.0.1:{port}", "--creds", str(work / "creds.json"),
                       "--encoding", a.encoding, *gen_common], hub.pid, work / "gen-hub.log", hub_poll, profile_cmd)
        finally:
            busy.stop()
            stalls = probe.stop()
        q_during = busy.times
        q_stamps = busy.stamps
        print(f"# 7-day query over HTTP during ingest: {len(q_during)} queries, median "
              f"{median(q_during) * 1e3:.2f} ms, p99 {percentile(q_during, 99) * 1e3:.2f} ms, "
              f"max {max(q_during, default=float('nan')) * 1e3:.2f} ms, errors {busy.errors}")
        print(f"# the machine in that window: a process sleeping 1 ms woke late by p99 {stalls['late_p99_ms']:.1f} ms, "
              f"max {stalls['late_max_ms']:.1f} ms ({stalls['late_over_20ms']} times over 20 ms); CPU steal "
              f"{stalls['steal_s']:.1f} s")
        polls = [h["start_poll"], *h["polls"], h["end_poll"]]
        # The hub's own lag metric (receipt minus snapshot time, max over a minute), or the
        # generator's view (a push's due time to its answer) when that is worse: a push held
        # back behind a busy hub is late even before the hub sees it.
        lag_hub = max(p["ingest_lag_max_seconds"] for p in polls)
        lag_max = max(lag_hub, h["result"].get("done_max", 0.0))
        samples = h["end_poll"]["ingest_samples_total"] - h["start_poll"]["ingest_samples_total"]
        rate = samples / h["wall"]
        hub_cpu_per_m = (h["cpu1"] - h["cpu0"]) / (samples / 1e6) if samples else float("nan")
        r = h["result"]
        per_push = samples / max(1.0, h["end_poll"]["ingest_snapshots_total"] - h["start_poll"]["ingest_snapshots_total"])
        expected = a.nodes / interval * per_push
        print(f"# hub: {rate:,.0f} samples/s ({per_push:.0f} per push, expected {expected:,.0f}/s), "
              f"CPU {h['cpu_pct']:.1f}% of a core, RSS max {h['rss_max'] / MiB:.0f} MiB, lag max {lag_max:.2f} s, "
              f"push p50 {r['latency_p50'] * 1e3:.1f} ms p99 {r['latency_p99'] * 1e3:.1f} ms, "
              f"{r['ok']}/{r['pushes']} ok, generator CPU {h['gen_cpu_pct']:.1f}%, "
              f"send slip p99 {r['slip_p99'] * 1e3:.1f} ms, errors {r['error_count']} {r['errors'][:2]}")

        # 3. fleet snapshot and the week query after ingest (1,000-node catalogue)
        path = "/api/v1/snapshots"
        cold, st, body = c.timed_get(path)
        n_snap = len(json.loads(body)["snapshots"])
        snap_times = [c.timed_get(path)[0] for _ in range(20)]
        snap_med = median(snap_times)
        st_gz, body_gz = c.call("GET", path, headers={"Accept-Encoding": "gzip"})
        snap_bytes, snap_gz_bytes = len(body), len(body_gz)
        print(f"# /api/v1/snapshots: {snap_bytes / MiB:.2f} MiB plain, {snap_gz_bytes / MiB:.2f} MiB with "
              f"Accept-Encoding: gzip")
        procs_times = [c.timed_get(path + "?processes=true")[0] for _ in range(5)]
        print(f"# /api/v1/snapshots: {n_snap} nodes, {len(body) / MiB:.1f} MiB, first {cold * 1e3:.1f} ms, "
              f"median of 20 {snap_med * 1e3:.1f} ms; with processes median of 5 {median(procs_times) * 1e3:.1f} ms")
        q_busy, _ = query_http(c, start, end, 50)
        print(f"# 7-day query over HTTP after ingest ({a.nodes + 1} nodes in the store): {q_busy * 1e3:.2f} ms")
    finally:
        hub.stop()
        if side_vm is not None:
            side_vm.stop()
    side = {}
    if side_vm is not None:
        cpu = h["end_poll"]["side_vm_cpu_s"] - h["start_poll"]["side_vm_cpu_s"]
        side = {"side_vm_cpu_pct": 100 * cpu / h["wall"],
                "side_vm_rss_max_mib": max(p.get("side_vm_rss", 0.0) for p in polls) / MiB,
                "remote_write_dropped": h["end_poll"]["remote_write_dropped_total"],
                "remote_write_queue_max": max(p.get("remote_write_queue_samples", 0.0) for p in polls),
                "pushes_refused": h["end_poll"]["ingest_rejected_total"] - h["start_poll"]["ingest_rejected_total"]}
        print(f"# store-less: VictoriaMetrics beside the hub CPU {side['side_vm_cpu_pct']:.1f}% of a core, RSS max "
              f"{side['side_vm_rss_max_mib']:.0f} MiB; hub remote write dropped {side['remote_write_dropped']:.0f}, "
              f"queue max {side['remote_write_queue_max']:.0f} samples; pushes refused in the window "
              f"{side['pushes_refused']:.0f}")
    hub_log = (work / "hub.log").read_text(errors="replace")
    tracebacks = hub_log.count("Traceback")
    if tracebacks:
        print(f"# hub log holds {tracebacks} traceback(s); last lines:\n{hub_log[-1500:]}")

    # 4. VictoriaMetrics importing the same samples
    vm = None
    vm_q: dict[str, Any] = {}
    vm_stalls: dict[str, float] = {}
    vm_bin = shutil.which("victoria-metrics")
    if not a.no_vm and not a.storeless and vm_bin:
        vport = free_port()
        vmp = Proc([vm_bin, f"-storageDataPath={work / 'vm'}", f"-httpListenAddr=127.0.0.1:{vport}",
                    "-retentionPeriod=100y", "-loggerLevel=ERROR"], work / "vm.log")
        try:
            wait_http("127.0.0.1", vport, "/health", vmp.p, timeout=60)

            def vm_poll() -> dict[str, float]:
                _, body = Http(vport).call("GET", "/metrics")
                return {"rows": prom_values(body, "vm_rows_inserted_total")}

            vm_busy = None
            if q_series is not None:  # the week query asked of VictoriaMetrics too, while it ingests
                vm_import_series(vport, q_series)
                vqc = Http(vport)
                _, vm_pts = vm_week_query(vqc, start, end)
                print(f"# VictoriaMetrics holds the queried week too: {vm_pts} points for it")
                vm_busy = BusyQueries(lambda: vm_week_query(vqc, start, end)[0])
            vm_probe = StallProbe()
            print("# ingest: VictoriaMetrics ...", flush=True)
            try:
                vm = drive(["--target", "vm", "--url", f"http://127.0.0.1:{vport}", *gen_common], vmp.pid,
                           work / "gen-vm.log", vm_poll)
            finally:
                if vm_busy is not None:
                    vm_busy.stop()
                vm_stalls = vm_probe.stop()
            if vm_busy is not None:
                vm_q = vm_busy.summary()
                print(f"# VictoriaMetrics' week query during its ingest: {vm_q['n']} queries, median "
                      f"{vm_q['median_ms']:.2f} ms, p99 {vm_q['p99_ms']:.2f} ms, max {vm_q['max_ms']:.2f} ms, "
                      f"errors {vm_q['errors']}")
            print(f"# the machine in that window: a process sleeping 1 ms woke late by p99 "
                  f"{vm_stalls['late_p99_ms']:.1f} ms, max {vm_stalls['late_max_ms']:.1f} ms; CPU steal "
                  f"{vm_stalls['steal_s']:.1f} s")
            # samples VM accepted (204) in the window: lines of the pushes sent (its own
            # vm_rows_inserted_total, shown beside, should agree)
            vm["rows_counter"] = vm["end_poll"]["rows"] - vm["start_poll"]["rows"]
            vm["samples"] = vm["result"]["samples_ok"]
            vm["rate"] = vm["samples"] / vm["wall"]
            vm["cpu_per_m"] = (vm["cpu1"] - vm["cpu0"]) / (vm["samples"] / 1e6) if vm["samples"] else float("nan")
            vr = vm["result"]
            print(f"# VM: {vm['rate']:,.0f} samples/s (vm_rows_inserted_total {vm['rows_counter'] / vm['wall']:,.0f}/s), CPU {vm['cpu_pct']:.1f}% of a core, RSS max "
                  f"{vm['rss_max'] / MiB:.0f} MiB, import p50 {vr['latency_p50'] * 1e3:.1f} ms p99 "
                  f"{vr['latency_p99'] * 1e3:.1f} ms, {vr['ok']}/{vr['pushes']} ok, generator CPU {vm['gen_cpu_pct']:.1f}%")
        finally:
            vmp.stop()

    # 5. in-process: the hub's decode+ingest vs the naive SQLite way
    naive = None
    if not a.no_naive:
        naive = cpu_per_million_inprocess(work, 400 if a.quick else 1000)
        print(f"# in-process CPU s per million samples: hub decode+ingest {naive['hub']:.2f}, "
              f"SQLite row per sample {naive['sqlite']:.2f} ({naive['sqlite_bytes_per_sample']:.0f} B/sample)")

    # ---- the table
    ok_pushes = r["ok"] == r["pushes"] and r["pushes"] > 0
    rate_ok = rate >= 0.95 * expected
    lag_ok = lag_max < interval
    cpu_ok = h["cpu_pct"] <= 100.0
    vmd = vm or {}
    vmr = vmd.get("result", {})
    rows.append([f"ingest: {a.nodes} nodes x 8 GPUs every {interval:g} s, samples/s (expected {expected:,.0f})",
                 f"{rate:,.0f}", f"VM {vmd.get('rate', float('nan')):,.0f}", fmt_ratio(rate, vmd.get("rate", 0)),
                 "met" if rate_ok and ok_pushes else "not met"])
    rows.append([f"ingest lag max (hub metric) < {interval:g} s", f"{lag_max:.2f} s", "-", "-",
                 "met" if lag_ok else "not met"])
    rows.append(["push latency p50 / p99 (generator)",
                 f"{r['latency_p50'] * 1e3:.1f} / {r['latency_p99'] * 1e3:.1f} ms",
                 f"VM import {vmr.get('latency_p50', float('nan')) * 1e3:.1f} / "
                 f"{vmr.get('latency_p99', float('nan')) * 1e3:.1f} ms",
                 fmt_ratio(r["latency_p99"], vmr.get("latency_p99", 0)) + " (p99)", "info"])
    rows.append(["hub CPU <= 100% of one core", f"{h['cpu_pct']:.1f}%", f"VM {vmd.get('cpu_pct', float('nan')):.1f}%",
                 fmt_ratio(h["cpu_pct"], vmd.get("cpu_pct", 0)), "met" if cpu_ok else "not met"])
    rows.append(["CPU core-seconds per million samples (process, incl. HTTP)", f"{hub_cpu_per_m:.2f}",
                 f"VM {vmd.get('cpu_per_m', float('nan')):.2f}", fmt_ratio(hub_cpu_per_m, vmd.get("cpu_per_m", 0)),
                 "info"])
    if naive:
        rows.append(["CPU s per million samples in-process, no HTTP", f"hub ingest {naive['hub']:.2f}",
                     f"SQLite rows {naive['sqlite']:.2f}", fmt_ratio(naive["hub"], naive["sqlite"]), "info"])
    rows.append(["RSS (max during window / end)", f"{h['rss_max'] / MiB:.0f} / {h['rss_end'] / MiB:.0f} MiB",
                 f"VM {vmd.get('rss_max', 0) / MiB:.0f} MiB", fmt_ratio(h["rss_max"], vmd.get("rss_max", 0)), "info"])
    rows.append(["load generator CPU (separate process)", f"{h['gen_cpu_pct']:.1f}%",
                 f"{vmd.get('gen_cpu_pct', float('nan')):.1f}% (VM run)", "-", "info"])
    rows.append([f"7-day query, 1 GPU, 1,000 points, in-process <= 20 ms ({q_pts} pts)", f"{q_in * 1e3:.2f} ms",
                 "-", "-", "met" if q_in <= 0.020 else "not met"])
    rows.append([f"7-day query over HTTP <= 20 ms ({q_http_pts} pts)", f"{q_http * 1e3:.2f} ms",
                 f"after ingest {q_busy * 1e3:.2f} ms", fmt_ratio(q_busy, q_http), "met" if q_http <= 0.020 else "not met"])
    q_p99 = percentile(q_during, 99) if q_during else float("nan")
    vm_p99 = (vm_q.get("p99_ms") or float("nan")) / 1e3
    rows.append(["7-day query over HTTP while ingesting, p99 <= 20 ms (median)",
                 f"{q_p99 * 1e3:.1f} ({median(q_during) * 1e3 if q_during else float('nan'):.1f}) ms",
                 f"VM {vm_p99 * 1e3:.1f} ({vm_q.get('median_ms') or float('nan'):.1f}) ms", fmt_ratio(q_p99, vm_p99),
                 "met" if q_p99 <= 0.020 else "not met"])
    rows.append(["the machine then: 1 ms sleeper woken late, p99 / max (CPU steal)",
                 f"{stalls['late_p99_ms']:.1f} / {stalls['late_max_ms']:.1f} ms ({stalls['steal_s']:.0f} s)",
                 f"VM run {vm_stalls.get('late_p99_ms', float('nan')):.1f} / {vm_stalls.get('late_max_ms', float('nan')):.1f} ms "
                 f"({vm_stalls.get('steal_s', float('nan')):.0f} s)", "-", "info"])
    rows.append([f"GET /api/v1/snapshots, {n_snap} nodes <= 100 ms (median of 20)", f"{snap_med * 1e3:.1f} ms",
                 f"first call {cold * 1e3:.1f} ms", "-", "met" if snap_med <= 0.100 else "not met"])
    lag_goal = 5.0
    result = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": machine_line(),
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "nodes": a.nodes, "interval_s": interval, "warmup_s": a.warmup, "seconds": a.seconds,
        "encoding": a.encoding,
        "samples_per_push": per_push, "expected_samples_per_s": expected,
        "hub_samples_per_s": rate, "vm_samples_per_s": vmd.get("rate"),
        "hub_rss_max_mib": h["rss_max"] / MiB, "hub_rss_end_mib": h["rss_end"] / MiB,
        "hub_rss_hwm_mib": h["rss_hwm"] / MiB,
        "vm_rss_max_mib": vmd["rss_max"] / MiB if vm else None,
        "vm_rss_hwm_mib": vmd["rss_hwm"] / MiB if vm else None,
        "hub_cpu_pct": h["cpu_pct"], "vm_cpu_pct": vmd.get("cpu_pct"),
        "hub_cpu_s_per_million": hub_cpu_per_m, "vm_cpu_s_per_million": vmd.get("cpu_per_m"),
        "lag_max_s": lag_max, "lag_hub_metric_max_s": lag_hub, "lag_goal_s": lag_goal,
        "generator_backlog_at_end": h.get("backlog", 0),
        "push_p50_ms": r["latency_p50"] * 1e3, "push_p99_ms": r["latency_p99"] * 1e3,
        "vm_push_p50_ms": vmr["latency_p50"] * 1e3 if vm else None,
        "vm_push_p99_ms": vmr["latency_p99"] * 1e3 if vm else None,
        "pushes": r["pushes"], "pushes_ok": r["ok"], "slip_p99_s": r["slip_p99"],
        "query_inprocess_ms": q_in * 1e3, "query_http_ms": q_http * 1e3, "query_after_ingest_ms": q_busy * 1e3,
        "query_during_ingest_ms_median": median(q_during) * 1e3 if q_during else None,
        "query_during_ingest_ms_p99": percentile(q_during, 99) * 1e3 if q_during else None,
        "query_during_ingest_ms_max": max(q_during) * 1e3 if q_during else None,
        "query_during_ingest_log": [[round(t, 3), round(dt * 1e3, 2)] for t, dt in q_stamps],
        "vm_query_during_ingest_ms_median": vm_q.get("median_ms"), "vm_query_during_ingest_ms_p99": vm_q.get("p99_ms"),
        "vm_query_during_ingest_ms_max": vm_q.get("max_ms"),
        "query_during_ingest_p99_ratio": q_p99 / vm_p99 if vm_q.get("p99_ms") else None,
        "machine_stalls_hub_window": stalls, "machine_stalls_vm_window": vm_stalls or None,
        "snapshots_ms_median": snap_med * 1e3, "snapshots_first_ms": cold * 1e3,
        "snapshots_bytes": snap_bytes, "snapshots_gzip_bytes": snap_gz_bytes,
        "rss_ratio": h["rss_max"] / vmd["rss_max"] if vm else None,
        "cpu_per_million_ratio": hub_cpu_per_m / vmd["cpu_per_m"] if vm else None,
    }
    if side:
        result["storeless"] = side
    if naive:
        result["inprocess_hub_cpu_s_per_million"] = naive["hub"]
        result["inprocess_sqlite_cpu_s_per_million"] = naive["sqlite"]
    if a.json:
        Path(a.json).write_text(json.dumps(result, indent=1) + "\n")
        print(f"# figures written to {a.json}")
    verdicts.append(f"VERDICT ingest: {'met' if (lag_ok and cpu_ok and rate_ok and ok_pushes) else 'NOT MET'} "
                    f"(lag max {lag_max:.2f} s, CPU {h['cpu_pct']:.1f}%, {rate:,.0f} samples/s, "
                    f"{r['ok']}/{r['pushes']} pushes ok)")
    verdicts.append(f"VERDICT week query <= 20 ms: {'met' if max(q_in, q_http) <= 0.020 else 'NOT MET'} "
                    f"(in-process {q_in * 1e3:.2f} ms, HTTP {q_http * 1e3:.2f} ms)")
    verdicts.append(f"VERDICT week query while ingesting, p99 <= 20 ms: {'met' if q_p99 <= 0.020 else 'NOT MET'} "
                    f"(p99 {q_p99 * 1e3:.1f} ms, VictoriaMetrics {vm_p99 * 1e3:.1f} ms on the same load; a 1 ms "
                    f"sleeper woke up to {stalls['late_max_ms']:.1f} ms late meanwhile)")
    verdicts.append(f"VERDICT fleet snapshot <= 100 ms: {'met' if snap_med <= 0.100 else 'NOT MET'} "
                    f"({snap_med * 1e3:.1f} ms)")


if __name__ == "__main__":
    sys.exit(main())
