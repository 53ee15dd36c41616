"""Record logs (WAL, series index): torn tails cut silently, damage skipped with resync, versions."""
from __future__ import annotations

import os
import random
import struct
import zlib

import pytest

from gpufleet.store import formats
from gpufleet.store.recordlog import RecordLog, scan_log

MAGIC = b"GFWL"


def _payloads(n: int) -> list[bytes]:
    rng = random.Random(5)
    return [bytes(rng.randrange(256) for _ in range(rng.randrange(1, 300))) for _ in range(n)]


def _write(path: str, payloads: list[bytes]) -> list[int]:
    log = RecordLog(path, MAGIC)
    ends = []
    for p in payloads:
        log.append(p)
        ends.append(os.lseek(log._fd, 0, os.SEEK_CUR))
    log.close()
    return ends


def test_torn_tail_at_every_kind_of_offset(tmp_path) -> None:
    path = str(tmp_path / "w.log")
    payloads = _payloads(40)
    ends = _write(path, payloads)
    full = open(path, "rb").read()
    head = len(formats.header(MAGIC))
    rng = random.Random(11)
    cuts = sorted({rng.randrange(head, len(full) + 1) for _ in range(60)} | {head, len(full), ends[0] - 1, ends[-1] - 1})
    for cut in cuts:
        with open(path, "wb") as fh:
            fh.write(full[:cut])
        intact = sum(1 for e in ends if e <= cut)
        said: list[str] = []
        got = RecordLog(path, MAGIC, on_damage=said.append)
        assert got.recovered == payloads[:intact] and not said  # a torn tail is no damage
        got.append(b"after")  # the torn tail is cut off, so new appends follow the intact prefix
        got.close()
        assert scan_log(path, MAGIC).records == payloads[:intact] + [b"after"]
        assert not os.path.exists(path + ".corrupt")


@pytest.mark.parametrize("where", [0.1, 0.25, 0.5, 0.9])
def test_flipped_bytes_cost_only_the_records_they_hit(tmp_path, where) -> None:
    path = str(tmp_path / "w.log")
    payloads = _payloads(200)
    ends = _write(path, payloads)
    data = bytearray(open(path, "rb").read())
    at = int(len(data) * where)
    for i in range(at, at + 64):
        data[i] ^= 0xA5
    open(path, "wb").write(bytes(data))
    hit = [i for i, e in enumerate(ends) if e > at and (ends[i - 1] if i else 0) < at + 64]
    said: list[str] = []
    got = RecordLog(path, MAGIC, on_damage=said.append, what="WAL")
    assert got.recovered == [p for i, p in enumerate(payloads) if i not in hit]
    assert len(said) == 1 and "w.log.corrupt" in said[0]
    # records of random sizes: the count is exact, or an estimate that says so
    assert f" {len(hit)} damaged record(s) lost" in said[0] or "about " in said[0]
    assert open(path + ".corrupt", "rb").read() == bytes(data)  # kept for inspection
    got.append(b"after")
    got.close()
    assert scan_log(path, MAGIC).records[-1] == b"after" and not scan_log(path, MAGIC).damaged


def test_version_1_logs_are_read_resynced_and_upgraded(tmp_path) -> None:
    path = str(tmp_path / "w.log")
    payloads = _payloads(30)
    raw = b"".join(struct.pack("<II", len(p), zlib.crc32(p)) + p for p in payloads)
    bad = bytearray(raw)
    second = 8 + len(payloads[0])
    bad[second + 9] ^= 0xFF  # inside the second record's payload
    open(path, "wb").write(bytes(bad))
    scan = scan_log(path, MAGIC)
    assert scan.version == 1 and scan.records == payloads[:1] + payloads[2:]
    said: list[str] = []
    log = RecordLog(path, MAGIC, on_damage=said.append)
    log.close()
    assert len(said) == 1
    again = scan_log(path, MAGIC)
    assert again.version == formats.FORMAT and again.has_header and again.records == payloads[:1] + payloads[2:]


def test_a_newer_format_is_refused_naming_the_release(tmp_path) -> None:
    path = str(tmp_path / "w.log")
    w = b"gpufleet 9.0.0"
    head = struct.pack("<4sHH", MAGIC, formats.FORMAT + 1, len(w)) + w
    open(path, "wb").write(head + struct.pack("<I", zlib.crc32(head)))
    with pytest.raises(formats.StoreFormatError, match=rf"version {formats.FORMAT + 1} \(written by gpufleet 9.0.0\).*run gpufleet 9.0.0 or newer"):
        RecordLog(path, MAGIC)
    assert os.path.exists(path) and not os.path.exists(path + ".corrupt")  # refused, not set aside


def test_a_damaged_header_keeps_the_records(tmp_path) -> None:
    path = str(tmp_path / "w.log")
    payloads = _payloads(10)
    _write(path, payloads)
    data = bytearray(open(path, "rb").read())
    data[5] ^= 0x01  # the version field: the header's CRC catches it
    open(path, "wb").write(bytes(data))
    said: list[str] = []
    got = RecordLog(path, MAGIC, on_damage=said.append)
    assert got.recovered == payloads and len(said) == 1 and "the header" in said[0]
    got.close()


def test_missing_file_is_empty_and_new_files_are_private(tmp_path) -> None:
    assert scan_log(str(tmp_path / "nope.log"), MAGIC).records == []
    old = os.umask(0)
    try:
        log = RecordLog(str(tmp_path / "new.log"), MAGIC)
    finally:
        os.umask(old)
    assert log.recovered == [] and log.size == 0
    assert os.stat(log.path).st_mode & 0o777 == 0o600
    log.close()
