"""Push snapshots from the agent to a hub, spooling to disk while the hub is unreachable.

Flow: the collection thread calls `Pusher.enqueue` (a listener of AgentService), which writes the
snapshot into the on-disk spool and wakes the pusher thread; the pusher thread sends the oldest
spooled snapshots in batches and removes them once the hub answers 200.

Why every snapshot goes through the spool, even when the hub is up: it is the one path that loses
nothing if the process dies between collection and push, and it costs one small compressed file
write per interval. Backfill after an outage is then not a special mode, just a longer queue: the
same loop drains it oldest first, so the hub sees no gap and no reordering. The hub is idempotent
per (node, timestamp), so a batch resent after a crash or a lost reply is harmless.

With several hubs (`--hub A,B`) one is used at a time and the next when it is down; the spool is
shared, so a snapshot is acknowledged by exactly one hub (hubs.py).

Hub contract (see docs/agent.md, "Pushing to a hub"):
  POST /api/v1/register  Bearer <join token>       -> {"node", "credential"}
  POST /api/v1/push      Bearer <node credential>  {"snapshots": [...]} -> {"accepted", "duplicates"}
  POST /api/v1/push/compact  the same snapshots in the compact encoding (gpufleet/compact.py), used
                         by default; a hub without it (404/405) gets JSON pushes for an hour, a hub
                         that does not know a shape (409 unknown_shape, e.g. restarted) gets them again.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import os
import random
import re
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import msgspec

from .. import __version__, clock, compact
from ..errors import UserError
from ..httpclient import Client, HTTPError, Response
from ..netaddr import host_port, reachable_host
from ..snapshot import NodeSnapshot, from_json, to_json
from ..syntax import normalize_hub_url, redact_url
from ..tls import client_verify, describe_tls_error
from .credentials import FILENAME as CREDENTIAL_FILENAME
from .credentials import CredentialStore
from .hubs import HubChoice, parse_hubs
from .spool import Entry, Spool

if TYPE_CHECKING:
    from ..config import AgentConfig
    from .service import AgentService

log = logging.getLogger("gpufleet.agent.push")

REGISTER_PATH = "/api/v1/register"
PUSH_PATH = "/api/v1/push"
MISSING_TOKEN = "--hub needs --token (create one on the hub with `gpufleet token create`)"

DEFAULT_BATCH = 50
DEFAULT_MAX_BODY = 8 * 1024 * 1024  # uncompressed JSON per request; a 413 lowers it
GZIP_MIN = 1024  # below this gzip costs more than it saves
COMPACT_RETRY_S = 3600.0  # after a hub said it has no compact push (older hub), ask again this late
MAX_SHAPES_SENT = 64  # shape ids remembered as known to the hub (a few per node in practice)


# ---- where things live ----------------------------------------------------------------------


def default_spool_dir(hub: str, node: str) -> Path:
    """$XDG_STATE_HOME/gpufleet/spool/<node>-<hash of hub>: two agents (nodes or hubs) never share."""
    state = os.environ.get("XDG_STATE_HOME", "")
    base = Path(state) if state and os.path.isabs(state) else Path.home() / ".local" / "state"
    safe_node = re.sub(r"[^A-Za-z0-9._-]", "_", node)[:64] or "node"
    digest = hashlib.sha256(normalize_hub_url(hub).encode()).hexdigest()[:12]
    return base / "gpufleet" / "spool" / f"{safe_node}-{digest}"


def agent_url_for(listen: tuple[str, int], scheme: str = "http",
                  advertise: tuple[str, int] | None = None) -> str | None:
    """Where the hub and Prometheus reach this agent, or None when not known before binding.

    --advertise wins; on a wildcard listen address it is this node's primary address (the
    host name often resolves to 127.0.1.1 on Debian); a loopback address is sent as it is,
    and the hub leaves such an agent out of service discovery, saying why.
    """
    host, port = advertise if advertise is not None else listen
    if advertise is not None and port == 0:
        port = listen[1]  # --advertise HOST: the port the agent listens on
    if port == 0:  # ephemeral port: only known after bind; the caller sets Pusher.agent_url
        return None
    if advertise is None:
        host = reachable_host(host)
    return f"{scheme}://{host_port(host, port)}"


# ---- the pusher -------------------------------------------------------------------------------


class Pusher:
    """Sends spooled snapshots to the hub from its own thread; `enqueue` never touches the network."""

    def __init__(
        self,
        hub: str | Sequence[str],
        node: str,
        spool: Spool,
        credentials: CredentialStore,
        *,
        token: str | None = None,
        labels: dict[str, str] | None = None,
        agent_url: str | None = None,
        advertised: bool = False,
        batch_size: int = DEFAULT_BATCH,
        max_body_bytes: int = DEFAULT_MAX_BODY,
        backoff_base: float = 1.0,
        backoff_cap: float = 30.0,
        timeout: float = 10.0,
        idle_wait: float = 5.0,
        verify: ssl.SSLContext | bool = True,
        compact_push: bool = True,
    ) -> None:
        # Several hubs: one is used at a time, the next when it is down (hubs.py says which and why).
        self._hubs = HubChoice([normalize_hub_url(h) for h in ([hub] if isinstance(hub, str) else hub)], node)
        self._skip_backoff = False  # moved to an untried hub: push there without waiting
        self.node = node
        self.spool = spool
        self.credentials = credentials
        self.labels = dict(labels or {})
        self.agent_url = agent_url
        self.advertised = advertised  # agent_url came from --advertise: the hub trusts even a loopback one
        self.batch_size = max(1, batch_size)
        self.backoff_base = backoff_base
        self.backoff_cap = max(backoff_cap, backoff_base)
        self.idle_wait = idle_wait
        self._token = token or None
        self._credential = credentials.load(self.hub, node)
        # The credential the hub last refused: sent along when registering again, because a
        # registered name is given back only to an agent that proves it held it.
        self._previous: str | None = None
        # Redirects are not followed: one is a misconfigured --hub, said so, and secrets stay here.
        self._client = Client(
            timeout=timeout, connect_timeout=5.0,
            headers={"User-Agent": f"gpufleet-agent/{__version__}"},
            verify=verify,  # the system's CAs, or only --ca's
        )
        self.verify = verify
        self._limit = self.batch_size  # halved while bisecting a batch the hub calls malformed
        self._max_body = max_body_bytes  # lowered for good by a 413
        self._attempts = 0  # consecutive failures, for backoff
        # The compact push (gpufleet/compact.py): off for a while when the hub lacks it.
        self.compact_push = compact_push
        self._compact_off_until = 0.0  # monotonic
        self._shapes_sent: set[str] = set()  # shape ids the hub acknowledged
        self._fresh_registration = False  # registered, no push accepted since
        self._state = "starting"  # starting | up | down | tls | unauthorized | refused | misconfigured | error
        self._down_since: float | None = None
        self._backfilling = False
        self._dropped_reported = 0
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._deadline = 0.0
        self._thread: threading.Thread | None = None
        # counters for stats(); written only by the pusher thread (and enqueue for enqueued)
        self.enqueued = 0
        self.pushed = 0
        self.duplicates = 0
        self.failed = 0
        self.rejected = 0
        self.registrations = 0
        self.last_push = 0.0

    @property
    def hub(self) -> str:
        """The hub pushed to now (one of --hub's)."""
        return self._hubs.current

    @property
    def _display(self) -> str:
        return redact_url(self._hubs.current)

    @property
    def failovers(self) -> int:
        return self._hubs.moves

    @property
    def credential(self) -> str | None:
        """This node's current credential (None until registered); the command poller uses it too."""
        return self._credential

    # ---- producer side (collection thread) ---------------------------------------------

    def enqueue(self, snapshot: NodeSnapshot) -> None:
        """The AgentService listener: one compressed file write, then wake the sender."""
        self.spool.put(to_json(snapshot))
        self.enqueued += 1
        self._wake.set()

    # ---- lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="gpufleet-push", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 1.0) -> None:
        """Send what can be sent within `timeout` seconds; the rest stays in the spool for next start."""
        self._deadline = time.monotonic() + timeout
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout + 0.5)
            if self._thread.is_alive():
                log.warning("pusher still busy after %.1f s; %d snapshots stay spooled for the next start",
                            timeout, len(self.spool))
                return  # the daemon thread still uses the client and spool; the process is exiting
        self._client.close()
        self.spool.close()

    def stats(self) -> dict[str, float]:
        """Counters for the agent to export (all monotonic except backlog*, hub_up)."""
        return {
            "enqueued": float(self.enqueued),  # snapshots handed to the pusher by collection
            "pushed": float(self.pushed),  # snapshots the hub acknowledged (duplicates included)
            "duplicates": float(self.duplicates),  # of those, already stored (resends)
            "failed": float(self.failed),  # requests that failed (unreachable, 5xx, 401, ...)
            "rejected": float(self.rejected),  # snapshots dropped because the hub refused them (400/413)
            "dropped": float(self.spool.dropped),  # snapshots dropped because the spool was full
            "corrupt": float(self.spool.corrupt),  # damaged spool entries removed
            "backlog": float(len(self.spool)),  # snapshots waiting in the spool
            "backlog_bytes": float(self.spool.bytes),
            "registrations": float(self.registrations),
            "hub_up": 1.0 if self._state == "up" else 0.0,
            "last_push_timestamp": self.last_push,  # unix time of the last accepted push, 0 if none
        }

    # ---- the sender thread -------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()  # before looking, so a put after the look still wakes us
            if not len(self.spool):
                self._note_drained()
                self._wake.wait(self.idle_wait)
                continue
            try:
                delay = self._step()
            except Exception:  # a bug must not end pushing for the life of the agent
                self._set_state("error", logging.ERROR, "pusher failed; snapshots stay spooled in %s",
                                self.spool.path, exc_info=True)
                delay = self._backoff()
            if delay > 0:
                self._stop.wait(delay)  # not _wake: new snapshots must not cut a backoff short
        try:
            self._flush()
        except Exception:
            log.exception("final push failed; snapshots stay spooled in %s", self.spool.path)

    def _flush(self) -> None:
        """On stop: keep sending while the hub answers and time is left; never wait on a dead hub."""
        if self._state not in ("starting", "up"):
            return
        while len(self.spool):
            left = self._deadline - time.monotonic()
            if left <= 0.05 or self._step(timeout=left) > 0:
                return

    def _step(self, timeout: float | None = None) -> float:
        """One attempt (register if needed, then one batch). Returns seconds to wait before the next."""
        if self._credential is None and not self._register(timeout):
            return self._backoff()
        batch = self.spool.peek(self._limit, self._max_body)
        if not batch:
            return 0.0
        use_compact = self.compact_push and time.monotonic() >= self._compact_off_until
        shapes: list[str] = []
        packed = self._compact_body(batch) if use_compact else None
        if packed is not None:
            body, shapes = packed
            path, ctype = compact.PATH, compact.CONTENT_TYPE
        else:
            use_compact = False
            body = b'{"snapshots":[' + b",".join(e.data for e in batch) + b"]}"
            path, ctype = PUSH_PATH, "application/json"
        # The send time lets the hub measure this node's clock skew (refused pushes included).
        headers = {"Authorization": f"Bearer {self._credential}", "Content-Type": ctype,
                   "X-Gpufleet-Sent-At": f"{clock.now():.3f}"}
        wire = body
        if len(body) >= GZIP_MIN:
            wire = gzip.compress(body, compresslevel=5, mtime=0)
            headers["Content-Encoding"] = "gzip"
        try:
            resp = self._client.post(self.hub + path, content=wire, headers=headers,
                                     timeout=timeout)
        except HTTPError as e:
            self._unreachable(e)
            return self._backoff()
        code = resp.status_code
        seqs = [e.seq for e in batch]

        if use_compact and code in (404, 405):
            # A hub from before the compact push: JSON it is, for a while (the hub may be upgraded).
            log.info("hub %s has no compact push (HTTP %d): pushing JSON for the next %.0f minutes",
                     self._display, code, COMPACT_RETRY_S / 60)
            self._compact_off_until = time.monotonic() + COMPACT_RETRY_S
            return 0.0
        if use_compact and code == 409 and _detail(resp).startswith(compact.UNKNOWN_SHAPE):
            if self._shapes_sent:
                # The hub forgot shapes it had (restarted): send this batch again with them. Nothing
                # of a refused batch is stored, so this loses and doubles nothing.
                log.info("hub %s does not know this node's series shape (restarted?): sending it again",
                         self._display)
                self._shapes_sent.clear()
                return 0.0
            # The batch carried every shape and the hub still refuses: not a hub to retry at once.
            self.failed += 1
            self._set_state("error", logging.ERROR, "hub %s refuses the series shapes this agent sends (%s); "
                            "retrying with backoff", self._display, _detail(resp))
            return self._backoff()

        if 200 <= code < 300:
            if shapes:
                if len(self._shapes_sent) + len(shapes) > MAX_SHAPES_SENT:
                    self._shapes_sent.clear()  # the hub keeps a few per node: old ones are gone anyway
                self._shapes_sent.update(shapes)
            duplicates = _json_int(resp, "duplicates")
            self.spool.ack(seqs)
            self.pushed += len(batch)
            self.duplicates += duplicates
            self.last_push = time.time()
            self._attempts = 0
            self._fresh_registration = False
            self._limit = self.batch_size  # a bisected region got through: back to full batches
            self._hubs.succeeded()
            self._set_up()
            return 0.0

        self.failed += 1
        detail = _detail(resp)
        if code == 401:
            # Credential unknown or revoked. Re-register if we can; back off if the hub refuses
            # even a credential it has just issued, so a confused hub is not hammered.
            if self._token is None:
                # Keep the credential and keep retrying slowly: it is the only one this agent has,
                # and a hub restored from an old backup may accept it again.
                self._set_state("unauthorized", logging.ERROR,
                                "hub %s rejected this node's credential (%s) and the agent has no join "
                                "token: restart it with --token (create one with `gpufleet token create`); "
                                "snapshots are kept in %s meanwhile", self._display, detail, self.spool.path)
                return self._backoff()
            self._previous, self._credential = self._credential, None
            self.credentials.forget(self.hub, self.node)
            if self._fresh_registration:
                self._set_state("unauthorized", logging.ERROR,
                                "hub %s rejects the credential it just issued (%s); retrying with backoff",
                                self._display, detail)
                return self._backoff()
            log.info("hub %s rejected this node's credential (%s); registering again with the join token",
                     self._display, detail)
            return 0.0
        if code in (400, 413, 422):
            return self._rejected(batch, code, detail, len(body))
        if code == 429 or code >= 500 or code == 408:
            self._set_down(f"HTTP {code}")
            return self._backoff()
        # 3xx, 403, 404, 405, ...: not a gpufleet hub at this URL, or a proxy in the way.
        where = f" (redirect to {redact_url(resp.headers.get('location', '?'))})" if 300 <= code < 400 else ""
        self._set_state("misconfigured", logging.ERROR,
                        "hub %s answered HTTP %d%s to a push: is --hub the hub's base URL? %s; "
                        "snapshots are kept in %s meanwhile", self._display, code, where, detail, self.spool.path)
        return self._backoff()

    def _compact_body(self, batch: list[Entry]) -> tuple[bytes, list[str]] | None:
        """The batch in the compact encoding and the ids of the shapes it uses; None if it cannot be.

        A shape goes along when the hub has not acknowledged it yet (first use, new shape,
        after a 409); the spool keeps JSON, so old spools drain the same way. An entry this
        agent cannot read goes as JSON, for the hub to refuse it by name.
        """
        parts = [compact.MAGIC]
        ids: list[str] = []
        with_shape: set[str] = set()
        for e in batch:
            try:
                rest = from_json(e.data)
            except msgspec.DecodeError:
                return None
            shape, values = compact.split(rest)
            sid = compact.shape_id(shape)
            send = sid not in self._shapes_sent and sid not in with_shape
            if send:
                with_shape.add(sid)
            parts.append(compact.encode_frame(sid, rest, values, shape if send else None))
            ids.append(sid)
        return b"".join(parts), ids

    def _rejected(self, batch: list[Entry], code: int, detail: str, body_len: int) -> float:
        """400/422 malformed, 413 too large. Split the batch until the culprit stands alone, drop it."""
        if len(batch) > 1:
            # Nothing of a refused batch is stored, so resending the halves is safe. Each refusal
            # at least halves the batch, so this ends at one snapshot: no endless loop.
            self._limit = max(1, len(batch) // 2)
            if code == 413:
                self._max_body = max(1, body_len // 2)  # the hub's size limit does not change: keep it
            log.debug("hub refused a batch of %d (HTTP %d); retrying in halves", len(batch), code)
            return 0.0
        entry = batch[0]
        self.spool.ack([entry.seq])
        self.rejected += 1
        reason = "too large" if code == 413 else "malformed"
        log.error("hub %s refused a snapshot as %s (HTTP %d: %s); dropped it (%d bytes of JSON)",
                  self._display, reason, code, detail, len(entry.data))
        return 0.0

    def _register(self, timeout: float | None) -> bool:
        if self._token is None:
            self._set_state("unauthorized", logging.ERROR,
                            "no credential for hub %s and no join token: restart the agent with --token "
                            "(create one with `gpufleet token create`)", self._display)
            return False
        body: dict[str, object] = {"node": self.node, "labels": self.labels, "agent_url": self.agent_url}
        if self.advertised:
            body["advertised"] = True
        if self._previous:
            body["credential"] = self._previous
        try:
            resp = self._client.post(self.hub + REGISTER_PATH, json=body,
                                     headers={"Authorization": f"Bearer {self._token}"}, timeout=timeout)
        except HTTPError as e:
            self._unreachable(e)
            return False
        if resp.status_code == 200:
            try:
                credential = resp.json()["credential"]
                if not isinstance(credential, str) or not credential:
                    raise TypeError
            except (ValueError, KeyError, TypeError):
                self.failed += 1
                self._set_state("misconfigured", logging.ERROR,
                                "hub %s answered registration without a credential: is --hub a gpufleet hub?",
                                self._display)
                return False
            self._credential = credential
            self._pin_command_key(resp)
            self._fresh_registration = True
            self.registrations += 1
            try:
                self.credentials.save(self.hub, self.node, credential)
            except OSError as e:  # still usable this run; the next start needs the token again
                log.warning("cannot store the node credential in %s: %s", self.credentials.path, e)
            log.info("registered node %s with hub %s", self.node, self._display)
            return True
        self.failed += 1
        if resp.status_code in (403, 409):
            # The name is taken by another agent, or an admin revoked this node: the token is fine.
            self._set_state("refused", logging.ERROR,
                            "hub %s refuses to register node %s: %s; snapshots are kept in %s meanwhile",
                            self._display, self.node, _detail(resp), self.spool.path)
        elif resp.status_code == 401:
            self._set_state("unauthorized", logging.ERROR,
                            "hub %s refused the join token (%s): create a new one with `gpufleet token create` "
                            "and restart with --token; snapshots are kept in %s meanwhile",
                            self._display, _detail(resp), self.spool.path)
        elif resp.status_code >= 500 or resp.status_code in (408, 429):
            self._set_down(f"HTTP {resp.status_code}")
        else:
            self._set_state("misconfigured", logging.ERROR,
                            "hub %s answered HTTP %d to registration (%s): is --hub the hub's base URL?",
                            self._display, resp.status_code, _detail(resp))
        return False

    def _pin_command_key(self, resp: Response) -> None:
        """Pin the hub's command-signing key (agent/commands.py verifies every command with it)."""
        try:
            key = resp.json().get("command_key")
        except (ValueError, AttributeError):
            key = None
        if isinstance(key, str) and key:
            try:
                self.credentials.pin_hub_key(self.hub, key)
            except OSError as e:
                log.warning("cannot pin the hub's command key in %s: %s", self.credentials.path, e)

    # ---- state, backoff and logging ----------------------------------------------------

    def _backoff(self) -> float:
        """Capped exponential backoff with jitter, so a fleet does not retry in lockstep."""
        if self._skip_backoff:  # just moved to another hub not tried in this round: try it now
            self._skip_backoff = False
            return 0.0
        self._attempts += 1
        ceiling = min(self.backoff_cap, self.backoff_base * 2 ** min(self._attempts - 1, 30))
        return float(max(self.backoff_base, ceiling * random.uniform(0.75, 1.0)))

    def _set_state(self, state: str, level: int, msg: str, *args: object, exc_info: bool = False) -> None:
        """Log a problem once when entering it, not on every retry."""
        if self._state != state:
            log.log(level, msg, *args, exc_info=exc_info)
            if self._down_since is None:
                self._down_since = time.monotonic()
        self._state = state

    def _unreachable(self, e: HTTPError) -> None:
        tls = describe_tls_error(e)
        if tls is None:
            self._set_down(_describe(e))
            return
        # Not an outage: retrying will not help until someone fixes --ca or --hub. Said once, loudly.
        self.failed += 1
        self._set_state("tls", logging.ERROR, "cannot talk to hub %s: %s; snapshots are kept in %s meanwhile",
                        self._display, tls, self.spool.path)

    def _set_down(self, reason: str) -> None:
        self.failed += 1
        if not self._hubs.several:
            self._set_state("down", logging.WARNING,
                            "hub %s unreachable (%s): spooling snapshots in %s and retrying with backoff",
                            self._display, reason, self.spool.path)
            return
        was, old = self._state, self._display
        self._set_state("down", logging.WARNING,
                        "hub %s unreachable (%s): spooling snapshots in %s and trying the other hubs",
                        old, reason, self.spool.path)
        self._skip_backoff = self._hubs.fail_over()
        self._use_current_hub()
        # Every move is said (at INFO once the first one was a WARNING): an operator follows a node.
        log.log(logging.WARNING if was != "down" else logging.INFO, "hub %s unreachable (%s): pushing to hub %s%s",
                old, reason, self._display, "" if self._skip_backoff else " after a backoff (every hub failed)")

    def _use_current_hub(self) -> None:
        """After a move: this hub's own credential (each hub issues its own at registration)."""
        self._credential = self.credentials.load(self.hub, self.node)
        self._previous = None
        self._fresh_registration = False
        self._limit = self.batch_size
        # What the last hub knew (series shapes) or lacked (the compact push) says nothing of this one.
        self._shapes_sent.clear()
        self._compact_off_until = 0.0

    def _set_up(self) -> None:
        if self._state != "up":
            if self._down_since is not None:
                waited = time.monotonic() - self._down_since
                if self._hubs.several:
                    log.info("pushing to hub %s after %.0f s of failures; backfilling %d spooled snapshots",
                             self._display, waited, len(self.spool))
                else:
                    log.info("hub %s is back after %.0f s; backfilling %d spooled snapshots",
                             self._display, waited, len(self.spool))
                self._backfilling = True
            elif self._state == "starting":
                log.info("pushing snapshots to hub %s", self._display)
            self._down_since = None
        self._state = "up"
        dropped = self.spool.dropped
        if dropped > self._dropped_reported:
            log.warning("spool was full: %d oldest snapshots were dropped while the hub was away",
                        dropped - self._dropped_reported)
            self._dropped_reported = dropped

    def _note_drained(self) -> None:
        if self._backfilling and self._state == "up":
            log.info("backfill to hub %s complete", self._display)
            self._backfilling = False


def _describe(e: HTTPError) -> str:
    # The message names the failure ("ConnectionRefusedError: [Errno 111] Connection refused");
    # it carries no headers, so no secret.
    return (str(e) or type(e).__name__)[:200]


def _detail(resp: Response) -> str:
    """The hub's {"detail": ...} message, shortened, for error logs."""
    try:
        detail = resp.json().get("detail", "")
    except (ValueError, AttributeError):
        detail = resp.text
    text = str(detail).strip() or resp.reason_phrase
    return text[:300]


def _json_int(resp: Response, key: str) -> int:
    try:
        value = resp.json().get(key, 0)
        return int(value) if isinstance(value, (int, float)) else 0
    except (ValueError, AttributeError):
        return 0


# ---- wiring ---------------------------------------------------------------------------------


def attach_pusher(service: AgentService, cfg: AgentConfig, **kwargs: object) -> Pusher | None:
    """Make `service` push to cfg.hub: listener + running pusher thread. None when no hub is set.

    The caller stops it with `Pusher.stop()` on shutdown. Extra keyword arguments go to Pusher
    (tests use them for short backoffs).
    """
    if not cfg.hub:
        return None
    hubs = parse_hubs(cfg.hub)
    # One spool for all hubs (a snapshot is sent to exactly one), named after the first: with one
    # hub the same directory as ever, and adding hubs after it keeps the queue.
    spool_dir = Path(cfg.spool) if cfg.spool else default_spool_dir(hubs[0], cfg.node)
    credentials = CredentialStore(spool_dir / CREDENTIAL_FILENAME)
    if not cfg.token and any(credentials.load(h, cfg.node) is None for h in hubs):
        raise UserError(MISSING_TOKEN)
    spool = Spool(spool_dir)
    scheme = "https" if cfg.tls_cert else "http"
    pusher = Pusher(hubs, cfg.node, spool, credentials, token=cfg.token, labels=cfg.labels,
                    agent_url=agent_url_for(cfg.listen, scheme, cfg.advertise),
                    advertised=cfg.advertise is not None, verify=client_verify(cfg.ca),
                    **kwargs)  # type: ignore[arg-type]
    listener: Callable[[NodeSnapshot], None] = pusher.enqueue
    service.listeners.append(listener)
    pusher.start()
    return pusher
