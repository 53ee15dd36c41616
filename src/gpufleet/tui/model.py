"""The fleet as `gpufleet top`, `ls` and `free` see it: plain typed rows built from the hub's JSON.

No terminal code here, so the same rows feed the Textual view, the one-shot lists and the tests.
A reading the node did not send stays None all the way to the screen: it prints as missing,
never as 0 (a GPU whose sensor failed is not at 0 °C).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..snapshot import gpu_busy_ratio

# A GPU below this utilisation and with no processes on it counts as free (the same 5 % the old
# `top` summary used for "busy").
BUSY_RATIO = 0.05


@dataclass(slots=True)
class Proc:
    pid: int
    user: str
    command: str
    memory_bytes: float | None


@dataclass(slots=True)
class GpuRow:
    node: str
    index: int
    model: str
    up: bool
    util: float | None
    mem_used: float | None
    mem_total: float | None
    temp: float | None
    power: float | None
    power_limit: float | None
    procs: list[Proc]
    uuid: str = ""

    @property
    def mem_ratio(self) -> float | None:
        if self.mem_used is None or not self.mem_total:
            return None
        return self.mem_used / self.mem_total

    @property
    def users(self) -> list[str]:
        return list(dict.fromkeys(p.user for p in self.procs))

    def who(self) -> str:
        """`alice python train.py, bob ...`: each process's user and command, once each."""
        return ", ".join(dict.fromkeys(f"{p.user} {p.command}".strip() for p in self.procs))


@dataclass(slots=True)
class NodeRow:
    name: str
    status: str  # up | stale | down | moved (to another hub; agent mode: always up while it answers)
    since: float | None
    last_seen: float | None
    labels: dict[str, str]
    cpu: float | None
    mem_used: float | None
    mem_total: float | None
    gpus: list[GpuRow] = field(default_factory=list)
    error: str = ""

    @property
    def mem_ratio(self) -> float | None:
        if self.mem_used is None or not self.mem_total:
            return None
        return self.mem_used / self.mem_total


@dataclass(slots=True)
class Alert:
    name: str
    severity: str
    summary: str
    node: str
    gpu: str


@dataclass(slots=True)
class Fleet:
    nodes: list[NodeRow]
    alerts: list[Alert]
    fetched_at: float

    def gpu_count(self) -> int:
        return sum(len(n.gpus) for n in self.nodes)

    def free_gpus(self) -> list[GpuRow]:
        return [g for n in self.nodes if n.status == "up" for g in n.gpus if is_free(g)]


def _num(v: Any) -> float | None:
    t = type(v)
    return v if t is float else (float(v) if t is int else None)


def is_free(g: GpuRow) -> bool:
    """Up, nobody's process on it, and (when known) nearly idle."""
    return g.up and not g.procs and (g.util is None or g.util < BUSY_RATIO)


def gpu_row(node: str, g: Mapping[str, Any]) -> GpuRow:
    # Runs for every GPU of the fleet on every refresh (8,000 at 1,000 nodes): plain lookups only.
    v = g.get("values") or {}
    procs = [Proc(p.get("pid") or 0, p.get("user") or "?", p.get("command") or "", _num(p.get("memory_bytes")))
             for p in g["processes"]] if g.get("processes") else []
    up = v.get("up")
    util = v.get("utilization_ratio")
    if util is None and g.get("mig"):
        util = gpu_busy_ratio(v, ((m.get("values") or {}) for m in g["mig"]))
    get = v.get
    return GpuRow(node, g.get("index", 0), g.get("model") or "", up is None or up >= 1, _num(util),
                  _num(get("memory_used_bytes")), _num(get("memory_total_bytes")), _num(get("temperature_celsius")),
                  _num(get("power_watts")), _num(get("power_limit_watts")), procs, g.get("uuid") or "")


# node name -> (snapshot timestamp, its GPU rows): a live view re-reads every node each interval,
# but only the nodes that pushed since have new GPU rows to build.
GpuCache = dict[str, tuple[float, list[GpuRow]]]


def build(snapshots: Iterable[Mapping[str, Any]], statuses: Mapping[str, Mapping[str, Any]],
          alerts: Iterable[Mapping[str, Any]] = (), fetched_at: float = 0.0, cache: GpuCache | None = None) -> Fleet:
    """Rows from `/api/v1/snapshots` + `/api/v1/nodes` (+ firing `/api/v1/alerts`). A node the hub
    knows but that never sent data still gets a row, so a dead node cannot vanish from view."""
    rows: dict[str, NodeRow] = {}
    fresh: GpuCache = {}
    for s in snapshots:
        name = str(s["node"])
        ts = s.get("timestamp") or 0.0
        hit = cache.get(name) if cache is not None else None
        gpus = hit[1] if hit is not None and hit[0] == ts else [gpu_row(name, g) for g in s.get("gpus") or ()]
        fresh[name] = (ts, gpus)
        st = statuses.get(name, {})
        v = s.get("values") or {}
        rows[name] = NodeRow(
            name=name, status=str(st.get("status", "up")), since=_num(st.get("since")),
            last_seen=_num(st.get("last_seen")) or _num(s.get("timestamp")),
            labels={str(k): str(x) for k, x in (s.get("labels") or st.get("labels") or {}).items()},
            cpu=_num(v.get("cpu_utilization_ratio")), mem_used=_num(v.get("memory_used_bytes")),
            mem_total=_num(v.get("memory_total_bytes")),
            gpus=gpus, error=str(st.get("error") or ""),
        )
    for name, st in statuses.items():
        if name not in rows:
            rows[name] = NodeRow(name=name, status=str(st.get("status", "down")), since=_num(st.get("since")),
                                 last_seen=_num(st.get("last_seen")), labels=dict(st.get("labels") or {}),
                                 cpu=None, mem_used=None, mem_total=None, error=str(st.get("error") or ""))
    if cache is not None:
        cache.clear()
        cache.update(fresh)
    al = [Alert(name=str(a.get("alertname") or a.get("rule") or "?"), severity=str(a.get("severity") or ""),
                summary=str((a.get("annotations") or {}).get("summary") or ""),
                node=str((a.get("labels") or {}).get("node") or ""), gpu=str((a.get("labels") or {}).get("gpu") or ""))
          for a in alerts]
    return Fleet(nodes=sorted(rows.values(), key=lambda n: n.name), alerts=al, fetched_at=fetched_at)
