"""Command lines reach viewers only when the hub allows it; admins always see them (issue 9)."""

from __future__ import annotations

from pathlib import Path

import pytest

from access import authed_client
from gpufleet.hub.app import create_app
from gpufleet.hub.auth import Role
from gpufleet.hub.extensions import load_extensions
from gpufleet.hub.service import Hub, HubOptions
from gpufleet.snapshot import GpuProcess, Process
from sample_snapshot import sample_snapshot

SECRET_ARGS = "python train.py --run-name project-x-confidential"


def _hub(tmp_path: Path, show: bool) -> Hub:
    h = Hub(HubOptions(data=tmp_path / f"data-{show}", show_command_lines=show))
    s = sample_snapshot("n1")
    s.timestamp = 1000.0
    s.processes = [Process(pid=42, user="alice", name="python", command=SECRET_ARGS)]
    s.gpus[0].processes = [GpuProcess(pid=42, user="alice", command=SECRET_ARGS, memory_bytes=1 << 30)]
    h.ingest([s], now=1000.0)
    return h


@pytest.mark.parametrize("role, show, visible", [
    (Role.VIEWER, False, False), (Role.OPERATOR, False, False), (Role.ADMIN, False, True),
    (Role.VIEWER, True, True),
])
def test_who_sees_command_lines(tmp_path: Path, role: Role, show: bool, visible: bool) -> None:
    hub = _hub(tmp_path, show)
    try:
        with authed_client(hub, load_extensions(hub), role=role.label, background=False) as c:  # a key of that role
            answers = [
                c.get("/api/v1/nodes/n1/snapshot").text,
                c.get("/api/v1/snapshots", params={"processes": "true"}).text,
                c.get("/api/v1/snapshots").text,  # summaries keep GPU processes
                c.get("/nodes/n1").text,
                c.get("/nodes/n1/gpus/0").text,
                c.get("/users/alice").text,
            ]
            for text in answers:
                assert (SECRET_ARGS in text) is visible, text[:300]
            # what is left for a viewer still says who runs what
            assert '"user":"alice"' in answers[0] and '"name":"python"' in answers[0]
    finally:
        hub.close()


@pytest.mark.parametrize("role, visible", [(Role.VIEWER, False), (Role.ADMIN, True)])
def test_live_node_events_follow_the_same_rule(tmp_path: Path, role: Role, visible: bool) -> None:
    from gpufleet.hub.ui.events import Subscriber

    hub = _hub(tmp_path, False)
    try:
        app = create_app(hub, load_extensions(hub), background=False)
        ui = next(e for e in hub.extensions if hasattr(e, "broker"))
        sub = Subscriber(fleet=False, node="n1", user="alice", commands=role >= Role.ADMIN)
        first = ui.broker.node_message("n1", sub.commands) + ui.broker.user_message("alice", sub.commands)
        assert (SECRET_ARGS.encode() in first) is visible
        ui.broker.subscribe(sub)
        s = sample_snapshot("n1")
        s.timestamp = 1001.0
        s.processes = [Process(pid=42, user="alice", name="python", command=SECRET_ARGS)]
        s.gpus[0].processes = [GpuProcess(pid=42, user="alice", command=SECRET_ARGS, memory_bytes=1 << 30)]
        hub.ingest([s], now=1001.0)
        ui.broker.tick()
        sent = b""
        while not sub.queue.empty():
            sent += sub.queue.get_nowait()
        assert b"event: node" in sent and (SECRET_ARGS.encode() in sent) is visible
        del app
    finally:
        hub.close()
