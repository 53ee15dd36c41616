"""A job's start and end events follow its holds across GPUs and nodes, and a write that fails
changes nothing the next snapshot would then miss (the record keeps per-job hold counts)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from gpufleet.hub.usage.db import open_db
from gpufleet.hub.usage.record import OccupancyRecord
from gpufleet.snapshot import Allocation, Gpu, NodeSnapshot

T = 1_700_000_000.0


def _snap(node: str, t: float, held: dict[int, str]) -> NodeSnapshot:
    """Two GPUs; `held` maps a GPU to the Slurm job on it (the others are free)."""
    allocs = [Allocation(gpu=g, state="in_use", gpu_equivalents=1.0, user="ana", slurm_job=held[g]) if g in held
              else Allocation(gpu=g, state="free", gpu_equivalents=1.0) for g in range(2)]
    return NodeSnapshot(node=node, timestamp=t, allocations=allocs,
                        gpus=[Gpu(index=g, uuid=f"{node}-{g}", model="H100", vendor="nvidia") for g in range(2)])


def _events(db: sqlite3.Connection) -> list[tuple[str, str, int, str]]:
    return db.execute("SELECT kind, node, gpu, job FROM events ORDER BY rowid").fetchall()


def test_a_job_starts_with_its_first_gpu_and_ends_with_its_last(tmp_path: Path) -> None:
    db = open_db(tmp_path)
    rec = OccupancyRecord(db, gap_s=60.0, clock=lambda: T)
    rec.observe(_snap("a", T, {0: "7"}))
    rec.observe(_snap("b", T, {0: "7", 1: "7"}))
    rec.observe(_snap("a", T + 5, {0: "7", 1: "8"}))
    rec.observe(_snap("b", T + 5, {}))
    rec.observe(_snap("a", T + 10, {1: "8"}))
    rec.observe(_snap("a", T + 15, {}))
    starts_ends = [(k, n, g, j) for k, n, g, j in _events(db) if k.startswith("job")]
    assert starts_ends == [("job_started", "a", 0, "slurm:7"), ("job_started", "a", 1, "slurm:8"),
                           ("job_ended", "a", 0, "slurm:7"), ("job_ended", "a", 1, "slurm:8")]
    assert rec.counts_24h(T + 15) == {"gpu_taken": 4, "gpu_released": 4, "job_started": 2, "job_ended": 2}


def test_a_failed_write_is_done_again_by_the_next_snapshot(tmp_path: Path) -> None:
    db = open_db(tmp_path)
    rec = OccupancyRecord(db, gap_s=60.0, clock=lambda: T)
    rec.observe(_snap("a", T, {0: "7"}))
    # the disk refuses writes for a while
    db.execute("CREATE TABLE refuse(x)")
    db.execute("INSERT INTO refuse VALUES (1)")
    db.execute("CREATE TRIGGER no_events BEFORE INSERT ON events WHEN (SELECT COUNT(*) FROM refuse) > 0 "
               "BEGIN SELECT RAISE(ABORT, 'disk refused the write'); END")
    rec.observe(_snap("a", T + 5, {}))  # job 7 ends, but nothing can be written
    assert rec.errors == 1
    assert [k for k, *_ in _events(db)] == ["gpu_taken", "job_started"]
    assert db.execute("SELECT COUNT(*) FROM holds WHERE end IS NULL").fetchone()[0] == 1
    db.execute("DELETE FROM refuse")
    rec.observe(_snap("a", T + 10, {}))  # the next snapshot writes what the failed one could not
    assert [k for k, *_ in _events(db)] == ["gpu_taken", "job_started", "gpu_released", "job_ended"]
    assert db.execute("SELECT end FROM holds").fetchall() == [(T + 10,)]
    rec.observe(_snap("a", T + 15, {1: "7"}))  # the same job again: a new start, counted from zero
    assert [k for k, *_ in _events(db)][-2:] == ["gpu_taken", "job_started"]
    assert rec.errors == 1
