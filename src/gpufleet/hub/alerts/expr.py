"""The tiny rule language: a PromQL subset the hub evaluates itself and exports verbatim.

    expr     := cond (("and" | "unless") cond)*
    cond     := term CMP number | "(" cond ")"        CMP: > < >= <= == !=
    term     := selector ["/" selector]
              | "increase" "(" selector "[" duration "]" ")"
    selector := metric ["{" label OP "string" ("," label OP "string")* "}"]     OP: = != =~ !~

Every metric must be in the catalogue, and all selectors of one rule must be of one scope
(the same records: GPUs, disks, the node, the hub). That restriction is what lets the
engine join `a / b` and `a and b` by position instead of by label set, and it gives the
same answer PromQL's one-to-one label matching gives, so the export is exact.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ...catalogue import BY_NAME, Metric
from ...syntax import Matcher, format_duration, unquote
from ...syntax import parse_duration as _parse_duration

CMP_OPS = (">=", "<=", "==", "!=", ">", "<")
EVALUATED_SCOPES = ("node", "disk", "net", "gpu", "gpu_link", "mig", "cpu", "user", "collector", "agent", "hub")

class ExprError(ValueError):
    """A rule expression that does not parse or names something unknown."""


def parse_duration(text: str | int | float) -> float:
    """syntax.parse_duration, failing with ExprError as the rest of the rule language does."""
    try:
        return _parse_duration(text)
    except ValueError as e:
        raise ExprError(str(e)) from None


def make_matcher(label: str, op: str, value: str) -> Matcher:
    try:
        return Matcher(label, op, value)
    except ValueError as e:
        raise ExprError(str(e)) from None


def format_number(v: float) -> str:
    if v == int(v) and abs(v) < 1e15:
        return str(int(v))
    return repr(float(v))


@dataclass(frozen=True, slots=True)
class Selector:
    metric: Metric
    matchers: tuple[Matcher, ...] = ()

    def promql(self) -> str:
        if not self.matchers:
            return self.metric.name
        return f"{self.metric.name}{{{','.join(m.promql() for m in self.matchers)}}}"

    def with_matchers(self, extra: tuple[Matcher, ...]) -> Selector:
        return Selector(self.metric, self.matchers + extra)


@dataclass(frozen=True, slots=True)
class Term:
    """selector, selector / selector, or increase(selector[window])."""

    left: Selector
    right: Selector | None = None  # divisor
    increase: float | None = None  # window seconds

    @property
    def selectors(self) -> tuple[Selector, ...]:
        return (self.left,) if self.right is None else (self.left, self.right)

    def promql(self) -> str:
        if self.increase is not None:
            return f"increase({self.left.promql()}[{format_duration(self.increase)}])"
        if self.right is not None:
            return f"{self.left.promql()} / {self.right.promql()}"
        return self.left.promql()


@dataclass(frozen=True, slots=True)
class Cond:
    term: Term
    op: str
    threshold: float

    def promql(self) -> str:
        return f"{self.term.promql()} {self.op} {format_number(self.threshold)}"


@dataclass(frozen=True, slots=True)
class Expr:
    first: Cond
    rest: tuple[tuple[str, Cond], ...] = ()  # ("and" | "unless", cond)

    @property
    def conds(self) -> tuple[Cond, ...]:
        return (self.first,) + tuple(c for _, c in self.rest)

    @property
    def scope(self) -> str:
        return self.first.term.left.metric.scope

    def promql(self) -> str:
        if not self.rest:
            return self.first.promql()
        parts = [f"({self.first.promql()})"]
        for conj, c in self.rest:
            parts.append(f"{conj} ({c.promql()})")
        return " ".join(parts)

    def with_matchers(self, extra: tuple[Matcher, ...]) -> Expr:
        """The same expression with `extra` added to every selector (a rule's `match`)."""
        if not extra:
            return self

        def term(t: Term) -> Term:
            return Term(t.left.with_matchers(extra), t.right.with_matchers(extra) if t.right else None, t.increase)

        def cond(c: Cond) -> Cond:
            return Cond(term(c.term), c.op, c.threshold)

        return Expr(cond(self.first), tuple((j, cond(c)) for j, c in self.rest))


_TOKEN = re.compile(r"""
    \s*(?:
      (?P<dur>\d+(?:ms|[smhd])(?:\d+(?:ms|[smhd]))*)(?![A-Za-z0-9_])
    | (?P<num>[-+]?(?:\d+\.?\d*(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?))(?![A-Za-z_])
    | (?P<ident>[A-Za-z_:][A-Za-z0-9_:]*)
    | (?P<str>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
    | (?P<op>>=|<=|==|!=|=~|!~|[<>=/{}(),\[\]])
    )""", re.VERBOSE)


def _tokens(text: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    text = text.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            raise ExprError(f"unexpected {text[pos:].strip()[:20]!r} at column {pos + 1}")
        kind = m.lastgroup or ""
        out.append((kind, m.group(kind)))
        pos = m.end()
    out.append(("end", ""))
    return out


class _Parser:
    def __init__(self, text: str) -> None:
        self.toks = _tokens(text)
        self.i = 0

    def peek(self) -> tuple[str, str]:
        return self.toks[self.i]

    def take(self, kind: str | None = None, value: str | None = None) -> str:
        k, v = self.toks[self.i]
        if (kind is not None and k != kind) or (value is not None and v != value):
            want = value or kind
            got = v or "end of expression"
            raise ExprError(f"expected {want} but found {got!r}")
        self.i += 1
        return v

    def expr(self) -> Expr:
        first = self.cond()
        rest = []
        while self.peek() in (("ident", "and"), ("ident", "unless")):
            conj = self.take("ident")
            rest.append((conj, self.cond()))
        self.take("end")
        return Expr(first, tuple(rest))

    def cond(self) -> Cond:
        if self.peek() == ("op", "("):  # as the export writes each condition of a chain: (a > 1) and (b < 2)
            self.i += 1
            inner = self.cond()
            self.take("op", ")")
            return inner
        term = self.term()
        k, v = self.peek()
        if k != "op" or v not in CMP_OPS:
            raise ExprError(f"expected a comparison (> < >= <= == !=) after {term.promql()}, found {v or 'the end'!r}")
        self.i += 1
        num = self.take("num") if self.peek()[0] == "num" else None
        if num is None:
            raise ExprError(f"expected a number after {v!r}, found {self.peek()[1] or 'the end'!r}")
        return Cond(term, v, float(num))

    def term(self) -> Term:
        if self.peek() == ("ident", "increase"):
            self.i += 1
            self.take("op", "(")
            sel = self.selector()
            self.take("op", "[")
            k, v = self.peek()
            if k not in ("dur", "num"):
                raise ExprError(f"expected a duration like 10m in increase(...[...]), found {v!r}")
            self.i += 1
            window = parse_duration(v)
            self.take("op", "]")
            self.take("op", ")")
            if sel.metric.kind != "counter":
                raise ExprError(f"increase() needs a counter; {sel.metric.name} is a {sel.metric.kind}")
            return Term(sel, increase=window)
        left = self.selector()
        if self.peek() == ("op", "/"):
            self.i += 1
            return Term(left, self.selector())
        return Term(left)

    def selector(self) -> Selector:
        k, name = self.peek()
        if k != "ident":
            raise ExprError(f"expected a metric name, found {name or 'the end'!r}")
        self.i += 1
        metric = BY_NAME.get(name)
        if metric is None:
            raise ExprError(f"unknown metric {name!r}: not in the gpufleet catalogue (see GET /api/v1/metrics)")
        if metric.kind == "info" or metric.scope not in EVALUATED_SCOPES:
            raise ExprError(f"metric {name!r} cannot be alerted on (info or per-process metric)")
        matchers: list[Matcher] = []
        if self.peek() == ("op", "{"):
            self.i += 1
            while self.peek() != ("op", "}"):
                label = self.take("ident")
                op = self.take("op")
                raw = self.take("str")
                matchers.append(make_matcher(label, op, unquote(raw[1:-1])))
                if self.peek() == ("op", ","):
                    self.i += 1
                elif self.peek() != ("op", "}"):
                    raise ExprError(f"expected , or }} in the matchers of {name}, found {self.peek()[1]!r}")
            self.i += 1
        return Selector(metric, tuple(matchers))


def parse_expr(text: str) -> Expr:
    """Parse and check an expression; ExprError says what is wrong."""
    e = _Parser(str(text)).expr()
    scopes = {s.metric.scope for c in e.conds for s in c.term.selectors}
    if len(scopes) > 1:
        raise ExprError(f"all metrics of one rule must be of one scope, found {', '.join(sorted(scopes))}")
    return e


def parse_matchers(spec: object) -> tuple[Matcher, ...]:
    """A rule's `match`: {label: value} where a value may start with =~, !~ or != (else equality)."""
    if spec is None:
        return ()
    if not isinstance(spec, dict):
        raise ExprError("match must be a mapping of label: value (value may start with =~, !~ or !=)")
    out = []
    for label, value in spec.items():
        text = str(value)
        op = "="
        for candidate in ("=~", "!~", "!="):
            if text.startswith(candidate):
                op, text = candidate, text[len(candidate):]
                break
        out.append(make_matcher(str(label), op, text))
    return tuple(out)
