"""The hub's Ed25519 command key: created once in the data directory (0600), signs every command.

Agents pin the public half when they register, so whoever later changes what the hub sends (a
proxy, a tampered database, a forged hub) cannot make an agent run anything: only this private
key signs, and it never leaves the hub's data directory.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ...command_wire import b64, signed_bytes

log = logging.getLogger("gpufleet.hub.commands")

FILENAME = "command_key.pem"


class HubKey:
    def __init__(self, private: Ed25519PrivateKey) -> None:
        self._private = private
        raw = private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        self.public_b64 = b64(raw)  # what register hands to agents

    @classmethod
    def load_or_create(cls, data: Path) -> HubKey:
        path = data / FILENAME
        try:
            pem = path.read_bytes()
        except FileNotFoundError:
            return cls._create(path)
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            log.warning("%s was readable by others (mode %o); restricting it to 0600", path, mode)
            os.chmod(path, 0o600)
        key = serialization.load_pem_private_key(pem, password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError(f"{path} is not an Ed25519 key: move it away and the hub makes a new one")
        return cls(key)

    @classmethod
    def _create(cls, path: Path) -> HubKey:
        key = Ed25519PrivateKey.generate()
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        # 0600 from creation (O_EXCL: never reuse a file someone else prepared), whatever the umask.
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(pem)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, 0o600)
            os.link(tmp, path)  # fails if another hub process created the key meanwhile
        except FileExistsError:
            return cls.load_or_create(path.parent)
        finally:
            tmp.unlink(missing_ok=True)
        log.info("created the hub's command signing key %s", path)
        return cls(key)

    def sign(self, payload: dict[str, Any]) -> dict[str, Any]:
        """The message an agent receives: payload plus signature over its canonical bytes."""
        return {"payload": payload, "signature": b64(self._private.sign(signed_bytes(payload)))}
