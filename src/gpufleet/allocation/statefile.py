"""Allocations from a JSON state file: DS01's `/var/lib/ds01/gpu-state.json`, or a plain list.

DS01's allocator keeps `{"gpus": {"<slot>": {...}}}` where a slot is "1" (a whole GPU) or
"1.0" (GPU 1's first MIG device), each with `containers` (names), `users` ({user: count}),
and for MIG slots `physical_gpu` and `uuid`. The plain form, for any other allocator:
`{"allocations": [{"gpu": 0, "gpu_instance": 1, "uuid": "...", "user": "alice",
"container": "thesis", "running": true}, ...]}` (every key but one of gpu/uuid optional).
`parse` is pure; `StateFile` re-reads the file only when its mtime or size changes.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from .grant import Grant
from .jsonshape import json_list

SOURCE = "state_file"


class StateFileError(ValueError):
    pass


def _int(v: Any) -> int | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, int):
        return v
    # ASCII digits only: str.isdigit() also takes '²', which int() refuses; a few digits, an index.
    if isinstance(v, str) and v.strip().isascii() and v.strip().isdigit() and len(v.strip()) <= 9:
        return int(v.strip())
    return None


def _ds01_slot(slot_id: str, info: dict[str, Any]) -> list[Grant]:
    containers = [str(c) for c in json_list(info.get("containers"), f"gpus[{slot_id!r}].containers", StateFileError) if c]
    users_raw = info.get("users") or {}
    users = [str(u) for u in (users_raw if isinstance(users_raw, (dict, list)) else [])]
    if not containers and not users:
        return []
    uuid = str(info.get("uuid") or "")
    if uuid.startswith("hw:"):
        uuid = ""  # DS01's fallback id when nvidia-smi -L failed: no real UUID
    gpu = _int(info.get("physical_gpu"))
    if gpu is None:
        gpu = _int(slot_id.split(".", 1)[0])
    is_mig = "." in slot_id or info.get("type") == "mig_instance"
    if is_mig and not uuid:
        # A MIG device numbered by DS01 (nvidia-smi -L order), which is not the GPU instance id:
        # without its UUID it cannot be placed on a slice.
        return []
    # DS01 names one user per slot (its `users` counts that user's containers there).
    user = users[0] if users else ""
    out = [Grant(SOURCE, gpu=gpu, uuid=uuid, user=user, container=c) for c in containers]
    if not out:
        out = [Grant(SOURCE, gpu=gpu, uuid=uuid, user=u) for u in users]
    return out


def _plain(entry: Any, where: str) -> Grant:
    if not isinstance(entry, dict):
        raise StateFileError(f"{where}: expected an object, got {type(entry).__name__}")
    gpu, uuid = _int(entry.get("gpu")), str(entry.get("uuid") or "")
    if gpu is None and not uuid:
        raise StateFileError(f"{where}: needs \"gpu\" (an index) or \"uuid\"")
    return Grant(SOURCE, gpu=gpu, gpu_instance=_int(entry.get("gpu_instance")), uuid=uuid,
                 user=str(entry.get("user") or ""), container=str(entry.get("container") or ""),
                 pod=str(entry.get("pod") or ""), namespace=str(entry.get("namespace") or ""),
                 slurm_job=str(entry.get("slurm_job") or entry.get("job") or ""),
                 running=bool(entry.get("running", True)))


def parse(data: bytes | str) -> list[Grant]:
    """Grants in a state file's text; StateFileError names what is wrong."""
    try:
        doc = json.loads(data)
    except ValueError as e:
        raise StateFileError(f"not JSON: {e}") from None
    if not isinstance(doc, dict):
        raise StateFileError("expected a JSON object with \"gpus\" (DS01) or \"allocations\"")
    if isinstance(doc.get("allocations"), list):
        return [_plain(e, f"allocations[{i}]") for i, e in enumerate(doc["allocations"])]
    gpus = doc.get("gpus")
    if not isinstance(gpus, dict):
        raise StateFileError("expected a JSON object with \"gpus\" (DS01) or \"allocations\"")
    out: list[Grant] = []
    for slot_id, info in gpus.items():
        if isinstance(info, dict):
            out.extend(_ds01_slot(str(slot_id), info))
    return out


class StateFile:
    """Reads the file when it changed since the last round (a stat per round otherwise)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._key: tuple[int, int] | None = None
        self._grants: list[Grant] = []

    def grants(self) -> list[Grant]:
        try:
            st = os.stat(self.path)
        except OSError as e:
            raise StateFileError(f"cannot read allocation state file {self.path}: {e.strerror or e}") from None
        key = (st.st_mtime_ns, st.st_size)
        if key != self._key:
            try:
                self._grants = parse(self.path.read_bytes())
            except OSError as e:
                raise StateFileError(f"cannot read allocation state file {self.path}: {e.strerror or e}") from None
            except StateFileError as e:
                raise StateFileError(f"allocation state file {self.path}: {e}") from None
            self._key = key
        return self._grants
