"""The previous `gpufleet top` renderer (a rich Group of tables for the whole fleet), kept only as
bench_top.py's naive peer; the command is now gpufleet.tui (Textual).

It drew one block per node, every line of the fleet on every refresh: status, CPU and memory,
one bar per GPU with utilisation, memory, temperature, power and who is on it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from rich.console import Group
from rich.table import Table
from rich.text import Text

from gpufleet.snapshot import gpu_busy_ratio

BAR = 20


def humanize_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(n) < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} PiB"


def bar(ratio: float | None, width: int = BAR) -> Text:
    if ratio is None:
        return Text("─" * width, style="dim")
    r = min(max(ratio, 0.0), 1.0)
    full = round(r * width)
    style = "green" if r < 0.5 else ("yellow" if r < 0.85 else "red")
    return Text("█" * full, style=style) + Text("░" * (width - full), style="dim")


def _owner(gpu: dict[str, Any]) -> str:
    who = []
    for p in gpu.get("processes", []):
        o = p.get("owner") or {}
        tag = o.get("slurm_job") and f"job {o['slurm_job']}" or o.get("pod") or o.get("container", "")[:12]
        who.append(f"{p.get('user') or '?'}" + (f" ({tag})" if tag else ""))
    return ", ".join(dict.fromkeys(who))


def render(snapshots: Iterable[dict[str, Any]], nodes: dict[str, dict[str, Any]]) -> Group:
    blocks = []
    busy = total = 0
    for s in sorted(snapshots, key=lambda s: s["node"]):
        v = s.get("values", {})
        status = nodes.get(s["node"], {}).get("status", "up")
        mem_t = v.get("memory_total_bytes") or 0
        mem = (v.get("memory_used_bytes") or 0) / mem_t if mem_t else None
        head = Text.assemble((f"{s['node']:<20}", "bold"), (f" {status:<6}", "green" if status == "up" else "red"),
                             " CPU ", bar(v.get("cpu_utilization_ratio"), 10),
                             f" {100 * (v.get('cpu_utilization_ratio') or 0):3.0f}%  MEM ", bar(mem, 10),
                             f" {humanize_bytes(v.get('memory_used_bytes') or 0)}/{humanize_bytes(mem_t)}")
        table = Table.grid(padding=(0, 1))
        for g in s.get("gpus", []):
            gv = g.get("values", {})
            total += 1
            util = gpu_busy_ratio(gv, (m.get("values", {}) for m in g.get("mig", [])))  # MIG: its instances
            if (util or 0) >= 0.05:
                busy += 1
            used, tot = gv.get("memory_used_bytes"), gv.get("memory_total_bytes")
            table.add_row(
                Text(f"  GPU {g['index']}", style="bold" if g.get("up", True) else "red"),
                bar(util), Text("lost" if not g.get("up", True) else f"{100 * (util or 0):3.0f}%"),
                Text(f"{humanize_bytes(used or 0):>9}/{humanize_bytes(tot or 0):<9}"),
                Text(f"{gv.get('temperature_celsius', 0):3.0f}°C"),
                Text(f"{gv.get('power_watts', 0):4.0f} W"),
                Text(_owner(g), style="cyan"),
            )
        blocks.append(Group(head, table) if s.get("gpus") else head)
    summary = Text(f"{len(blocks)} nodes, {total} GPUs, {busy} busy, {total - busy} idle", style="bold")
    return Group(summary, *blocks)
