"""History from any Prometheus-compatible query API (Prometheus, VictoriaMetrics, Mimir, Thanos).

``PromHistory`` answers the embedded store's ``query_range`` contract with PromQL, so the hub's
history API and UI need not know where the data lives. ``--history prometheus+http://HOST:PORT``
(or ``prometheus+https://...``, optionally with a path prefix such as ``/select/0/prometheus``
for VictoriaMetrics cluster) selects it.

The store's contract is: output point i stands for the bin [start + i*step, start + (i+1)*step)
and carries that bin's start as its timestamp; empty bins are omitted. PromQL's
``max_over_time(m[w])`` evaluated at t covers (t - w, t]. With millisecond timestamps,
evaluating at t = bin_start + step - 1 ms gives (bin_start - 1 ms, bin_start + step - 1 ms],
i.e. exactly [bin_start, bin_start + step): the same bins, then shifted back onto their starts.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

import httpx
import numpy as np

from ..store import SeriesResult
from ..syntax import METRIC_NAME, Matcher, quote, redact_url
from .remote_write import split_credentials

_FUNCS = {"avg": "avg_over_time", "max": "max_over_time", "min": "min_over_time", "last": "last_over_time"}
# Prometheus refuses range queries of more than 11,000 points per series; stay under it.
_MAX_POINTS = 10_000
_MAX_BINS = 1_000_000  # the embedded store's limit: same errors for the same bad queries


def parse_history_url(url: str) -> tuple[str, httpx.BasicAuth | None]:
    """``prometheus+http(s)://[user:pass@]host:port[/prefix]`` -> (http(s) base URL, auth).

    Raises ValueError naming the (redacted) URL when it is not of that form.
    """
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in ("prometheus+http", "prometheus+https"):
        raise ValueError(f"history URL {redact_url(url)!r} must start with prometheus+http:// or prometheus+https://")
    base, auth = split_credentials(f"{scheme.removeprefix('prometheus+')}://{rest}", what="history")
    return base.rstrip("/"), auth


def selector(metric: str, matchers: Sequence[Matcher]) -> str:
    """PromQL series selector ``{__name__="metric", a="b", ...}``; ValueError on bad names."""
    if not METRIC_NAME.fullmatch(metric):
        raise ValueError(f"invalid metric name {metric!r}")
    parts = [f"__name__={quote(metric)}"]
    parts.extend(m.promql() for m in matchers)  # a Matcher checked its name and op when made
    return "{" + ", ".join(parts) + "}"


def promql(metric: str, matchers: Sequence[Matcher], step: float, agg: str) -> str:
    """The query whose value at t is ``agg`` over the samples in (t - step, t]."""
    if agg not in _FUNCS:
        raise ValueError(f"agg must be one of {sorted(_FUNCS)}, got {agg!r}")
    return f"{_FUNCS[agg]}({selector(metric, matchers)}[{_step_ms(step)}ms])"


def _step_ms(step: float) -> int:
    return max(1, int(round(step * 1000)))


def _check_range(start: float, end: float, step: float) -> int:
    for name, x in (("start", start), ("end", end), ("step", step)):
        if not isinstance(x, (int, float)) or not math.isfinite(x):
            raise ValueError(f"query {name} must be a finite number, got {x!r}")
    if step < 0.001:
        raise ValueError(f"query step must be >= 1 ms, got {step}")
    if end < start:
        raise ValueError(f"query end {end} is before start {start}")
    nbins = int((end - start) // step) + 1
    if nbins > _MAX_BINS:
        raise ValueError(f"query asks for {nbins} points; use a larger step")
    return nbins


class HistoryError(RuntimeError):
    """The query API failed or answered something that is not a PromQL matrix."""


class PromHistory:
    """``query_range`` and ``series`` over a Prometheus-compatible HTTP API."""

    def __init__(self, url: str, *, timeout: float = 30.0, headers: dict[str, str] | None = None) -> None:
        self.base, auth = parse_history_url(url)
        self.safe_url = redact_url(url)
        self._client = httpx.Client(timeout=timeout, auth=auth, headers=headers)

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> PromHistory:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _get(self, path: str, params: dict[str, Any], *, post: bool = False, timeout: float | None = None) -> Any:
        try:
            if post:  # a long query (a regex of many node names) goes in the body, not the URL
                r = self._client.post(self.base + path, data=params,
                                      timeout=timeout if timeout is not None else httpx.USE_CLIENT_DEFAULT)
            else:
                r = self._client.get(self.base + path, params=params)
        except httpx.HTTPError as exc:
            raise HistoryError(f"history server {self.safe_url} unreachable: {type(exc).__name__}: {exc}") from None
        try:
            body = r.json()
        except ValueError:
            body = None
        if r.status_code != 200 or not isinstance(body, dict) or body.get("status") != "success":
            err = body.get("error") if isinstance(body, dict) else r.text[:200]
            raise HistoryError(f"history server {self.safe_url} answered HTTP {r.status_code}: {err}")
        return body.get("data")

    def query_range(self, metric: str, matchers: Sequence[Matcher], start: float, end: float,
                    step: float, agg: str = "avg") -> list[SeriesResult]:
        """Same contract as ``TimeSeriesStore.query_range``: bins [start + i*step, +step), empty ones left out.

        Results carry ``__name__`` (PromQL functions drop it) and whatever labels the remote has.
        """
        nbins = _check_range(start, end, step)
        query = promql(metric, matchers, step, agg)
        # Evaluate at each bin's last millisecond so the PromQL window is the bin (see module doc).
        shift = _step_ms(step) / 1000.0 - 0.001
        by_labels: dict[tuple[tuple[str, str], ...], dict[int, float]] = {}
        for first in range(0, nbins, _MAX_POINTS):
            last = min(nbins, first + _MAX_POINTS) - 1
            data = self._get("/api/v1/query_range", {
                "query": query,
                "start": _fmt(start + first * step + shift),
                "end": _fmt(start + last * step + shift),
                "step": _fmt(step),
                # VictoriaMetrics shifts start/end onto the step for its cache unless told not to.
                "nocache": "1",
            })
            if not isinstance(data, dict) or data.get("resultType") != "matrix":
                raise HistoryError(f"history server {self.safe_url} did not answer a matrix for {query}")
            for item in data.get("result", []):
                labels = {str(k): str(v) for k, v in item.get("metric", {}).items()}
                labels["__name__"] = metric
                points = by_labels.setdefault(tuple(sorted(labels.items())), {})
                for t, v in item.get("values", []):
                    # Rounding to the nearest bin tolerates servers that nudge evaluation times.
                    i = int(round((float(t) - shift - start) / step))
                    if 0 <= i < nbins:
                        points[i] = float(v)
        out: list[SeriesResult] = []
        for labels_t, points in sorted(by_labels.items()):
            if not points:
                continue
            idx = sorted(points)
            out.append(SeriesResult(dict(labels_t), start + np.asarray(idx, dtype=np.float64) * step,
                                    [points[i] for i in idx]))
        return out

    def series(self, metric: str | None = None, matchers: Sequence[Matcher] = (),
               start: float | None = None, end: float | None = None) -> list[dict[str, str]]:
        """Label sets of series matching metric and matchers (via /api/v1/series)."""
        if metric is None:
            if not matchers:
                raise ValueError("series() needs a metric or at least one matcher")
            sel = "{" + ", ".join(m.promql() for m in matchers) + "}"
        else:
            sel = selector(metric, matchers)
        params: dict[str, Any] = {"match[]": sel}
        if start is not None:
            params["start"] = _fmt(start)
        if end is not None:
            params["end"] = _fmt(end)
        data = self._get("/api/v1/series", params)
        return [{str(k): str(v) for k, v in d.items()} for d in data or []]


    def newest(self, metric: str, label: str, values: Sequence[str], timeout: float = 5.0) -> dict[str, float]:
        """For each of `values` of `label` that has a sample of `metric` within the server's lookback
        (5 min by default), the time of its newest sample; one instant query for all of them."""
        if not values:
            return {}
        if not METRIC_NAME.fullmatch(metric) or not METRIC_NAME.fullmatch(label):
            raise ValueError(f"invalid metric or label name {metric!r} / {label!r}")
        alternatives = "|".join(re.escape(v) for v in sorted(set(values)))
        query = f"max by ({label}) (timestamp({{__name__={quote(metric)}, {label}=~{quote(alternatives)}}}))"
        data = self._get("/api/v1/query", {"query": query, "nocache": "1"}, post=True, timeout=timeout)
        if not isinstance(data, dict) or data.get("resultType") != "vector":
            raise HistoryError(f"history server {self.safe_url} did not answer a vector for {query}")
        out: dict[str, float] = {}
        for item in data.get("result", []):
            name = str(item.get("metric", {}).get(label, ""))
            try:
                t = float(item["value"][1])
            except (KeyError, IndexError, TypeError, ValueError):
                continue
            if name and math.isfinite(t):
                out[name] = t
        return out


def _fmt(x: float) -> str:
    # Milliseconds are the finest resolution both Prometheus and VictoriaMetrics keep.
    return f"{x:.3f}"
