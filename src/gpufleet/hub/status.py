"""`GET /api/v1/status`: the hub's health in one answer, for `gpufleet status` and scripts.

Healthy means: every background job works, the store takes writes, every node is up, no
alert fires and remote write (when configured) delivers. Anything else is degraded, and
`problems` says what, one line each. Extensions add their part through a `status()` hook.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from .. import __version__
from .sd import sd_problem

if TYPE_CHECKING:
    from .service import Hub


def _store(hub: Hub) -> dict[str, Any]:
    if hub.store is None:
        return {"kind": "external", "ok": True, "paused": False, "problem": None}
    paused = hub.storage_paused()
    problem = None
    if hub.store_broken:
        problem = f"the embedded store could not be opened: {hub.store_broken}"
    elif paused:
        problem = "writes are paused: the data disk is full or below --min-free-space"
    return {"kind": "embedded", "ok": problem is None, "paused": paused, "problem": problem,
            "damaged_total": int(hub.store.stats().get("damaged", 0))}


def _remote_write(hub: Hub, failing: dict[str, str]) -> dict[str, Any]:
    if hub.remote is None:
        return {"configured": False}
    st = hub.remote.stats()
    # The sender retries a refused or unreachable receiver by itself (the job is not "failing"
    # then): it is failing while its last attempt went wrong after its last success.
    retrying = st.last_error_time > st.last_success_time
    return {"configured": True, "url": hub.remote.safe_url, "ok": "remote_write" not in failing and not retrying,
            "queue_samples": st.queue_samples, "samples_sent": st.samples_sent,
            "samples_dropped": st.samples_dropped + st.samples_failed,
            "last_success": st.last_success_time or None, "last_error": st.last_error or None}


def status_report(hub: Hub) -> dict[str, Any]:
    failing = hub.jobs.failing()
    views = sorted(hub.fleet.nodes.values(), key=lambda v: v.name)
    counts = hub.fleet.counts()
    not_up = [{"name": v.name, "status": v.status, "since": v.since, "last_seen": v.last_seen,
               "error": v.error or None} for v in views if v.status != "up"]
    unscraped = [p for p in (sd_problem(v) for v in views) if p]
    report: dict[str, Any] = {
        "version": __version__, "uptime_seconds": round(time.time() - hub.started, 1),
        "store": _store(hub),
        "agents": {**counts, "not_up": not_up, "not_in_service_discovery": unscraped},
        "jobs_failing": failing,
        "remote_write": _remote_write(hub, failing),
        "alerts": {"enabled": False, "firing": []},
    }
    for ext in hub.extensions:
        hook = getattr(ext, "status", None)
        if callable(hook):
            report.update(hook())
    problems = [f"background job {job} is failing: {err}" for job, err in failing.items()]
    if report["store"]["problem"]:
        problems.append(report["store"]["problem"])
    for n in not_up:
        if n["status"] != "moved":  # pushing to another hub of the fleet: fine
            problems.append(f"node {n['name']} is {n['status']}")
    for a in report["alerts"]["firing"]:
        if a.get("silenced"):
            continue  # muted on purpose: someone is on it
        problems.append(f"alert {a['alertname']} is firing" + (f" on {a['node']}" if a.get("node") else "")
                        + f" ({a['severity']})")
    rw = report["remote_write"]
    if rw["configured"] and not rw["ok"] and "remote_write" not in failing:
        problems.append(f"remote write to {rw['url']} is failing: {rw['last_error']}")
    report["status"] = "degraded" if problems else "healthy"
    report["problems"] = problems
    return report
