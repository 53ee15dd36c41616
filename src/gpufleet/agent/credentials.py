"""Where an agent keeps the node credential the hub gave it at registration.

The join token is meant to be used once per node (and may be revoked after enrolment); the node
credential it buys is what every push carries. Keeping it in `SPOOL/credential.json` lets an agent
restart without the token. The file is mode 0600 and written atomically, keyed by hub URL and node
name so one file can never hand one hub's secret to another hub.
"""

from __future__ import annotations

import json
import logging
import os
import stat
import time
from pathlib import Path

log = logging.getLogger("gpufleet.agent.push")

FILENAME = "credential.json"


def _key(hub: str, node: str) -> str:
    return f"{hub} {node}"  # a space cannot occur in a URL, so the key is unambiguous


class CredentialStore:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def _read(self) -> dict[str, dict[str, object]]:
        entries = self._read_doc().get("credentials", {})
        return entries if isinstance(entries, dict) else {}

    def _read_doc(self) -> dict[str, object]:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return {}
        if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            # Someone loosened it (copy, umask, backup restore): a readable secret is a leaked one.
            log.warning("%s was readable by others (mode %o); restricting it to 0600",
                        self.path, stat.S_IMODE(st.st_mode))
            try:
                os.chmod(self.path, 0o600)
            except OSError as e:
                log.warning("cannot chmod %s: %s", self.path, e)
        try:
            doc = json.loads(self.path.read_text())
            if not isinstance(doc["credentials"], dict):
                raise TypeError("credentials is not a mapping")
            return doc  # type: ignore[no-any-return]
        except (OSError, ValueError, KeyError, TypeError) as e:
            log.warning("ignoring unreadable credential file %s (%s); the agent will register again",
                        self.path, type(e).__name__)
            return {}

    def load(self, hub: str, node: str) -> str | None:
        entry = self._read().get(_key(hub, node))
        if isinstance(entry, dict) and isinstance(entry.get("credential"), str) and entry["credential"]:
            return str(entry["credential"])
        return None

    def save(self, hub: str, node: str, credential: str) -> None:
        entries = self._read()
        entries[_key(hub, node)] = {"hub": hub, "node": node, "credential": credential,
                                    "registered_at": time.time()}
        self._write_entries(entries)

    def forget(self, hub: str, node: str) -> None:
        entries = self._read()
        if entries.pop(_key(hub, node), None) is not None:
            self._write_entries(entries)

    # ---- the hub's command key, pinned at the first registration that returned one -------------
    # Kept apart from the credentials: a hub that rejects the credential makes the agent register
    # again, and that must not let whoever answered in the hub's place swap the key too.

    def hub_key(self, hub: str) -> str | None:
        keys = self._read_doc().get("hub_keys", {})
        key = keys.get(hub) if isinstance(keys, dict) else None
        return key if isinstance(key, str) and key else None

    def pin_hub_key(self, hub: str, key: str) -> bool:
        """Pin `key` for `hub` unless another key is pinned already; True when `key` is the pinned one."""
        doc = self._read_doc()
        keys = doc.get("hub_keys")
        keys = dict(keys) if isinstance(keys, dict) else {}
        pinned = keys.get(hub)
        if pinned == key:
            return True
        if isinstance(pinned, str) and pinned:
            log.error("hub %s now presents another command-signing key than the one pinned in %s: commands "
                      "stay refused; if the hub's data directory was really replaced, remove its entry under "
                      "hub_keys in that file and restart the agent", hub, self.path)
            return False
        keys[hub] = key
        self._write({"version": 1, "credentials": self._read(), "hub_keys": keys})
        return True

    def _write_entries(self, entries: dict[str, dict[str, object]]) -> None:
        doc: dict[str, object] = {"version": 1, "credentials": entries}
        keys = self._read_doc().get("hub_keys")
        if isinstance(keys, dict) and keys:
            doc["hub_keys"] = keys
        self._write(doc)

    def _write(self, doc: dict[str, object]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        # Created 0600 from the start (not chmod after), so the secret is never briefly world-readable.
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(doc, f, indent=2)
                f.flush()
                os.fsync(f.fileno())  # losing the credential to a crash would strand the node
            os.chmod(tmp, 0o600)  # O_CREAT's mode does not apply if a stale tmp already existed
            os.replace(tmp, self.path)
        except BaseException:
            try:
                tmp.unlink()
            except OSError:
                pass
            raise
