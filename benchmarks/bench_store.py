"""Benchmark of the embedded store (gpufleet.store) against VictoriaMetrics and Prometheus.

Run: .venv/bin/python benchmarks/bench_store.py [--quick]
     .venv/bin/python benchmarks/bench_store.py --cut    # head cut: one-shot vs budgeted cycle only
     .venv/bin/python benchmarks/bench_store.py --head   # head memory, push and cut CPU, simulated nodes

Generates realistic GPU-node telemetry (default 2,000 series x 1 h at 1 s =
7.2M samples), stores it, compacts, and prints bytes/sample beside the peers
on the same data when their binaries exist (victoria-metrics, promtool).
Also prints ingest rate, per-push append latency (340 series) and the latency
of a 7-day query of one series at 1,000 points.
"""
from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src"))

from gpufleet.store import Matcher, TimeSeriesStore  # noqa: E402

BASE_TS = 1_700_006_400  # a multiple of 7200, so one hour stays inside one 2 h block everywhere
MiB = 1 << 20


@dataclass
class NodeData:
    node: str
    ts: np.ndarray  # (rows,) seconds, ms precision
    keys: list[tuple[str, tuple[tuple[str, str], ...]]]
    values: np.ndarray  # rows x series


def _phases(rng: np.random.Generator, n: int) -> np.ndarray:
    """Per-second load in [0, 1]: idle gaps and jobs of 5-30 min with periodic dips."""
    load = np.zeros(n)
    t = 0
    while t < n:
        idle = int(rng.integers(60, 600))
        t += idle
        job = int(rng.integers(300, 1800))
        level = rng.uniform(0.75, 1.0)
        seg = np.full(max(0, min(job, n - t)), level)
        period = int(rng.integers(30, 120))  # data loading / eval every `period` seconds
        seg[(np.arange(seg.size) % period) < int(rng.integers(2, 6))] *= rng.uniform(0.2, 0.5)
        load[t : t + seg.size] = seg
        t += job
    return load


def _ema(x: np.ndarray, alpha: float, start: float) -> np.ndarray:
    out = np.empty_like(x)
    acc = start
    for i, v in enumerate(x):  # seconds-long series: a plain loop is fast enough here
        acc += alpha * (v - acc)
        out[i] = acc
    return out


def gpu_series(rng: np.random.Generator, n: int, gpu: int) -> dict[str, np.ndarray]:
    load = _phases(rng, n)
    busy = load > 0
    util = np.clip(np.rint(load * 100 + rng.normal(0, 1.5, n) * busy), 0, 100)
    mem_util = np.clip(np.rint(util * rng.uniform(0.3, 0.6) + rng.normal(0, 1, n) * busy), 0, 100)
    heat = _ema(load, 0.02, 0.0)
    temp = np.rint(32 + 45 * heat + rng.normal(0, 0.4, n))
    mem_temp = np.rint(36 + 40 * heat + rng.normal(0, 0.4, n))
    power = np.round(62 + 560 * load + rng.normal(0, 6, n) * busy + rng.normal(0, 0.3, n), 2)
    energy = np.cumsum(np.rint(power * 1000))  # mJ counter
    energy += float(rng.integers(1e9, 1e11))
    total = 81559 * MiB
    # memory: steps at job start (model load) and a few allocator changes
    used_mib = np.where(busy, 0, 3)
    start_idx = np.flatnonzero(np.diff(busy.astype(int)) == 1) + 1
    for s in start_idx:
        e = s + int(np.argmin(busy[s:])) if not busy[s:].all() else n
        used_mib[s:e] = int(rng.integers(20000, 78000))
        for _ in range(int(rng.integers(0, 4))):
            k = int(rng.integers(s, max(s + 1, e)))
            used_mib[k:e] += int(rng.integers(-500, 500))
    used = used_mib.astype(np.float64) * MiB
    sm_clock = np.where(busy, 1980.0, 345.0)
    throttle = rng.random(n) < 0.02
    sm_clock[throttle & busy] -= 15 * rng.integers(1, 6, int((throttle & busy).sum()))
    pcie_tx = np.rint(np.abs(rng.normal(2.0e5, 5e4, n)) * load)  # KB/s
    pcie_rx = np.rint(np.abs(rng.normal(1.0e6, 2e5, n)) * load)
    nvlink = np.cumsum(np.rint(np.abs(rng.normal(8e9, 1e9, n)) * load))  # bytes counter
    sbe = np.cumsum(rng.random(n) < 0.0005).astype(np.float64)
    reasons = np.where(busy, 0.0, 1.0)
    reasons[throttle & busy] = 4.0
    sm_active = np.round(np.clip(load * 0.92 + rng.normal(0, 0.02, n) * busy, 0, 1), 3)
    tensor = np.round(np.clip(load * 0.55 + rng.normal(0, 0.02, n) * busy, 0, 1), 3)
    return {
        "gpu_utilization_percent": util,
        "gpu_memory_utilization_percent": mem_util,
        "gpu_temperature_celsius": temp,
        "gpu_memory_temperature_celsius": mem_temp,
        "gpu_power_watts": power,
        "gpu_power_limit_watts": np.full(n, 700.0),
        "gpu_energy_millijoules_total": energy,
        "gpu_memory_used_bytes": used,
        "gpu_memory_free_bytes": total - used,
        "gpu_memory_total_bytes": np.full(n, float(total)),
        "gpu_sm_clock_mhz": sm_clock,
        "gpu_memory_clock_mhz": np.full(n, 2619.0),
        "gpu_pcie_tx_kilobytes_per_second": pcie_tx,
        "gpu_pcie_rx_kilobytes_per_second": pcie_rx,
        "gpu_nvlink_tx_bytes_total": nvlink,
        "gpu_ecc_sbe_errors_total": sbe,
        "gpu_ecc_dbe_errors_total": np.zeros(n),
        "gpu_xid_last": np.zeros(n),
        "gpu_throttle_reasons": reasons,
        "gpu_sm_active_ratio": sm_active,
        "gpu_tensor_active_ratio": tensor,
        "gpu_pstate": np.where(busy, 0.0, 8.0),
    }


def host_series(rng: np.random.Generator, n: int, load: np.ndarray) -> dict[tuple[str, tuple[tuple[str, str], ...]], np.ndarray]:
    out: dict[tuple[str, tuple[tuple[str, str], ...]], np.ndarray] = {}
    ncpu = 128
    busy_frac = np.clip(0.1 + 0.3 * load + rng.normal(0, 0.03, n), 0, 1)
    for mode, frac in (("user", busy_frac * 0.8), ("system", busy_frac * 0.2),
                       ("iowait", np.abs(rng.normal(0.005, 0.003, n))), ("idle", 1 - busy_frac)):
        out[("node_cpu_seconds_total", (("mode", mode),))] = np.round(
            float(rng.integers(1e5, 1e7)) + np.cumsum(frac * ncpu), 2)
    for i, m in enumerate(("1", "5", "15")):
        out[("node_load" + m, ())] = np.round(_ema(busy_frac * ncpu, 0.2 / (1 + 3 * i), 10.0), 2)
    avail = 2e12 - np.cumsum(rng.integers(-50, 51, n)) * 4096 * 64.0 - load * 4e11
    out[("node_memory_available_bytes", ())] = np.rint(avail / 4096) * 4096
    out[("node_memory_total_bytes", ())] = np.full(n, 2.0e12)
    for dev in ("eth0", "ib0"):
        for d in ("receive", "transmit"):
            rate = np.abs(rng.normal(1e6 if dev == "eth0" else 2e9, 3e5 if dev == "eth0" else 5e8, n)) * (0.2 + load)
            out[(f"node_network_{d}_bytes_total", (("device", dev),))] = float(rng.integers(1e9, 1e12)) + np.cumsum(np.rint(rate))
    for d in ("read", "written"):
        rate = np.where(rng.random(n) < 0.3, np.rint(np.abs(rng.normal(5e6, 2e6, n))) // 4096 * 4096, 0.0)
        out[(f"node_disk_{d}_bytes_total", (("device", "nvme0n1"),))] = float(rng.integers(1e9, 1e12)) + np.cumsum(rate)
    out[("node_filesystem_avail_bytes", (("mountpoint", "/"),))] = 1e12 - np.cumsum(rng.random(n) < 0.05) * 4096 * 256.0
    out[("node_procs_running", ())] = np.rint(np.clip(rng.normal(4 + 20 * load, 2), 0, None))
    out[("node_context_switches_total", ())] = float(rng.integers(1e8, 1e10)) + np.cumsum(np.rint(np.abs(rng.normal(3e5, 5e4, n))))
    out[("node_intr_total", ())] = float(rng.integers(1e8, 1e10)) + np.cumsum(np.rint(np.abs(rng.normal(2e5, 3e4, n))))
    out[("node_boot_time_seconds", ())] = np.full(n, 1.69e9)
    out[("node_time_seconds", ())] = np.arange(n, dtype=np.float64) + BASE_TS
    out[("node_entropy_available_bits", ())] = np.full(n, 256.0)
    out[("node_hwmon_temp_celsius", (("chip", "cpu0"),))] = np.rint(40 + 20 * _ema(load, 0.02, 0.0) + rng.normal(0, 0.5, n))
    return out


def generate(nodes: int, seconds: int, seed: int = 7) -> list[NodeData]:
    """nodes x (8 GPUs x 22 + 24 host) = 200 series per node at 1 s."""
    rng = np.random.default_rng(seed)
    out = []
    for k in range(nodes):
        node = f"gpu-node-{k:03d}"
        cols: dict[tuple[str, tuple[tuple[str, str], ...]], np.ndarray] = {}
        node_load = np.zeros(seconds)
        for g in range(8):
            per = gpu_series(rng, seconds, g)
            node_load += per["gpu_utilization_percent"] / 800
            for name, v in per.items():
                cols[(name, (("gpu", str(g)), ("node", node)))] = v
        for (name, labels), v in host_series(rng, seconds, node_load).items():
            cols[(name, tuple(sorted(labels + (("node", node),))))] = v
        offset = float(rng.integers(0, 1000)) / 1000
        jitter = rng.integers(-4, 5, seconds) / 1000
        ts = np.round(BASE_TS + offset + np.arange(seconds) + jitter, 3)
        keys = list(cols)
        out.append(NodeData(node, ts, keys, np.stack([cols[k] for k in keys], axis=1)))
    return out


# --------------------------------------------------------------------- helpers
def dir_size(path: str) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for f in files:
            fp = os.path.join(root, f)
            if not os.path.islink(fp):
                total += os.path.getsize(fp)
    return total


def _prom_labels(labels: tuple[tuple[str, str], ...]) -> str:
    return "{" + ",".join(f'{k}="{v}"' for k, v in labels) + "}" if labels else ""


def text_lines(data: list[NodeData], ms: bool) -> "iter[str]":
    """Exposition lines, series by series (what both peers want)."""
    for nd in data:
        stamps = [str(int(round(t * 1000))) for t in nd.ts] if ms else [f"{t:.3f}" for t in nd.ts]
        for j, (name, labels) in enumerate(nd.keys):
            head = name + _prom_labels(labels) + " "
            yield "".join(f"{head}{v!r} {s}\n" for v, s in zip(nd.values[:, j].tolist(), stamps))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _http(url: str, body: bytes | None = None, timeout: float = 120) -> bytes:
    req = urllib.request.Request(url, data=body, method="POST" if body is not None else "GET")
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return r.read()


def bench_victoria(data: list[NodeData], work: str) -> dict[str, float] | None:
    exe = shutil.which("victoria-metrics")
    if not exe:
        return None
    ddir = os.path.join(work, "vm")
    port = _free_port()
    proc = subprocess.Popen([exe, f"-storageDataPath={ddir}", f"-httpListenAddr=127.0.0.1:{port}",
                             "-retentionPeriod=100y"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):  # bounded wait for startup
            try:
                _http(base + "/health", timeout=2)
                break
            except OSError:
                time.sleep(0.1)
        t0 = time.perf_counter()
        buf: list[str] = []
        size = 0
        for chunk in text_lines(data, ms=True):
            buf.append(chunk)
            size += len(chunk)
            if size > 32 * MiB:
                _http(base + "/api/v1/import/prometheus", "".join(buf).encode())
                buf, size = [], 0
        if buf:
            _http(base + "/api/v1/import/prometheus", "".join(buf).encode())
        _http(base + "/internal/force_flush")
        ingest_s = time.perf_counter() - t0
        # VictoriaMetrics merges parts in the background; wait until the size settles.
        last, stable = -1, 0
        for _ in range(60):
            time.sleep(1)
            cur = dir_size(ddir)
            stable = stable + 1 if cur == last else 0
            last = cur
            if stable >= 5:
                break
        data_bytes = dir_size(os.path.join(ddir, "data"))
        return {"bytes": float(last), "data_bytes": float(data_bytes), "ingest_s": ingest_s}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


def bench_prometheus(data: list[NodeData], work: str) -> dict[str, float] | None:
    exe = shutil.which("promtool")
    if not exe:
        return None
    src = os.path.join(work, "data.om")
    with open(src, "w") as fh:
        for chunk in text_lines(data, ms=False):
            fh.write(chunk)
        fh.write("# EOF\n")
    out = os.path.join(work, "prom")
    t0 = time.perf_counter()
    subprocess.run([exe, "tsdb", "create-blocks-from", "openmetrics", src, out], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=1800)
    took = time.perf_counter() - t0
    os.unlink(src)
    chunks = sum(dir_size(os.path.join(out, b, "chunks")) for b in os.listdir(out)
                 if os.path.isdir(os.path.join(out, b, "chunks")))
    return {"bytes": float(chunks), "block_bytes": float(dir_size(out)), "ingest_s": took}


# ---------------------------------------------------------------------- store
def bench_gpufleet(data: list[NodeData], work: str) -> dict[str, float]:
    path = os.path.join(work, "gpufleet")
    store = TimeSeriesStore(path)
    rows = data[0].ts.size
    t0 = time.perf_counter()
    for i in range(rows):  # interleave nodes per second, as pushes would arrive
        for nd in data:
            store.append(nd.node, float(nd.ts[i]), nd.keys, nd.values[i])
    ingest_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    store.maintain(float(data[0].ts[-1]) + 86400, full=True)
    compact_s = time.perf_counter() - t0
    st = store.stats()
    store.close()
    return {"bytes": float(st["bytes_on_disk"]), "raw_bytes": float(st["bytes_raw_blocks"]),
            "samples": float(st["samples"]), "ingest_s": ingest_s, "compact_s": compact_s}


def bench_append_latency(work: str, nodes: int = 50, pushes: int = 40) -> dict[str, float]:
    """Append latency of one node push of 340 series (8 GPUs x 30 metrics + 100 host)."""
    store = TimeSeriesStore(os.path.join(work, "lat"))
    rng = np.random.default_rng(1)
    per_node = []
    for k in range(nodes):
        keys = [(f"gpu_metric_{m}", (("gpu", str(g)), ("node", f"n{k}"))) for g in range(8) for m in range(30)]
        keys += [(f"host_metric_{m}", (("node", f"n{k}"),)) for m in range(100)]
        per_node.append((f"n{k}", keys))
    lat = []
    for p in range(pushes):
        ts = BASE_TS + 5.0 * p
        for node, keys in per_node:
            # fresh key objects each push, as a decoded request body would give
            fresh = [(m, tuple((a, b) for a, b in lab)) for m, lab in keys]
            vals = np.rint(rng.random(340) * 100).tolist()
            t0 = time.perf_counter()
            store.append(node, ts, fresh, vals)
            lat.append(time.perf_counter() - t0)
    store.close()
    arr = np.array(lat[nodes:])  # skip the first push per node (series registration)
    return {"mean_ms": float(arr.mean() * 1e3), "p99_ms": float(np.percentile(arr, 99) * 1e3),
            "samples_per_s": 340 / float(arr.mean())}


def bench_fleet(work: str, nodes: int, minutes: int) -> dict[str, float]:
    """Steady-state hub load: `nodes` x 340 series pushed every 5 s, maintain() every 10 s.

    Only time spent inside the store is counted; cores = store seconds / simulated seconds.
    """
    store = TimeSeriesStore(os.path.join(work, "fleet"))
    rng = np.random.default_rng(2)
    pushes = minutes * 12
    fleet = []
    for k in range(nodes):
        keys = [(f"gpu_metric_{m}", (("gpu", str(g)), ("node", f"n{k}"))) for g in range(8) for m in range(30)]
        keys += [(f"host_metric_{m}", (("node", f"n{k}"),)) for m in range(100)]
        fleet.append((f"n{k}", keys, 0.001 * (k % 1000)))
    state = rng.integers(0, 1000, (nodes, 340)).astype(np.float64)
    append_s = maintain_s = 0.0
    for p in range(pushes):
        ts = BASE_TS + 5.0 * p
        state += rng.integers(-2, 3, state.shape)  # integer random walks, like temps/clocks/%
        t0 = time.perf_counter()
        for (node, keys, offset), vals in zip(fleet, state):
            store.append(node, ts + offset, keys, vals)
        t1 = time.perf_counter()
        if p % 2 == 1:
            store.maintain(ts + 5.0)
        append_s += t1 - t0
        maintain_s += time.perf_counter() - t1
    sim_s = pushes * 5.0
    st = store.stats()
    store.close()
    shutil.rmtree(os.path.join(work, "fleet"), ignore_errors=True)
    print(f"                 fleet store after {sim_s:.0f} s: {st['bytes_per_sample']:.3f} B/sample on disk, "
          f"blocks per resolution {st['blocks']}")
    return {"cores": (append_s + maintain_s) / sim_s, "append_cores": append_s / sim_s,
            "maintain_cores": maintain_s / sim_s, "samples_per_s": nodes * 340 / 5.0,
            "sim_s": sim_s, "samples": float(st["samples"])}


def bench_week_query(work: str, quick: bool) -> dict[str, float]:
    """7 days of one GPU's utilisation at 1 s, then a 1,000-point query over it."""
    store = TimeSeriesStore(os.path.join(work, "week"))
    rng = np.random.default_rng(3)
    days = 7
    keys = [("gpu_utilization_percent", (("gpu", "0"), ("node", "n0")))]
    hour = 3600
    t0 = time.perf_counter()
    for h in range(days * 24):
        ts = BASE_TS + h * hour + np.arange(hour, dtype=np.float64)
        util = gpu_series(rng, hour, 0)["gpu_utilization_percent"] if h % 24 == 0 or not quick else \
            np.rint(rng.random(hour) * 100)
        store.append_rows("n0", ts, keys, util[:, None])
        if h % 6 == 5:
            store.maintain(float(ts[-1]))
    store.maintain(BASE_TS + days * 86400.0, full=True)
    load_s = time.perf_counter() - t0
    start, end = float(BASE_TS), float(BASE_TS + days * 86400)
    step = (end - start) / 1000
    res = store.choose_resolution(start, end, step)
    store.query_range("gpu_utilization_percent", [Matcher("gpu", "=", "0")], start, end, step, "avg")
    times = []
    for _ in range(20):
        t = time.perf_counter()
        out = store.query_range("gpu_utilization_percent", [Matcher("gpu", "=", "0")], start, end, step, "avg")
        times.append(time.perf_counter() - t)
    points = len(out[0].values)
    # the same query forced through raw samples, for scale
    t = time.perf_counter()
    raw = [store._gather(0, 0, start, end)]
    raw_s = time.perf_counter() - t
    store.close()
    return {"median_ms": float(np.median(times) * 1e3), "max_ms": float(np.max(times) * 1e3), "points": points,
            "resolution": res, "load_s": load_s, "raw_read_ms": raw_s * 1e3,
            "raw_samples": float(raw[0][0].size if raw[0] else 0)}


def _cut_fleet(store: TimeSeriesStore, nodes: int, series: int, rows: int, seed: int = 5):
    """Fill the head: `nodes` x `series` x `rows` pushes at 5 s (integer random walks)."""
    rng = np.random.default_rng(seed)
    fleet = []
    for k in range(nodes):
        keys = [(f"gpu_metric_{m}", (("gpu", str(g)), ("node", f"n{k}"))) for g in range(8) for m in range((series - 100) // 8)]
        keys += [(f"host_metric_{m}", (("node", f"n{k}"),)) for m in range(series - len(keys))]
        fleet.append((f"n{k}", keys, 0.001 * k))
    state = rng.integers(0, 1000, (nodes, series)).astype(np.float64)
    for r in range(rows):
        state += rng.integers(-2, 3, state.shape)
        for (node, keys, off), vals in zip(fleet, state):
            store.append(node, BASE_TS + 5.0 * r + off, keys, vals)
    return fleet, state, rng


def bench_cut(work: str, nodes: int, series: int = 730, rows: int = 60, budget: float = 0.05) -> None:
    """The head cut of a full head (`rows` pushes of every node): one maintain() vs a budgeted cycle.

    Budgeted: maintain(budget_s=budget) once per simulated second, while the
    fleet keeps pushing (nodes/5 pushes between calls, not timed), until the
    cycle is done; then calls until the merges of its small blocks are done.
    """
    now = BASE_TS + 5.0 * rows + 1
    # one-shot, as before the cycle existed
    store = TimeSeriesStore(os.path.join(work, "cut-once"))
    _cut_fleet(store, nodes, series, rows)
    nsamp = store.stats()["samples_in_head"]
    t = time.perf_counter()
    r = store.maintain(now, budget_s=None)
    once_s = time.perf_counter() - t
    assert r["cut"] == 1 and store.stats()["samples_in_head"] == 0
    st = store.stats()
    store.close()
    shutil.rmtree(os.path.join(work, "cut-once"), ignore_errors=True)
    print(f"head cut       : {nodes} nodes x {series} series x {rows} rows = {nsamp:,} samples in the head")
    print(f"  one-shot     : maintain(budget_s=None) {once_s * 1e3:,.0f} ms in one call "
          f"(blocks per resolution {st['blocks']})")

    store = TimeSeriesStore(os.path.join(work, "cut-budget"))
    fleet, state, rng = _cut_fleet(store, nodes, series, rows)
    per_s = max(1, nodes // 5)
    cut_calls: list[float] = []
    merge_calls: list[float] = []
    pushes = 0
    cursor = 0
    in_cycle = True
    cycle_calls = 0
    for sec in range(100_000):  # bounded
        t = time.perf_counter()
        # maintain's clock stays at `now`: only this cycle is due (the pushes' times run ahead)
        r = store.maintain(now, budget_s=budget)
        took = time.perf_counter() - t
        if in_cycle:
            cut_calls.append(took)
            if not r["pending_nodes"]:
                in_cycle, cycle_calls = False, sec + 1
        elif r["cut"] or r["merged"] or store._job is not None:
            merge_calls.append(took)
        else:
            break
        if not in_cycle and sec > cycle_calls + 2000:
            break
        # the fleet keeps pushing during the cycle: 1/5 of the nodes per second
        for _ in range(per_s if in_cycle else 0):
            node, keys, off = fleet[cursor % nodes]
            k = cursor % nodes
            ts = now + sec + off + 0.5
            state[k] += rng.integers(-2, 3, series)
            store.append(node, ts, keys, state[k])
            cursor += 1
            pushes += 1
    st = store.stats()
    idle = []
    for i in range(2000):
        t = time.perf_counter()
        store.maintain(now, budget_s=budget)
        idle.append(time.perf_counter() - t)
    store.close()
    shutil.rmtree(os.path.join(work, "cut-budget"), ignore_errors=True)
    cc = np.array(cut_calls)
    mc = np.array(merge_calls) if merge_calls else np.zeros(1)
    print(f"  budgeted     : maintain(budget_s={budget}) once a second, {pushes:,} pushes in between")
    print(f"    cut cycle  : {cc.size} calls, longest {cc.max() * 1e3:.1f} ms, median {np.median(cc) * 1e3:.1f} ms, "
          f"total {cc.sum() * 1e3:,.0f} ms in the store ({cc.size} s of wall time to finish the cycle)")
    print(f"    5 longest  : {', '.join(f'{x * 1e3:.0f}' for x in sorted(cc, reverse=True)[:5])} ms; "
          f"calls over 60 ms: {int((cc > 0.06).sum())} of {cc.size}")
    print(f"    after it   : {len(merge_calls)} calls with work left (merges of its small blocks), longest "
          f"{mc.max() * 1e3:.1f} ms, total {mc.sum() * 1e3:,.0f} ms; blocks per resolution {st['blocks']}")
    print(f"    per node   : {cc.sum() / nodes * 1e3:.1f} ms of store time per node cut ({series} series x {rows} rows): "
          f"a {budget * 1e3:.0f} ms/s budget cuts ~{budget / (cc.sum() / nodes):.1f} nodes/s")
    print(f"    idle call  : maintain(budget_s={budget}) with no work: median {np.median(idle) * 1e6:.1f} us, "
          f"max {np.max(idle) * 1e6:.1f} us")


def _sim_rows(rows: int) -> tuple[list, np.ndarray]:
    """`rows` pushes 5 s apart of one simulated 8xH100 node (+ 224-CPU host): its keys and values."""
    from gpufleet.agent.collect import Collection
    from gpufleet.backends.sim import SimBackend
    from gpufleet.collectors import SIMULATED_NODE, build
    from gpufleet.collectors.base import CollectContext
    from gpufleet.series import snapshot_series

    clock = [float(BASE_TS)]
    backend = SimBackend("8xH100", seed=1, node="sim", clock=lambda: clock[0])
    ctx = CollectContext(backend=backend, options={"node": "sim"})
    c = Collection("sim", build(ctx, SIMULATED_NODE), labels={"cluster": "bench"}, backend="sim")
    c.run(clock[0])
    keys0: list = []
    out = []
    for _ in range(rows):
        clock[0] += 5.0
        snap = c.run(clock[0])
        keys, values = snapshot_series(snap, dict(snap.labels))
        if not keys0:
            keys0 = list(keys)
        got = dict(zip(keys, values))
        out.append([got.get(k, float("nan")) for k in keys0])
    return keys0, np.array(out, np.float64)


def bench_head(work: str, nodes: int, rows: int = 60) -> dict[str, float]:
    """The head at steady state: bytes per sample, CPU per push and per node cut, a head query.

    Every node pushes the simulator's series (~1,000 with per-link NVLink and the host's
    CPUs), `rows` pushes 5 s apart (a full 5-minute head), each node starting at another
    row of a longer simulated run so nodes differ. Memory is what the pushes after each
    node's first one add (tracemalloc), so the series index's registration is left out.
    """
    import tracemalloc

    keys, sim = _sim_rows(rows + 60)
    series = len(keys)
    fleet = []
    for k in range(nodes):
        node = f"n{k:05d}"
        fleet.append((node, [(m, tuple(sorted(dict(lab, node=node).items()))) for m, lab in keys], k % 60))
    store = TimeSeriesStore(os.path.join(work, "head"))
    for node, nkeys, off in fleet:  # the join: registration, not measured
        store.append(node, BASE_TS + 0.001 * off, nkeys, sim[off])
    tracemalloc.start()
    m0 = tracemalloc.get_traced_memory()[0]
    cpu = time.process_time()
    for r in range(1, rows):
        for node, nkeys, off in fleet:
            store.append(node, BASE_TS + 5.0 * r + 0.001 * off, nkeys, sim[off + r])
    push_cpu = time.process_time() - cpu
    head_bytes = tracemalloc.get_traced_memory()[0] - m0
    tracemalloc.stop()
    samples = (rows - 1) * series * nodes
    # the same pushes without tracemalloc, for CPU: a second store
    store.close()
    store = TimeSeriesStore(os.path.join(work, "head2"))
    for node, nkeys, off in fleet:
        store.append(node, BASE_TS + 0.001 * off, nkeys, sim[off])
    cpu = time.process_time()
    for r in range(1, rows):
        for node, nkeys, off in fleet:
            store.append(node, BASE_TS + 5.0 * r + 0.001 * off, nkeys, sim[off + r])
    push_cpu = time.process_time() - cpu
    metric, labels = fleet[0][1][0]
    matchers = [Matcher(k, "=", v) for k, v in labels]
    end = BASE_TS + 5.0 * rows
    q = []
    for _ in range(20):
        t = time.perf_counter()
        got = store.query_range(metric, matchers, end - 7 * 86400, end, 7 * 86400 / 1000, "avg")
        q.append(time.perf_counter() - t)
    assert got and len(got[0].values) >= 1
    cpu = time.process_time()
    store.maintain(end + 1, budget_s=None)
    cut_cpu = time.process_time() - cpu
    assert store.stats()["samples_in_head"] == 0
    store.close()
    out = {"nodes": nodes, "series": series, "rows": rows,
           "head_bytes_per_sample": head_bytes / samples, "head_mib": head_bytes / MiB,
           "head_mib_per_1000_nodes_5min": head_bytes / samples * series * 60 * 1000 / MiB,
           "push_ms_cpu": push_cpu / ((rows - 1) * nodes) * 1e3,
           "cut_ms_cpu_per_node": cut_cpu / nodes * 1e3,
           "query_ms_median": float(np.median(q)) * 1e3}
    print(f"head           : {nodes} nodes x {series} series x {rows} pushes 5 s apart (simulated 8xH100 nodes)")
    print(f"  memory       : {out['head_bytes_per_sample']:.2f} bytes per sample in the head "
          f"({out['head_mib']:.1f} MiB; {out['head_mib_per_1000_nodes_5min']:.0f} MiB for 1,000 such nodes over 5 min)")
    print(f"  push         : {out['push_ms_cpu']:.3f} ms CPU per push (append, WAL included)")
    print(f"  cut          : {out['cut_ms_cpu_per_node']:.1f} ms CPU per node (raw + 1m + 1h blocks of its head)")
    print(f"  query        : 7 days of one series at 1,000 points, head included: {out['query_ms_median']:.2f} ms median")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="199 series x 10 min, 100-node fleet, shorter week build")
    ap.add_argument("--no-peers", action="store_true", help="skip VictoriaMetrics / Prometheus")
    ap.add_argument("--cut", action="store_true",
                    help="only the head-cut benchmark: 1,000 nodes x 730 series x 60 rows, one-shot vs budgeted")
    ap.add_argument("--head", action="store_true",
                    help="only the head benchmark: bytes per sample, push and cut CPU (200 nodes; --quick 20)")
    ap.add_argument("--nodes", type=int, help="nodes for --head (default 200, --quick 20)")
    args = ap.parse_args()
    if args.head:
        work = tempfile.mkdtemp(prefix="bench-store-")
        try:
            bench_head(work, args.nodes or (20 if args.quick else 200))
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return
    if args.cut:
        work = tempfile.mkdtemp(prefix="bench-store-")
        try:
            bench_cut(work, 100 if args.quick else 1000)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return
    nodes, seconds = (1, 600) if args.quick else (10, 3600)
    data = generate(nodes, seconds)
    nsamples = sum(nd.values.size for nd in data)
    nseries = sum(len(nd.keys) for nd in data)
    print(f"data: {nseries} series x {seconds} s at 1 s = {nsamples:,} samples (GPU + host telemetry)")
    work = tempfile.mkdtemp(prefix="bench-store-")
    try:
        g = bench_gpufleet(data, work)
        bps = g["bytes"] / nsamples
        print(f"gpufleet.store : {bps:.3f} B/sample on disk after compaction "
              f"(raw blocks {g['raw_bytes'] / nsamples:.3f}, + 1m/1h rollups, series index)")
        print(f"                 ingest {nsamples / g['ingest_s']:,.0f} samples/s via append() "
              f"({nseries // nodes}-series pushes), compaction {g['compact_s']:.2f} s")
        lat = bench_append_latency(work)
        print(f"append latency : {lat['mean_ms']:.3f} ms mean, {lat['p99_ms']:.3f} ms p99 per 340-series push "
              f"({lat['samples_per_s']:,.0f} samples/s on one core)")
        # long enough to include head cuts, fanout merges and the final merge of 2 h windows
        fl = bench_fleet(work, 100 if args.quick else 1000, 140)
        print(f"fleet load     : {fl['samples_per_s']:,.0f} samples/s ({fl['samples_per_s'] / 68:.0f} nodes x 340 series / 5 s) "
              f"for {fl['sim_s']:.0f} simulated s: {fl['cores']:.3f} cores "
              f"(append {fl['append_cores']:.3f}, maintain {fl['maintain_cores']:.3f})")
        wk = bench_week_query(work, args.quick)
        print(f"7-day query    : {wk['median_ms']:.2f} ms median, {wk['max_ms']:.2f} ms max for {wk['points']} points "
              f"(resolution {wk['resolution']} s; reading all {wk['raw_samples']:,.0f} raw samples instead: "
              f"{wk['raw_read_ms']:.0f} ms)")
        if not args.no_peers:
            vm = bench_victoria(data, work)
            if vm:
                print(f"VictoriaMetrics: {vm['bytes'] / nsamples:.3f} B/sample (whole -storageDataPath; "
                      f"data/ only {vm['data_bytes'] / nsamples:.3f}); gpufleet/VM = {bps / (vm['bytes'] / nsamples):.2f}x")
            else:
                print("VictoriaMetrics: binary not found, skipped")
            pr = bench_prometheus(data, work)
            if pr:
                print(f"Prometheus     : {pr['bytes'] / nsamples:.3f} B/sample (block chunks/; whole block "
                      f"{pr['block_bytes'] / nsamples:.3f}); gpufleet/Prometheus = {bps / (pr['bytes'] / nsamples):.2f}x")
            else:
                print("Prometheus: promtool not found, skipped")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
