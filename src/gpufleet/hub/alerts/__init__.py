"""Alerts for the hub: rules over the fleet's latest snapshots, state kept in SQLite,
silences and acknowledgements, notifications through apprise, webhooks and Alertmanager.

`AlertsExtension` is listed in hub/extensions.py; the app builder attaches it. Module map: expr (the rule
language), rules (built-ins, user YAML, templates), engine (evaluation and states), state
(SQLite), routing (notify.yaml, routes, grouping), notify (delivery with retries), export
(Prometheus rule files and promtool tests), api (HTTP), cli (`gpufleet rules`).
"""

from __future__ import annotations

from .service import AlertsExtension

__all__ = ["AlertsExtension"]
