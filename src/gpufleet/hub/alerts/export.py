"""Prometheus parity: the hub's rules as a Prometheus rule file, and promtool unit tests for it.

`prometheus_rules()` writes each rule's expression in PromQL over the catalogue's names
(expr.py's language *is* a PromQL subset). `promtool_tests()` runs a scenario (series over
time) through the hub's own engine and writes what the engine fired as the promtool test's
expected alerts, so `promtool test rules` passing means the hub and Prometheus agree on
every alert at every evaluation of the scenario. `builtin_scenario()` exercises every
built-in metric rule; node_status rules have no series form (Prometheus alerts on `up`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

from ...catalogue import BY_NAME, PREFIX, SCOPE_LABELS, metric
from ...snapshot import Disk, Gpu, NodeSnapshot, UserUsage
from ...syntax import format_duration
from .engine import FIRING, Engine, NodeInput
from .rules import Rule

GROUP = "gpufleet"


def prometheus_rules(rules: list[Rule], group: str = GROUP) -> dict[str, Any]:
    out = []
    for r in rules:
        item: dict[str, Any] = {"alert": r.alert, "expr": r.promql()}
        if r.for_s:
            item["for"] = format_duration(r.for_s)
        item["labels"] = dict(r.labels)
        if r.annotations:
            item["annotations"] = {k: t.text for k, t in r.annotations.items()}
        out.append(item)
    return {"groups": [{"name": group, "rules": out}]}


def dump(doc: dict[str, Any]) -> str:
    return yaml.safe_dump(doc, sort_keys=False, width=1000, allow_unicode=True)


@dataclass
class Series:
    metric: str
    labels: dict[str, str]
    values: list[float | None]  # one per step; None = no sample


@dataclass
class Scenario:
    series: list[Series]
    steps: int
    step: float = 60.0
    nodes_labels: dict[str, dict[str, str]] = field(default_factory=dict)


def _snapshots(sc: Scenario, i: int) -> tuple[list[NodeInput], dict[str, float]]:
    """The scenario's samples at step i as node snapshots (what agents would have pushed)."""
    t = i * sc.step
    snaps: dict[str, NodeSnapshot] = {}
    gpus: dict[tuple[str, str], Gpu] = {}
    disks: dict[tuple[str, ...], Disk] = {}
    users: dict[tuple[str, str], UserUsage] = {}
    hub: dict[str, float] = {}
    for s in sc.series:
        v = s.values[i] if i < len(s.values) else None
        m = BY_NAME[s.metric]
        if m.scope == "hub":
            if v is not None:
                hub[m.key] = v
            continue
        node = s.labels["node"]
        extra = {k: val for k, val in s.labels.items() if k != "node" and k not in SCOPE_LABELS[m.scope]}
        snap = snaps.get(node)
        if snap is None:
            snap = snaps[node] = NodeSnapshot(node=node, timestamp=t, labels=extra, values={})
        if v is None:
            continue
        if m.scope == "node":
            snap.values[m.key] = v
        elif m.scope == "agent":
            snap.agent = {**snap.agent, m.key: v}
        elif m.scope == "gpu":
            key = (node, s.labels["gpu"])
            g = gpus.get(key)
            if g is None:
                g = gpus[key] = Gpu(index=int(s.labels["gpu"]), uuid=s.labels.get("uuid", ""),
                                    model=s.labels.get("model", ""), vendor=s.labels.get("vendor", ""), values={})
                snap.gpus.append(g)
            g.values[m.key] = v
        elif m.scope == "user":
            uk = (node, s.labels["user"])
            u = users.get(uk)
            if u is None:
                u = users[uk] = UserUsage(user=uk[1], values={})
                snap.usage.append(u)
            u.values[m.key] = v
        elif m.scope == "disk":
            dk = (node, s.labels["device"], s.labels["mountpoint"], s.labels.get("fstype", ""))
            d = disks.get(dk)
            if d is None:
                d = disks[dk] = Disk(device=dk[1], mountpoint=dk[2], fstype=dk[3], values={})
                snap.disks.append(d)
            d.values[m.key] = v
        else:
            raise ValueError(f"scenario series of scope {m.scope} are not supported")
    nodes = [NodeInput(n, dict(s.labels), s) for n, s in snaps.items()
             if s.values or s.gpus or s.disks or s.agent or s.usage]
    return nodes, hub


def run_scenario(rules: list[Rule], sc: Scenario) -> list[list[Any]]:
    """Firing alerts (engine Alert copies) after each step's evaluation."""
    eng = Engine(rules)
    out = []
    for i in range(sc.steps):
        nodes, hub = _snapshots(sc, i)
        eng.evaluate(nodes, hub, now=i * sc.step)
        out.append([(dict(a.labels), dict(a.annotations)) for a in eng.alerts.values() if a.state == FIRING])
    return out


def _values_text(values: list[float | None]) -> str:
    return " ".join("_" if v is None else repr(float(v)) for v in values)


def promtool_tests(rules: list[Rule], sc: Scenario, rule_file: str, every: int = 1) -> dict[str, Any]:
    """A promtool test file whose expected alerts are what the hub's engine fired."""
    fired = run_scenario(rules, sc)
    names = sorted({r.alert for r in rules if r.expr is not None})
    tests = []
    for i in range(0, sc.steps, every):
        for name in names:
            exp = [{"exp_labels": labels, "exp_annotations": ann} for labels, ann in fired[i]
                   if labels["alertname"] == name]
            exp.sort(key=lambda e: sorted(e["exp_labels"].items()))
            tests.append({"eval_time": format_duration(i * sc.step), "alertname": name, "exp_alerts": exp})
    input_series = [{"series": _series_text(s), "values": _values_text(s.values)} for s in sc.series]
    return {"rule_files": [rule_file], "evaluation_interval": format_duration(sc.step),
            "tests": [{"interval": format_duration(sc.step), "input_series": input_series,
                       "alert_rule_test": tests}]}


def _series_text(s: Series) -> str:
    lab = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
    return f"{s.metric}{{{lab}}}" if lab else s.metric


def _counter(steps: int, start: int, stop: int, per_step: float, on: bool) -> list[float | None]:
    """A counter from 0 that grows `per_step` each step in [start, stop) when `on`, flat otherwise."""
    vals: list[float | None] = []
    total = 0.0
    for k in range(steps):
        if on and start <= k < stop:
            total += per_step
        vals.append(total)
    return vals


def builtin_scenario(steps: int = 126) -> Scenario:
    """Two hours of two nodes in which every built-in metric rule has something to say (the
    longest `for` is the 2 h of user_gpus_idle)."""
    def gpu(node: str, i: int) -> dict[str, str]:
        return {"node": node, "cluster": "lab", "gpu": str(i), "uuid": f"GPU-{node}-{i}",
                "model": "NVIDIA H100 80GB HBM3", "vendor": "nvidia"}

    def ramp(default: float, spans: list[tuple[int, int, float]]) -> list[float | None]:
        vals: list[float | None] = [default] * steps
        for a, b, v in spans:
            for k in range(a, min(b, steps)):
                vals[k] = v
        return vals

    def m(name: str) -> str:  # the catalogue's name, so a renamed metric fails here, not in a silent rule
        return metric(PREFIX + name).name

    s: list[Series] = []
    for node in ("gpu-a", "gpu-b"):
        for i in (0, 1):
            lab = gpu(node, i)
            hot = node == "gpu-a" and i == 0
            idle = node == "gpu-a" and i == 1
            s.append(Series(m("gpu_temperature_celsius"), lab,
                            ramp(60.0, [(3, 13, 92.0), (13, 20, 87.0)] if hot else [])))
            s.append(Series(m("gpu_utilization_ratio"), lab, ramp(0.9, [(0, steps, 0.01)] if idle else [])))
            s.append(Series(m("gpu_processes"), lab, ramp(1.0, [])))
            s.append(Series(m("gpu_memory_used_bytes"), lab,
                            ramp(40e9, [(5, 20, 78e9)] if hot else [])))
            s.append(Series(m("gpu_memory_total_bytes"), lab, ramp(80e9, [])))
            s.append(Series(m("gpu_ecc_uncorrected_errors_total"), lab,
                            ramp(0.0, [(12, steps, 2.0)] if idle else [])))
            s.append(Series(m("gpu_xid_errors_total"), lab, ramp(0.0, [(15, steps, 1.0)] if hot else [])))
            s.append(Series(m("gpu_up"), lab, ramp(1.0, [(8, 30, 0.0)] if node == "gpu-b" and i == 0 else [])))
            # memory repair, links and throttling: each on one GPU of node gpu-b
            bad = node == "gpu-b" and i == 1
            s.append(Series(m("gpu_remapped_rows_uncorrectable_total"), lab,
                            ramp(0.0, [(6, 18, 1.0), (18, steps, 2.0)] if bad else [])))
            s.append(Series(m("gpu_remapped_rows_pending"), lab, ramp(0.0, [(6, 25, 1.0)] if bad else [])))
            s.append(Series(m("gpu_remapped_rows_failure"), lab, ramp(0.0, [(25, steps, 1.0)] if bad else [])))
            s.append(Series(m("gpu_retired_pages_pending"), lab, ramp(0.0, [(3, 9, 1.0)] if bad else [])))
            s.append(Series(m("gpu_nvlink_crc_flit_errors_total"), lab, _counter(steps, 14, 24, 7.0, bad)))
            s.append(Series(m("gpu_nvlink_recovery_errors_total"), lab,
                            ramp(0.0, [(20, steps, 1.0)] if bad else [])))
            # counters that grow 45 s a minute while throttled: never exactly at the 120 s threshold
            s.append(Series(m("gpu_throttle_thermal_seconds_total"), lab,
                            _counter(steps, 12, 26, 45.0, node == "gpu-a" and i == 0)))
            s.append(Series(m("gpu_throttle_power_seconds_total"), lab, _counter(steps, 2, 14, 45.0, bad)))
        disk = {"node": node, "cluster": "lab", "device": "/dev/nvme0n1p2", "mountpoint": "/", "fstype": "ext4"}
        s.append(Series(m("disk_free_bytes"), disk, ramp(5e11, [(10, steps, 4e10)] if node == "gpu-b" else [])))
        s.append(Series(m("disk_size_bytes"), disk, ramp(1e12, [])))
        nlab = {"node": node, "cluster": "lab"}
        s.append(Series(m("node_memory_available_bytes"), nlab,
                        ramp(2e11, [(20, 30, 1.5e10)] if node == "gpu-a" else [])))
        s.append(Series(m("node_memory_total_bytes"), nlab, ramp(5.12e11, [])))
        s.append(Series(m("agent_clock_skew_seconds"), nlab,
                        ramp(0.2, [(5, 12, 95.0)] if node == "gpu-a" else [(22, 30, -130.0)])))
    # Accounting: alice's GPUs on gpu-a idle all along, bob's busy; fleet waste and capacity.
    for user, busy in (("alice", 0.02), ("bob", 0.6)):
        s.append(Series(m("user_held_gpu_utilization_ratio"), {"node": "gpu-a", "cluster": "lab", "user": user},
                        ramp(busy, [])))
    s.append(Series(m("hub_fleet_gpu_equivalents_held"), {}, ramp(8.0, [])))
    s.append(Series(m("hub_fleet_gpu_equivalents_idle_held"), {}, ramp(1.0, [(5, 60, 5.0)])))
    s.append(Series(m("hub_fleet_gpu_equivalents_capacity"), {}, ramp(16.0, [])))
    s.append(Series(m("hub_fleet_gpu_equivalents_free"), {}, ramp(8.0, [(40, 80, 2.5), (90, 110, 0.5)])))
    s.append(Series(m("hub_ingest_lag_max_seconds"), {}, ramp(1.0, [(2, 9, 75.0)])))
    s.append(Series(m("hub_store_errors_total"), {}, ramp(0.0, [(25, steps, 3.0)])))
    s.append(Series(m("hub_storage_paused"), {}, ramp(0.0, [(30, 34, 1.0)])))
    return Scenario(s, steps)
