"""The agent's check of every command message, before anything runs.

A message runs only if all hold: it is well formed; it is meant for this node; its Ed25519
signature verifies against the hub key pinned at registration (so a forged or altered message
fails); it is not expired nor issued in the future beyond a small clock skew; its nonce was not
seen before (kept until the message expires, so a replay is caught for as long as it could be
valid, across agent restarts when a nonce file is given); and its argv matches this agent's
allow-list. The hub is not trusted to have checked any of it.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

# PyNaCl (libsodium), not cryptography, on the agent: it verifies the same Ed25519 signatures the
# hub makes with cryptography, at a quarter of the install size (the agent must stay small).
from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey

from ..command_wire import MessageError, check_payload, signed_bytes, unb64
from .command_policy import allowed, compile_pattern

MAX_SKEW = 60.0  # seconds a hub's clock may run ahead of this node's
MAX_LIFETIME = 600.0  # longest issued-to-expiry span accepted: bounds the nonce cache
MAX_TIMEOUT = 86400.0
MAX_NONCES = 100_000

log = logging.getLogger("gpufleet.agent.commands")


class Refused(Exception):
    """The message must not run; str(e) is the reason reported to the hub."""


class Verifier:
    def __init__(self, node: str, hub_key: Callable[[], str | None], patterns: list[str],
                 clock: Callable[[], float] = time.time, nonce_file: Path | None = None) -> None:
        self.node = node
        self._hub_key = hub_key  # read each time: the key is pinned at (re)registration
        self._patterns = [compile_pattern(p) for p in patterns]
        self._clock = clock
        self._nonces: dict[str, float] = {}  # nonce -> expiry
        self._lock = threading.Lock()
        self._prune_at = 1000
        self._file = nonce_file
        if nonce_file is not None:
            self._load(nonce_file)

    def _load(self, path: Path) -> None:
        """Nonces of messages that may still be valid, from before a restart."""
        now = self._clock()
        try:
            text = path.read_text()
        except FileNotFoundError:
            return
        except OSError as e:
            log.warning("cannot read the nonce file %s: %s", path, e)
            return
        for line in text.splitlines():
            expiry, _, nonce = line.partition(" ")
            try:
                if float(expiry) >= now and nonce:
                    self._nonces[nonce] = float(expiry)
            except ValueError:
                continue
        self._rewrite()

    def _rewrite(self) -> None:
        if self._file is None:
            return
        tmp = self._file.with_name(self._file.name + ".tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                f.writelines(f"{e} {n}\n" for n, e in self._nonces.items())
            os.replace(tmp, self._file)
        except OSError as e:
            log.warning("cannot write the nonce file %s: %s", self._file, e)

    def _remember(self, nonce: str, expires: float) -> None:
        self._nonces[nonce] = expires
        if self._file is None:
            return
        try:
            fd = os.open(self._file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            with os.fdopen(fd, "a") as f:
                f.write(f"{expires} {nonce}\n")
        except OSError as e:
            log.warning("cannot write the nonce file %s: %s", self._file, e)

    def check(self, message: Any) -> dict[str, Any]:
        """The verified payload, or Refused with the reason."""
        if not isinstance(message, dict) or not isinstance(message.get("signature"), str):
            raise Refused("malformed message: no signature")
        try:
            payload = check_payload(message.get("payload"))
        except MessageError as e:
            raise Refused(f"malformed message: {e}") from None
        if payload["node"] != self.node:
            raise Refused(f"message is for node {payload['node']!r}, not this node ({self.node!r})")
        self._check_signature(payload, message["signature"])
        now = self._clock()
        if now > payload["expires_at"]:
            raise Refused(f"expired {now - payload['expires_at']:.0f} s ago")
        if payload["issued_at"] > now + MAX_SKEW:
            raise Refused("issued in the future: check the hub's and this node's clocks")
        if payload["expires_at"] - payload["issued_at"] > MAX_LIFETIME:
            raise Refused(f"valid for longer than {MAX_LIFETIME:.0f} s")
        self._check_nonce(payload["nonce"], payload["expires_at"], now)
        if payload["kind"] == "run":
            if not 0 < payload["timeout"] <= MAX_TIMEOUT:
                raise Refused(f"timeout {payload['timeout']} is outside 0 to {MAX_TIMEOUT:.0f} s")
            if not allowed(payload["argv"], self._patterns):
                raise Refused("not allowed on this node: argv matches no --allow-commands pattern")
        return payload

    def _check_signature(self, payload: dict[str, Any], signature: str) -> None:
        key_b64 = self._hub_key()
        if not key_b64:
            raise Refused("no hub key pinned: this agent registered with a hub that did not sign commands")
        try:
            VerifyKey(unb64(key_b64)).verify(signed_bytes(payload), unb64(signature))
        except (BadSignatureError, ValueError, TypeError):
            raise Refused("bad signature: not signed by the hub key pinned at registration") from None

    def _check_nonce(self, nonce: str, expires: float, now: float) -> None:
        with self._lock:
            if len(self._nonces) >= self._prune_at:  # drop expired ones now and then, not per message
                self._nonces = {n: e for n, e in self._nonces.items() if e >= now}
                self._prune_at = max(1000, 2 * len(self._nonces))
                self._rewrite()
            if nonce in self._nonces:
                raise Refused("replayed: this nonce was already used")
            if len(self._nonces) >= MAX_NONCES:
                raise Refused("too many commands in flight to remember their nonces; try again shortly")
            self._remember(nonce, expires)
