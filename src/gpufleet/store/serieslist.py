"""SeriesList: a node's series keys held as its label sets, not as one key tuple per series.

A big node pushes ~1,000 series over ~250 label sets (one per GPU, CPU core, disk...), and a
hub keeps several series lists per node (its shapes come and go with users and processes):
as key tuples that is ~80 KB a node, most of the memory a 1,000-node hub holds for its
series. Here a list is each series' metric (a tuple shared by every node of the same
hardware), which label set it has (an int array, shared the same way) and the node's label
sets (shared by the node's lists): ~20 KB a node.

It is a read-only sequence of keys, made one at a time when asked (a new series list, remote
write). The store takes it like a tuple of keys and finds its schema by its identity again;
a changed list finds the series it keeps by (metric, identity of the label set).
"""
from __future__ import annotations

from array import array
from collections.abc import Iterator, Sequence
from typing import overload

from .types import SeriesKey

Labels = tuple[tuple[str, str], ...]


class SeriesList(Sequence[SeriesKey]):
    """Keys (metrics[i], sets[slots[i]]) for i in range(len(metrics)); labels sorted by name.

    Callers keep `sets` free of equal label sets (the store's index takes them as its plan)
    and never change any part once made.
    """

    __slots__ = ("metrics", "slots", "sets")

    def __init__(self, metrics: tuple[str, ...], slots: array[int], sets: tuple[Labels, ...]) -> None:
        if len(metrics) != len(slots):
            raise ValueError(f"{len(metrics)} metrics but {len(slots)} label set numbers")
        self.metrics = metrics
        self.slots = slots
        self.sets = sets

    def __len__(self) -> int:
        return len(self.metrics)

    @overload
    def __getitem__(self, i: int) -> SeriesKey: ...

    @overload
    def __getitem__(self, i: slice) -> tuple[SeriesKey, ...]: ...

    def __getitem__(self, i: int | slice) -> SeriesKey | tuple[SeriesKey, ...]:
        if isinstance(i, slice):
            return tuple(self)[i]
        return self.metrics[i], self.sets[self.slots[i]]

    def __iter__(self) -> Iterator[SeriesKey]:
        return zip(self.metrics, map(self.sets.__getitem__, self.slots))

    def labels(self) -> Iterator[Labels]:
        """Each series' label set (the objects themselves: the store matches them by identity)."""
        return map(self.sets.__getitem__, self.slots)

    def __eq__(self, other: object) -> bool:
        """Equal to any sequence of the same keys in the same order (a tuple of keys too)."""
        if other is self:
            return True
        if isinstance(other, SeriesList):
            if len(other) != len(self):
                return False
            if other.metrics == self.metrics and other.slots == self.slots and other.sets == self.sets:
                return True
        elif not isinstance(other, (tuple, list)) or len(other) != len(self):
            return False
        return tuple(self) == tuple(other)

    __hash__ = None  # type: ignore[assignment]  # compared, never a dict key

    def __repr__(self) -> str:
        return f"SeriesList({len(self)} series over {len(self.sets)} label sets)"
