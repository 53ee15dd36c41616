"""The commands behind `gpufleet top`, `gpufleet ls` and `gpufleet free`.

`top` is the live Textual view (or, with --once, one plain print); `ls` and `free` are one-shot
lists for scripts, text by default and JSON with --json (every reading, null when not reported),
the fleet-wide counterpart of `gpustat --json`.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from typing import Any

import click

from ..errors import UserError
from .model import Fleet, GpuRow, NodeRow, is_free
from .source import Source, Unreachable

DEFAULT_URL = "http://127.0.0.1:8080"


def make_source(url: str | None, hub: str | None, agent: str | None, api_key: str | None) -> Source:
    given = [x for x in (url, hub, agent) if x]
    if len(given) > 1:
        raise click.UsageError("give one of URL, --hub URL or --agent URL, not several")
    if hub:
        return Source(hub, "hub", api_key)
    if agent:
        return Source(agent, "agent", api_key)
    # GPUFLEET_HUB only when no target was given (an explicit --agent wins over the environment).
    return Source(url or os.environ.get("GPUFLEET_HUB") or DEFAULT_URL, "auto", api_key)


def read_once(src: Source) -> Fleet:
    try:
        return src.fleet()
    except Unreachable as e:
        raise UserError(str(e)) from None
    finally:
        src.close()


def print_once(fleet: Fleet, width: int) -> None:
    from rich.console import Console

    from .arrange import Arrangement, arrange
    from .layout import gpu_line, node_line

    gpus = fleet.gpu_count()
    free = len(fleet.free_gpus())
    console = Console(width=width, soft_wrap=False, highlight=False)
    console.print(f"{len(fleet.nodes)} nodes, {gpus} GPUs, {gpus - free} busy, {free} free", style="bold")
    for ln in arrange(fleet, Arrangement()):
        segs = gpu_line(ln.gpu, ln.node, width) if ln.gpu else node_line(ln.node, width, fleet.fetched_at)
        console.print(_text(segs), crop=True, overflow="crop", no_wrap=True)


def _text(segs: list[Any]) -> Any:
    from rich.text import Text

    t = Text(no_wrap=True, overflow="crop")
    for s in segs:
        t.append(s.text, s.style)
    return t


def run_top(url: str | None, hub: str | None, agent: str | None, api_key: str | None,
            interval: float, once: bool) -> None:
    src = make_source(url, hub, agent, api_key)
    if once:
        print_once(read_once(src), shutil.get_terminal_size((120, 24)).columns)
        return
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        raise UserError("gpufleet top needs a terminal: for scripts use `gpufleet top --once`, "
                        "`gpufleet ls --json` or `gpufleet free --json`")
    from .app import TopApp

    try:
        TopApp(src, interval).run()
    finally:
        src.close()


# ---- ls / free ----------------------------------------------------------------------------------

def gpu_json(g: GpuRow, node_up: bool) -> dict[str, Any]:
    return {
        "node": g.node, "index": g.index, "uuid": g.uuid, "model": g.model, "up": g.up,
        "utilization_ratio": g.util, "memory_used_bytes": g.mem_used, "memory_total_bytes": g.mem_total,
        "temperature_celsius": g.temp, "power_watts": g.power, "power_limit_watts": g.power_limit,
        "free": node_up and is_free(g),
        "processes": [{"pid": p.pid, "user": p.user, "command": p.command, "memory_bytes": p.memory_bytes}
                      for p in g.procs],
    }


def node_json(n: NodeRow) -> dict[str, Any]:
    return {
        "name": n.name, "status": n.status, "since": n.since, "last_seen": n.last_seen, "labels": n.labels,
        "cpu_utilization_ratio": n.cpu, "memory_used_bytes": n.mem_used, "memory_total_bytes": n.mem_total,
        "error": n.error or None, "gpus": [gpu_json(g, n.status == "up") for g in n.gpus],
    }


def _num(x: float | None, fmt: str) -> str:
    return "-" if x is None else fmt.format(x)


def _gib(x: float | None) -> str:
    return "-" if x is None else f"{x / 1024**3:.1f}"


source_options = [
    click.argument("url", required=False),
    click.option("--hub", "hub_url", metavar="URL", help="a hub (default http://127.0.0.1:8080)"),
    click.option("--agent", "agent_url", metavar="URL", help="one node's agent"),
    click.option("--api-key", envvar="GPUFLEET_API_KEY", metavar="KEY", help="hub API key (or GPUFLEET_API_KEY)"),
    click.option("--json", "as_json", is_flag=True, help="JSON for scripts (null: not reported)"),
]


def with_source(f: Any) -> Any:
    for opt in reversed(source_options):
        f = opt(f)
    return f


@click.command("ls")
@with_source
def ls(url: str | None, hub_url: str | None, agent_url: str | None, api_key: str | None, as_json: bool) -> None:
    """Every node and GPU once: status, utilisation, memory, temperature, power, who (then exit)."""
    src = make_source(url, hub_url, agent_url, api_key)
    fleet = read_once(src)
    if as_json:
        click.echo(json.dumps({"source": src.url, "query_time": fleet.fetched_at,
                               "nodes": [node_json(n) for n in fleet.nodes]}, indent=1))
        return
    click.echo(f"{'NODE':<20} {'STATUS':<6} {'GPU':>3} {'MODEL':<24} {'UTIL':>5} {'MEM GiB':>13} "
               f"{'TEMP':>5} {'POWER':>6}  USERS")
    for n in fleet.nodes:
        if not n.gpus:
            click.echo(f"{n.name:<20} {n.status:<6} {'-':>3}")
        for g in n.gpus:
            click.echo(f"{n.name:<20} {n.status:<6} {g.index:>3} {g.model[:24]:<24} "
                       f"{_num(None if g.util is None else 100 * g.util, '{:.0f}%'):>5} "
                       f"{_gib(g.mem_used) + '/' + _gib(g.mem_total):>13} {_num(g.temp, '{:.0f}C'):>5} "
                       f"{_num(g.power, '{:.0f}W'):>6}  {','.join(g.users) or ('lost' if not g.up else '-')}")


@click.command("free")
@with_source
def free(url: str | None, hub_url: str | None, agent_url: str | None, api_key: str | None, as_json: bool) -> None:
    """The free GPUs (node up, GPU up, no processes, under 5% busy), once, for scripts."""
    src = make_source(url, hub_url, agent_url, api_key)
    fleet = read_once(src)
    gpus = fleet.free_gpus()
    if as_json:
        click.echo(json.dumps({"source": src.url, "query_time": fleet.fetched_at, "count": len(gpus),
                               "gpus": [gpu_json(g, True) for g in gpus]}, indent=1))
        return
    if not gpus:
        click.echo(f"no free GPUs ({fleet.gpu_count()} GPUs on {len(fleet.nodes)} nodes)", err=True)
        return
    click.echo(f"{'NODE':<20} {'GPU':>3} {'MODEL':<24} {'MEM GiB':>8}")
    for g in gpus:
        click.echo(f"{g.node:<20} {g.index:>3} {g.model[:24]:<24} {_gib(g.mem_total):>8}")

