"""Series index: node names and series keys <-> small integer ids, persisted in series.log.

Blocks and the WAL refer to series by id only; the mapping lives in an
append-only, checksummed ``series.log`` that is written *before* any WAL record
that uses a new id, so recovery never meets an id it cannot name.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec

from .types import Matcher, SeriesKey
from .wal import RecordLog

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


class SeriesIndex:
    def __init__(self, path: str) -> None:
        self.node_ids: dict[str, int] = {}
        self.node_names: list[str] = []
        self.series: list[tuple[int, SeriesKey]] = []  # sid -> (node id, key)
        self._sid_of: dict[tuple[int, Any], int] = {}
        self.by_metric: dict[str, list[int]] = {}
        self._labels: dict[int, dict[str, str]] = {}
        self.log = RecordLog(path)
        for rec in self.log.recovered:
            self._apply(_dec.decode(rec))
        self.log.recovered = []

    def _apply(self, rec: list[Any]) -> None:
        if rec[0] == "N":
            _, nid, name = rec
            assert nid == len(self.node_names), "series ids are dense"
            self.node_names.append(name)
            self.node_ids[name] = nid
        else:
            _, sid, nid, metric, labels = rec
            assert sid == len(self.series), "series ids are dense"
            key: SeriesKey = (metric, tuple((a, b) for a, b in labels))
            self.series.append((nid, key))
            self._sid_of[(nid, key)] = sid
            self.by_metric.setdefault(metric, []).append(sid)

    def node_id(self, name: str, create: bool = True) -> int | None:
        nid = self.node_ids.get(name)
        if nid is None and create:
            if not isinstance(name, str) or not name:
                raise ValueError(f"node must be a non-empty string, got {name!r}")
            nid = len(self.node_names)
            self.log.append(_enc.encode(["N", nid, name]))
            self._apply(["N", nid, name])
        return nid

    def sids_for(self, nid: int, keys: Sequence[Any]) -> list[int]:
        """Ids of the given keys on a node, registering new series."""
        out: list[int] = []
        sid_of = self._sid_of
        for key in keys:
            try:
                sid = sid_of.get((nid, key))
            except TypeError:  # unhashable (lists): normalise below
                sid = None
            if sid is None:
                norm = normalize_key(key)
                sid = sid_of.get((nid, norm))
                if sid is None:
                    sid = len(self.series)
                    metric, labels = norm
                    self.log.append(_enc.encode(["S", sid, nid, metric, [list(p) for p in labels]]))
                    self._apply(["S", sid, nid, metric, labels])
                try:
                    sid_of[(nid, key)] = sid  # alias for the caller's spelling
                except TypeError:
                    pass
            out.append(sid)
        return out

    def key(self, sid: int) -> SeriesKey:
        return self.series[sid][1]

    def node_of(self, sid: int) -> int:
        return self.series[sid][0]

    def labels(self, sid: int) -> dict[str, str]:
        """Labels of a series as a dict, with __name__ and node (unless the key has one)."""
        got = self._labels.get(sid)
        if got is None:
            nid, (metric, pairs) = self.series[sid]
            got = {"__name__": metric, **dict(pairs)}
            got.setdefault("node", self.node_names[nid])
            self._labels[sid] = got
        return dict(got)

    def match(self, metric: str | None, matchers: Sequence[Matcher]) -> list[int]:
        if metric is None:
            cands: list[int] = list(range(len(self.series)))
        else:
            cands = self.by_metric.get(metric, [])
        out = []
        for sid in cands:
            if not matchers:
                out.append(sid)
                continue
            labels = self._labels.get(sid) or self.labels(sid)
            if all(m.matches(labels) for m in matchers):
                out.append(sid)
        return out

    def flush(self, fsync: bool = True) -> None:
        self.log.flush(fsync)

    def close(self) -> None:
        self.log.close()
