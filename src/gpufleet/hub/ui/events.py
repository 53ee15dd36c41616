"""Live updates for open pages over Server-Sent Events: one broker, many bounded subscribers.

Every tick the broker re-summarises only the nodes whose snapshot or status changed and
publishes one compact fleet delta (the UI loop ticks only while a page listens; the first
page to subscribe catches the state up) (summary keys that changed, per node), encoded once and
shared by every subscriber. A page about one node gets that node's full snapshot instead;
the users pages get the per-user table. Each subscriber has a small bounded queue: a page
that cannot keep up (asleep, slow link) is not buffered without end but resynced with a
full state when it drains, so neither the hub nor the page grows with time.

Event ids are "<epoch>.<seq>": a reconnecting browser sends the last one (Last-Event-ID),
and gets only the deltas it missed when the broker still holds them, else a full state.
A restarted hub has a new epoch, so its pages always resync in full.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import msgspec

from .summary import Summary, diff, node_summary
from .users import placements, users_table

if TYPE_CHECKING:
    from ..service import Hub

QUEUE_MAX = 32  # events a subscriber may fall behind before it is resynced
REPLAY = 32  # fleet deltas kept for reconnecting pages
RESYNC = b"resync"
CLOSE = b"close"

_enc = msgspec.json.Encoder()


def sse(event: str, data: bytes, event_id: str | None = None) -> bytes:
    head = f"event: {event}\n" + (f"id: {event_id}\n" if event_id else "")
    return head.encode() + b"data: " + data + b"\n\n"


@dataclass(eq=False)
class Subscriber:
    fleet: bool = True
    node: str | None = None
    users: bool = False
    user: str | None = None
    commands: bool = True  # may this page see command lines (hub/cmdlines.py)
    queue: asyncio.Queue[bytes] = field(default_factory=lambda: asyncio.Queue(QUEUE_MAX))
    resyncs: int = 0

    def put(self, msg: bytes) -> None:
        try:
            self.queue.put_nowait(msg)
        except asyncio.QueueFull:
            # Drop what is queued: the page will be sent the whole current state instead.
            while not self.queue.empty():
                self.queue.get_nowait()
            self.resyncs += 1
            self.queue.put_nowait(RESYNC)


class Broker:
    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.epoch = secrets.token_hex(4)
        self.seq = 0
        self.state: dict[str, Summary] = {}
        self._seen: dict[str, tuple[int, str, int]] = {}
        self._recent: deque[tuple[int, bytes]] = deque(maxlen=REPLAY)
        self.subs: set[Subscriber] = set()
        self._full: tuple[int, bytes] | None = None
        self.last_delta_bytes = 0
        self.events = 0

    # ---- state ---------------------------------------------------------------------------------

    def refresh(self) -> tuple[dict[str, Summary], list[str], set[str], set[str]]:
        """Re-summarise changed nodes: (deltas, removed nodes, nodes with new data, status changes)."""
        deltas: dict[str, Summary] = {}
        new_data: set[str] = set()
        new_status: set[str] = set()
        nodes = self.hub.fleet.nodes
        for name, v in list(nodes.items()):
            key = (v.seq, v.status, id(v.labels))
            old_key = self._seen.get(name)
            if old_key == key:
                continue
            self._seen[name] = key
            if old_key is None or old_key[0] != key[0]:
                new_data.add(name)
            if old_key is None or old_key[1] != key[1]:
                new_status.add(name)
            new = node_summary(v)
            d = diff(self.state.get(name, {}), new)
            self.state[name] = new
            if d:
                deltas[name] = d
        removed = [n for n in self.state if n not in nodes]
        for n in removed:
            del self.state[n]
            self._seen.pop(n, None)
        return deltas, removed, new_data, new_status

    def full_message(self) -> bytes:
        """The whole fleet state (~0.4 KB a node): made once per seq and shared by every page that
        (re)connects in it, not one copy each (a thousand pages opening at once held hundreds of MB)."""
        cached = self._full
        if cached is None or cached[0] != self.seq:
            body = _enc.encode({"t": time.time(), "seq": self.seq, "full": self.state})
            cached = self._full = (self.seq, sse("fleet", body, f"{self.epoch}.{self.seq}"))
        return cached[1]

    def initial(self, last_id: str | None) -> list[bytes]:
        """What a (re)connecting page needs: the deltas it missed, or the full state."""
        if last_id:
            epoch, _, seq_s = last_id.partition(".")
            if epoch == self.epoch and seq_s.isdigit():
                seq = int(seq_s)
                if seq == self.seq:
                    return []
                if self._recent and self._recent[0][0] <= seq + 1 and seq < self.seq:
                    return [m for s, m in self._recent if s > seq]
        return [self.full_message()]

    def node_message(self, name: str, commands: bool = True) -> bytes | None:
        v = self.hub.fleet.nodes.get(name)
        data = self.hub.fleet.full_json(v, commands) if v is not None else None
        if data is None:
            return None
        return sse("node", data)

    def status_message(self, name: str) -> bytes | None:
        v = self.hub.fleet.nodes.get(name)
        if v is None:
            return None
        return sse("status", _enc.encode({"node": name, "status": v.status, "since": v.since,
                                          "last_seen": v.last_seen, "error": v.error,
                                          "clock_skew_seconds": v.clock_skew}))

    def users_message(self) -> bytes:
        rows = users_table(self.hub.fleet.nodes.values())
        return sse("users", _enc.encode({"t": time.time(), "users": rows}))

    def user_message(self, user: str, commands: bool = True) -> bytes:
        views = list(self.hub.fleet.nodes.values())
        summary = next((r for r in users_table(views) if r["user"] == user), None)
        return sse("user", _enc.encode({"t": time.time(), "user": user, "summary": summary,
                                        "placements": placements(views, user, commands=commands)}))

    # ---- publishing ------------------------------------------------------------------------------

    def publish(self) -> None:
        """The UI loop's step: a tick while some page listens, nothing at all while none does.
        Changes are not lost by waiting: the first subscriber's tick (subscribe()) publishes
        everything since as one delta, which is also what a page reconnecting after the gap
        replays, and the overview page ticks before it embeds the state."""
        if self.subs:
            self.tick()

    def tick(self) -> None:
        deltas, removed, new_data, new_status = self.refresh()
        if not deltas and not removed:
            return
        self.seq += 1
        body: dict[str, Any] = {"t": time.time(), "seq": self.seq, "d": deltas}
        if removed:
            body["x"] = removed
        data = _enc.encode(body)
        self.last_delta_bytes = len(data)
        self.events += 1
        msg = sse("fleet", data, f"{self.epoch}.{self.seq}")
        self._recent.append((self.seq, msg))
        users_msg: bytes | None = None
        user_msgs: dict[tuple[str, bool], bytes] = {}
        for sub in list(self.subs):
            if sub.fleet:
                sub.put(msg)
            if sub.node is not None:
                if sub.node in new_data:
                    m = self.node_message(sub.node, sub.commands)
                    if m:
                        sub.put(m)
                if sub.node in new_status:
                    m = self.status_message(sub.node)
                    if m:
                        sub.put(m)
            if sub.users:
                if users_msg is None:
                    users_msg = self.users_message()
                sub.put(users_msg)
            if sub.user is not None:
                key = (sub.user, sub.commands)
                if key not in user_msgs:
                    user_msgs[key] = self.user_message(sub.user, sub.commands)
                sub.put(user_msgs[key])

    def subscribe(self, sub: Subscriber) -> Subscriber:
        if not self.subs:
            try:
                self.tick()  # catch up on what happened while nobody listened (see publish())
            except Exception as e:  # as in the UI loop: counted, and retried by its next step
                self.hub.jobs.failed("ui", e)
        self.subs.add(sub)
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        self.subs.discard(sub)

    def close_all(self) -> None:
        for sub in list(self.subs):
            while not sub.queue.empty():
                sub.queue.get_nowait()
            sub.queue.put_nowait(CLOSE)
