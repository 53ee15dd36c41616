"""Times a user writes for a period: a duration back from now (30d, 12h), a Unix time, an ISO
date or date-time (UTC unless it says otherwise), or `now`."""

from __future__ import annotations

import math
from datetime import datetime, timezone

from ...syntax import DurationError, parse_duration


def parse_time(text: str, now: float, what: str = "time") -> float:
    """Unix seconds; ValueError naming `what` and the forms accepted."""
    t = text.strip()
    if t == "now":
        return now
    try:
        x = float(t)
    except ValueError:
        pass
    else:
        if math.isfinite(x) and x >= 0:
            return x
        raise ValueError(f"{what} {text!r} is not a valid Unix time")
    try:
        return now - parse_duration(t)
    except DurationError:
        pass
    try:
        d = datetime.fromisoformat(t)
    except ValueError:
        raise ValueError(f"{what} {text!r} is not a duration back from now (30d, 12h), a Unix time, "
                         "an ISO date (2026-11-01) or date-time, or 'now'") from None
    if d.tzinfo is None:
        d = d.replace(tzinfo=timezone.utc)
    return d.timestamp()
