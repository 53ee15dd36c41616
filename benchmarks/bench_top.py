"""`gpufleet top` redraw at 1,000 nodes: CPU per redraw after new data, beside the naive ways.

    .venv/bin/python benchmarks/bench_top.py [--nodes 1000] [--gpus 8] [--repeat 15] [--size 120x40]

A redraw is what happens each interval: the hub's JSON (already parsed) becomes rows, is sorted
and filtered, and the screen is repainted. Measured in CPU seconds (time.process_time), median of
--repeat, all in this one process:

  top (Textual)   : the real app, headless (App.run_test) at --size: TopApp.show(fleet) and the
                    compositor's repaint (pilot.pause()), the code a terminal runs; every node
                    pushed since the last read (the worst case: no GPU row is reused).
    40% pushed    : the same, when 40% of the nodes pushed (5 s agent interval, 2 s refresh).
  top (model)     : rows + arrangement + the lines on screen only, without Textual.
  full rebuild    : rows + arrangement + every line of the fleet laid out (no virtual list).
  old rich render : the previous `gpufleet top` (a rich Group of tables for the whole fleet)
                    printed to a console of the same width.

Target: the Textual redraw at most 100 ms CPU.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import random
import statistics
import time
from collections.abc import Callable
from typing import Any

import _common  # noqa: F401  (puts src/ on sys.path)
import _old_top as old_top
from rich.console import Console
from textual.strip import Strip

from gpufleet.tui.app import TopApp
from gpufleet.tui.arrange import Arrangement, arrange
from gpufleet.tui.layout import gpu_line, node_line
from gpufleet.tui.model import build
from gpufleet.tui.source import Source

USERS = ["alice", "bob", "carol", "dave", "erin", "frank"]
CMDS = ["python train.py --model llama-7b --epochs 3", "torchrun --nproc_per_node=8 train.py", "jupyter-lab"]


def fleet_json(nodes: int, gpus: int, seed: int) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
    """What /api/v1/snapshots and /api/v1/nodes hold for a busy fleet (a few nodes stale or down)."""
    rnd = random.Random(seed)
    snaps, statuses = [], {}
    now = time.time()
    for i in range(nodes):
        name = f"node-{i:04d}"
        gl = []
        for g in range(gpus):
            busy = rnd.random() < 0.7
            gl.append({
                "index": g, "uuid": f"GPU-{i:04d}-{g}", "model": "NVIDIA H100 80GB HBM3", "vendor": "nvidia",
                "values": {"up": 1.0, "utilization_ratio": rnd.random() if busy else 0.0,
                           "memory_used_bytes": rnd.random() * 80e9 if busy else 2e6, "memory_total_bytes": 80e9,
                           "temperature_celsius": 30 + rnd.random() * 50, "power_watts": 70 + rnd.random() * 600,
                           "power_limit_watts": 700.0},
                "processes": [{"pid": 1000 + g, "user": rnd.choice(USERS), "command": rnd.choice(CMDS),
                               "memory_bytes": 1e9}] if busy else [],
            })
        snaps.append({"node": name, "timestamp": now, "labels": {"cluster": "bench", "rack": f"r{i % 40}"},
                      "values": {"cpu_utilization_ratio": rnd.random(), "memory_used_bytes": rnd.random() * 1e12,
                                 "memory_total_bytes": 2e12},
                      "gpus": gl})
        status = "down" if i % 97 == 0 else ("stale" if i % 89 == 0 else "up")
        statuses[name] = {"name": name, "status": status, "since": now - 60, "last_seen": now - 60}
    return snaps, statuses


def cpu_median(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.process_time()
        fn()
        times.append(time.process_time() - t0)
    return statistics.median(times)


def model_redraw(snaps: list[dict[str, Any]], statuses: dict[str, dict[str, Any]], cols: int, rows: int,
                 visible_only: bool) -> int:
    fleet = build(snaps, statuses, (), time.time())
    lines = arrange(fleet, Arrangement())
    shown = lines[:rows] if visible_only else lines
    for ln in shown:
        Strip(gpu_line(ln.gpu, ln.node, cols) if ln.gpu else node_line(ln.node, cols)).crop(0, cols)
    return len(lines)


def old_redraw(snaps: list[dict[str, Any]], statuses: dict[str, dict[str, Any]], cols: int) -> None:
    console = Console(file=io.StringIO(), width=cols, force_terminal=True, color_system="truecolor")
    console.print(old_top.render(snaps, statuses))


def pushed(snaps: list[dict[str, Any]], share: float, rnd: random.Random) -> None:
    """`share` of the nodes sent a new snapshot since the last read (a new timestamp)."""
    for i, s in enumerate(snaps):
        if rnd.random() < share:
            snaps[i] = {**s, "timestamp": s["timestamp"] + 1.0}


async def textual_redraw(snaps: list[dict[str, Any]], statuses: dict[str, dict[str, Any]], cols: int, rows: int,
                         repeat: int, share: float) -> float:
    # The source points nowhere and polls hourly: the benchmark hands the app its data directly,
    # through the same GPU-row cache `Source.fleet()` keeps.
    src = Source("http://127.0.0.1:9", "hub")
    app = TopApp(src, interval=3600)
    rnd = random.Random(2)
    snaps = list(snaps)
    times = []
    async with app.run_test(size=(cols, rows)) as pilot:
        await pilot.pause()
        for _ in range(repeat + 1):
            pushed(snaps, share, rnd)
            t0 = time.process_time()
            app.show(build(snaps, statuses, (), time.time(), src.cache))
            await pilot.pause()
            times.append(time.process_time() - t0)
        await pilot.press("q")
    return statistics.median(times[1:])  # the first also builds the widgets' caches


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, default=1000)
    ap.add_argument("--gpus", type=int, default=8)
    ap.add_argument("--repeat", type=int, default=15)
    ap.add_argument("--size", default="120x40")
    a = ap.parse_args()
    cols, rows = (int(x) for x in a.size.split("x"))
    snaps, statuses = fleet_json(a.nodes, a.gpus, 1)
    print(f"fleet: {a.nodes} nodes x {a.gpus} GPUs; terminal {cols}x{rows}; CPU seconds, median of {a.repeat}")
    tui = asyncio.run(textual_redraw(snaps, statuses, cols, rows, a.repeat, 1.0))
    typical = asyncio.run(textual_redraw(snaps, statuses, cols, rows, a.repeat, 0.4))
    model = cpu_median(lambda: model_redraw(snaps, statuses, cols, rows, True), a.repeat)
    full = cpu_median(lambda: model_redraw(snaps, statuses, cols, rows, False), a.repeat)
    old = cpu_median(lambda: old_redraw(snaps, statuses, cols), max(3, a.repeat // 5))
    print(f"{'way':<18}{'ms CPU':>10}{'ratio to top (Textual)':>24}")
    for name, t in (("top (Textual)", tui), ("  40% pushed", typical), ("top (model)", model),
                    ("full rebuild", full),
                    ("old rich render", old)):
        print(f"{name:<18}{1000 * t:>10.1f}{t / tui:>23.1f}x")
    verdict = "PASS" if tui <= 0.100 else "FAIL"
    print(f"{verdict}: a redraw of {a.nodes} nodes takes {1000 * tui:.1f} ms CPU (target: at most 100 ms); "
          f"the old renderer is {old / tui:.1f}x that")


if __name__ == "__main__":
    main()
