"""The hub's live view of the fleet: each node's latest snapshot and its up/stale/down/moved status.

Status is derived from when data last arrived: stale after 3 of the node's intervals
without data, down after `down_after` seconds (or at once when a pull scrape fails).
The interval is learned from the gap between a node's consecutive snapshots.
A silent node that another hub sharing this hub's history hears (elsewhere.py) is "moved".
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeVar

import msgspec

from ..snapshot import NodeSnapshot, from_json, to_json
from .sd import sd_problem

if TYPE_CHECKING:
    from .compact_push import Packed

DEFAULT_INTERVAL = 5.0
WHOLE_CACHE = 16  # whole decoded snapshots kept (~200 KB each for an 8-GPU, 224-CPU node)
T = TypeVar("T")
# Record scopes (scopes.py) a lean snapshot has none of: a reader of those asks Fleet.snapshot().
LEAN_LACKS = frozenset({"cpu", "gpu_link"})


@dataclass(slots=True)
class NodeView:
    name: str
    labels: dict[str, str] = field(default_factory=dict)
    source: str = "push"
    agent_url: str | None = None
    advertised: bool = False  # agent_url came from the agent's --advertise
    # The latest snapshot, lean (see lean()): without the per-CPU records, the host process table
    # and the GPU links. What readers of the whole fleet use (overview, users, capacity, alerts);
    # Fleet.snapshot() decodes the whole one from `latest` when needed.
    snapshot: NodeSnapshot | None = None
    # The one full copy of the latest snapshot: its JSON as pushed (or encoded once), or for a
    # compact push what arrived (Packed: ~1/3 the bytes), made into JSON only when asked for.
    # One attribute, so a reader never sees half of a switch between the two.
    latest: bytes | Packed | None = None
    # A Packed one's JSON once asked for, with the seq it was made at; dropped at the next push,
    # so it costs memory only while someone reads it (and then no more than the JSON push's).
    made: tuple[int, bytes] | None = None
    seq: int = 0  # counts snapshots: a reader's cache of something derived from one is keyed by it
    kept: frozenset[str] = frozenset()  # scopes of LEAN_LACKS the lean snapshot keeps all the same
    host_processes: bool = False  # `latest` holds a host process table (the summary leaves it out)
    last_seen: float | None = None  # hub clock: when data last arrived
    interval: float = DEFAULT_INTERVAL
    status: str = "down"
    since: float = 0.0
    error: str = ""
    clock_skew: float | None = None  # the node's clock minus the hub's at its last push (seconds)
    clock_skew_at: float | None = None

    @property
    def json(self) -> bytes | None:
        """The latest snapshot's JSON when the fleet holds it as JSON (None for a compact push:
        Fleet.full_json makes it)."""
        data = self.latest
        return data if isinstance(data, bytes) else None

    def describe(self) -> dict[str, object]:
        snap = self.snapshot
        return {
            "name": self.name, "status": self.status, "since": self.since, "last_seen": self.last_seen,
            "labels": self.labels, "source": self.source, "interval": self.interval,
            "timestamp": snap.timestamp if snap else None,
            "gpus": len(snap.gpus) if snap else 0, "backend": snap.backend if snap else "",
            "error": self.error, "clock_skew_seconds": self.clock_skew,
            # where Prometheus scrapes it, or why service discovery leaves it out (UI, `gpufleet status`)
            "agent_url": self.agent_url, "scrape_problem": sd_problem(self),
        }


class Fleet:
    def __init__(self, down_after: float = 120.0) -> None:
        self.nodes: dict[str, NodeView] = {}
        self.down_after = down_after
        self._lock = threading.Lock()
        # Whole snapshots decoded on demand (a node page, a rule on CPU cores or links): the few
        # most recent, keyed by node, each with the seq it was decoded at.
        self._whole: OrderedDict[str, tuple[int, NodeSnapshot]] = OrderedDict()
        self._whole_lock = threading.Lock()
        # Scopes of LEAN_LACKS that lean snapshots keep: alert rules on them (alerts/service.py).
        self.keep: frozenset[str] = frozenset()

    def view(self, name: str) -> NodeView:
        v = self.nodes.get(name)
        if v is None:
            with self._lock:
                v = self.nodes.setdefault(name, NodeView(name))
        return v

    def update(self, snap: NodeSnapshot, now: float, raw: bytes | Packed | None = None,
               lacking: frozenset[str] = frozenset()) -> None:
        """Record a newly stored snapshot (the newest one of a batch); `raw` is its JSON if known,
        or what a compact push brought of it. `lacking`: scopes of LEAN_LACKS whose records in
        `snap` are without their values (a compact push puts those back only in Packed.whole()).

        Keeps `raw` (the JSON encoded here when not given) and the lean snapshot; `snap` itself
        is not kept, so its per-CPU records and links are freed once ingest is done with them.
        """
        v = self.view(snap.node)
        prev = v.snapshot
        if prev is not None and snap.timestamp <= prev.timestamp:
            return
        if prev is not None:
            gap = snap.timestamp - prev.timestamp
            if 0.2 <= gap <= 600:
                # Smooth, so one late push does not flip the node to stale.
                v.interval = 0.8 * v.interval + 0.2 * gap
        self._set(v, snap, raw if raw is not None else to_json(snap), lacking)
        v.last_seen = now
        v.error = ""
        if v.status != "up":
            v.status, v.since = "up", now

    def _set(self, v: NodeView, snap: NodeSnapshot, data: bytes | Packed,
             lacking: frozenset[str] = frozenset()) -> None:
        keep = self.keep - lacking  # a rule that came after the push was decoded: Fleet.snapshot() then
        v.host_processes = bool(snap.processes)
        # seq last: a reader takes seq first, so what it derives is never cached under a newer seq
        v.snapshot, v.latest, v.kept, v.seq = lean(snap, keep), data, keep, v.seq + 1
        v.made = None

    def heard(self, name: str, now: float) -> None:
        """The node sent data the hub could not store (disk full): it is alive all the same."""
        v = self.nodes.get(name)
        if v is None or v.snapshot is None:
            return
        v.last_seen = now
        if v.status != "up":
            v.status, v.since = "up", now

    def forget(self, name: str) -> bool:
        with self._whole_lock:
            self._whole.pop(name, None)
        with self._lock:
            return self.nodes.pop(name, None) is not None

    def restore(self, snap: NodeSnapshot, data: bytes) -> None:
        """Put back a snapshot saved before a restart; its status starts from its age."""
        v = self.view(snap.node)
        self._set(v, snap, data)
        v.last_seen = snap.timestamp
        v.status, v.since = "up", snap.timestamp

    def mark_failed(self, name: str, error: str, now: float) -> None:
        v = self.view(name)
        v.error = error
        if v.status != "down":
            v.status, v.since = "down", now

    def sweep(self, now: float, elsewhere: Mapping[str, float] | None = None) -> list[tuple[str, str, str]]:
        """Re-derive status from data age; returns (node, old, new) for each change.

        `elsewhere`: node -> when it was last heard anywhere (its newest sample in a history
        shared with other hubs, node clock). A silent node heard since its last snapshot here,
        within `down_after`, is "moved": pushing to another hub, not down.
        """
        changes = []
        for v in list(self.nodes.values()):
            if v.last_seen is None:
                continue
            age = now - v.last_seen
            status = "up"
            if age > self.down_after:
                status = "down"
            elif age > 3 * v.interval + 1:
                status = "stale"
            if v.status == "down" and v.error and status == "up":
                status = "down"  # a failing scrape keeps it down until data arrives
            if status != "up" and elsewhere and not v.error and _moved(v, elsewhere.get(v.name), now, self.down_after):
                status = "moved"
            if status != v.status:
                changes.append((v.name, v.status, status))
                # since = when the silence began, not when we noticed it; for a moved node that
                # falls silent, when the hub it moved to last heard it is about now (heard + down_after)
                moved_on = v.status == "moved"
                v.status = status
                v.since = now if status in ("up", "moved") or moved_on else v.last_seen + (
                    self.down_after if status == "down" else 3 * v.interval + 1)
        return changes

    def counts(self) -> dict[str, int]:
        out = {"up": 0, "stale": 0, "down": 0, "moved": 0}
        for v in self.nodes.values():
            out[v.status] = out.get(v.status, 0) + 1
        return out

    def silent(self) -> list[str]:
        """Nodes not up that pushed here: those another hub may hear (elsewhere.py)."""
        return [v.name for v in list(self.nodes.values())
                if v.status != "up" and v.snapshot is not None and not v.error and v.source == "push"]

    # ---- the latest snapshot in its forms ---------------------------------------------------------

    def snapshot(self, v: NodeView) -> NodeSnapshot | None:
        """The whole latest snapshot, decoded from its JSON or put together from its compact push
        (the few most recent are cached)."""
        seq, data = v.seq, v.latest
        if data is None:
            return None
        with self._whole_lock:
            hit = _cached(self._whole, v.name, seq)
        if hit is not None:
            return hit
        snap = from_json(data) if isinstance(data, bytes) else data.whole()
        with self._whole_lock:
            _cache(self._whole, v.name, seq, snap, WHOLE_CACHE)
        return snap

    def latest_json(self, v: NodeView, keep: bool = True) -> bytes | None:
        """The whole latest snapshot's JSON: as pushed, or made from a compact push (kept until
        the node's next push unless `keep` is false: the periodic save of every node would
        hold them all again)."""
        seq, data, made = v.seq, v.latest, v.made
        if data is None or isinstance(data, bytes):
            return data
        if made is not None and made[0] == seq:
            return made[1]
        with self._whole_lock:
            whole = _cached(self._whole, v.name, seq)
        out = to_json(whole if whole is not None else data.whole())
        if keep:
            v.made = (seq, out)
        return out

    def full_json(self, v: NodeView, commands: bool = True) -> bytes | None:
        """The whole snapshot; with `commands=False`, every command line emptied (cmdlines.py)."""
        data = self.latest_json(v)
        if data is None or commands:
            return data
        from .cmdlines import without_commands_json

        return without_commands_json(data)

    def summary_json(self, v: NodeView, commands: bool = True) -> bytes | None:
        """The snapshot without the host process table: what `/api/v1/snapshots` serves by default."""
        data = self.latest_json(v)
        if data is None:
            return None
        if not commands:
            from .cmdlines import without_commands_json

            return without_commands_json(data, processes=False)
        if not v.host_processes:
            # Nothing to leave out. Known from the decoded snapshot: the text alone cannot tell a
            # host process table from the GPUs' own process lists without a scan of it all
            # (~0.5 ms a node, 0.6 s for /api/v1/snapshots at 1,000 nodes).
            return data
        # Top-level members kept as they are (msgspec.Raw): one scan of the text, no decode of
        # the records, and the same bytes as before for everything but the process table.
        parts = _members.decode(data)
        if parts.pop("processes", None) is None:
            return data
        return _enc.encode(parts)

    def lean_json(self, v: NodeView, commands: bool = True) -> bytes | None:
        """The lean snapshot (what overview readers need: no per-CPU records, host process table or
        GPU links), for `/api/v1/snapshots?lean=true` (`gpufleet top`)."""
        snap = v.snapshot
        if snap is None:
            return None
        return to_json(snap if commands else _without_commands(snap))


def _cached(cache: OrderedDict[str, tuple[int, T]], name: str, seq: int) -> T | None:
    hit = cache.get(name)
    if hit is None or hit[0] != seq:
        return None
    cache.move_to_end(name)
    return hit[1]


def _cache(cache: OrderedDict[str, tuple[int, T]], name: str, seq: int, value: T, size: int) -> None:
    cache[name] = (seq, value)
    cache.move_to_end(name)
    while len(cache) > size:
        cache.popitem(last=False)


def lean(snap: NodeSnapshot, keep: frozenset[str] = frozenset()) -> NodeSnapshot:
    """`snap` without the per-CPU records, the host process table and the GPU links.

    At 224 CPUs and 8 GPUs x 18 NVLinks these are ~3/4 of a decoded snapshot; no reader of the
    whole fleet needs them (LEAN_LACKS names the record scopes they hold) unless an alert rule
    reads them: `keep` names those scopes. Shallow: shares the rest.
    """
    replace = msgspec.structs.replace
    gpus = snap.gpus
    if "gpu_link" not in keep and any(g.links for g in gpus):
        gpus = [replace(g, links=[]) if g.links else g for g in gpus]
    cpus = snap.cpus if "cpu" in keep else []
    if cpus is snap.cpus and not snap.processes and gpus is snap.gpus:
        return snap
    return replace(snap, cpus=cpus, processes=[], gpus=gpus)


def _without_commands(snap: NodeSnapshot) -> NodeSnapshot:
    from .cmdlines import without_commands

    return without_commands(snap)


_members = msgspec.json.Decoder(dict[str, msgspec.Raw])
_enc = msgspec.json.Encoder()


def _moved(v: NodeView, heard: float | None, now: float, down_after: float) -> bool:
    """Heard elsewhere after its last snapshot here, and recently enough not to count as down."""
    snap = v.snapshot
    # The same clock on both sides: the node's, which stamped both snapshots.
    return heard is not None and snap is not None and heard > snap.timestamp + 0.0005 and now - heard <= down_after
