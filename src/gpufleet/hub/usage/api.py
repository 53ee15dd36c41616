"""/api/v1/usage (accounting over a period, JSON or CSV), monthly and trend views, /api/v1/jobs.

Who sees what: admins every row; everyone else (viewer, operator) every row too while the hub
runs with the default `--usage-visibility all` (as the live users page shows everyone's
GPUs), or only their own (rows of holds whose user is their account name) with `own`.
"""

from __future__ import annotations

import csv
import io
import time
from typing import TYPE_CHECKING, Any

import msgspec
from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.responses import Response

from ..auth import Principal, Role, require
from ..history import HistoryError
from ..service import IngestError
from . import jobs as jobs_mod
from .answer import Answer
from .job_series import MAX_POINTS, job_series
from .db import EVENT_KINDS
from .period import parse_time
from .report import BY, FIELDS, monthly, report, trend

if TYPE_CHECKING:
    from .extension import UsageExtension

VISIBILITY = ("all", "own")
MAX_PERIOD_S = 800 * 86400.0


def period_param(since: str, until: str | None, now: float) -> tuple[float, float]:
    """The asked period as epoch seconds, or a 400 naming what is wrong (the API's and the pages')."""
    try:
        s = parse_time(since, now, "since")
        u = now if until is None else parse_time(until, now, "until")
    except ValueError as e:
        raise HTTPException(400, str(e)) from None
    u = min(u, now)  # figures exist only up to now
    if s >= u:
        raise HTTPException(400, f"since ({s:.0f}) must be before until ({u:.0f}, at most now)")
    if u - s > MAX_PERIOD_S:
        raise HTTPException(400, "the period is longer than 800 days: ask for a shorter one")
    return s, u


def by_param(by: str) -> str:
    """`by` if it is one of BY, else a 400 listing them."""
    if by not in BY:
        raise HTTPException(400, f"by {by!r} is not one of {', '.join(BY)}")
    return by


def scope_user(request: Request, ext: UsageExtension, asked: str | None) -> str | None:
    """The user whose rows a caller may read (None: everyone's)."""
    who: Principal | None = getattr(request.state, "principal", None)
    if ext.hub.opts.usage_visibility == "all" or (who is not None and who.role >= Role.ADMIN):
        return asked
    name = who.name if who is not None else ""
    if asked is not None and asked != name:
        raise HTTPException(403, f"this hub shows each user only their own usage (--usage-visibility own); "
                                 f"{name or 'you'} may not read {asked!r}'s")
    return name


def to_csv(rows: list[dict[str, Any]], columns: list[str]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: (";".join(v) if isinstance(v, list) else v) for k, v in r.items()})
    return buf.getvalue()


def json_body(answer: Answer, since: float, until: float, gpu_hour: float | None, kwh: float | None) -> bytes:
    """GET /api/v1/usage's JSON (msgspec, not FastAPI's encoder: 100,000s of rows by job)."""
    return msgspec.json.encode({"since": since, "until": until, "by": answer.by, "rows": answer.structs(),
                                "prices": {"gpu_hour": gpu_hour, "kwh": kwh}})


def columns(by: str, rows: list[dict[str, Any]]) -> list[str]:
    cols = [by, *FIELDS]
    if any("cost" in r for r in rows):
        cols.append("cost")
    if by == "job":
        cols += ["user", "nodes"]
    return cols


def mount(app: FastAPI, ext: UsageExtension) -> None:
    viewer = require(Role.VIEWER)
    db, lock = ext.reader, ext.read_lock

    @app.get("/api/v1/usage", tags=["accounting"], dependencies=[viewer])
    def usage_route(
        request: Request,
        since: str = Query("30d", description="start: a duration back from now (30d), a Unix time or an ISO date"),
        until: str | None = Query(None, description="end (default: now), in the same forms"),
        by: str = Query("user", description="user | group | job | node"),
        user: str | None = Query(None, description="only this user's holds"),
        format: str = Query("json", description="json | csv"),
    ) -> Any:
        """GPU-hours in use and busy, mean utilisation, energy, waste (idle-held GPU-hours) and
        cost (when the hub has prices) per user, group, job or node over a period."""
        now = time.time()
        s, u = period_param(since, until, now)
        by_ = by_param(by)
        if format not in ("json", "csv"):
            raise HTTPException(400, f"format {format!r} is not one of json, csv")
        with lock:
            answer = report(db, s, u, by_, now=now, user=scope_user(request, ext, user), prices=ext.prices)
        # Written from the answer's columns (answer.py), not from a dict per row: a report by job
        # has a row per job (100,000s on a big fleet).
        if format == "csv":
            return Response(answer.csv(), media_type="text/csv; charset=utf-8",
                            headers={"Content-Disposition": f'attachment; filename="gpufleet-usage-by-{by_}.csv"'})
        return Response(json_body(answer, s, u, ext.prices.gpu_hour, ext.prices.kwh), media_type="application/json")

    @app.get("/api/v1/usage/monthly", tags=["accounting"], dependencies=[viewer])
    def monthly_route(request: Request, by: str = Query("user", description="user | group | job | node"),
                      since: str = Query("365d", description="from this time (whole months from then)"),
                      user: str | None = Query(None), format: str = Query("json", description="json | csv")) -> Any:
        """The same figures per UTC month and user (or group, job, node): the historical view."""
        now = time.time()
        s, _ = period_param(since, None, now)
        by_ = by_param(by)
        with lock:
            rows = monthly(db, by_, s, user=scope_user(request, ext, user), prices=ext.prices)
        if format == "csv":
            return Response(to_csv(rows, ["month", *columns(by_, rows)]), media_type="text/csv; charset=utf-8",
                            headers={"Content-Disposition": f'attachment; filename="gpufleet-monthly-by-{by_}.csv"'})
        return {"by": by_, "rows": rows}

    @app.get("/api/v1/usage/trend", tags=["accounting"], dependencies=[viewer])
    def trend_route(request: Request, by: str = Query("user"), since: str = Query("30d"),
                    until: str | None = Query(None), user: str | None = Query(None),
                    top: int = Query(8, ge=1, le=50)) -> Any:
        """GPU-hours in use per UTC day for the top users (or groups, jobs, nodes); the rest as 'others'."""
        now = time.time()
        s, u = period_param(since, until, now)
        by_ = by_param(by)
        with lock:
            return {"by": by_, **trend(db, by_, s, u, user=scope_user(request, ext, user), top=top)}

    @app.get("/api/v1/usage/events", tags=["accounting"], dependencies=[viewer])
    def events_route(request: Request, since: str = Query("24h"), user: str | None = Query(None),
                     kind: str | None = Query(None, description="gpu_taken | gpu_released | job_started | job_ended"),
                     limit: int = Query(1000, ge=1, le=100000)) -> Any:
        """What the occupancy record saw happen, newest first: GPUs taken and released, jobs started and ended."""
        now = time.time()
        s, _ = period_param(since, None, now)
        if kind is not None and kind not in EVENT_KINDS:
            raise HTTPException(400, f"kind {kind!r} is not one of {', '.join(EVENT_KINDS)}")
        who = scope_user(request, ext, user)
        sql = "SELECT t, kind, node, gpu, user, job FROM events WHERE t >= ?"
        args: list[Any] = [s]
        if who is not None:
            sql, args = sql + " AND user = ?", [*args, who]
        if kind is not None:
            sql, args = sql + " AND kind = ?", [*args, kind]
        with lock:
            rows = db.execute(sql + " ORDER BY t DESC, rowid DESC LIMIT ?", [*args, limit]).fetchall()
        return {"events": [dict(zip(("t", "kind", "node", "gpu", "user", "job"), r)) for r in rows]}

    @app.get("/api/v1/jobs", tags=["accounting"], dependencies=[viewer])
    def jobs_route(request: Request, user: str | None = Query(None), running: bool = Query(False),
                   since: str = Query("30d", description="jobs that ran after this time"),
                   limit: int = Query(500, ge=1, le=10000)) -> Any:
        """Every job seen (Slurm job, pod, container): user, nodes, GPUs, start/end and figures."""
        now = time.time()
        s, _ = period_param(since, None, now)
        with lock:
            rows = jobs_mod.jobs(db, since=s, user=scope_user(request, ext, user), running=running,
                                 limit=limit, prices=ext.prices)
        return {"jobs": rows}

    @app.get("/api/v1/jobs/{key:path}", tags=["accounting"], dependencies=[viewer])
    def job_route(request: Request, key: str,
                  series: bool = Query(True, description="utilisation and memory over the job's life, per slot"),
                  points: int = Query(300, ge=1, le=MAX_POINTS, description="points per line of `series`")) -> Any:
        """One job: its GPUs on every node with their figures, a plain verdict, and utilisation
        and memory over its life per GPU, or per MIG slice for slices (`series`)."""
        with lock:
            job = jobs_mod.job(db, key, prices=ext.prices)
        if job is None:
            raise HTTPException(404, f"no job {key!r} was seen (keys look like slurm:1234, pod:NS/NAME, container:ID)")
        scope = scope_user(request, ext, None)
        if scope is not None and job["user"] != scope:
            raise HTTPException(404, f"no job {key!r} of yours was seen")
        if series:
            # The job's life and a minute either side (the page's charts span the same).
            end = (time.time() if job["running"] else job["end"]) + 60.0
            try:
                job["series"] = job_series(ext.hub.query_range, job, job["start"] - 60.0, end, points)
            except (IngestError, HistoryError, ValueError) as e:  # no store, or --history unreachable: the
                # figures (from usage.db) still stand
                job["series"] = {"error": str(e)}
        return job
