"""What every collector shares: the protocol and the context it is built from."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Protocol

from ..backends.base import Backend
from ..snapshot import NodeSnapshot


@dataclass(slots=True)
class CollectContext:
    """Injectable roots and sources, so tests run collectors on fixture trees."""

    procfs: Path = Path("/proc")
    sysfs: Path = Path("/sys")
    backend: Backend | None = None
    # Simulated host load (set by sim profiles so demos look alive); None = real host.
    options: dict[str, object] = field(default_factory=dict)


class Collector(Protocol):
    """Fills its part of the snapshot. Raising marks it failed for this round only."""

    name: str

    def collect(self, snap: NodeSnapshot) -> None: ...


Factory = Callable[[CollectContext], Collector]
