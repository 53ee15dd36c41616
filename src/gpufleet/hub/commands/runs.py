"""Runs of a remote command and the per-node mailboxes agents fetch them from.

Everything here runs on the hub's event loop (the API routes are async), so no locks. A run
signs one message per node when that node's turn comes (at most `parallel` nodes at once), puts
it in the node's mailbox and wakes the node's long poll. Agents post each node's result back; the
run records it in the audit log, hands it to whoever watches the run, and starts the next node.

A node that is not fetching commands (its agent runs without --allow-commands, or is down) is
answered at once as `unavailable` instead of leaving the caller waiting for a timeout.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from .audit import AuditLog
from .signing import HubKey

log = logging.getLogger("gpufleet.hub.commands")

DELIVERY_WINDOW = 60.0  # seconds a signed command may wait to be fetched; also its expiry
RESULT_GRACE = 15.0  # beyond the timeout, for the agent to kill, report and the post to arrive
POLL_FRESH = 10.0  # a node whose poll ended this recently counts as fetching (agents re-poll at once)
KEEP_DONE = 3600.0  # finished runs stay readable this long (the audit log keeps them for good)
MAX_HELD_OUTPUT = 256 * 1024 * 1024  # output held for finished runs; the oldest go first beyond it
SUCCESS = "ok"
CLOSED: dict[str, Any] = {"closed": True}  # in a watcher's queue: the hub is exiting
FINAL = ("ok", "failed", "timeout", "refused", "error", "cancelled", "unavailable", "lost")


@dataclass(slots=True)
class Run:
    id: str
    who: str
    argv: list[str]
    timeout: float
    parallel: int
    selector: dict[str, Any]
    nodes: list[str]
    created: float = field(default_factory=time.time)
    pending: deque[str] = field(default_factory=deque)
    active: dict[str, float] = field(default_factory=dict)  # node -> deadline (monotonic)
    results: dict[str, dict[str, Any]] = field(default_factory=dict)
    cancelled: bool = False
    finished: float | None = None
    output_bytes: int = 0
    watchers: list[asyncio.Queue[dict[str, Any] | None]] = field(default_factory=list)

    @property
    def done(self) -> bool:
        return len(self.results) == len(self.nodes)

    def describe(self) -> dict[str, Any]:
        counts: dict[str, int] = {}
        for r in self.results.values():
            counts[r["status"]] = counts.get(r["status"], 0) + 1
        return {"id": self.id, "who": self.who, "argv": self.argv, "timeout": self.timeout,
                "parallel": self.parallel, "selector": self.selector, "nodes": self.nodes,
                "created": self.created, "done": self.done, "cancelled": self.cancelled,
                "counts": counts, "results": [self.results[n] for n in self.nodes if n in self.results]}


class Dispatcher:
    def __init__(self, key: HubKey, audit: AuditLog) -> None:
        self.key = key
        self.audit = audit
        self.runs: dict[str, Run] = {}
        self._mail: dict[str, list[dict[str, Any]]] = {}  # node -> signed messages not yet fetched
        self._wake: dict[str, asyncio.Event] = {}  # node -> its open long poll
        self._last_poll: dict[str, float] = {}  # node -> monotonic time its last poll ended
        self._sent: dict[tuple[str, str], str] = {}  # (run id, node) -> nonce handed out
        self.closing = False
        self.held_output = 0  # characters of output held by runs in memory

    # ---- nodes' side ---------------------------------------------------------------------

    def fetching(self, node: str) -> bool:
        last = self._last_poll.get(node)
        return node in self._wake or (last is not None and time.monotonic() - last < POLL_FRESH)

    async def next_for(self, node: str, hold: float,
                       gone: Callable[[], Awaitable[object]] | None = None) -> list[dict[str, Any]]:
        """The node's waiting messages, waiting up to `hold` seconds for one to arrive.

        `gone`, awaited beside the wait, returns when the client has disconnected: an agent that
        died while its poll was held must stop counting as fetching at once, not when the hold
        ends. (Asking every 2 s instead cost 1,000 held polls ~14% of a core, doing nothing.)
        """
        old = self._wake.pop(node, None)
        if old is not None:
            old.set()  # a newer poll of the same node replaces an older one (agent restart)
        try:
            if not self._mail.get(node):
                ev = self._wake[node] = asyncio.Event()
                waits: list[asyncio.Future[object]] = [asyncio.ensure_future(ev.wait())]
                if gone is not None:
                    waits.append(asyncio.ensure_future(gone()))
                try:
                    done, _ = await asyncio.wait(waits, timeout=hold, return_when=asyncio.FIRST_COMPLETED)
                    if len(waits) > 1 and waits[1] in done and not ev.is_set():
                        self._last_poll.pop(node, None)
                        return []  # nobody to answer; the messages stay for the next poll
                finally:
                    for w in waits:
                        w.cancel()
                    if self._wake.get(node) is ev:
                        del self._wake[node]
            self._last_poll[node] = time.monotonic()
            return self._mail.pop(node, [])
        except BaseException:
            self._last_poll.pop(node, None)
            raise

    def _post(self, node: str, message: dict[str, Any]) -> None:
        self._mail.setdefault(node, []).append(message)
        ev = self._wake.get(node)
        if ev is not None:
            ev.set()

    def _sign(self, kind: str, run: Run, node: str) -> dict[str, Any]:
        now = time.time()
        nonce = secrets.token_urlsafe(18)
        payload = {"kind": kind, "id": run.id, "node": node, "argv": run.argv if kind == "run" else [],
                   "nonce": nonce, "issued_at": round(now, 3), "expires_at": round(now + DELIVERY_WINDOW, 3),
                   "timeout": run.timeout}
        if kind == "run":
            self._sent[(run.id, node)] = nonce
        return self.key.sign(payload)

    # ---- callers' side ---------------------------------------------------------------------

    def start(self, who: str, argv: list[str], nodes: list[str], timeout: float, parallel: int,
              selector: dict[str, Any]) -> Run:
        run = Run(id=secrets.token_hex(8), who=who, argv=argv, timeout=timeout, parallel=parallel,
                  selector=selector, nodes=nodes)
        self.runs[run.id] = run
        self.audit.request(run.id, who, argv, selector, nodes, timeout, "started" if nodes else "no_match")
        for node in nodes:
            if self.fetching(node):
                run.pending.append(node)
            else:
                self._finish(run, node, {"status": "unavailable",
                                         "reason": "node is not fetching commands (agent down, or started "
                                                   "without --allow-commands)"})
        self._advance(run)
        return run

    def _advance(self, run: Run) -> None:
        while run.pending and len(run.active) < run.parallel and not run.cancelled:
            node = run.pending.popleft()
            run.active[node] = time.monotonic() + DELIVERY_WINDOW + run.timeout + RESULT_GRACE
            self._post(node, self._sign("run", run, node))

    def cancel(self, run: Run, who: str) -> None:
        if run.done or run.cancelled:
            return
        run.cancelled = True
        self.audit.cancel(run.id, who)
        while run.pending:
            self._finish(run, run.pending.popleft(), {"status": "cancelled", "reason": f"cancelled by {who}"})
        for node in list(run.active):
            mail = self._mail.get(node, [])
            waiting = [m for m in mail if m["payload"]["id"] == run.id]
            if waiting:  # not fetched yet: take it back rather than race the agent
                self._mail[node] = [m for m in mail if m["payload"]["id"] != run.id]
                self._finish(run, node, {"status": "cancelled", "reason": f"cancelled by {who} before delivery"})
            else:
                self._post(node, self._sign("cancel", run, node))

    def result(self, node: str, run_id: str, body: dict[str, Any]) -> bool:
        """An agent's report for (run, node). False when the hub has no such command for that node."""
        run = self.runs.get(run_id)
        if run is None or node not in run.active:
            # Not a command this hub has outstanding for that node: an agent refusing a forged or
            # replayed message, or a report after the hub gave up. Recorded all the same: finding
            # such reports is what an audit log is for.
            note = "report for a command the hub has not outstanding for this node"
            self.audit.result(run_id, node, {**body, "reason": f"{body.get('reason') or ''} ({note})".strip()})
            return False
        self._finish(run, node, body)
        self._advance(run)
        return True

    def _finish(self, run: Run, node: str, body: dict[str, Any]) -> None:
        run.active.pop(node, None)
        self._sent.pop((run.id, node), None)
        result = {"node": node, "status": body["status"], "exit_code": body.get("exit_code"),
                  "duration": body.get("duration"), "stdout": body.get("stdout", ""),
                  "stderr": body.get("stderr", ""), "stdout_bytes": body.get("stdout_bytes"),
                  "stderr_bytes": body.get("stderr_bytes"), "reason": body.get("reason")}
        run.results[node] = result
        run.output_bytes += len(result["stdout"] or "") + len(result["stderr"] or "")
        self.held_output += len(result["stdout"] or "") + len(result["stderr"] or "")
        self.audit.result(run.id, node, result)
        for q in run.watchers:
            q.put_nowait(result)
        if run.done:
            run.finished = time.time()
            for q in run.watchers:
                q.put_nowait(None)

    def sweep(self) -> None:
        """Once a second: nodes whose result never came back; forget long-finished runs."""
        now_m, now = time.monotonic(), time.time()
        for node, mail in list(self._mail.items()):
            expired = [m for m in mail if m["payload"]["expires_at"] < now]
            if expired:  # never fetched: the agent is gone (it would refuse them now anyway)
                self._mail[node] = [m for m in mail if m["payload"]["expires_at"] >= now]
                for m in expired:
                    run = self.runs.get(m["payload"]["id"])
                    if run is not None and node in run.active and m["payload"]["kind"] == "run":
                        self._finish(run, node, {"status": "unavailable", "reason": "the node did not fetch "
                                                 "the command before it expired (agent gone?)"})
        for run in list(self.runs.values()):
            for node, deadline in list(run.active.items()):
                if now_m > deadline:
                    self._finish(run, node, {"status": "lost", "reason": "no result came back from the node "
                                             "in time (agent restarted or connection lost)"})
            self._advance(run)
            if run.finished is not None and now - run.finished > KEEP_DONE:
                self._forget(run)
        # A 1,000-node run can bring back 128 MB of output: bound what finished runs hold.
        for run in sorted((r for r in self.runs.values() if r.finished is not None), key=lambda r: r.finished or 0):
            if self.held_output <= MAX_HELD_OUTPUT:
                break
            self._forget(run)

    def _forget(self, run: Run) -> None:
        del self.runs[run.id]
        self.held_output -= run.output_bytes

    def watch(self, run: Run) -> asyncio.Queue[dict[str, Any] | None]:
        """A queue of this run's results: those already in, then each as it arrives, then None."""
        q: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        for node in run.nodes:
            if node in run.results:
                q.put_nowait(run.results[node])
        if run.done:
            q.put_nowait(None)
        else:
            run.watchers.append(q)
        return q

    def unwatch(self, run: Run, q: asyncio.Queue[dict[str, Any] | None]) -> None:
        if q in run.watchers:
            run.watchers.remove(q)

    def close(self) -> None:
        """The hub is exiting: answer held polls and end watchers' streams now."""
        self.closing = True
        for ev in self._wake.values():
            ev.set()
        for run in self.runs.values():
            for q in run.watchers:
                q.put_nowait(CLOSED)
            run.watchers.clear()
