"""A report's answer as columns, in answer order, written straight to JSON or CSV.

A report by job has a row per job (~380,000 for a month of a 1,000-node fleet): a dict per
row costs more than the figures themselves (benchmarks/bench_report.py). Here the columns stay
lists until they are written; the JSON rows are small structs made in C (map over the
columns) with the same keys, in the same order, as the dicts of `rows()`.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import msgspec
import numpy as np

JOB_EXTRA = ("user", "nodes")  # by job, each row also says whose job it is and where it ran


def node_list(nodes: str) -> list[str]:
    """"a,b,a" -> ["a", "b"] (a job's nodes, as group_concat and job_totals keep them)."""
    if "," not in nodes:
        return [nodes] if nodes else []
    return sorted(set(nodes.split(",")) - {""})


@dataclass(slots=True)
class Answer:
    """Rows of one report: `keys` (of `by`), a list per figure, and by job each row's user and
    nodes ("a,b" as kept; split when written)."""

    by: str
    keys: list[str] = field(default_factory=list)
    figures: dict[str, list[float]] = field(default_factory=dict)  # FIELDS, then "cost" when priced
    users: list[str] = field(default_factory=list)
    nodes: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.keys)

    def names(self) -> list[str]:
        """Each row's keys, in order (the CSV header)."""
        return [self.by, *self.figures, *(JOB_EXTRA if self.by == "job" else ())]

    def _columns(self, nodes: list[Any]) -> list[list[Any]]:
        return [self.keys, *self.figures.values(), *((self.users, nodes) if self.by == "job" else ())]

    def _node_lists(self) -> list[list[str]]:
        return [[n] if n and "," not in n else node_list(n) for n in self.nodes]  # one node: no call

    def rows(self) -> list[dict[str, Any]]:
        """A dict per row (the pages and tests)."""
        names = self.names()
        return [dict(zip(names, r)) for r in zip(*self._columns(self._node_lists()))]

    def structs(self) -> list[msgspec.Struct]:
        """A struct per row for msgspec: encoded as the dicts of rows() would be."""
        return list(map(_row_type(tuple(self.names())), *self._columns(self._node_json())))

    def _node_json(self) -> list[msgspec.Raw]:
        # Each row's nodes as JSON made once per distinct value and shared: a fleet has far fewer
        # node lists than jobs, and a new list per row was a third of writing the answer.
        made: dict[str, msgspec.Raw] = {}
        out = []
        for n in self.nodes:
            raw = made.get(n)
            if raw is None:
                raw = made[n] = msgspec.Raw(msgspec.json.encode([n] if n and "," not in n else node_list(n)))
            out.append(raw)
        return out

    def csv(self) -> str:
        """Header and rows; a job's nodes as "a;b". The same text as csv.writer's (minimal quoting),
        made a column at a time: csv.writer took ~1.2 s for a month's jobs, this ~0.4 s."""
        joined = [n if "," not in n else ";".join(node_list(n)) for n in self.nodes]
        columns = self._columns(joined)
        texts = [_csv_texts(c) for c in columns]
        if any(t is None for t in texts):  # a value that is not a plain str or number: let csv decide
            buf = io.StringIO()
            w = csv.writer(buf, lineterminator="\n")
            w.writerow(self.names())
            w.writerows(zip(*columns))
            return buf.getvalue()
        header = ",".join(self.names())  # field names: no quoting
        return "\n".join([header, *map(",".join, zip(*texts))]) + "\n"


_NEEDS_QUOTES = re.compile(r'[",\r\n]')


class _Unsure(Exception):
    """A cell whose quoting csv.writer decides by version (a carriage return): let it write it."""


def _csv_quoted(s: str) -> str:
    if not _NEEDS_QUOTES.search(s):
        return s
    if "\r" in s:
        raise _Unsure
    return '"' + s.replace('"', '""') + '"'


def _number_texts(column: list[Any]) -> list[str]:
    """repr() of each number, as csv.writer writes them, made by msgspec's float writer (~5x
    faster): the same text wherever repr() writes no exponent, so the few others (below 1e-4,
    from 1e16, and NaN or infinity, which JSON spells null) are made by repr()."""
    if not column:
        return []
    texts = msgspec.json.encode(column)[1:-1].decode().split(",")
    try:
        size = np.abs(np.asarray(column, dtype=np.float64))
    except OverflowError:  # an int past any float: repr() them all
        return list(map(repr, column))
    with np.errstate(invalid="ignore"):  # NaN: neither in range nor 0, so repr() it is
        odd = np.flatnonzero((size != 0) & ~((size >= 1e-4) & (size < 1e16)))
    for i in odd.tolist():
        texts[i] = repr(column[i])
    return texts


def _csv_texts(column: list[Any]) -> list[str] | None:
    """A column's cells as csv.writer writes them (str() of a number), or None for other values."""
    kinds = set(map(type, column))
    if kinds <= {float, int}:
        return _number_texts(column)
    if kinds <= {str}:
        if not _NEEDS_QUOTES.search("\x00".join(column)):
            return column  # one scan of the whole column: names rarely need quotes
        try:
            return list(map(_csv_quoted, column))
        except _Unsure:
            return None
    return None


@cache
def _row_type(names: tuple[str, ...]) -> type[msgspec.Struct]:
    # gc=False: rows hold only strings, floats and lists of strings, never a cycle, and 100,000s
    # of tracked objects would make the collector walk them.
    return msgspec.defstruct("UsageRow", list(names), gc=False)
