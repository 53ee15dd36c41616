from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from realparts import agent, gpufleet

pytestmark = pytest.mark.realparts  # starts real servers or gpufleet processes


def test_top_once_against_an_agent(tmp_path: Path) -> None:
    with agent(tmp_path, "--simulate", "4xA100-mig", "--node", "top-node") as (_, url):
        r = subprocess.run(gpufleet("top", url, "--once"), capture_output=True, text=True, timeout=30,
                           env={"COLUMNS": "160", "PATH": "/usr/bin:/bin"})
    assert r.returncode == 0, r.stderr
    assert "top-node" in r.stdout and "1 nodes, 4 GPUs" in r.stdout
    for i in range(4):
        assert f"GPU {i}" in r.stdout


def test_top_unreachable_is_one_line() -> None:
    r = subprocess.run(gpufleet("top", "http://127.0.0.1:9", "--once"), capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and "cannot read http://127.0.0.1:9" in r.stderr and "Traceback" not in r.stderr
