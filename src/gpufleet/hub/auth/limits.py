"""Per-client limits: request rates (token buckets), login failures (sliding windows), open streams.

All in memory and bounded: the tables forget idle clients, so a scan from many addresses cannot
grow them without end. Each refusal says how long to wait (HTTP 429 with Retry-After).
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass

MAX_CLIENTS = 10_000  # entries kept per table; the least recently seen are dropped first


class TooMany(Exception):
    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = max(1, math.ceil(retry_after))


@dataclass(slots=True)
class _Bucket:
    tokens: float
    at: float


class RateLimiter:
    """`rate` requests a second per client, in bursts of up to `burst`."""

    def __init__(self, rate: float, burst: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate, self.burst, self.clock = rate, burst, clock
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def check(self, client: str) -> None:
        if self.rate <= 0:
            return
        now = self.clock()
        b = self._buckets.pop(client, None) or _Bucket(self.burst, now)
        b.tokens = min(self.burst, b.tokens + (now - b.at) * self.rate)
        b.at = now
        self._buckets[client] = b
        if len(self._buckets) > MAX_CLIENTS:
            self._buckets.popitem(last=False)
        if b.tokens < 1:
            raise TooMany(f"more than {self.rate:g} requests a second from {client}: slow down",
                          (1 - b.tokens) / self.rate)
        b.tokens -= 1


class FailureWindow:
    """At most `limit` failures per key within `window` seconds (login attempts)."""

    def __init__(self, limit: int, window: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit, self.window, self.clock = limit, window, clock
        self._fails: OrderedDict[str, deque[float]] = OrderedDict()

    def check(self, key: str, what: str) -> None:
        q = self._fails.get(key)
        if not q:
            return
        now = self.clock()
        while q and q[0] <= now - self.window:
            q.popleft()
        if len(q) >= self.limit:
            raise TooMany(f"too many failed logins for {what}: try again later", q[0] + self.window - now)

    def fail(self, key: str) -> None:
        q = self._fails.pop(key, None) or deque()
        q.append(self.clock())
        while len(q) > self.limit:
            q.popleft()
        self._fails[key] = q
        if len(self._fails) > MAX_CLIENTS:
            self._fails.popitem(last=False)

    def clear(self, key: str) -> None:
        self._fails.pop(key, None)


class StreamCaps:
    """At most `per_client` open live-update streams per client and `total` in all."""

    def __init__(self, per_client: int, total: int) -> None:
        self.per_client, self.total = per_client, total
        self.open: dict[str, int] = {}
        self.count = 0

    def acquire(self, client: str) -> StreamSlot:
        if self.count >= self.total:
            raise TooMany(f"the hub has {self.total} live streams open: try again later", 10)
        if self.open.get(client, 0) >= self.per_client:
            raise TooMany(f"{client} has {self.per_client} live streams open: close some pages", 10)
        self.open[client] = self.open.get(client, 0) + 1
        self.count += 1
        return StreamSlot(self, client)

    def release(self, client: str) -> None:
        n = self.open.get(client, 0) - 1
        if n > 0:
            self.open[client] = n
        else:
            self.open.pop(client, None)
        self.count = max(0, self.count - 1)


class StreamSlot:
    """One open stream; released once, by the stream's end or, if it never started, when dropped."""

    def __init__(self, caps: StreamCaps, client: str) -> None:
        self._caps: StreamCaps | None = caps
        self.client = client

    def release(self) -> None:
        caps, self._caps = self._caps, None
        if caps is not None:
            caps.release(self.client)

    def __del__(self) -> None:
        self.release()
