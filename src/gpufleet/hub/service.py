"""The hub's core, apart from HTTP: ingest, status, pull scraping, background upkeep."""

from __future__ import annotations

import asyncio
import errno
import functools
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import msgspec

from ..series import SeriesCache, SeriesKey, snapshot_series
from ..snapshot import NodeSnapshot, from_json
from . import datadir, loopfirst
from .diskspace import Floor, FreeSpace
from .extensions import Extension
from .fleet import LEAN_LACKS, Fleet, NodeView
from .gcpace import GcPace
from .jobs import Jobs, Paused, describe
from .memtrim import Trimmer
from .readfirst import ReadFirst
from .register import check_labels
from .state import HubState, RegisterRefused, scrub_own_secrets

if TYPE_CHECKING:  # imported where used: a hub with --history never loads the store, and so on
    import httpx

    from ..store import SeriesResult, TimeSeriesStore
    from ..syntax import Matcher
    from .compact_push import Packed, Shapes
    from .elsewhere import Elsewhere
    from .history import PromHistory
    from .remote_write import RemoteWriter
    from .scrape import ScrapeState
    from .targets import Target, TargetsWatcher

log = logging.getLogger("gpufleet.hub")


MAINTAIN_BUDGET_S = 0.1
# A history read of at most this many series runs on the event loop (one node's GPUs: a week
# at 1,000 points ~2 ms); more (one node's CPU cores, the fleet) goes to a worker thread.
INLINE_READ_SERIES = 16

# Every background job, named as in gpufleet_hub_background_errors_total{job=...} and /healthz.
# `ingest` fails while writes are paused (disk full or below --min-free-space).
JOBS = ("ingest", "status", "save", "flush", "store_upkeep", "pulls", "alerts", "remote_write", "ui")


class PushBody(msgspec.Struct):
    # Raw: each snapshot's own JSON bytes are kept, so the hub serves them without re-encoding.
    snapshots: list[msgspec.Raw]


_snapshot_decoder = msgspec.json.Decoder(NodeSnapshot)


def _span(seconds: float) -> str:
    s = abs(seconds)
    if s >= 86400 * 365 * 100:
        return f"{s:.3g} s"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if s >= size and s % size == 0:
            return f"{int(s // size)}{unit}"
    if s >= 86400:
        return f"{s / 86400:.1f} days"
    return f"{s:.0f} s" if s >= 10 else f"{s:.1f} s"


class StoragePaused(Paused):
    """Why the hub does not store pushes now (reported to the job supervisor as `ingest`)."""


class IngestError(Exception):
    def __init__(self, status: int, message: str, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after  # seconds, sent as Retry-After (503: storage paused)


RETRY_AFTER_S = 30
REMOTE_BEHIND_RETRY_S = 5  # a remote-write backlog drains in seconds once the receiver answers
# An agent's spool holds 100,000 snapshots by default: 5.8 days at the default 5 s interval. A
# week lets any default spool drain after an outage; older data is refused, not stored.
MAX_SAMPLE_AGE_S = 7 * 86400.0
MAX_CLOCK_AHEAD_S = 300.0
SKEW_ALERT_S = 60.0
# How often a node's latest snapshot is saved for a restarted hub to show (and at exit: a clean
# restart loses nothing; after a crash a node shows one at most this old until it pushes again).
# Once a minute, making 1,000 compact-pushed nodes' JSON took ~5% of the hub's CPU.
LATEST_SAVE_S = 300.0
# Of the fleet's nodes saved in one round (every 5 s) at most: twice the pace that keeps up with
# LATEST_SAVE_S. A sixth of 1,000 nodes a round (~180 ms of the GIL) stalled queries at every
# round for the half minute after a start, and then every LATEST_SAVE_S.
LATEST_SAVE_SHARE = 1 / 30
LATEST_SAVE_MIN = 50  # nodes a round may save whatever the fleet's size
DISK_FULL_HOLD_S = 5.0  # after ENOSPC, refuse pushes this long before trying to write again


@dataclass(slots=True)
class HubOptions:
    data: Path = Path("gpufleet-data")
    targets: Path | None = None
    remote_write: str | None = None
    history: str | None = None
    down_after: float = 120.0
    max_push_bytes: int = 32 * 1024 * 1024
    retention: dict[str, float] = field(default_factory=dict)  # raw / 1m / 1h -> seconds
    rules: Path | None = None  # user alert rules (YAML); default DATA/alerts.yaml
    notify: Path | None = None  # notification routes (YAML); default DATA/notify.yaml
    min_free_space: Floor = field(default_factory=Floor)  # stop writing below this much free space
    show_command_lines: bool = False  # command lines for every viewer, not only admins (cmdlines.py)
    tls_cert: Path | None = None  # serve HTTPS (hub/run.py); the session cookie is Secure then
    tls_key: Path | None = None
    # Pushed samples must lie in [now - max_sample_age, now + max_clock_ahead] (hub clock).
    max_sample_age: float = MAX_SAMPLE_AGE_S
    max_clock_ahead: float = MAX_CLOCK_AHEAD_S
    # Accounting (hub/usage): prices for the cost column, and who reads whose usage (all | own).
    price_gpu_hour: float | None = None
    price_kwh: float | None = None
    usage_visibility: str = "all"
    groups_file: Path | None = None  # users' groups (YAML/CSV, allocation/groups.py); rolls figures up by group
    compat: tuple[str, ...] = ()  # other exporters' names on the hub's /metrics (--compat ds01)


@dataclass(slots=True)
class _Pulls:
    """What the pull job keeps between its steps."""

    targets: list[Target] = field(default_factory=list)
    next: dict[str, float] = field(default_factory=dict)  # node -> monotonic time of its next scrape
    client: httpx.AsyncClient | None = None


@dataclass(slots=True)
class Counters:
    """What the hub counts as it works, exported as gpufleet_hub_<name>_total."""

    snapshots: int = 0
    samples: int = 0
    duplicates: int = 0
    rejected: int = 0
    store_errors: int = 0
    scrape_errors: int = 0

    def values(self) -> dict[str, float]:
        return {
            "ingest_snapshots_total": self.snapshots, "ingest_samples_total": self.samples,
            "ingest_duplicates_total": self.duplicates, "ingest_rejected_total": self.rejected,
            "store_errors_total": self.store_errors, "scrape_errors_total": self.scrape_errors,
        }


T = TypeVar("T")


def _after_reads(push: Callable[..., T]) -> Callable[..., T]:
    """A push method that lets others go first (Hub.others_first) and runs a GC pass due after it."""
    @functools.wraps(push)
    def after_reads(self: Hub, *args: Any, **kwargs: Any) -> T:
        self.others_first()
        try:
            return push(self, *args, **kwargs)
        finally:
            self.gc_pass_if_due()  # between pushes
    return after_reads


def _log_failure(task: asyncio.Task[None]) -> None:
    """A background task's unexpected error, logged (refresh() itself handles the history's)."""
    if not task.cancelled() and task.exception() is not None:
        log.error("asking the shared history for moved nodes failed", exc_info=task.exception())


class Hub:
    def __init__(self, opts: HubOptions) -> None:
        self.opts = opts
        datadir.make_private_dir(opts.data)
        self._lock_fd = datadir.lock(opts.data)  # before anything is opened: one hub per directory
        try:
            self._open(opts)
        except BaseException:
            datadir.unlock(self._lock_fd)
            raise

    def _open(self, opts: HubOptions) -> None:
        self.state = HubState(opts.data / datadir.STATE_FILE)
        self.fleet = Fleet(down_after=opts.down_after)
        self.store: TimeSeriesStore | None = None
        self.history: TimeSeriesStore | PromHistory | None = None
        self.remote: RemoteWriter | None = None
        self._store_lock = threading.Lock()
        self.reads_first = ReadFirst()  # history queries go before pushes not yet begun
        self.gc_pace: GcPace | None = None  # the served hub's GC passes on a clock (run.py)
        self.counters = Counters()
        self.last_lag = 0.0
        self._lags: deque[tuple[float, float]] = deque(maxlen=4096)
        self._dirty: set[str] = set()
        self.series_caches: dict[str, SeriesCache] = {}
        self.shapes: dict[str, Shapes] = {}  # per node: the compact push's series shapes
        self.scrape_states: dict[str, ScrapeState] = {}  # per target URL: what its scrapes remember
        self.started = time.time()
        self.jobs = Jobs()
        for job in JOBS:
            self.jobs.add(job)
        self._status_dirty: set[str] = set()
        self._saved_at: dict[str, float] = {}  # node -> when (monotonic) its latest snapshot was saved
        self.free_space = FreeSpace(opts.data, opts.min_free_space)
        self._disk_full_until = 0.0  # monotonic; set when a write met ENOSPC
        self._disk_full = False  # the last write met ENOSPC and none has succeeded since
        self.store_broken = ""  # why the embedded store could not be opened ('' when it is fine)
        self._trimmer = Trimmer()
        # With a history shared with other hubs: which silent nodes another hub hears (elsewhere.py).
        self.elsewhere: Elsewhere | None = None
        self._elsewhere_task: asyncio.Task[None] | None = None  # referenced while it runs
        self._open_storage()
        self._restore()
        self._state_version = self.state.data_version()
        self._registered = self.state.node_names()
        self.command_key: str | None = None  # set by the commands extension: agents pin it at register
        # Features that plug into the hub (alerts, web UI) are attached by the app builder
        # (hub/app.py create_app), not loaded here: a Hub alone runs no feature's threads.
        self.extensions: list[Extension] = []
        # Called with every stored snapshot, oldest first per node, in the ingest thread: each
        # must be cheap and never raise (the occupancy record compares GPU holders, usage/record.py).
        # A compact push's snapshots come without their per-CPU records and without the values
        # of their GPU links (LEAN_LACKS, unless an alert rule reads them): ask Fleet.snapshot().
        self.observers: list[Callable[[NodeSnapshot], None]] = []
        self.targets_watcher: TargetsWatcher | None = None
        self._targets_error = ""
        if opts.targets is not None:
            from .targets import TargetsWatcher

            self.targets_watcher = TargetsWatcher(opts.targets)

    # ---- set up -------------------------------------------------------------------------------

    def _open_storage(self) -> None:
        if self.opts.history:
            from .history import PromHistory

            self.history = PromHistory(self.opts.history)
            from .elsewhere import Elsewhere

            self.elsewhere = Elsewhere(self.history.newest)
        else:
            from ..store import HOUR, MINUTE, RAW, StoreOptions, TimeSeriesStore

            so = StoreOptions()
            names = {"raw": RAW, "1m": MINUTE, "1h": HOUR}
            for name, seconds in self.opts.retention.items():
                so.retention[names[name]] = seconds
            path = self.opts.data / "tsdb"
            try:
                self.store = TimeSeriesStore(str(path), so)
            except (ValueError, OSError):
                raise  # unusable data directory or options: open_hub says so in one line (exit 2)
            except Exception as e:
                # Anything else is damage the store did not handle: start anyway, without history,
                # refusing pushes (agents keep them) so nothing is acknowledged and then lost.
                self.store_broken = describe(e)
                log.error("cannot open the store in %s (%s): the hub runs without history and refuses "
                          "pushes (agents keep them spooled); check it with `gpufleet store check --data %s`",
                          path, self.store_broken, self.opts.data)
                self.jobs.failed("store", e, trace=False)
            self.history = self.store
        if self.opts.remote_write:
            from .remote_write import RemoteWriter

            self.remote = RemoteWriter(self.opts.remote_write)
            self.remote.on_error = lambda e: self.jobs.failed("remote_write", e)
            self.remote.on_ok = lambda: self.jobs.ok("remote_write")
            self.remote.start()

    def _restore(self) -> None:
        for rec in self.state.nodes():
            v = self.fleet.view(rec.name)
            v.labels, v.source, v.agent_url, v.advertised = rec.labels, rec.source, rec.agent_url, rec.advertised
            v.status, v.since, v.last_seen = rec.status, rec.status_since, rec.last_seen
        for name, _ts, data in self.state.load_latest():
            try:
                self.fleet.restore(from_json(data), data)
            except msgspec.DecodeError:
                log.warning("ignoring unreadable saved snapshot of node %s", name)
        # Status after a restart follows data age, as if the hub had been watching.
        self.fleet.sweep(time.time())

    def first_token(self) -> str | None:
        """A join token created at the hub's first start (printed once), else None."""
        if self.state.get_meta("first_token_done"):
            return None
        token = self.state.create_token(note="created at first start")
        self.state.set_meta("first_token_done", "1")
        return token

    # ---- ingest --------------------------------------------------------------------------------

    def decode_push(self, body: bytes, node: str, now: float | None = None) -> list[tuple[NodeSnapshot, bytes]]:
        """Validate a whole push before storing any of it (a bad batch stores nothing).

        Returns (snapshot, its JSON bytes) pairs, oldest first.
        """
        now = time.time() if now is None else now
        if len(body) > self.opts.max_push_bytes:
            raise IngestError(413, f"push body of {len(body)} bytes exceeds the limit of {self.opts.max_push_bytes}")
        body = scrub_own_secrets(body)
        try:
            push = msgspec.json.decode(body, type=PushBody)
        except msgspec.ValidationError as e:
            raise IngestError(400, f"invalid push: {e}") from None
        except msgspec.DecodeError as e:
            raise IngestError(400, f"body is not valid JSON: {e}") from None
        except RecursionError:
            raise IngestError(400, "body is JSON nested too deeply") from None
        out = []
        for i, raw in enumerate(push.snapshots):
            try:
                s = _snapshot_decoder.decode(raw)
            except msgspec.ValidationError as e:
                where = str(e).replace("`$", f"`$.snapshots[{i}]")
                raise IngestError(400, f"invalid snapshot: {where}") from None
            except msgspec.DecodeError as e:  # e.g. invalid UTF-8 inside, which Raw passed over
                raise IngestError(400, f"snapshots[{i}] is not valid JSON: {e}") from None
            except RecursionError:
                raise IngestError(400, f"snapshots[{i}] is JSON nested too deeply") from None
            self._check_snapshot(i, s, node, now)
            out.append((s, bytes(raw)))
        return sorted(out, key=lambda pair: pair[0].timestamp)

    def _check_snapshot(self, i: int, s: NodeSnapshot, node: str, now: float, where: str = "snapshots") -> None:
        if s.node != node:
            raise IngestError(400, f"{where}[{i}].node is {s.node!r} but the credential belongs to {node!r}")
        if not math.isfinite(s.timestamp) or s.timestamp <= 0:
            raise IngestError(400, f"{where}[{i}].timestamp {s.timestamp!r} is not a valid Unix time")
        if s.labels:
            # The same rules as registration: these labels go on every stored and remote-written series.
            try:
                check_labels(s.labels)
            except ValueError as e:
                raise IngestError(400, f"{where}[{i}].labels: {e}") from None
        self._check_time(i, s.timestamp, now, where)

    def _check_time(self, i: int, ts: float, now: float, where: str = "snapshots") -> None:
        """One absurd timestamp must not poison a node (dedup clock, block names): refuse it."""
        ahead = ts - now
        if ahead > self.opts.max_clock_ahead:
            raise IngestError(400, f"{where}[{i}].timestamp {ts!r} is {_span(ahead)} ahead of the hub's clock "
                                   f"(limit --max-clock-ahead {_span(self.opts.max_clock_ahead)}): "
                                   "set the node's clock right (NTP)")
        if -ahead > self.opts.max_sample_age:
            raise IngestError(400, f"{where}[{i}].timestamp {ts!r} is {_span(-ahead)} old "
                                   f"(limit --max-sample-age {_span(self.opts.max_sample_age)}): too old to store")

    def note_clock(self, node: str, sent_at: str | None, now: float) -> None:
        """The node's clock minus the hub's, from the agent's send time (header X-Gpufleet-Sent-At)."""
        if not sent_at:
            return
        try:
            t = float(sent_at)
        except ValueError:
            return
        if not math.isfinite(t):
            return
        v = self.fleet.nodes.get(node)
        if v is not None:
            v.clock_skew = t - now
            v.clock_skew_at = now

    @_after_reads
    def ingest_push(self, body: bytes, node: str, sent_at: str | None = None) -> tuple[int, int]:
        """A push body from `node`, validated whole, then stored. Returns (accepted, duplicates)."""
        now = time.time()
        self.note_clock(node, sent_at, now)
        self._refuse_while_remote_behind(node)
        try:
            pairs = self.decode_push(body, node, now)
        except IngestError as e:
            self._refused(node, e)
            raise
        v = self.fleet.nodes.get(node)
        skew = v.clock_skew if v is not None else None
        if skew is not None:
            for snap, _ in pairs:
                snap.agent["clock_skew_seconds"] = skew  # stored beside the node's data, alertable
        try:
            return self.ingest([snap for snap, _ in pairs], None, [raw for _, raw in pairs])
        except IngestError as e:
            self._refused(node, e)
            raise

    def _refused(self, node: str, e: IngestError) -> None:
        """What a refused push says about its node (either push encoding)."""
        if e.status == 503:
            # The node is alive; only the hub cannot store now: its status must not say otherwise.
            self.fleet.heard(node, time.time())
        elif e.status == 400 and "--max-clock-ahead" in str(e):
            v = self.fleet.nodes.get(node)
            if v is not None:
                v.error = str(e)  # shown on the node page: why a node with a wrong clock is not up

    @_after_reads
    def ingest_compact(self, body: bytes, node: str, sent_at: str | None = None) -> tuple[int, int]:
        """A compact push body (gpufleet/compact.py) from `node`, validated whole, then stored."""
        from .compact_push import CompactError, Shapes, decode

        now = time.time()
        self.note_clock(node, sent_at, now)
        self._refuse_while_remote_behind(node)
        if len(body) > self.opts.max_push_bytes:
            raise IngestError(413, f"push body of {len(body)} bytes exceeds the limit of {self.opts.max_push_bytes}")
        shapes = self.shapes.get(node)
        if shapes is None:
            shapes = self.shapes[node] = Shapes()
        # No reader on the ingest path needs what the lean snapshot leaves out (Hub.observers):
        # those values are put back only when the whole snapshot is asked for (Packed.whole()).
        defer = LEAN_LACKS - self.fleet.keep
        try:
            frames = decode(body, shapes, lambda i, s: self._check_snapshot(i, s, node, now, "frames"), defer)
        except CompactError as e:
            raise IngestError(e.status, str(e)) from None
        except IngestError as e:
            self._refused(node, e)
            raise
        frames.sort(key=lambda f: f.snapshot.timestamp)
        v = self.fleet.view(node)
        skew = v.clock_skew
        series: list[tuple[Sequence[SeriesKey], Any]] = []
        for f in frames:
            if skew is not None:
                f.snapshot.agent["clock_skew_seconds"] = skew  # as a JSON push: stored beside the node's data
            keys, values = f.series({"node": node, **f.snapshot.labels, **v.labels}, skew)
            series.append((keys, values))
        try:
            return self.ingest([f.snapshot for f in frames], now, [f.packed(skew) for f in frames], series, defer)
        except IngestError as e:
            self._refused(node, e)
            raise

    def ingest(self, snapshots: list[NodeSnapshot], now: float | None = None,
               raw: Sequence[bytes | Packed] | None = None,
               series: list[tuple[Sequence[SeriesKey], Any]] | None = None,
               lacking: frozenset[str] = frozenset()) -> tuple[int, int]:
        """Store snapshots of one node, oldest first. Returns (accepted, duplicates).

        `raw`, when given, holds each snapshot's JSON as received (served as is later), or what a
        compact push brought of it; `series`, each snapshot's series keys and values when the
        caller has them (compact push); `lacking`, scopes whose records in `snapshots` are
        without their values (Fleet.update).
        """
        now = time.time() if now is None else now
        self._check_writable()
        accepted = dups = 0
        newest: NodeSnapshot | None = None
        newest_raw: bytes | Packed | None = None
        try:
            for i, snap in enumerate(snapshots):
                v = self.fleet.view(snap.node)
                if series is not None:
                    keys, values = series[i]
                else:
                    labels = {**snap.labels, **v.labels}
                    cache = self.series_caches.get(snap.node)
                    if cache is None:
                        cache = self.series_caches[snap.node] = SeriesCache()
                    keys, values = snapshot_series(snap, labels, cache)
                dropped = 0
                if self.store is not None:
                    dropped = self._store_append(snap, keys, values)
                elif v.snapshot is not None and snap.timestamp <= v.snapshot.timestamp:
                    dropped = 1
                if dropped:
                    dups += 1
                    continue
                accepted += 1
                self.counters.samples += len(values)
                for observe in self.observers:
                    observe(snap)
                if self.remote is not None:
                    self.remote.submit(keys, values, snap.timestamp)
                newest = snap
                newest_raw = raw[i] if raw is not None else None
        finally:
            # What was stored before a failure still counts (the resent batch finds it a duplicate).
            if newest is not None:
                self.fleet.update(newest, now, newest_raw, lacking)
                self._dirty.add(newest.node)
                lag = max(0.0, now - newest.timestamp)
                self.last_lag = lag
                self._lags.append((now, lag))
            self.counters.snapshots += accepted
            self.counters.duplicates += dups
        if self.store is not None and accepted:
            self._disk_full = False
            self.jobs.ok("ingest")
        return accepted, dups

    def _refuse_while_remote_behind(self, node: str | None) -> None:
        """Without a store the remote TSDB is the only copy: when its queue is half full, refuse
        (503), so agents keep the snapshots in their spools (or move to another hub) instead of
        the queue dropping them. Checked before a push is decoded: a refusal costs next to nothing."""
        if self.store is not None or self.remote is None:
            return
        behind = self.remote.behind()
        if behind:
            if node is not None:
                self.fleet.heard(node, time.time())  # alive; only this hub cannot take data now
            raise IngestError(503, f"{behind}; snapshots are not taken meanwhile (the agent keeps them): "
                                   f"retry after {REMOTE_BEHIND_RETRY_S} s", REMOTE_BEHIND_RETRY_S)

    def _check_writable(self) -> None:
        """Refuse (503, Retry-After) while the disk is full or below the free-space floor."""
        if self.store_broken:
            raise IngestError(503, f"the hub's store could not be opened ({self.store_broken}): snapshots are "
                                   f"not stored until it is repaired; retry after {RETRY_AFTER_S} s", RETRY_AFTER_S)
        if self.store is None:
            self._refuse_while_remote_behind(None)
            return
        reason = self.free_space.below_floor()
        if not reason and time.monotonic() < self._disk_full_until:
            reason = "the hub's disk is full: free space on it"
        if reason:
            # A fixed text for the supervisor: the free bytes change at each push, the cause does not.
            self.jobs.failed("ingest", StoragePaused("disk full" if "full" in reason
                                                     else "free space below --min-free-space"))
            raise IngestError(503, f"{reason}; snapshots are not stored meanwhile (the agent keeps them): "
                                   f"retry after {RETRY_AFTER_S} s", RETRY_AFTER_S)

    def _store_append(self, snap: NodeSnapshot, keys: Sequence[SeriesKey], values: Sequence[float]) -> int:
        assert self.store is not None  # ingest calls this only with the embedded store
        try:
            with self._store_lock:
                return int(self.store.append(snap.node, snap.timestamp, keys, values))
        except ValueError as e:
            self.counters.store_errors += 1
            raise IngestError(400, f"snapshot at {snap.timestamp} refused by the store: {e}") from None
        except OSError as e:
            self.counters.store_errors += 1
            if e.errno in (errno.ENOSPC, errno.EDQUOT):
                self._disk_full_until = time.monotonic() + DISK_FULL_HOLD_S
                self.free_space.refresh(force=True)
                reason = "the hub's disk is full: free space on it"
            else:
                reason = f"the hub cannot write its store ({e.strerror or e})"
            self._disk_full = True
            self.jobs.failed("ingest", StoragePaused("disk full" if e.errno in (errno.ENOSPC, errno.EDQUOT)
                                                     else f"cannot write the store ({e.strerror or e})"))
            raise IngestError(503, f"{reason}; retry after {RETRY_AFTER_S} s", RETRY_AFTER_S) from None

    def storage_paused(self) -> bool:
        return self.store is not None and (self._disk_full or bool(self.free_space.below_floor()))

    def lag_max(self, now: float, window: float = 60.0) -> float:
        """Largest lag among live (non-backfill) snapshots stored in the last minute."""
        # tuple() copies in one C call (no thread runs meanwhile): ingest threads append while
        # /metrics reads, and iterating the deque itself raised "deque mutated during iteration".
        live = [lag for t, lag in tuple(self._lags) if now - t <= window and lag < 10 * self.fleet.down_after]
        return max(live, default=0.0)

    # ---- registration ---------------------------------------------------------------------------

    def check_register_secret(self, secret: str) -> None:
        """Before a registration's body is read: is `secret` a usable join token or node credential?"""
        if self.state.credential_holder(secret) is not None:
            return
        problem = self.state.token_problem(secret)
        if problem is not None:
            raise IngestError(401, f"{problem}: create one on the hub with `gpufleet token create`")

    def register(self, secret: str, node: str, labels: dict[str, str], agent_url: str | None, *,
                 credential: str | None = None, advertised: bool = False) -> str:
        """`secret` is a join token or the node's own credential; `credential` the node's, if sent."""
        own = credential
        token: str | None = secret
        if own is None and self.state.credential_holder(secret) == node:
            own, token = secret, None
        try:
            cred = self.state.register(node, labels, agent_url, token=token, credential=own, advertised=advertised)
        except RegisterRefused as e:
            log.warning("refused registration of node %s: %s", node, e)
            raise IngestError(e.status, str(e)) from None
        self._registered.add(node)
        v = self.fleet.view(node)
        v.labels, v.agent_url, v.source, v.advertised = labels, agent_url, "push", advertised
        log.info("node %s registered", node)
        return cred

    def authenticate(self, credential: str) -> str:
        node = self.state.node_for_credential(credential)
        if node is None:
            self.counters.rejected += 1
            raise IngestError(401, "unknown or revoked node credential: register again with a join token")
        return node

    # ---- upkeep -----------------------------------------------------------------------------------

    def tick(self, now: float | None = None) -> None:
        """Once a second: node status from data age.

        In memory only: a failing disk or database must never keep a dead node `up`. The
        changes are saved by the `save` job.
        """
        now = time.time() if now is None else now
        heard = self.elsewhere.heard if self.elsewhere is not None else None
        for name, old, new in self.fleet.sweep(now, heard):
            log.info("node %s is %s (was %s)", name, new, old)
            self._status_dirty.add(name)

    def sync_state(self) -> None:
        """Apply what a CLI command changed in hub.db beside the running hub (`node forget`).

        Credential checks notice such a change themselves (HubState.credential_holder), so a
        revoke needs nothing here; a forgotten node must also leave the live view, or it would be
        shown and saved again.
        Runs in the `save` job (every few seconds), which owns the hub's writes to hub.db.
        """
        version = self.state.data_version()
        if version == self._state_version:
            return
        self._state_version = version
        names = self.state.node_names()
        for name in self._registered - names:
            if self.fleet.forget(name):
                self.series_caches.pop(name, None)
                self.shapes.pop(name, None)
                self._dirty.discard(name)
                self._status_dirty.discard(name)
                self._saved_at.pop(name, None)
                self.state.forget_node(name)  # a save that raced the CLI's delete
                log.info("node %s was forgotten by an admin", name)
        self._registered = names

    def save_latest(self, force: bool = False) -> None:
        """Save changed statuses now, and changed nodes' latest snapshots every LATEST_SAVE_S (or
        when `force`d, at exit), in one transaction; on failure they are kept to retry.

        A snapshot is saved only so that a restarted hub shows every node at once; each node's
        next push replaces it within seconds, so a few minutes old one does: rewriting 1,000 nodes'
        ~90 KB snapshots every 5 s wrote ~17 MB/s to hub.db. The nodes due are spread over the
        rounds (at most a thirtieth of the fleet, or LATEST_SAVE_MIN nodes, a round): a compact-pushed
        node's JSON is made here, ~1 ms of the GIL each, and 1,000 at once held it for ~1.5 s.
        """
        self.sync_state()
        now_m = time.monotonic()
        status_dirty, self._status_dirty = self._status_dirty, set()
        dirty = self._latest_due(now_m, force)
        try:
            statuses: list[tuple[str, str, float, float | None]] = []
            items: list[tuple[str, float, bytes]] = []
            for name in dirty | status_dirty:
                self.yield_point()  # making a node's JSON shares the GIL with reads: they go first
                v = self.fleet.nodes.get(name)
                if v is None:
                    continue
                statuses.append((name, v.status, v.since, v.last_seen))
                snap = v.snapshot
                # A compact-pushed node's JSON is made here, every LATEST_SAVE_S (not kept: ~85 KB a node).
                data = self.fleet.latest_json(v, keep=False) if name in dirty else None
                if snap is not None and data is not None:
                    items.append((name, snap.timestamp, data))
            self.state.save_nodes(statuses, items)
            for name in dirty:
                self._saved_at[name] = now_m
        except BaseException:
            self._dirty |= dirty
            self._status_dirty |= status_dirty
            raise

    def _latest_due(self, now_m: float, force: bool) -> set[str]:
        """The changed nodes whose latest snapshot is saved this round (taken out of `_dirty`):
        those saved longest ago first, none saved within LATEST_SAVE_S, at most a share a round."""
        if force:
            due, self._dirty = self._dirty, set()
            return due
        saved = self._saved_at
        never = float("-inf")
        ready = [n for n in self._dirty if now_m - saved.get(n, never) >= LATEST_SAVE_S]
        cap = max(LATEST_SAVE_MIN, math.ceil(len(self.fleet.nodes) * LATEST_SAVE_SHARE))
        if len(ready) > cap:
            ready.sort(key=lambda n: saved.get(n, never))
            del ready[cap:]
        due = set(ready)
        self._dirty -= due
        return due

    def maintain(self) -> None:
        self._trimmer.maybe()  # freed buffers (head cuts, closed streams) back to the OS
        if self.store is None:
            return
        try:
            with self._store_lock:
                # A small slice each second: a whole-fleet head cut in one go held ingest
                # up for seconds at 1,000 nodes. A read waiting for the store's lock ends the
                # slice at the next node (it waited up to the whole budget).
                self.store.maintain(budget_s=MAINTAIN_BUDGET_S, yield_to=self.reads_first.busy)
        except Exception:
            self.counters.store_errors += 1
            raise

    async def run_background(self, stop: asyncio.Event) -> None:
        """The hub's background jobs, each step supervised by `self.jobs` (see jobs.py)."""
        last_save = last_maint = last_flush = time.monotonic()
        pulls = _Pulls()
        try:
            while not stop.is_set():
                now_m = time.monotonic()
                await self.jobs.run("status", self.tick)
                if self.elsewhere is not None and self.elsewhere.due(now_m):
                    silent = self.fleet.silent()
                    if (silent or self.elsewhere.heard) and self.elsewhere.take_turn(now_m):
                        # Not awaited: a slow history must not hold up the status tick.
                        task = asyncio.create_task(asyncio.to_thread(self.elsewhere.refresh, silent))
                        task.add_done_callback(_log_failure)
                        self._elsewhere_task = task
                if now_m - last_flush >= 1.0 and self.store is not None:
                    last_flush = now_m
                    await self.jobs.run("flush", self._flush_store, thread=True)
                if now_m - last_save >= 5.0 or self._status_dirty:
                    last_save = now_m
                    await self.jobs.run("save", self.save_latest, with_pushes=True)
                if now_m - last_maint >= 1.0:
                    last_maint = now_m
                    await self.jobs.run("store_upkeep", self.maintain, thread=True)
                if self.targets_watcher is not None:
                    await self.jobs.run("pulls", self._pull_step, pulls, now_m)
                try:
                    await asyncio.wait_for(stop.wait(), timeout=1.0)
                except asyncio.TimeoutError:
                    pass
        finally:
            if pulls.client is not None:
                await pulls.client.aclose()

    async def _pull_step(self, pulls: _Pulls, now_m: float) -> None:
        watcher = self.targets_watcher
        assert watcher is not None  # the pulls job runs only with --targets
        new = watcher.poll()
        err = str(watcher.last_error or "")
        if err != self._targets_error:
            self._targets_error = err
            if err:
                log.error("targets file has an error, keeping the last good targets: %s", err)
            else:
                log.info("targets file loaded: %d target(s)", len(watcher.targets))
        if new is not None:
            pulls.targets = new
            for t in new:
                labels = {k: val for k, val in t.labels.items() if k != "node"}  # node is the name
                self.state.upsert_pulled(t.node, labels, t.url)
                v = self.fleet.view(t.node)
                v.labels, v.source, v.agent_url = labels, "pull", t.url
        if pulls.targets:
            import httpx

            if pulls.client is None:
                pulls.client = httpx.AsyncClient(timeout=10)
            due = [t for t in pulls.targets if pulls.next.get(t.node, 0) <= now_m]
            for t in due:
                pulls.next[t.node] = now_m + t.interval
            if due:
                await asyncio.gather(*(self._scrape(t, pulls.client) for t in due))

    def _flush_store(self) -> None:
        # The WAL is written on every append; flushing once a second bounds a power cut's loss.
        assert self.store is not None  # the flush job runs only with the embedded store
        try:
            with self._store_lock:
                sync = self.store.flush_later()
            sync()  # the fsyncs without the store's lock: reads and appends go on meanwhile
        except Exception:
            self.counters.store_errors += 1
            raise

    async def _scrape(self, target: Target, client: httpx.AsyncClient) -> None:
        from .scrape import ScrapeError, ScrapeState, scrape_async

        state = self.scrape_states.setdefault(target.url, ScrapeState(node=target.node))
        try:
            snap = await scrape_async(target, client, state=state)
        except ScrapeError as e:
            self.counters.scrape_errors += 1
            self.fleet.mark_failed(target.node, str(e), time.time())
            return
        await asyncio.to_thread(self.ingest, [snap])

    def close(self) -> None:
        for ext in self.extensions:
            try:
                ext.close()
            except Exception:
                log.exception("extension %s failed to close", type(ext).__name__)
        if self.remote is not None:
            self.remote.stop()
        try:
            self.save_latest(force=True)
        except Exception as e:  # disk full at exit: the next start restores from the store's data
            log.error("could not save the fleet's latest state at exit: %s", e)
        if self.store is not None:
            with self._store_lock:
                self.store.close()
        self.state.close()
        datadir.unlock(self._lock_fd)

    # ---- reads ------------------------------------------------------------------------------------

    def node(self, name: str) -> NodeView | None:
        return self.fleet.nodes.get(name)

    def yield_point(self) -> None:
        """Between two steps of a long job on the ingest thread (an alert evaluation, the save):
        history reads running now and the awake event loop go first, and a GC pass due runs here,
        over what the job made so far. After a whole evaluation (~26,000 new objects at 1,000
        nodes: a column cache per node) the next pass took 20-30 ms holding the GIL; a read
        arriving then waited."""
        self.others_first()
        self.gc_pass_if_due()

    def others_first(self) -> None:
        """Before a push or a step of a long job: history reads running now finish first
        (readfirst.py), and the event loop runs what woke it (loopfirst.py)."""
        self.reads_first.wait()
        loopfirst.wait()

    def gc_pass_if_due(self) -> None:
        """The served hub's GC pass, when due and no read runs (gcpace.py; none in-process)."""
        pace = self.gc_pace
        if pace is not None:
            pace.maybe()

    def read_gate(self) -> AbstractContextManager[None]:
        """Held by an API read from its authentication to its answer (app.py's query_range): the
        pushes not yet begun, alert evaluation and the latest-snapshot save wait meanwhile, so the
        read's hops between the event loop and a worker thread do not queue behind them for the
        GIL (each hop could wait a whole switch interval, 5 ms, behind the ingest thread). Only
        for the embedded store: a --history read waits on the network, pushes must not."""
        return self.reads_first.reading() if self.store is not None else nullcontext()

    def query_range(self, metric: str, matchers: list[Matcher], start: float, end: float, step: float,
                    agg: str, background: bool = False) -> list[SeriesResult]:
        """History of `metric`. A reader somebody waits for (the API, pages) goes before pushes not yet
        begun (readfirst.py); a `background` one (usage settling, a stream of queries for half a
        second) lets both go first: it held pushes 0.25 s and week queries ~300 ms every 30 s."""
        if self.store_broken:
            raise IngestError(503, f"no history: the hub's store could not be opened ({self.store_broken})")
        if self.store is not None:
            with self.reads_first.reading(first=not background), self._store_lock:
                return list(self.store.query_range(metric, matchers, start, end, step, agg))
        assert self.history is not None  # opened at start: the store or --history
        return list(self.history.query_range(metric, matchers, start, end, step, agg))

    def query_range_now(self, metric: str, matchers: list[Matcher], start: float, end: float, step: float,
                        agg: str) -> list[SeriesResult] | None:
        """The same read on the caller's thread, or None at once where it would wait or take long:
        the store busy (a push or its upkeep holds it), none here (--history: the network), or
        more than INLINE_READ_SERIES series to read (one node's CPU cores, say). For the event
        loop (app.py), which must not block."""
        if self.store is None or self.store_broken:
            return None
        with self.reads_first.reading():
            if not self._store_lock.acquire(blocking=False):
                return None
            try:
                if self.store.count_series(metric, matchers) > INLINE_READ_SERIES:
                    return None
                return list(self.store.query_range(metric, matchers, start, end, step, agg))
            finally:
                self._store_lock.release()

    def values(self) -> dict[str, float]:
        """The hub's own metrics (catalogue scope "hub"): its core, then each part's values() hook."""
        now = time.time()
        counts = self.fleet.counts()
        values: dict[str, float] = {
            **self.counters.values(),
            "ingest_lag_seconds": self.last_lag, "ingest_lag_max_seconds": self.lag_max(now),
            "nodes_up": counts["up"], "nodes_stale": counts["stale"], "nodes_down": counts["down"],
            "nodes_moved": counts["moved"],
        }
        if self.store is not None:
            values["storage_paused"] = 1.0 if self.storage_paused() else 0.0
            if self.free_space.free >= 0:
                values["disk_free_bytes"] = float(self.free_space.free)
            st = self.store.stats()
            values["store_bytes"] = float(st.get("bytes_on_disk", 0))
            values["store_series"] = float(st.get("series", 0))
            values["store_damaged_total"] = float(st.get("damaged", 0))
        for part in [self.remote, *self.extensions]:
            if part is not None:
                values.update(part.values())
        return values
