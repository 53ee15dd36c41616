"""Secrets out of command lines before they leave the node.

The process table an agent collects is pushed to the hub and shown in the UI, so
`agent --token gft_...` or `MYSQL_PASSWORD=... ./run` would publish the secret to everyone who
can read the hub. The agent masks values by pattern, once per process (the collector caches
the command line), before anything is stored or sent.

A pattern is a case-insensitive glob of one of two kinds:
- one starting with `-` names a flag: `--token VALUE` and `--token=VALUE` lose VALUE;
- any other names a variable-like word: `NAME=VALUE` loses VALUE (`*TOKEN` masks
  `HF_TOKEN=...` and `api_token=...`).
Passwords in URLs (`scheme://user:PASSWORD@host`) are always masked.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable

MASK = "***"

DEFAULT_PATTERNS: tuple[str, ...] = (
    "--*token", "--*password", "--passwd", "--*secret", "--*api-key", "--*apikey",
    "*TOKEN", "*KEY", "*SECRET", "*PASSWORD", "*PASSWD",
)

_ASSIGN = re.compile(r"([A-Za-z_][A-Za-z0-9_.-]*)=(.*)", re.S)
_URL_PASSWORD = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://[^/\s:@]*:)[^/\s@]+(@)")


def check_patterns(patterns: Iterable[str]) -> list[str]:
    """The patterns, or ValueError naming one that cannot match anything useful."""
    out = []
    for p in patterns:
        p = p.strip()
        if not p:
            continue
        if p.strip("-*?") == "":
            raise ValueError(f"mask pattern {p!r} would match every flag or word: name what it is, e.g. --*token")
        out.append(p)
    return out


class Masker:
    """Masks argv by patterns; compiled once, called once per new process."""

    def __init__(self, patterns: Iterable[str] = DEFAULT_PATTERNS) -> None:
        flags: list[str] = []
        words: list[str] = []
        for p in check_patterns(patterns):
            (flags if p.startswith("-") else words).append(fnmatch.translate(p.lower()))
        self._flag = re.compile("|".join(flags)) if flags else None
        self._word = re.compile("|".join(words)) if words else None

    def _flag_match(self, name: str) -> bool:
        return self._flag is not None and self._flag.fullmatch(name.lower()) is not None

    def mask(self, argv: list[str]) -> list[str]:
        """argv with secret values replaced by ***. An element holding spaces (a process that
        rewrote its argv as one string, `sh -c "..."`) is masked word by word as well."""
        return [" ".join(self._mask(a.split(" "))) if " " in a else a for a in self._mask(argv)]

    def _mask(self, argv: list[str]) -> list[str]:
        out: list[str] = []
        hide_next = False
        for arg in argv:
            if hide_next:
                hide_next = False
                if not arg.startswith("-") or arg == "-":
                    out.append(MASK)
                    continue
            if arg.startswith("-") and len(arg) > 1:
                name, eq, _ = arg.partition("=")
                if self._flag_match(name):
                    if eq:
                        out.append(f"{name}={MASK}")
                    else:
                        out.append(arg)
                        hide_next = True
                    continue
            elif self._word is not None:
                m = _ASSIGN.fullmatch(arg)
                if m and self._word.fullmatch(m.group(1).lower()):
                    out.append(f"{m.group(1)}={MASK}")
                    continue
            out.append(_URL_PASSWORD.sub(rf"\g<1>{MASK}\g<2>", arg) if "://" in arg else arg)
        return out

    def mask_command(self, command: str) -> str:
        """A command line already joined with spaces (from a GPU backend)."""
        return " ".join(self._mask(command.split(" ")))
