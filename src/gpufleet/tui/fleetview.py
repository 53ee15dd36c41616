"""The scrolling list of nodes and GPUs: a Textual line-API widget with a cursor.

Only the lines on screen are rendered (`render_line`), so a 1,000-node fleet redraws as fast
as a 10-node one; new data replaces the line list and keeps the cursor on the same node/GPU.
"""

from __future__ import annotations

import time

from rich.segment import Segment
from rich.style import Style
from textual.binding import Binding
from textual.geometry import Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip

from .layout import Line, gpu_line, node_line

CURSOR = Style(reverse=True)


class FleetView(ScrollView, can_focus=True):
    BINDINGS = [
        Binding("up,k", "cursor(-1)", "up", show=False),
        Binding("down,j", "cursor(1)", "down", show=False),
        Binding("pageup", "page(-1)", "page up", show=False),
        Binding("pagedown,space", "page(1)", "page down", show=False),
        Binding("home,g", "edge(0)", "top", show=False),
        Binding("end,G", "edge(1)", "bottom", show=False),
        Binding("enter", "open", "details"),
    ]

    class Open(Message):
        """Enter on a line: the app opens the node or GPU it shows."""

        def __init__(self, line: Line) -> None:
            super().__init__()
            self.line = line

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.lines: list[Line] = []
        self.cursor = 0
        self.now = time.time()
        self.empty_text = ""  # said on the first line when nothing is shown

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """While the filter box opens, letters (j, k, g, space...) are filter text, not moves."""
        return not getattr(self.app, "editing", False)

    def set_lines(self, lines: list[Line]) -> None:
        """New data or a new arrangement: keep the cursor on the same node (and GPU) if still shown."""
        old = self.lines[self.cursor] if 0 <= self.cursor < len(self.lines) else None
        self.lines = lines
        self.now = time.time()
        if old is not None:
            want = (old.node.name, old.gpu.index if old.gpu else None)
            for i, ln in enumerate(lines):
                if (ln.node.name, ln.gpu.index if ln.gpu else None) == want:
                    self.cursor = i
                    break
            else:
                self.cursor = min(self.cursor, max(0, len(lines) - 1))
        self.virtual_size = Size(self.size.width, len(lines))
        self._follow()
        self.refresh()

    def selected(self) -> Line | None:
        return self.lines[self.cursor] if 0 <= self.cursor < len(self.lines) else None

    def render_line(self, y: int) -> Strip:
        i = int(self.scroll_offset.y) + y
        width = self.scrollable_content_region.width
        if (i >= len(self.lines) and (self.lines or i > 0 or not self.empty_text)) or width <= 0:
            return Strip.blank(width)
        if not self.lines and i == 0 and self.empty_text:
            return Strip([Segment(self.empty_text, Style(dim=True))]).crop_extend(0, width, None)
        ln = self.lines[i]
        segs: list[Segment] = gpu_line(ln.gpu, ln.node, width) if ln.gpu else node_line(ln.node, width, self.now)
        strip = Strip(segs).crop(0, width)
        if i == self.cursor and self.has_focus:
            strip = strip.apply_style(CURSOR)
        return strip

    def _follow(self) -> None:
        h = self.scrollable_content_region.height or 1
        top = int(self.scroll_offset.y)
        if self.cursor < top:
            self.scroll_to(y=self.cursor, animate=False)
        elif self.cursor >= top + h:
            self.scroll_to(y=self.cursor - h + 1, animate=False)

    def _move(self, to: int) -> None:
        self.cursor = max(0, min(to, len(self.lines) - 1))
        self._follow()
        self.refresh()

    def action_cursor(self, step: int) -> None:
        self._move(self.cursor + step)

    def action_page(self, step: int) -> None:
        self._move(self.cursor + step * max(1, self.scrollable_content_region.height - 1))

    def action_edge(self, end: int) -> None:
        self._move(len(self.lines) - 1 if end else 0)

    def action_open(self) -> None:
        ln = self.selected()
        if ln is not None:
            self.post_message(self.Open(ln))

    def on_resize(self) -> None:
        self.virtual_size = Size(self.size.width, len(self.lines))
