"""Which commands an agent runs, and as whom: its own decision, whatever the hub asks.

Allow-list patterns are argv globs written like a command line: `'nvidia-smi *'` is the program
`nvidia-smi` followed by anything. Each word of a pattern matches exactly one argument (shell-style
`*`, `?`, `[...]` within that argument), and a last word that is just `*` matches any number of
further arguments, none included. So `'nvidia-smi'` allows only the bare program, `'nvidia-smi -q'`
only that, and `'systemctl status *'` any `systemctl status ...`. There is no shell: `;`, `|` and
`$(...)` in an argument are plain characters handed to the program.
"""

from __future__ import annotations

import os
import pwd
import shlex
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any

from ..errors import UserError


def parse_patterns(raw: Any) -> list[str]:
    """Config parser: a YAML list, repeated CLI flags (a list), or one string (env: one per line)."""
    items = raw if isinstance(raw, (list, tuple)) else str(raw).splitlines()
    out = [str(x).strip() for x in items if str(x).strip()]
    for p in out:
        compile_pattern(p)
    return out


def compile_pattern(pattern: str) -> tuple[str, ...]:
    try:
        words = tuple(shlex.split(pattern))
    except ValueError as e:
        raise ValueError(f"allow-commands pattern {pattern!r} is not a command line: {e}") from None
    if not words:
        raise ValueError("an allow-commands pattern is empty")
    return words


def matches(argv: list[str], words: tuple[str, ...]) -> bool:
    rest_any = words[-1] == "*"
    fixed = words[:-1] if rest_any else words
    if len(argv) < len(fixed) or (not rest_any and len(argv) != len(fixed)):
        return False
    return all(fnmatchcase(a, w) for a, w in zip(argv, fixed, strict=False))  # argv may run on past a last `*`


def allowed(argv: list[str], patterns: list[tuple[str, ...]]) -> bool:
    return bool(argv) and any(matches(argv, p) for p in patterns)


@dataclass(frozen=True, slots=True)
class RunAs:
    """The account commands run as; `switch` when the agent must change to it (it is root)."""

    name: str
    uid: int
    gid: int
    home: str
    switch: bool


def resolve_user(user: str | None, allow_root: bool) -> RunAs:
    """Whom commands run as, or UserError naming the flag to fix.

    A root agent needs --command-user (root itself only with --allow-root-commands); an agent that
    is not root runs commands as itself and cannot switch to anyone else.
    """
    me = os.geteuid()
    if user is None:
        if me == 0 and not allow_root:
            raise UserError("--allow-commands on an agent running as root: pass --command-user USER "
                            "(e.g. nobody) so commands do not run as root, or --allow-root-commands")
        ent = pwd.getpwuid(me)
        return RunAs(ent.pw_name, ent.pw_uid, ent.pw_gid, ent.pw_dir, switch=False)
    try:
        ent = pwd.getpwuid(int(user)) if user.isdigit() else pwd.getpwnam(user)
    except KeyError:
        raise UserError(f"--command-user {user!r}: no such user on this machine") from None
    if ent.pw_uid == 0 and not allow_root:
        raise UserError("--command-user is root: commands would run as root; pass --allow-root-commands "
                        "if that is really meant")
    if ent.pw_uid != me and me != 0:
        mine = pwd.getpwuid(me).pw_name
        raise UserError(f"--command-user {user}: the agent runs as {mine} and cannot switch users; leave "
                        f"--command-user out to run commands as {mine}, or start the agent as root")
    return RunAs(ent.pw_name, ent.pw_uid, ent.pw_gid, ent.pw_dir, switch=ent.pw_uid != me)
