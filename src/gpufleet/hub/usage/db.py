"""usage.db: the occupancy record (holds), its settled figures and the events, in SQLite.

- holds: one row per (node, GPU, holder) interval [start, end); `end` is NULL while held.
  `settled` is how far its figures (below) are computed, from the store's samples; its
  held / idle / busy / energy columns are the sums of its rows below (a job's totals).
  `mig` lists the MIG slices held ("GI:EQ,..."; '' for a whole GPU), whose own activity
  settles its busy and idle hours; added in place to a file from before it.
- usage_hour / usage_day: per hold and hour / UTC day, GPU-seconds held, idle-held and busy
  (utilisation-weighted), and joules; every figure already multiplied by the hold's
  GPU-equivalents. Keyed (t, hold) so a period is one range scan, with the hold's user,
  group, node and job copied in so a report groups without a join (3x faster, see
  benchmarks/bench_report.py). Hour rows are kept
  HOUR_ROWS_KEEP_S (exact edges for recent periods); day rows as long as holds.
- events: GPU taken / released, job started / ended.
- job_totals: one row per job (not ''): its user, nodes ("a,b"), first start, last settled
  mark and lifetime sums over its holds, updated in the settle transaction. A report by job
  reads a job wholly inside its period as one row (report.py). Added in place to a file of
  this layout from before it, filled from holds in the same transaction (JOB_TOTALS_FILL).
- holds_settled: covers a report's read of holds wholly inside its period (their running
  totals are their figures there, report.py); an index, so a file of this layout from before
  it is brought up to date in place when opened (CREATE INDEX IF NOT EXISTS).

Written on change (holds, events) and once per settle step in one transaction (figures and
`settled` together), so a crash loses nothing it acknowledged and never counts twice.
"""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

from ..db import connect, set_aside

log = logging.getLogger("gpufleet.hub.usage")

FILE = "usage.db"
HOUR = 3600
DAY = 86400
HOUR_ROWS_KEEP_S = 35 * DAY

SCHEMA = """
CREATE TABLE IF NOT EXISTS holds(
  id INTEGER PRIMARY KEY, node TEXT NOT NULL, gpu INTEGER NOT NULL, uuid TEXT NOT NULL DEFAULT '',
  user TEXT NOT NULL, grp TEXT NOT NULL DEFAULT '', job TEXT NOT NULL DEFAULT '',
  slurm_job TEXT NOT NULL DEFAULT '', pod TEXT NOT NULL DEFAULT '', container TEXT NOT NULL DEFAULT '',
  eq REAL NOT NULL DEFAULT 1, start REAL NOT NULL, end REAL, settled REAL NOT NULL,
  held REAL NOT NULL DEFAULT 0, idle REAL NOT NULL DEFAULT 0, busy REAL NOT NULL DEFAULT 0,
  energy REAL NOT NULL DEFAULT 0, mig TEXT NOT NULL DEFAULT '');
CREATE INDEX IF NOT EXISTS holds_open ON holds(node) WHERE end IS NULL;
CREATE INDEX IF NOT EXISTS holds_job ON holds(job, start);
CREATE INDEX IF NOT EXISTS holds_unsettled ON holds(node, settled) WHERE end IS NULL OR settled < end;
CREATE INDEX IF NOT EXISTS holds_end ON holds(end);
CREATE INDEX IF NOT EXISTS holds_user ON holds(user, start);
CREATE INDEX IF NOT EXISTS holds_settled ON holds(settled, start, job, user, grp, node, held, idle, busy, energy);
CREATE TABLE IF NOT EXISTS usage_hour(
  t INTEGER NOT NULL, hold INTEGER NOT NULL, user TEXT NOT NULL, grp TEXT NOT NULL, node TEXT NOT NULL,
  job TEXT NOT NULL, held REAL NOT NULL, idle REAL NOT NULL, busy REAL NOT NULL,
  energy REAL NOT NULL, PRIMARY KEY(t, hold)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS usage_day(
  t INTEGER NOT NULL, hold INTEGER NOT NULL, user TEXT NOT NULL, grp TEXT NOT NULL, node TEXT NOT NULL,
  job TEXT NOT NULL, held REAL NOT NULL, idle REAL NOT NULL, busy REAL NOT NULL,
  energy REAL NOT NULL, PRIMARY KEY(t, hold)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS events(
  t REAL NOT NULL, kind TEXT NOT NULL, node TEXT NOT NULL, gpu INTEGER, user TEXT NOT NULL DEFAULT '',
  job TEXT NOT NULL DEFAULT '');
CREATE INDEX IF NOT EXISTS events_t ON events(t);
"""

# Created and filled in one transaction (open_db): a crash between the two would leave an
# empty table that reports trust.
JOB_TOTALS = (
    "CREATE TABLE job_totals(job TEXT PRIMARY KEY, user TEXT NOT NULL, nodes TEXT NOT NULL, start REAL NOT NULL, "
    "settled REAL NOT NULL, held REAL NOT NULL, idle REAL NOT NULL, busy REAL NOT NULL, energy REAL NOT NULL) "
    "WITHOUT ROWID",
    "CREATE INDEX job_totals_settled ON job_totals(settled, start, job, user, nodes, held, idle, busy, energy)",
)
JOB_TOTALS_FILL = ("INSERT INTO job_totals SELECT job, MIN(user), group_concat(DISTINCT node), MIN(start), "
                   "MAX(settled), "
                   "SUM(held), SUM(idle), SUM(busy), SUM(energy) FROM holds WHERE job != '' GROUP BY job")

EVENT_KINDS = ("gpu_taken", "gpu_released", "job_started", "job_ended")
LAYOUT = 2  # PRAGMA user_version; 0 with tables is the first (unreleased) layout of 2026-11-30
LOST = "the GPU occupancy record and accounting figures (reports restart from now; the store's metrics are intact)"


def open_db(data: Path) -> sqlite3.Connection:
    db = connect(data / FILE, "", lost=LOST)
    version = db.execute("PRAGMA user_version").fetchone()[0]
    tables = db.execute("SELECT COUNT(*) FROM sqlite_master WHERE type = 'table'").fetchone()[0]
    if tables and version != LAYOUT:
        db.close()
        aside = set_aside(data / FILE)
        log.error("%s has another layout (version %s, this hub writes %s): moved it aside as %s and started a "
                  "fresh one; lost: %s", data / FILE, version, LAYOUT, aside.name, LOST)
        db = connect(data / FILE, "", lost=LOST)
    db.executescript(SCHEMA)
    add_mig_column(db)
    add_job_totals(db)
    db.execute(f"PRAGMA user_version = {LAYOUT}")
    return db


def add_mig_column(db: sqlite3.Connection) -> None:
    """holds.mig (the MIG slices a hold covers) for a file from before it: its holds are whole
    GPUs or slices read as before (the column's default, '')."""
    if not any(r[1] == "mig" for r in db.execute("PRAGMA table_info(holds)")):
        try:
            db.execute("ALTER TABLE holds ADD COLUMN mig TEXT NOT NULL DEFAULT ''")
        except sqlite3.OperationalError as e:
            if "duplicate column" not in str(e):  # another process added it meanwhile
                raise


def add_job_totals(db: sqlite3.Connection) -> None:
    """Create job_totals from the holds when the file has none (new, or from earlier today)."""
    if db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'job_totals'").fetchone():
        return
    db.execute("BEGIN IMMEDIATE")
    try:
        # Again under the write lock: another process may have added it meanwhile.
        if not db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'job_totals'").fetchone():
            for sql in (*JOB_TOTALS, JOB_TOTALS_FILL):
                db.execute(sql)
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise


def open_reader(data: Path) -> sqlite3.Connection:
    """A read-only connection to usage.db (open_db first: it creates and checks the file)."""
    db = sqlite3.connect(f"file:{data / FILE}?mode=ro", uri=True, check_same_thread=False, timeout=10)
    db.execute("PRAGMA query_only = 1")
    return db
