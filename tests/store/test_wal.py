from __future__ import annotations

import os
import random

from gpufleet.store.wal import RecordLog, read_records


def _payloads(n: int) -> list[bytes]:
    rng = random.Random(5)
    return [bytes(rng.randrange(256) for _ in range(rng.randrange(1, 300))) for _ in range(n)]


def test_torn_tail_at_every_kind_of_offset(tmp_path) -> None:
    path = str(tmp_path / "w.log")
    payloads = _payloads(40)
    log = RecordLog(path)
    ends = []
    for p in payloads:
        log.append(p)
        ends.append(log.size)
    log.close()
    full = open(path, "rb").read()
    rng = random.Random(11)
    cuts = sorted({rng.randrange(0, len(full) + 1) for _ in range(60)} | {0, len(full), ends[0] - 1, ends[-1] - 1})
    for cut in cuts:
        with open(path, "wb") as fh:
            fh.write(full[:cut])
        intact = sum(1 for e in ends if e <= cut)
        got = RecordLog(path)
        assert got.recovered == payloads[:intact]
        # the torn tail is cut off, so new appends are readable after the intact prefix
        got.append(b"after")
        got.close()
        assert os.path.getsize(path) == (ends[intact - 1] if intact else 0) + 8 + len(b"after")
        again, _ = read_records(path)
        assert again == payloads[:intact] + [b"after"]


def test_corrupt_record_stops_replay(tmp_path) -> None:
    path = str(tmp_path / "w.log")
    log = RecordLog(path)
    for p in (b"one", b"two", b"three"):
        log.append(p)
    log.close()
    data = bytearray(open(path, "rb").read())
    data[8 + 3 + 8] ^= 0xFF  # flip a byte inside "two"
    open(path, "wb").write(bytes(data))
    recs, end = read_records(path)
    assert recs == [b"one"]
    assert end == 8 + 3


def test_missing_file_is_empty(tmp_path) -> None:
    assert read_records(str(tmp_path / "nope.log")) == ([], 0)
    log = RecordLog(str(tmp_path / "new.log"))
    assert log.recovered == [] and os.path.getsize(log.path) == 0
    log.close()
