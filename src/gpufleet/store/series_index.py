"""Series index: node names and series keys <-> small integer ids, persisted in series.log.

Blocks and the WAL refer to series by id only; the mapping lives in an
append-only, checksummed ``series.log`` that is written *before* any WAL record
that uses a new id, so recovery never meets an id it cannot name.  A
compressed copy, ``series.snap`` (``series_snapshot``), follows it a slice
per ``maintain`` call: when series.log is damaged, truncated or deleted, the
names it lost are taken from there, and only series registered since the copy
last caught up (and whose record was hit) cannot be named again.

Series are registered a batch at a time as a *run* (format 3): consecutive ids
for one node, named by a *shape* shared by every node of the same hardware
(each id's metric and which of the run's label sets it has) plus the run's own
label sets, with the labels every series of the batch has in common (node,
cluster...) kept once.  A node's first push of ~1,000 series is then two records
(one when its shape is new) and a few hundred interned tuples, not 1,000 keys,
dict entries and records.  Series named one by one (``S`` records, stores
written before format 3) are still read and served.

Records (msgpack lists)::

    ["N", nid, name]                                 a node
    ["S", sid, nid, metric, [[name, value], ...]]    one series (format <= 2)
    ["P", shape id, [metric, ...], slots]            a shape; slots: <u4 per id, its label set
    ["T", base, nid, shape id, common, sets]         a run: ids base.. of a node, named by the
                                                     shape; common and each set: [[name, value], ...]
"""
from __future__ import annotations

import os
import sys
from array import array
from bisect import bisect_left, bisect_right, insort
from collections.abc import Callable, Iterable, Sequence
from itertools import filterfalse, repeat
from typing import Any

import msgspec
import numpy as np

from . import formats, series_snapshot
from .recordlog import RecordLog, scan_log
from .serieslist import SeriesList
from .types import Matcher, SeriesKey

MAGIC = b"GFSI"
SNAPSHOT = series_snapshot.NAME
_MAX_ID = 1 << 32
_MIXED = "\x00mixed"  # runs whose series carry `node` in their own label sets: every node query visits them

Labels = tuple[tuple[str, str], ...]
Plan = tuple[tuple[str, ...], list[int], list[Labels]]  # each key's metric and label set, the sets

_enc = msgspec.msgpack.Encoder()
_dec = msgspec.msgpack.Decoder()


def normalize_key(key: Any) -> SeriesKey:
    """Validate a series key and return it as (metric, sorted tuple of pairs)."""
    try:
        metric, labels = key
    except (TypeError, ValueError):
        raise ValueError(f"series key must be (metric, labels), got {key!r}") from None
    if not isinstance(metric, str) or not metric:
        raise ValueError(f"series key metric must be a non-empty string, got {metric!r}")
    pairs: list[tuple[str, str]] = []
    try:
        for pair in labels:
            name, value = pair
            if not isinstance(name, str) or not isinstance(value, str) or not name:
                raise ValueError
            pairs.append((name, value))
    except (TypeError, ValueError):
        raise ValueError(f"labels of {metric!r} must be (name, value) string pairs, got {labels!r}") from None
    pairs.sort()
    for a, b in zip(pairs, pairs[1:]):
        if a[0] == b[0]:
            raise ValueError(f"duplicate label {a[0]!r} in series {metric!r}")
    return metric, tuple(pairs)


def _is_normal(labels: tuple[Any, ...]) -> bool:
    """Is this tuple already what normalize_key makes: string pairs, names sorted and distinct?"""
    prev = ""
    for p in labels:
        if type(p) is not tuple or len(p) != 2:
            return False
        name, value = p
        if type(name) is not str or type(value) is not str or name <= prev:  # '' < any name
            return False
        prev = name
    return True


def _label(pairs: Labels, name: str) -> str | None:
    for k, v in pairs:
        if k == name:
            return v
    return None


def _merge(common: Labels, rest: Labels) -> Labels:
    if not common:
        return rest
    if not rest:
        return common
    return tuple(sorted(common + rest))


def _pairs_of(raw: Any) -> Labels:
    """[[name, value], ...] from a record as a tuple of string pairs (ValueError if it is not)."""
    out = tuple([(a, b) for a, b in raw])
    if not all(type(a) is str and type(b) is str for a, b in out):
        raise ValueError("labels must be strings")
    return out


def _plan_of(metrics: tuple[str, ...], ids: list[int], by_id: dict[int, Labels]) -> Plan:
    """The plan of a batch from its metrics, the id of each key's label tuple and those tuples.

    Label sets each once, and each key's: a label tuple shared by a GPU's metrics is one
    object, looked up by identity; equal tuples that are not (two scopes with no labels of
    their own), by value. C-level passes: a node's first push has hundreds of sets.
    """
    distinct = dict.fromkeys(by_id.values())
    slot_of = dict(zip(distinct, range(len(distinct))))
    slot_by_id = dict(zip(by_id, map(slot_of.__getitem__, by_id.values())))
    return metrics, list(map(slot_by_id.__getitem__, ids)), list(distinct)


class _Shape:
    """What a run's ids are: per id its metric and the index of its label set in the run."""

    __slots__ = ("id", "metrics", "slots", "by_metric", "size", "_groups", "_offsets")

    def __init__(self, shape_id: int, metrics: tuple[str, ...], slots: np.ndarray) -> None:
        self.id = shape_id
        self.metrics = metrics
        self.slots = slots
        self.size = len(metrics)
        by: dict[str, list[int]] = {}
        for off, m in enumerate(metrics):
            by.setdefault(m, []).append(off)
        self.by_metric = {m: np.array(offs, np.int64) for m, offs in by.items()}
        self._groups: dict[str, tuple[np.ndarray, dict[int, np.ndarray]]] = {}
        self._offsets: dict[tuple[str, int], int] | None = None

    def offset(self, metric: str, slot: int) -> int | None:
        """The offset of the id with this metric and label set (made on first use; shapes are few)."""
        if self._offsets is None:
            self._offsets = dict(zip(zip(self.metrics, self.slots.tolist()), range(self.size)))
        return self._offsets.get((metric, slot))

    def groups(self, metric: str) -> tuple[np.ndarray, dict[int, np.ndarray]]:
        """The ids (offsets) of a metric here, and the same by label set (made on first query)."""
        got = self._groups.get(metric)
        if got is None:
            offs = self.by_metric[metric]
            by_slot: dict[int, list[int]] = {}
            for o, slot in zip(offs.tolist(), self.slots[offs].tolist()):
                by_slot.setdefault(slot, []).append(o)
            got = self._groups[metric] = (offs, {k: np.array(v, np.int64) for k, v in by_slot.items()})
        return got


class _Run:
    """Ids base..base+shape.size-1 of node `nid`: common labels plus the shape's label set of each."""

    __slots__ = ("base", "nid", "shape", "common", "sets", "node_key")

    def __init__(self, base: int, nid: int, shape: _Shape, common: Labels, sets: tuple[Labels, ...]) -> None:
        self.base = base
        self.nid = nid
        self.shape = shape
        self.common = common
        self.sets = sets
        self.node_key = ""  # its key in SeriesIndex._runs_by_node

    @property
    def end(self) -> int:
        return self.base + self.shape.size


class SeriesIndex:
    """Node and series ids of a store, from ``series.log`` (and ``series.snap`` when that is hurt).

    Ids are dense when nothing was lost; after damage they may have holes, and new
    ids always go above every id the store's data uses.

    Memory is per run (a node's batch of series) a tuple of its label sets, which are
    interned: a GPU's or CPU's set is one object however many metrics it has, and the
    same set on every node of a fleet (cpu="3") is one object for all of them. Series
    named one at a time (older stores) cost a dict entry each.
    """

    def __init__(self, path: str, on_damage: Callable[[str], None] | None = None) -> None:
        self.path = path
        self.snap_path = os.path.join(os.path.dirname(path), SNAPSHOT)
        self.node_ids: dict[str, int] = {}
        self.node_names: list[str | None] = []
        self._next_sid = 0  # above every id named or reserved
        self._count = 0  # series named
        # series named one by one (S records): sid -> key and node, node -> {key: sid},
        # metric -> the series' node (its `node` label, else the store's node name) -> sids
        self._single: dict[int, SeriesKey] = {}
        self._single_nid: dict[int, int] = {}
        self._single_sids: list[int] = []  # ascending
        self._sid_of: dict[int, dict[SeriesKey, int]] = {}
        self.by_metric: dict[str, dict[str, array[int]]] = {}
        # runs and shapes
        self._shapes: dict[int, _Shape] = {}
        self._next_shape = 0
        self._shape_ids: dict[tuple[tuple[str, ...], bytes], int] = {}
        self._runs: list[_Run] = []  # by base
        self._bases: list[int] = []
        self._node_runs: dict[int, list[_Run]] = {}
        self._shape_runs: dict[int, list[_Run]] = {}
        self._metric_shapes: dict[str, list[_Shape]] = {}
        self._runs_by_node: dict[str, list[_Run]] = {}
        self._pending: list[list[Any]] = []  # runs whose shape record was not met (yet)
        self._snap_shapes: set[int] = set()  # shapes written to series.snap since open
        self._interned: dict[Labels, Labels] = {}
        self._pairs: dict[tuple[str, str], tuple[str, str]] = {}
        self._on_damage = on_damage
        self.lost_nodes = 0
        self.lost_series = 0
        scan = scan_log(path, MAGIC)
        for rec in scan.records:
            self._apply_raw(rec)
        self._retry_pending()
        from_log = self._known()
        snap = series_snapshot.scan(self.snap_path)
        self._snap_trouble = snap.trouble
        self._snap_aside = ""
        trouble = f"damaged ({scan.describe()})" if scan.damaged else ""
        if snap.exists and (self._pending or self.node_names.count(None) or self._count < self._next_sid
                            or len(self.node_names) < snap.counts[0] or self._next_sid < snap.counts[1]):
            # ids the log lacks (damaged, truncated, deleted) that the copy names
            for rec in series_snapshot.records(snap):
                self._apply_raw(rec, only_missing=True)
            self._retry_pending()
            trouble = trouble or ("missing" if not scan.exists else f"shorter than {SNAPSHOT}")
        self._pending = []  # a run whose shape is lost: its ids are holes
        self._single_sids.sort()
        if snap.trouble or (snap.exists and snap.version < formats.FORMAT):
            # a copy: set it aside (an older one is rewritten in this format, records and all);
            # maintain() writes it again, a slice at a time
            self._snap_aside = formats.set_aside(self.snap_path) if snap.trouble else ""
            if not snap.trouble:
                os.unlink(self.snap_path)
            self._snap_counts = (0, 0)
        else:
            if snap.exists and snap.end < snap.size:
                os.truncate(self.snap_path, snap.end)  # a frame cut short by a crash
            self._snap_counts = snap.counts
        self._restored = (self._known()[0] - from_log[0], self._known()[1] - from_log[1])
        self._trouble = trouble
        if trouble:
            scan.records = self._records()  # rewrite it whole from what is known
            if not scan.damaged:
                scan.has_header = False  # a plain rewrite: nothing to set aside
        self.log = RecordLog(path, MAGIC, scan)

    def report(self, used_nodes: int, used_series: int) -> None:
        """Reserve the ids the store's data uses and say, once, what the index could not name."""
        if self._snap_trouble and self._on_damage is not None:
            self._on_damage(f"series snapshot {self.snap_path} is damaged ({self._snap_trouble}); set aside as "
                            f"{self._snap_aside} and written again from the series index (nothing lost)")
        self.lost_nodes = sum(1 for n in self.node_names[:used_nodes] if n is None) + max(0, used_nodes - len(self.node_names))
        self.lost_series = used_series - self._known_below(used_series)
        self._grow(used_nodes - 1, used_series - 1)
        if (self._trouble or self.lost_nodes or self.lost_series) and self._on_damage is not None:
            what = self._trouble or "missing names the data uses"
            kept = self.log.aside
            lost = self.lost_nodes or self.lost_series
            self._on_damage(
                f"series index {self.path} is {what}; rebuilt with {self._restored[0]} node and "
                f"{self._restored[1]} series names from {SNAPSHOT}; lost: {self.lost_nodes} node and "
                f"{self.lost_series} series names" + (" (their samples are not served)" if lost else "")
                + (f"; the damaged file is kept as {kept}" if kept else ""))

    @property
    def count(self) -> int:
        """Series named."""
        return self._count

    def _known(self) -> tuple[int, int]:
        return (len(self.node_names) - self.node_names.count(None), self._count)

    def _known_below(self, limit: int) -> int:
        n = bisect_left(self._single_sids, limit)
        for r in self._runs:
            if r.base >= limit:
                break
            n += min(r.end, limit) - r.base
        return n

    def _grow(self, nid: int, sid: int) -> None:
        if nid >= len(self.node_names):
            self.node_names.extend([None] * (nid + 1 - len(self.node_names)))
        if sid >= self._next_sid:
            self._next_sid = sid + 1

    # ------------------------------------------------------------ records
    def _apply_raw(self, raw: bytes, only_missing: bool = False) -> None:
        try:
            rec = _dec.decode(raw)
            kind = rec[0]
            if kind == "N":
                _, nid, name = rec
                ok = isinstance(nid, int) and 0 <= nid < _MAX_ID and isinstance(name, str)
                if ok and only_missing and nid < len(self.node_names) and self.node_names[nid] is not None:
                    return
            elif kind == "S":
                _, sid, nid, metric, labels = rec
                ok = (isinstance(sid, int) and 0 <= sid < _MAX_ID and isinstance(nid, int)
                      and isinstance(metric, str))
                if ok and only_missing and self.known(sid):
                    return
            elif kind == "P":
                _, shape_id, metrics, slots = rec
                ok = (isinstance(shape_id, int) and isinstance(metrics, list) and isinstance(slots, bytes)
                      and len(slots) == 4 * len(metrics) and all(isinstance(m, str) and m for m in metrics))
                if ok and only_missing and shape_id in self._shapes:
                    return
            elif kind == "T":
                _, base, nid, shape_id, common, sets = rec
                ok = (isinstance(base, int) and 0 <= base < _MAX_ID and isinstance(nid, int) and 0 <= nid < _MAX_ID
                      and isinstance(shape_id, int) and isinstance(common, list) and isinstance(sets, list))
                if ok and only_missing and self.known(base):
                    return
            else:
                return
            if ok:
                self._apply(rec)
        except (msgspec.DecodeError, ValueError, TypeError, IndexError):
            return  # a record that passed its CRC but does not decode: written by a bug, skip

    def _apply(self, rec: list[Any]) -> None:
        kind = rec[0]
        if kind == "N":
            _, nid, name = rec
            self._grow(nid, -1)
            self.node_names[nid] = name
            self.node_ids[name] = nid
            lost = f"lost-node-{nid}"
            if nid in self._sid_of:  # its series came first (a rebuilt index): regroup them by name
                for by_node in self.by_metric.values():
                    got = by_node.pop(lost, None)
                    if got is not None:
                        by_node.setdefault(name, array("q")).extend(got)
            for r in self._runs_by_node.pop(lost, []):
                r.node_key = name
                self._runs_by_node.setdefault(name, []).append(r)
        elif kind == "S":
            _, sid, nid, metric, labels = rec
            key: SeriesKey = (sys.intern(metric), self._intern(tuple(sorted(_pairs_of(labels)))))
            self._add_single(sid, nid, key)
        elif kind == "P":
            _, shape_id, metrics, slots = rec
            arr = np.frombuffer(slots, "<u4").astype(np.int64)
            self._add_shape(_Shape(shape_id, tuple(sys.intern(m) for m in metrics), arr))
        else:
            _, base, nid, shape_id, common, sets = rec
            shape = self._shapes.get(shape_id)
            if shape is None:
                self._pending.append(rec)
                return
            rests = tuple(self._intern(tuple(sorted(_pairs_of(s)))) for s in sets)
            if shape.size and int(shape.slots.max()) >= len(rests):
                raise ValueError("a run names label sets it does not have")
            self._add_run(_Run(base, nid, shape, self._intern(tuple(sorted(_pairs_of(common)))), rests))

    def _retry_pending(self) -> None:
        pending, self._pending = self._pending, []
        for rec in pending:
            try:
                if not self.known(rec[1]):
                    self._apply(rec)
            except (ValueError, TypeError):
                continue

    def _records(self) -> list[bytes]:
        out = [_enc.encode(["N", nid, name]) for nid, name in enumerate(self.node_names) if name is not None]
        used = {r.shape.id for r in self._runs}
        out += [self._shape_record(self._shapes[i]) for i in sorted(used)]
        out += [self._run_record(r) for r in self._runs]
        for sid in sorted(self._single):
            metric, labels = self._single[sid]
            out.append(_enc.encode(["S", sid, self._single_nid[sid], metric, [list(p) for p in labels]]))
        return out

    @staticmethod
    def _shape_record(shape: _Shape) -> bytes:
        return _enc.encode(["P", shape.id, list(shape.metrics), shape.slots.astype("<u4").tobytes()])

    @staticmethod
    def _run_record(r: _Run) -> bytes:
        return _enc.encode(["T", r.base, r.nid, r.shape.id, r.common, r.sets])

    def write_snapshot(self, max_records: int | None = None) -> bool:
        """Append the names registered since the last call to series.snap; True if some are left.

        ``max_records`` bounds the work of one call (maintain passes a slice; a run counts
        as one record per label set it names, and is never split).
        """
        n0, s0 = self._snap_counts
        n1, s1 = len(self.node_names), self._next_sid
        if n0 >= n1 and s0 >= s1:
            return False
        n0, s0 = min(n0, n1), min(s0, s1)
        room = max_records if max_records is not None else (n1 - n0) + (s1 - s0) + 1
        nodes_to = min(n1, n0 + room)
        room -= nodes_to - n0
        recs = [_enc.encode(["N", nid, name]) for nid in range(n0, nodes_to)
                if (name := self.node_names[nid]) is not None]
        series_to = s1
        took = False  # a run larger than the slice still goes, alone
        shapes_written: set[int] = set()
        ri = max(0, bisect_right(self._bases, s0) - 1)
        si = bisect_left(self._single_sids, s0)
        runs, singles = self._runs, self._single_sids
        while ri < len(runs) or si < len(singles):
            if ri < len(runs) and runs[ri].end <= s0:
                ri += 1
                continue
            single = si < len(singles) and (ri >= len(runs) or singles[si] < runs[ri].base)
            cost = 1 if single else 1 + len(runs[ri].sets)
            if cost > room and took:
                nxt = min(runs[ri].base if ri < len(runs) else s1, singles[si] if si < len(singles) else s1)
                series_to = max(s0, min(nxt, s1))
                break
            if not single:
                r = runs[ri]
                if r.shape.id not in self._snap_shapes and r.shape.id not in shapes_written:
                    recs.append(self._shape_record(r.shape))  # in the copy before the first run using it
                    shapes_written.add(r.shape.id)
                recs.append(self._run_record(r))
                ri += 1
            else:
                sid = singles[si]
                metric, labels = self._single[sid]
                recs.append(_enc.encode(["S", sid, self._single_nid[sid], metric, [list(p) for p in labels]]))
                si += 1
            room -= cost
            took = True
        series_snapshot.append(self.snap_path, (nodes_to, series_to), recs)
        self._snap_shapes |= shapes_written
        self._snap_counts = (nodes_to, series_to)
        return (nodes_to, series_to) != (n1, s1)

    # ------------------------------------------------------------ naming
    def _intern(self, labels: Labels) -> Labels:
        """The one shared object for a normalised label tuple (its pairs shared too).

        The first object seen is kept: the caller's own (pair) tuples, so the hub's key
        cache and this index hold one copy between them.
        """
        got = self._interned.get(labels)
        if got is None:
            pair = self._pairs.setdefault
            shared = [pair(p, p) for p in labels]
            if any(a is not b for a, b in zip(shared, labels)):
                labels = tuple(shared)
            got = self._interned[labels] = labels
        return got

    def _add_single(self, sid: int, nid: int, key: SeriesKey) -> None:
        if sid in self._single:
            return
        self._grow(-1, sid)
        self._single[sid] = key
        self._single_nid[sid] = nid
        self._single_sids.append(sid)  # sorted once loading is done (only loading adds these)
        self._count += 1
        self._sid_of.setdefault(nid, {})[key] = sid
        metric, labels = key
        node = _label(labels, "node") or self._node_fallback(nid)
        self.by_metric.setdefault(metric, {}).setdefault(node, array("q")).append(sid)

    def _node_fallback(self, nid: int) -> str:
        name = self.node_names[nid] if 0 <= nid < len(self.node_names) else None
        return name or f"lost-node-{nid}"

    def _add_shape(self, shape: _Shape) -> None:
        if shape.id in self._shapes:
            return
        self._shapes[shape.id] = shape
        self._next_shape = max(self._next_shape, shape.id + 1)
        self._shape_ids[(shape.metrics, array("I", shape.slots.tolist()).tobytes())] = shape.id
        self._shape_runs[shape.id] = []
        for m in shape.by_metric:
            self._metric_shapes.setdefault(m, []).append(shape)

    def _add_run(self, r: _Run) -> None:
        if self._bases and r.base <= self._bases[-1]:
            if self.known(r.base) or self.known(r.end - 1):
                return  # named already (a copy's record for ids the log has)
            i = bisect_left(self._bases, r.base)
            self._bases.insert(i, r.base)
            self._runs.insert(i, r)
        else:
            self._bases.append(r.base)
            self._runs.append(r)
        self._grow(-1, r.end - 1)
        self._count += r.shape.size
        self._node_runs.setdefault(r.nid, []).append(r)
        self._shape_runs[r.shape.id].append(r)
        node = _label(r.common, "node")
        if node is None:
            node = _MIXED if any(_label(s, "node") is not None for s in r.sets) else self._node_fallback(r.nid)
        r.node_key = node
        self._runs_by_node.setdefault(node, []).append(r)

    def node_id(self, name: str, create: bool = True) -> int | None:
        nid = self.node_ids.get(name)
        if nid is None and create:
            if not isinstance(name, str) or not name:
                raise ValueError(f"node must be a non-empty string, got {name!r}")
            nid = len(self.node_names)
            self.log.append(_enc.encode(["N", nid, name]))  # before any WAL record uses the id
            self._apply(["N", nid, name])
        return nid

    @staticmethod
    def _normal(key: Any) -> SeriesKey:
        """`key` normalised: the caller's own tuple when it already is."""
        if type(key) is tuple and len(key) == 2:
            metric, labels = key
            if type(metric) is str and metric and type(labels) is tuple and _is_normal(labels):
                return key
        return normalize_key(key)

    def _normal_all(self, keys: Sequence[Any]) -> tuple[list[SeriesKey], Plan | None]:
        """Every key normalised, and the batch's plan (see ``_plan``) when the keys were normal already.

        The common case (the hub's keys: tuples of a metric and a sorted label tuple, one
        label tuple per GPU or CPU) is checked with C-level passes over the batch, a label
        tuple once however many keys share it; the plan comes out of the same passes.
        """
        if type(keys) is SeriesList:
            # label sets as the list holds them (distinct), checked once each, not per key
            metrics, sets = keys.metrics, keys.merged_sets()
            if (set(map(type, metrics)) <= {str} and all(metrics) and set(map(type, sets)) <= {tuple}
                    and all(map(_is_normal, sets)) and len(set(sets)) == len(sets)):
                return list(zip(metrics, map(sets.__getitem__, keys.slots))), (metrics, keys.slots.tolist(), list(sets))
        elif keys and set(map(type, keys)) == {tuple} and set(map(len, keys)) == {2}:
            metrics, labs = zip(*keys)
            if set(map(type, metrics)) == {str} and all(metrics) and set(map(type, labs)) == {tuple}:
                ids = list(map(id, labs))
                by_id = dict(zip(ids, labs))
                distinct = list(by_id.values())
                if all(map(_is_normal, distinct)):
                    return list(keys), _plan_of(metrics, ids, by_id)
        out: list[SeriesKey] = []
        seen: dict[int, Labels] = {}  # id(caller's labels) -> normalised
        for key in keys:
            if type(key) is tuple and len(key) == 2 and type(key[0]) is str and key[0]:
                lab = seen.get(id(key[1]))
                if lab is not None:
                    out.append(key if lab is key[1] else (key[0], lab))
                    continue
                norm = self._normal(key)
                seen[id(key[1])] = norm[1]
            else:
                norm = self._normal(key)
            out.append(norm)
        return out, None

    def _lookup(self, nid: int, norm: list[SeriesKey]) -> list[int | None]:
        """Each key's id on node `nid` (None: it has none), without building the node's whole
        {key: id}: a label set is placed in each of the node's runs once, then a key is two
        dict lookups. A later run wins over an earlier one, and runs over single series."""
        runs = self._node_runs.get(nid, [])[::-1]
        single = self._sid_of.get(nid, {})
        where: dict[int, list[tuple[_Run, int]]] = {}  # id(label set) -> (run, slot) of each run holding it
        slot_maps: dict[int, dict[Labels, int]] = {}
        out: list[int | None] = []
        for key in norm:
            metric, lab = key
            places = where.get(id(lab))
            if places is None:
                places = where[id(lab)] = []
                for r in runs:
                    rest = lab
                    if r.common:
                        common = r.common
                        rest = tuple([p for p in lab if p not in common])
                        if len(rest) + len(common) != len(lab):
                            continue  # not all of the run's common labels: none of its series
                    slots = slot_maps.get(id(r))
                    if slots is None:
                        slots = slot_maps[id(r)] = dict(zip(r.sets, range(len(r.sets))))
                    slot = slots.get(rest)
                    if slot is not None:
                        places.append((r, slot))
            sid: int | None = None
            for r, slot in places:
                off = r.shape.offset(metric, slot)
                if off is not None:
                    sid = r.base + off
                    break
            out.append(single.get(key) if sid is None else sid)
        return out

    def sids_for(self, nid: int, keys: Sequence[Any]) -> list[int]:
        """Ids of the given keys on a node; new series are named as one run (one series.log write)."""
        return self.resolve(nid, keys)[0]

    def resolve(self, nid: int, keys: Sequence[Any]) -> tuple[list[int], bool]:
        """sids_for, and whether every key was normal already (so the caller's key objects
        name these ids as they are: the store finds them again by identity)."""
        if not keys:
            return [], True
        norm, plan = self._normal_all(keys)
        base = self._next_sid
        if nid not in self._node_runs and nid not in self._sid_of:
            # a node's first batch: all new, unless a key comes twice
            # (a known shape was checked when it was made: no metric and label set twice)
            if plan is None:
                plan = self._plan(norm)
            shape_id = self._shape_id(plan)
            if shape_id is not None or len(set(zip(plan[0], plan[1]))) == len(norm):
                self._new_run(nid, base, plan, shape_id)
                return list(range(base, base + len(norm))), plan is not None
            got: list[int | None] = [None] * len(norm)
        else:
            got = self._lookup(nid, norm)
        fresh: dict[SeriesKey, int] = {}
        out: list[int] = []
        for key, sid in zip(norm, got):
            if sid is None:
                sid = fresh.setdefault(key, base + len(fresh))  # a key twice gets one id (the store refuses it)
            out.append(sid)
        if fresh:
            new_plan = self._plan(list(fresh))
            self._new_run(nid, base, new_plan, self._shape_id(new_plan))
        return out, plan is not None

    @staticmethod
    def _plan(keys: Sequence[SeriesKey]) -> Plan:
        """Each key's metric and label set index, and the distinct label sets, of a batch."""
        metrics, labs = zip(*keys)
        ids = list(map(id, labs))
        return _plan_of(metrics, ids, dict(zip(ids, labs)))

    def _shape_id(self, plan: Plan) -> int | None:
        return self._shape_ids.get((plan[0], array("I", plan[1]).tobytes()))

    def _new_run(self, nid: int, base: int, plan: Plan, shape_id: int | None) -> None:
        metrics, slot_list, distinct = plan
        slots = np.array(slot_list, np.int64)
        common_set = set(distinct[0]).intersection(*distinct[1:])
        common = self._intern(tuple(sorted(common_set)))
        # each set less the common labels (in C: a fleet's node has hundreds of sets), and
        # interned: a CPU's or GPU's set is one object for the whole fleet
        rests = list(map(tuple, map(filterfalse, repeat(common_set.__contains__), distinct))) if common_set else distinct
        got = list(map(self._interned.get, rests))
        if None in got:
            got = [g if g is not None else self._intern(r) for g, r in zip(got, rests)]
        recs: list[bytes] = []
        if shape_id is None:
            shape = _Shape(self._next_shape, tuple(sys.intern(m) for m in metrics), slots)
            recs.append(self._shape_record(shape))
        else:
            shape = self._shapes[shape_id]
        run = _Run(base, nid, shape, common, tuple(got))  # type: ignore[arg-type]
        recs.append(self._run_record(run))
        # In series.log before any WAL record uses the ids: one write for the whole batch.
        self.log.append_many(recs)
        if shape_id is None:
            self._add_shape(shape)
        self._add_run(run)

    # ------------------------------------------------------------ lookups
    def _run_at(self, sid: int) -> _Run | None:
        i = bisect_right(self._bases, sid) - 1
        if i >= 0:
            r = self._runs[i]
            if sid < r.end:
                return r
        return None

    def known(self, sid: int) -> bool:
        return sid in self._single or self._run_at(sid) is not None

    def node_name(self, nid: int) -> str | None:
        return self.node_names[nid] if 0 <= nid < len(self.node_names) else None

    def key(self, sid: int) -> SeriesKey:
        r = self._run_at(sid)
        if r is None:
            got = self._single.get(sid)
            assert got is not None, "key() of a series whose name was lost"
            return got
        off = sid - r.base
        return r.shape.metrics[off], _merge(r.common, r.sets[int(r.shape.slots[off])])

    def keys(self, sids: Iterable[int]) -> list[SeriesKey | None]:
        """key() of each (None where the name was lost), label tuples shared within a run."""
        out: list[SeriesKey | None] = []
        merged: dict[tuple[int, int], Labels] = {}
        for sid in sids:
            r = self._run_at(sid)
            if r is None:
                out.append(self._single.get(sid))
                continue
            off = sid - r.base
            slot = int(r.shape.slots[off])
            lab = merged.get((r.base, slot))
            if lab is None:
                lab = merged[(r.base, slot)] = _merge(r.common, r.sets[slot])
            out.append((r.shape.metrics[off], lab))
        return out

    def node_of(self, sid: int) -> int:
        r = self._run_at(sid)
        if r is not None:
            return r.nid
        return self._single_nid.get(sid, -1)

    def labels(self, sid: int) -> dict[str, str]:
        """Labels of a series as a dict, with __name__ and node (unless the key has one)."""
        metric, pairs = self.key(sid)
        out = {"__name__": metric, **dict(pairs)}
        if "node" not in out:
            out["node"] = self._node_fallback(self.node_of(sid))
        return out

    def match(self, metric: str | None, matchers: Sequence[Matcher]) -> list[int]:
        node_eq = [m.value for m in matchers if m.name == "node" and m.op == "="]
        # runs: a matcher on a label the run's series share is decided once for the run,
        # one on a label set once per set (and once per query for a set many nodes share);
        # ids are then made a shape at a time: bases of the runs that pass x the metric's offsets
        if node_eq:
            runs: Iterable[_Run] = (self._runs_by_node.get(node_eq[0], []) + self._runs_by_node.get(_MIXED, []))
        elif metric is not None:
            runs = [r for sh in self._metric_shapes.get(metric, []) for r in self._shape_runs[sh.id]]
        else:
            runs = self._runs
        passing: dict[tuple[int, str, int], list[int]] = {}  # (shape, metric, slot or -1: all) -> bases
        by_set: dict[tuple[tuple[int, ...], int], bool] = {}
        for r in runs:
            for m_name in ([metric] if metric is not None else r.shape.by_metric):
                if m_name in r.shape.by_metric:
                    self._match_run(r, m_name, matchers, by_set, passing)
        parts: list[np.ndarray] = []
        for (shape_id, m_name, slot), bases in passing.items():
            every, by_slot = self._shapes[shape_id].groups(m_name)
            offs = by_slot[slot] if slot >= 0 else every
            parts.append((np.array(bases, np.int64)[:, None] + offs[None, :]).ravel())
        if self._single:  # series named one by one (older stores)
            parts.append(np.array(self._match_singles(metric, matchers, node_eq), np.int64))
        if not parts:
            return []
        return np.sort(np.concatenate(parts)).tolist()  # type: ignore[no-any-return]

    def _match_run(self, r: _Run, metric: str, matchers: Sequence[Matcher],
                   by_set: dict[tuple[tuple[int, ...], int], bool],
                   passing: dict[tuple[int, str, int], list[int]]) -> None:
        """Note which of `metric`'s ids in run `r` pass `matchers` (all, or those of some label sets)."""
        per_set: list[Matcher] = []
        for m in matchers:
            if m.name == "__name__":
                value: str | None = metric
            else:
                value = _label(r.common, m.name)
                if value is None:
                    per_set.append(m)
                    continue
            if not m.accepts(value or ""):
                return
        sid = r.shape.id
        if not per_set:
            passing.setdefault((sid, metric, -1), []).append(r.base)
            return
        # the verdict on a set depends on the set alone unless `node` falls back to the run's node
        # (and on which matchers were left to the sets: runs may share different labels)
        shared = not any(m.name == "node" for m in per_set)
        which = tuple(map(id, per_set))
        for slot in r.shape.groups(metric)[1]:
            pairs = r.sets[slot]
            ok = by_set.get((which, id(pairs))) if shared else None
            if ok is None:
                ok = True
                for m in per_set:
                    value = _label(pairs, m.name)
                    if value is None and m.name == "node":
                        value = self._node_fallback(r.nid)
                    if not m.accepts(value or ""):
                        ok = False
                        break
                if shared:
                    by_set[(which, id(pairs))] = ok
            if ok:
                passing.setdefault((sid, metric, slot), []).append(r.base)

    def _match_singles(self, metric: str | None, matchers: Sequence[Matcher], node_eq: list[str]) -> list[int]:
        if metric is None:
            groups = [g for by_node in self.by_metric.values() for g in by_node.values()]
        else:
            by_node = self.by_metric.get(metric, {})
            if node_eq:  # an exact node: only its series can match
                got = by_node.get(node_eq[0])
                groups = [got] if got is not None else []
            else:
                groups = list(by_node.values())
        cands = [sid for g in groups for sid in g]
        if not matchers:
            return cands
        out = []
        single, nids = self._single, self._single_nid
        for sid in cands:
            metric_of, pairs = single[sid]
            ok = True
            for m in matchers:
                if m.name == "__name__":
                    value: str | None = metric_of
                else:
                    value = _label(pairs, m.name)
                    if value is None and m.name == "node":
                        value = self._node_fallback(nids[sid])
                if not m.accepts(value or ""):
                    ok = False
                    break
            if ok:
                out.append(sid)
        return out

    def flush(self, fsync: bool = True) -> None:
        self.log.flush(fsync)

    def dup(self) -> int:
        return self.log.dup()

    def close(self) -> None:
        self.log.close()
