"""alertmanager/alertmanager.yml: one receiver per severity, and inhibit rules derived from the rules.

Inhibitions, so one failure pages once:
- a node-down alert (the node_status rules) silences every other alert of that node;
- a critical alert silences a warning of the same alert name on the same node and GPU;
- a critical rule silences the warning rule that watches the same series (overheating over hot),
  matched on the identity labels of that series' scope.
Receivers are left empty (Alertmanager drops what they get) until you add integrations: keep
their secrets in the *_file fields Alertmanager reads (e.g. email's auth_password_file).
"""

from __future__ import annotations

from typing import Any

from ..catalogue import SCOPE_LABELS
from ..hub.alerts.rules import Rule
from .options import StackOptions
from .rules import load
from .yamltext import yaml_file

SEVERITIES = ("critical", "warning", "info")  # most urgent first: the route order


def _series(r: Rule) -> frozenset[str]:
    if r.expr is None:
        return frozenset()
    return frozenset(s.metric.name for c in r.expr.conds for s in c.term.selectors)


def inhibit_rules(rules: list[Rule]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for down in sorted({r.alert for r in rules if r.kind == "node_status"}):
        out.append({"source_matchers": [f'alertname="{down}"'],
                    "target_matchers": [f'alertname!="{down}"', 'node=~".+"'], "equal": ["node"]})
    out.append({"source_matchers": ['severity="critical"'], "target_matchers": ['severity="warning"'],
                "equal": ["alertname", "node", "gpu"]})
    for crit in rules:
        if crit.severity != "critical" or crit.expr is None:
            continue
        for warn in rules:
            if warn.severity == "warning" and warn.expr is not None and _series(warn) == _series(crit) \
                    and warn.alert != crit.alert:
                out.append({"source_matchers": [f'alertname="{crit.alert}"'],
                            "target_matchers": [f'alertname="{warn.alert}"'],
                            "equal": ["node", *SCOPE_LABELS[crit.expr.scope]]})
    return out


def config(rules: list[Rule]) -> dict[str, Any]:
    severities = [*SEVERITIES, *sorted({r.severity for r in rules} - set(SEVERITIES))]
    routes = [{"matchers": [f'severity="{s}"'], "receiver": s, **({"repeat_interval": "1h"} if s == "critical" else {})}
              for s in severities]
    return {
        "route": {"receiver": "info", "group_by": ["alertname", "node"], "group_wait": "30s",
                  "group_interval": "5m", "repeat_interval": "4h", "routes": routes},
        "receivers": [{"name": s} for s in severities],
        "inhibit_rules": inhibit_rules(rules),
    }


def files(opts: StackOptions) -> dict[str, str]:
    text = yaml_file(
        config(load(opts)),
        "Written by `gpufleet stack generate`. Alerts are routed by their severity label to the receiver",
        "of that name; add integrations to the receivers, e.g.",
        "  - name: critical",
        "    email_configs: [{to: oncall@example.org, auth_password_file: /etc/alertmanager/smtp.pass}]",
        "keeping secrets in *_file fields. Check: amtool check-config alertmanager.yml",
    )
    return {"alertmanager/alertmanager.yml": text}
