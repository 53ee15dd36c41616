"""SeriesList: a node's series keys held as label sets, not as one key tuple per series.

A big node pushes ~1,000 series over ~250 label sets (one per GPU, CPU core, disk...), and a
hub keeps several series lists per node (its shapes come and go with users and processes):
as key tuples that is ~80 KB a node, most of the memory a 1,000-node hub holds for its
series. Here a list is each series' metric (a tuple shared by every node of the same
hardware), which label set it has (an int array, shared the same way), the labels all its
series have (node, cluster...: the node's own) and each set's other labels (gpu="3": the same
objects for the whole fleet): a few KB a node.

It is a read-only sequence of keys, made when asked (a new series list, remote write). The
store takes it like a tuple of keys and finds its schema by its identity again; a changed
list with the same common labels finds the series it keeps by (metric, identity of the set).
"""
from __future__ import annotations

from array import array
from collections.abc import Iterator, Sequence
from typing import overload

from .types import SeriesKey

Labels = tuple[tuple[str, str], ...]


class SeriesList(Sequence[SeriesKey]):
    """Keys (metrics[i], common + sets[slots[i]], sorted by name) for i in range(len(metrics)).

    Callers keep `sets` free of equal label sets, the names in `common` out of every set, and
    never change any part once made.
    """

    __slots__ = ("metrics", "slots", "sets", "common", "_full")

    def __init__(self, metrics: tuple[str, ...], slots: array[int], sets: tuple[Labels, ...],
                 common: Labels = ()) -> None:
        if len(metrics) != len(slots):
            raise ValueError(f"{len(metrics)} metrics but {len(slots)} label set numbers")
        self.metrics = metrics
        self.slots = slots
        self.sets = sets
        self.common = common
        # the whole label sets, kept from the first walk over the keys on (remote write walks
        # them at every push; the store looks at them only when a list is new: merged_sets())
        self._full: Sequence[Labels] | None = None if common else sets

    def merged_sets(self) -> Sequence[Labels]:
        """Each set with the common labels, sorted by name (as a key's labels are); not kept."""
        full = self._full
        if full is None:
            common = self.common
            full = [tuple(sorted(common + s)) if s else common for s in self.sets]
        return full

    def _kept_sets(self) -> Sequence[Labels]:
        if self._full is None:
            self._full = self.merged_sets()
        return self._full

    def __len__(self) -> int:
        return len(self.metrics)

    @overload
    def __getitem__(self, i: int) -> SeriesKey: ...

    @overload
    def __getitem__(self, i: slice) -> tuple[SeriesKey, ...]: ...

    def __getitem__(self, i: int | slice) -> SeriesKey | tuple[SeriesKey, ...]:
        if isinstance(i, slice):
            return tuple(self)[i]
        common, own = self.common, self.sets[self.slots[i]]
        return self.metrics[i], (tuple(sorted(common + own)) if own and common else own or common)

    def __iter__(self) -> Iterator[SeriesKey]:
        return zip(self.metrics, map(self._kept_sets().__getitem__, self.slots))

    def keys_once(self) -> Iterator[SeriesKey]:
        """The keys, as iter() gives them, without keeping the whole label sets made for them."""
        return zip(self.metrics, map(self.merged_sets().__getitem__, self.slots))

    def set_ids(self) -> Iterator[int]:
        """Each series' label set's identity (of `sets`: the store matches a node's lists by it)."""
        return map(id, map(self.sets.__getitem__, self.slots))

    def __eq__(self, other: object) -> bool:
        """Equal to any sequence of the same keys in the same order (a tuple of keys too)."""
        if other is self:
            return True
        if isinstance(other, SeriesList):
            if len(other) != len(self):
                return False
            if (other.metrics == self.metrics and other.slots == self.slots and other.sets == self.sets
                    and other.common == self.common):
                return True
        elif not isinstance(other, tuple) or len(other) != len(self):
            return False
        them = other.keys_once() if isinstance(other, SeriesList) else other
        return all(a == b for a, b in zip(self.keys_once(), them))

    __hash__ = None  # type: ignore[assignment]  # compared, never a dict key

    def __repr__(self) -> str:
        return f"SeriesList({len(self)} series over {len(self.sets)} label sets)"
