"""`gpufleet store check|repair`: verify the hub's embedded store, and set its damage aside."""
from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

import click

from .errors import UserError

_DATA = click.option("--data", required=True, envvar="GPUFLEET_DATA",
                     type=click.Path(file_okay=False, path_type=Path), help="the hub's data directory")


@click.group()
def store() -> None:
    """Verify and repair the hub's embedded store (DATA/tsdb)."""


def _store_dir(data: Path) -> str:
    if not data.is_dir():
        raise UserError(f"no hub data directory {data}: pass the hub's --data directory")
    path = data / "tsdb"
    if not path.is_dir():
        raise UserError(f"no store in {data} ({path} does not exist): pass the hub's --data directory "
                        "(a hub run with --history keeps no store)")
    return str(path)


def _hub_db(data: Path) -> str:
    """'' if DATA/hub.db is absent or passes PRAGMA integrity_check (read-only), else what is wrong."""
    db = data / "hub.db"
    if not db.exists():
        return ""
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            rows = [r[0] for r in con.execute("PRAGMA integrity_check")]
        finally:
            con.close()
    except sqlite3.DatabaseError as e:
        return str(e)
    return "" if rows == ["ok"] else "; ".join(rows[:3])


@store.command("check")
@_DATA
def check(data: Path) -> None:
    """Verify every store file without changing anything: exit 0 clean, 1 damage found (each file named)."""
    from .store.check import check_store
    from .store.formats import StoreFormatError

    path = _store_dir(data)
    try:
        report = check_store(path)
    except StoreFormatError as e:
        raise UserError(str(e)) from None
    db = _hub_db(data)
    if db:
        report.damaged.append(f"{data / 'hub.db'}: {db}")
    for line in report.damaged:
        click.echo(f"damaged: {line}")
    for line in report.notes:
        click.echo(f"note: {line}")
    if report.damaged:
        click.echo(f"{len(report.damaged)} damaged file(s) in {path}: run `gpufleet store repair --data {data}` "
                   "with the hub stopped")
        raise SystemExit(1)
    click.echo(f"store {path}: {report.files} files checked, no damage")


@store.command("repair")
@_DATA
def repair(data: Path) -> None:
    """Set damaged store files aside (.corrupt) and rebuild what can be rebuilt; the hub must be stopped."""
    from .store.check import repair_store
    from .store.formats import StoreFormatError, StoreInUse

    path = _store_dir(data)
    # each problem is printed below; the store's own error lines would say it twice
    logging.getLogger("gpufleet.store").addHandler(logging.NullHandler())
    try:
        done = repair_store(path)
    except (StoreFormatError, StoreInUse) as e:
        raise UserError(str(e)) from None
    except OSError as e:
        raise UserError(f"cannot repair {path}: {e.strerror or e}") from None
    for line in done:
        click.echo(f"repaired: {line}")
    click.echo(f"store {path}: " + (f"{len(done)} problem(s) set aside; the rest is served"
                                     if done else "no damage found"))
