"""Embedded time-series store of the gpufleet hub.

Public API::

    store = TimeSeriesStore(path, options=StoreOptions())   # opens / recovers a directory
    store.append(node, ts, keys, values) -> int              # one node push; returns #dropped dups
    store.append_rows(node, timestamps, keys, rows) -> int   # several pushes at once (backfill)
    store.flush()                                            # fsync WAL + series index
    store.maintain(now=None, *, full=False, budget_s=None) -> dict   # cut head, merge, retention
    store.query_range(metric, matchers, start, end, step, agg="avg") -> list[SeriesResult]
    store.latest(node) -> (ts, {SeriesKey: value}) | None
    store.series(metric=None, matchers=()) -> list[dict[str, str]]
    store.stats() -> dict
    store.verify_blocks() -> int                              # check every block's frames now
    store.damage -> list[str]                                 # what was set aside since open
    store.close()

* ``SeriesKey`` = ``(metric, ((label, value), ...))`` with labels sorted by name.
  A series is identified by (node, key); results carry ``__name__`` and, unless
  the key has its own, a ``node`` label.  ``keys`` may be a ``SeriesList`` (a node's keys
  as its label sets: far less memory); handing the same list (or key tuple) object again
  finds its series by identity.
* ``values`` may hold NaN for "absent" (not stored); inf, wrong lengths, duplicate
  keys, non-increasing timestamps and timestamps before 1970 or more than
  ``max_future_s`` (1 h) ahead of the host's clock raise ``ValueError``.  A push whose ts is at
  or before the node's last stored ts is dropped (idempotent retries).
* Appends are written to the WAL with one ``os.write`` before returning, so a
  ``kill -9`` loses nothing that ``append`` returned for; torn WAL tails are
  ignored on recovery.  ``flush()`` adds fsync for power loss.
* Damage never keeps a store from opening: a damaged file or record is set
  aside (``.corrupt``) with one error line on the ``gpufleet.store`` logger
  saying what was lost, and the rest is served (``formats`` lists the file
  format versions; a newer one raises ``StoreFormatError``).  Files are 0600,
  directories 0700.
* ``query_range`` bins are ``[start + i*step, start + (i+1)*step)`` for
  ``start + i*step <= end``; empty bins are omitted.  It reads the coarsest of
  raw / 1 m / 1 h that gives >= 1 point per step and whose retention reaches
  ``start`` (``choose_resolution`` tells which).
* ``maintain`` is the only background work; call it periodically (no threads).
  With ``budget_s`` it stops cutting and merging once that much wall time is
  spent and carries on at the next call (a head cut is a cycle over the nodes,
  a merge advances node by node), so a caller holding a lock around it, as the
  hub does, is never blocked for long: e.g. ``maintain(budget_s=0.05)`` once a
  second.  Without work it returns in about a microsecond.
* One process per directory (flock); one thread at a time per store object
  (the hub serialises calls, e.g. with a lock or a single writer task).
"""
from __future__ import annotations

from .formats import StoreFormatError, StoreInUse
from .serieslist import SeriesList
from .tsdb import SeriesResult, TimeSeriesStore
from .types import HOUR, MINUTE, RAW, Matcher, SeriesKey, StoreOptions

__all__ = ["TimeSeriesStore", "Matcher", "SeriesKey", "SeriesResult", "SeriesList", "StoreOptions", "StoreFormatError",
           "StoreInUse", "RAW", "MINUTE", "HOUR"]
