"""Pages of the accounting (hub/usage): /usage (ranking, trend, months, each person's own view),
/jobs (every job seen) and /jobs/KEY (one job across its nodes, with a verdict).

The figures are the API's own (hub/usage/report.py and jobs.py, called here in-process), so
a page, /api/v1/usage and `gpufleet report` never disagree. Mounted by routes.py; a hub
without the usage extension answers these pages with a 404 saying so.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.responses import HTMLResponse

from ...catalogue import name_of
from ..auth import Role, require

if TYPE_CHECKING:
    from ..usage.extension import UsageExtension

PERIODS = ("7d", "30d", "90d", "365d")
Page = Callable[..., HTMLResponse]


def mount(app: FastAPI, page: Page, not_found: Callable[[Request, str], HTMLResponse],
          script_json: Callable[[Any], str]) -> None:
    viewer = require(Role.VIEWER)

    def usage_ext() -> UsageExtension | None:
        return getattr(app.state, "usage", None)

    def error(request: Request, e: HTTPException) -> HTMLResponse:
        status = e.status_code
        return page(request, "error.html", status=status, title="Not found" if status == 404 else "Cannot show this",
                    message=str(e.detail))

    @app.get("/usage", include_in_schema=False, dependencies=[viewer])
    async def usage_page(request: Request, since: str = Query("30d"), until: str | None = Query(None),
                         by: str = Query("user"), user: str | None = Query(None)) -> HTMLResponse:
        ext = usage_ext()
        if ext is None:
            return not_found(request, "Accounting is not part of this hub.")
        from ..usage.api import by_param, period_param, scope_user
        from ..usage.report import monthly, trend, usage

        now = time.time()
        try:
            s, u = period_param(since, until, now)
            by_ = by_param(by)
            who = scope_user(request, ext, user)
        except HTTPException as e:
            return error(request, e)
        with ext.read_lock:
            rows = usage(ext.reader, s, u, by_, now=now, user=who, prices=ext.prices)
            tr = trend(ext.reader, "user" if who is None else "node", s, u, user=who)
            months = monthly(ext.reader, "user", now - 365 * 86400, user=who, prices=ext.prices)
            groups = monthly(ext.reader, "group", now - 365 * 86400, user=who, prices=ext.prices)
        initial = {"since": s, "until": u, "since_text": since, "until_text": until, "by": by_, "user": who,
                   "rows": rows, "trend": tr, "monthly": months, "monthly_groups": groups, "periods": PERIODS,
                   "priced": ext.prices.any()}
        title = f"Usage of {who}" if who else "Usage"
        return page(request, "usage.html", title=title, nav="usage", initial=script_json(initial))

    @app.get("/jobs", include_in_schema=False, dependencies=[viewer])
    async def jobs_page(request: Request, user: str | None = Query(None), running: bool = Query(False),
                        since: str = Query("30d")) -> HTMLResponse:
        ext = usage_ext()
        if ext is None:
            return not_found(request, "Accounting is not part of this hub.")
        from ..usage.api import period_param, scope_user
        from ..usage.jobs import jobs

        now = time.time()
        try:
            s, _ = period_param(since, None, now)
            who = scope_user(request, ext, user)
        except HTTPException as e:
            return error(request, e)
        with ext.read_lock:
            rows = jobs(ext.reader, since=s, user=who, running=running, limit=2000, prices=ext.prices)
        initial = {"jobs": rows, "user": who, "running": running, "since_text": since, "periods": PERIODS}
        return page(request, "jobs.html", title="Jobs", nav="jobs", initial=script_json(initial))

    @app.get("/jobs/{key:path}", include_in_schema=False, dependencies=[viewer])
    async def job_page(request: Request, key: str) -> HTMLResponse:
        ext = usage_ext()
        if ext is None:
            return not_found(request, "Accounting is not part of this hub.")
        from ..usage.api import scope_user
        from ..usage.jobs import job

        with ext.read_lock:
            j = job(ext.reader, key, prices=ext.prices)
        try:
            who = scope_user(request, ext, None)
        except HTTPException as e:
            return error(request, e)
        if j is None or (who is not None and j["user"] != who):
            return not_found(request, f"No job “{key}” was seen on this hub.")
        metrics = {k: name_of("gpu", k) for k in ("utilization_ratio", "memory_used_bytes", "power_watts")}
        initial = {"job": j, "t": time.time(), "metrics": metrics}
        return page(request, "job.html", title=f"Job {key}", nav="jobs", initial=script_json(initial), job=j)
