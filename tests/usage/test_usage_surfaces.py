"""The same figures from the API, the CLI and the pages, on a real hub process over a data
directory filled with the known fleet (simfleet.py); who may read whose usage; a MIG job's
utilisation and memory over time per slice."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from access import authed_client, bearer, make_api_key, make_user
from browser import chromium
from gpufleet.cli import cli as main
from gpufleet.hub.service import Hub, HubOptions
from gpufleet.hub.usage.extension import UsageExtension
from realparts import free_port, gpufleet, hub_proc
from simfleet import MIN, Fleet, Job, known_fleet, mig_fleet, slice_memory

pytestmark = pytest.mark.realparts
PASSWORDS: dict[str, str] = {}


def fill(data: Path, fleet: Fleet, **opts: object) -> None:
    hub = Hub(HubOptions(data=data, **opts))  # type: ignore[arg-type]
    ext = UsageExtension(hub)
    try:
        for snaps in fleet.snapshots().values():
            for i in range(0, len(snaps), 120):
                hub.ingest(snaps[i:i + 120])
        ext.settle()
    finally:
        ext.close()
        hub.close()


def same(got: dict[str, dict], want: dict[str, dict]) -> None:
    assert set(got) == set(want), (sorted(got), sorted(want))
    for key, w in want.items():
        for f, v in w.items():
            assert abs(float(got[key][f]) - v) < (1e-4 if f == "energy_kwh" else 1e-3), (key, f, got[key][f], v)


@contextlib.contextmanager
def _serve(tmp: Path, fleet: Fleet, user: str, *extra: str) -> Iterator[tuple[str, str, Path]]:
    """A real hub on `fleet`'s usage record, with a viewer's API key and `user` able to sign in."""
    data = tmp / "data"
    fill(data, fleet)
    key = make_api_key(data, "viewer")
    PASSWORDS[user] = make_user(data, user, "viewer")
    port = free_port()
    proc = hub_proc(tmp, data, port, *extra)
    try:
        yield f"http://127.0.0.1:{port}", key, data
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Fleet, str, str, Path]]:
    fleet = known_fleet()
    with _serve(tmp_path_factory.mktemp("surfaces"), fleet, "ui-admin",
                "--price-gpu-hour", "2", "--price-kwh", "0.25") as (url, key, data):
        yield fleet, url, key, data


@pytest.fixture(scope="module")
def served_mig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Fleet, str, str]]:
    fleet = mig_fleet()
    with _serve(tmp_path_factory.mktemp("surfaces-mig"), fleet, "mig-viewer") as (url, key, _):
        yield fleet, url, key


def cli(*args: str) -> Any:
    """`gpufleet ARGS` in this process (click's runner), against the real hub; must exit 0."""
    r = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert r.exit_code == 0, r.output
    return r


def period(fleet: Fleet) -> tuple[str, str]:
    return str(fleet.t0), str(fleet.t0 + fleet.length)


@pytest.mark.parametrize("by", ["user", "job", "node"])
def test_api_and_cli_agree_with_the_schedule(served, by: str) -> None:
    fleet, url, key, _ = served
    since, until = period(fleet)
    want = fleet.expected(by)
    r = httpx.get(f"{url}/api/v1/usage", params={"since": since, "until": until, "by": by}, headers=bearer(key))
    assert r.status_code == 200, r.text
    api = {row[by]: row for row in r.json()["rows"]}
    same(api, want)
    assert all("cost" in row for row in api.values())

    args = ["report", "--hub", url, "--api-key", key, "--since", since, "--until", until, "--by", by]
    if by == "user":  # once as a process, the way people run it; the formats in-process (same code, faster)
        out = subprocess.run([*gpufleet(*args), "--format", "json"], capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        same({row[by]: row for row in json.loads(out.stdout)["rows"]}, want)
    out = cli(*args, "--format", "json")
    same({row[by]: row for row in json.loads(out.stdout)["rows"]}, want)
    out = cli(*args, "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(out.stdout)))
    assert list(rows[0])[:6] == [by, "gpu_hours_in_use", "gpu_hours_busy", "mean_utilization", "energy_kwh",
                                 "waste_gpu_hours"]
    same({row[by]: row for row in rows}, want)
    table = cli(*args)
    assert "GPU-H IN USE" in table.stdout
    for k in want:
        assert k in table.stdout


def test_api_csv_export(served) -> None:
    fleet, url, key, _ = served
    since, until = period(fleet)
    r = httpx.get(f"{url}/api/v1/usage", params={"since": since, "until": until, "by": "user", "format": "csv"},
                  headers=bearer(key))
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    same({row["user"]: row for row in csv.DictReader(io.StringIO(r.text))}, fleet.expected("user"))


def test_jobs_cli_and_job_verdict(served) -> None:
    fleet, url, key, _ = served
    out = subprocess.run(gpufleet("jobs", "--hub", url, "--api-key", key, "--since", "7d", "--json"),
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    jobs = {j["job"]: j for j in json.loads(out.stdout)}
    assert set(jobs) == {"slurm:101", "container:abc123def456"}
    a = jobs["slurm:101"]
    assert (a["user"], a["nodes"], a["gpus"], a["running"]) == ("alice", ["n1"], 2, False)
    assert a["start"] == fleet.t0 + 30 * 60 and a["end"] == fleet.t0 + 5.5 * 3600
    running = cli("jobs", "--hub", url, "--api-key", key, "--running")
    assert "no jobs running" in running.stderr
    listed = cli("jobs", "--hub", url, "--api-key", key, "--user", "bob")
    assert "container:abc123def456" in listed.stdout and "slurm:101" not in listed.stdout
    r = httpx.get(f"{url}/api/v1/jobs/slurm:101", headers=bearer(key)).json()
    assert r["verdict"] == "2 GPUs held, 1 used: ask for 1"
    assert [(g["node"], g["gpu"], round(g["gpu_hours_in_use"], 3)) for g in r["gpus"]] == [("n1", 0, 5.0), ("n1", 1, 5.0)]


def test_cli_bad_input_is_one_line(served) -> None:
    _, url, key, _ = served
    out = subprocess.run(gpufleet("report", "--hub", url, "--api-key", key, "--since", "last tuesday"),
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "since 'last tuesday' is not a duration" in out.stderr
    assert "Traceback" not in out.stderr
    out = subprocess.run(gpufleet("report", "--hub", url, "--since", "1d"), capture_output=True, text=True, timeout=60,
                         env={k: v for k, v in os.environ.items() if k != "GPUFLEET_API_KEY"})
    assert out.returncode != 0 and "API key" in out.stderr and "Traceback" not in out.stderr


def test_visibility_own(tmp_path: Path) -> None:
    """--usage-visibility own: a viewer reads their own rows only; an admin reads everyone's."""
    fleet = known_fleet()
    data = tmp_path / "data"
    fill(data, fleet)
    hub = Hub(HubOptions(data=data, usage_visibility="own"))
    ext = UsageExtension(hub)
    try:
        since, until = period(fleet)
        q = {"since": since, "until": until}
        with authed_client(hub, [ext], role="admin", background=False) as admin:
            assert {r["user"] for r in admin.get("/api/v1/usage", params=q).json()["rows"]} == {"alice", "bob"}
            alice = make_api_key(data, "viewer", user="alice")
            own = admin.get("/api/v1/usage", params=q, headers=bearer(alice)).json()["rows"]
            assert [r["user"] for r in own] == ["alice"]
            r = admin.get("/api/v1/usage", params={**q, "user": "bob"}, headers=bearer(alice))
            assert r.status_code == 403 and "only their own" in r.json()["detail"]
            jobs = admin.get("/api/v1/jobs", params={"since": "7d"}, headers=bearer(alice)).json()["jobs"]
            assert [j["job"] for j in jobs] == ["slurm:101"]
            assert admin.get("/api/v1/jobs/container:abc123def456", headers=bearer(alice)).status_code == 404
    finally:
        ext.close()
        hub.close()


def signed_in(browser: Any, address: str, user: str, page_name: str) -> tuple[Any, Any, list[str]]:
    """A page of `address` after signing in as `user` on the login page it is sent to, and the
    console errors it logs from the start."""
    ctx = browser.new_context(viewport={"width": 1400, "height": 900})
    page = ctx.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(address)
    page.wait_for_selector("body[data-page='login'][data-ready='1']")
    page.fill("input[name=name]", user)
    page.fill("input[name=password]", PASSWORDS[user])
    page.click("form.login-form button[type=submit]")
    page.wait_for_selector(f"body[data-page='{page_name}'][data-ready='1']")
    return ctx, page, errors


def test_pages_show_the_same_figures(served, artifacts: Path) -> None:
    """The usage page's ranking and the job page (verdict, per GPU, charts from the store) in Chromium."""
    fleet, url, _, _ = served
    since, until = period(fleet)
    with chromium() as browser:
        ctx, page, errors = signed_in(browser, f"{url}/usage?since={since}&until={until}&by=user", "ui-admin", "usage")
        rows = page.eval_on_selector_all("#us-table tbody tr", """trs => trs.map(r => ({key: r.dataset.key,
            gpu_hours_in_use: +r.dataset.inUse, gpu_hours_busy: +r.dataset.busy, mean_utilization: +r.dataset.util,
            energy_kwh: +r.dataset.kwh, waste_gpu_hours: +r.dataset.waste}))""")
        same({r.pop("key"): r for r in rows}, fleet.expected("user"))
        assert "alice\t10\t" in page.inner_text("#us-table")  # alice's 10 GPU-hours, as people read them
        page.screenshot(path=str(artifacts / "usage-page.png"), full_page=True)

        page.goto(f"{url}/usage?since={since}&until={until}&by=job")
        page.wait_for_selector("body[data-page='usage'][data-ready='1']")
        keys = page.eval_on_selector_all("#us-table tbody tr", "trs => trs.map(r => r.dataset.key)")
        assert sorted(keys) == ["container:abc123def456", "slurm:101"]
        page.click("a[href='/jobs/slurm%3A101']")
        page.wait_for_selector("body[data-page='jobs'][data-ready='1']")
        assert page.inner_text("#job-verdict") == "2 GPUs held, 1 used: ask for 1"
        gpus = page.eval_on_selector_all("#job-gpus tbody tr", """trs => trs.map(r => [r.dataset.node, +r.dataset.gpu,
            +r.dataset.inUse, +r.dataset.util])""")
        assert [(n, g, round(h, 3), round(u, 3)) for n, g, h, u in gpus] == [("n1", 0, 5.0, 0.8), ("n1", 1, 5.0, 0.0)]
        # utilisation, memory and power over the job's life, one line per GPU, from the store
        page.wait_for_function("""() => { const cs = [...document.querySelectorAll('.chart')];
            return cs.length === 3 && cs.every(c => +c.querySelector('.plot').dataset.points > 100); }""", timeout=15000)
        page.screenshot(path=str(artifacts / "job-page.png"), full_page=True)

        page.goto(f"{url}/jobs?since=7d")
        page.wait_for_selector("body[data-page='jobs'][data-ready='1']")
        listed = page.eval_on_selector_all("#j-table tbody tr", "trs => trs.map(r => r.dataset.job)")
        assert sorted(listed) == ["container:abc123def456", "slurm:101"]
        ctx.close()
        assert errors == []


def scheduled_lines(fleet: Fleet, job: Job, at: list[float]) -> dict[str, tuple[list[float], list[float]]]:
    """Each slot's utilisation and memory at times `at`, from the schedule (a slice's own
    activity; 0 where it is free), keyed by the label a user reads."""
    out = {}
    for i, (g, gi) in enumerate(zip(job.gpus, job.slices or (None,) * len(job.gpus))):
        held = [job.start <= t - fleet.t0 < job.end for t in at]
        util = [job.util_at(i, t - fleet.t0) if h else 0.0 for t, h in zip(at, held)]
        if gi is None:
            out[f"{job.node} GPU {g}"] = (util, [u * 2**34 for u in util])
            continue
        profile = next(sl.profile for sl in fleet.mig[(job.node, g)] if sl.gi == gi)
        out[f"{job.node} GPU {g} / MIG {gi} ({profile})"] = (util, [slice_memory(u, h) for u, h in zip(util, held)])
    return out


def test_mig_job_series_per_slice(served_mig) -> None:
    """A MIG job's utilisation and memory over time come from its slices' own readings (NVML has
    no whole-GPU utilisation with MIG on), one labelled line per slice; a whole GPU's as before."""
    fleet, url, key = served_mig
    for job in fleet.jobs:
        span = job.end - job.start + 2 * MIN  # the API's: the job's life and a minute either side
        r = httpx.get(f"{url}/api/v1/jobs/{job.key()}", params={"points": int(span // MIN)}, headers=bearer(key))
        assert r.status_code == 200, r.text
        series = r.json()["series"]
        assert series["step"] == MIN and series["start"] == fleet.t0 + job.start - MIN
        at = [series["start"] + k * MIN for k in range(int(span // MIN) + 1)]  # the end's bin too
        want = scheduled_lines(fleet, job, at)
        got = {s["label"]: s for s in series["slots"]}
        assert list(got) == list(want), (job.key(), list(got))
        for lbl, (util, mem) in want.items():
            assert got[lbl]["utilization"]["timestamps"] == at, lbl
            assert got[lbl]["utilization"]["values"] == pytest.approx(util), lbl
            assert got[lbl]["memory_used_bytes"]["timestamps"] == at, lbl
            assert got[lbl]["memory_used_bytes"]["values"] == pytest.approx(mem), lbl
    dave = httpx.get(f"{url}/api/v1/jobs/container:d00dfeed1234", params={"series": "false"},
                     headers=bearer(key)).json()
    assert "series" not in dave and [g["slices"] for g in dave["gpus"]] == [[2, 3]]


def test_job_figures_without_history(tmp_path: Path) -> None:
    """A hub whose --history cannot be reached still answers a job's figures; `series` says why it has none."""
    fleet = mig_fleet()
    data = tmp_path / "data"
    fill(data, fleet)
    hub = Hub(HubOptions(data=data, history=f"prometheus+http://127.0.0.1:{free_port()}"))
    ext = UsageExtension(hub)
    try:
        with authed_client(hub, [ext], role="viewer", background=False) as client:
            r = client.get("/api/v1/jobs/slurm:301")
            assert r.status_code == 200, r.text
            assert abs(r.json()["gpu_hours_in_use"] - 3 * 3 / 7) < 1e-3
            assert "unreachable" in r.json()["series"]["error"]
    finally:
        ext.close()
        hub.close()


def test_mig_job_page_charts_per_slice(served_mig, artifacts: Path) -> None:
    """The job page in Chromium draws a line per slice in the utilisation and memory charts."""
    fleet, url, _ = served_mig
    with chromium() as browser:
        ctx, page, errors = signed_in(browser, f"{url}/jobs/container%3Ad00dfeed1234", "mig-viewer", "jobs")
        assert page.inner_text("#job-verdict").startswith("1 GPU held")
        for chart in ("util", "mem"):
            plot = page.wait_for_selector(f".chart[data-chart='{chart}'] .plot[data-filled]")
            assert plot is not None
            filled = [int(n) for n in (plot.get_attribute("data-filled") or "").split(",")]
            assert len(filled) == 2 and all(n > 100 for n in filled), (chart, filled)
            legend = page.inner_text(f".chart[data-chart='{chart}']")
            assert "m1 GPU 0 / MIG 2 (2g.20gb)" in legend and "m1 GPU 0 / MIG 3 (1g.10gb)" in legend, legend
        assert [c for c in page.eval_on_selector_all(".chart", "cs => cs.map(c => c.dataset.chart)")] == \
            ["util", "mem", "power"]
        page.screenshot(path=str(artifacts / "mig-job-page.png"), full_page=True)
        ctx.close()
        assert errors == []


def test_report_and_jobs_run_on_an_agent_only_install(tmp_path: Path) -> None:
    """They are plain HTTP clients: a researcher runs them on a node without the hub's libraries."""
    agent_only = Path(__file__).resolve().parent.parent / "packaging" / "agent_only.py"
    nowhere = f"http://127.0.0.1:{free_port()}"
    env = {**os.environ, "BLOCKED_LOG": str(tmp_path / "blocked")}
    for args in (["report", "--since", "7d", "--by", "group"], ["jobs", "--running"]):
        r = subprocess.run([sys.executable, str(agent_only), *args, "--hub", nowhere], capture_output=True, text=True,
                           timeout=60, env=env)
        assert r.returncode == 2 and "cannot reach the hub" in r.stderr, r.stderr
    assert not (tmp_path / "blocked").exists(), (tmp_path / "blocked").read_text()
