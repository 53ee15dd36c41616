"""Secrets in command lines are masked on the node, before anything is stored or sent."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from gpufleet.collectors.base import CollectContext
from gpufleet.collectors.processes import ProcessCollector
from gpufleet.config import load_agent_config
from gpufleet.errors import UserError
from gpufleet.masking import Masker
from gpufleet.snapshot import NodeSnapshot
from test_processes_collector import FIXTURES, FakeClock, add_process


@pytest.mark.parametrize("argv, masked", [
    (["gpufleet", "agent", "--token", "gft_abc", "--node", "x"], ["gpufleet", "agent", "--token", "***", "--node", "x"]),
    (["x", "--token=gft_abc"], ["x", "--token=***"]),
    (["x", "--hub-token", "t", "--Password=p"], ["x", "--hub-token", "***", "--Password=***"]),
    (["mysql", "--password", "pw", "--user", "u"], ["mysql", "--password", "***", "--user", "u"]),
    (["env", "HF_TOKEN=hf_1", "AWS_SECRET_ACCESS_KEY=a", "DB_PASSWORD=b", "api_key=c", "MY_SECRET=d", "x"],
     ["env", "HF_TOKEN=***", "AWS_SECRET_ACCESS_KEY=***", "DB_PASSWORD=***", "api_key=***", "MY_SECRET=***", "x"]),
    (["psql", "postgres://app:hunter2@db:5432/x"], ["psql", "postgres://app:***@db:5432/x"]),
    (["sh", "-c", "curl --token abc https://x WANDB_API_KEY=k"], ["sh", "-c", "curl --token *** https://x WANDB_API_KEY=***"]),
    (["python train.py --api-key=k1"], ["python train.py --api-key=***"]),  # argv rewritten as one string
    (["x", "--token", "--verbose"], ["x", "--token", "--verbose"]),  # the next flag is not a value
    (["x", "--token-file", "/etc/gpufleet/token", "--epochs=3", "KEYBOARD=us"],
     ["x", "--token-file", "/etc/gpufleet/token", "--epochs=3", "KEYBOARD=us"]),
])
def test_default_patterns(argv: list[str], masked: list[str]) -> None:
    assert Masker().mask(argv) == masked


def test_patterns_are_settable() -> None:
    m = Masker(["--license", "*_CODE"])
    assert m.mask(["x", "--license", "L", "--token", "t", "PROMO_CODE=1"]) == ["x", "--license", "***", "--token", "t", "PROMO_CODE=***"]
    assert Masker([]).mask(["x", "--token", "t"]) == ["x", "--token", "t"]


def test_config_option_env_and_file(tmp_path: Path) -> None:
    assert "--*token" in load_agent_config({}, {}).mask
    assert load_agent_config({"mask": "--license,*_CODE"}, {}).mask == ["--license", "*_CODE"]
    assert load_agent_config({}, {"GPUFLEET_MASK": "--x"}).mask == ["--x"]
    f = tmp_path / "agent.yaml"
    f.write_text("mask: ['--*token', '*KEY']\n")
    assert load_agent_config({}, {}, f).mask == ["--*token", "*KEY"]
    with pytest.raises(UserError, match="--mask: mask pattern '\\*' would match every"):
        load_agent_config({"mask": "*"}, {})


def test_collector_masks_before_the_snapshot(tmp_path: Path) -> None:
    proc = tmp_path / "proc"
    shutil.copytree(FIXTURES, proc)
    add_process(proc, 777, "gpufleet", ["/usr/bin/python3", "-m", "gpufleet", "agent", "--token", "gft_SECRET"])
    add_process(proc, 778, "train", ["env", "HF_TOKEN=hf_SECRET", "python", "train.py"])
    c = ProcessCollector(CollectContext(procfs=proc), clock=FakeClock())
    snap = NodeSnapshot(node="n", timestamp=0.0)
    c.collect(snap)
    by_pid = {p.pid: p for p in snap.processes}
    assert by_pid[777].command == "/usr/bin/python3 -m gpufleet agent --token ***"
    assert by_pid[778].command == "env HF_TOKEN=*** python train.py"
    assert "SECRET" not in str(snap.processes)
    off = ProcessCollector(CollectContext(procfs=proc, options={"processes.mask": []}), clock=FakeClock())
    snap = NodeSnapshot(node="n", timestamp=0.0)
    off.collect(snap)
    assert any("gft_SECRET" in p.command for p in snap.processes)


def test_token_file(tmp_path: Path) -> None:
    f = tmp_path / "token"
    f.write_text("gft_from_file\n")
    assert load_agent_config({"token_file": str(f)}, {}).token == "gft_from_file"
    assert load_agent_config({}, {"GPUFLEET_TOKEN": "gft_env"}).token == "gft_env"
    with pytest.raises(UserError, match="keep one"):
        load_agent_config({"token_file": str(f)}, {"GPUFLEET_TOKEN": "gft_env"})
    with pytest.raises(UserError, match="cannot read"):
        load_agent_config({"token_file": str(tmp_path / "missing")}, {})
    f.write_text("\n")
    with pytest.raises(UserError, match="is empty"):
        load_agent_config({"token_file": str(f)}, {})
