"""scripts/install.sh without installing: accelerator detection (stub nvidia-smi, amd-smi, ...
first on PATH), the plan --dry-run prints, and the one-line errors. The real install from a
built wheel is in test_wheel_install.py."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from realparts import ROOT

SCRIPT = ROOT / "scripts" / "install.sh"
TOOLS = ("nvidia-smi", "amd-smi", "rocm-smi", "hl-smi", "tt-smi", "all-smi")


def _stubs(d: Path, **tools: str) -> Path:
    """A folder of executables named after accelerator tools; each runs the given shell body."""
    d.mkdir(exist_ok=True)
    for name, body in tools.items():
        p = d / name.replace("_", "-")
        p.write_text(f"#!/bin/sh\n{body}\n")
        p.chmod(0o755)
    return d


def _install(*args: str | Path, stubs: Path | None = None) -> subprocess.CompletedProcess[str]:
    path = os.environ["PATH"] if stubs is None else f"{stubs}:{os.environ['PATH']}"
    return subprocess.run(["bash", str(SCRIPT), *map(str, args)], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PATH": path})


def _absent_here(tool: str) -> bool:
    return shutil.which(tool) is None


def test_nvidia_found_and_counted_amd_failing_reported(tmp_path: Path) -> None:
    stubs = _stubs(tmp_path / "bin",
                   nvidia_smi='[ "$1" = -L ] || exit 9\necho "GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-a)"\n'
                              'echo "GPU 1: NVIDIA H100 80GB HBM3 (UUID: GPU-b)"',
                   amd_smi='echo "amd-smi: the amdgpu driver is not loaded" >&2; exit 3')
    r = _install("--hub", "http://hub.example:8080", "--token-file", SCRIPT, "--enable", "--dry-run",
                 "--prefix", tmp_path / "opt", stubs=stubs)
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert f"nvidia-smi  {stubs}/nvidia-smi (2 devices)" in out
    assert f"amd-smi     {stubs}/amd-smi (it did not answer: amd-smi: the amdgpu driver is not loaded)" in out
    for tool in ("rocm-smi", "hl-smi", "tt-smi", "all-smi"):
        if _absent_here(tool):
            assert f"{tool:<11} not found" in out
    assert "NVIDIA: the agent reads the GPUs through NVML" in out
    assert "installing gpufleet[amd]" in out
    assert f"1. create the venv {tmp_path}/opt with " in out
    assert f"2. install the agent from PyPI: {tmp_path}/opt/bin/python -m pip install" in out and "gpufleet\\[amd\\]" in out
    assert (f"3. install the agent's systemd unit: {tmp_path}/opt/bin/gpufleet service install agent "
            f"--hub http://hub.example:8080 --token-file {SCRIPT} --enable") in out
    assert out.rstrip().endswith("(dry run: nothing was changed)")
    assert not (tmp_path / "opt").exists()


def test_all_smi_only_node_uses_the_all_smi_backend(tmp_path: Path) -> None:
    if not all(_absent_here(t) for t in ("nvidia-smi", "amd-smi", "rocm-smi")):
        pytest.fail("this machine has real NVIDIA/AMD tools on PATH: the all-smi-only case cannot be staged")
    stubs = _stubs(tmp_path / "bin", hl_smi="exit 0", all_smi="exit 0")
    r = _install("--hub", "https://hub.example", "--dry-run", "--config-dir", tmp_path / "etc", stubs=stubs)
    assert r.returncode == 0, r.stderr
    assert f"hl-smi      {stubs}/hl-smi" in r.stdout and f"all-smi     {stubs}/all-smi" in r.stdout
    assert "--backend all-smi" in r.stdout
    assert f"set GPUFLEET_BACKEND=all-smi in {tmp_path}/etc/agent.env" in r.stdout
    assert "[amd]" not in r.stdout


def test_gaudi_without_all_smi_says_what_to_install(tmp_path: Path) -> None:
    if not all(_absent_here(t) for t in ("nvidia-smi", "amd-smi", "rocm-smi", "all-smi")):
        pytest.fail("this machine has real accelerator tools on PATH: the Gaudi-only case cannot be staged")
    r = _install("--no-service", "--dry-run", stubs=_stubs(tmp_path / "bin", hl_smi="exit 0"))
    assert r.returncode == 0, r.stderr
    assert "through all-smi, which is not installed" in r.stdout
    assert "systemd unit" not in r.stdout


def test_offline_wheel_folder_plan(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    for v in ("0.1.0", "0.10.0", "0.9.1"):
        (wheels / f"gpufleet-{v}-py3-none-any.whl").write_bytes(b"")
    r = _install("--no-service", "--dry-run", "--wheel", wheels, "--prefix", tmp_path / "p")
    assert r.returncode == 0, r.stderr
    assert f"offline from {wheels}/gpufleet-0.10.0-py3-none-any.whl (dependencies from {wheels})" in r.stdout
    assert f"--no-index --find-links {wheels}" in r.stdout


@pytest.mark.parametrize(("args", "says"), [
    ([], "--hub URL is needed for the agent's unit (or --no-service to install the agent only)"),
    (["--hub", "hub:8080"], "--hub hub:8080: give the hub's URL, e.g. http://hub.example:8080"),
    (["--hub"], "--hub needs a value (see --help)"),
    (["--frobnicate"], "unknown option --frobnicate (see --help)"),
    (["--no-service", "--enable"], "--enable starts the unit: it cannot go with --no-service"),
    (["--no-service", "--hub", "http://h:1"], "--hub, --token-file, --unit-dir and --config-dir are for the unit"),
    (["--no-service", "--wheel", "/nonexistent.whl"], "--wheel /nonexistent.whl does not exist"),
    (["--no-service", "--wheel", "/etc/hostname"], "--wheel /etc/hostname is not a wheel (.whl) file or a folder of them"),
    (["--no-service", "--python", "no-such-python"], "no-such-python not found: install Python 3.11 or newer"),
    (["--hub", "http://h:1", "--token-file", "/nonexistent"], "--token-file /nonexistent does not exist"),
])
def test_bad_input_is_one_line(args: list[str], says: str) -> None:
    r = _install(*args, "--dry-run")
    assert r.returncode == 2
    assert r.stdout == ""  # refused before detecting or planning anything
    assert r.stderr.startswith(f"install.sh: error: {says}") and r.stderr.count("\n") == 1, r.stderr


def test_help() -> None:
    r = _install("--help")
    assert r.returncode == 0 and "--wheel PATH" in r.stdout and "--dry-run" in r.stdout
