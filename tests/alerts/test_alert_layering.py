"""The alerts package has no import cycles: routing builds messages, notify sends them, and
what both need (payload shapes, URL checks) lives in a leaf both import. Imports made only
for type checkers (`if TYPE_CHECKING:`) are not cycles at run time and are left out."""

from __future__ import annotations

from pathlib import Path

import gpufleet.hub.alerts as alerts

from hub.test_layering import imports_of

PACKAGE = Path(alerts.__file__).resolve().parent


def test_alerts_modules_import_no_cycle() -> None:
    graph = {p.stem: {n.rpartition(".")[2] for n in imports_of(p, typing_only=False) if n.startswith("gpufleet.hub.alerts.")}
             for p in PACKAGE.glob("*.py") if p.stem != "__init__"}
    assert "notify" not in graph["routing"] and "routing" not in graph["payload"]

    def reach(start: str) -> set[str]:
        seen: set[str] = set()
        todo = [start]
        while todo:
            for nxt in graph.get(todo.pop(), ()):
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        return seen

    cycles = sorted(m for m in graph if m in reach(m))
    assert not cycles, f"modules on an import cycle: {cycles}"
