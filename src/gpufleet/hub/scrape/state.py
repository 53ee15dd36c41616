"""What a scrape remembers between runs, and how one fails."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..targets import Target


class ScrapeError(Exception):
    """A scrape that gave no snapshot; the message names the target and the cause."""

    def __init__(self, target: Target, cause: str) -> None:
        super().__init__(f"scrape of {target.url} (node {target.node}) failed: {cause}")
        self.target = target
        self.cause = cause


@dataclass(slots=True)
class ScrapeState:
    """What one target's scrapes remember between runs; the hub keeps one per Target.url."""

    node: str = ""  # the target's node name, for the exported metrics
    kind: str | None = None  # detected exporter kind (for kind: auto)
    snapshot_api: bool | None = None  # does the target answer /api/v1/snapshot? None = not tried
    cpu: dict[str, tuple[float, float]] = field(default_factory=dict)  # node_exporter: cpu -> (busy, total) s
    scrapes: int = 0
    samples: int = 0  # samples in the last scrape
    ignored: int = 0  # of those, how many no mapping used
    duration: float = 0.0  # seconds the last scrape took

    def values(self) -> dict[str, float]:
        """This target's scrape health, as the hub exports it (catalogue scope "hub_scrape")."""
        return {"successes_total": float(self.scrapes), "samples": float(self.samples),
                "samples_ignored": float(self.ignored), "duration_seconds": self.duration}
