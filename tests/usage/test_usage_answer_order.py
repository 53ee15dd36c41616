"""The report's answer by job: in order (most GPU-hours first, then by key) with jobs across an
edge of the period put in their places among those SQLite sorted, the same when SQLite's
rounding is not trusted (sorted in Python), and the same rows as JSON and CSV as the dicts.

A usage.db written directly (holds, hour and day rows at a steady rate per hold, job_totals as
settle keeps it): many jobs of equal length, so equal GPU-hours are ordered by key.
"""

from __future__ import annotations

import csv
import io
import json
import sqlite3
from pathlib import Path

import msgspec
import pytest

from gpufleet.hub.usage import report as report_mod
from gpufleet.hub.usage.api import columns, json_body, to_csv
from gpufleet.hub.usage.db import DAY, HOUR, SCHEMA, add_job_totals
from gpufleet.hub.usage.report import Prices, report, usage

T0 = 100 * DAY  # a UTC midnight
UTIL, WATTS = 0.5, 300.0


def _rows(hid: int, node: str, user: str, job: str, a: float, b: float, width: int) -> list[tuple[object, ...]]:
    out: list[tuple[object, ...]] = []
    t = int(a // width * width)
    while t < b:
        held = min(b, t + width) - max(a, t)
        out.append((t, hid, user, "g", node, job, held, 0.0, held * UTIL, held * WATTS))
        t += width
    return out


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> sqlite3.Connection:
    path = tmp_path_factory.mktemp("answer") / "usage.db"
    db = sqlite3.connect(path, isolation_level=None)
    db.executescript(SCHEMA)
    holds, hours, days = [], [], []
    hid = 0
    for n in range(6):
        t = T0 + n * 600.0
        for k in range(14):  # two-hour jobs (equal GPU-hours), some across 1 h and 20.5 h
            hid += 1
            a, b = t, t + (2 if k % 3 else 3) * HOUR
            job = f"slurm:{(hid * 7919) % 1000:03d}"  # keys in no order of time
            node, user = f"n{n}", f"u{hid % 3}"
            holds.append((hid, node, 0, user, job, a, b, b, b - a, 0.0, (b - a) * UTIL, (b - a) * WATTS))
            hours += _rows(hid, node, user, job, a, b, HOUR)
            days += _rows(hid, node, user, job, a, b, DAY)
            t = b
    db.executemany("INSERT INTO holds(id, node, gpu, user, job, start, end, settled, held, idle, busy, energy) "
                   "VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", holds)
    for table, rows in (("usage_hour", hours), ("usage_day", days)):
        db.executemany(f"INSERT INTO {table} VALUES (?,?,?,?,?,?,?,?,?,?)", rows)
    add_job_totals(db)
    return db


PERIOD = (T0 + 1 * HOUR + 900, T0 + 20.5 * HOUR)
NOW = T0 + 3 * DAY


def _held_in(db: sqlite3.Connection, since: float, until: float) -> dict[str, float]:
    out: dict[str, float] = {}
    for job, a, b in db.execute("SELECT job, start, end FROM holds"):
        overlap = max(0.0, min(b, until) - max(a, since))
        if overlap > 0:
            out[job] = out.get(job, 0.0) + overlap
    return out


def test_by_job_in_order_with_edge_jobs_in_place(db: sqlite3.Connection, monkeypatch: pytest.MonkeyPatch) -> None:
    rows = usage(db, *PERIOD, "job", now=NOW)
    want = _held_in(db, *PERIOD)
    assert {r["job"] for r in rows} == set(want)
    for r in rows:
        assert abs(r["gpu_hours_in_use"] - want[r["job"]] / HOUR) < 1e-3, r
    keys = [(-r["gpu_hours_in_use"], r["job"]) for r in rows]
    assert keys == sorted(keys)
    inside = {j for j, a, b in db.execute("SELECT job, start, settled FROM job_totals") if a >= PERIOD[0] and b <= PERIOD[1]}
    edge = set(want) - inside
    assert edge and len(inside) > 10, "jobs across the period's ends and jobs inside, so both are merged"
    ties = [h for h, _ in keys]
    assert len(set(ties)) < len(ties), "equal GPU-hours, ordered by key"
    # SQLite's sort not trusted (its rounding disagrees with numpy's): the same answer, sorted here.
    monkeypatch.setattr(report_mod, "HOURS_E4", "0")
    assert usage(db, *PERIOD, "job", now=NOW) == rows


@pytest.mark.parametrize("by", ["job", "user", "node"])
def test_json_and_csv_from_columns_equal_the_rows(db: sqlite3.Connection, by: str) -> None:
    for prices in (Prices(), Prices(gpu_hour=2.0, kwh=0.25)):
        answer = report(db, *PERIOD, by, now=NOW, prices=prices)
        rows = answer.rows()
        assert rows == usage(db, *PERIOD, by, now=NOW, prices=prices) and rows
        body = json.loads(json_body(answer, *PERIOD, prices.gpu_hour, prices.kwh))
        assert body == {"since": PERIOD[0], "until": PERIOD[1], "by": by, "rows": rows,
                        "prices": {"gpu_hour": prices.gpu_hour, "kwh": prices.kwh}}
        assert msgspec.json.encode(answer.structs()) == msgspec.json.encode(rows)
        assert answer.csv() == to_csv(rows, columns(by, rows))
        assert next(csv.reader(io.StringIO(answer.csv()))) == columns(by, rows)


def test_csv_made_by_columns_is_csv_writers_text() -> None:
    # Keys, users and nodes are free text (container names, pod names): quoting must be csv's.
    from gpufleet.hub.usage.answer import Answer, node_list

    answer = Answer("job", keys=["a,b", 'q"x', "line\nb", "", "x\ry", "é", "plain"],
                    figures={"gpu_hours_in_use": [1.0, 2.5, 1e-5, 1e16, 0.0, -0.0, 3], "cost": [0.1] * 7},
                    users=["u,1", 'u"', "", "z", "w", "v", "u"], nodes=["n1", "n1,n2", 'n"3', "", "n\n", "n", "a,b,a"])

    def by_csv_writer() -> str:
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(answer.names())
        w.writerows(zip(answer.keys, *answer.figures.values(), answer.users,
                        [";".join(node_list(n)) for n in answer.nodes]))
        return buf.getvalue()

    assert answer.csv() == by_csv_writer()
    answer.keys[4] = "xy"  # no carriage return: made by columns, not by csv.writer
    assert answer.csv() == by_csv_writer()
    assert list(csv.reader(io.StringIO(answer.csv())))[2] == ['q"x', "2.5", "0.1", 'u"', "n1;n2"]


def test_numbers_in_csv_are_written_as_repr_writes_them() -> None:
    # msgspec's float writer makes most of them; repr() the ones it would spell differently.
    from gpufleet.hub.usage.answer import _number_texts

    values = [0.0, -0.0, 1e-4, 9.99e-5, -2e-5, 1e16, 9.999e15, float("nan"), float("inf"), -float("inf"),
              3, -7, 10**20, 5e-324, 0.1 + 0.2, 123456.789, 1 / 3, 2.5e-7]
    assert _number_texts(values) == [repr(v) for v in values]
    assert _number_texts([]) == []
    assert _number_texts([1.5, 10**400]) == ["1.5", repr(10**400)]
