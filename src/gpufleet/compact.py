"""The compact push: a snapshot's stored series values as packed float64, their shape sent once.

A JSON push spells every value's key in full (`"utilization_percent":42.0`, ~986 of them a
push), and the hub spends most of its ingest time decoding them and building series keys
from them again. Between two pushes of a node only the numbers change, so the agent sends:

- the series shape once: for each record of each stored scope (scopes.py), in the order
  `records()` yields them, its identity labels and the value keys stored as history;
- then, each push, the shape's id, the snapshot without those values (the "rest": node,
  timestamp, labels, host, processes, allocations, ... and the values the hub does not keep as
  series), and the values themselves as little-endian float64 in shape order.

The hub puts the values back into the rest's records (the live snapshot is the same as a JSON
push gives) and hands the store the series keys it built once per shape. Wire format:
docs/agent.md, "The compact push". This module is imported by the agent: stdlib only (no numpy).
"""

from __future__ import annotations

import hashlib
import struct
from array import array

import msgspec

from .scopes import STORED_SCOPES, records
from .snapshot import NodeSnapshot

MAGIC = b"GFC1"  # a compact push body starts with these 4 bytes (format version 1)
CONTENT_TYPE = "application/x-gpufleet-compact"
PATH = "/api/v1/push/compact"
UNKNOWN_SHAPE = "unknown_shape"  # the hub's 409 answer names this: the agent resends its shapes
LENGTH = struct.Struct("<I")

# One record of a shape: scope, identity label values, the stored value keys in order.
ShapeRecord = tuple[str, tuple[str, ...], tuple[str, ...]]


class Frame(msgspec.Struct, kw_only=True, omit_defaults=True):
    """The JSON part of one snapshot in a compact body."""

    shape: str  # the shape's id (hex): what the values are, in order
    snapshot: NodeSnapshot  # the rest: the snapshot without its stored series values
    # the shape itself: sent when the hub may not know it (first use, or after a 409)
    series: list[tuple[str, list[str], list[str]]] | None = None


_frame_encoder = msgspec.json.Encoder()


# The scopes whose values travel packed: those kept as history, and NVLink readings (live only,
# but 18 links x 9 readings x 8 GPUs of them would be most of the rest's JSON). The hub stores
# the stored scopes' values and puts all of them back into the snapshot.
PACKED_SCOPES: tuple[str, ...] = (*STORED_SCOPES, "gpu_link")


def _value_keys() -> dict[str, frozenset[str]]:
    from .catalogue import BY_SCOPE

    return {scope: frozenset(m.key for m in BY_SCOPE[scope] if m.kind != "info") for scope in PACKED_SCOPES}


_KEYS = _value_keys()


def split(snap: NodeSnapshot) -> tuple[list[ShapeRecord], list[float]]:
    """The snapshot's shape and its stored values in shape order; removes those values from `snap`.

    Every record is listed, even one with no stored value, so the hub can walk the rest's
    records alongside the shape. Records whose values are computed from other fields (collector
    status, containers per state) are popped from a throwaway mapping: their fields stay.
    """
    shape: list[ShapeRecord] = []
    values: list[float] = []
    for scope in PACKED_SCOPES:
        stored = _KEYS[scope]
        for ids, vals, _ in list(records(snap, scope)):
            names = tuple([k for k in vals if k in stored])
            values += [vals[k] for k in names]
            shape.append((scope, ids, names))
            if names and isinstance(vals, dict):
                for k in names:
                    del vals[k]
    return shape, values


def shape_id(shape: list[ShapeRecord]) -> str:
    return hashlib.sha256(_frame_encoder.encode(shape)).hexdigest()[:24]


def encode_frame(shape_key: str, rest: NodeSnapshot, values: list[float],
                 shape: list[ShapeRecord] | None) -> bytes:
    """One snapshot's frame: u32 length + JSON (Frame), u32 count + count float64 (little-endian)."""
    frame = Frame(shape=shape_key, snapshot=rest,
                  series=None if shape is None else [(s, list(ids), list(names)) for s, ids, names in shape])
    head = _frame_encoder.encode(frame)
    packed = array("d", values)
    if struct.pack("=d", 1.0) != struct.pack("<d", 1.0):  # a big-endian agent: the wire is little-endian
        packed.byteswap()
    return LENGTH.pack(len(head)) + head + LENGTH.pack(len(values)) + packed.tobytes()
