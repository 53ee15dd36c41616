"""A bounded, crash-safe, on-disk FIFO of snapshots waiting to be pushed to the hub.

Layout of a spool directory:

    DIR/lock                        flock()ed while an agent uses the spool: two agents never share one
    DIR/queue/00000000000000000042.gz    one gzip-compressed snapshot JSON per file, named by sequence
    DIR/queue/.tmp-...              an entry being written; renamed into place when complete

Why one file per entry: a write is one small file per collection interval (cheap), and removing
what the hub accepted is an unlink, with no compaction. Files are written to a temp name and
renamed, so a crash mid-write leaves only a `.tmp-` file, which is never read and is cleared on
the next open. gzip members carry a CRC-32 and the length of their content, so a damaged entry
fails to decompress and is skipped (and removed, with a log line) instead of poisoning a batch.
Why gzip (the standard library's zlib) and not zstd: the agent install stays small (zstandard
alone is 24 MB installed); a snapshot compresses about as well either way.

The queue is bounded by entry count and by compressed bytes; when full the OLDEST entries are
dropped (the newest state matters most to someone watching) and `dropped` counts them.

If the disk refuses a write (full, read-only) the entry is kept in memory in its place in the
order, so pushing continues while the hub is up; such entries do not survive a restart.
"""

from __future__ import annotations

import gzip
import itertools
import zlib
import logging
import os
import threading
from collections import deque
from dataclasses import dataclass
from pathlib import Path

try:  # flock is POSIX-only; elsewhere the spool simply is not locked
    import fcntl
except ImportError:  # pragma: no cover - non-POSIX
    fcntl = None  # type: ignore[assignment]

from ..errors import UserError

log = logging.getLogger("gpufleet.agent.spool")

DEFAULT_MAX_BYTES = 512 * 1024 * 1024
DEFAULT_MAX_ENTRIES = 100_000
SUFFIX = ".gz"
OLD_SUFFIX = ".zst"  # entries of gpufleet 0.1 before the agent was split off: see _load
TMP_PREFIX = ".tmp-"
SEQ_DIGITS = 20


@dataclass(slots=True)
class _Slot:
    seq: int
    size: int  # compressed bytes, counted against max_bytes
    data: bytes | None = None  # held in memory only when the disk write failed


@dataclass(frozen=True, slots=True)
class Entry:
    seq: int
    data: bytes  # the snapshot's JSON, decompressed


class Spool:
    """FIFO of JSON documents. Thread-safe: one thread puts, another peeks and acks."""

    def __init__(self, path: Path, *, max_bytes: int = DEFAULT_MAX_BYTES,
                 max_entries: int = DEFAULT_MAX_ENTRIES, fsync: bool = False, level: int = 6) -> None:
        if max_entries < 1 or max_bytes < 1:
            raise ValueError("spool bounds must be positive")
        self.path = Path(path)
        self.queue_dir = self.path / "queue"
        self.max_bytes = max_bytes
        self.max_entries = max_entries
        self.fsync = fsync
        self._level = level
        self._lock = threading.Lock()
        self._slots: deque[_Slot] = deque()
        self._bytes = 0
        self._next_seq = 1
        self._lock_fd: int | None = None
        self.dropped = 0  # entries discarded because the spool was full
        self.corrupt = 0  # entries found damaged and removed
        self.write_errors = 0  # puts the disk refused (kept in memory instead)
        self._write_failing = False
        try:
            # 0700 for a directory we create: snapshots carry user names and command lines, and the
            # credential lives beside the queue. An existing directory is the user's choice; left alone.
            if not self.path.exists():
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self.path.mkdir(mode=0o700, exist_ok=True)
            self.queue_dir.mkdir(mode=0o700, exist_ok=True)
        except OSError as e:
            raise UserError(f"cannot create spool directory {self.path}: {e.strerror or e}; "
                            "choose another with --spool DIR") from None
        self._acquire_lock()
        self._load()

    def _acquire_lock(self) -> None:
        if fcntl is None:
            return
        fd = os.open(self.path / "lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise UserError(f"spool directory {self.path} is in use by another gpufleet agent; "
                            "give each agent its own --spool DIR") from None
        self._lock_fd = fd

    def _load(self) -> None:
        """Index what a previous run left; drop torn temp files."""
        seqs: list[tuple[int, int]] = []
        old = 0
        for p in self.queue_dir.iterdir():
            name = p.name
            if name.startswith(TMP_PREFIX):
                _unlink(p)  # a write that never completed: its rename never happened
                continue
            if name.endswith(OLD_SUFFIX):
                old += 1
            if not name.endswith(SUFFIX):
                continue
            try:
                seq = int(name[: -len(SUFFIX)])
                size = p.stat().st_size
            except (ValueError, OSError):
                continue
            seqs.append((seq, size))
        if old:  # left in place, not deleted: they are someone's data, and not readable here
            log.warning("spool %s holds %d snapshots in an older format (*%s files, gpufleet 0.1 before "
                        "the agent was split off); they are not sent: delete them when no longer wanted",
                        self.queue_dir, old, OLD_SUFFIX)
        seqs.sort()
        for seq, size in seqs:
            self._slots.append(_Slot(seq, size))
            self._bytes += size
        if seqs:
            self._next_seq = seqs[-1][0] + 1
            log.info("spool %s holds %d snapshots (%s) from a previous run", self.path, len(seqs),
                     _human(self._bytes))
        with self._lock:
            self._enforce_bounds()

    # ---- producer -----------------------------------------------------------------------

    def put(self, data: bytes) -> int:
        """Append one JSON document; never raises on disk trouble. Returns its sequence number."""
        blob = gzip.compress(data, compresslevel=self._level, mtime=0)
        with self._lock:
            seq = self._next_seq
            self._next_seq += 1
        slot = _Slot(seq, len(blob))
        try:
            self._write(seq, blob)
        except OSError as e:
            self.write_errors += 1
            slot.data = blob
            if not self._write_failing:
                log.error("cannot write to spool %s (%s): keeping snapshots in memory until it works again",
                          self.queue_dir, e.strerror or e)
                self._write_failing = True
        else:
            if self._write_failing:
                log.info("spool %s writable again", self.queue_dir)
                self._write_failing = False
        with self._lock:
            self._slots.append(slot)
            self._bytes += slot.size
            self._enforce_bounds()
        return seq

    def _write(self, seq: int, blob: bytes) -> None:
        final = self._file(seq)
        tmp = self.queue_dir / f"{TMP_PREFIX}{seq}-{os.getpid()}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            view = memoryview(blob)
            while view:
                view = view[os.write(fd, view):]
            if self.fsync:
                os.fsync(fd)
        except OSError:
            os.close(fd)
            _unlink(tmp)
            raise
        os.close(fd)
        os.replace(tmp, final)
        if self.fsync:  # make the rename itself durable
            dfd = os.open(self.queue_dir, os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)

    def _enforce_bounds(self) -> None:
        """Drop oldest until within bounds; caller holds the lock. The newest entry is always kept."""
        dropped = 0
        while len(self._slots) > 1 and (len(self._slots) > self.max_entries or self._bytes > self.max_bytes):
            self._remove(self._slots.popleft())
            dropped += 1
        if dropped:
            if self.dropped == 0:
                log.warning("spool %s is full (%d snapshots, %s): dropping the oldest", self.path,
                            len(self._slots), _human(self._bytes))
            self.dropped += dropped

    # ---- consumer -----------------------------------------------------------------------

    def peek(self, limit: int, max_bytes: int | None = None) -> list[Entry]:
        """Up to `limit` oldest entries, in order, their JSON totalling at most `max_bytes`
        (the first entry is returned whatever its size). Damaged entries are removed and skipped."""
        out: list[Entry] = []
        total = 0
        with self._lock:
            candidates = list(itertools.islice(self._slots, limit * 2))  # room to skip damaged ones
        bad: list[int] = []
        for slot in candidates:
            if len(out) >= limit:
                break
            blob = slot.data
            if blob is None:
                try:
                    blob = self._file(slot.seq).read_bytes()
                except FileNotFoundError:
                    continue  # dropped for room meanwhile
                except OSError as e:
                    log.error("cannot read spool entry %s: %s; skipping it", self._file(slot.seq), e)
                    bad.append(slot.seq)
                    continue
            try:
                data = _gunzip(blob)
            except (OSError, EOFError, zlib.error) as e:
                log.error("spool entry %s is damaged (%s); removing it", self._file(slot.seq), e)
                bad.append(slot.seq)
                continue
            if out and max_bytes is not None and total + len(data) > max_bytes:
                break
            total += len(data)
            out.append(Entry(slot.seq, data))
        if bad:
            self.corrupt += len(bad)
            self.ack(bad)
        return out

    def ack(self, seqs: list[int]) -> None:
        """Remove entries (delivered or rejected). Unknown sequence numbers are ignored."""
        gone = set(seqs)
        if not gone:
            return
        with self._lock:
            # Acks are nearly always the oldest entries: pop them from the front in O(batch);
            # scan the whole queue only for the rare rest (entries dropped for room, damaged ones).
            while self._slots and self._slots[0].seq in gone:
                slot = self._slots.popleft()
                gone.discard(slot.seq)
                self._remove(slot)
            if gone:
                keep: deque[_Slot] = deque()
                for slot in self._slots:
                    if slot.seq in gone:
                        self._remove(slot)
                    else:
                        keep.append(slot)
                self._slots = keep

    def _remove(self, slot: _Slot) -> None:
        self._bytes -= slot.size
        if slot.data is None:
            _unlink(self._file(slot.seq))

    # ---- state --------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._slots)

    @property
    def bytes(self) -> int:
        return self._bytes

    def close(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing releases the flock
            self._lock_fd = None

    def _file(self, seq: int) -> Path:
        return self.queue_dir / f"{seq:0{SEQ_DIGITS}d}{SUFFIX}"


def _gunzip(blob: bytes) -> bytes:
    if not blob:  # gzip reads nothing as an empty document; here it is a damaged entry
        raise EOFError("empty file")
    return gzip.decompress(blob)


def _unlink(p: Path) -> None:
    try:
        p.unlink()
    except FileNotFoundError:
        pass
    except OSError as e:
        log.warning("cannot remove %s: %s", p, e)


def _human(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB"):
        if size < 1024:
            return f"{size:.0f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"
