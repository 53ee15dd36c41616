"""`gpufleet stress [--gpus 0,1] [--seconds 60] [--load 0.8]`: load GPUs to check dashboards and alerts.

On a simulated node (a simulator runs on this machine, or --simulate) it drives the
simulator through its control file (backends/sim_control.py); else it runs duty-cycled
matrix multiplications with torch or CuPy where installed (stress_gpu.py).
"""

from __future__ import annotations

import threading
import time

import click

from .errors import UserError


def _gpus(raw: str | None) -> list[int] | None:
    if raw is None or raw.strip() in ("", "all"):
        return None
    try:
        gpus = sorted({int(x) for x in raw.split(",") if x.strip()})
    except ValueError:
        raise UserError(f"--gpus {raw!r}: give GPU indexes separated by commas, e.g. 0,1 (or all)") from None
    if not gpus or gpus[0] < 0:
        raise UserError(f"--gpus {raw!r}: indexes start at 0")
    return gpus


def _wait(seconds: float) -> bool:
    """Sleep until done or Ctrl-C; True when interrupted."""
    stop = threading.Event()
    try:
        stop.wait(seconds)
    except KeyboardInterrupt:
        return True
    return False


@click.command("stress")
@click.option("--gpus", metavar="0,1", help="GPU indexes to load [default: all]")
@click.option("--seconds", default=60.0, show_default=True, type=click.FloatRange(1, 7 * 86400),
              help="how long")
@click.option("--load", default=0.8, show_default=True, type=click.FloatRange(0.0, 1.0),
              help="share of time each GPU computes (its utilisation)")
@click.option("--simulate", "simulate", is_flag=True,
              help="drive the simulator even when none has been seen on this machine yet")
@click.option("--node", "nodes", multiple=True, metavar="NAME",
              help="simulated node(s) to load (repeat; default: every simulated node on this machine)")
def stress(gpus: str | None, seconds: float, load: float, simulate: bool, nodes: tuple[str, ...]) -> None:
    """Load GPUs to check dashboards and alerts end to end: real GPUs with torch or CuPy
    (never installed by gpufleet), simulated ones through the simulator."""
    chosen = _gpus(gpus)
    from .backends import sim_control

    if simulate or sim_control.simulators():
        until = time.time() + seconds
        try:
            where = sim_control.write(sim_control.Stress(load, until, None if chosen is None else tuple(chosen),
                                                         tuple(nodes) or None))
        except OSError as e:  # ControlDirError says which directory and what to do
            raise UserError(str(e) if isinstance(e, sim_control.ControlDirError)
                            else f"cannot write the simulator's control file: {e}") from None
        what = "all GPUs" if chosen is None else "GPUs " + ",".join(map(str, chosen))
        on = ", ".join(nodes) if nodes else "every simulated node on this machine"
        click.echo(f"simulated: {what} at {load:.0%} or more for {seconds:g} s on {on} (control file {where})")
        interrupted = _wait(seconds)
        sim_control.clear(where.parent)
        click.echo("stopped early" if interrupted else "done")
        return
    if nodes:
        raise UserError("--node names simulated nodes: no simulator runs on this machine (add --simulate)")
    from .stress_gpu import find_engine, run

    engine = find_engine()
    count = engine.count()
    targets = list(range(count)) if chosen is None else chosen
    missing = [g for g in targets if g >= count]
    if missing:
        raise UserError(f"--gpus: no GPU {missing[0]} here ({engine.name} sees {count}: 0-{count - 1})")
    click.echo(f"{engine.name}: GPUs {','.join(map(str, targets))} at {load:.0%} for {seconds:g} s")
    achieved = run(engine, targets, seconds, load)
    click.echo("busy share: " + ", ".join(f"GPU {g} {achieved.get(g, 0.0):.0%}" for g in targets))
