"""Decode a compact push (gpufleet/compact.py): frames -> live snapshots + series values for the store.

Per push the hub decodes only the rest of the snapshot (no value keys), puts the values back
into its records (one dict.update per record, not per sample), and hands the store the series
keys built once per shape (the same tuple object each push, so the store finds its schema by
identity) with the values as one numpy array straight from the body's bytes.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import msgspec
import numpy as np

from ..compact import LENGTH, MAGIC, PACKED_SCOPES, UNKNOWN_SHAPE, Frame, ShapeRecord
from ..scopes import STORED_SCOPES, records
from ..series import SeriesKey, build_keys
from ..snapshot import NodeSnapshot
from .state import scrub_own_secrets

_frame_decoder = msgspec.json.Decoder(Frame)
SKEW = "clock_skew_seconds"  # agent scope: added by the hub from the push's send time


class CompactError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


# Shared by every node's shapes: the value key tuples (a handful: every CPU core has the same)
# and identity label tuples, so 1,000 nodes' shapes do not each hold their own copies.
_TUPLES: dict[tuple[str, ...], tuple[str, ...]] = {}


def _shared(t: tuple[str, ...]) -> tuple[str, ...]:
    return _TUPLES.setdefault(t, t) if len(_TUPLES) < 1_000_000 else t


@dataclass(slots=True)
class Shape:
    """One series shape of a node, as the agent sent it, and the store keys built from it."""

    records: list[ShapeRecord]
    n: int  # values a frame of this shape carries
    ids: dict[str, list[tuple[str, ...]]]  # per packed scope: its records' identity labels, in order
    names: list[tuple[str, ...]]  # per record (all scopes in order): its value keys
    built_for: tuple[object, ...] | None = None  # (labels, skew) the keys below were built for
    keys: tuple[SeriesKey, ...] = ()
    pick: np.ndarray | None = None  # positions of the values the hub stores (None: all, in order)
    skew_at: int = -1  # where the clock skew value goes among the stored values (-1: none)
    skew_insert: bool = False  # it is inserted there (the agent did not send that series)

    def store_keys(self, base: dict[str, str], skew: bool, shapes: Shapes) -> None:
        """Build keys, pick and skew_at for these labels, once (the next pushes reuse them)."""
        want = (tuple(base.items()), skew)
        if want == self.built_for:
            return
        # Only stored scopes' records make series; of their keys only those this hub's
        # catalogue stores (a newer agent may send more).
        recs: list[tuple[str, tuple[str, ...], tuple[str, ...]]] = []
        starts: list[int] = []
        has_skew = False
        lo = 0
        for scope, ids, names in self.records:
            start, lo = lo, lo + len(names)
            if scope in STORED_SCOPES:
                if skew and scope == "agent":
                    has_skew = SKEW in names
                    names = names if has_skew else names + (SKEW,)
                recs.append((scope, ids, names))
                starts.append(start)
        keys, picks = build_keys(recs, base)
        at: list[int] = []
        skew_at, pos = -1, 0
        for (scope, _, names), take, start in zip(recs, picks, starts):
            keep = set(names if take is None else take)
            for j, k in enumerate(names):
                if k in keep:
                    if skew and scope == "agent" and k == SKEW:
                        skew_at = pos
                        if not has_skew:
                            pos += 1
                            continue  # no value in the frame: inserted
                    at.append(start + j)
                    pos += 1
        # The node's other shapes hold mostly the same keys: share those objects (built here,
        # rarely, rather than kept per node).
        known = {k: k for other in shapes.by_id.values() if other is not self for k in other.keys}
        self.keys = tuple([known.get(k, k) for k in keys]) if known else keys
        self.pick = None if at == list(range(self.n)) else np.array(at, dtype=np.intp)
        self.skew_at, self.skew_insert = skew_at, skew and not has_skew
        self.built_for = want


@dataclass(slots=True)
class Shapes:
    """A node's recent shapes by id; a few, as a node's shape flips while users come and go."""

    by_id: dict[str, Shape] = field(default_factory=dict)
    KEEP = 8

    def get(self, sid: str) -> Shape | None:
        s = self.by_id.pop(sid, None)
        if s is not None:
            self.by_id[sid] = s  # most recent last
        return s

    def put(self, sid: str, shape: Shape) -> None:
        self.by_id.pop(sid, None)
        self.by_id[sid] = shape
        while len(self.by_id) > self.KEEP:
            del self.by_id[next(iter(self.by_id))]


@dataclass(slots=True)
class Decoded:
    snapshot: NodeSnapshot  # the whole snapshot, values put back
    shape: Shape
    values: np.ndarray  # float64, in shape order

    def series(self, base: dict[str, str], skew: float | None,
               shapes: Shapes) -> tuple[tuple[SeriesKey, ...], np.ndarray]:
        """What the store takes: keys (the same tuple each push of this shape) and values."""
        shape = self.shape
        shape.store_keys(base, skew is not None, shapes)
        values = self.values if shape.pick is None else self.values[shape.pick]
        if skew is not None and shape.skew_at >= 0:
            if shape.skew_insert:
                values = np.insert(values, shape.skew_at, skew)
            else:  # the agent sent the series itself: the hub's measure wins, as in a JSON push
                values = values.copy()
                values[shape.skew_at] = skew
        return shape.keys, values


def _shape(series: list[tuple[str, list[str], list[str]]], i: int) -> Shape:
    recs: list[ShapeRecord] = []
    ids: dict[str, list[tuple[str, ...]]] = {scope: [] for scope in PACKED_SCOPES}
    names_of: list[tuple[str, ...]] = []
    n = 0
    for j, (scope, rec_ids, names) in enumerate(series):
        if scope not in ids:
            raise CompactError(400, f"frames[{i}].series[{j}]: scope {scope!r} does not travel packed")
        if len(set(names)) != len(names):
            raise CompactError(400, f"frames[{i}].series[{j}]: a value key appears twice")
        t_ids, t_names = _shared(tuple(rec_ids)), _shared(tuple([sys.intern(k) for k in names]))
        recs.append((sys.intern(scope), t_ids, t_names))
        ids[scope].append(t_ids)
        names_of.append(t_names)
        n += len(names)
    return Shape(recs, n, ids, names_of)


def decode(body: bytes, shapes: Shapes, check: Callable[[int, NodeSnapshot], None]) -> list[Decoded]:
    """Every frame of a compact body, validated whole; `check(i, snapshot)` raises for a bad one.

    Shapes a frame carries are remembered even when a later frame is refused: a shape is only
    a description, and the agent resends the batch.
    """
    if not body.startswith(MAGIC):
        raise CompactError(400, f"a compact push body starts with {MAGIC.decode()}: this one does not "
                                f"(send JSON to /api/v1/push instead)")
    out: list[Decoded] = []
    pos, end = len(MAGIC), len(body)
    i = 0
    while pos < end:
        if pos + LENGTH.size > end:
            raise CompactError(400, f"frames[{i}] is cut short: the body ends inside its length")
        (hlen,) = LENGTH.unpack_from(body, pos)
        pos += LENGTH.size
        if pos + hlen + LENGTH.size > end:
            raise CompactError(400, f"frames[{i}] is cut short: {hlen} bytes of JSON announced, "
                                    f"{max(0, end - pos)} left in the body")
        head = scrub_own_secrets(body[pos:pos + hlen])
        pos += hlen
        (n,) = LENGTH.unpack_from(body, pos)
        pos += LENGTH.size
        if pos + 8 * n > end:
            raise CompactError(400, f"frames[{i}] is cut short: {n} values announced, "
                                    f"{(end - pos) // 8} in the rest of the body")
        values = np.frombuffer(body, dtype="<f8", count=n, offset=pos)
        pos += 8 * n
        try:
            frame = _frame_decoder.decode(head)
        except msgspec.ValidationError as e:
            raise CompactError(400, f"invalid frame: {str(e).replace('`$', f'`$.frames[{i}]')}") from None
        except msgspec.DecodeError as e:
            raise CompactError(400, f"frames[{i}] is not valid JSON: {e}") from None
        except RecursionError:
            raise CompactError(400, f"frames[{i}] is JSON nested too deeply") from None
        snap = frame.snapshot
        check(i, snap)
        if frame.series is not None:
            shape = _shape(frame.series, i)
            shapes.put(frame.shape, shape)
        else:
            got = shapes.get(frame.shape)
            if got is None:
                raise CompactError(409, f"{UNKNOWN_SHAPE}: frames[{i}] names series shape {frame.shape!r}, which "
                                        "this hub does not know (restarted?): send the batch again with its shapes")
            shape = got
        if n != shape.n:
            raise CompactError(400, f"frames[{i}] has {n} values but its shape {frame.shape!r} has {shape.n}")
        if not np.isfinite(values).all():
            bad = int(np.argmin(np.isfinite(values)))
            raise CompactError(400, f"frames[{i}]: value {bad} is {values[bad]!r}: values must be finite numbers")
        _fill(snap, shape, values, i)
        out.append(Decoded(snap, shape, values))
        i += 1
    if not out:
        raise CompactError(400, "the compact push holds no frame")
    return out


def _fill(snap: NodeSnapshot, shape: Shape, values: np.ndarray, i: int) -> None:
    """Put the values back into the snapshot's records (live views read them there)."""
    got: list[Mapping[str, float]] = []
    for scope in PACKED_SCOPES:
        recs = list(records(snap, scope))
        want = shape.ids[scope]
        if len(recs) != len(want) or [r[0] for r in recs] != want:
            raise CompactError(400, f"frames[{i}]: the snapshot's {scope} records do not match its shape "
                                    f"({_first_difference([r[0] for r in recs], want)}): send the shape again")
        got += [r[1] for r in recs]
    vl = values.tolist()
    lo = 0
    for vals, names in zip(got, shape.names):
        if names:
            hi = lo + len(names)
            if type(vals) is dict:  # computed records (collector status, containers per state) keep their fields
                vals.update(zip(names, vl[lo:hi]))
            lo = hi


def _first_difference(have: list[tuple[str, ...]], want: list[tuple[str, ...]]) -> str:
    for j, (a, b) in enumerate(zip(have, want)):
        if a != b:
            return f"record {j} is {a!r}, the shape says {b!r}"
    return f"{len(have)} records, the shape has {len(want)}"
