"""Drill-down screens (Enter on a node or a GPU; Esc goes back) and the help screen (`?`).

History comes from the hub's `/api/v1/query_range` (the last hour, one point a minute), read in
a worker thread so a slow link never freezes the keys; an agent keeps no history, so its
screens say so instead of drawing empty lines.
"""

from __future__ import annotations

from collections.abc import Callable

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Footer, Static

from ..catalogue import name_of
from .layout import MISSING, ago, human_bytes, pct
from .model import Fleet, GpuRow, NodeRow
from .source import Source, Unreachable
from .spark import sparkline

POINTS = 60  # the last hour, a minute a point: fits 80 columns beside its label


def _val(x: float | None, fmt: str) -> str:
    return MISSING if x is None else fmt.format(x)


class DetailScreen(Screen[None]):
    """Shared by the node and GPU screens: a live text block and a block of sparklines."""

    BINDINGS = [Binding("escape", "app.pop_screen", "back"), Binding("q", "app.quit", "quit"),
                Binding("r", "reload", "reload history")]

    def __init__(self, source: Source, node: str) -> None:
        super().__init__()
        self.source = source
        self.node = node
        self.history: dict[str, list[float | None]] = {}
        self.history_error = ""

    def compose(self) -> ComposeResult:
        with VerticalScroll():
            yield Static(id="detail")
            yield Static("loading the last hour…", id="spark")
        yield Footer()

    def on_mount(self) -> None:
        self.update_fleet(getattr(self.app, "fleet", None))
        self.action_reload()

    def series(self) -> list[tuple[str, str, int | None, Callable[[float], str], float | None, float | None]]:
        raise NotImplementedError

    def action_reload(self) -> None:
        self.run_worker(self._load, thread=True, exclusive=True, group="history")

    def _load(self) -> None:
        hist: dict[str, list[float | None]] = {}
        err = ""
        try:
            for label, metric, gpu, *_ in self.series():
                hist[label] = self.source.history(metric, self.node, gpu, points=POINTS)
        except Unreachable as e:
            err = str(e)
        self.app.call_from_thread(self._show_history, hist, err)

    def _show_history(self, hist: dict[str, list[float | None]], err: str) -> None:
        self.history, self.history_error = hist, err
        t = Text()
        if self.source.kind == "agent":
            t.append("no history: an agent keeps none (point `gpufleet top --hub` at a hub for the last hour)", "dim")
        elif err:
            t.append(f"history unavailable: {err}", "red")
        else:
            t.append("last hour (one point a minute)\n", "bold")
            for label, _, _, fmt, lo, hi in self.series():
                vals = hist.get(label, [])
                known = [v for v in vals if v is not None]
                line = sparkline(vals, lo, hi)
                t.append(f"{label:<10} ", "dim")
                t.append(line or "no data".ljust(POINTS), "cyan" if line else "dim")
                t.append(f" {fmt(known[-1]) if known else MISSING}\n")
        self.query_one("#spark", Static).update(t)

    def update_fleet(self, fleet: Fleet | None) -> None:
        raise NotImplementedError


class NodeScreen(DetailScreen):
    DEFAULT_CSS = "NodeScreen #detail { text-wrap: nowrap; text-overflow: ellipsis; }"
    def _row(self, fleet: Fleet | None) -> NodeRow | None:
        return next((n for n in fleet.nodes if n.name == self.node), None) if fleet else None

    def series(self) -> list[tuple[str, str, int | None, Callable[[float], str], float | None, float | None]]:
        n = self._row(getattr(self.app, "fleet", None))
        out: list[tuple[str, str, int | None, Callable[[float], str], float | None, float | None]] = [
            ("CPU", name_of("node", "cpu_utilization_ratio"), None, lambda v: f"{100 * v:.0f}%", 0.0, 1.0),
            ("memory", name_of("node", "memory_used_bytes"), None, human_bytes, 0.0, n.mem_total if n else None),
        ]
        for g in n.gpus if n else ():
            out.append((f"GPU{g.index:>2} util", name_of("gpu", "utilization_ratio"), g.index,
                        lambda v: f"{100 * v:.0f}%", 0.0, 1.0))
        return out

    def update_fleet(self, fleet: Fleet | None) -> None:
        n = self._row(fleet)
        t = Text(no_wrap=True, overflow="ellipsis")  # one line per GPU (the GPU screen has the full commands)
        if n is None:
            t.append(f"{self.node}: not in the fleet any more", "red")
        else:
            t.append(f"{n.name}", "bold")
            t.append(f"  {n.status}", "green" if n.status == "up" else "bold red")
            if n.status != "up" and n.last_seen and fleet:
                t.append(f" (last data {ago(fleet.fetched_at - n.last_seen)} ago)", "red")
            if n.error:
                t.append(f"  {n.error}", "red")
            t.append("\n" + "  ".join(f"{k}={v}" for k, v in n.labels.items()) + "\n", "cyan")
            t.append(f"CPU {pct(n.cpu)}   memory {human_bytes(n.mem_used)}/{human_bytes(n.mem_total)}   "
                     f"{len(n.gpus)} GPUs\n")
            for g in n.gpus:
                t.append(f"  GPU{g.index:>2} {g.model[:28]:<28} {pct(g.util)} {_val(g.temp, '{:.0f}°C'):>5} "
                         f"{_val(g.power, '{:.0f} W'):>6}  {g.who()}\n")
        self.query_one("#detail", Static).update(t)


class GpuScreen(DetailScreen):
    def __init__(self, source: Source, node: str, gpu: int) -> None:
        super().__init__(source, node)
        self.gpu = gpu

    def _row(self, fleet: Fleet | None) -> tuple[NodeRow, GpuRow] | None:
        for n in fleet.nodes if fleet else ():
            if n.name == self.node:
                for g in n.gpus:
                    if g.index == self.gpu:
                        return n, g
        return None

    def series(self) -> list[tuple[str, str, int | None, Callable[[float], str], float | None, float | None]]:
        r = self._row(getattr(self.app, "fleet", None))
        g = r[1] if r else None
        return [
            ("util", name_of("gpu", "utilization_ratio"), self.gpu, lambda v: f"{100 * v:.0f}%", 0.0, 1.0),
            ("memory", name_of("gpu", "memory_used_bytes"), self.gpu, human_bytes, 0.0, g.mem_total if g else None),
            ("temp", name_of("gpu", "temperature_celsius"), self.gpu, lambda v: f"{v:.0f}°C", None, None),
            ("power", name_of("gpu", "power_watts"), self.gpu, lambda v: f"{v:.0f} W", 0.0,
             g.power_limit if g else None),
        ]

    def update_fleet(self, fleet: Fleet | None) -> None:
        r = self._row(fleet)
        t = Text()
        if r is None:
            t.append(f"{self.node} GPU {self.gpu}: not in the fleet any more", "red")
        else:
            n, g = r
            t.append(f"{n.name} GPU {g.index}", "bold")
            t.append(f"  {g.model}  {g.uuid}\n", "dim")
            if n.status != "up":
                t.append(f"node {n.status}: these are its last readings\n", "bold red")
            if not g.up:
                t.append("GPU lost: the driver no longer answers for it\n", "bold red")
            t.append(f"util {pct(g.util)}   memory {human_bytes(g.mem_used)}/{human_bytes(g.mem_total)}   "
                     f"temp {_val(g.temp, '{:.0f}°C')}   power {_val(g.power, '{:.0f} W')}"
                     f"{_val(g.power_limit, ' / {:.0f} W') if g.power_limit is not None else ''}\n")
            t.append(f"{len(g.procs)} process(es)\n", "bold")
            for p in g.procs:
                t.append(f"  {p.pid:>8} {p.user:<12} {human_bytes(p.memory_bytes):>7}  ")
                t.append(f"{p.command}\n", "cyan")
        self.query_one("#detail", Static).update(t)


HELP = """\
gpufleet top: the fleet, live

  up/down j/k   move              PgUp/PgDn  page
  Home/End      first/last        Enter      node or GPU: last hour
  Esc           back, or clear    r          reload history
  s             sort: name util memory temp power free status
  /             filter; all words match: user:alice  rack=r1
                status:down, or any name/label/model/user/command
  f             only free GPUs (no processes, under 5% busy)
  ?             this help         q          quit

STALE: no data for 3 intervals; DOWN: gone. Their readings
are the last ones, dimmed. — means the node did not report it.
"""


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,question_mark,q", "app.pop_screen", "close")]

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="helpbox"):
            yield Static(HELP, id="help")
