"""The on-disk spool: order, bounds, reopen, torn and damaged entries."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest

from gpufleet.agent.spool import Spool
from gpufleet.errors import UserError


def doc(i: int, pad: int = 0) -> bytes:
    return json.dumps({"node": "n1", "timestamp": float(i), "pad": "x" * pad}).encode()


def stamps(entries) -> list[float]:
    return [json.loads(e.data)["timestamp"] for e in entries]


def files(spool: Spool) -> list[Path]:
    return sorted(spool.queue_dir.iterdir())


def test_fifo_order_and_ack(tmp_path: Path) -> None:
    s = Spool(tmp_path / "sp")
    for i in range(10):
        s.put(doc(i))
    batch = s.peek(4)
    assert stamps(batch) == [0, 1, 2, 3]
    s.ack([e.seq for e in batch])
    assert len(s) == 6
    assert stamps(s.peek(100)) == [4, 5, 6, 7, 8, 9]
    assert len(files(s)) == 6  # acked entries are gone from disk


def test_ack_out_of_order_and_unknown(tmp_path: Path) -> None:
    s = Spool(tmp_path / "sp")
    seqs = [s.put(doc(i)) for i in range(5)]
    s.ack([seqs[2], 999])
    assert stamps(s.peek(10)) == [0, 1, 3, 4]
    assert s.bytes == sum(f.stat().st_size for f in files(s))


def test_peek_respects_byte_budget_but_always_returns_one(tmp_path: Path) -> None:
    s = Spool(tmp_path / "sp")
    for i in range(5):
        s.put(doc(i, pad=1000))
    size = len(doc(0, pad=1000))
    assert len(s.peek(10, max_bytes=2 * size + 10)) == 2
    assert len(s.peek(10, max_bytes=1)) == 1


def test_bounded_by_count_drops_oldest(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    s = Spool(tmp_path / "sp", max_entries=5)
    with caplog.at_level(logging.WARNING, "gpufleet.agent.spool"):
        for i in range(12):
            s.put(doc(i))
    assert len(s) == 5
    assert s.dropped == 7
    assert stamps(s.peek(10)) == [7, 8, 9, 10, 11]
    assert len(files(s)) == 5
    assert sum("full" in r.message for r in caplog.records) == 1  # said once, not per drop


def test_bounded_by_bytes(tmp_path: Path) -> None:
    s = Spool(tmp_path / "sp", max_bytes=2000)
    for i in range(50):
        s.put(json.dumps({"timestamp": float(i), "noise": os.urandom(150).hex()}).encode())  # incompressible
    assert s.bytes <= 2000
    assert s.dropped > 0
    assert stamps(s.peek(1000))[-1] == 49  # the newest survives
    assert s.bytes == sum(f.stat().st_size for f in files(s))


def test_survives_reopen_and_continues_sequence(tmp_path: Path) -> None:
    s = Spool(tmp_path / "sp")
    for i in range(5):
        s.put(doc(i))
    s.ack([s.peek(1)[0].seq])
    s.close()
    s2 = Spool(tmp_path / "sp")
    assert len(s2) == 4
    s2.put(doc(5))
    assert stamps(s2.peek(10)) == [1, 2, 3, 4, 5]


def test_torn_temp_file_ignored_and_cleared(tmp_path: Path) -> None:
    s = Spool(tmp_path / "sp")
    s.put(doc(1))
    torn = s.queue_dir / ".tmp-2-4242"
    torn.write_bytes(b"\x1f\x8b half a member")
    s.close()
    s2 = Spool(tmp_path / "sp")
    assert len(s2) == 1
    assert not torn.exists()
    assert stamps(s2.peek(10)) == [1]


@pytest.mark.parametrize("damage", ["garbage", "truncated", "empty"])
def test_corrupt_entry_skipped_and_removed(tmp_path: Path, damage: str,
                                          caplog: pytest.LogCaptureFixture) -> None:
    s = Spool(tmp_path / "sp")
    for i in range(4):
        s.put(doc(i, pad=200))
    victim = files(s)[1]
    blob = victim.read_bytes()
    victim.write_bytes({"garbage": b"not gzip at all", "truncated": blob[: len(blob) // 2], "empty": b""}[damage])
    s.close()
    s = Spool(tmp_path / "sp")
    with caplog.at_level(logging.ERROR, "gpufleet.agent.spool"):
        assert stamps(s.peek(10)) == [0, 2, 3]
    assert s.corrupt == 1
    assert not victim.exists()
    assert len(s) == 3
    assert any("damaged" in r.message for r in caplog.records)


def test_second_user_of_a_spool_is_refused(tmp_path: Path) -> None:
    s = Spool(tmp_path / "sp")
    with pytest.raises(UserError, match="in use by another"):
        Spool(tmp_path / "sp")
    s.close()
    Spool(tmp_path / "sp").close()  # released on close


def test_new_directory_is_private(tmp_path: Path) -> None:
    s = Spool(tmp_path / "a" / "sp")
    assert (s.path.stat().st_mode & 0o777) == 0o700


def test_disk_write_failure_keeps_entry_in_memory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    s = Spool(tmp_path / "sp")
    s.put(doc(0))

    def refuse(seq: int, blob: bytes) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(s, "_write", refuse)
    s.put(doc(1))
    monkeypatch.undo()
    s.put(doc(2))
    assert s.write_errors == 1
    assert stamps(s.peek(10)) == [0, 1, 2]  # order kept across disk and memory entries
    s.ack([e.seq for e in s.peek(10)])
    assert len(s) == 0 and s.bytes == 0 and files(s) == []
