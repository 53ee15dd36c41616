"""Which of several hubs an agent pushes to (`--hub A,B` or `--hub A --hub B`).

Hubs past one machine share nothing but the remote TSDB they write to, so any of them can take a
node's snapshots. The choice:
- each node prefers one hub, picked from a hash of its name: a fleet started from one config file
  spreads evenly over the hubs without per-node settings;
- when that hub is unreachable or answers 5xx/429/408, the agent moves to the next one in the list
  at once (no backoff between hubs; backoff only once every hub has failed in a row);
- it stays where it is as long as that hub answers (no timed return): a node that flapped between
  hubs would show as down on the one it left, and the surviving hub was carrying it anyway.

With one hub this is exactly the old behaviour: that hub, backoff after each failure.
"""

from __future__ import annotations

import hashlib

from ..errors import UserError
from ..syntax import normalize_hub_url

MAX_HUBS = 16  # more is a typo or a list pasted twice, not a deployment


def parse_hubs(raw: str) -> list[str]:
    """'http://a:8080, http://b:8080' -> normalised URLs, in order, without repeats."""
    hubs: list[str] = []
    for part in raw.split(","):
        if not part.strip():
            continue
        url = normalize_hub_url(part)
        if url not in hubs:
            hubs.append(url)
    if not hubs:
        raise UserError("--hub is empty: give the hub's URL, e.g. --hub http://hub:8080 (several: repeat --hub "
                        "or separate them with commas)")
    if len(hubs) > MAX_HUBS:
        raise UserError(f"--hub lists {len(hubs)} hubs; at most {MAX_HUBS} are supported")
    return hubs


def preferred_index(node: str, count: int) -> int:
    """The hub this node starts on: stable across restarts, even across a fleet."""
    if count <= 1:
        return 0
    digest = hashlib.sha256(node.encode()).digest()
    return int.from_bytes(digest[:8], "big") % count


class HubChoice:
    """The hub in use and the ones to move to; used by the pusher thread only."""

    def __init__(self, hubs: list[str], node: str) -> None:
        if not hubs:
            raise ValueError("no hub")
        self.hubs = list(hubs)
        self.index = preferred_index(node, len(self.hubs))
        self._failed_in_row = 0  # hubs that failed since the last success, this one included
        self.moves = 0  # failovers so far, for stats and tests

    @property
    def current(self) -> str:
        return self.hubs[self.index]

    @property
    def several(self) -> bool:
        return len(self.hubs) > 1

    def succeeded(self) -> None:
        self._failed_in_row = 0

    def fail_over(self) -> bool:
        """The current hub is down: move to the next. True when that one is still untried in this
        round (push there now); False once every hub has failed in a row (back off first)."""
        self._failed_in_row += 1
        if not self.several:
            return False
        self.index = (self.index + 1) % len(self.hubs)
        self.moves += 1
        if self._failed_in_row >= len(self.hubs):
            self._failed_in_row = 0  # a new round after the backoff
            return False
        return True
