"""Series index: node names and series keys <-> small integer ids, persisted in series.log.

Blocks and the WAL refer to series by id only; the mapping lives in an
append-only, checksummed ``series.log`` that is written *before* any WAL record
that uses a new id, so recovery never meets an id it cannot name.  A
compressed copy, ``series.snap`` (``series_snapshot``), follows it a slice
per ``maintain`` call: when series.log is damaged, truncated or deleted, the
names it lost are taken from there, and only series registered since the copy
last caught up (and whose record was hit) cannot be named again.
"""
from __future__ import annotations

import os
import sys
from array import array
from collections.abc import Callable, Sequence
from typing import Any

import msgspec

from . import formats, series_snapshot
from .recordlog import RecordLog, scan_log
from .types import Matcher, SeriesKey

MAGIC = b"GFSI"
SNAPSHOT = series_snapshot.NAME
_MAX_ID = 1 << 32

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


def _label(pairs: tuple[tuple[str, str], ...], name: str) -> str | None:
    for k, v in pairs:
        if k == name:
            return v
    return None


class SeriesIndex:
    """Node and series ids of a store, from ``series.log`` (and ``series.snap`` when that is hurt).

    Ids are dense when nothing was lost; after damage they may have holes
    (``None``), and new ids always go above every id the store's data uses.

    Memory is per series a list slot, a dict entry and an int: a fleet of 1,000 nodes
    has ~740k series. Label tuples are interned (one object per distinct label set, shared
    by every metric of a GPU or CPU and with the caller's own keys), node ids sit in an
    array, and label dicts are built only for the series a query returns.
    """

    def __init__(self, path: str, on_damage: Callable[[str], None] | None = None) -> None:
        self.path = path
        self.snap_path = os.path.join(os.path.dirname(path), SNAPSHOT)
        self.node_ids: dict[str, int] = {}
        self.node_names: list[str | None] = []
        self.series: list[SeriesKey | None] = []  # sid -> key
        self._nid = array("l")  # sid -> node id (-1: a hole)
        self._sid_of: dict[int, dict[SeriesKey, int]] = {}  # node id -> {key: sid}
        # metric -> the series' node (its own `node` label, else the store's node name) -> sids:
        # a query naming its node visits that node's series only
        self.by_metric: dict[str, dict[str, array[int]]] = {}
        self._interned: dict[tuple[tuple[str, str], ...], tuple[tuple[str, str], ...]] = {}
        self._pairs: dict[tuple[str, str], tuple[str, str]] = {}
        self._on_damage = on_damage
        self.lost_nodes = 0
        self.lost_series = 0
        scan = scan_log(path, MAGIC)
        for rec in scan.records:
            self._apply_raw(rec)
        from_log = self._known()
        snap = series_snapshot.scan(self.snap_path)
        self._snap_trouble = snap.trouble
        self._snap_aside = ""
        trouble = f"damaged ({scan.describe()})" if scan.damaged else ""
        if snap.exists and (self.node_names.count(None) or self.series.count(None)
                            or len(self.node_names) < snap.counts[0] or len(self.series) < snap.counts[1]):
            # ids the log lacks (damaged, truncated, deleted) that the copy names
            for rec in series_snapshot.records(snap):
                self._apply_raw(rec, only_missing=True)
            trouble = trouble or ("missing" if not scan.exists else f"shorter than {SNAPSHOT}")
        if snap.trouble:  # a copy: set it aside; maintain() writes it again, a slice at a time
            self._snap_aside = formats.set_aside(self.snap_path)
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
        self.lost_series = sum(1 for x in self.series[:used_series] if x is None) + max(0, used_series - len(self.series))
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

    def _known(self) -> tuple[int, int]:
        return (len(self.node_names) - self.node_names.count(None), len(self.series) - self.series.count(None))

    def _grow(self, nid: int, sid: int) -> None:
        if nid >= len(self.node_names):
            self.node_names.extend([None] * (nid + 1 - len(self.node_names)))
        if sid >= len(self.series):
            more = sid + 1 - len(self.series)
            self.series.extend([None] * more)
            self._nid.extend([-1] * more)

    def _apply_raw(self, raw: bytes, only_missing: bool = False) -> None:
        try:
            rec = _dec.decode(raw)
            if rec[0] == "N":
                _, nid, name = rec
                ok = isinstance(nid, int) and 0 <= nid < _MAX_ID and isinstance(name, str)
            else:
                _, sid, nid, metric, labels = rec
                ok = (isinstance(sid, int) and 0 <= sid < _MAX_ID and isinstance(nid, int)
                      and isinstance(metric, str))
        except (msgspec.DecodeError, ValueError, TypeError, IndexError):
            return  # a record that passed its CRC but does not decode: written by a bug, skip
        if not ok:
            return
        if only_missing:
            if rec[0] == "N" and nid < len(self.node_names) and self.node_names[nid] is not None:
                return
            if rec[0] == "S" and sid < len(self.series) and self.series[sid] is not None:
                return
        self._apply(rec)

    def _records(self) -> list[bytes]:
        out = [_enc.encode(["N", nid, name]) for nid, name in enumerate(self.node_names) if name is not None]
        for sid, got in enumerate(self.series):
            if got is not None:
                metric, labels = got
                out.append(_enc.encode(["S", sid, self._nid[sid], metric, [list(p) for p in labels]]))
        return out

    def write_snapshot(self, max_records: int | None = None) -> bool:
        """Append the names registered since the last call to series.snap; True if some are left.

        ``max_records`` bounds the work of one call (maintain passes a slice).
        """
        n0, s0 = self._snap_counts
        n1, s1 = len(self.node_names), len(self.series)
        if n0 >= n1 and s0 >= s1:
            return False
        n0, s0 = min(n0, n1), min(s0, s1)
        room = max_records if max_records is not None else (n1 - n0) + (s1 - s0)
        nodes_to = min(n1, n0 + room)
        series_to = min(s1, s0 + max(0, room - (nodes_to - n0)))
        recs = [_enc.encode(["N", nid, name]) for nid in range(n0, nodes_to)
                if (name := self.node_names[nid]) is not None]
        for sid in range(s0, series_to):
            got = self.series[sid]
            if got is not None:
                metric, labels = got
                recs.append(_enc.encode(["S", sid, self._nid[sid], metric, [list(p) for p in labels]]))
        series_snapshot.append(self.snap_path, (nodes_to, series_to), recs)
        self._snap_counts = (nodes_to, series_to)
        return (nodes_to, series_to) != (n1, s1)

    def _intern(self, labels: tuple[tuple[str, str], ...]) -> tuple[tuple[str, str], ...]:
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

    def _apply(self, rec: list[Any]) -> None:
        if rec[0] == "N":
            _, nid, name = rec
            self._grow(nid, -1)
            self.node_names[nid] = name
            self.node_ids[name] = nid
            if nid in self._sid_of:  # its series came first (a rebuilt index): regroup them by name
                lost = f"lost-node-{nid}"
                for by_node in self.by_metric.values():
                    got = by_node.pop(lost, None)
                    if got is not None:
                        by_node.setdefault(name, array("q")).extend(got)
        else:
            _, sid, nid, metric, labels = rec
            key: SeriesKey = (sys.intern(metric), self._intern(tuple([(a, b) for a, b in labels])))
            self._add(sid, nid, key)

    def _add(self, sid: int, nid: int, key: SeriesKey) -> None:
        self._add_many(nid, [(key, sid)])

    def _add_many(self, nid: int, items: list[tuple[SeriesKey, int]]) -> None:
        """Name new series of one node (ids ascending when they come from sids_for)."""
        top = max(sid for _, sid in items)
        self._grow(-1, top)
        series, nids = self.series, self._nid
        own = self._sid_of.setdefault(nid, {})
        by_metric = self.by_metric
        fallback = self.node_names[nid] if 0 <= nid < len(self.node_names) else None
        fallback = fallback or f"lost-node-{nid}"
        node_of: dict[int, str] = {}  # id(labels) -> node: a GPU's ~30 metrics share one tuple
        for key, sid in items:
            series[sid] = key
            nids[sid] = nid
            own[key] = sid
            metric, labels = key
            node = node_of.get(id(labels))
            if node is None:
                node = node_of[id(labels)] = _label(labels, "node") or fallback
            by_node = by_metric.get(metric)
            if by_node is None:
                by_node = by_metric[metric] = {}
            got = by_node.get(node)
            if got is None:
                got = by_node[node] = array("q")
            got.append(sid)

    def node_id(self, name: str, create: bool = True) -> int | None:
        nid = self.node_ids.get(name)
        if nid is None and create:
            if not isinstance(name, str) or not name:
                raise ValueError(f"node must be a non-empty string, got {name!r}")
            nid = len(self.node_names)
            self.log.append(_enc.encode(["N", nid, name]))  # before any WAL record uses the id
            self._apply(["N", nid, name])
        return nid

    def _normal(self, key: Any) -> SeriesKey:
        """`key` normalised, with interned labels; the caller's own tuple when it already is."""
        if type(key) is tuple and len(key) == 2:
            metric, labels = key
            if type(metric) is str and metric and type(labels) is tuple:
                try:
                    got = self._interned.get(labels)
                except TypeError:  # unhashable parts: the slow path says what is wrong
                    got = None
                if got is None and _is_normal(labels):
                    got = self._intern(labels)
                if got is not None:
                    return key if got is labels else (metric, got)
        metric, norm = normalize_key(key)
        return metric, self._intern(norm)

    def sids_for(self, nid: int, keys: Sequence[Any]) -> list[int]:
        """Ids of the given keys on a node, registering new series (one series.log write for all)."""
        out: list[int] = []
        own = self._sid_of.get(nid)
        if own is None:
            own = self._sid_of[nid] = {}
        get = own.get
        new: dict[SeriesKey, int] = {}
        interned: dict[int, tuple[tuple[str, str], ...]] = {}  # id(caller's labels) -> interned
        base = len(self.series)
        fresh = not own  # a node's first push: every key is new, no lookup can hit
        for key in keys:
            if fresh:
                sid = None
            else:
                try:
                    sid = get(key)
                except TypeError:  # unhashable (lists): normalise below
                    sid = None
            if sid is None:
                norm: SeriesKey | None = None
                if type(key) is tuple and len(key) == 2 and type(key[0]) is str and key[0]:
                    # the caller's label tuple, already checked for an earlier metric of this batch
                    lab = interned.get(id(key[1]))
                    if lab is not None:
                        norm = key if lab is key[1] else (key[0], lab)
                if norm is None:
                    norm = self._normal(key)
                    if type(key) is tuple and len(key) == 2:
                        interned[id(key[1])] = norm[1]
                sid = None if fresh else get(norm)
                if sid is None:
                    sid = new.setdefault(norm, base + len(new))
            out.append(sid)
        if new:
            # In series.log before any WAL record uses the ids: one write for a node's whole
            # first push (730 series), not one each, which made a join storm crawl.
            self.log.append_many([_enc.encode(["S", sid, nid, m, labels]) for (m, labels), sid in new.items()])
            self._add_many(nid, list(new.items()))
        return out

    def known(self, sid: int) -> bool:
        return 0 <= sid < len(self.series) and self.series[sid] is not None

    def node_name(self, nid: int) -> str | None:
        return self.node_names[nid] if 0 <= nid < len(self.node_names) else None

    def key(self, sid: int) -> SeriesKey:
        got = self.series[sid]
        assert got is not None, "key() of a series whose name was lost"
        return got

    def node_of(self, sid: int) -> int:
        return self._nid[sid] if 0 <= sid < len(self._nid) else -1

    def labels(self, sid: int) -> dict[str, str]:
        """Labels of a series as a dict, with __name__ and node (unless the key has one)."""
        got = self.series[sid]
        assert got is not None, "labels() of a series whose name was lost"
        metric, pairs = got
        out = {"__name__": metric, **dict(pairs)}
        if "node" not in out:
            nid = self._nid[sid]
            out["node"] = self.node_name(nid) or f"lost-node-{nid}"
        return out

    def match(self, metric: str | None, matchers: Sequence[Matcher]) -> list[int]:
        if metric is None:
            groups = [g for by_node in self.by_metric.values() for g in by_node.values()]
        else:
            by_node = self.by_metric.get(metric, {})
            node_eq = [m.value for m in matchers if m.name == "node" and m.op == "="]
            if node_eq:  # an exact node: only its series can match
                got = by_node.get(node_eq[0])
                groups = [got] if got is not None else []
            else:
                groups = list(by_node.values())
        cands = sorted(sid for g in groups for sid in g)
        if not matchers:
            return cands
        out = []
        series, nids = self.series, self._nid
        for sid in cands:
            key = series[sid]
            if key is None:
                continue
            metric_of, pairs = key
            ok = True
            for m in matchers:
                if m.name == "__name__":
                    value: str | None = metric_of
                else:
                    value = _label(pairs, m.name)
                    if value is None and m.name == "node":
                        value = self.node_name(nids[sid]) or f"lost-node-{nids[sid]}"
                if not m.accepts(value or ""):
                    ok = False
                    break
            if ok:
                out.append(sid)
        return out

    def flush(self, fsync: bool = True) -> None:
        self.log.flush(fsync)

    def close(self) -> None:
        self.log.close()

