"""One screen line per node or GPU, cut to the terminal's width: nothing ever wraps.

Columns give way by priority when the terminal is narrow (power first, then the bars, keeping
the numbers, then temperature and memory); the user/command column takes what is left and is truncated.
Lines are rich `Segment` lists so the view can hand them to Textual's line API as they are,
and only the lines on screen are ever built: that keeps a 1,000-node redraw cheap.
"""

from __future__ import annotations

import time
from typing import NamedTuple

from rich.segment import Segment
from rich.style import Style

from .model import GpuRow, NodeRow, is_free

MISSING = "—"
DIM = Style(dim=True)
BOLD = Style(bold=True)
PLAIN = Style()
CYAN = Style(color="cyan")
GREEN = Style(color="green")
YELLOW = Style(color="yellow")
RED = Style(color="red")
BAR_STYLES = (Style(color="green"), Style(color="yellow"), Style(color="red"))
STATUS_STYLES = {"up": Style(color="green"), "moved": Style(color="white", bgcolor="blue", bold=True),
                 "stale": Style(color="black", bgcolor="yellow", bold=True),
                 "down": Style(color="white", bgcolor="red", bold=True)}


class Line(NamedTuple):
    """What one screen line shows: a node header, or one GPU of a node (a tuple: 9,000 of them
    are made per refresh at 1,000 nodes)."""
    node: NodeRow
    gpu: GpuRow | None = None


def bar_width(width: int) -> int:
    return max(4, min(20, (width - 40) // 5))


def human_bytes(n: float | None) -> str:
    if n is None:
        return MISSING
    for unit in ("B", "K", "M", "G", "T"):
        if abs(n) < 1000 or unit == "T":
            return f"{n:.0f}{unit}" if unit == "B" or n >= 100 else f"{n:.1f}{unit}"
        n /= 1024
    return f"{n:.1f}T"


def ago(seconds: float) -> str:
    s = max(0, int(seconds))
    if s < 120:
        return f"{s}s"
    if s < 7200:
        return f"{s // 60}m"
    if s < 172800:
        return f"{s // 3600}h"
    return f"{s // 86400}d"


def bar(ratio: float | None, width: int, dim: bool) -> list[Segment]:
    if ratio is None:
        return [Segment("╌" * width, DIM)]
    r = min(max(ratio, 0.0), 1.0)
    full = round(r * width)
    style = DIM if dim else BAR_STYLES[0 if r < 0.5 else (1 if r < 0.85 else 2)]
    return [Segment("█" * full, style), Segment("░" * (width - full), DIM)]


def pct(ratio: float | None) -> str:
    return f"{MISSING:>4}" if ratio is None else f"{100 * ratio:3.0f}%"


def _fit(text: str, width: int) -> str:
    """Exactly `width` cells: padded, or cut with an ellipsis (the data is ASCII in practice;
    rich measures the rest when the strip is cropped)."""
    if width <= 0:
        return ""
    if len(text) <= width:
        return text.ljust(width)
    return text[: width - 1] + "…"


# A column: (priority: lower stays longer, width in cells, segments). The flexible "who" column
# is added last with whatever width remains.
Column = tuple[int, int, list[Segment]]


def _assemble(cols: list[Column], width: int, flex: tuple[int, str, Style] | None) -> list[Segment]:
    """Drop the lowest-priority columns until the rest (and the flexible column's minimum) fit."""
    keep = list(range(len(cols)))
    need_flex = flex[0] if flex else 0
    while keep and sum(cols[i][1] for i in keep) + need_flex > width:
        drop = max((i for i in keep if cols[i][0] > 0), key=lambda i: (cols[i][0], i), default=None)
        if drop is None:
            break
        keep.remove(drop)
    segs: list[Segment] = []
    used = 0
    for i in keep:
        segs.extend(cols[i][2])
        used += cols[i][1]
    if flex and width - used > 0:
        segs.append(Segment(_fit(flex[1], width - used), flex[2]))
    elif used < width:
        segs.append(Segment(" " * (width - used)))
    return segs


def gpu_line(g: GpuRow, node: NodeRow, width: int) -> list[Segment]:
    live = node.status == "up"
    b = bar_width(width)
    dim = not live or not g.up
    num = DIM if dim else PLAIN
    idx = Segment(f"  GPU{g.index:>2} ", RED if not g.up else (DIM if not live else BOLD))
    if not g.up:
        util_txt = Segment(" lost", RED)
    else:
        util_txt = Segment(" " + pct(g.util), num if g.util is not None else DIM)
    temp = f"{g.temp:3.0f}°C" if g.temp is not None else f"{MISSING:>3}°C"
    power = f"{g.power:4.0f}W" if g.power is not None else f"{MISSING:>4}W"
    mem = f"{human_bytes(g.mem_used)}/{human_bytes(g.mem_total)}"
    cols: list[Column] = [
        (0, 8, [idx]),
        (3, b, bar(g.util, b, dim)),
        (0, 5, [util_txt]),
        (4, b + 1, [Segment(" "), *bar(g.mem_ratio, b, dim)]),
        (1, 13, [Segment(f" {mem:>12}", num if g.mem_used is not None else DIM)]),
        (2, 6, [Segment(f" {temp}", DIM if g.temp is None or dim else _temp_style(g.temp))]),
        (5, 6, [Segment(f" {power}", num if g.power is not None else DIM)]),
        (0, 1, [Segment(" ")]),
    ]
    who = g.who() if g.procs else ("free" if is_free(g) and live else "")
    style = CYAN if g.procs and not dim else (GREEN if who == "free" else DIM)
    return _assemble(cols, width, (16, who, style))  # room for a user and a command


def _temp_style(t: float) -> Style:
    return RED if t >= 85 else (YELLOW if t >= 75 else PLAIN)


def node_line(n: NodeRow, width: int, now: float | None = None) -> list[Segment]:
    now = time.time() if now is None else now
    b = max(4, bar_width(width) - 2)
    if n.status == "up":
        badge = Segment(" up".ljust(12), STATUS_STYLES["up"])
    else:
        age = ago(now - n.last_seen) if n.last_seen else "?"
        badge = Segment(_fit(f" {n.status.upper()} {age}", 11) + " ", STATUS_STYLES.get(n.status, RED))
    live = n.status == "up"
    num = PLAIN if live else DIM
    free = sum(1 for g in n.gpus if is_free(g)) if live else 0
    gpus = f"{len(n.gpus)} GPU" + (f" {free} free" if free else "")
    name_style = BOLD if live else Style(bold=True, color="red" if n.status == "down" else "yellow")
    name_w = 20 if width >= 110 else 14  # one width for every node, so the columns line up
    mem = f"{human_bytes(n.mem_used)}/{human_bytes(n.mem_total)}"
    cols: list[Column] = [
        (0, name_w, [Segment(_fit(n.name, name_w), name_style)]),
        (0, 12, [badge]),
        (3, 4 + b, [Segment(" CPU", DIM), *bar(n.cpu, b, not live)]),
        (1, 5, [Segment(" " + pct(n.cpu), num)]),
        (4, 4 + b, [Segment(" MEM", DIM), *bar(n.mem_ratio, b, not live)]),
        (2, 13, [Segment(f" {mem:>12}", num)]),
        (0, 1, [Segment(" ")]),
    ]
    labels = " ".join(f"{k}={v}" for k, v in n.labels.items() if k != "simulated")
    extra = f"{gpus}  {labels}" if n.status == "up" or not n.error else f"{gpus}  {n.error}"
    return _assemble(cols, width, (len(gpus), extra, DIM if not live else CYAN))
