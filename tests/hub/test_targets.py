"""Targets file: file_sd shape, validation with file:line, and reload through TargetsWatcher."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gpufleet.hub.targets import (
    CHECK_EVERY, DEFAULT_INTERVAL, Target, TargetsError, TargetsWatcher, load_targets, parse_duration, parse_targets,
)
from conftest import FakeClock

ALGALON = """\
# all-smi-targets.yml as Algalon users have it (vmagent file_sd)
- targets: ['10.0.1.100:9090', '10.0.1.101:9090']
  labels: {cluster: 'production', platform: 'nvidia', datacenter: 'dc1'}
- targets: ['10.0.2.100:9090', '10.0.2.101:9090']
  labels: {cluster: 'staging', platform: 'apple', datacenter: 'dc2'}
- targets: ['10.0.3.100:9090']
  labels: {cluster: 'edge', platform: 'jetson', datacenter: 'dc3'}
"""


def test_algalon_file_sd_unchanged() -> None:
    targets = parse_targets(ALGALON, "all-smi-targets.yml")
    assert [t.address for t in targets] == ["10.0.1.100:9090", "10.0.1.101:9090", "10.0.2.100:9090",
                                            "10.0.2.101:9090", "10.0.3.100:9090"]
    first = targets[0]
    assert first == Target(node="10.0.1.100", address="10.0.1.100:9090", kind="auto", scheme="http",
                           path="/metrics", labels={"cluster": "production", "platform": "nvidia",
                                                    "datacenter": "dc1"},
                           source="all-smi-targets.yml:2")
    assert first.url == "http://10.0.1.100:9090/metrics"
    assert targets[4].labels["platform"] == "jetson" and targets[4].source == "all-smi-targets.yml:6"


def test_gpufleet_keys_node_names_and_prometheus_labels() -> None:
    text = """\
- targets:
    - gpu01:9400
    - gpu02:9400
  kind: dcgm
  interval: 15s
  timeout: 2.5
  labels:
    cluster: a
- targets: [gpu01:9100, '[::1]:9100']
  kind: node_exporter
  scheme: https
  path: /node/metrics
  interval: 1m30s
- targets: ['10.9.9.9:8080']
  labels: {node: train-box, __metrics_path__: /prom, __scheme__: https, __meta_x: dropped, rack: 7}
"""
    t = {x.address: x for x in parse_targets(text, "t.yml")}
    # gpu01 appears twice (dcgm + node_exporter): host:port keeps them apart; gpu02 is alone.
    assert t["gpu01:9400"].node == "gpu01:9400" and t["gpu01:9100"].node == "gpu01:9100"
    assert t["gpu02:9400"].node == "gpu02"
    assert t["gpu02:9400"].kind == "dcgm" and t["gpu02:9400"].interval == 15.0 and t["gpu02:9400"].timeout == 2.5
    assert t["gpu02:9400"].source == "t.yml:3"
    ne, box = t["[::1]:9100"], t["10.9.9.9:8080"]
    assert ne.node == "::1" and ne.host == "::1" and ne.interval == 90.0 and ne.timeout is None
    assert box.interval == DEFAULT_INTERVAL
    assert ne.url == "https://[::1]:9100/node/metrics"
    box = t["10.9.9.9:8080"]
    assert box.node == "train-box"
    assert box.url == "https://10.9.9.9:8080/prom"
    assert box.labels == {"node": "train-box", "rack": "7"}


def test_empty_file_means_no_targets() -> None:
    assert parse_targets("", "t.yml") == []
    assert parse_targets("# nothing yet\n", "t.yml") == []
    assert parse_targets("[]\n", "t.yml") == []


@pytest.mark.parametrize("text,line,fragment", [
    ("- targets: ['a:1']\n- targets: ['b:1'\n", 3, "not valid YAML"),
    ("- targets: ['a:1']\n  labels: {x: [1, 2}\n", 2, "not valid YAML"),
    ("targets: ['a:1']\n", 1, "a list of"),
    ("- targets: ['a:1']\n- targets:\n  - gpu02\n", 3, "no port"),
    ("- targets: ['a:1']\n- targets: ['b:0']\n", 2, "port"),
    ("- targets: ['bad host:1']\n", 1, "not a host"),
    ("- targets: ['a:1']\n  lables: {x: y}\n", 2, "unknown key 'lables'"),
    ("- targets: ['a:1']\n  labels:\n    ok: y\n    9lives: y\n", 4, "invalid label name"),
    ("- targets: ['a:1']\n  labels:\n    dash-name: y\n", 3, "invalid label name"),
    ("- targets: ['a:1']\n  labels: {gpu_ok: yes}\n", 2, "quote it"),
    ("- targets: ['a:1']\n  kind: prometheus\n", 2, "unknown kind"),
    ("- targets: ['a:1']\n  scheme: ftp\n", 2, "scheme"),
    ("- targets: ['a:1']\n  path: metrics\n", 2, "path"),
    ("- targets: ['a:1']\n  interval: soon\n", 2, "interval"),
    ("- targets: ['a:1']\n  interval: 0\n", 2, "more than zero"),
    ("- labels: {x: y}\n", 1, "no `targets:`"),
    ("- targets: ['a:1']\n- targets: ['a:1']\n", 2, "already listed on line 1"),
    ("- targets: ['a:1', 'b:1']\n  labels: {node: same}\n", 1, "node name 'same'"),
    ("- targets: a:1\n", 1, "must be a list"),
    ("- targets: ['a:1']\n  interval: 5s\n  timeout: 10s\n", 3, "must not exceed interval"),
])
def test_errors_name_file_and_line(text: str, line: int, fragment: str) -> None:
    with pytest.raises(TargetsError) as e:
        parse_targets(text, "/etc/gpufleet/targets.yml")
    assert e.value.file == "/etc/gpufleet/targets.yml"
    assert e.value.line == line, str(e.value)
    assert str(e.value).startswith(f"/etc/gpufleet/targets.yml:{line}: ")
    assert fragment in str(e.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(TargetsError) as e:
        load_targets(tmp_path / "nope.yml")
    assert "nope.yml" in str(e.value) and "not found" in str(e.value)


@pytest.mark.parametrize("text,seconds", [(15, 15.0), (2.5, 2.5), ("30s", 30.0), ("1m", 60.0),
                                          ("1h2m3s", 3723.0), ("500ms", 0.5)])
def test_durations(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds


def _write(path: Path, text: str, bump: int) -> None:
    path.write_text(text)
    # Same-second rewrites of equal size could look unchanged to stat(); set a distinct mtime.
    os.utime(path, ns=(bump * 10**9, bump * 10**9))


def test_watcher_reloads_changes_and_keeps_last_good(tmp_path: Path) -> None:
    path = tmp_path / "targets.yml"
    _write(path, "- targets: ['a:9100']\n", 1)
    clock = FakeClock()
    w = TargetsWatcher(path, clock=clock)

    first = w.poll()
    assert first is not None and [t.address for t in first] == ["a:9100"]
    assert w.poll() is None  # unchanged, and too soon to look again

    _write(path, "- targets: ['a:9100', 'b:9100']\n  labels: {cluster: x}\n", 2)
    assert w.poll() is None  # within check_every: not looked at yet
    clock.t += w.check_every
    changed = w.poll()
    assert changed is not None and [t.address for t in changed] == ["a:9100", "b:9100"]
    assert w.last_error is None

    # A broken edit: the watcher says where and keeps serving the previous list.
    _write(path, "- targets: ['a:9100', 'b:9100']\n  labels: {cluster: x}\n- targets: ['c']\n", 3)
    clock.t += w.check_every
    assert w.poll() is None
    assert w.last_error is not None
    assert str(w.last_error).startswith(f"{path}:3: ")
    assert [t.address for t in w.targets] == ["a:9100", "b:9100"]

    # The file disappears: still the last good list, with the error recorded.
    path.unlink()
    clock.t += w.check_every
    assert w.poll() is None and "not found" in str(w.last_error)
    assert len(w.targets) == 2

    # Fixed: picked up, error cleared.
    _write(path, "- targets: ['c:9100']\n", 4)
    clock.t += w.check_every
    fixed = w.poll()
    assert fixed is not None and [t.address for t in fixed] == ["c:9100"]
    assert w.last_error is None and w.targets == fixed


def test_watcher_first_load_broken_then_fixed(tmp_path: Path) -> None:
    path = tmp_path / "targets.yml"
    _write(path, "- targets: [oops\n", 1)
    clock = FakeClock()
    w = TargetsWatcher(path, clock=clock)
    assert w.poll() is None and w.targets == [] and w.last_error is not None
    assert w.last_error.file == str(path)
    _write(path, "[]\n", 2)
    clock.t += w.check_every
    assert w.poll() == [] and w.last_error is None


def test_watcher_touch_without_change_is_quiet(tmp_path: Path) -> None:
    path = tmp_path / "targets.yml"
    _write(path, "- targets: ['a:1']\n", 1)
    clock = FakeClock()
    w = TargetsWatcher(path, clock=clock)
    assert w.poll() is not None
    _write(path, "- targets: ['a:1']   # same targets, new comment\n", 2)
    clock.t += w.check_every
    assert w.poll() is None and w.last_error is None


def test_pick_up_promise() -> None:
    # The issue promises a changed file is picked up within 30 s.
    assert 0 < CHECK_EVERY <= 30
