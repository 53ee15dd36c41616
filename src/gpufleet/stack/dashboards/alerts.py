"""Alerts: what Prometheus (or vmalert) has pending and firing, from its ALERTS series."""

from __future__ import annotations

from .kit import Board, Panel, Query

UID = "gpufleet-alerts"
ALERTS = "ALERTS"  # Prometheus' and vmalert's own series of active alerts


def build() -> Board:
    b = Board(UID, "gpufleet / Alerts", "Alerts of gpufleet's rules that are pending or firing.")
    b.row("Now", [
        Panel("Firing", (Query(f'count({ALERTS}{{alertstate="firing"}}) or vector(0)'),), kind="stat", width=6),
        Panel("Pending", (Query(f'count({ALERTS}{{alertstate="pending"}}) or vector(0)'),), kind="stat", width=6),
        Panel("Nodes with alerts", (Query(f'count(count by (node) ({ALERTS}{{node!=""}})) or vector(0)'),),
              kind="stat", width=6),
        Panel("Critical", (Query(f'count({ALERTS}{{severity="critical"}}) or vector(0)'),), kind="stat", width=6),
    ])
    b.row("Over time", [
        Panel("Alerts by name", (Query(f"count by (alertname, alertstate) ({ALERTS})", "{{alertname}} {{alertstate}}"),)),
        Panel("Alerts by severity", (Query(f"count by (severity, alertstate) ({ALERTS})", "{{severity}} {{alertstate}}"),)),
        Panel("Alerts by node", (Query(f"count by (node) ({ALERTS})", "{{node}}"),)),
    ])
    b.row("Active", [Panel("Active alerts", (Query(ALERTS, instant=True, table=True),), kind="table", width=24)])
    return b
