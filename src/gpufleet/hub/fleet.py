"""The hub's live view of the fleet: each node's latest snapshot and its up/stale/down status.

Status is derived from when data last arrived: stale after 3 of the node's intervals
without data, down after `down_after` seconds (or at once when a pull scrape fails).
The interval is learned from the gap between a node's consecutive snapshots.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import msgspec

from ..snapshot import NodeSnapshot, to_json
from .sd import sd_problem

DEFAULT_INTERVAL = 5.0


@dataclass(slots=True)
class NodeView:
    name: str
    labels: dict[str, str] = field(default_factory=dict)
    source: str = "push"
    agent_url: str | None = None
    advertised: bool = False  # agent_url came from the agent's --advertise
    snapshot: NodeSnapshot | None = None
    json: bytes | None = None  # the latest snapshot as JSON, as pushed or encoded once on demand
    summary_json: bytes | None = None  # the same without the host process table
    bare_of: NodeSnapshot | None = None  # the snapshot bare_json/bare_summary were made from
    bare_json: bytes | None = None  # full and summary JSON without command lines (cmdlines.py)
    bare_summary: bytes | None = None
    last_seen: float | None = None  # hub clock: when data last arrived
    interval: float = DEFAULT_INTERVAL
    status: str = "down"
    since: float = 0.0
    error: str = ""
    clock_skew: float | None = None  # the node's clock minus the hub's at its last push (seconds)
    clock_skew_at: float | None = None

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

    def view(self, name: str) -> NodeView:
        v = self.nodes.get(name)
        if v is None:
            with self._lock:
                v = self.nodes.setdefault(name, NodeView(name))
        return v

    def update(self, snap: NodeSnapshot, now: float, raw: bytes | None = None) -> None:
        """Record a newly stored snapshot (the newest one of a batch); `raw` is its JSON if known."""
        v = self.view(snap.node)
        prev = v.snapshot
        if prev is not None and snap.timestamp <= prev.timestamp:
            return
        if prev is not None:
            gap = snap.timestamp - prev.timestamp
            if 0.2 <= gap <= 600:
                # Smooth, so one late push does not flip the node to stale.
                v.interval = gap if v.snapshot is None else 0.8 * v.interval + 0.2 * gap
        v.snapshot = snap
        v.json = raw  # encoded on first demand when not given
        # Overview pages read every node's summary at once: build it now, not 1,000 at a time
        # on the first request after a round of pushes.
        v.summary_json = raw if raw is not None and not snap.processes else None
        if v.summary_json is None:
            v.summary_json = to_json(msgspec.structs.replace(snap, processes=[]) if snap.processes else snap)
        v.last_seen = now
        v.error = ""
        if v.status != "up":
            v.status, v.since = "up", now

    def heard(self, name: str, now: float) -> None:
        """The node sent data the hub could not store (disk full): it is alive all the same."""
        v = self.nodes.get(name)
        if v is None or v.snapshot is None:
            return
        v.last_seen = now
        if v.status != "up":
            v.status, v.since = "up", now

    def forget(self, name: str) -> bool:
        with self._lock:
            return self.nodes.pop(name, None) is not None

    def restore(self, snap: NodeSnapshot, data: bytes) -> None:
        """Put back a snapshot saved before a restart; its status starts from its age."""
        v = self.view(snap.node)
        v.snapshot, v.json, v.last_seen = snap, data, snap.timestamp
        v.status, v.since = "up", snap.timestamp

    def mark_failed(self, name: str, error: str, now: float) -> None:
        v = self.view(name)
        v.error = error
        if v.status != "down":
            v.status, v.since = "down", now

    def sweep(self, now: float) -> list[tuple[str, str, str]]:
        """Re-derive status from data age; returns (node, old, new) for each change."""
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
            if status != v.status:
                changes.append((v.name, v.status, status))
                v.status = status
                # since = when the silence began, not when we noticed it
                v.since = now if status == "up" else v.last_seen + (
                    self.down_after if status == "down" else 3 * v.interval + 1)
        return changes

    def counts(self) -> dict[str, int]:
        out = {"up": 0, "stale": 0, "down": 0}
        for v in self.nodes.values():
            out[v.status] = out.get(v.status, 0) + 1
        return out

    def summary_json(self, v: NodeView, commands: bool = True) -> bytes | None:
        """The snapshot without the host process table: what overview pages need."""
        if v.snapshot is None:
            return None
        if not commands:
            return self._bare(v)[1]
        if v.summary_json is None:
            snap = v.snapshot
            v.summary_json = to_json(msgspec.structs.replace(snap, processes=[]) if snap.processes else snap)
        return v.summary_json

    def full_json(self, v: NodeView, commands: bool = True) -> bytes | None:
        """The whole snapshot; with `commands=False`, every command line emptied (cmdlines.py)."""
        if v.snapshot is None:
            return None
        if not commands:
            return self._bare(v)[0]
        if v.json is None:
            v.json = to_json(v.snapshot)
        return v.json

    def _bare(self, v: NodeView) -> tuple[bytes, bytes]:
        """Made once per snapshot, on the first request that needs it."""
        from .cmdlines import without_commands

        snap = v.snapshot
        assert snap is not None
        if v.bare_of is not snap or v.bare_json is None or v.bare_summary is None:
            bare = without_commands(snap)
            full, summary = to_json(bare), to_json(msgspec.structs.replace(bare, processes=[]))
            v.bare_json, v.bare_summary, v.bare_of = full, summary, snap
            return full, summary
        return v.bare_json, v.bare_summary
