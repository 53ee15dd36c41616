"""`gpufleet report` (accounting over a period) and `gpufleet jobs` (jobs seen), from a hub.

Both read the hub's API with an API key (`--api-key` or GPUFLEET_API_KEY) through the small
stdlib client the other hub commands use; plain text tables, so they run anywhere.
"""

from __future__ import annotations

import csv
import json
import sys
import time
from typing import Any

import click

from ...errors import UserError
from ..commands.cli import HUB_HELP, KEY_HELP, refusal
from ..commands.client import HubClient
from .period import parse_time

BY = ("user", "group", "job", "node")
FIELDS = ("gpu_hours_in_use", "gpu_hours_busy", "mean_utilization", "energy_kwh", "waste_gpu_hours")


def _check_time(flag: str, text: str) -> str:
    try:
        parse_time(text, time.time(), flag)
    except ValueError as e:
        raise UserError(str(e)) from None
    return text


def _cell(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.2f}"
    if isinstance(v, list):
        return ",".join(str(x) for x in v)
    return str(v)


def _show(col: str, v: Any) -> str:
    if col == "mean_utilization" and isinstance(v, (int, float)):
        return f"{v:.0%}"  # a ratio in JSON and CSV; people read percent
    return _cell(v)


def table(rows: list[dict[str, Any]], cols: list[str], heads: dict[str, str] | None = None) -> str:
    """Aligned plain-text columns: text left, numbers right."""
    heads = heads or {}
    cells = [[heads.get(c, c.upper()) for c in cols]] + [[_show(c, r.get(c)) for c in cols] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(cols))]
    numeric = [all(isinstance(r.get(c), (int, float)) or r.get(c) is None for r in rows) and bool(rows)
               for c in cols]
    lines = []
    for row in cells:
        lines.append("  ".join(v.rjust(w) if num else v.ljust(w) for v, w, num in zip(row, widths, numeric)).rstrip())
    return "\n".join(lines)


def _rows(reply: Any, key: str, hub: str) -> list[dict[str, Any]]:
    """reply[key] when it is a list of objects; else one line (a server that is not this hub)."""
    rows = reply.get(key) if isinstance(reply, dict) else None
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise UserError(f"{hub} did not answer with gpufleet's {key}: is it a gpufleet hub of this version?")
    return rows


def _unreadable(hub: str) -> UserError:
    return UserError(f"{hub} answered rows this gpufleet cannot read: is it a gpufleet hub of this version?")


def _write_csv(rows: list[dict[str, Any]], cols: list[str]) -> None:
    w = csv.DictWriter(sys.stdout, fieldnames=cols, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: (";".join(map(str, v)) if isinstance(v, list) else v) for k, v in r.items()})


@click.command("report")
@click.option("--hub", envvar="GPUFLEET_HUB", default="http://127.0.0.1:8080", show_default=True, help=HUB_HELP)
@click.option("--api-key", envvar="GPUFLEET_API_KEY", default=None, help=KEY_HELP)
@click.option("--since", default="30d", show_default=True,
              help="start: a duration back from now (30d, 12h), a Unix time or an ISO date/time (UTC)")
@click.option("--until", default=None, help="end (default: now), in the same forms")
@click.option("--by", type=click.Choice(BY), default="user", show_default=True)
@click.option("--user", default=None, help="only this user's GPUs")
@click.option("--monthly", is_flag=True, help="one row per UTC month and key (the historical view)")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table", show_default=True)
def report(hub: str, api_key: str | None, since: str, until: str | None, by: str, user: str | None,
           monthly: bool, fmt: str) -> None:
    """GPU-hours in use and busy, mean utilisation, energy and waste per user, group, job or node."""
    _check_time("--since", since)
    if until is not None:
        _check_time("--until", until)
    c = HubClient(hub, api_key)
    query: dict[str, Any] = {"since": since, "by": by}
    if until is not None:
        query["until"] = until
    if user is not None:
        query["user"] = user
    path = ("api", "v1", "usage", "monthly") if monthly else ("api", "v1", "usage")
    status, reply = c.call("GET", c.path(*path, query=query))
    if status != 200:
        raise refusal(status, reply, "read usage")
    rows = _rows(reply, "rows", hub)
    if fmt == "json":
        click.echo(json.dumps(reply, indent=2))
        return
    cols = (["month"] if monthly else []) + [by, *FIELDS]
    if any("cost" in r for r in rows):
        cols.append("cost")
    if by == "job" and not monthly:
        cols += ["user", "nodes"]
    if fmt == "csv":
        _write_csv(rows, cols)
        return
    if not rows:
        click.echo(f"no GPU was held in this period (since {since})", err=True)
        return
    try:
        text = table(rows, cols, {"gpu_hours_in_use": "GPU-H IN USE", "gpu_hours_busy": "GPU-H BUSY",
                                  "mean_utilization": "MEAN UTIL", "energy_kwh": "KWH",
                                  "waste_gpu_hours": "WASTE GPU-H"})
    except (KeyError, TypeError, ValueError):
        raise _unreadable(hub) from None
    click.echo(text)


def _when(t: float | None) -> str:
    return "-" if t is None else time.strftime("%Y-%m-%d %H:%M", time.gmtime(t))


@click.command("jobs")
@click.option("--hub", envvar="GPUFLEET_HUB", default="http://127.0.0.1:8080", show_default=True, help=HUB_HELP)
@click.option("--api-key", envvar="GPUFLEET_API_KEY", default=None, help=KEY_HELP)
@click.option("--user", default=None, help="only this user's jobs")
@click.option("--running", is_flag=True, help="only jobs that hold GPUs now")
@click.option("--since", default="30d", show_default=True, help="jobs that ran after this (30d, a date, ...)")
@click.option("--json", "as_json", is_flag=True, help="print JSON")
def jobs(hub: str, api_key: str | None, user: str | None, running: bool, since: str, as_json: bool) -> None:
    """Jobs seen (Slurm job, pod, container): user, nodes, GPUs, start/end (UTC), GPU-hours, verdict page."""
    _check_time("--since", since)
    c = HubClient(hub, api_key)
    query: dict[str, Any] = {"since": since}
    if user is not None:
        query["user"] = user
    if running:
        query["running"] = "true"
    status, reply = c.call("GET", c.path("api", "v1", "jobs", query=query))
    if status != 200:
        raise refusal(status, reply, "list jobs")
    rows = _rows(reply, "jobs", hub)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo("no jobs" + (" running" if running else f" since {since}"), err=True)
        return
    try:
        shown = [{**r, "start": _when(r["start"]), "end": "running" if r["running"] else _when(r["end"])}
                 for r in rows]
        text = table(shown, ["job", "user", "nodes", "gpus", "start", "end", "gpu_hours_in_use",
                             "mean_utilization", "energy_kwh"],
                     {"gpu_hours_in_use": "GPU-H", "mean_utilization": "MEAN UTIL", "energy_kwh": "KWH"})
    except (KeyError, TypeError, ValueError, OverflowError, OSError):  # OSError/Overflow: gmtime of a bad time
        raise _unreadable(hub) from None
    click.echo(text)
