"""`gpufleet stack generate`: write a Prometheus/VictoriaMetrics + Alertmanager + Grafana set-up for the fleet."""

from __future__ import annotations

from pathlib import Path

import click

from ..errors import UserError
from ..syntax import DurationError, format_duration, parse_duration
from .files import write_tree

# Imported with the command (cli.py's lazy table), so a missing hub extra is cli.py's one-line
# "install gpufleet[hub]" message rather than a traceback halfway through.
from .generate import render
from .options import (TSDBS, StackOptions, Tsdb, check_api_key_file, check_ca_file, parse_bind, parse_hub_url,
                      parse_ports)


@click.group()
def stack() -> None:
    """A Prometheus (or VictoriaMetrics), Alertmanager and Grafana set-up for the fleet."""


@stack.command("generate")
@click.option("--out", "out", type=click.Path(path_type=Path), required=True,
              help="folder to write (new or empty; --force replaces one this command wrote)")
@click.option("--hub", "hub", required=True, help="the hub's URL as Prometheus reaches it, e.g. http://hub:8080")
@click.option("--tsdb", type=click.Choice(TSDBS), default="prometheus", show_default=True,
              help="Prometheus, or vmagent + VictoriaMetrics + vmalert")
@click.option("--api-key-file", type=click.Path(path_type=Path), default=None,
              help="file holding a viewer API key for the hub's http_sd and /metrics (mounted, never copied)")
@click.option("--ca-file", type=click.Path(path_type=Path), default=None,
              help="CA certificate (PEM) that signed an https hub's certificate (and agents')")
@click.option("--bind", default="127.0.0.1", show_default=True, help="address the compose file publishes ports on")
@click.option("--port", "ports", multiple=True, metavar="SERVICE=PORT",
              help="publish a service on another host port, e.g. grafana=3001 (repeatable)")
@click.option("--scrape-interval", default="15s", show_default=True, help="how often agents are scraped")
@click.option("--alertmanager-url", default="http://alertmanager:9093", show_default=True,
              help="where Prometheus/vmalert send alerts (default: the compose service)")
@click.option("--datasource-url", default=None,
              help="where Grafana queries (default: the compose service of --tsdb)")
@click.option("--rules", "rules_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="your alerts.yaml, exported beside the built-in rules")
@click.option("--force", is_flag=True, help="replace a folder an earlier `stack generate` wrote")
def generate(out: Path, hub: str, tsdb: str, api_key_file: Path | None, ca_file: Path | None, bind: str, ports: tuple[str, ...],
             scrape_interval: str, alertmanager_url: str, datasource_url: str | None, rules_file: Path | None,
             force: bool) -> None:
    """Write prometheus/ (or vmagent/ + vmalert/), alertmanager/, grafana/provisioning/ and compose.yaml."""
    try:
        interval = parse_duration(scrape_interval)
    except DurationError as e:
        raise UserError(f"--scrape-interval: {e}") from None
    if interval < 1:
        raise UserError(f"--scrape-interval {scrape_interval!r}: at least 1s")
    for flag, url in (("--alertmanager-url", alertmanager_url), ("--datasource-url", datasource_url)):
        if url is not None:
            _check_url(flag, url)
    if rules_file is not None and not rules_file.is_file():
        raise UserError(f"--rules {rules_file}: no such file")
    kind: Tsdb = "prometheus" if tsdb == "prometheus" else "victoriametrics"
    opts = StackOptions(
        hub=parse_hub_url(hub), tsdb=kind,
        api_key_file=check_api_key_file(api_key_file) if api_key_file is not None else None,
        ca_file=check_ca_file(ca_file) if ca_file is not None else None,
        bind=parse_bind(bind), scrape_interval=format_duration(interval), alertmanager_url=alertmanager_url,
        datasource_url=datasource_url, rules_file=rules_file, ports=parse_ports(ports, kind))
    files = render(opts)
    write_tree(out, files, force)
    click.echo(f"wrote {len(files)} files to {out} ({kind} set-up)")
    if opts.api_key_file is None:
        click.echo("note: no --api-key-file: http_sd and the hub's /metrics are read without a key, which only "
                   "a hub started with --anonymous-read allows", err=True)
    if opts.api_key_file is not None and opts.api_key_file.stat().st_mode & 0o077:
        click.echo(f"note: {opts.api_key_file} can be read by other users: chmod 600 it (chown it to the "
                   "scraper's user)", err=True)
    if opts.hub.is_loopback():
        click.echo(f"note: --hub {opts.hub.base} is this machine's loopback: Prometheus run here reaches it, "
                   "but not from a container; give the hub's reachable address for compose", err=True)
    click.echo(f"next: GRAFANA_ADMIN_PASSWORD=... docker compose -f {out / 'compose.yaml'} up -d "
               f"(Grafana on http://{opts.bind_host}:{opts.host_port('grafana')}); see docs/stack.md")


def _check_url(flag: str, url: str) -> None:
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        _ = parts.port  # a port that is not a number raises ValueError
    except ValueError as e:
        raise UserError(f"{flag} {url!r}: {e}; give an http:// or https:// URL") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UserError(f"{flag} {url!r}: give an http:// or https:// URL with a host")
