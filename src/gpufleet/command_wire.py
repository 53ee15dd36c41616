"""The signed remote-command message, shared by hub (signs) and agent (verifies).

A message is `{"payload": {...}, "signature": "<base64 Ed25519 signature>"}`. The signature covers
`DOMAIN + canonical JSON of the payload` (sorted keys, no spaces, ASCII), so the bytes signed do
not depend on how either side happens to lay out JSON, and a signature made for anything else
(another protocol, another version) never verifies as a command. Every field is signed: the
command id, the node it is meant for, argv, a random nonce, when it was issued, when it expires and
the run timeout. Changing any of them after signing breaks the signature.
"""

from __future__ import annotations

import base64
import json
import math
from typing import Any

DOMAIN = b"gpufleet-command-v1\n"
KINDS = ("run", "cancel")
FIELDS = ("kind", "id", "node", "argv", "nonce", "issued_at", "expires_at", "timeout")
MAX_OUTPUT = 64 * 1024  # bytes of stdout and of stderr kept per node
MAX_ARGV_BYTES = 32 * 1024


class MessageError(ValueError):
    """The message is not a well-formed command (before any signature check)."""


def check_payload(payload: Any) -> dict[str, Any]:
    """The payload with every field of the right type, or MessageError naming the first bad one."""
    if not isinstance(payload, dict):
        raise MessageError("payload is not an object")
    extra = set(payload) - set(FIELDS)
    if extra:
        raise MessageError(f"payload has unknown fields: {', '.join(sorted(extra))}")
    for name in FIELDS:
        if name not in payload:
            raise MessageError(f"payload lacks {name!r}")
    if payload["kind"] not in KINDS:
        raise MessageError(f"kind {payload['kind']!r} is not one of {', '.join(KINDS)}")
    for name in ("id", "node", "nonce"):
        if not isinstance(payload[name], str) or not payload[name] or len(payload[name]) > 256:
            raise MessageError(f"{name} is not a non-empty string")
    argv = payload["argv"]
    if not isinstance(argv, list) or not all(isinstance(a, str) for a in argv):
        raise MessageError("argv is not a list of strings")
    if sum(len(a) for a in argv) > MAX_ARGV_BYTES or any("\x00" in a for a in argv):
        raise MessageError("argv is too long or holds a NUL character")
    if payload["kind"] == "run" and not argv:
        raise MessageError("argv is empty")
    for name in ("issued_at", "expires_at", "timeout"):
        v = payload[name]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise MessageError(f"{name} is not a number")
    return payload


def signed_bytes(payload: dict[str, Any]) -> bytes:
    """What the hub signs and the agent verifies."""
    body = {k: payload[k] for k in FIELDS}
    return DOMAIN + json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def unb64(text: str) -> bytes:
    return base64.b64decode(text.encode(), validate=True)
