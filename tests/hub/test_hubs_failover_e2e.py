"""Past one machine: two store-less hubs (--remote-write + --history to a real VictoriaMetrics), real
agents listing both, one hub stopped: its nodes move to the other with no gap in VictoriaMetrics,
both hubs read history back from it, alerts go on firing, one join token enrols on both."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from access import bearer, make_api_key
from conftest import eventually
from gpufleet.agent.hubs import preferred_index
from realparts import Proc, free_port, gpufleet, hub_proc, join_token, victoria_metrics

pytestmark = pytest.mark.realparts

METRIC = "gpufleet_node_memory_total_bytes"  # one series per node, every snapshot
COLLECTIONS = "gpufleet_agent_collections_total"  # the agent's own count of its collections
INTERVAL = 0.5


def _names(prefer: int, count: int) -> list[str]:
    return [n for n in (f"gpu-{i:02d}" for i in range(50)) if preferred_index(n, 2) == prefer][:count]


def _nodes(url: str, h: dict[str, str]) -> dict[str, dict]:
    try:
        return {n["name"]: n for n in httpx.get(f"{url}/api/v1/nodes", headers=h, timeout=5).json()["nodes"]}
    except (httpx.HTTPError, ValueError, KeyError):
        return {}


def _vm_samples(vm: str, node: str, start: float, metric: str = METRIC) -> list[tuple[float, float]]:
    """Every raw sample (time, value) VictoriaMetrics holds for the node's series (export: no step, no lookback)."""
    httpx.get(f"{vm}/internal/force_flush", timeout=10)
    r = httpx.get(f"{vm}/api/v1/export", params={"match[]": f'{metric}{{node="{node}"}}', "start": int(start)},
                  timeout=10)
    out: list[tuple[float, float]] = []
    for line in r.text.splitlines():
        row = json.loads(line)
        out += [(t / 1000, float(v)) for t, v in zip(row["timestamps"], row["values"])]
    return sorted(out)


def test_two_storeless_hubs_failover_without_gaps(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GPUFLEET_ALERT_INTERVAL", "0.5")  # the hubs evaluate rules twice a second
    rules = tmp_path / "alerts.yaml"
    rules.write_text(f"rules:\n  - alert: AlwaysOn\n    expr: {METRIC} > 0\n    severity: info\n")
    # as docs/scale.md says to run it: recent points visible after 1 s, not VictoriaMetrics' default 30 s
    with victoria_metrics(tmp_path, "-search.latencyOffset=1s") as (_, vm):
        store_less = ("--remote-write", f"{vm}/api/v1/write", "--history", f"prometheus+{vm}", "--rules", str(rules))
        ports = [free_port(), free_port()]
        urls = [f"http://127.0.0.1:{p}" for p in ports]
        datas = [tmp_path / "hub-a", tmp_path / "hub-b"]
        procs: list[Proc] = []
        agents: list[Proc] = []
        try:
            procs.append(hub_proc(tmp_path, datas[0], ports[0], *store_less, name="hub-a"))
            # one join token for both hubs: made on a, accepted by b
            token_file = tmp_path / "token"
            token_file.write_text(join_token(datas[0]) + "\n")
            token_file.chmod(0o600)
            out = subprocess.run(gpufleet("token", "create", "--data", str(datas[1]), "--new", "--from-file",
                                          str(token_file)), capture_output=True, text=True, check=True).stdout
            assert "now accepted by this hub" in out and token_file.read_text().strip() not in out
            procs.append(hub_proc(tmp_path, datas[1], ports[1], *store_less, name="hub-b"))
            keys = [bearer(make_api_key(d, "viewer")) for d in datas]
            on_a, on_b = _names(0, 2), _names(1, 2)
            for node in on_a + on_b:
                agents.append(Proc(gpufleet("agent", "--hub", urls[0], "--hub", urls[1], "--token-file", str(token_file),
                                            "--node", node, "--simulate", "2xRTX4090", "--interval", str(INTERVAL),
                                            "--spool", str(tmp_path / f"spool-{node}"),
                                            "--listen", f"127.0.0.1:{free_port()}"),
                                   tmp_path / f"agent-{node}.log"))
            t0 = time.time()
            # each hub lists the nodes it hears from, and only those
            eventually(lambda: set(_nodes(urls[0], keys[0])) == set(on_a) and set(_nodes(urls[1], keys[1])) == set(on_b),
                       timeout=60, what="each hub to hear from its half of the fleet")
            time.sleep(3)  # history from before the outage

            t_stop = time.time()
            assert procs[0].stop() is not None  # hub a goes away: its nodes move to b

            def all_on_b() -> bool:
                nodes = _nodes(urls[1], keys[1])
                return set(nodes) == set(on_a + on_b) and all((n.get("timestamp") or 0) > t_stop + 2 for n in nodes.values())

            eventually(all_on_b, timeout=60, what="hub b to take over hub a's nodes")
            t_end = time.time() - 1
            for node in on_a + on_b:
                ts = [t for t, _ in _vm_samples(vm, node, t0 - 5)]
                assert len(ts) == len(set(ts)), f"{node}: a sample written twice"
                # No gap: every collection the agent made across the failover is there (its own
                # count, so a collection that came late on a loaded machine is not taken for one lost).
                counts = [(t, int(v)) for t, v in _vm_samples(vm, node, t0 - 5, COLLECTIONS) if t_stop - 5 <= t <= t_end]
                assert counts and counts[0][0] <= t_stop - 1 and counts[-1][0] >= t_end - 3, (node, counts[:3], counts[-3:])
                missing = sorted(set(range(counts[0][1], counts[-1][1] + 1)) - {c for _, c in counts})
                assert not missing, f"{node}: collections {missing} are not in VictoriaMetrics"

            # hub b reads history from VictoriaMetrics, a's moved node included: before and after the move
            moved = on_a[0]
            q = httpx.get(f"{urls[1]}/api/v1/query_range", headers=keys[1], params={
                "metric": METRIC, "match": [f'node="{moved}"'], "start": t_stop - 3, "end": t_end,
                "step": 1, "agg": "last"}, timeout=10).json()
            got = q["series"][0]["timestamps"]
            assert got[0] <= t_stop - 2 and got[-1] >= t_end - 1.5
            health = httpx.get(f"{urls[1]}/healthz", timeout=5).json()
            assert health["storage"] == "external"

            # alerts evaluate on the store-less hub for every node it now hears from
            def firing() -> set[str]:
                body = httpx.get(f"{urls[1]}/api/v1/alerts", headers=keys[1], params={"state": "firing"}, timeout=5).json()
                return {a["labels"].get("node", "") for a in body["alerts"] if a["labels"].get("alertname") == "AlwaysOn"}

            eventually(lambda: firing() >= set(on_a + on_b), timeout=30, what="AlwaysOn firing for all four nodes on b")

            # hub a back: it reads the same history from VictoriaMetrics, including what b wrote
            procs[0] = hub_proc(tmp_path, datas[0], ports[0], *store_less, name="hub-a2")
            q = httpx.get(f"{urls[0]}/api/v1/query_range", headers=keys[0], params={
                "metric": METRIC, "match": [f'node="{moved}"'], "start": t_stop + 1, "end": t_end,
                "step": 1, "agg": "last"}, timeout=10).json()
            assert q["series"] and q["series"][0]["timestamps"][-1] >= t_end - 1.5
        finally:
            for p in agents + procs:
                p.stop()
        logs = [p.log_path.read_text(errors="replace") for p in agents]
        assert not any("Traceback" in text for text in logs)
        assert sum(f"pushing to hub {urls[1]}" in text for text in logs) == len(on_a)  # a's nodes moved, b's stayed
        # the compact push starts over on the new hub (its series shapes sent with the first push
        # there), instead of a refused push for shapes only the old hub knew
        assert not any("does not know this node's series shape" in text for text in logs)


def test_node_moved_to_another_hub_is_moved_not_down(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Hub a stays up; one of its nodes moves to hub b (its agent now lists b only), another stops.
    a asks the shared VictoriaMetrics: the first is "moved" (no NodeDown), the second down (NodeDown)."""
    monkeypatch.setenv("GPUFLEET_ALERT_INTERVAL", "0.5")
    rules = tmp_path / "alerts.yaml"
    rules.write_text("builtin:\n  node_down: {for: 0s}\n")
    with victoria_metrics(tmp_path, "-search.latencyOffset=1s") as (_, vm):
        store_less = ("--remote-write", f"{vm}/api/v1/write", "--history", f"prometheus+{vm}", "--rules", str(rules),
                      "--down-after", "4")
        ports = [free_port(), free_port()]
        urls = [f"http://127.0.0.1:{p}" for p in ports]
        datas = [tmp_path / "hub-a", tmp_path / "hub-b"]
        procs: list[Proc] = []
        agents: dict[str, Proc] = {}
        try:
            procs.append(hub_proc(tmp_path, datas[0], ports[0], *store_less, name="hub-a"))
            token_file = tmp_path / "token"
            token_file.write_text(join_token(datas[0]) + "\n")
            token_file.chmod(0o600)
            subprocess.run(gpufleet("token", "create", "--data", str(datas[1]), "--new", "--from-file", str(token_file)),
                           capture_output=True, text=True, check=True)
            procs.append(hub_proc(tmp_path, datas[1], ports[1], *store_less, name="hub-b"))
            api_key = make_api_key(datas[0], "viewer")
            key_a = bearer(api_key)
            mover, stopper = _names(0, 2)

            def agent(node: str, *hubs: str) -> Proc:
                return Proc(gpufleet("agent", *(a for h in hubs for a in ("--hub", h)), "--token-file", str(token_file),
                                     "--node", node, "--simulate", "2xRTX4090", "--interval", str(INTERVAL),
                                     "--spool", str(tmp_path / f"spool-{node}-{len(hubs)}"),
                                     "--listen", f"127.0.0.1:{free_port()}"), tmp_path / f"agent-{node}-{len(hubs)}.log")

            for node in (mover, stopper):
                agents[node] = agent(node, urls[0], urls[1])
            eventually(lambda: {n: v["status"] for n, v in _nodes(urls[0], key_a).items()} == {mover: "up", stopper: "up"},
                       timeout=30, what="both nodes up on hub a")
            agents[mover].stop()
            agents[mover] = agent(mover, urls[1])  # the node now pushes to b only
            agents[stopper].stop()  # and this one is gone for good

            def statuses() -> dict[str, str]:
                return {n: v["status"] for n, v in _nodes(urls[0], key_a).items()}

            eventually(lambda: statuses() == {mover: "moved", stopper: "down"}, timeout=40,
                       what="hub a to show the moved node as moved and the stopped one as down")

            def node_down() -> set[str]:
                body = httpx.get(f"{urls[0]}/api/v1/alerts", headers=key_a, params={"state": "firing"}, timeout=5).json()
                return {a["labels"].get("node", "") for a in body["alerts"]
                        if a["labels"].get("alertname") == "GpufleetNodeDown"}

            eventually(lambda: node_down() == {stopper}, timeout=15, what="NodeDown firing for the stopped node")
            assert statuses()[mover] == "moved" and mover not in node_down()
            report = httpx.get(f"{urls[0]}/api/v1/status", headers=key_a, timeout=5).json()
            assert report["agents"]["moved"] == 1 and report["agents"]["down"] == 1
            assert not any(mover in p for p in report["problems"]) and any(stopper in p for p in report["problems"])
            metrics = httpx.get(f"{urls[0]}/metrics", headers=key_a, timeout=5).text
            assert "gpufleet_hub_nodes_moved 1" in metrics
            out = subprocess.run(gpufleet("status", "--hub", urls[0], "--api-key", api_key), capture_output=True, text=True)
            assert out.returncode == 1, out.stderr  # degraded: the stopped node, not the moved one
            assert f"1 moved to another hub ({mover})" in out.stdout and f"node {mover} is" not in out.stdout, out.stdout
        finally:
            for p in [*agents.values(), *procs]:
                p.stop()


def test_token_from_file_refuses_weak_or_known_tokens(tmp_path: Path) -> None:
    def create(data: Path, token_file: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(gpufleet("token", "create", "--data", str(data), "--new", "--from-file", str(token_file)),
                              capture_output=True, text=True)

    weak = tmp_path / "weak"
    weak.write_text("hunter2\n")
    r = create(tmp_path / "b", weak)
    assert r.returncode == 2 and "not a join token" in r.stderr and "hunter2" not in r.stderr + r.stdout
    assert "Traceback" not in r.stderr
    good = tmp_path / "good"
    good.write_text(join_token(tmp_path / "a", "--new") + "\n")
    assert create(tmp_path / "b", good).returncode == 0
    again = create(tmp_path / "b", good)
    assert again.returncode == 2 and "knows that join token already" in again.stderr
