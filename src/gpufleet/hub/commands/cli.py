"""`gpufleet run` and `gpufleet audit`: remote commands and their audit log, from a terminal.

Both talk to a hub over HTTP with an API key (`--api-key` or GPUFLEET_API_KEY). `run` prints each
node's result as it arrives (server-sent events), cancels the run on Ctrl-C, and exits 0 only if
every node ran the command and it exited 0.
"""

from __future__ import annotations

import csv
import json
import signal
import sys
import time
from typing import Any

import click

from ...errors import UserError
from ...syntax import DurationError, parse_duration
from .client import HubClient, events

HUB_HELP = "hub URL [env GPUFLEET_HUB]"
KEY_HELP = "API key (`gpufleet apikey create`) [env GPUFLEET_API_KEY]"


def refusal(status: int, body: Any, what: str) -> UserError:
    """The one-line error for a hub that refused to `what` (shared by the commands and usage CLIs)."""
    detail = body.get("detail", body) if isinstance(body, dict) else body
    if status == 401:
        return UserError(f"the hub wants an API key to {what}: pass --api-key KEY or set GPUFLEET_API_KEY "
                         f"({detail})")
    if status == 403:
        return UserError(f"not allowed to {what}: {detail}")
    return UserError(f"hub answered HTTP {status} to {what}: {str(detail)[:300]}")


def _duration(flag: str, text: str) -> float:
    try:
        return parse_duration(text)
    except DurationError as e:
        raise UserError(f"{flag}: {e}") from None


# ---- gpufleet run ------------------------------------------------------------------------------

def _print_result(r: dict[str, Any]) -> None:
    status = r["status"]
    dur = f"{r['duration']:.2f} s" if isinstance(r.get("duration"), (int, float)) else ""
    if status in ("ok", "failed"):
        head = f"exit {r.get('exit_code')}  {dur}"
    else:
        head = f"{r.get('reason') or ''}  {dur}".strip()
    click.echo(f"{r['node']}  {status}  {head}".rstrip())
    for stream, mark in (("stdout", "|"), ("stderr", "!")):
        text = r.get(stream) or ""
        for line in text.splitlines():
            click.echo(f"  {mark} {line}")


@click.command("run", context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.option("--hub", envvar="GPUFLEET_HUB", default="http://127.0.0.1:8080", show_default=True, help=HUB_HELP)
@click.option("--nodes", default=None, metavar="GLOB", help="node names to run on, e.g. 'gpu-*' ('*' for all)")
@click.option("--label", "labels", multiple=True, metavar="NAME=VALUE", help="only nodes with this label (repeatable)")
@click.option("--timeout", default="30s", show_default=True, help="per node: kill the command after this long")
@click.option("--parallel", default=32, show_default=True, type=int, help="nodes running the command at once")
@click.option("--api-key", envvar="GPUFLEET_API_KEY", default=None, help=KEY_HELP)
@click.argument("argv", nargs=-1, type=click.UNPROCESSED, metavar="-- CMD [ARGS]...")
def run(hub: str, nodes: str | None, labels: tuple[str, ...], timeout: str, parallel: int, api_key: str | None,
        argv: tuple[str, ...]) -> None:
    """Run a command on many nodes at once (agents with --allow-commands), results as they arrive."""
    if not argv:
        raise UserError("no command given: put it after --, e.g. gpufleet run --nodes '*' -- nvidia-smi -L")
    if nodes is None and not labels:
        raise UserError("say which nodes: --nodes GLOB ('*' for all) and/or --label NAME=VALUE")
    label_map: dict[str, str] = {}
    for item in labels:
        k, sep, v = item.partition("=")
        if not sep or not k:
            raise UserError(f"--label {item!r} is not NAME=VALUE")
        label_map[k.strip()] = v.strip()
    seconds = _duration("--timeout", timeout)
    if not 0 < seconds <= 86400:
        raise UserError("--timeout must be more than 0 and at most 24h")
    if not 1 <= parallel <= 10000:
        raise UserError("--parallel must be between 1 and 10000")
    body = {"argv": list(argv), "nodes": nodes, "labels": label_map, "timeout": seconds, "parallel": parallel}
    started = time.monotonic()
    c = HubClient(hub, api_key)
    # A Ctrl-C while the run is being created is held until its id is known, so that it cancels
    # the run instead of leaving it running unseen.
    interrupted: list[bool] = []
    previous = signal.signal(signal.SIGINT, lambda sig, frame: interrupted.append(True))
    try:
        status, reply = c.call("POST", c.path("api", "v1", "commands"), body)
    except BaseException:
        signal.signal(signal.SIGINT, previous)
        raise
    if status != 201:
        signal.signal(signal.SIGINT, previous)
        if status == 404 and isinstance(reply, dict) and "no node matches" in str(reply.get("detail")):
            raise UserError(str(reply["detail"]))
        raise refusal(status, reply, "run commands")
    results = _follow(c, reply["id"], previous, interrupted)
    _summary(results, time.monotonic() - started)
    sys.exit(0 if results and all(x["status"] == "ok" for x in results) else 1)


def _follow(c: HubClient, run_id: str, handler: Any, interrupted: list[bool]) -> list[dict[str, Any]]:
    """Print results until the run is done; on Ctrl-C cancel it, show what comes back, exit 130."""
    results: list[dict[str, Any]] = []
    try:
        signal.signal(signal.SIGINT, handler)
        if interrupted:
            raise KeyboardInterrupt
        _stream(c, run_id, results)
    except KeyboardInterrupt:
        click.echo("cancelling ...", err=True)
        try:
            c.call("POST", c.path("api", "v1", "commands", run_id, "cancel"), timeout=5)
            _stream(c, run_id, results, deadline=time.monotonic() + 5)
        except (UserError, KeyboardInterrupt):
            pass
        _summary(results, None)
        sys.exit(130)
    return results


def _stream(c: HubClient, run_id: str, results: list[dict[str, Any]], deadline: float | None = None) -> None:
    seen = {r["node"] for r in results}
    left = None if deadline is None else max(0.1, deadline - time.monotonic())
    with c.stream(c.path("api", "v1", "commands", run_id, "events"), timeout=left) as resp:
        if resp.status != 200:
            raw = resp.read()
            try:
                detail: Any = json.loads(raw)
            except ValueError:
                detail = raw.decode(errors="replace")
            raise refusal(resp.status, detail, "follow the run")
        for event, data in events(resp):
            if event == "result" and data["node"] not in seen:
                seen.add(data["node"])
                results.append(data)
                _print_result(data)
            elif event == "done":
                return
            if deadline is not None and time.monotonic() > deadline:
                return
    if deadline is None:
        raise UserError(f"the hub ended the stream of run {run_id} before every result was in (restarting?); "
                        "`gpufleet audit` shows what came back")


def _summary(results: list[dict[str, Any]], seconds: float | None) -> None:
    counts: dict[str, int] = {}
    for r in results:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    parts = ", ".join(f"{n} {s}" for s, n in sorted(counts.items(), key=lambda kv: (kv[0] != "ok", kv[0])))
    took = f" in {seconds:.2f} s" if seconds is not None else ""
    click.echo(f"{len(results)} node(s): {parts or 'no results'}{took}", err=True)


# ---- gpufleet audit ----------------------------------------------------------------------------

COLUMNS = ("time", "who", "run", "node", "status", "exit", "duration", "argv", "reason")


def _rows(runs: list[dict[str, Any]]) -> list[dict[str, str]]:
    import datetime as dt
    import shlex

    out = []
    for run in runs:
        when = dt.datetime.fromtimestamp(run["at"], dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
        base = {"time": when, "who": run.get("who") or "?", "run": run["id"],
                "argv": shlex.join(run["argv"]) if run.get("argv") is not None else "?"}
        results = run.get("results") or []
        if not results:
            out.append({**base, "node": "-", "status": run.get("status") or "", "exit": "", "duration": "",
                        "reason": ""})
        for r in results:
            dur = r.get("duration")
            out.append({**base, "node": r["node"], "status": r["status"],
                        "exit": "" if r.get("exit_code") is None else str(r["exit_code"]),
                        "duration": "" if dur is None else f"{dur:.2f}", "reason": r.get("reason") or ""})
        if run.get("cancelled_by"):
            out.append({**base, "node": "-", "status": f"cancelled by {run['cancelled_by']}", "exit": "",
                        "duration": "", "reason": ""})
    return out


@click.command("audit")
@click.option("--hub", envvar="GPUFLEET_HUB", default="http://127.0.0.1:8080", show_default=True, help=HUB_HELP)
@click.option("--since", default="7d", show_default=True, help="how far back: 30m, 12h, 7d, ...")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table", show_default=True)
@click.option("--api-key", envvar="GPUFLEET_API_KEY", default=None, help=KEY_HELP)
def audit(hub: str, since: str, fmt: str, api_key: str | None) -> None:
    """The remote-command audit log: who ran what where, and each node's result or refusal."""
    seconds = _duration("--since", since)
    c = HubClient(hub, api_key)
    status, reply = c.call("GET", c.path("api", "v1", "audit", query={"since": time.time() - seconds,
                                                                      "limit": 100000}))
    if status != 200:
        raise refusal(status, reply, "read the audit log")
    runs = reply["runs"]
    if fmt == "json":
        click.echo(json.dumps(runs, indent=2))
        return
    rows = _rows(runs)
    if fmt == "csv":
        w = csv.DictWriter(sys.stdout, fieldnames=COLUMNS, lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(box=None, pad_edge=False)
    for col in COLUMNS:
        table.add_column(col.upper(), overflow="fold")
    for row in rows:
        table.add_row(*(row[c] for c in COLUMNS))
    Console(width=max(160, Console().width)).print(table)
    if not rows:
        click.echo(f"no commands in the last {since}", err=True)
