"""Alert evaluation: all built-in rules over 1,000 nodes x 8 GPUs, every snapshot new.

Goal: <= 50 ms per evaluation. Peer, measured in the same run: the straightforward way,
each node's snapshot turned into series (gpufleet.series.snapshot_series, what the store
gets), then a per-sample loop per rule with label-dict matching and label-set joins for
ratios and `and`. Both see the same snapshots and must produce the same firing alerts.

    .venv/bin/python benchmarks/bench_alerts.py [--nodes 1000] [--rounds 10]
"""

from __future__ import annotations

import argparse
import operator
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

import msgspec  # noqa: E402

from gpufleet.hub.alerts.engine import Engine, NodeInput  # noqa: E402
from gpufleet.hub.alerts.rules import Rule, load_rules  # noqa: E402
from gpufleet.series import snapshot_series  # noqa: E402
from gpufleet.snapshot import CpuCore, Disk, Gpu, GpuProcess, NodeSnapshot  # noqa: E402

GOAL_MS = 50.0
OPS = {">": operator.gt, "<": operator.lt, ">=": operator.ge, "<=": operator.le, "==": operator.eq,
       "!=": operator.ne}


def make_fleet(n: int, t: float, rng: random.Random) -> list[NodeSnapshot]:
    out = []
    for i in range(n):
        gpus = []
        for g in range(8):
            hot = rng.random() < 0.01
            gpus.append(Gpu(index=g, uuid=f"GPU-{i:04d}-{g}", model="NVIDIA H100 80GB HBM3", vendor="nvidia", values={
                "up": 1.0, "utilization_ratio": rng.choice((0.0, 0.02, 0.5, 0.97)),
                "temperature_celsius": 92.0 if hot else rng.uniform(40, 80), "processes": float(rng.randint(0, 2)),
                "memory_used_bytes": rng.uniform(0, 80e9), "memory_total_bytes": 80e9, "power_watts": 400.0,
                "ecc_uncorrected_errors_total": 0.0, "xid_errors_total": float(rng.random() < 0.002),
                "sm_clock_hertz": 1.9e9, "energy_joules_total": 1e6},
                processes=[GpuProcess(pid=1000 + g, memory_bytes=1 << 30, user="alice")]))
        out.append(NodeSnapshot(
            node=f"node-{i:04d}", timestamp=t, labels={"cluster": "c1", "rack": f"r{i // 40:02d}"},
            values={"memory_total_bytes": 1e12, "memory_available_bytes": rng.uniform(1e10, 9e11), "load1": 3.0},
            cpus=[CpuCore(cpu=c, values={"utilization_ratio": 0.3}) for c in range(64)],
            disks=[Disk(device=f"/dev/sd{c}", mountpoint=f"/m{c}", fstype="ext4",
                        values={"size_bytes": 1e12, "free_bytes": rng.uniform(5e10, 9e11)}) for c in "ab"],
            gpus=gpus))
    return out


def naive_eval(rules: list[Rule], snaps: list[NodeSnapshot]) -> set[tuple]:
    """The per-sample way: series per node, then per rule a loop over every sample."""
    hits: set[tuple] = set()
    for snap in snaps:
        keys, values = snapshot_series(snap, snap.labels)
        samples = {(name, labels): v for (name, labels), v in zip(keys, values)}
        for r in rules:
            if r.expr is None:
                continue

            def cond_hits(c) -> dict[tuple, float]:  # type: ignore[no-untyped-def]
                out: dict[tuple, float] = {}
                left = c.term.left
                for (name, labels), v in samples.items():
                    if name != left.metric.name:
                        continue
                    d = dict(labels)
                    if not all(m.matches(d) for m in left.matchers):
                        continue
                    if c.term.increase is not None:
                        continue  # needs history: not part of this comparison
                    if c.term.right is not None:
                        den = samples.get((c.term.right.metric.name, labels))
                        if den is None:
                            continue
                        v = v / den if den else float("inf")
                    if OPS[c.op](v, c.threshold):
                        out[labels] = v
                return out

            res = cond_hits(r.expr.first)
            for conj, c in r.expr.rest:
                other = cond_hits(c)
                res = {k: v for k, v in res.items() if (k in other) == (conj == "and")}
            for labels in res:
                hits.add((r.alert, labels))
    return hits


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--nodes", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=10)
    args = ap.parse_args()
    rng = random.Random(7)
    rules = load_rules(None).rules
    t0 = 1_700_000_000.0
    base = make_fleet(args.nodes, t0, rng)
    eng = Engine(rules)
    fast: list[float] = []
    naive: list[float] = []
    for k in range(args.rounds):
        t = t0 + 5 * k
        # every node pushed a new snapshot since the last evaluation: no column cache hits
        snaps = [msgspec.structs.replace(s, timestamp=t) for s in base]
        nodes = [NodeInput(s.node, dict(s.labels), s) for s in snaps]
        a = time.perf_counter()
        eng.evaluate(nodes, {"ingest_lag_max_seconds": 1.0, "store_errors_total": 0.0}, now=t)
        fast.append((time.perf_counter() - a) * 1000)
        if k < 3:
            a = time.perf_counter()
            want = naive_eval(rules, snaps)
            naive.append((time.perf_counter() - a) * 1000)
    got = {(x.labels["alertname"], tuple(sorted((k, v) for k, v in x.labels.items()
                                                  if k not in ("alertname", "severity"))))
           for x in eng.alerts.values()}
    got_expr = {g for g in got if g[0] not in ("GpufleetGpuXid", "GpufleetHubStoreErrors", "GpufleetNodeDown")}
    assert got_expr == want, (len(got_expr), len(want))
    gpus = args.nodes * 8
    print(f"alert evaluation, {len(rules)} built-in rules, {args.nodes} nodes x 8 GPUs ({gpus} GPUs), "
          f"every snapshot new; {len(got)} alerts pending/firing (same set both ways)")
    print(f"{'way':<34} {'median ms':>10} {'p90/max ms':>11}")
    print(f"{'gpufleet engine (columns + numpy)':<34} {statistics.median(fast):>10.1f} "
          f"{sorted(fast)[int(0.9 * (len(fast) - 1))]:>11.1f}")
    print(f"{'naive per-sample loop':<34} {statistics.median(naive):>10.1f} {max(naive):>11.1f}")
    print(f"speed-up: {statistics.median(naive) / statistics.median(fast):.1f}x")
    med = statistics.median(fast)
    print(f"VERDICT alert evaluation <= {GOAL_MS:.0f} ms: {'met' if med <= GOAL_MS else 'NOT met'} "
          f"(median {med:.1f} ms; naive {statistics.median(naive):.0f} ms in the same run)")


if __name__ == "__main__":
    main()
