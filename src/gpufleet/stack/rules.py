"""The alert rules of `gpufleet rules export` (built-in rules plus the user's alerts.yaml), for
Prometheus or vmalert: written by hub/alerts/export.py, never restated here."""

from __future__ import annotations

from ..errors import UserError
from ..hub.alerts.export import dump, prometheus_rules
from ..hub.alerts.rules import Rule, load_rules
from .options import StackOptions
from .prometheus import RULES_DIR

RULES_FILE = "gpufleet.rules.yml"


def load(opts: StackOptions) -> list[Rule]:
    rs = load_rules(opts.rules_file)
    if rs.errors:
        first = rs.errors[0]
        raise UserError(f"--rules: {first} ({len(rs.errors)} error(s); `gpufleet rules check FILE` lists them)")
    return rs.rules


def rules_dir(opts: StackOptions) -> str:
    return f"prometheus/{RULES_DIR}" if opts.tsdb == "prometheus" else f"vmalert/{RULES_DIR}"


def files(opts: StackOptions) -> dict[str, str]:
    header = ("# Written by `gpufleet stack generate` from gpufleet's alert rules (as `gpufleet rules export`).\n"
              "# Check: promtool check rules " + RULES_FILE + "\n")
    return {f"{rules_dir(opts)}/{RULES_FILE}": header + dump(prometheus_rules(load(opts)))}
