"""Which group each user belongs to, so every per-user figure rolls up by group.

A groups file (the hub's `--groups-file`, or the agent's `--groups FILE`) is YAML or CSV:

    groups:                 # YAML: group -> members (a list, or {members: [...]}, DS01's shape)
      nlp: [alice, bob]
      vision: {members: [carol]}

    user,group              # CSV: one user per line (a header line is optional)
    alice,nlp

A user listed in several groups counts in the first one only, so group totals never count a
GPU twice. On the agent, without a file, the user's primary Unix group is the fallback,
except a user-private group (named like the user, as Debian and RHEL create by default),
which says nothing and is left out.
"""

from __future__ import annotations

import csv
import grp
import io
import pwd
from pathlib import Path
from typing import Any

from ..syntax import ConfigError, load_yaml


class GroupsError(ValueError):
    pass


def _members(value: Any, where: str) -> list[str]:
    if isinstance(value, dict):
        value = value.get("members", [])
    if value is None:
        return []
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    if not isinstance(value, list):
        raise GroupsError(f"{where}: expected a list of users, got {type(value).__name__}")
    # User names are scalars: a nested list is a mistake, or YAML aliases nesting lists a billion
    # deep, which str() would spell out for hours.
    nested = next((v for v in value if isinstance(v, (list, dict))), None)
    if nested is not None:
        raise GroupsError(f"{where}: expected a list of user names, found a {type(nested).__name__} in it")
    return [str(v).strip() for v in value if str(v).strip()]


def parse(text: str, name: str = "groups file") -> dict[str, str]:
    """user -> group from the file's text (YAML or CSV, see the module doc)."""
    stripped = text.lstrip()
    out: dict[str, str] = {}
    if not stripped:
        return out
    first = stripped.splitlines()[0]
    if "," in first and ":" not in first:
        for i, row in enumerate(csv.reader(io.StringIO(text))):
            cells = [c.strip() for c in row]
            if not cells or not any(cells) or cells[0].startswith("#"):
                continue
            if len(cells) < 2 or not cells[0] or not cells[1]:
                raise GroupsError(f"{name}: line {i + 1}: expected USER,GROUP")
            if i == 0 and cells[0].lower() == "user" and cells[1].lower() == "group":
                continue
            out.setdefault(cells[0], cells[1])
        return out
    try:
        doc = load_yaml(text, name)
    except ConfigError as e:
        raise GroupsError(f"{name}: not YAML or CSV: {e.message}") from None
    if isinstance(doc, dict) and "groups" in doc:
        doc = doc["groups"]
    if not isinstance(doc, dict):
        raise GroupsError(f"{name}: expected 'groups:' mapping each group to its users, or USER,GROUP lines")
    for group, value in doc.items():
        for user in _members(value, f"{name}: group {group!r}"):
            out.setdefault(user, str(group))
    return out


def load(path: Path) -> dict[str, str]:
    try:
        text = path.read_text()
    except OSError as e:
        raise GroupsError(f"cannot read groups file {path}: {e.strerror or e}") from None
    except UnicodeDecodeError:  # a binary file given by mistake
        raise GroupsError(f"groups file {path} is not a text file (not UTF-8): give the YAML or CSV file") from None
    return parse(text, str(path))


class UnixGroups:
    """Primary Unix group of a user, looked up once per user (the agent runs this every round)."""

    def __init__(self) -> None:
        self._cache: dict[str, str] = {}

    def group_of(self, user: str) -> str:
        g = self._cache.get(user)
        if g is None:
            g = ""
            try:
                gid = pwd.getpwnam(user).pw_gid
                name = grp.getgrgid(gid).gr_name
                g = "" if name == user else name
            except (KeyError, OverflowError, ValueError):
                # not in passwd (a container's uid, "unknown"): no group; ValueError: a name with a
                # NUL byte (from an allocation source), which getpwnam refuses
                pass
            self._cache[user] = g
        return g

    def mapping(self, users: list[str]) -> dict[str, str]:
        return {u: g for u in users if (g := self.group_of(u))}


class GroupsFile:
    """A groups file kept current: re-read when its mtime or size changes (a stat per call).
    A file that turns bad keeps the last good mapping, and the error is in `error`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._key: tuple[int, int] | None = None
        self._map: dict[str, str] = {}
        self.error = ""
        self.mapping()
        if self.error:
            raise GroupsError(self.error)

    def mapping(self) -> dict[str, str]:
        try:
            st = self.path.stat()
            key = (st.st_mtime_ns, st.st_size)
            if key != self._key:
                self._map = load(self.path)
                self._key = key
                self.error = ""
        except OSError as e:
            self.error = f"cannot read groups file {self.path}: {e.strerror or e}"
        except GroupsError as e:
            self.error = str(e)
        return self._map
