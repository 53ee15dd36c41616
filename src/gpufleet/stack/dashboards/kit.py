"""What every gpufleet dashboard is made of: PromQL over catalogue metrics, panel specs, and a board
that turns them into Grafana's JSON with grafana-foundation-sdk's builders.

Panels are plain specs (title, queries, unit) so the dashboards read as tables; `Board` gives
every panel and row a unique id, lays them out, and points each query at the one datasource
uid the provisioning file declares. Units come from the catalogue entry (`unit_of`), queries
from its kind (`series`: counters as rates), so a metric's facts live in one place.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from grafana_foundation_sdk.builders import common as gcommon
from grafana_foundation_sdk.builders import stat, table, timeseries
from grafana_foundation_sdk.builders.dashboard import Dashboard, Row
from grafana_foundation_sdk.builders.dashboard import QueryVariable as GQueryVariable
from grafana_foundation_sdk.builders.prometheus import Dataquery
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.common import LegendDisplayMode, LegendPlacement, SortOrder, TooltipDisplayMode
from grafana_foundation_sdk.models.dashboard import DataSourceRef, VariableOption, VariableRefresh, VariableSort
from grafana_foundation_sdk.models.prometheus import PromQueryFormat

from ...catalogue import BY_SCOPE, SCOPE_LABELS, Metric, name_of

DATASOURCE_UID = "gpufleet-prometheus"
DATASOURCE_TYPE = "prometheus"  # VictoriaMetrics answers the same query API
DS = DataSourceRef(type_val=DATASOURCE_TYPE, uid=DATASOURCE_UID)

# Grafana unit ids for the catalogue's base units.
_UNITS = {"ratio": "percentunit", "bytes": "bytes", "celsius": "celsius", "watts": "watt", "joules": "joule",
          "hertz": "hertz", "seconds": "s"}
_RATE_UNITS = {"bytes": "Bps", "joules": "watt", "seconds": "percentunit"}

_UNIT_WORDS = {"ratio", "bytes", "seconds", "hertz", "celsius", "watts", "joules", "per", "second"}

Kind = Literal["timeseries", "stat", "table"]


def metric(scope: str, key: str) -> Metric:
    """The catalogue entry of scope + key (a KeyError names a metric the catalogue lacks)."""
    from ...catalogue import metric as lookup

    return lookup(name_of(scope, key))


def unit_of(m: Metric, rate: bool = False) -> str:
    if m.key.endswith("_per_second"):
        return "Bps" if m.unit == "bytes" else "short"
    if rate:
        return _RATE_UNITS.get(m.unit, "cps")
    if m.display == "percent":
        return "percentunit"
    return _UNITS.get(m.unit, "short")


def matchers(**labels: str) -> str:
    """`node="$node"`-style matchers; a value starting with `~` is a regex match (`=~`)."""
    parts = []
    for k, v in labels.items():
        op, val = ("=~", v[1:]) if v.startswith("~") else ("=", v)
        parts.append(f'{k}{op}"{val}"')
    return ",".join(parts)


def sel(m: Metric, **labels: str) -> str:
    return f"{m.name}{{{matchers(**labels)}}}" if labels else m.name


def series(m: Metric, **labels: str) -> str:
    """A metric as a chart shows it: counters as per-second rates, gauges as they are."""
    if m.kind == "counter":
        return f"rate({sel(m, **labels)}[$__rate_interval])"
    return sel(m, **labels)


@dataclass(frozen=True, slots=True)
class Query:
    expr: str
    legend: str = ""
    instant: bool = False
    table: bool = False  # one row per series (label columns), as a table panel wants


@dataclass(frozen=True, slots=True)
class Panel:
    title: str
    queries: tuple[Query, ...]
    unit: str = "short"
    kind: Kind = "timeseries"
    description: str = ""
    width: int = 12
    height: int = 0  # 0: by kind (a stat is a short tile)


def legend_of(scope: str) -> str:
    """The series legend of a scope: its identity labels most people recognise."""
    short = {"gpu": ("node", "gpu"), "mig": ("node", "gpu", "profile"), "gpu_link": ("gpu", "link"),
             "disk": ("mountpoint",),
             "net": ("interface",), "cpu": ("cpu",), "user": ("user",), "collector": ("collector",)}
    labels = short.get(scope, ("node",) + SCOPE_LABELS.get(scope, ()))
    return " ".join("{{" + lab + "}}" for lab in labels)


def metric_panel(m: Metric, labels: dict[str, str], width: int = 8, prefix: str = "") -> Panel:
    """One metric, one chart: the generic panel a newly catalogued metric gets."""
    words = m.key.split("_")
    if m.kind == "counter" and words[-1] == "total":
        words.pop()
    while len(words) > 1 and words[-1] in _UNIT_WORDS:  # the axis shows the unit
        words.pop()
    title = prefix + " ".join(words)
    title = title[:1].upper() + title[1:] + (" (per second)" if m.kind == "counter" else "")
    return Panel(title, (Query(series(m, **labels), legend_of(m.scope)),), unit_of(m, rate=m.kind == "counter"),
                 description=f"{m.name}: {m.help}", width=width)


def remaining(scope: str, used: Iterable[Metric], exclude: Iterable[str] = ()) -> list[Metric]:
    """The scope's charted metrics no hand-laid panel shows: new catalogue entries land here."""
    seen = {m.name for m in used} | set(exclude)
    return [m for m in BY_SCOPE[scope] if m.kind != "info" and m.name not in seen]


@dataclass(frozen=True, slots=True)
class Variable:
    name: str
    label: str
    query: str  # label_values(...) as Grafana's Prometheus datasource reads it
    multi: bool = False


@dataclass
class Board:
    uid: str
    title: str
    description: str
    variables: Sequence[Variable] = ()
    rows: list[tuple[str, list[Panel]]] = field(default_factory=list)
    used: list[Metric] = field(default_factory=list)  # catalogue metrics its panels chart

    def row(self, title: str, panels: Sequence[Panel]) -> None:
        if panels:
            self.rows.append((title, list(panels)))

    def uses(self, *ms: Metric) -> None:
        self.used.extend(ms)

    def build(self) -> dict[str, Any]:
        d = (Dashboard(self.title).uid(self.uid).description(self.description).tags(["gpufleet", "generated"])
             .time("now-1h", "now").refresh("30s").timezone("browser").editable())
        for v in self.variables:
            d = d.with_variable(_variable(v))
        next_id = 1
        for title, panels in self.rows:
            d = d.with_row(Row(title).id(next_id))
            next_id += 1
            for p in panels:
                d = d.with_panel(_panel(p, next_id))
                next_id += 1
        out: dict[str, Any] = json.loads(JSONEncoder(sort_keys=True).encode(d.build()))
        # The SDK leaves these out when empty; Grafana's schema has them as lists.
        out.setdefault("templating", {}).setdefault("list", [])
        out.setdefault("annotations", {}).setdefault("list", [])
        return out


def _variable(v: Variable) -> GQueryVariable:
    # A plain label_values() string: every Grafana version's Prometheus datasource reads it.
    # id = name: the SDK gives every variable the same zero UUID, and Grafana keys variables by id.
    q = (GQueryVariable(v.name).id(v.name).label(v.label).datasource(DS).query(v.query)
         .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED).sort(VariableSort.ALPHABETICAL_ASC).multi(v.multi))
    if v.multi:
        q = q.include_all(True).current(VariableOption(selected=True, text="All", value="$__all"))
    return q


def _target(q: Query, ref: str) -> Dataquery:
    t = Dataquery().expr(q.expr).ref_id(ref).datasource(DS)
    if q.legend:
        t = t.legend_format(q.legend)
    if q.instant:
        t = t.instant()
    if q.table:
        t = t.format(PromQueryFormat.TABLE)
    return t


def _panel(p: Panel, pid: int) -> Any:
    b: Any
    if p.kind == "stat":
        b = stat.Panel().reduce_options(gcommon.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
    elif p.kind == "table":
        b = table.Panel().show_header(True)
    else:
        b = (timeseries.Panel()
             .legend(gcommon.VizLegendOptions().display_mode(LegendDisplayMode.LIST)
                     .placement(LegendPlacement.BOTTOM).show_legend(True))
             .tooltip(gcommon.VizTooltipOptions().mode(TooltipDisplayMode.MULTI).sort(SortOrder.DESCENDING)))
    b = b.id(pid).title(p.title).datasource(DS).unit(p.unit).span(p.width).height(p.height or (4 if p.kind == "stat" else 8))
    if p.description:
        b = b.description(p.description)
    for i, q in enumerate(p.queries):
        b = b.with_target(_target(q, chr(ord("A") + i)))
    return b
