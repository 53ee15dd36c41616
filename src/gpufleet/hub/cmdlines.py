"""Who may read processes' command lines: admins always, everyone else only when the hub's
admin allows it (`gpufleet hub --show-command-lines`).

Command lines are where secrets leak (tokens, passwords, paths that name projects); agents mask
the obvious ones (masking.py), and the hub still shows the rest only to those trusted with it.
Everything that serves a process table (API, pages, live events) asks `may_see(request)` and
takes the snapshot without commands from the fleet when the answer is no.
"""

from __future__ import annotations

import msgspec
from fastapi import Request

from ..snapshot import NodeSnapshot
from .auth import Role


def may_see(request: Request, allowed_for_all: bool) -> bool:
    """True for an admin (the principal the route's policy admitted), or for anyone when allowed."""
    if allowed_for_all:
        return True
    who = getattr(request.state, "principal", None)
    return who is not None and who.role >= Role.ADMIN


def without_commands(snap: NodeSnapshot) -> NodeSnapshot:
    """A copy with every command line (host and GPU processes) emptied; names stay (`ps -e`)."""
    replace = msgspec.structs.replace
    return replace(
        snap,
        processes=[replace(p, command="") if p.command else p for p in snap.processes],
        gpus=[replace(g, processes=[replace(p, command="") if p.command else p for p in g.processes])
              if g.processes else g for g in snap.gpus],
    )
