"""Issue 10's packaging, on a real install: build the sdist and, from it, the wheel (as a release
does); install the wheel into a fresh venv. Agent-only: at most 12 packages and 30 MB, `gpufleet
agent --help` works, `gpufleet hub` says in one line what to install. Then `[hub]` from the same
wheel: a real hub process, with no checkout or node_modules in reach, serves uPlot and an offline
Swagger UI from the wheel's own copies. Needs PyPI (or a pip cache) for the dependencies."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import httpx
import pytest

from realparts import ROOT, Proc, free_port

pytestmark = pytest.mark.realparts  # builds and installs for real, starts a real hub

MAX_PACKAGES = 12
MAX_MB = 30.0
VENDORED = ("gpufleet/hub/ui/vendor/uplot/uPlot.iife.min.js", "gpufleet/hub/ui/vendor/uplot/uPlot.min.css",
            "gpufleet/hub/ui/vendor/swagger-ui-dist/swagger-ui-bundle.js",
            "gpufleet/hub/ui/vendor/swagger-ui-dist/swagger-ui.css")
# Run by the venv's python: every distribution but pip's own tools, with its installed bytes.
FIGURES = """
import importlib.metadata as md, json, os
out = {}
for d in md.distributions():
    name = d.metadata["Name"]
    if name.lower() in ("pip", "setuptools", "wheel"):
        continue
    size = 0
    for f in d.files or ():
        p = d.locate_file(f)
        if os.path.isfile(p):
            size += os.path.getsize(p)
    out[name] = size
print(json.dumps(out))
"""


def _run(*args: str | Path, cwd: Path | None = None, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("GPUFLEET_NODE_MODULES", "VIRTUAL_ENV", "PYTHONPATH")}
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=timeout, cwd=cwd, env=env)


def _ok(r: subprocess.CompletedProcess[str]) -> str:
    assert r.returncode == 0, f"{r.args}: exit {r.returncode}\n{r.stdout[-2000:]}\n{r.stderr[-3000:]}"
    return r.stdout


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """sdist first, then the wheel built from the unpacked sdist: the release path, which proves
    the sdist carries what a wheel needs (the UI's libraries) without npm."""
    out = tmp_path_factory.mktemp("dist")
    _ok(_run(sys.executable, "-m", "build", "--outdir", out, ROOT))
    return out


def test_wheel_and_sdist_install(dist: Path, tmp_path: Path, artifacts: Path) -> None:
    wheel = next(dist.glob("gpufleet-*.whl"))
    sdist = next(dist.glob("gpufleet-*.tar.gz"))
    in_wheel = set(zipfile.ZipFile(wheel).namelist())
    with tarfile.open(sdist) as t:
        in_sdist = {n.split("/", 1)[1] for n in t.getnames() if "/" in n}
    for f in VENDORED:
        assert f in in_wheel, f"{f} missing from {wheel.name}"
        assert f"src/{f}" in in_sdist, f"{f} missing from {sdist.name}"
    assert "package-lock.json" in in_sdist and "scripts/install.sh" in in_sdist

    # The agent alone, from the wheel, into a fresh venv.
    venv = tmp_path / "venv"
    _ok(_run(sys.executable, "-m", "venv", venv))
    py, gpufleet = venv / "bin" / "python", venv / "bin" / "gpufleet"
    _ok(_run(py, "-m", "pip", "install", "-q", "--disable-pip-version-check", wheel))
    figures = json.loads(_ok(_run(py, "-c", FIGURES)))
    total_mb = sum(figures.values()) / 1e6
    report = (f"agent-only install: {len(figures)} packages, {total_mb:.1f} MB (pip and setuptools not counted): "
              + ", ".join(f"{n} {s / 1e6:.1f}" for n, s in sorted(figures.items(), key=lambda kv: -kv[1])))
    (artifacts / "agent-install-size.txt").write_text(report + "\n")
    print(report)
    assert len(figures) <= MAX_PACKAGES, report
    assert total_mb <= MAX_MB, report

    assert "--hub" in _ok(_run(gpufleet, "agent", "--help"))
    r = _run(gpufleet, "hub", "--data", tmp_path / "no-hub", cwd=tmp_path)
    assert r.returncode == 2 and r.stdout == "", r
    assert r.stderr == ("gpufleet: error: `gpufleet hub` needs gpufleet's hub extra (fastapi is not installed): "
                        "pip install 'gpufleet[hub]'\n")
    assert not (tmp_path / "no-hub").exists()

    # Add the hub from the same wheel; start it far from any checkout or node_modules.
    _ok(_run(py, "-m", "pip", "install", "-q", "--disable-pip-version-check", f"{wheel}[hub]"))
    hub_figures = json.loads(_ok(_run(py, "-c", FIGURES)))
    hub_report = f"with [hub]: {len(hub_figures)} packages, {sum(hub_figures.values()) / 1e6:.1f} MB"
    with (artifacts / "agent-install-size.txt").open("a") as f:
        f.write(hub_report + "\n")
    print(hub_report)
    home = tmp_path / "elsewhere"
    home.mkdir()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    hub = Proc([str(gpufleet), "hub", "--listen", f"127.0.0.1:{port}", "--data", str(home / "data")],
               tmp_path / "hub.log", env={"GPUFLEET_NODE_MODULES": str(home / "none")})
    try:
        hub.wait_http(f"{url}/healthz", timeout=60)
        page = httpx.get(f"{url}/docs")
        assert page.status_code == 200 and "/docs/static/swagger-ui-bundle.js" in page.text
        assert "cdn" not in page.text.lower()
        js = httpx.get(f"{url}/docs/static/swagger-ui-bundle.js")
        assert js.status_code == 200 and len(js.content) > 500_000 and b"SwaggerUIBundle" in js.content
        assert httpx.get(f"{url}/docs/static/swagger-ui.css").status_code == 200
        uplot = httpx.get(f"{url}/ui/vendor/uplot.js")
        assert uplot.status_code == 200 and b"uPlot" in uplot.content and b"not installed" not in uplot.content
        assert httpx.get(f"{url}/ui/vendor/uplot.css").status_code == 200
        assert "charts are disabled" not in hub.log()
    finally:
        hub.stop()


def test_install_script_offline_from_a_wheel_folder(dist: Path, tmp_path: Path) -> None:
    """scripts/install.sh --wheel DIR: the agent from a folder of wheels with pip --no-index, then
    its unit (written to a folder: no root or systemd needed for the check)."""
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    wheel = next(dist.glob("gpufleet-*.whl"))
    shutil.copy(wheel, wheels)
    # What an admin does once on a machine with network: the wheel's dependencies beside it.
    _ok(_run(sys.executable, "-m", "pip", "download", "-q", "--disable-pip-version-check", "-d", wheels, wheel))
    prefix, units = tmp_path / "opt" / "gpufleet", tmp_path / "units"
    r = _run("bash", ROOT / "scripts" / "install.sh", "--wheel", wheels, "--prefix", prefix, "--hub",
             "http://hub.example:8080", "--unit-dir", units, "--config-dir", tmp_path / "etc")
    out = _ok(r)
    assert f"==> install the agent offline from {wheels}/{wheel.name}" in out
    assert "--no-index" in out
    unit = (units / "gpufleet-agent.service").read_text()
    assert f"ExecStart={prefix}/bin/python -m gpufleet agent " in unit and "--hub http://hub.example:8080" in unit
    assert out.rstrip().endswith(f"gpufleet agent installed in {prefix} (gpufleet, version {wheel.name.split('-')[1]}).")
    assert "--simulate" in _ok(_run(prefix / "bin" / "gpufleet", "agent", "--help"))
