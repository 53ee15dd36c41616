"""`gpufleet top`'s Textual app: summary, connection state, the fleet list, firing alerts, keys.

Fetching runs in a worker thread on a timer; the screen only changes when data arrives or a
key is pressed. A failed fetch never ends the app: it keeps the last rows, says "reconnecting"
and tries again each interval until the hub answers (a hub restart, a dropped SSH tunnel).
"""

from __future__ import annotations

import time

from rich.text import Text
from textual import events
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.widgets import Footer, Static

from .arrange import Arrangement, arrange
from .fleetview import FleetView
from .layout import ago
from .model import Fleet
from .screens import DetailScreen, GpuScreen, HelpScreen, NodeScreen
from .source import Source, Unreachable

SLOW_AFTER_S = 2.0  # rows older than this (and 3 intervals) while a read is still under way: say so

CSS = """
#summary, #conn, #alerts { text-wrap: nowrap; text-overflow: ellipsis; }
#summary { height: 1; background: $boost; }
#conn { height: auto; max-height: 1; color: $text; }
#conn.bad { background: $error; }
#alerts { height: auto; max-height: 3; color: $warning; }
#fleet { height: 1fr; }
#filter { display: none; height: 1; padding: 0 1; background: $boost; text-wrap: nowrap; text-overflow: ellipsis; }
#helpbox { width: auto; max-width: 100%; height: auto; max-height: 100%; padding: 0 1;
           background: $panel; border: round $accent; }
#help { width: auto; }
HelpScreen { align: center middle; }
"""


class TopApp(App[None]):
    CSS = CSS
    TITLE = "gpufleet top"
    ENABLE_COMMAND_PALETTE = False
    BINDINGS = [
        Binding("q", "quit", "quit"),
        Binding("s", "sort", "sort"),
        Binding("slash", "filter", "filter"),
        Binding("f", "free", "free GPUs"),
        Binding("question_mark", "help", "help"),
        Binding("escape", "clear", "clear", show=False),
    ]

    def __init__(self, source: Source, interval: float = 2.0) -> None:
        super().__init__()
        self.source = source
        self.interval = interval
        self.fleet: Fleet | None = None
        self.how = Arrangement()
        self.error = ""
        self.editing = False  # typing a filter after `/`
        self._busy = False

    def compose(self) -> ComposeResult:
        yield Static(id="summary")
        yield Static(f"connecting to {self.source.url}…", id="conn")
        yield Static(id="alerts")
        yield FleetView(id="fleet")
        yield Static(id="filter")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one(FleetView).focus()
        self.poll()
        self.set_interval(self.interval, self.poll)
        self.set_interval(1.0, self._watch_age)

    def _watch_age(self) -> None:
        """A read still under way long after it should be done (a slow link, a hub under load):
        say how old the rows on screen are instead of letting them pass for live."""
        if not self._busy or self.error or self.fleet is None:
            return
        age = time.time() - self.fleet.fetched_at
        if age > max(3 * self.interval, SLOW_AFTER_S):
            conn = self.query_one("#conn", Static)
            conn.display = True
            conn.update(Text(f"waiting for {self.source.url} (slow link?); showing data from {ago(age)} ago",
                             style="bold yellow", no_wrap=True, overflow="ellipsis"))

    # ---- data --------------------------------------------------------------------------------------

    def poll(self) -> None:
        if self._busy:  # a slow link: never stack requests behind one that is still coming
            return
        self._busy = True
        self.run_worker(self._fetch, thread=True, group="fetch")

    def _fetch(self) -> None:
        try:
            fleet = self.source.fleet()
        except Unreachable as e:
            self.call_from_thread(self.lost, str(e))
        else:
            self.call_from_thread(self.show, fleet)

    def show(self, fleet: Fleet) -> None:
        self._busy = False
        self.fleet, self.error = fleet, ""
        conn = self.query_one("#conn", Static)
        conn.remove_class("bad")
        conn.update("")
        conn.display = False
        self.redraw()
        if isinstance(self.screen, DetailScreen):
            self.screen.update_fleet(fleet)

    def lost(self, error: str) -> None:
        self._busy = False
        self.error = error
        conn = self.query_one("#conn", Static)
        conn.display = True
        conn.add_class("bad")
        age = f"; showing data from {ago(time.time() - self.fleet.fetched_at)} ago" if self.fleet else ""
        conn.update(Text(f"reconnecting: {error}{age}", no_wrap=True, overflow="ellipsis"))

    def redraw(self) -> None:
        """Re-arrange the current data (new data, sort, filter or view change) and repaint."""
        fleet = self.fleet
        if fleet is None:
            return
        view = self.query_one(FleetView)
        view.empty_text = (f"nothing matches the filter {self.how.filter!r} (Esc clears it)" if self.how.filter
                           else "no free GPUs (f shows all)" if self.how.free_only else "no nodes yet")
        view.set_lines(arrange(fleet, self.how))
        counts = {"up": 0, "stale": 0, "down": 0, "moved": 0}
        for n in fleet.nodes:
            counts[n.status] = counts.get(n.status, 0) + 1
        gpus = fleet.gpu_count()
        free = len(fleet.free_gpus())
        s = Text(no_wrap=True, overflow="ellipsis")
        s.append(f"{len(fleet.nodes)} nodes", "bold")
        s.append(f" {counts['up']} up")
        if counts["stale"]:
            s.append(f" {counts['stale']} stale", "bold yellow")
        if counts["down"]:
            s.append(f" {counts['down']} down", "bold red")
        if counts["moved"]:
            s.append(f" {counts['moved']} moved to another hub", "bold")
        s.append(f" │ {gpus} GPUs, {gpus - free} busy, {free} free", "bold")
        s.append(f" │ sort {self.how.sort_name}")
        if self.how.free_only:
            s.append(" │ FREE GPUs", "bold green")
        if self.how.filter:
            s.append(f" │ filter: {self.how.filter}", "bold cyan")
        self.query_one("#summary", Static).update(s)
        al = self.query_one("#alerts", Static)
        if fleet.alerts:
            t = Text(no_wrap=True, overflow="ellipsis")
            shown = fleet.alerts[:2] if len(fleet.alerts) > 3 else fleet.alerts
            for i, a in enumerate(shown):
                t.append("\n" if i else "")
                t.append(f"▲ {a.severity} ", "bold red" if a.severity == "critical" else "bold yellow")
                t.append(f"{a.name}: {a.summary}")
            if len(fleet.alerts) > len(shown):
                t.append(f"\n  … {len(fleet.alerts) - len(shown)} more alerts firing (web UI: /alerts)", "dim")
            al.update(t)
            al.display = True
        else:
            al.display = False

    # ---- keys --------------------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Sort, filter and the free view act on the fleet list: not offered over a detail screen;
        while the filter is being typed, every key is filter text (on_key), `q` and `s` included."""
        if action in ("sort", "filter", "free", "clear") and len(self.screen_stack) > 1:
            return False
        if self.editing and action in ("sort", "filter", "free", "help", "quit", "clear"):
            return False
        return True

    def action_sort(self) -> None:
        self.how.next_sort()
        self.redraw()

    def action_free(self) -> None:
        self.how.free_only = not self.how.free_only
        self.redraw()

    def action_filter(self) -> None:
        self.editing = True
        self._show_filter()

    def action_clear(self) -> None:
        if self.how.filter:
            self.how.filter = ""
            self.redraw()

    def _show_filter(self) -> None:
        box = self.query_one("#filter", Static)
        box.display = self.editing
        t = Text("/ ", "bold")
        t.append(self.how.filter)
        t.append("▏", "blink")
        t.append("   Enter keeps it, Esc clears it; user:NAME key=value status:down", "dim")
        box.update(t)

    def on_key(self, event: events.Key) -> None:
        """The filter line, edited here rather than in a focused Input: focus moves a beat after
        the key, so a burst of keys (a paste, a slow link) would reach the list and its bindings."""
        if not self.editing or len(self.screen_stack) > 1:
            return
        event.stop()
        event.prevent_default()
        if event.key == "enter":
            self.editing = False
        elif event.key == "escape":
            self.editing = False
            self.how.filter = ""
        elif event.key in ("backspace", "ctrl+h"):
            self.how.filter = self.how.filter[:-1]
        elif event.key == "ctrl+u":
            self.how.filter = ""
        elif event.is_printable and event.character:
            self.how.filter += event.character
        else:
            return
        self._show_filter()
        self.redraw()  # filter as you type

    def action_help(self) -> None:
        self.push_screen(HelpScreen())

    def on_fleet_view_open(self, event: FleetView.Open) -> None:
        ln = event.line
        if ln.gpu is None:
            self.push_screen(NodeScreen(self.source, ln.node.name))
        else:
            self.push_screen(GpuScreen(self.source, ln.node.name, ln.gpu.index))
