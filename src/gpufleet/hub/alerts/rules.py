"""Alert rules: the built-in set (builtin.yaml) and users' rules, both as parameterised templates.

A user's alerts.yaml:

    builtin:                      # tune or switch off built-in rules
      gpu_temperature_critical: {threshold: 92, for: 1m}
      gpu_waste: {enabled: false}
    templates:                    # AAMI-style: parameters with defaults, {{ name }} to use one
      hot:
        metric: gpufleet_gpu_temperature_celsius
        condition: "> {{ threshold }}"
        params: {threshold: 80}
        severity: warning
    rules:
      - alert: LabGpuHot
        template: hot             # a user template or a built-in one
        params: {threshold: 75}
        match: {cluster: lab}     # added to every selector; "=~re", "!=v", "!~re" also work
        for: 5m
        labels: {team: ml}
        annotations: {summary: "GPU {{ $labels.gpu }} on {{ $labels.node }} at {{ $value }} C"}

A rule is `metric` + `condition`, or `expr` in the tiny language of expr.py. Every rule is
checked when it loads; one that is wrong is left out with an error naming file and line,
and all the others run.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from ...syntax import LABEL_NAME, ConfigError, LineDict, Matcher, is_label_name, load_yaml, load_yaml_file
from .expr import Expr, ExprError, parse_duration, parse_expr, parse_matchers
from .templating import Template, TemplateError

SEVERITIES = ("critical", "warning", "info")
NODE_STATUSES = ("up", "stale", "down", "moved")  # moved: heard by another hub (hub/elsewhere.py)
_PARAM = re.compile(r"\{\{\s*\.?(" + LABEL_NAME.pattern + r")\s*\}\}")

TEMPLATE_KEYS = frozenset({"alert", "params", "expr", "metric", "match", "condition", "threshold", "for",
                           "severity", "labels", "annotations", "kind", "statuses", "prom_expr"})
RULE_KEYS = TEMPLATE_KEYS | {"template", "enabled"}
TOP_KEYS = ("builtin", "templates", "rules")
BUILTIN_SOURCE = "builtin.yaml"


@dataclass(frozen=True)
class Rule:
    id: str  # unique: the built-in name, or the alert name of a user rule
    alert: str
    severity: str
    for_s: float
    labels: dict[str, str]  # added to every alert (severity included)
    annotations: dict[str, Template]
    source: str  # "builtin" or "path:line"
    expr: Expr | None = None
    statuses: tuple[str, ...] = ()  # node_status rules: which node statuses count as down
    match: tuple[Matcher, ...] = ()  # node_status rules: which nodes
    prom_expr: str = ""  # an explicit PromQL form (node_status rules)
    builtin: bool = False
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        return "node_status" if self.expr is None else "expr"

    def promql(self) -> str:
        if self.prom_expr:
            return self.prom_expr
        assert self.expr is not None
        return self.expr.promql()

    def describe(self) -> dict[str, Any]:
        return {
            "id": self.id, "alert": self.alert, "severity": self.severity, "for_seconds": self.for_s,
            "kind": self.kind, "expr": self.promql(), "labels": self.labels,
            "annotations": {k: t.text for k, t in self.annotations.items()}, "source": self.source,
            "builtin": self.builtin, "params": self.params,
        }


@dataclass
class RuleSet:
    rules: list[Rule]
    errors: list[ConfigError] = field(default_factory=list)
    files: list[str] = field(default_factory=list)

    def by_id(self) -> dict[str, Rule]:
        return {r.id: r for r in self.rules}


@dataclass(frozen=True)
class _Spec:
    """A mapping from a file, with where it came from (for errors)."""

    data: LineDict
    path: str

    def line(self, key: str | None = None) -> int:
        return self.data.line_of(key) if key is not None else self.data.line


@lru_cache(maxsize=1)
def _builtin_doc() -> LineDict:
    text = resources.files(__package__).joinpath("builtin.yaml").read_text()
    doc = load_yaml(text, BUILTIN_SOURCE)
    assert isinstance(doc, LineDict)
    return doc


def builtin_templates() -> dict[str, _Spec]:
    return {name: _Spec(spec, BUILTIN_SOURCE) for name, spec in _builtin_doc()["templates"].items()}


class _Fail(Exception):
    def __init__(self, spec: _Spec, key: str | None, message: str) -> None:
        super().__init__(message)
        self.error = ConfigError(spec.path, spec.line(key), message)


def _subst(value: Any, params: dict[str, Any], spec: _Spec, key: str, what: str) -> Any:
    if not isinstance(value, str):
        return value

    def one(m: re.Match[str]) -> str:
        name = m.group(1)
        if name not in params:
            raise _Fail(spec, key, f"{what}: parameter {name!r} has no value (give it under params:)")
        return str(params[name])

    return _PARAM.sub(one, value)


def _check_keys(spec: _Spec, allowed: frozenset[str], what: str, extra_ok: frozenset[str] = frozenset()) -> None:
    for key in spec.data:
        if key not in allowed and key not in extra_ok:
            raise _Fail(spec, key, f"{what}: unknown field {key!r} (fields: {', '.join(sorted(allowed))})")


def _compile(rule_id: str, inst: _Spec, templates: dict[str, _Spec], *, builtin: bool) -> Rule:
    """One rule from its own fields over its template's (instance fields win)."""
    what = f"rule {rule_id!r}"
    tpl: _Spec | None = None
    tname = inst.data.get("template")
    if tname is not None:
        tpl = templates.get(str(tname))
        if tpl is None:
            raise _Fail(inst, "template", f"{what}: unknown template {tname!r} (known: {', '.join(sorted(templates))})")
        _check_keys(tpl, TEMPLATE_KEYS, f"template {tname!r}")
    # Where each field comes from: the instance or else the template (errors point there).
    origin: dict[str, _Spec] = {}
    fields: dict[str, Any] = {}
    for src in (tpl, inst):
        if src is None:
            continue
        for key, value in src.data.items():
            if key in ("labels", "annotations", "params"):
                if value is not None and not isinstance(value, dict):
                    raise _Fail(src, key, f"{what}: {key} must be a mapping")
                merged = dict(fields.get(key) or {})
                merged.update(value or {})
                fields[key] = merged
            elif key == "match":
                try:
                    fields[key] = tuple(fields.get(key, ())) + parse_matchers(value)
                except ExprError as e:
                    raise _Fail(src, key, f"{what}: {e}") from None
            else:
                fields[key] = value
            origin[key] = src
    params = dict(fields.get("params") or {})
    if "threshold" in fields:
        params["threshold"] = fields["threshold"]

    def get(key: str, default: Any = None) -> Any:
        if key not in fields:
            return default
        return _subst(fields[key], params, origin[key], key, what)

    def fail(key: str, message: str) -> _Fail:
        return _Fail(origin.get(key, inst), key, f"{what}: {message}")

    alert = str(get("alert", rule_id if not builtin else ""))
    if not is_label_name(alert):
        raise fail("alert", f"alert name {alert!r} must be letters, digits and _ (a Prometheus alert name)")
    severity = str(get("severity", "warning"))
    if severity not in SEVERITIES:
        raise fail("severity", f"severity {severity!r} is not one of {', '.join(SEVERITIES)}")
    try:
        for_s = parse_duration(get("for", 0))
    except ExprError as e:
        raise fail("for", str(e)) from None
    labels = {str(k): str(_subst(v, params, origin["labels"], "labels", what))
              for k, v in (fields.get("labels") or {}).items()}
    labels["severity"] = severity
    annotations: dict[str, Template] = {}
    for k, v in (fields.get("annotations") or {}).items():
        try:
            annotations[str(k)] = Template(str(_subst(v, params, origin["annotations"], "annotations", what)))
        except TemplateError as e:
            raise fail("annotations", f"annotation {k!r}: {e}") from None
    match: tuple[Matcher, ...] = tuple(fields.get("match", ()))
    kind = str(get("kind", "expr"))
    source = BUILTIN_SOURCE if builtin else f"{inst.path}:{inst.line()}"
    common: dict[str, Any] = dict(id=rule_id, alert=alert, severity=severity, for_s=for_s, labels=labels, annotations=annotations,
                  source=source, builtin=builtin, params=params)
    if kind == "node_status":
        statuses = get("statuses", ["stale", "down"])
        if not isinstance(statuses, list) or not statuses or any(s not in NODE_STATUSES for s in statuses):
            raise fail("statuses", f"statuses must be a list of {', '.join(NODE_STATUSES)}")
        return Rule(**common, statuses=tuple(statuses), match=match, prom_expr=str(get("prom_expr", "")))
    if kind != "expr":
        raise fail("kind", f"kind {kind!r} is not expr or node_status")
    if "expr" in fields:
        text = str(get("expr"))
        key = "expr"
    elif "metric" in fields:
        cond = str(get("condition", "")).strip()
        if not cond:
            raise fail("condition", "a metric rule needs a condition such as \"> 85\"")
        if not re.search(r"[-+]?\d", cond.lstrip("<>=!")) and "threshold" in params:
            cond = f"{cond} {params['threshold']}"
        text = f"{get('metric')} {cond}"
        key = "metric"
    else:
        raise fail("expr", "give either expr, or metric and condition")
    try:
        expr = parse_expr(text).with_matchers(match)
    except ExprError as e:
        raise fail(key, f"{e} (in {text!r})") from None
    return Rule(**common, expr=expr, prom_expr=str(get("prom_expr", "")))


def load_rules_doc(doc: Any, path: str) -> RuleSet:
    """Built-in rules plus the rules of one parsed alerts.yaml (None: built-ins only)."""
    templates = builtin_templates()
    errors: list[ConfigError] = []
    if doc is None:
        doc = LineDict()
    if not isinstance(doc, LineDict):
        errors.append(ConfigError(path, 1, "the rules file must be a mapping with builtin:, templates:, rules:"))
        doc = LineDict()
    top = _Spec(doc, path)
    for key in doc:
        if key not in TOP_KEYS:
            errors.append(ConfigError(path, top.line(key), f"unknown section {key!r} (sections: {', '.join(TOP_KEYS)})"))
    overrides = doc.get("builtin") or LineDict()
    if not isinstance(overrides, LineDict):
        errors.append(ConfigError(path, top.line("builtin"), "builtin: must map built-in rule names to settings"))
        overrides = LineDict()
    user_templates = doc.get("templates") or LineDict()
    if not isinstance(user_templates, LineDict):
        errors.append(ConfigError(path, top.line("templates"), "templates: must map template names to templates"))
        user_templates = LineDict()
    all_templates = dict(templates)
    for name, spec in user_templates.items():
        if not isinstance(spec, LineDict):
            errors.append(ConfigError(path, user_templates.line_of(name), f"template {name!r} must be a mapping"))
            continue
        all_templates[str(name)] = _Spec(spec, path)

    rules: list[Rule] = []
    seen: dict[str, str] = {}
    for name in overrides:
        if name not in templates:
            errors.append(ConfigError(path, overrides.line_of(name),
                                      f"unknown built-in rule {name!r} (built-ins: {', '.join(templates)})"))
    for name in templates:
        over = overrides.get(name)
        if over is not None and not isinstance(over, LineDict):
            errors.append(ConfigError(path, overrides.line_of(name), f"builtin {name!r}: settings must be a mapping"))
            over = None
        inst_data = LineDict(over or {})
        inst_data.line, inst_data.lines = (over.line, dict(over.lines)) if over is not None else (0, {})
        if inst_data.pop("enabled", True) is False:
            continue
        tparams = templates[name].data.get("params") or {}
        # Shorthand: `gpu_waste: {threshold: 0.1}` sets the parameter.
        for key in list(inst_data):
            if key in tparams and key not in TEMPLATE_KEYS:
                inst_data.setdefault("params", {})
                inst_data["params"] = {**inst_data["params"], key: inst_data.pop(key)}
        inst_data["template"] = name
        inst = _Spec(inst_data, path if over is not None else BUILTIN_SOURCE)
        try:
            _check_keys(inst, RULE_KEYS, f"builtin {name!r}")
            rule = _compile(name, inst, all_templates, builtin=True)
        except _Fail as f:
            errors.append(f.error)
            continue
        rules.append(rule)
        seen[rule.id] = rule.source
    user_rules = doc.get("rules") or []
    if not isinstance(user_rules, list):
        errors.append(ConfigError(path, top.line("rules"), "rules: must be a list of rules"))
        user_rules = []
    for i, spec in enumerate(user_rules):
        if not isinstance(spec, LineDict):
            errors.append(ConfigError(path, top.line("rules"), f"rules[{i}] must be a mapping"))
            continue
        inst = _Spec(spec, path)
        if spec.get("enabled", True) is False:
            continue
        rid = str(spec.get("alert") or (f"{spec['template']}_{i}" if spec.get("template") else f"rule_{i}"))
        try:
            _check_keys(inst, RULE_KEYS, f"rule {rid!r}")
            if "alert" not in spec:
                raise _Fail(inst, None, f"rules[{i}]: every rule needs an alert: name")
            if rid in seen:
                raise _Fail(inst, "alert", f"rule {rid!r}: the name is already used ({seen[rid]})")
            rule = _compile(rid, inst, all_templates, builtin=False)
        except _Fail as f:
            errors.append(f.error)
            continue
        rules.append(rule)
        seen[rule.id] = rule.source
    return RuleSet(rules, errors, [path] if path != BUILTIN_SOURCE else [])


def load_rules(path: Path | str | None) -> RuleSet:
    """Built-ins plus the file at `path` (missing path: built-ins only). Never raises on bad content."""
    if path is None:
        return load_rules_doc(None, BUILTIN_SOURCE)
    p = Path(path)
    try:
        doc = load_yaml_file(p)
    except ConfigError as e:
        rs = load_rules_doc(None, str(p))
        rs.errors.insert(0, e)
        rs.files = [str(p)]
        return rs
    return load_rules_doc(doc, str(p))


def load_rules_text(text: str, path: str = "alerts.yaml") -> RuleSet:
    try:
        doc = load_yaml(text, path)
    except ConfigError as e:
        rs = load_rules_doc(None, path)
        rs.errors.insert(0, e)
        return rs
    return load_rules_doc(doc, path)
