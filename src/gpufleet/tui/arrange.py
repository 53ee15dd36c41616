"""Which lines the view shows, in which order: sort (`s`), filter (`/`) and the free-GPU view (`f`).

Filter words all have to match (AND). `user:alice` keeps GPUs alice runs on; `key=value` keeps
nodes with that label; `status:down` keeps nodes in that state; any other word matches a node's
name or labels (the whole node stays) or a GPU's model, users or commands (only those GPUs stay).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from dataclasses import dataclass

from .layout import Line
from .model import Fleet, GpuRow, NodeRow, is_free

_STATUS_RANK = {"down": 0, "stale": 1, "moved": 2, "up": 3}


def _avg(xs: list[float | None]) -> float:
    vals = [x for x in xs if x is not None]
    return sum(vals) / len(vals) if vals else -1.0


def _top(xs: list[float | None]) -> float:
    vals = [x for x in xs if x is not None]
    return max(vals) if vals else -1.0


# Name, then how to rank nodes (busiest / hottest first: what an admin scans for).
SORTS: list[tuple[str, Callable[[NodeRow], tuple[Any, ...]]]] = [
    ("name", lambda n: (n.name,)),
    ("util", lambda n: (-_avg([g.util for g in n.gpus]), n.name)),
    ("memory", lambda n: (-_avg([g.mem_ratio for g in n.gpus]), n.name)),
    ("temp", lambda n: (-_top([g.temp for g in n.gpus]), n.name)),
    ("power", lambda n: (-sum(g.power or 0.0 for g in n.gpus), n.name)),
    ("free", lambda n: (-sum(1 for g in n.gpus if is_free(g)), n.name)),
    ("status", lambda n: (_STATUS_RANK.get(n.status, 0), n.name)),
]


@dataclass(slots=True)
class Arrangement:
    sort: int = 0  # index into SORTS
    filter: str = ""
    free_only: bool = False

    @property
    def sort_name(self) -> str:
        return SORTS[self.sort][0]

    def next_sort(self) -> None:
        self.sort = (self.sort + 1) % len(SORTS)


def _node_match(n: NodeRow, word: str) -> bool:
    return word in n.name.lower() or any(word in f"{k}={v}".lower() for k, v in n.labels.items())


def _gpu_match(g: GpuRow, word: str) -> bool:
    return word in g.model.lower() or any(word in p.user.lower() or word in p.command.lower() for p in g.procs)


def _pick(n: NodeRow, words: list[str]) -> list[GpuRow] | None:
    """The GPUs of `n` that pass every word (all of them when only node words), or None."""
    gpus = list(n.gpus)
    for w in words:
        if w.startswith("user:"):
            u = w[5:]
            gpus = [g for g in gpus if any(p.user.lower() == u for p in g.procs)]
            if not gpus:
                return None
        elif w.startswith("status:"):
            if n.status != w[7:]:
                return None
        elif "=" in w:
            k, _, v = w.partition("=")
            if n.labels.get(k, "").lower() != v and not any(k2.lower() == k and v2.lower() == v
                                                           for k2, v2 in n.labels.items()):
                return None
        elif not _node_match(n, w):
            gpus = [g for g in gpus if _gpu_match(g, w)]
            if not gpus:
                return None
    return gpus


def arrange(fleet: Fleet, how: Arrangement) -> list[Line]:
    words = how.filter.lower().split()
    key = SORTS[how.sort][1]
    out: list[Line] = []
    for n in sorted(fleet.nodes, key=key):
        gpus = _pick(n, words) if words else n.gpus
        if gpus is None:
            continue
        if how.free_only:
            gpus = [g for g in gpus if is_free(g)] if n.status == "up" else []
            if not gpus:
                continue
        out.append(Line(n))
        out.extend(Line(n, g) for g in gpus)
    return out
