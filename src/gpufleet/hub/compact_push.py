"""Decode a compact push (gpufleet/compact.py): frames -> live snapshots + series values for the store.

Per push the hub decodes only the rest of the snapshot (no value keys), puts the values back
into the records its readers need at once (one dict.update per record, not per sample), and hands
the store the series keys built once per shape (the same SeriesList each push, so the store
finds its schema by identity) with the values as one numpy array straight from the body's bytes.

The per-CPU records and GPU links (~90% of a big node's records) are read by no one on the hot
path unless an alert rule asks for them (Fleet.keep): their values are put back only when the
whole snapshot is asked for (Packed.whole(): a node page, the full JSON, the latest's save for restarts).
"""

from __future__ import annotations

import sys
from array import array
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from itertools import repeat
from operator import attrgetter
from typing import Any

import msgspec
import numpy as np

from ..compact import LENGTH, MAGIC, PACKED_SCOPES, UNKNOWN_SHAPE, Frame, ShapeRecord
from ..scopes import STORED_SCOPES, records
from ..series import build_series, shared
from ..snapshot import CpuCore, NodeSnapshot
from ..store.serieslist import SeriesList
from .state import scrub_own_secrets

_frame_decoder = msgspec.json.Decoder(Frame)


class _RawFrame(msgspec.Struct, kw_only=True):
    """A frame without its shape's description (skipped by the decoder, a field it does not
    have), its snapshot the bytes that came."""

    shape: str
    snapshot: msgspec.Raw


_raw_frame_decoder = msgspec.json.Decoder(_RawFrame)


def _with_raw_cpus() -> type[msgspec.Struct]:
    """NodeSnapshot with its `cpus` left as JSON bytes (made from its fields: always in step)."""
    fields: list[tuple[str, Any] | tuple[str, Any, Any]] = []
    for f in msgspec.structs.fields(NodeSnapshot):
        if f.name == "cpus":
            fields.append((f.name, msgspec.Raw, msgspec.Raw(b"[]")))
        elif f.default is not msgspec.NODEFAULT:
            fields.append((f.name, f.type, f.default))
        elif f.default_factory is not msgspec.NODEFAULT:
            fields.append((f.name, f.type, msgspec.field(default_factory=f.default_factory)))
        else:
            fields.append((f.name, f.type))
    return msgspec.defstruct("_HotSnapshot", fields, kw_only=True, gc=False)


_HotSnapshot = _with_raw_cpus()
_SNAPSHOT_FIELDS = tuple(f.name for f in msgspec.structs.fields(NodeSnapshot))
_snapshot_fields = attrgetter(*_SNAPSHOT_FIELDS)


class _HotFrame(msgspec.Struct, kw_only=True):
    """Frame as the ingest path decodes it."""

    shape: str
    snapshot: _HotSnapshot  # type: ignore[valid-type]  # (NodeSnapshot but for `cpus`)
    series: list[tuple[str, list[str], list[str]]] | None = None


_hot_frame_decoder = msgspec.json.Decoder(_HotFrame)
_cpus_decoder = msgspec.json.Decoder(list[CpuCore])


def _as_snapshot(hot: Any, cpus: list[CpuCore]) -> NodeSnapshot:
    kw = dict(zip(_SNAPSHOT_FIELDS, _snapshot_fields(hot)))
    kw["cpus"] = cpus
    return NodeSnapshot(**kw)
_raw_frame_encoder = msgspec.json.Encoder()
SKEW = "clock_skew_seconds"  # agent scope: added by the hub from the push's send time


class CompactError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


# Shared by every node's shapes: the value key tuples (a handful: every CPU core has the same)
# and identity label tuples, so 1,000 nodes' shapes do not each hold their own copies.
_TUPLES: dict[tuple[str, ...], tuple[str, ...]] = {}


# Value key tuples already checked (no key twice) and interned: a few hundred kinds of record.
_NAMES: dict[tuple[str, ...], tuple[str, ...]] = {}


def _shared(t: tuple[str, ...]) -> tuple[str, ...]:
    return _TUPLES.setdefault(t, t) if len(_TUPLES) < 1_000_000 else t


# A shape's parts by value: nodes of the same hardware and agent send the same records in the
# same order and store the same values of their frames (a pick follows the records' value keys,
# not their labels), so a fleet holds a few of each rather than one per node and shape (the
# record lists, starts, picks and core numbers: ~20 KB a shape of a 224-core node). Read only once made.
# (series.shared keeps at most 1,000 of each kind: a fleet churning shapes does not grow them without end)
_IDS: dict[tuple[tuple[str, ...], ...], list[tuple[str, ...]]] = {}
_RECORD_NAMES: dict[tuple[tuple[str, ...], ...], list[tuple[str, ...]]] = {}
_STARTS: dict[bytes, array[int]] = {}
_PICKS: dict[bytes, np.ndarray] = {}
_CPUS: dict[tuple[int, ...], list[int]] = {}
_LINKS: dict[tuple[tuple[int, ...], ...], list[list[int]]] = {}
def _shared_pick(pick: np.ndarray) -> np.ndarray:
    pick.setflags(write=False)  # perhaps shared: read only
    return shared(_PICKS, pick.tobytes(), pick)


# The cores' JSON by its bytes: every node with as many cores sends the same (~2.6 KB for 224).
_CPU_JSON: dict[bytes, bytes] = {}


def _shared_cpu_json(data: bytes) -> bytes:
    return shared(_CPU_JSON, data, data)


_NO_SERIES = SeriesList((), array("i"), ())


@dataclass(slots=True)
class Shape:
    """One series shape of a node, as the agent sent it, and the store keys built from it.

    Its records are kept once, as the identity labels per scope and the value keys per record
    (records() lays them out again when keys are built, rarely): a node holds ~600 records a
    shape and up to KEEP shapes, so no tuple per record and no int object per start.
    """

    n: int  # values a frame of this shape carries
    ids: dict[str, list[tuple[str, ...]]]  # per packed scope: its records' identity labels, in order
    names: list[tuple[str, ...]]  # per record (all scopes in PACKED_SCOPES order): its value keys
    starts: array[int]  # per record: where its values begin (int32: a value count fits)
    built_for: tuple[object, ...] | None = None  # (labels, skew) the keys below were built for
    keys: SeriesList = field(default_factory=lambda: _NO_SERIES)
    pick: np.ndarray | None = None  # positions of the values the hub stores (None: all, in order)
    skew_at: int = -1  # where the clock skew value goes among the stored values (-1: none)
    skew_insert: bool = False  # it is inserted there (the agent did not send that series)
    # The records of `defer`red scopes are only checked: against these, made once, when they can
    # be (see _numbers), that is a compare of ints rather than of label tuples built per record.
    cpus: list[int] | None = None
    links: list[list[int]] | None = None
    numbered: bool = False
    # The JSON of the frames' `cpus` (the cores without their packed values: the same bytes
    # every push) once it was found to match the shape: later frames are checked by a compare
    # of bytes, and their 224 cores decoded only when a reader on the ingest path wants them.
    cpu_json: bytes | None = None
    _runs: dict[str, list[tuple[int, int, tuple[str, ...], int]]] | None = None

    def runs(self) -> dict[str, list[tuple[int, int, tuple[str, ...], int]]]:
        """Per scope, its records in runs with the same value keys (all CPU cores are one run):
        (first record, end, the keys, where the run's values begin); keyless records left out."""
        if self._runs is None:
            out: dict[str, list[tuple[int, int, tuple[str, ...], int]]] = {}
            j = 0
            for scope in PACKED_SCOPES:
                scope_runs: list[tuple[int, int, tuple[str, ...], int]] = []
                count = len(self.ids[scope])
                a = 0
                while a < count:
                    names = self.names[j + a]
                    b = a + 1
                    while b < count and self.names[j + b] == names:
                        b += 1
                    if names:
                        scope_runs.append((a, b, names, self.starts[j + a]))
                    a = b
                out[scope] = scope_runs
                j += count
            self._runs = out
        return self._runs

    def store_keys(self, base: dict[str, str], skew: bool) -> None:
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
        for scope, ids, names in self.records():
            start, lo = lo, lo + len(names)
            if scope in STORED_SCOPES:
                if skew and scope == "agent":
                    has_skew = SKEW in names
                    names = names if has_skew else names + (SKEW,)
                recs.append((scope, ids, names))
                starts.append(start)
        keys, picks = build_series(recs, base)  # label sets shared with the node's other shapes and the fleet
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
        self.keys = keys
        # intp, not int32: half the bytes (~8 MiB at 1,000 nodes) but +1.7 us a push to convert
        self.pick = None if at == list(range(self.n)) else _shared_pick(np.array(at, dtype=np.intp))
        self.skew_at, self.skew_insert = skew_at, skew and not has_skew
        self.built_for = want

    def records(self) -> Iterator[ShapeRecord]:
        """(scope, identity labels, value keys) of each record, in the order the agent sent them."""
        names = iter(self.names)
        for scope in PACKED_SCOPES:
            for ids in self.ids[scope]:
                yield scope, ids, next(names)


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
    # The snapshot, values put back into every record but those of the `deferred` scopes (which
    # have the records, without the values that travelled packed): whole() has them all.
    snapshot: NodeSnapshot
    shape: Shape
    values: np.ndarray  # float64, in shape order
    head: bytes  # the frame's JSON (own secrets scrubbed): with the values, the whole snapshot
    deferred: frozenset[str]

    def packed(self, skew: float | None) -> Packed:
        """What the fleet keeps of the node's latest snapshot: ~1/3 of its JSON's bytes."""
        return Packed(self.head, self.values.copy(), self.shape, skew)  # copied: not the whole body

    def series(self, base: dict[str, str], skew: float | None) -> tuple[SeriesList, np.ndarray]:
        """What the store takes: keys (the same SeriesList each push of this shape) and values."""
        shape = self.shape
        shape.store_keys(base, skew is not None)
        values = self.values if shape.pick is None else self.values[shape.pick]
        if skew is not None and shape.skew_at >= 0:
            if shape.skew_insert:
                values = np.insert(values, shape.skew_at, skew)
            else:  # the agent sent the series itself: the hub's measure wins, as in a JSON push
                values = values.copy()
                values[shape.skew_at] = skew
        return shape.keys, values


@dataclass(frozen=True, slots=True)
class Packed:
    """A compact-pushed snapshot as it arrived: the frame's JSON, its values and their shape.

    whole() is the snapshot a JSON push of it gives (values in every record, the hub's clock
    skew in `agent`), decoded afresh each call: callers cache it (Fleet, by seq).
    """

    head: bytes
    values: np.ndarray
    shape: Shape
    skew: float | None  # the hub's measure at the push (Hub.ingest_compact), as put into `agent`

    def whole(self) -> NodeSnapshot:
        snap = _frame_decoder.decode(self.head).snapshot
        _fill(snap, self.shape, self.values, 0)  # checked at the push: cannot fail
        if self.skew is not None:
            snap.agent[SKEW] = self.skew
        return snap


def _shape(series: list[tuple[str, list[str], list[str]]], i: int) -> Shape:
    ids: dict[str, list[tuple[str, ...]]] = {scope: [] for scope in PACKED_SCOPES}
    order = {scope: k for k, scope in enumerate(PACKED_SCOPES)}
    names_of: list[tuple[str, ...]] = []
    starts = array("i")
    n = at = 0
    for j, (scope, rec_ids, names) in enumerate(series):
        k = order.get(scope)
        if k is None:
            raise CompactError(400, f"frames[{i}].series[{j}]: scope {scope!r} does not travel packed")
        if k < at:  # values are found by record number in this order (_fill, records())
            raise CompactError(400, f"frames[{i}].series[{j}]: scope {scope!r} comes after "
                                    f"{PACKED_SCOPES[at]!r}: a shape lists its records scope by scope, "
                                    f"in the order {', '.join(PACKED_SCOPES)}")
        at = k
        t_names = _NAMES.get(tuple(names))  # most records' keys are another's (every core's are alike)
        if t_names is None:
            if len(set(names)) != len(names):
                raise CompactError(400, f"frames[{i}].series[{j}]: a value key appears twice")
            t_names = tuple([sys.intern(k) for k in names])
            if len(_NAMES) < 100_000:
                t_names = _NAMES.setdefault(t_names, t_names)
        ids[scope].append(_shared(tuple(rec_ids)))
        names_of.append(t_names)
        starts.append(n)
        n += len(names)
    return Shape(n, {scope: shared(_IDS, tuple(got), got) for scope, got in ids.items()},
                 shared(_RECORD_NAMES, tuple(names_of), names_of), shared(_STARTS, starts.tobytes(), starts))


def decode(body: bytes, shapes: Shapes, check: Callable[[int, NodeSnapshot], None],
           defer: frozenset[str] = frozenset()) -> list[Decoded]:
    """Every frame of a compact body, validated whole; `check(i, snapshot)` raises for a bad one.

    The values of `defer`'s scopes (of PACKED_SCOPES) are not put back into the snapshots (see
    Decoded): their records are checked against the shape all the same.

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
            frame = _hot_frame_decoder.decode(head)
        except msgspec.ValidationError as e:
            raise CompactError(400, f"invalid frame: {str(e).replace('`$', f'`$.frames[{i}]')}") from None
        except msgspec.DecodeError as e:
            raise CompactError(400, f"frames[{i}] is not valid JSON: {e}") from None
        except RecursionError:
            raise CompactError(400, f"frames[{i}] is JSON nested too deeply") from None
        hot: Any = frame.snapshot
        snap = _as_snapshot(hot, [])
        check(i, snap)
        if frame.series is not None:
            shape = _shape(frame.series, i)
            shapes.put(frame.shape, shape)
            # Kept without the shape's description (~70 KB of labels and keys for a big node;
            # Shape holds it decoded): the node's first push, held until its next one.
            raw = _raw_frame_decoder.decode(head)
            head = _raw_frame_encoder.encode(_RawFrame(shape=raw.shape, snapshot=raw.snapshot))
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
        cpu_json = hot.cpus
        if "cpu" in defer and shape.cpu_json is not None and memoryview(cpu_json) == shape.cpu_json:
            _fill(snap, shape, values, i, defer, _CPU)  # the very cores that matched before
        else:
            snap.cpus = _cpus(cpu_json, i)
            _fill(snap, shape, values, i, defer)
            shape.cpu_json = _shared_cpu_json(bytes(cpu_json))  # they match the shape
            if "cpu" in defer:
                snap.cpus = []  # no reader on the ingest path wants them (Packed.whole() has them)
        out.append(Decoded(snap, shape, values, head, defer))
        i += 1
    if not out:
        raise CompactError(400, "the compact push holds no frame")
    return out


_CPU = frozenset({"cpu"})


def _cpus(data: msgspec.Raw, i: int) -> list[CpuCore]:
    try:
        return _cpus_decoder.decode(data)
    except msgspec.ValidationError as e:
        raise CompactError(400, f"invalid frame: {str(e).replace('`$', f'`$.frames[{i}].snapshot.cpus')}") from None


def _fill(snap: NodeSnapshot, shape: Shape, values: np.ndarray, i: int,
          defer: frozenset[str] = frozenset(), checked: frozenset[str] = frozenset()) -> None:
    """Put the values back into the snapshot's records (live views read them there), but for
    `defer`'s scopes, whose records are only checked, unless they are `checked` already (and
    absent from `snap`)."""
    got: list[tuple[str, list[Mapping[str, float]]]] = []  # per scope filled: its records' values, in order
    n = 0
    for scope in PACKED_SCOPES:
        want = shape.ids[scope]
        if scope in checked:
            continue
        by_number = _BY_NUMBER.get(scope)
        if by_number is not None and _same_numbers(snap, scope, shape):
            if scope not in defer:
                got.append((scope, by_number(snap)))
                n += len(want)
            continue
        recs = list(records(snap, scope))
        if len(recs) != len(want) or [r[0] for r in recs] != want:
            raise CompactError(400, f"frames[{i}]: the snapshot's {scope} records do not match its shape "
                                    f"({_first_difference([r[0] for r in recs], want)}): send the shape again")
        if scope not in defer:
            got.append((scope, [r[1] for r in recs]))
            n += len(recs)
    # All values made floats at once when most records are filled (a whole snapshot), else
    # only those of the records filled (the rest deferred).
    vl = values.tolist() if 4 * n >= len(shape.names) else None
    runs = shape.runs()
    for scope, vals_of in got:
        for a, b, names, lo in runs[scope]:
            k = len(names)
            part = vals_of[a:b]
            src = vl[lo:lo + k * (b - a)] if vl is not None else values[lo:lo + k * (b - a)].tolist()
            if set(map(type, part)) == {dict}:
                # A run of records with the same keys (every CPU core, every link): one C-level pass.
                _consume(map(dict.update, part, map(zip, repeat(names), zip(*[iter(src)] * k))))
            else:  # computed records (collector status, containers per state) keep their fields
                for m, vals in enumerate(part):
                    if type(vals) is dict:
                        vals.update(zip(names, src[m * k:(m + 1) * k]))


_consume: Callable[[Iterable[object]], None] = deque[object](maxlen=0).extend  # runs an iterator to its end, keeping nothing


# The values of the records compared by number (_same_numbers), in records() order, without
# building their label tuples (a whole snapshot's 224 cores and 144 links: most of its records).
_BY_NUMBER: dict[str, Callable[[NodeSnapshot], list[Mapping[str, float]]]] = {
    "cpu": lambda snap: [c.values for c in snap.cpus],
    "gpu_link": lambda snap: [x.values for g in snap.gpus for x in g.links],
}


def _same_numbers(snap: NodeSnapshot, scope: str, shape: Shape) -> bool:
    """True when the snapshot's CPU cores (or GPU links) are the shape's, told by their numbers
    alone; False when that cannot tell (the caller compares their label tuples then)."""
    if not shape.numbered:
        cpus, links = _numbers(shape)
        shape.cpus = cpus if cpus is None else shared(_CPUS, tuple(cpus), cpus)
        shape.links = links if links is None else shared(_LINKS, tuple(map(tuple, links)), links)
        shape.numbered = True
    if scope == "cpu":
        return shape.cpus is not None and [c.cpu for c in snap.cpus] == shape.cpus
    if scope == "gpu_link":
        # The GPUs' own labels were compared with the shape's (the gpu scope: never deferred).
        return shape.links is not None and [[x.link for x in g.links] for g in snap.gpus] == shape.links
    return False


def _numbers(shape: Shape) -> tuple[list[int] | None, list[list[int]] | None]:
    """The shape's CPU core numbers and each GPU's link numbers, where their labels are exactly
    those numbers written out (so equal numbers mean equal labels); None where they are not."""
    cpu_ids = shape.ids["cpu"]
    cpus = _as_numbers([ids[0] for ids in cpu_ids] if all(len(ids) == 1 for ids in cpu_ids) else None)
    # Links in GPU order, each GPU's a run of records whose other labels are that GPU's.
    links: list[list[int]] = []
    link_ids = shape.ids["gpu_link"]
    at = 0
    for gpu in shape.ids["gpu"]:
        end = at
        while end < len(link_ids) and link_ids[end][:-1] == gpu:
            end += 1
        mine = _as_numbers([ids[-1] for ids in link_ids[at:end]])
        if mine is None:
            return cpus, None
        links.append(mine)
        at = end
    return cpus, (links if at == len(link_ids) else None)


def _as_numbers(labels: list[str] | None) -> list[int] | None:
    """`labels` as ints when each is exactly its int written out ("7", not "07", " 7" or "+7")."""
    if labels is None:
        return None
    try:
        out = [int(x) for x in labels]
    except ValueError:
        return None
    return out if [str(k) for k in out] == labels else None


def _first_difference(have: list[tuple[str, ...]], want: list[tuple[str, ...]]) -> str:
    for j, (a, b) in enumerate(zip(have, want)):
        if a != b:
            return f"record {j} is {a!r}, the shape says {b!r}"
    return f"{len(have)} records, the shape has {len(want)}"
