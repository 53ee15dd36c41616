"""The outputs of `gpufleet stack generate`, one module each, in one table."""

from __future__ import annotations

from collections.abc import Callable

from . import alertmanager, compose, grafana, prometheus, rules, victoriametrics
from .options import StackOptions

OUTPUTS: dict[str, Callable[[StackOptions], dict[str, str]]] = {
    "prometheus": prometheus.files,
    "victoriametrics": victoriametrics.files,
    "rules": rules.files,
    "alertmanager": alertmanager.files,
    "grafana": grafana.files,
    "compose": compose.files,
}


def render(opts: StackOptions) -> dict[str, str]:
    """Every file of the stack: relative path -> text."""
    out: dict[str, str] = {}
    for produce in OUTPUTS.values():
        for path, text in produce(opts).items():
            if path in out:
                raise RuntimeError(f"two outputs write {path}")
            out[path] = text
    return out
