"""Remote write: wire format checked by an independent decoder, delivery checked by real receivers."""

from __future__ import annotations

import contextlib
import logging
import math
import struct
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from gpufleet.hub.remote_write import RemoteWriter, encode_write_request, snappy_block
from gpufleet.series import snapshot_series
from gpufleet.syntax import redact_url
from conftest import eventually
from realparts import free_port, require, running, victoria_metrics
from sample_snapshot import sample_snapshot

pytestmark = pytest.mark.realparts


# ------------------------------------------------ independent decoders (written from the format specs)


def snappy_decode(buf: bytes) -> bytes:
    """Snappy block format: varint length, then literals and back-references."""
    pos, n, shift = 0, 0, 0
    while True:
        b = buf[pos]
        pos += 1
        n |= (b & 0x7F) << shift
        shift += 7
        if b < 0x80:
            break
    out = bytearray()
    while pos < len(buf):
        tag = buf[pos]
        pos += 1
        kind = tag & 3
        if kind == 0:
            ln = tag >> 2
            if ln >= 60:
                extra = ln - 59
                ln = int.from_bytes(buf[pos:pos + extra], "little")
                pos += extra
            ln += 1
            out += buf[pos:pos + ln]
            pos += ln
            continue
        if kind == 1:
            ln = 4 + ((tag >> 2) & 7)
            off = ((tag >> 5) << 8) | buf[pos]
            pos += 1
        elif kind == 2:
            ln = (tag >> 2) + 1
            off = int.from_bytes(buf[pos:pos + 2], "little")
            pos += 2
        else:
            ln = (tag >> 2) + 1
            off = int.from_bytes(buf[pos:pos + 4], "little")
            pos += 4
        for _ in range(ln):  # byte by byte: copies may overlap their own output
            out.append(out[-off])
    assert len(out) == n, (len(out), n)
    return bytes(out)


def pb_fields(buf: bytes) -> list[tuple[int, int, int | bytes]]:
    """(field number, wire type, value) for each field of one protobuf message."""
    out: list[tuple[int, int, int | bytes]] = []
    pos = 0

    def varint() -> int:
        nonlocal pos
        v, shift = 0, 0
        while True:
            b = buf[pos]
            pos += 1
            v |= (b & 0x7F) << shift
            shift += 7
            if b < 0x80:
                return v

    while pos < len(buf):
        key = varint()
        field, wt = key >> 3, key & 7
        if wt == 0:
            out.append((field, wt, varint()))
        elif wt == 1:
            out.append((field, wt, buf[pos:pos + 8]))
            pos += 8
        elif wt == 2:
            ln = varint()
            out.append((field, wt, buf[pos:pos + ln]))
            pos += ln
        else:
            raise AssertionError(f"unexpected wire type {wt}")
    assert pos == len(buf)
    return out


def decode_write_request(raw: bytes) -> list[tuple[list[tuple[str, str]], list[tuple[int, float]]]]:
    series = []
    for f, wt, ts_body in pb_fields(raw):
        assert (f, wt) == (1, 2)
        labels, samples = [], []
        for g, gwt, v in pb_fields(ts_body):  # type: ignore[arg-type]
            assert gwt == 2 and g in (1, 2)
            sub = {h: x for h, _, x in pb_fields(v)}  # type: ignore[arg-type]
            if g == 1:
                labels.append((sub[1].decode(), sub[2].decode()))  # type: ignore[union-attr]
            else:
                t = sub[2]
                assert isinstance(t, int)
                if t >= 1 << 63:
                    t -= 1 << 64
                samples.append((t, struct.unpack("<d", sub[1])[0]))  # type: ignore[arg-type]
        series.append((labels, samples))
    return series


def test_encoding_decodes_independently() -> None:
    key_a = ("gpufleet_gpu_temperature_celsius", (("gpu", "0"), ("model", 'H100 "SXM" ünï'), ("node", "n1")))
    key_b = ("Zeta", (("A", "x"), ("a", "")))
    raw = encode_write_request([
        (key_a, [(1700000001500, 71.25), (1700000000000, 70.0)]),  # out of order on purpose
        (key_b, [(-5, math.inf), (2**62, -0.0)]),
    ])
    got = decode_write_request(snappy_decode(snappy_block(raw)))
    assert got[0] == ([("__name__", "gpufleet_gpu_temperature_celsius"), ("gpu", "0"),
                       ("model", 'H100 "SXM" ünï'), ("node", "n1")],
                      [(1700000000000, 70.0), (1700000001500, 71.25)])
    # Sorted by byte order, as the spec says: uppercase sorts before "__name__".
    assert got[1][0] == [("A", "x"), ("__name__", "Zeta"), ("a", "")]
    assert got[1][1][0] == (-5, math.inf)
    assert got[1][1][1][0] == 2**62 and math.copysign(1, got[1][1][1][1]) == -1


def test_writer_batch_encoding_keeps_every_series_in_order() -> None:
    """The sender's fast path (one TimeSeries per sample, cached prefixes) decodes to the same
    series as the grouped encoder; a series in two pushes of a batch keeps its samples in order."""
    w = RemoteWriter("http://127.0.0.1:1/api/v1/write")
    key_a = ("gpufleet_gpu_temperature_celsius", (("gpu", "0"), ("model", 'H100 "SXM" ünï'), ("node", "n1")))
    key_b = ("Zeta", (("A", "x"), ("a", "")))
    batch = [([key_a, key_b], [70.0, -0.0], 1700000000000), ([key_a], [71.25], 1700000001500)]
    for _ in range(2):  # the second time from the cached prefixes
        got = decode_write_request(snappy_decode(w._encode(batch)))
        assert got == [([("__name__", "gpufleet_gpu_temperature_celsius"), ("gpu", "0"),
                         ("model", 'H100 "SXM" ünï'), ("node", "n1")], [(1700000000000, 70.0)]),
                       ([("A", "x"), ("__name__", "Zeta"), ("a", "")], [(1700000000000, -0.0)]),
                       ([("__name__", "gpufleet_gpu_temperature_celsius"), ("gpu", "0"),
                         ("model", 'H100 "SXM" ünï'), ("node", "n1")], [(1700000001500, 71.25)])]
    one_each = [([key_a, key_b], [70.0, 1.5], 1700000000000)]
    assert snappy_decode(w._encode(one_each)) == encode_write_request(
        [(key_a, [(1700000000000, 70.0)]), (key_b, [(1700000000000, 1.5)])])


def test_snappy_roundtrip_on_repetitive_data() -> None:
    data = b"gpufleet_gpu_utilization_ratio" * 500 + bytes(range(256)) * 3
    packed = snappy_block(data)
    assert len(packed) < len(data) // 5  # it really compresses, so copies were exercised
    assert snappy_decode(packed) == data


# ------------------------------------------------ a tiny receiver for status-code behaviour


class Receiver:
    def __init__(self, status: int) -> None:
        self.status = status
        self.requests: list[tuple[dict[str, str], bytes]] = []


@contextlib.contextmanager
def receiver(status: int, port: int = 0) -> Iterator[tuple[Receiver, str]]:
    rec = Receiver(status)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            rec.requests.append(({k.lower(): v for k, v in self.headers.items()}, body))
            msg = b"bad labels" if rec.status >= 400 else b""
            self.send_response(rec.status)
            self.send_header("Content-Length", str(len(msg)))
            self.end_headers()
            self.wfile.write(msg)

        def log_message(self, *args: object) -> None:
            pass

    srv = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        yield rec, f"http://127.0.0.1:{srv.server_address[1]}"
    finally:
        srv.shutdown()
        srv.server_close()


def test_4xx_is_dropped_not_retried_and_secrets_stay_out_of_logs(caplog: pytest.LogCaptureFixture) -> None:
    keys, values = snapshot_series(sample_snapshot())
    with receiver(400) as (rec, url):
        secret_url = url.replace("http://", "http://hub:s3cr3tpw@") + "/api/v1/write?api_key=k3y"
        w = RemoteWriter(secret_url, headers={"X-Scope-OrgID": "lab"}, min_backoff=0.01)
        w.start()
        with caplog.at_level(logging.DEBUG, logger="gpufleet"):
            w.submit(keys, values, 1700000000.0)
            assert w.flush(5)
            w.stop()
    st = w.stats()
    assert st.samples_failed == len(keys) and st.samples_sent == 0 and st.samples_dropped == 0
    assert st.requests_total == 1 and st.retries_total == 0
    assert "400" in st.last_error and "bad labels" in st.last_error
    hdrs, body = rec.requests[0]
    assert hdrs["content-encoding"] == "snappy"
    assert hdrs["content-type"] == "application/x-protobuf"
    assert hdrs["x-prometheus-remote-write-version"] == "0.1.0"
    assert hdrs["x-scope-orgid"] == "lab"
    assert hdrs["authorization"].startswith("Basic ")  # credentials moved from the URL into auth
    assert len(decode_write_request(snappy_decode(body))) == len(keys)
    assert any(r.levelno == logging.ERROR and "400" in r.getMessage() for r in caplog.records)
    logged = caplog.text + st.last_error + w.safe_url
    assert "s3cr3tpw" not in logged and "k3y" not in logged
    assert "s3cr3tpw" not in w.url  # the request URL itself carries no password


def test_bad_urls_raise_value_error_naming_them_without_secrets() -> None:
    for bad in ("ftp://x/api", "not a url", "http://:80/x", "http://h:99999/x", "http://u:topsecret@h:abc/"):
        with pytest.raises(ValueError, match="remote write URL") as e:
            RemoteWriter(bad)
        assert "topsecret" not in str(e.value)
    assert redact_url("https://u:pw@h:9/p?token=abc&x=1") == "https://u:***@h:9/p?token=***&x=***"


def test_queue_is_bounded_drops_oldest_and_submit_never_blocks() -> None:
    key = ("gpufleet_test_value", (("node", "n1"),))
    with receiver(204) as (rec, url):
        w = RemoteWriter(url + "/w", max_queue_samples=10, max_batch_samples=4)
        t0 = time.monotonic()
        for i in range(25):  # not started yet: everything piles up in the queue
            w.submit([key], [float(i)], 1700000000.0 + i)
        assert time.monotonic() - t0 < 0.5
        st = w.stats()
        assert st.queue_samples == 10 and st.samples_dropped == 15
        w.start()
        assert w.flush(5)
        w.stop()
    assert w.stats().samples_sent == 10
    got = [s for _, body in rec.requests for _, ss in decode_write_request(snappy_decode(body)) for s in ss]
    assert [v for _, v in got] == [float(i) for i in range(15, 25)]  # the newest ten
    assert all(len(decode_write_request(snappy_decode(b))[0][1]) <= 4 for _, b in rec.requests)


def test_receiver_down_then_up_delivers_after_retry(tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    key = ("gpufleet_test_value", (("gpu", "0"), ("node", "n1")))
    w = RemoteWriter(url + "/api/v1/write", min_backoff=0.05, max_backoff=0.2, timeout=2)
    w.start()
    try:
        for i in range(5):
            w.submit([key], [i * 1.5], 1700000000.0 + 10 * i)
        eventually(lambda: w.stats().retries_total >= 2)
        assert w.stats().samples_sent == 0 and w.stats().last_error
        cmd = [require("victoria-metrics"), f"-storageDataPath={tmp_path / 'vm'}", f"-httpListenAddr=127.0.0.1:{port}"
               , "-retentionPeriod=100y"]
        with running(cmd, tmp_path / "vm.log", f"{url}/health", timeout=60):
            assert w.flush(10)
            st = w.stats()
            assert st.samples_sent == 5 and st.samples_failed == 0 and st.samples_dropped == 0
            httpx.get(f"{url}/internal/force_flush", timeout=10).raise_for_status()
            r = httpx.get(f"{url}/api/v1/export", params={"match[]": "gpufleet_test_value"}, timeout=10).json()
            assert r["values"] == [0, 1.5, 3, 4.5, 6]
            assert r["timestamps"] == [1700000000000 + 10000 * i for i in range(5)]
    finally:
        w.stop(timeout=1)


def test_stop_gives_up_on_a_dead_receiver_within_its_timeout() -> None:
    w = RemoteWriter(f"http://127.0.0.1:{free_port()}/w", min_backoff=0.05, max_backoff=0.1, timeout=1)
    w.start()
    w.submit([("m", (("node", "n"),))] * 3, [1.0, 2.0, 3.0], 1700000000.0)
    t0 = time.monotonic()
    w.stop(timeout=0.3)
    assert time.monotonic() - t0 < 3
    st = w.stats()
    assert st.samples_dropped == 3 and st.samples_sent == 0 and st.queue_samples == 0
    w.submit([("m", ())], [1.0], 1.0)  # after stop: counted, not queued
    assert w.stats().samples_dropped == 4


def _snapshot_at(i: int):  # type: ignore[no-untyped-def]
    snap = sample_snapshot()
    snap.timestamp = 1700000000.0 + 30 * i
    snap.gpus[0].values["temperature_celsius"] = 60.0 + i
    snap.gpus[0].values["power_watts"] = 500.125 + 3 * i
    snap.gpus[1].values["utilization_ratio"] = i / 10
    snap.values["load1"] = 0.25 * i
    return snap


def test_victoriametrics_receives_snapshots_and_returns_same_values(tmp_path: Path) -> None:
    sent: dict[tuple[tuple[str, str], ...], dict[int, float]] = {}
    with victoria_metrics(tmp_path) as (_, url):
        w = RemoteWriter(url + "/api/v1/write", max_batch_samples=50)  # several requests per snapshot
        w.start()
        for i in range(6):
            snap = _snapshot_at(i)
            keys, values = snapshot_series(snap)
            w.submit(keys, values, snap.timestamp)
            for (name, labels), v in zip(keys, values):
                sent.setdefault((("__name__", name), *labels), {})[int(snap.timestamp * 1000)] = v
        assert w.flush(10)
        w.stop()
        st = w.stats()
        assert st.samples_sent == sum(len(v) for v in sent.values()) and st.samples_failed == 0
        assert st.requests_total >= math.ceil(st.samples_sent / 50)  # batches were split
        httpx.get(f"{url}/internal/force_flush", timeout=10).raise_for_status()

        got: dict[tuple[tuple[str, str], ...], dict[int, float]] = {}
        for name in sorted({dict(k)["__name__"] for k in sent}):
            r = httpx.get(f"{url}/api/v1/query_range", timeout=10, params={
                "query": f'{{__name__="{name}"}}', "start": 1700000000, "end": 1700000150, "step": "30s",
                "nocache": "1"}).json()
            assert r["status"] == "success", r
            for item in r["data"]["result"]:
                labels = tuple(sorted(item["metric"].items()))
                got[labels] = {int(t * 1000): float(v) for t, v in item["values"]}
    assert set(got) == set(sent)
    for labels, points in sent.items():
        assert set(got[labels]) == set(points), labels
        for t, v in points.items():
            assert got[labels][t] == pytest.approx(v, rel=1e-12), (labels, t)
    temp = next(k for k in sent if ("__name__", "gpufleet_gpu_temperature_celsius") in k and ("gpu", "0") in k)
    assert list(got[temp].values()) == [60.0, 61.0, 62.0, 63.0, 64.0, 65.0]
