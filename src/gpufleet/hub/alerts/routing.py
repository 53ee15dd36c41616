"""Notification config (notify.yaml), routes, and grouping: who is told what, and when.

    external_url: http://hub.lab:8080        # links in messages (generatorURL)
    receivers:
      ops:
        apprise: ["mailtos://user:pass@smtp.lab?to=ops@lab", "slack://T/B/C"]
        webhook: ["http://127.0.0.1:9000/hook"]
    alertmanager: {urls: ["http://127.0.0.1:9093"], resend: 1m}
    route:
      receiver: ops
      group_by: [alertname, severity]          # one dead rack = one message per alert kind
      group_wait: 30s                          # let a burst gather before the first message
      group_interval: 5m                       # least time between two messages of one group
      repeat_interval: {critical: 1h, warning: 4h, info: 24h}
      routes:
        - {match: {team: ml}, receiver: ml, continue: true}
    retry: {attempts: 6, backoff: 2s, max_backoff: 5m}

Grouping follows Alertmanager's model so that people who know it find no surprises, and the
group state is persisted (state.py) so a restart neither forgets nor repeats.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...syntax import ConfigError, LineDict, Matcher, load_yaml, load_yaml_file
from .engine import FIRING, RESOLVED, Alert
from .expr import ExprError, parse_duration, parse_matchers
from .payload import check_url, redact, webhook_payload

DEFAULT_REPEAT = {"critical": 3600.0, "warning": 4 * 3600.0, "info": 24 * 3600.0}
SEVERITY_ORDER = ("critical", "warning", "info")
RECEIVER_KINDS = ("apprise", "webhook")


@dataclass(frozen=True)
class Route:
    path: str  # "0", "0.1": stable id for group keys
    matchers: tuple[Matcher, ...]
    receiver: str
    group_by: tuple[str, ...]
    group_wait: float
    group_interval: float
    repeat: dict[str, float]
    cont: bool = False


@dataclass
class RetryPolicy:
    attempts: int = 6
    backoff: float = 2.0
    max_backoff: float = 300.0

    def delay(self, attempt: int) -> float:
        """Seconds before retry number `attempt` (1-based): doubling, capped."""
        return float(min(self.max_backoff, self.backoff * (2 ** (attempt - 1))))


@dataclass
class NotifyConfig:
    receivers: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    root: Route | None = None
    routes: list[Route] = field(default_factory=list)
    alertmanager: list[str] = field(default_factory=list)
    am_resend: float = 60.0
    external_url: str = ""
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    errors: list[ConfigError] = field(default_factory=list)
    path: str = ""

    def routes_for(self, labels: dict[str, str]) -> list[Route]:
        out: list[Route] = []
        for r in self.routes:
            if all(m.matches(labels) for m in r.matchers):
                out.append(r)
                if not r.cont:
                    return out
        if not out and self.root is not None:
            out.append(self.root)
        return out

    def describe(self) -> dict[str, Any]:
        return {
            "file": self.path,
            "receivers": {n: {k: [redact(u) for u in urls] for k, urls in r.items()} for n, r in self.receivers.items()},
            "alertmanager": [redact(u) for u in self.alertmanager],
            "routes": [{"match": {m.name: m.op + m.value if m.op != "=" else m.value for m in r.matchers},
                        "receiver": r.receiver, "group_by": list(r.group_by), "group_wait": r.group_wait,
                        "group_interval": r.group_interval, "repeat_interval": r.repeat, "continue": r.cont}
                       for r in ([self.root] if self.root else []) + self.routes],
            "errors": [e.as_dict() for e in self.errors],
        }


def _dur(spec: LineDict, key: str, default: float, path: str, errors: list[ConfigError]) -> float:
    if key not in spec:
        return default
    try:
        return parse_duration(spec[key])
    except ExprError as e:
        errors.append(ConfigError(path, spec.line_of(key), f"{key}: {e}"))
        return default


def _repeat(spec: LineDict, parent: dict[str, float], path: str, errors: list[ConfigError]) -> dict[str, float]:
    if "repeat_interval" not in spec:
        return dict(parent)
    value = spec["repeat_interval"]
    line = spec.line_of("repeat_interval")
    try:
        if isinstance(value, dict):
            out = dict(parent)
            for sev, d in value.items():
                if sev not in SEVERITY_ORDER:
                    raise ExprError(f"severity {sev!r} is not one of {', '.join(SEVERITY_ORDER)}")
                out[sev] = parse_duration(d)
            return out
        d = parse_duration(value)
        return {s: d for s in SEVERITY_ORDER}
    except ExprError as e:
        errors.append(ConfigError(path, line, f"repeat_interval: {e}"))
        return dict(parent)


def _route(spec: Any, path: str, rid: str, parent: Route | None, receivers: dict[str, Any],
           errors: list[ConfigError], line: int) -> Route | None:
    if not isinstance(spec, LineDict):
        errors.append(ConfigError(path, line, f"route {rid} must be a mapping"))
        return None
    allowed = {"match", "receiver", "group_by", "group_wait", "group_interval", "repeat_interval", "continue", "routes"}
    for key in spec:
        if key not in allowed:
            errors.append(ConfigError(path, spec.line_of(key), f"route: unknown field {key!r} ({', '.join(sorted(allowed))})"))
    try:
        matchers = parse_matchers(spec.get("match"))
    except ExprError as e:
        errors.append(ConfigError(path, spec.line_of("match"), f"route match: {e}"))
        return None
    receiver = spec.get("receiver", parent.receiver if parent else None)
    if receiver is None:
        errors.append(ConfigError(path, spec.line, "route needs a receiver"))
        return None
    if receiver not in receivers:
        errors.append(ConfigError(path, spec.line_of("receiver"),
                                  f"route: unknown receiver {receiver!r} (receivers: {', '.join(receivers) or 'none'})"))
        return None
    group_by = spec.get("group_by", list(parent.group_by) if parent else ["alertname", "severity"])
    if not isinstance(group_by, list) or not all(isinstance(g, str) for g in group_by):
        errors.append(ConfigError(path, spec.line_of("group_by"), "group_by must be a list of label names"))
        group_by = ["alertname", "severity"]
    return Route(
        rid, matchers, str(receiver), tuple(group_by),
        _dur(spec, "group_wait", parent.group_wait if parent else 30.0, path, errors),
        _dur(spec, "group_interval", parent.group_interval if parent else 300.0, path, errors),
        _repeat(spec, parent.repeat if parent else DEFAULT_REPEAT, path, errors),
        bool(spec.get("continue", False)),
    )


def parse_notify(doc: Any, path: str) -> NotifyConfig:
    """A NotifyConfig from parsed YAML; every problem is in `.errors`, what is valid is kept."""

    cfg = NotifyConfig(path=path)
    errors = cfg.errors
    if doc is None:
        return cfg
    if not isinstance(doc, LineDict):
        errors.append(ConfigError(path, 1, "notify config must be a mapping"))
        return cfg
    for key in doc:
        if key not in ("receivers", "route", "alertmanager", "external_url", "retry"):
            errors.append(ConfigError(path, doc.line_of(key), f"unknown section {key!r} "
                                      "(sections: receivers, route, alertmanager, external_url, retry)"))
    cfg.external_url = str(doc.get("external_url") or "").rstrip("/")
    recv = doc.get("receivers") or LineDict()
    if not isinstance(recv, LineDict):
        errors.append(ConfigError(path, doc.line_of("receivers"), "receivers must map names to receivers"))
        recv = LineDict()
    for name, spec in recv.items():
        if not isinstance(spec, LineDict):
            errors.append(ConfigError(path, recv.line_of(name), f"receiver {name!r} must be a mapping"))
            continue
        kept: dict[str, list[str]] = {}
        for kind, urls in spec.items():
            line = spec.line_of(kind)
            if kind not in RECEIVER_KINDS:
                errors.append(ConfigError(path, line, f"receiver {name!r}: unknown kind {kind!r} ({', '.join(RECEIVER_KINDS)})"))
                continue
            if isinstance(urls, str):
                urls = [urls]
            if not isinstance(urls, list):
                errors.append(ConfigError(path, line, f"receiver {name!r}: {kind} must be a URL or a list of URLs"))
                continue
            for u in urls:
                problem = check_url(kind, str(u))
                if problem:
                    errors.append(ConfigError(path, line, f"receiver {name!r}: {problem}"))
                else:
                    kept.setdefault(kind, []).append(str(u))
        cfg.receivers[str(name)] = kept
    am = doc.get("alertmanager")
    if am is not None:
        line = doc.line_of("alertmanager")
        if isinstance(am, (str, list)):
            am = LineDict({"urls": am})
            am.line = line
        if not isinstance(am, LineDict):
            errors.append(ConfigError(path, line, "alertmanager must be a URL, a list, or {urls, resend}"))
        else:
            urls = am.get("urls") or []
            urls = [urls] if isinstance(urls, str) else urls
            for u in urls:
                problem = check_url("alertmanager", str(u))
                if problem:
                    errors.append(ConfigError(path, am.line_of("urls"), problem))
                else:
                    cfg.alertmanager.append(str(u).rstrip("/"))
            cfg.am_resend = _dur(am, "resend", 60.0, path, errors)
    retry = doc.get("retry")
    if isinstance(retry, LineDict):
        try:
            cfg.retry.attempts = max(1, int(retry.get("attempts", cfg.retry.attempts)))
        except (TypeError, ValueError):
            errors.append(ConfigError(path, retry.line_of("attempts"), "retry.attempts must be a whole number"))
        cfg.retry.backoff = _dur(retry, "backoff", cfg.retry.backoff, path, errors)
        cfg.retry.max_backoff = _dur(retry, "max_backoff", cfg.retry.max_backoff, path, errors)
    elif retry is not None:
        errors.append(ConfigError(path, doc.line_of("retry"), "retry must be a mapping"))
    route = doc.get("route")
    if route is None:
        if len(cfg.receivers) == 1:  # one receiver: everything goes to it, with the defaults
            route = LineDict({"receiver": next(iter(cfg.receivers))})
        elif cfg.receivers:
            errors.append(ConfigError(path, 1, "several receivers but no route: say which gets what under route:"))
    if route is not None:
        cfg.root = _route(route, path, "0", None, cfg.receivers, errors, doc.line_of("route"))
        children = route.get("routes") or [] if isinstance(route, LineDict) else []
        if cfg.root is not None and isinstance(children, list):
            for i, child in enumerate(children):
                r = _route(child, path, f"0.{i}", cfg.root, cfg.receivers, errors, route.line_of("routes"))
                if r is not None:
                    cfg.routes.append(r)
    return cfg


def load_notify(path: Path | str | None) -> NotifyConfig:
    if path is None:
        return NotifyConfig()
    try:
        doc = load_yaml_file(Path(path))
    except ConfigError as e:
        cfg = NotifyConfig(path=str(path))
        cfg.errors.append(e)
        return cfg
    return parse_notify(doc, str(path))


def load_notify_text(text: str, path: str = "notify.yaml") -> NotifyConfig:
    try:
        doc = load_yaml(text, path)
    except ConfigError as e:
        cfg = NotifyConfig(path=path)
        cfg.errors.append(e)
        return cfg
    return parse_notify(doc, path)


# ---- grouping ----------------------------------------------------------------------------------------


@dataclass
class Message:
    receiver: str
    group_key: str
    group_labels: dict[str, str]
    firing: list[Alert]
    resolved: list[Alert]
    external_url: str = ""

    @property
    def status(self) -> str:
        return "firing" if self.firing else "resolved"

    def title(self) -> str:
        names = sorted({a.alertname for a in self.firing + self.resolved})
        sev = next((s for s in SEVERITY_ORDER if any(a.severity == s for a in self.firing + self.resolved)), "")
        head = f"[FIRING:{len(self.firing)}]" if self.firing else f"[RESOLVED:{len(self.resolved)}]"
        return f"{head} {', '.join(names)}" + (f" ({sev})" if sev else "")

    def body(self) -> str:
        lines: list[str] = []
        for title, items in (("Firing", self.firing), ("Resolved", self.resolved)):
            if not items:
                continue
            lines.append(f"{title}:")
            for a in items:
                summary = a.annotations.get("summary") or a.alertname
                where = ", ".join(f"{k}={v}" for k, v in sorted(a.labels.items())
                                  if k not in ("alertname", "severity"))
                ack = f" (acknowledged by {a.ack_by})" if a.ack_by and a.state == FIRING else ""
                lines.append(f"- {summary}{ack} [{where}]")
        if self.external_url:
            lines.append(f"{self.external_url}/alerts")
        return "\n".join(lines)

    def webhook_payload(self) -> dict[str, Any]:
        return webhook_payload(receiver=self.receiver, group_key=self.group_key, group_labels=self.group_labels,
                               firing=self.firing, resolved=self.resolved, external_url=self.external_url)


@dataclass
class _Group:
    first_seen: float
    last_sent: float | None = None
    sent: set[str] = field(default_factory=set)


class Grouper:
    """Decides, after each evaluation, which group messages are due."""

    def __init__(self, cfg: NotifyConfig, saved: dict[str, tuple[float, float | None, list[str]]] | None = None) -> None:
        self.cfg = cfg
        self.groups: dict[str, _Group] = {k: _Group(f, s, set(sent)) for k, (f, s, sent) in (saved or {}).items()}

    def snapshot(self) -> dict[str, tuple[float, float | None, list[str]]]:
        return {k: (g.first_seen, g.last_sent, sorted(g.sent)) for k, g in self.groups.items()}

    def step(self, alerts: Iterable[Alert], silenced: Callable[[Alert], bool], now: float) -> list[Message]:
        members: dict[str, tuple[Route, dict[str, str], list[Alert]]] = {}
        for a in alerts:
            if a.state not in (FIRING, RESOLVED):
                continue
            for r in self.cfg.routes_for(a.labels):
                glabels = {k: a.labels.get(k, "") for k in r.group_by}
                key = f"{r.path}|{r.receiver}|{json.dumps(glabels, sort_keys=True)}"
                members.setdefault(key, (r, glabels, []))[2].append(a)
        out: list[Message] = []
        for key in set(members) | set(self.groups):
            route, glabels, items = members.get(key, (None, {}, []))
            g = self.groups.get(key)
            firing = [a for a in items if a.state == FIRING and not silenced(a)]
            muted = {a.fingerprint for a in items if a.state == FIRING and silenced(a)}
            if g is None:
                if not firing:
                    continue
                g = self.groups[key] = _Group(now)
            resolved = [a for a in items if a.state == RESOLVED and a.fingerprint in g.sent]
            if route is None or (not firing and not resolved):
                # Nothing left to say: forget the group (alerts gone from memory or all silenced).
                if not (g.sent & muted):
                    self.groups.pop(key, None)
                continue
            new = [a for a in firing if a.fingerprint not in g.sent]
            since_last = None if g.last_sent is None else now - g.last_sent
            due = False
            if new and now - g.first_seen >= route.group_wait and (since_last is None or since_last >= route.group_interval):
                due = True
            elif resolved and (since_last is None or since_last >= route.group_interval):
                due = True
            elif firing and since_last is not None:
                unacked = [a for a in firing if a.ack_by is None]
                sev = next((s for s in SEVERITY_ORDER if any(a.severity == s for a in unacked)), None)
                if sev is not None and since_last >= route.repeat.get(sev, DEFAULT_REPEAT.get(sev, 3600.0)):
                    due = True
            if not due:
                continue
            out.append(Message(route.receiver, key, glabels, firing, resolved, self.cfg.external_url))
            g.last_sent = now
            g.sent = {a.fingerprint for a in firing} | (g.sent & muted)
            if not g.sent:
                self.groups.pop(key, None)
        return out
