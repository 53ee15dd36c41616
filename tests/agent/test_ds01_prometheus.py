"""A real Prometheus scraping an agent run with `--compat ds01` answers DS01's queries with
what the agent's snapshot says (simulated GPUs, a real allocation state file)."""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from conftest import eventually
from gpufleet.snapshot import from_json
from realparts import agent, prom_query, prometheus, scrape_config, static_job


def test_prometheus_answers_ds01_names(tmp_path: Path) -> None:
    state = tmp_path / "gpu-state.json"
    # DS01's own state-file shape: GPU 7 allocated to zed's container "thesis".
    state.write_text(json.dumps({"gpus": {"7": {"type": "physical_gpu", "containers": ["thesis._.zed"],
                                                "users": {"zed": 1}}}}))
    with agent(tmp_path, "--simulate", "8xH100", "--seed", "5", "--interval", "300", "--compat", "ds01",
               "--allocation-state-file", str(state), "--groups", "none") as (_, url):
        with prometheus(tmp_path, scrape_config(static_job("ds01", url))) as (_, prom):
            def held() -> list[tuple[str, str, float]]:
                snap = from_json(httpx.get(f"{url}/api/v1/snapshot").content)
                return sorted((str(a.gpu), a.user, a.gpu_equivalents) for a in snap.allocations if a.state != "free")

            def scraped() -> list[tuple[str, str, float]]:
                return sorted((r["metric"]["gpu_slot"], r["metric"]["user"], float(r["value"][1]))
                              for r in prom_query(prom, "ds01_gpu_equivalents"))

            # The agent collects twice as it starts; then its figures stay still (300 s interval).
            eventually(lambda: scraped() and scraped() == held(), timeout=30,
                       what="Prometheus' ds01_gpu_equivalents to equal the agent's allocations")
            assert any(slot == "7" and user == "zed" for slot, user, _ in scraped())  # shared if a sim job runs there
            (zed,) = prom_query(prom, 'ds01_gpu_allocated{gpu_slot="7",user="zed"}')
            assert zed["metric"]["container"] == "thesis._.zed" and zed["metric"]["interface"] == "state_file"
            assert zed["metric"]["profile"] == "full"
            # DS01's dashboard queries: GPUs per user, fleet-wide allocated GPU-equivalents, slot info
            per_user = {r["metric"]["user"]: float(r["value"][1])
                        for r in prom_query(prom, "sum by (user) (ds01_user_gpus_allocated)")}
            want: dict[str, float] = {}
            for _, user, _ in held():
                want[user] = want.get(user, 0.0) + 1.0
            assert per_user == want
            total = float(prom_query(prom, "sum(ds01_gpu_equivalents)")[0]["value"][1])
            assert total == sum(eq for _, _, eq in held())
            assert len(prom_query(prom, 'ds01_gpu_slot_info{mig_enabled="false"}')) == 8
            assert len(prom_query(prom, 'ds01_lifecycle_events_total')) == 7
            assert float(prom_query(prom, "ds01_unmanaged_gpu_count")[0]["value"][1]) >= 0
