"""The agent's remote-command poller: fetches signed commands from the hub over its own connection.

One thread long-polls `GET /api/v1/commands/next` with the node credential (the hub holds each
poll ~25 s), so a node behind NAT runs commands and the hub never connects to it. Every message
goes through the Verifier (command_verify.py) first; a refusal is reported to the hub with its
reason. Allowed commands run on their own threads (command_exec.py) and their results are posted
to `POST /api/v1/commands/{id}/result`, so a long command never stops the next poll, nor a cancel.
Off unless the agent is started with --allow-commands.
"""

from __future__ import annotations

import logging
import random
import ssl
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from .. import __version__
from ..httpclient import Client, HTTPError
from .command_exec import Executor
from .command_policy import RunAs
from .command_verify import Refused, Verifier

if TYPE_CHECKING:
    from .push import Pusher

log = logging.getLogger("gpufleet.agent.commands")

NEXT_PATH = "/api/v1/commands/next"
HOLD = 25.0


class CommandPoller:
    def __init__(self, hub: str, credential: Callable[[], str | None], verifier: Verifier, executor: Executor,
                 *, hold: float = HOLD,
                 verify: ssl.SSLContext | bool = True) -> None:
        self.hub = hub
        self._credential = credential
        self.verifier = verifier
        self.executor = executor
        self.hold = hold
        self._client = Client(timeout=hold + 15, connect_timeout=5.0, verify=verify,
                              headers={"User-Agent": f"gpufleet-agent/{__version__}"})
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failures = 0
        self._problem = ""
        self.counts = {"received": 0, "refused": 0, "run": 0}

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="gpufleet-commands", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self.executor.cancel_all()
        self._client.close()  # ends a poll in flight
        if self._thread is not None:
            self._thread.join(2)

    # ---- polling ------------------------------------------------------------------------------

    def _loop(self) -> None:
        while not self._stop.is_set():
            if self._credential() is None:  # not registered yet: the pusher is at it
                self._stop.wait(0.5)
                continue
            try:
                messages = self._poll()
            except Exception:  # never let a bug end command polling for the agent's life
                if self._stop.is_set():
                    return
                log.exception("command poll failed")
                messages = None
            if messages is None:
                self._failures += 1
                self._stop.wait(min(30.0, 2 ** min(self._failures, 5)) * random.uniform(0.5, 1.0))
                continue
            self._failures = 0
            for m in messages:
                self.handle(m)

    def _poll(self) -> list[Any] | None:
        cred = self._credential()
        if cred is None:
            return None
        try:
            r = self._client.get(self.hub + NEXT_PATH, params={"wait": self.hold},
                                 headers={"Authorization": f"Bearer {cred}"})
        except HTTPError as e:
            if not self._stop.is_set():
                self._note(f"hub unreachable for commands ({type(e).__name__})")
            return None
        if r.status_code != 200:
            self._note(f"hub answered HTTP {r.status_code} to the command poll")
            return None
        try:
            messages = r.json()["messages"]
            if not isinstance(messages, list):
                raise TypeError
        except (ValueError, KeyError, TypeError):
            self._note("hub's command poll answer is not {\"messages\": [...]}")
            return None
        if self._problem:
            log.info("fetching commands from the hub again")
            self._problem = ""
        return messages

    def _note(self, problem: str) -> None:
        if problem != self._problem:  # once per change, not on every retry
            log.warning("%s; retrying", problem)
            self._problem = problem

    # ---- one message ----------------------------------------------------------------------------

    def handle(self, message: Any) -> None:
        """Verify, then refuse (reporting why), cancel, or start the command on its own thread."""
        self.counts["received"] += 1
        try:
            payload = self.verifier.check(message)
        except Refused as e:
            self.counts["refused"] += 1
            run_id = _claimed_id(message)
            log.warning("refused command %s: %s", run_id, e)
            if run_id is not None:
                self._report(run_id, {"status": "refused", "reason": str(e)})
            return
        if payload["kind"] == "cancel":
            if self.executor.cancel(payload["id"]):
                log.info("cancelled command %s", payload["id"])
            return
        if self.executor.busy():
            self._report(payload["id"], {"status": "refused", "reason": "busy: too many commands running"})
            return
        self.counts["run"] += 1
        log.info("running command %s: %s", payload["id"], payload["argv"])
        threading.Thread(target=self._run, args=(payload,), daemon=True, name="gpufleet-cmd").start()

    def _run(self, payload: dict[str, Any]) -> None:
        try:
            result = self.executor.run(payload["id"], payload["argv"], float(payload["timeout"]))
        except Exception as e:
            log.exception("command %s failed to run", payload["id"])
            result = {"status": "error", "reason": f"agent error: {type(e).__name__}"}
        self._report(payload["id"], result)

    def _report(self, run_id: str, result: dict[str, Any]) -> None:
        cred = self._credential()
        for attempt in range(3):
            try:
                r = self._client.post(f"{self.hub}/api/v1/commands/{quote(run_id, safe='')}/result", json=result,
                                      headers={"Authorization": f"Bearer {cred}"}, timeout=15)
                if r.status_code < 500:
                    if r.status_code >= 400:
                        log.warning("hub refused the result of command %s: HTTP %d", run_id, r.status_code)
                    return
            except HTTPError:
                if self._stop.is_set():
                    return
            time.sleep(0.5 * (attempt + 1))
        log.warning("could not report the result of command %s to the hub", run_id)


def _claimed_id(message: Any) -> str | None:
    """The run id a (possibly forged) message claims, to report the refusal against it."""
    payload = message.get("payload") if isinstance(message, dict) else None
    run_id = payload.get("id") if isinstance(payload, dict) else None
    if isinstance(run_id, str) and 0 < len(run_id) <= 64 and run_id.isascii() and run_id.isprintable():
        return run_id
    return None


def attach_commands(pusher: Pusher, node: str, patterns: list[str], run_as: RunAs) -> CommandPoller:
    """Start polling the pusher's hub for commands, with the pusher's credential and pinned key."""
    verifier = Verifier(node, lambda: pusher.credentials.hub_key(pusher.hub), patterns,
                        nonce_file=Path(pusher.credentials.path).with_name("command_nonces"))
    poller = CommandPoller(pusher.hub, lambda: pusher.credential, verifier, Executor(run_as), verify=pusher.verify)
    poller.start()
    log.info("remote commands on: allowed %s, run as %s", "; ".join(patterns), run_as.name)
    return poller
