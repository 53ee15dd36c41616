"""scripts/gpu-check's comparison: a fake `nvidia-smi` on the command line against a simulated
agent that agrees with it (exit 0), one that disagrees (exit 1), and one that cannot run (exit 2)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import httpx
import pytest

from gpufleet.gpucheck import agrees, compare, ours, parse_smi
from gpufleet.nvidia_smi import BY_FIELD, FIELDS, SmiField
from realparts import agent

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "gpu-check"


def smi_text(f: SmiField, gpu: dict[str, Any]) -> str:
    """What nvidia-smi would print for the agent's reading (csv, noheader, nounits)."""
    v = ours(f, gpu)
    if v is None:
        return "[N/A]"
    if isinstance(v, str):
        return v
    if f.parse == "pstate":
        return f"P{int(v)}"
    if f.parse == "yesno":
        return "Yes" if v else "No"
    if f.parse == "active":
        return "Active" if v else "Not Active"
    if f.parse == "hex":
        return f"0x{int(v):016x}"
    return f"{v / f.scale:.2f}"


def fake_nvidia_smi(tmp: Path, rows: list[dict[str, str]], name: str = "nvidia-smi") -> Path:
    """An nvidia-smi that answers --query-gpu from `rows` and refuses fields they lack, as an
    older nvidia-smi refuses fields it does not know."""
    path = tmp / name
    path.write_text(textwrap.dedent(f"""\
        #!{sys.executable}
        import sys
        rows = {json.dumps(rows)}
        query = next(a for a in sys.argv[1:] if a.startswith("--query-gpu=")).split("=", 1)[1].split(",")
        assert "--format=csv,noheader,nounits" in sys.argv
        for field in query:
            if field not in rows[0]:
                print(f'Field "{{field}}" is not a valid field to query.')
                sys.exit(2)
        for row in rows:
            print(", ".join(row[f] for f in query))
        """))
    path.chmod(0o755)
    return path


def rows_for(snapshot: dict[str, Any], drop: tuple[str, ...] = ()) -> list[dict[str, str]]:
    return [{f.field: smi_text(f, g) for f in FIELDS if f.field not in drop} for g in snapshot["gpus"]]


def run_check(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=120,
                          env={"PATH": "/usr/bin:/bin", "PYTHON": sys.executable, "HOME": "/tmp"})


# ---- the comparison, on strings ----------------------------------------------------------------
def test_parsing_nvidia_smi_answers() -> None:
    assert parse_smi(BY_FIELD["memory.used"], "1024") == 1024 * 1024 * 1024
    assert parse_smi(BY_FIELD["utilization.gpu"], "87") == pytest.approx(0.87)
    assert parse_smi(BY_FIELD["pstate"], "P8") == 8.0
    assert parse_smi(BY_FIELD["remapped_rows.pending"], "Yes") == 1.0
    assert parse_smi(BY_FIELD["clocks_event_reasons.sw_power_cap"], "Not Active") == 0.0
    assert parse_smi(BY_FIELD["clocks_event_reasons.active"], "0x0000000000000004") == 4.0
    for na in ("[N/A]", "[Not Supported]", "N/A", ""):
        assert parse_smi(BY_FIELD["fan.speed"], na) is None


def test_tolerances() -> None:
    power, ecc = BY_FIELD["power.draw"], BY_FIELD["ecc.errors.uncorrected.volatile.total"]
    assert agrees(power, [300.0], 309.0) and agrees(power, [600.0], 655.0) and not agrees(power, [300.0], 340.0)
    assert agrees(power, [200.0, 300.0], 305.0)  # either answer, before or after the snapshot
    assert agrees(ecc, [2.0], 2.0) and not agrees(ecc, [2.0], 3.0)
    assert agrees(ecc, [None], None) and not agrees(ecc, [None], 0.0) and not agrees(ecc, [0.0], None)


def test_flags_come_from_the_reasons_bitmask() -> None:
    gpu = {"index": 0, "uuid": "GPU-1", "values": {"clock_throttle_reasons": 0x4 | 0x40}}
    row = {"index": "0", "uuid": "GPU-1", "clocks_event_reasons.sw_power_cap": "Active",
           "clocks_event_reasons.gpu_idle": "Not Active", "clocks_event_reasons.hw_thermal_slowdown": "Not Active"}
    got = {r.field: r.ok for r in compare([row], [row], {"gpus": [gpu]})}
    assert got["clocks_event_reasons.sw_power_cap"] and got["clocks_event_reasons.gpu_idle"]
    assert got["clocks_event_reasons.hw_thermal_slowdown"] is False


# ---- the script, against a real agent on the simulator -------------------------------------------
@pytest.mark.realparts
def test_agreeing_disagreeing_and_unrunnable(tmp_path: Path) -> None:
    with agent(tmp_path, "--simulate", "8xH100", "--interval", "300", "--collectors", "accelerators") as (_, url):
        snap = httpx.get(f"{url}/api/v1/snapshot").json()
        # an older nvidia-smi without the video engine fields: those rows are skipped, not failed
        good = fake_nvidia_smi(tmp_path, rows_for(snap, drop=("utilization.encoder", "utilization.decoder")))
        r = run_check("--url", url, "--nvidia-smi", str(good))
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr
        lines = r.stdout.splitlines()
        assert lines[0].split() == ["gpu", "field", "nvidia-smi", "gpufleet", "tolerance", "ok"]
        assert len(lines) == 2 + 8 * len(FIELDS) and "MISMATCH" not in r.stdout
        assert sum("skip" in line for line in lines) == 16  # 2 fields x 8 GPUs
        assert f"{8 * (len(FIELDS) - 2)} of {8 * (len(FIELDS) - 2)} readings agree" in r.stderr

        # one GPU 10 C hotter than the agent says, another with a remap failure it does not report
        rows = rows_for(snap)
        rows[2]["temperature.gpu"] = str(float(rows[2]["temperature.gpu"]) + 10)
        rows[5]["remapped_rows.failure"] = "Yes"
        bad = fake_nvidia_smi(tmp_path, rows, "nvidia-smi-bad")
        r = run_check("--url", url, "--nvidia-smi", str(bad), "--json")
        assert r.returncode == 1, r.stderr
        wrong = {(x["gpu"], x["field"]) for x in json.loads(r.stdout) if x["ok"] is False}
        assert wrong == {("2", "temperature.gpu"), ("5", "remapped_rows.failure")}

    r = run_check("--nvidia-smi", str(tmp_path / "missing"), "--agent-args", "--simulate 8xH100")
    assert r.returncode == 2 and "not found" in r.stderr


@pytest.mark.realparts
def test_it_starts_and_stops_its_own_agent(tmp_path: Path) -> None:
    # nvidia-smi and the simulated agent disagree (the agent's clock moves): the script still
    # starts the agent, compares, prints the table and exits 1.
    rows = [{f.field: "[N/A]" for f in FIELDS} | {"index": str(i), "uuid": f"GPU-x{i}"} for i in range(8)]
    fake = fake_nvidia_smi(tmp_path, rows)
    r = run_check("--nvidia-smi", str(fake), "--agent-args", "--simulate 8xH100 --collectors accelerators")
    assert r.returncode == 1, r.stderr
    assert "MISMATCH" in r.stdout and "temperature.gpu" in r.stdout


@pytest.mark.realparts
def test_wheels_folder_without_gpufleet_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "wheels").mkdir()
    # a prepared environment whose pip finds nothing in the folder (a real venv costs ~30 s to make)
    bin_dir = tmp_path / "venv" / "bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / "python").write_text('#!/bin/sh\necho "ERROR: No matching distribution found for gpufleet" >&2\nexit 1\n')
    (bin_dir / "python").chmod(0o755)
    r = run_check("--wheels", str(tmp_path / "wheels"), "--venv", str(tmp_path / "venv"))
    assert r.returncode == 2 and "cannot install gpufleet and nvidia-ml-py from" in r.stderr
    r = run_check("--wheels", str(tmp_path / "nowhere"))
    assert r.returncode == 2 and "is not a folder" in r.stderr
