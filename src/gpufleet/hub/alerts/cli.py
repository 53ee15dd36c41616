"""`gpufleet rules ...`: export to Prometheus, check a rules file, send a test notification.

The lead wires it in with `cli.add_command(rules)`.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click


@click.group()
def rules() -> None:
    """Alert rules: export for Prometheus, check a rules file, test notifications."""


def _load(path: Path | None):  # type: ignore[no-untyped-def]
    from .rules import load_rules

    rs = load_rules(path)
    for e in rs.errors:
        click.echo(f"error: {e}", err=True)
    return rs


@rules.command("export")
@click.option("--out", "out", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Prometheus rule file to write")
@click.option("--rules", "rules_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="your alerts.yaml (built-in rules are always included)")
@click.option("--tests", "tests_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="also write promtool unit tests (promtool test rules FILE) for the built-in rules")
def export_cmd(out: Path, rules_path: Path | None, tests_path: Path | None) -> None:
    """Write the hub's rules (built-in + yours) as a Prometheus rule file."""
    import os

    from .export import builtin_scenario, dump, prometheus_rules, promtool_tests

    rs = _load(rules_path)
    out.write_text(dump(prometheus_rules(rs.rules)))
    click.echo(f"wrote {len(rs.rules)} rules to {out}")
    if tests_path is not None:
        builtin = [r for r in rs.rules if r.builtin]
        rel = os.path.relpath(out.resolve(), tests_path.resolve().parent)
        tests_path.write_text(dump(promtool_tests(builtin, builtin_scenario(), rel)))
        click.echo(f"wrote promtool tests to {tests_path} (run: promtool test rules {tests_path})")
    if rs.errors:
        sys.exit(1)


@rules.command("check")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
def check_cmd(file: Path) -> None:
    """Check an alerts.yaml: every error with file and line; exit 1 if any."""
    rs = _load(file)
    user = [r for r in rs.rules if not r.builtin]
    if rs.errors:
        click.echo(f"{len(rs.errors)} error(s); {len(user)} rule(s) of the file are fine", err=True)
        sys.exit(1)
    click.echo(f"{file}: OK, {len(user)} rule(s) plus {len(rs.rules) - len(user)} built-in")


@rules.command("test-notify")
@click.option("--notify", "notify_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="notify.yaml [env GPUFLEET_NOTIFY]")
@click.option("--receiver", default=None, help="only this receiver (or 'alertmanager')")
def test_notify_cmd(notify_path: Path | None, receiver: str | None) -> None:
    """Send a test message to every receiver of notify.yaml now and report each."""
    import os

    from .notify import send_test
    from .routing import load_notify

    path = notify_path or (Path(os.environ["GPUFLEET_NOTIFY"]) if os.environ.get("GPUFLEET_NOTIFY") else None)
    if path is None:
        raise click.UsageError("give --notify FILE or set GPUFLEET_NOTIFY")
    cfg = load_notify(path)
    for e in cfg.errors:
        click.echo(f"error: {e}", err=True)
    try:
        results = send_test(cfg, receiver)
    except KeyError as e:
        raise click.UsageError(str(e.args[0])) from None
    if not results:
        click.echo("no receivers configured", err=True)
        sys.exit(1)
    for r in results:
        click.echo(f"{'ok  ' if r['ok'] else 'FAIL'} {r['target']}" + (f": {r['error']}" if r["error"] else ""))
    if cfg.errors or not all(r["ok"] for r in results):
        sys.exit(1)
