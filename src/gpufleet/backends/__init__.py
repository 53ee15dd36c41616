"""Accelerator backends: the table of names, and how `--backend` / `--simulate` pick one.

`--backend auto` (the default) tries the vendors of gpufleet/vendors.py (NVML, then AMD SMI), and falls back to host metrics
only when neither opens; `nvml` / `amdsmi` insist on that library (its BackendUnavailable
reaches the caller); `sim` simulates a profile; `none` turns accelerators off.
`--simulate PROFILE` implies the simulator (with `auto` or `sim`).

Vendor modules are imported only when chosen, so a broken or absent vendor library never
stops the others from loading.
"""

from __future__ import annotations

import importlib
import time
from dataclasses import dataclass
from typing import Callable, Mapping, NamedTuple

from ..vendors import BACKEND_CHOICES, BY_BACKEND, VENDORS
from .base import Backend, BackendUnavailable

__all__ = [
    "AUTO_ORDER", "BACKENDS", "Backend", "BackendUnavailable", "CHOICES", "DEFAULT_PROFILE",
    "Options", "Selection", "profile_names", "resolve", "select",
]

# Vendor backends come from gpufleet/vendors.py (one entry per vendor); sim and none are ours.
CHOICES: tuple[str, ...] = BACKEND_CHOICES
AUTO_ORDER: tuple[str, ...] = tuple(v.backend for v in VENDORS if v.auto)
DEFAULT_PROFILE = "8xH100"


@dataclass(frozen=True, slots=True)
class Options:
    """What a factory may need; vendor backends ignore it, the simulator reads it."""

    simulate: str | None = None
    seed: int = 0
    node: str = ""
    clock: Callable[[], float] = time.time
    all_smi_url: str = ""  # --backend all-smi: the local all-smi's /metrics


Factory = Callable[[Options], Backend]


def _vendor_factory(spec: str) -> Factory:
    def build(_: Options) -> Backend:
        module, _sep, cls = spec.partition(":")
        return getattr(importlib.import_module(module), cls)()  # type: ignore[no-any-return]
    return build


def _sim(o: Options) -> Backend:
    from .sim import SimBackend

    return SimBackend(o.simulate or DEFAULT_PROFILE, seed=o.seed, node=o.node, clock=o.clock)


def _all_smi(o: Options) -> Backend:
    from .allsmi import AllSmiBackend

    return AllSmiBackend(o.all_smi_url)


BACKENDS: dict[str, Factory] = {**{name: _vendor_factory(v.factory) for name, v in BY_BACKEND.items()},
                                "all-smi": _all_smi, "sim": _sim}


class Selection(NamedTuple):
    backend: Backend | None  # opened; None = host metrics only
    reason: str  # one sentence for the agent's log: what was picked and why


def profile_names() -> list[str]:
    from .sim_profiles import profile_names as names

    return names()


def _open(name: str, table: Mapping[str, Factory], opts: Options) -> Backend:
    """Build and open one backend; any failure to do so is BackendUnavailable."""
    try:
        backend = table[name](opts)
        backend.open()
    except BackendUnavailable:
        raise
    except Exception as e:  # a vendor module that fails to import or open in an odd way
        raise BackendUnavailable(f"{name} backend failed to start: {type(e).__name__}: {e}") from e
    return backend


def resolve(name: str, *, simulate: str | None = None, seed: int = 0, node: str = "",
            clock: Callable[[], float] = time.time,
            table: Mapping[str, Factory] | None = None, all_smi_url: str = "") -> Selection:
    """Pick and open the backend for `--backend name [--simulate PROFILE]`.

    ValueError names an unknown backend or profile (listing the valid ones) or a
    contradictory pair; BackendUnavailable comes from an explicitly named vendor backend
    that cannot open. `auto` never raises for a missing library.
    """
    table = BACKENDS if table is None else table
    if name not in CHOICES:
        raise ValueError(f"unknown backend {name!r}: choose one of {', '.join(CHOICES)}")
    opts = Options(simulate=simulate, seed=seed, node=node, clock=clock, all_smi_url=all_smi_url)
    if simulate is not None:
        from .sim_profiles import get_profile

        profile = get_profile(simulate)  # ValueError lists the profiles
        if name not in ("auto", "sim"):
            raise ValueError(f"--simulate {simulate} needs --backend sim (or auto), not --backend {name}")
        backend = _open("sim", table, opts)
        return Selection(backend, f"sim: simulating {profile.name} ({profile.description}), seed {seed}")
    if name == "none":
        return Selection(None, "none: accelerator backends turned off; serving host metrics only")
    if name == "sim":
        backend = _open("sim", table, opts)
        return Selection(backend, f"sim: no --simulate profile given, simulating {DEFAULT_PROFILE}, seed {seed}")
    if name == "all-smi":
        backend = _open(name, table, opts)
        return Selection(backend, f"all-smi: reading every device a local all-smi reports at {opts.all_smi_url or 'its default address'}")
    if name != "auto":
        backend = _open(name, table, opts)
        return Selection(backend, f"{name}: {BY_BACKEND[name].title} library opened (--backend {name})")
    why: list[str] = []
    for candidate in AUTO_ORDER:
        try:
            backend = _open(candidate, table, opts)
        except BackendUnavailable as e:
            why.append(f"{candidate}: {e}")
            continue
        tried = f" after {'; '.join(why)}" if why else ""
        return Selection(backend, f"auto: using {candidate}, the {BY_BACKEND[candidate].title} library opened{tried}")
    return Selection(None, f"auto: no {' or '.join(BY_BACKEND[c].brand for c in AUTO_ORDER)} library found; serving host "
                     "metrics only ("
                     + "; ".join(why) + ")")


def select(name: str, *, simulate: str | None = None, seed: int = 0, node: str = "",
           clock: Callable[[], float] = time.time, log: Callable[[str], object] | None = None,
           table: Mapping[str, Factory] | None = None) -> Backend | None:
    """`resolve()` returning only the opened backend (None = host metrics only).

    The sentence saying what was picked and why goes to `log` (e.g. logger.info); call
    `resolve()` instead to get it back as `Selection.reason`.
    """
    sel = resolve(name, simulate=simulate, seed=seed, node=node, clock=clock, table=table)
    if log is not None:
        log(sel.reason)
    return sel.backend
