"""`gpufleet up`'s composition root: a hub fed in-process by this machine's agent and a
simulated fleet. The one place that puts hub, agent and backends together; hub/ itself
imports none of them, so the hub stands alone."""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable

from .agent.collect import Collection
from .agent.service import AgentService
from .backends.sim import GROUPS as SIM_GROUPS
from .backends.sim import SimBackend
from .backends.sim_profiles import DEMO_FLEET
from .collectors import SIMULATED_NODE, build
from .collectors.base import CollectContext
from .config import AgentConfig
from .hub.service import Hub, IngestError
from .snapshot import NodeSnapshot

log = logging.getLogger("gpufleet.hub")

NO_GPU_NOTE = ("No accelerator found on this machine: the hub shows its host metrics. "
               "For a demo fleet run `gpufleet up --simulate 16`.")


class LocalFeeds:
    """In-process agents: each collects on its own thread and hands snapshots to the hub."""

    def __init__(self) -> None:
        self.stops: list[Callable[[], None]] = []

    def add_service(self, service: AgentService, hub: Hub) -> None:
        def ingest(snap: NodeSnapshot) -> None:
            try:
                hub.ingest([snap])
            except IngestError:
                pass  # disk full or below --min-free-space: /healthz and the hub's log say so once

        service.listeners.append(ingest)
        service.start_collecting()
        self.stops.append(service.stop)

    def add_loop(self, target: Callable[[threading.Event], None]) -> None:
        stop = threading.Event()
        t = threading.Thread(target=target, args=(stop,), daemon=True, name="gpufleet-feed")
        t.start()

        def _stop() -> None:
            stop.set()
            t.join(timeout=5)

        self.stops.append(_stop)

    def stop(self) -> None:
        for s in self.stops:
            try:
                s()
            except Exception:
                log.debug("feed stop failed", exc_info=True)


def sim_fleet(count: int, seed: int = 0) -> list[Collection]:
    """`count` simulated nodes cycling through the demo fleet's mix of profiles."""
    nodes = []
    numbers: dict[str, int] = {}  # per name prefix, so names stay unique past the demo list
    for i in range(count):
        base, profile = DEMO_FLEET[i % len(DEMO_FLEET)]
        prefix = base.rsplit("-", 1)[0]
        numbers[prefix] = numbers.get(prefix, 0) + 1
        name = f"{prefix}-{numbers[prefix]:02d}"
        backend = SimBackend(profile, seed=seed, node=name)
        ctx = CollectContext(backend=backend, options={"node": name, "groups": SIM_GROUPS})
        labels = {"cluster": "demo", "profile": profile, "simulated": "true"}
        nodes.append(Collection(name, build(ctx, SIMULATED_NODE), labels=labels, backend="sim"))
    return nodes


def start_local_feeds(hub: Hub, *, agent: bool, simulate: int | None, interval: float,
                      simulate_if_no_gpu: int | None = None) -> tuple[LocalFeeds, str]:
    feeds = LocalFeeds()
    note = ""
    if agent:
        cfg = AgentConfig(node=socket.gethostname(), interval=interval, backend="auto")
        service = AgentService(cfg)
        if service.backend is None and simulate is None:
            if simulate_if_no_gpu:
                simulate = simulate_if_no_gpu
                note = "No accelerator found on this machine."
            else:
                note = NO_GPU_NOTE
        hub.fleet.view(cfg.node).source = "local"
        feeds.add_service(service, hub)
    if simulate:
        fleet = sim_fleet(simulate)
        for c in fleet:
            hub.fleet.view(c.node).labels = dict(c.labels)
            hub.fleet.view(c.node).source = "local"

        def loop(stop: threading.Event) -> None:
            next_at = time.monotonic()
            while not stop.is_set():
                for c in fleet:
                    try:
                        hub.ingest([c.run()])
                    except IngestError:
                        pass  # storage paused: reported by the hub (/healthz, one log line)
                    except Exception:
                        log.exception("simulated node %s failed", c.node)
                next_at += interval
                stop.wait(max(0.0, next_at - time.monotonic()))

        feeds.add_loop(loop)
        note = (note + " " if note else "") + (
            f"Simulating {simulate} nodes of mixed GPU profiles (labels cluster=demo, simulated=true).")
    return feeds, note
