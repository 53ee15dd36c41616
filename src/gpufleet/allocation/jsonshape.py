"""Reading allocation sources' JSON (a state file, the kubelet's pod resources), which may be hostile."""

from __future__ import annotations

from typing import Any


def json_list(v: Any, where: str, error: type[Exception]) -> list[Any]:
    """A JSON list (absent or null: empty); any other type is named in `error`, not a TypeError later."""
    if v is None:
        return []
    if not isinstance(v, list):
        raise error(f"{where}: expected a list, got {type(v).__name__}")
    return v
