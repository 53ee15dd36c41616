"""Admit every caller as admin: the hub's behaviour before accounts existed.

Temporary (issue 9): the route policies are declared and tested first so other features can
build on them; hub/auth/service.py replaces this with accounts, sessions and API keys.
"""

from __future__ import annotations

from fastapi import Request

from .policy import Principal, Role

ANYONE = Principal("anyone", Role.ADMIN, "anonymous")


class OpenAccess:
    def identify(self, request: Request) -> Principal | None:
        return ANYONE

    def check_csrf(self, request: Request, who: Principal) -> None:
        return None
