from __future__ import annotations

from pathlib import Path

import pytest

from gpufleet.config import load_agent_config, parse_listen
from gpufleet.errors import UserError


def test_defaults_are_loopback() -> None:
    cfg = load_agent_config({}, {})
    assert cfg.listen == ("127.0.0.1", 9401)
    assert cfg.interval == 5.0 and cfg.backend == "auto" and cfg.node


def test_precedence_cli_env_file(tmp_path: Path) -> None:
    f = tmp_path / "agent.yaml"
    f.write_text("interval: 2\nnode: from-file\nlabels: {cluster: a}\ncompat: [dcgm]\n")
    cfg = load_agent_config({}, {}, f)
    assert (cfg.interval, cfg.node, cfg.labels, cfg.compat) == (2.0, "from-file", {"cluster": "a"}, ["dcgm"])
    cfg = load_agent_config({}, {"GPUFLEET_INTERVAL": "3", "GPUFLEET_LABELS": "cluster=b,rack=r1"}, f)
    assert cfg.interval == 3.0 and cfg.labels == {"cluster": "b", "rack": "r1"} and cfg.node == "from-file"
    cfg = load_agent_config({"interval": "0.5"}, {"GPUFLEET_INTERVAL": "3"}, f)
    assert cfg.interval == 0.5


def test_simulate_implies_sim_backend() -> None:
    assert load_agent_config({"simulate": "8xH100"}, {}).backend == "sim"


@pytest.mark.parametrize("listen,expected", [
    ("0.0.0.0:9401", ("0.0.0.0", 9401)), ("[::1]:80", ("::1", 80)), (":9500", ("127.0.0.1", 9500)),
])
def test_parse_listen(listen: str, expected: tuple[str, int]) -> None:
    assert parse_listen(listen) == expected


@pytest.mark.parametrize("cli,env,message", [
    ({"interval": "0.1"}, {}, "--interval: 0.1 s is out of range"),
    ({"interval": "fast"}, {}, "--interval: 'fast' is not a number"),
    ({}, {"GPUFLEET_LISTEN": "nowhere"}, "GPUFLEET_LISTEN: 'nowhere' is not HOST:PORT"),
    ({"labels": "cluster"}, {}, "--labels: label 'cluster' is not NAME=VALUE"),
    ({"labels": "__x=1"}, {}, "label name '__x' is not valid"),
    ({"log_level": "loud"}, {}, "log level 'loud'"),
])
def test_bad_values_name_the_source(cli: dict, env: dict, message: str) -> None:
    with pytest.raises(UserError, match=message.replace("(", r"\(")):
        load_agent_config(cli, env)


def test_config_file_errors(tmp_path: Path) -> None:
    f = tmp_path / "a.yaml"
    f.write_text("interval: 5\nintervall: 3\n")
    with pytest.raises(UserError, match=r"a.yaml: unknown key 'intervall'; valid keys: .*interval"):
        load_agent_config({}, {}, f)
    f.write_text("interval: [1, 2\n")
    with pytest.raises(UserError, match=r"a.yaml:2: not valid YAML"):
        load_agent_config({}, {}, f)
    f.write_text("interval: -1\n")
    with pytest.raises(UserError, match=r"a.yaml: interval: -1 s is out of range"):
        load_agent_config({}, {}, f)
    with pytest.raises(UserError, match="cannot read config file"):
        load_agent_config({}, {}, tmp_path / "missing.yaml")


def test_labels_from_the_command_line_add_to_the_files(tmp_path: Path) -> None:
    f = tmp_path / "agent.yaml"
    f.write_text("labels: {cluster: a, rack: r1}\n")
    cfg = load_agent_config({"labels": "rack=r9,team=ml"}, {"GPUFLEET_LABELS": "zone=z1,cluster=b"}, f)
    assert cfg.labels == {"cluster": "b", "rack": "r9", "team": "ml", "zone": "z1"}  # stronger source wins a key


def test_collector_options_reach_the_collectors(tmp_path: Path) -> None:
    from gpufleet.agent.service import AgentService

    f = tmp_path / "agent.yaml"
    f.write_text("disks.remote_usage: true\nprocesses_environ: false\nbackend: none\n")
    cfg = load_agent_config({}, {}, f)
    assert cfg.disks_remote_usage is True and cfg.processes_environ is False
    assert load_agent_config({"disks_remote_usage": "yes"}, {}).disks_remote_usage is True
    service = AgentService(cfg)
    try:
        by_name = {c.name: c for c in service.collection.collectors}
        assert by_name["disks"]._remote is True and by_name["processes"]._read_environ is False
    finally:
        service.stop()
    with pytest.raises(UserError, match=r"agent.yaml: disks_remote_usage: 'maybe' is not true or false"):
        f.write_text("disks.remote_usage: maybe\n")
        load_agent_config({}, {}, f)
