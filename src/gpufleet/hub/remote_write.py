"""Prometheus remote write (1.0) from the hub: every stored sample also goes to an external TSDB.

The hub's ingest path calls ``RemoteWriter.submit`` once per push; it only appends to a bounded
in-memory queue, so a slow or dead receiver never slows ingest. A background thread drains the
queue in batches, encodes a protobuf ``WriteRequest`` by hand (the schema is four tiny messages,
not worth a protobuf dependency), snappy-compresses it (block format, via cramjam) and POSTs it.

Delivery follows the remote-write spec: 2xx is done; 5xx, 429 and connection errors are retried
with capped exponential backoff (the batch is held, newer samples keep queueing); any other 4xx
means the receiver will never take this batch, so it is dropped and counted. When the queue is
full the oldest samples are dropped, because fresh data is worth more to a monitoring system.

Credentials may sit in the URL (``https://user:pass@host/...``) or in ``headers``; neither is
ever logged or put into an error message: logs use ``redact_url``.
"""

from __future__ import annotations

import logging
import math
import struct
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from urllib.parse import SplitResult, unquote, urlsplit, urlunsplit

import cramjam
import httpx

from ..series import SeriesKey
from ..syntax import redact_url

log = logging.getLogger(__name__)

PROTOCOL_HEADERS = {
    "Content-Encoding": "snappy",
    "Content-Type": "application/x-protobuf",
    "X-Prometheus-Remote-Write-Version": "0.1.0",
}


# ---------------------------------------------------------------- URLs and secrets


def split_credentials(url: str, *, what: str, schemes: Iterable[str] = ("http", "https")) -> tuple[str, httpx.BasicAuth | None]:
    """Validate an http(s) URL; return it without user:pass plus the BasicAuth they stand for.

    Taking the credentials out of the URL keeps them out of httpx's request URL, and so out of
    any exception text that quotes it. Raises ValueError naming the (redacted) URL.
    """
    try:
        p = urlsplit(url)
        port = p.port  # raises on a non-numeric or out-of-range port
    except ValueError as exc:
        raise ValueError(f"{what} URL {redact_url(url)!r} is not valid: {exc}") from None
    if p.scheme not in tuple(schemes):
        raise ValueError(f"{what} URL {redact_url(url)!r} must start with one of "
                         f"{', '.join(s + '://' for s in schemes)}")
    if not p.hostname:
        raise ValueError(f"{what} URL {redact_url(url)!r} has no host")
    auth = None
    if p.username is not None or p.password is not None:
        auth = httpx.BasicAuth(unquote(p.username or ""), unquote(p.password or ""))
    host = p.hostname if ":" not in p.hostname else f"[{p.hostname}]"
    netloc = f"{host}:{port}" if port else host
    clean = urlunsplit(SplitResult(p.scheme, netloc, p.path, p.query, ""))
    return clean, auth


# ---------------------------------------------------------------- protobuf encoding
#
# WriteRequest { repeated TimeSeries timeseries = 1; }
# TimeSeries   { repeated Label labels = 1; repeated Sample samples = 2; }
# Label        { string name = 1; string value = 2; }
# Sample       { double value = 1; int64 timestamp = 2; }   // timestamp in ms


_SMALL = [bytes((i,)) for i in range(0x80)]  # one-byte varints: most lengths in a WriteRequest


def _varint(n: int) -> bytes:
    if 0 <= n < 0x80:
        return _SMALL[n]
    if n < 0:
        n += 1 << 64  # int64 negatives are encoded as their 64-bit two's complement
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _len_field(tag: int, payload: bytes) -> bytes:
    return bytes((tag,)) + _varint(len(payload)) + payload


_DOUBLE = struct.Struct("<d")


def encode_labels(labels: Iterable[tuple[str, str]],
                  pairs: dict[tuple[str, str], bytes] | None = None) -> bytes:
    """The TimeSeries' label fields (field 1, repeated). Labels must already be sorted by name.

    ``pairs`` caches each (name, value)'s encoded field: a fleet's series share most of them
    (node, gpu, model, cluster), so a node's first push encodes few labels afresh.
    """
    out = []
    for pair in labels:
        field = pairs.get(pair) if pairs is not None else None
        if field is None:
            body = _len_field(0x0A, pair[0].encode()) + _len_field(0x12, pair[1].encode())
            field = _len_field(0x0A, body)
            if pairs is not None:
                pairs[pair] = field
        out.append(field)
    return b"".join(out)


def encode_sample(value: float, ts_ms: int) -> bytes:
    """One TimeSeries sample field (field 2), with both Sample fields written even when zero."""
    body = b"\x09" + _DOUBLE.pack(value) + b"\x10" + _varint(ts_ms)
    return _len_field(0x12, body)


def series_labels(key: SeriesKey) -> tuple[tuple[str, str], ...]:
    """All labels of a series key, ``__name__`` included, sorted by name as the spec requires."""
    name, labels = key
    return tuple(sorted((("__name__", name), *labels)))


def encode_write_request(series: Iterable[tuple[SeriesKey, Sequence[tuple[int, float]]]],
                         label_cache: dict[SeriesKey, bytes] | None = None) -> bytes:
    """Serialize ``[(series key, [(ts_ms, value), ...]), ...]`` as a WriteRequest (uncompressed).

    Samples of one series are written oldest first (receivers reject out-of-order samples).
    ``label_cache`` lets a long-lived caller reuse encoded label blocks: the labels of a series
    never change, and they are most of the bytes.
    """
    out = bytearray()
    for key, samples in series:
        lab = label_cache.get(key) if label_cache is not None else None
        if lab is None:
            lab = encode_labels(series_labels(key))
            if label_cache is not None:
                label_cache[key] = lab
        body = bytearray(lab)
        for ts_ms, v in sorted(samples, key=lambda s: s[0]):
            body += encode_sample(v, ts_ms)
        out += _len_field(0x0A, bytes(body))
    return bytes(out)


def snappy_block(data: bytes) -> bytes:
    """Snappy *block* format (not the framed/stream format), which remote write mandates."""
    return bytes(cramjam.snappy.compress_raw(data))


# ---------------------------------------------------------------- the writer


@dataclass(slots=True)
class RemoteWriteStats:
    samples_sent: int = 0  # accepted by the receiver (2xx)
    samples_failed: int = 0  # rejected by the receiver (4xx): dropped, never retried
    samples_dropped: int = 0  # pushed out of the full queue, or left over at stop()
    requests_total: int = 0  # HTTP attempts, retries included
    retries_total: int = 0  # attempts that will be repeated (5xx, 429, connection errors)
    queue_samples: int = 0
    last_error: str = ""
    last_error_time: float = 0.0
    last_success_time: float = 0.0

    def as_dict(self) -> dict[str, int | float | str]:
        return asdict(self)


_Chunk = tuple[list[SeriesKey], list[float], int]  # keys, values, ts_ms


class RemoteWriter:
    """Queue samples and send them to a remote-write receiver from a background thread.

    ``start()`` launches the sender; ``stop()`` drains what it can within its timeout.
    ``submit`` is cheap and never blocks on the network; it is safe from any thread.
    """

    def __init__(self, url: str, *, max_batch_samples: int = 5000, max_queue_samples: int = 1_000_000,
                 timeout: float = 10.0, headers: Mapping[str, str] | None = None,
                 min_backoff: float = 0.1, max_backoff: float = 10.0) -> None:
        self.url, self._auth = split_credentials(url, what="remote write")
        self.safe_url = redact_url(url)
        if max_batch_samples < 1 or max_queue_samples < 1:
            raise ValueError("max_batch_samples and max_queue_samples must be >= 1")
        if not timeout > 0 or not 0 < min_backoff <= max_backoff:
            raise ValueError("timeout must be > 0 and 0 < min_backoff <= max_backoff")
        self.max_batch_samples = max_batch_samples
        self.max_queue_samples = max_queue_samples
        self.timeout = timeout
        self.min_backoff = min_backoff
        self.max_backoff = max_backoff
        # User headers first so nobody can accidentally override the protocol's own.
        self._headers = {**dict(headers or {}), **PROTOCOL_HEADERS, "User-Agent": "gpufleet-remote-write"}
        self._queue: deque[_Chunk] = deque()
        self._queued = 0
        self._in_flight = 0
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._closed = False
        self._drain_deadline = math.inf
        self._thread: threading.Thread | None = None
        self._stats = RemoteWriteStats()
        self._label_cache: dict[SeriesKey, bytes] = {}
        self._prefix_head = b""  # the sample field head the cached prefixes end with
        self._pair_cache: dict[tuple[str, str], bytes] = {}
        # The hub's job supervisor hears of unexpected errors (bugs), not of a receiver being down.
        self.on_error: Callable[[BaseException], None] | None = None
        self.on_ok: Callable[[], None] | None = None

    # -- producer side

    def submit(self, keys: Sequence[SeriesKey], values: Sequence[float], ts: float) -> None:
        """Enqueue one push's samples, all at ``ts`` (seconds). NaN values mean absent: skipped."""
        if len(keys) != len(values):
            raise ValueError(f"submit: {len(keys)} keys but {len(values)} values")
        ks: list[SeriesKey] = []
        vs: list[float] = []
        for k, v in zip(keys, values):
            fv = float(v)
            if fv == fv:  # not NaN
                ks.append(k)
                vs.append(fv)
        if not ks:
            return
        with self._cond:
            if self._closed:
                self._stats.samples_dropped += len(ks)
                return
            self._queue.append((ks, vs, int(round(ts * 1000))))
            self._queued += len(ks)
            self._trim_locked()
            self._cond.notify()

    def behind(self) -> str:
        """Why new samples should wait (the queue is half full: the receiver is slow or down), or "".

        A hub without its own store acknowledges a push only while this is "": past it, the agents'
        spools hold the data instead of this queue, which would drop its oldest samples when full.
        """
        waiting = self._queued + self._in_flight  # two int reads: no lock on the ingest path
        if waiting * 2 < self.max_queue_samples:
            return ""
        return f"remote write to {self.safe_url} is behind ({waiting} samples waiting)"

    def _trim_locked(self) -> None:
        # Drop the oldest samples first; trim the oldest chunk partially so the bound is exact.
        while self._queued > self.max_queue_samples:
            over = self._queued - self.max_queue_samples
            ks, vs, t = self._queue[0]
            if len(ks) <= over:
                self._queue.popleft()
                n = len(ks)
            else:
                self._queue[0] = (ks[over:], vs[over:], t)
                n = over
            self._queued -= n
            self._stats.samples_dropped += n

    # -- lifecycle

    def start(self) -> None:
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="gpufleet-remote-write", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop accepting samples, try to deliver the queue for up to ``timeout`` s, then quit.

        Whatever is still queued or unsent after that is counted as dropped.
        """
        with self._cond:
            self._closed = True
            self._drain_deadline = time.monotonic() + timeout
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout + self.timeout + 1.0)
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(self.timeout + 1.0)
        with self._cond:
            self._stats.samples_dropped += self._queued
            self._queue.clear()
            self._queued = 0

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything submitted so far has been sent or given up on; True if so."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._queued or self._in_flight:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
        return True

    def values(self) -> dict[str, float]:
        """The hub's remote_write_* metrics (catalogue scope "hub")."""
        st = self.stats()
        return {
            "remote_write_samples_total": st.samples_sent,
            # Refused by the receiver (4xx) or left over: either way never delivered.
            "remote_write_dropped_total": st.samples_dropped + st.samples_failed,
            "remote_write_failed_samples_total": st.samples_failed,
            "remote_write_requests_total": st.requests_total,
            "remote_write_retries_total": st.retries_total,
            "remote_write_queue_samples": st.queue_samples,
            "remote_write_last_error_timestamp_seconds": st.last_error_time,
            "remote_write_last_success_timestamp_seconds": st.last_success_time,
        }

    def stats(self) -> RemoteWriteStats:
        with self._cond:
            self._stats.queue_samples = self._queued
            return RemoteWriteStats(**asdict(self._stats))

    # -- sender thread

    def _take_batch(self) -> list[_Chunk] | None:
        with self._cond:
            while not self._queue or self._giving_up():
                # Past the drain deadline the rest is abandoned (stop() counts it as dropped)
                # rather than tried batch by batch against a receiver that is likely down.
                if self._closed or self._stop.is_set():
                    return None
                self._cond.wait(1.0)
            batch: list[_Chunk] = []
            n = 0
            while self._queue and n < self.max_batch_samples:
                ks, vs, t = self._queue[0]
                room = self.max_batch_samples - n
                if len(ks) <= room:
                    self._queue.popleft()
                    batch.append((ks, vs, t))
                    n += len(ks)
                else:  # split a big push across batches
                    batch.append((ks[:room], vs[:room], t))
                    self._queue[0] = (ks[room:], vs[room:], t)
                    n += room
            self._queued -= n
            self._in_flight = n
            return batch

    def _encode(self, batch: list[_Chunk]) -> bytes:
        """One TimeSeries per sample, in queue order, from cached per-series prefixes.

        A chunk is one push: its series are distinct and share one timestamp, and a series met
        again in a later chunk of the batch has a later sample, so each series' samples stay in
        order without grouping or sorting (receivers take repeated series). Per sample this is a
        dict lookup and a float pack (~4 us a sample with the grouped encoder, most of a
        store-less hub's remote-write cost).
        """
        cache = self._label_cache  # series key -> b"\x0a" + length + labels + sample field head
        if len(cache) > 2_000_000:  # bound memory under series churn (~5,000 nodes of ~1,000 series)
            cache.clear()
        if len(self._pair_cache) > 200_000:  # label values churn too (pids, jobs)
            self._pair_cache.clear()
        parts: list[bytes] = []
        add = parts.append
        pack = _DOUBLE.pack
        for ks, vs, t in batch:
            tail = b"\x10" + _varint(t)
            sample_len = 9 + len(tail)  # \x09 + 8 bytes of double + the timestamp field
            head = b"\x12" + _varint(sample_len) + b"\x09"
            if head != self._prefix_head:  # another timestamp width (not in this millennium): new prefixes
                cache.clear()
                self._prefix_head = head
            for k, v in zip(ks, vs):
                prefix = cache.get(k)
                if prefix is None:
                    lab = encode_labels(series_labels(k), self._pair_cache)
                    prefix = cache[k] = b"\x0a" + _varint(len(lab) + len(head) + 8 + len(tail)) + lab + head
                add(prefix)
                add(pack(v))
                add(tail)
        return snappy_block(b"".join(parts))

    def _run(self) -> None:
        with httpx.Client(timeout=self.timeout, auth=self._auth, headers=self._headers) as client:
            while True:
                batch = self._take_batch()
                if batch is None:
                    return
                n = sum(len(ks) for ks, _, _ in batch)
                try:
                    body = self._encode(batch)
                    self._deliver(client, body, n)
                except Exception as exc:  # a bug must not kill the sender thread
                    self._record(failed=n, error=f"internal error: {type(exc).__name__}")
                    if self.on_error is not None:
                        self.on_error(exc)
                    else:
                        log.exception("remote write to %s: unexpected error", self.safe_url)
                else:
                    if self.on_ok is not None:
                        self.on_ok()
                finally:
                    with self._cond:
                        self._in_flight = 0
                        self._cond.notify_all()

    def _giving_up(self) -> bool:
        return self._stop.is_set() or (self._closed and time.monotonic() >= self._drain_deadline)

    def _deliver(self, client: httpx.Client, body: bytes, n: int) -> None:
        attempt = 0
        while True:
            retry_error = ""
            with self._cond:
                self._stats.requests_total += 1
            try:
                r = client.post(self.url, content=body)
            except httpx.HTTPError as exc:
                # httpx's message does not include the URL, and the URL holds no credentials anyway.
                retry_error = f"{type(exc).__name__}: {exc}"
            else:
                if 200 <= r.status_code < 300:
                    self._record(sent=n)
                    return
                detail = r.text[:200].strip().replace("\n", " ")
                if r.status_code == 429 or r.status_code >= 500:
                    retry_error = f"HTTP {r.status_code}: {detail}"
                else:
                    msg = f"HTTP {r.status_code}: {detail}"
                    log.error("remote write to %s rejected %d samples (not retried): %s", self.safe_url, n, msg)
                    self._record(failed=n, error=msg)
                    return
            if self._giving_up():
                self._record(dropped=n, error=retry_error)
                return
            delay = min(self.max_backoff, self.min_backoff * (2 ** attempt))
            attempt += 1
            with self._cond:
                self._stats.retries_total += 1
            self._record(error=retry_error)
            # Log the first failure and then sparsely, so a long outage does not flood the log.
            if attempt == 1 or attempt % 10 == 0:
                log.warning("remote write to %s failed (attempt %d, retrying in %.1fs): %s",
                            self.safe_url, attempt, delay, retry_error)
            if self._closed:
                delay = min(delay, max(0.0, self._drain_deadline - time.monotonic()))
            self._stop.wait(delay)

    def _record(self, *, sent: int = 0, failed: int = 0, dropped: int = 0, error: str = "") -> None:
        with self._cond:
            s = self._stats
            s.samples_sent += sent
            s.samples_failed += failed
            s.samples_dropped += dropped
            now = time.time()
            if sent:
                s.last_success_time = now
            if error:
                s.last_error = error
                s.last_error_time = now
