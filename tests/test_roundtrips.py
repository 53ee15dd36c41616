"""Property tests (hypothesis): what one part writes, the other reads back unchanged.

- a rule expression -> its PromQL export -> parsed again: the same expression;
- a snapshot -> gpufleet's text exposition -> the hub's scrape mapper: the same values.
(Durations and label matchers: tests/test_syntax.py.)
"""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from gpufleet.catalogue import BY_SCOPE
from gpufleet.exposition import render
from gpufleet.hub.alerts.expr import EVALUATED_SCOPES, parse_expr
from gpufleet.hub.scrape import to_snapshot
from gpufleet.hub.targets import Target
from gpufleet.promtext import parse
from gpufleet.snapshot import Gpu, GpuLink, NodeSnapshot
from gpufleet.syntax import format_duration

SCOPES = [s for s in EVALUATED_SCOPES if any(m.kind != "info" for m in BY_SCOPE[s])]
LABEL = {"gpu": "gpu", "gpu_link": "link", "node": "node", "disk": "mountpoint", "net": "interface", "cpu": "cpu", "mig": "profile",
         "user": "user", "collector": "collector", "agent": "node", "hub": "job"}
label_values = st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), max_size=8)


@st.composite
def selector(draw: st.DrawFn, scope: str, counter: bool = False) -> str:
    metrics = [m for m in BY_SCOPE[scope] if m.kind != "info" and (m.kind == "counter" or not counter)]
    m = draw(st.sampled_from(metrics))
    matchers = draw(st.lists(st.tuples(st.sampled_from(["node", LABEL[scope]]), st.sampled_from(["=", "!=", "=~", "!~"]),
                                       label_values), max_size=2))
    parts = []
    for label, op, value in matchers:
        if op in ("=~", "!~"):
            value = "".join(c for c in value if c.isalnum()) or "x"  # a valid regular expression
        parts.append(f'{label}{op}"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"')
    return m.name + ("{" + ",".join(parts) + "}" if parts else "")


@st.composite
def expression(draw: st.DrawFn) -> str:
    scope = draw(st.sampled_from(SCOPES))
    has_counter = any(m.kind == "counter" for m in BY_SCOPE[scope])

    def cond() -> str:
        kind = draw(st.sampled_from(["plain", "ratio", "increase"] if has_counter else ["plain", "ratio"]))
        if kind == "increase":
            term = f"increase({draw(selector(scope, counter=True))}[{format_duration(draw(st.integers(1, 86400)))}])"
        elif kind == "ratio":
            term = f"{draw(selector(scope))} / {draw(selector(scope))}"
        else:
            term = draw(selector(scope))
        op = draw(st.sampled_from([">", "<", ">=", "<=", "==", "!="]))
        number = draw(st.one_of(st.integers(-10**6, 10**6), st.floats(-1e6, 1e6, allow_nan=False).map(lambda f: round(f, 3))))
        return f"{term} {op} {number}"

    text = cond()
    for _ in range(draw(st.integers(0, 2))):
        text += f" {draw(st.sampled_from(['and', 'unless']))} {cond()}"
    return text


@settings(max_examples=200, deadline=None)
@given(expression())
def test_rule_expression_survives_its_promql_export(text: str) -> None:
    first = parse_expr(text)
    exported = first.promql()
    again = parse_expr(exported)
    assert again == first, (text, exported)
    assert again.promql() == exported


finite = st.floats(allow_nan=False, allow_infinity=False, width=64)
GPU_KEYS = sorted(m.key for m in BY_SCOPE["gpu"] if m.kind != "info")
NODE_KEYS = sorted(m.key for m in BY_SCOPE["node"] if m.kind != "info")
LINK_KEYS = sorted(m.key for m in BY_SCOPE["gpu_link"] if m.kind != "info")


@st.composite
def snapshots(draw: st.DrawFn) -> NodeSnapshot:
    gpus = []
    for i in range(draw(st.integers(0, 3))):
        values = draw(st.dictionaries(st.sampled_from(GPU_KEYS), finite, min_size=1, max_size=6))
        links = [GpuLink(link=n, values=draw(st.dictionaries(st.sampled_from(LINK_KEYS), finite, min_size=1, max_size=4)))
                 for n in range(draw(st.integers(0, 3)))]
        gpus.append(Gpu(index=i, uuid=f"GPU-{draw(st.uuids())}", model=draw(st.sampled_from(["NVIDIA H100", "MI300X"])),
                        vendor=draw(st.sampled_from(["nvidia", "amd"])), values=values, links=links))
    node_values = draw(st.dictionaries(st.sampled_from(NODE_KEYS), finite, max_size=6))
    return NodeSnapshot(node="n1", timestamp=1000.0, values=node_values, gpus=gpus)


@settings(max_examples=150, deadline=None)
@given(snapshots())
def test_exposition_read_back_gives_the_snapshots_values(snap: NodeSnapshot) -> None:
    got = to_snapshot(Target(node="n1", address="n1:9401"), parse(render(snap)), "gpufleet", now=snap.timestamp)
    want_node = dict(snap.values)
    if snap.gpus:
        want_node.setdefault("gpus", float(len(snap.gpus)))
    assert _same(got.values, want_node)
    assert [(g.index, g.uuid, g.model, g.vendor) for g in got.gpus if g.values] == \
        [(g.index, g.uuid, g.model, g.vendor) for g in snap.gpus if g.values]
    for g in snap.gpus:
        if g.values:
            back = next(x for x in got.gpus if x.index == g.index)
            assert _same({k: v for k, v in back.values.items()}, g.values), (g.values, back.values)
            assert [(x.link, x.values) for x in back.links] == [(x.link, x.values) for x in g.links]


def _same(a: dict[str, float], b: dict[str, float]) -> bool:
    return a.keys() == b.keys() and all(x == b[k] or (math.isnan(x) and math.isnan(b[k])) for k, x in a.items())
