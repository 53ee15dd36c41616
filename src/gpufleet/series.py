"""Turn a NodeSnapshot into (series key, value) pairs: what the store and remote write take.

A series key is (metric name, sorted label pairs), labels as the exposition shows them
(node plus the scope's identity labels). Info metrics and per-process series are not
stored as time series: they live in the latest snapshot instead, which keeps the store's
series count proportional to hardware, not to process churn.
"""

from __future__ import annotations

from .catalogue import BY_SCOPE, SCOPE_LABELS
from .exposition import records
from .snapshot import NodeSnapshot

SeriesKey = tuple[str, tuple[tuple[str, str], ...]]

STORED_SCOPES = ("node", "cpu", "disk", "net", "gpu", "mig", "user", "collector", "agent")


def snapshot_series(snap: NodeSnapshot, extra_labels: dict[str, str] | None = None) -> tuple[list[SeriesKey], list[float]]:
    keys: list[SeriesKey] = []
    values: list[float] = []
    base = {"node": snap.node, **(extra_labels or {})}
    for scope in STORED_SCOPES:
        metrics = [m for m in BY_SCOPE[scope] if m.kind != "info"]
        names = SCOPE_LABELS[scope]
        for ids, vals, _ in records(snap, scope):
            if not vals:
                continue
            labels = tuple(sorted({**base, **dict(zip(names, ids))}.items()))
            for m in metrics:
                v = vals.get(m.key)
                if v is not None:
                    keys.append((m.name, labels))
                    values.append(float(v))
    return keys, values
