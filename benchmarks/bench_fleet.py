"""The hub's fleet view at 1,000 nodes, in process: memory of the latest snapshots, the
`/api/v1/snapshots` answer in each form, and the alert engine reading every node.

Run: .venv/bin/python benchmarks/bench_fleet.py [--nodes 1000] [--rounds 5]

Snapshots are the load generator's (benchmarks/_hubload.py: 8 GPUs with NVLinks, a 224-CPU host
with its process table), fed to `Fleet.update` with their JSON as a push gives them. The
peer, built here the way the hub kept snapshots before: each node's decoded snapshot, its JSON
and a summary JSON without the process table (three copies), and the alert engine reading the
whole decoded snapshots. Sizes are deep sizes (sys.getsizeof over the object graph, shared
objects once); times are CPU (process_time), medians over `--rounds`, each round with every
node's snapshot new.
"""

from __future__ import annotations

import argparse
import functools
import statistics
import sys
import time
import zlib
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

import msgspec  # noqa: E402

import _hubload  # noqa: E402
from _common import machine_line  # noqa: E402
from gpufleet.hub.alerts.engine import Engine, NodeInput  # noqa: E402
from gpufleet.hub.alerts.rules import load_rules, load_rules_text  # noqa: E402
from gpufleet.hub.cmdlines import without_commands  # noqa: E402
from gpufleet.hub.fleet import Fleet  # noqa: E402
from gpufleet.snapshot import NodeSnapshot, from_json, to_json  # noqa: E402

MiB = 1 << 20
CPU_RULE = "rules:\n  - alert: CoreBusy\n    expr: gpufleet_cpu_utilization_ratio > 0.99\n    for: 1m\n    severity: info\n"


def deep(o: Any, seen: set[int]) -> int:
    if id(o) in seen:
        return 0
    seen.add(id(o))
    n = sys.getsizeof(o)
    if isinstance(o, dict):
        n += sum(deep(k, seen) + deep(v, seen) for k, v in o.items())
    elif isinstance(o, (list, tuple)):
        n += sum(deep(x, seen) for x in o)
    elif isinstance(o, msgspec.Struct):
        n += sum(deep(getattr(o, f), seen) for f in o.__struct_fields__)
    return n


def cpu(fn: Any) -> float:
    t = time.process_time()
    fn()
    return time.process_time() - t


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--nodes", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=5)
    a = ap.parse_args()
    print(f"# bench_fleet: {machine_line()}")
    tmpl = {p: [to_json(s) for s in snaps] for p, snaps in _hubload.build_snapshots(4).items()}
    names = [_hubload.node_name(i) for i in range(a.nodes)]
    mark = _hubload.NODE_MARK.encode()

    def raws(k: int) -> list[bytes]:
        return [tmpl[_hubload.profile_of(i)][k % 4].replace(mark, name.encode()) for i, name in enumerate(names)]

    fleet = Fleet()
    fleet_cpu = Fleet()  # what the hub keeps while an alert rule reads CPU cores (alerts/service.py)
    fleet_cpu.keep = frozenset({"cpu"})
    peer: dict[str, tuple[NodeSnapshot, bytes, bytes]] = {}
    ts0 = time.time() - 3600
    rows: list[tuple[str, float, float]] = []
    ours_eval: list[float] = []
    peer_eval: list[float] = []
    ours_cpu_eval: list[float] = []
    peer_cpu_eval: list[float] = []
    rules = load_rules(None).rules
    cpu_rules = rules + load_rules_text(CPU_RULE).rules[-1:]
    engines = {k: Engine(r, grace=0) for k, r in
               (("ours", rules), ("peer", rules), ("ours_cpu", cpu_rules), ("peer_cpu", cpu_rules))}
    for k in range(a.rounds + 1):
        now = ts0 + 5 * k
        batch = raws(k)
        for raw in batch:
            snap = from_json(raw)
            snap.timestamp = now  # each round's snapshots are new
            data = to_json(snap)
            fleet.update(from_json(data), now, data)
            fleet_cpu.update(from_json(data), now, data)
            whole = from_json(data)
            summary = to_json(msgspec.structs.replace(whole, processes=[]))
            peer[whole.node] = (whole, data, summary)
        views = list(fleet.nodes.values())
        ours = [NodeInput(v.name, {}, v.snapshot, "up", 0.0, functools.partial(fleet.snapshot, v)) for v in views]
        ours_cpu = [NodeInput(v.name, {}, v.snapshot, "up", 0.0) for v in fleet_cpu.nodes.values()]
        theirs = [NodeInput(n, {}, p[0], "up", 0.0) for n, p in peer.items()]
        if k == 0:
            continue  # the first round fills the engines' counters
        runs = [(ours_eval, "ours", ours), (peer_eval, "peer", theirs), (ours_cpu_eval, "ours_cpu", ours_cpu),
                (peer_cpu_eval, "peer_cpu", theirs)]
        for out, key, nodes in runs if k % 2 else runs[::-1]:  # alternate who goes first
            out.append(cpu(lambda: engines[key].evaluate(nodes, {}, now + 1)))

    seen: set[int] = set()
    ours_b = sum(deep(v.snapshot, seen) + sys.getsizeof(v.json) for v in fleet.nodes.values())
    seen = set()
    peer_b = sum(deep(p[0], seen) + sys.getsizeof(p[1]) + sys.getsizeof(p[2]) for p in peer.values())
    rows.append(("latest snapshots in memory, MiB", ours_b / MiB, peer_b / MiB))
    seen = set()
    ours_cpu_b = sum(deep(v.snapshot, seen) + sys.getsizeof(v.json) for v in fleet_cpu.nodes.values())
    rows.append(("the same while a rule reads CPU cores, MiB", ours_cpu_b / MiB, peer_b / MiB))

    ordered = sorted(fleet.nodes.items())

    def answer(form: Any) -> bytes:
        return b'{"snapshots":[' + b",".join(d for _, v in ordered if (d := form(v)) is not None) + b"]}"

    t_default = statistics.median(cpu(lambda: answer(fleet.summary_json)) for _ in range(3))
    t_peer = statistics.median(cpu(lambda: b'{"snapshots":[' + b",".join(p[2] for p in peer.values()) + b"]}")
                               for _ in range(3))
    default = answer(fleet.summary_json)
    want = b'{"snapshots":[' + b",".join(peer[n][2] for n, _ in ordered) + b"]}"
    assert default == want, "the default answer must read as before"
    lean = answer(fleet.lean_json)
    t_lean = statistics.median(cpu(lambda: answer(fleet.lean_json)) for _ in range(3))
    rows.append(("/api/v1/snapshots default, MiB plain", len(default) / MiB, len(want) / MiB))
    rows.append(("/api/v1/snapshots default, MiB gzip (level 1)", len(zlib.compress(default, 1)) / MiB,
                 len(zlib.compress(want, 1)) / MiB))
    rows.append(("/api/v1/snapshots?lean=true, MiB plain", len(lean) / MiB, len(want) / MiB))
    rows.append(("/api/v1/snapshots?lean=true, MiB gzip (level 1)", len(zlib.compress(lean, 1)) / MiB,
                 len(zlib.compress(want, 1)) / MiB))
    rows.append(("/api/v1/snapshots default, ms CPU to build", t_default * 1e3, t_peer * 1e3))
    # A viewer (no command lines): the peer made it from the decoded snapshot, once per push.
    t_bare = statistics.median(cpu(lambda: answer(lambda v: fleet.summary_json(v, False))) for _ in range(3))
    t_bare_peer = statistics.median(cpu(lambda: [to_json(msgspec.structs.replace(without_commands(p[0]), processes=[]))
                                                 for p in peer.values()]) for _ in range(3))
    bare = answer(lambda v: fleet.summary_json(v, False))
    assert bare == b'{"snapshots":[' + b",".join(to_json(msgspec.structs.replace(without_commands(peer[n][0]),
                                                                                  processes=[])) for n, _ in ordered) + b"]}"
    rows.append(("/api/v1/snapshots default for a viewer, ms CPU", t_bare * 1e3, t_bare_peer * 1e3))
    rows.append(("/api/v1/snapshots?lean=true, ms CPU to build", t_lean * 1e3, t_peer * 1e3))
    rows.append(("alert evaluation, built-in rules, ms CPU", statistics.median(ours_eval) * 1e3,
                 statistics.median(peer_eval) * 1e3))
    rows.append(("alert evaluation, + a rule on CPU cores, ms CPU", statistics.median(ours_cpu_eval) * 1e3,
                 statistics.median(peer_cpu_eval) * 1e3))
    print(f"{a.nodes} nodes, {a.rounds} rounds")
    print(f"{'':<50} {'gpufleet':>10} {'3 copies':>10} {'ratio':>7}")
    for name, ours_v, peer_v in rows:
        print(f"{name:<50} {ours_v:>10.1f} {peer_v:>10.1f} {ours_v / peer_v if peer_v else float('nan'):>6.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
