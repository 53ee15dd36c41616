"""Login sessions (utmp, through psutil)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psutil

from ..snapshot import LoginUser, NodeSnapshot
from .base import CollectContext


class UsersCollector:
    name = "users"

    def __init__(self, ctx: CollectContext, source: Callable[[], list[Any]] | None = None) -> None:
        # psutil reads utmp, which no procfs root covers; tests inject the source instead.
        self._source = source or psutil.users

    def collect(self, snap: NodeSnapshot) -> None:
        sessions = [
            LoginUser(
                name=u.name,
                terminal=u.terminal or "",
                host=u.host or "",
                started=float(u.started or 0.0),
                pid=getattr(u, "pid", None),
            )
            for u in self._source()
        ]
        snap.users = sessions
        snap.values["users_logged_in"] = float(len(sessions))
