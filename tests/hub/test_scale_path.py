"""The scale path end to end: a hub remote-writes to VictoriaMetrics, a second hub reads history from it."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from access import authed_client
from gpufleet.hub.service import Hub, HubOptions
from conftest import eventually
from realparts import free_port, victoria_metrics
from sample_snapshot import sample_snapshot

pytestmark = pytest.mark.realparts


def test_remote_write_then_history_from_victoriametrics(tmp_path: Path) -> None:
    with victoria_metrics(tmp_path) as (_, vm):
        writer = Hub(HubOptions(data=tmp_path / "w", remote_write=f"{vm}/api/v1/write"))
        now = float(int(time.time()) - 120)
        try:
            for i in range(10):
                s = sample_snapshot("rw-node")
                s.timestamp = now + 5 * i
                s.gpus[0].values["utilization_ratio"] = i / 10
                writer.ingest([s])
            assert writer.remote.flush(timeout=10)
            stats = writer.remote.stats().as_dict()
            assert stats["samples_dropped"] == 0 and stats["samples_sent"] >= 10 * 20
        finally:
            writer.close()
        httpx.get(f"{vm}/internal/force_flush")
        reader = Hub(HubOptions(data=tmp_path / "r", history=f"prometheus+{vm}"))
        try:
            assert reader.store is None
            with authed_client(reader, role="viewer", background=False) as client:
                series = eventually(lambda: client.get("/api/v1/query_range", params={
                    "metric": "gpufleet_gpu_utilization_ratio", "match": ['node="rw-node"', 'gpu="0"'],
                    "start": now, "end": now + 50, "step": 5, "agg": "last"}).json()["series"],
                    timeout=20, what="the remote-written series to be readable")
                assert len(series) == 1
                got = dict(zip(series[0]["timestamps"], series[0]["values"]))
                assert got == {now + 5 * i: pytest.approx(i / 10) for i in range(10)}
                assert client.get("/healthz").json()["storage"] == "external"
        finally:
            reader.close()


def test_storeless_hub_refuses_pushes_while_remote_write_is_behind(tmp_path: Path) -> None:
    """Without a store the remote TSDB is the only copy: a half-full queue means 503 (agents spool),
    never samples dropped from the queue."""
    from gpufleet.hub.service import IngestError

    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens: every remote write fails
    hub = Hub(HubOptions(data=tmp_path / "h", remote_write=f"{dead}/api/v1/write", history=f"prometheus+{dead}"))
    try:
        assert hub.store is None and hub.remote is not None
        hub.remote.max_queue_samples = 100
        now = float(int(time.time()))
        accepted = 0
        with pytest.raises(IngestError) as refused:
            for i in range(20):
                s = sample_snapshot("n1")
                s.timestamp = now + i
                accepted += hub.ingest([s])[0]
        assert refused.value.status == 503 and "remote write" in str(refused.value)
        assert refused.value.retry_after is not None and "Traceback" not in str(refused.value)
        assert 1 <= accepted < 20
        assert hub.remote.stats().samples_dropped == 0  # all that was acknowledged is still queued
        with pytest.raises(IngestError) as early:  # refused before the body is even decoded
            hub.ingest_push(b"not a push", "n1")
        assert early.value.status == 503
    finally:
        hub.close()
