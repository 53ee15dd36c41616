"""job_totals: per-job running totals kept by settle, and added in place to an earlier usage.db.

A report by job reads a job wholly inside its period from job_totals (report.py), so the table
must equal its holds' sums after settling in several steps, and a file from before it (today's
earlier layout: no job_totals, no holds_settled) must be brought up to date, not set aside.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from gpufleet.hub.service import Hub, HubOptions
from gpufleet.hub.usage.db import FILE, open_db
from gpufleet.hub.usage.extension import UsageExtension
from gpufleet.hub.usage.report import usage
from simfleet import HOUR, known_fleet

SUMS = "SELECT job, MIN(user), MIN(start), MAX(settled), SUM(held), SUM(idle), SUM(busy), SUM(energy) FROM holds " \
       "WHERE job != '' GROUP BY job ORDER BY job"
TOTALS = "SELECT job, user, start, settled, held, idle, busy, energy FROM job_totals ORDER BY job"


def near(a: list[tuple], b: list[tuple]) -> None:
    assert [r[:2] for r in a] == [r[:2] for r in b]
    for x, y in zip(a, b):
        assert all(abs(p - q) < 1e-6 * max(1.0, abs(q)) for p, q in zip(x[2:], y[2:])), (x, y)


def test_settle_in_steps_keeps_job_totals_equal_to_holds_and_an_old_file_is_migrated(tmp_path: Path) -> None:
    fleet = known_fleet()
    hub = Hub(HubOptions(data=tmp_path / "data"))
    ext = UsageExtension(hub)
    snaps = fleet.snapshots()
    half = {node: len(s) // 2 for node, s in snaps.items()}
    for part in (0, 1):  # settled twice: the second step updates the rows the first wrote
        for node, s in snaps.items():
            lo, hi = (0, half[node]) if part == 0 else (half[node], len(s))
            for i in range(lo, hi, 60):
                hub.ingest(s[i:min(i + 60, hi)])
        ext.settle()
    db = ext.db
    totals = db.execute(TOTALS).fetchall()
    assert totals, "the known fleet has jobs"
    near(totals, db.execute(SUMS).fetchall())
    nodes = {job: set(n.split(",")) for job, n in db.execute("SELECT job, nodes FROM job_totals")}
    want = {}
    for job, node in db.execute("SELECT DISTINCT job, node FROM holds WHERE job != ''"):
        want.setdefault(job, set()).add(node)
    assert nodes == want
    until = fleet.t0 + fleet.length
    t0 = fleet.t0
    periods = [(t0 + 17 * 60, t0 + 7 * HOUR + 180), (t0, until), (t0 + 95 * 60, t0 + 185 * 60)]
    before = [usage(db, a, b, "job", now=until + 86400) for a, b in periods]
    ext.close()
    hub.close()

    # The same file as today's earlier layout left it: no job_totals, no holds_settled, no holds.mig.
    old = sqlite3.connect(tmp_path / "data" / FILE)
    old.executescript("DROP TABLE job_totals; DROP INDEX holds_settled; ALTER TABLE holds DROP COLUMN mig;")
    old.close()
    db = open_db(tmp_path / "data")
    assert db.execute("SELECT COUNT(*), MAX(mig) FROM holds").fetchone() == (4, "")  # whole GPUs, as before
    assert [p.name for p in (tmp_path / "data").iterdir() if ".corrupt" in p.name or "aside" in p.name] == []
    near(db.execute(TOTALS).fetchall(), db.execute(SUMS).fetchall())
    assert [usage(db, a, b, "job", now=until + 86400) for a, b in periods] == before
    db.close()
