"""`gpufleet store check|repair --data DIR` as processes: exit codes and what they name."""
from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

from gpufleet.store import TimeSeriesStore

SRC = str(Path(__file__).resolve().parents[2] / "src")
T0 = 1_700_006_400.0
KEYS = [("util", (("gpu", str(g)),)) for g in range(4)]


def gpufleet(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": SRC}
    return subprocess.run([sys.executable, "-m", "gpufleet", *args], capture_output=True, text=True, env=env,
                          timeout=60)


def _hub_data(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    s = TimeSeriesStore(str(data / "tsdb"))
    for i in range(120):
        if i == 60:
            s.maintain(T0 + 10.0 * i, full=True)
        for node in ("a", "b"):
            s.append(node, T0 + 10.0 * i, KEYS, [float(i % 7)] * 4)
    s.close()
    con = sqlite3.connect(data / "hub.db")
    con.execute("create table t (x)")
    con.commit()
    con.close()
    return data


def test_check_clean_damaged_repair_then_clean(tmp_path) -> None:
    data = _hub_data(tmp_path)
    r = gpufleet("store", "check", "--data", str(data))
    assert r.returncode == 0 and "no damage" in r.stdout, r.stderr
    wal = next((data / "tsdb" / "wal").glob("*.log"))
    blk = next((data / "tsdb" / "blocks" / "r0").glob("*.blk"))
    before = {p: p.read_bytes() for p in (wal, blk)}
    for p in (wal, blk):
        b = bytearray(p.read_bytes())
        b[len(b) // 3] ^= 0xFF
        p.write_bytes(bytes(b))
    damaged = {p: p.read_bytes() for p in (wal, blk)}
    r = gpufleet("store", "check", "--data", str(data))
    assert r.returncode == 1, r.stdout + r.stderr
    named = [line for line in r.stdout.splitlines() if line.startswith("damaged: ")]
    assert len(named) == 2 and any(str(wal) in x for x in named) and any(str(blk) in x for x in named)
    assert {p: p.read_bytes() for p in (wal, blk)} == damaged and damaged != before  # check changed nothing
    assert not list(data.rglob("*.corrupt"))
    r = gpufleet("store", "repair", "--data", str(data))
    assert r.returncode == 0 and r.stdout.count("repaired: ") == 2 and not r.stderr, r.stdout + r.stderr
    assert {p.name for p in data.rglob("*.corrupt")} == {wal.name + ".corrupt", blk.name + ".corrupt"}
    r = gpufleet("store", "check", "--data", str(data))
    assert r.returncode == 0 and "no damage" in r.stdout and r.stdout.count("note: ") == 2
    s = TimeSeriesStore(str(data / "tsdb"))  # what is left is served
    got = s.query_range("util", [], T0, T0 + 7200, 1.0, "last")
    assert {r.labels["node"] for r in got} == {"a", "b"}
    s.close()


def test_check_names_a_damaged_hub_db(tmp_path) -> None:
    data = _hub_data(tmp_path)
    db = data / "hub.db"
    b = bytearray(db.read_bytes())
    b[0:16] = b"\x00" * 16  # the SQLite header
    db.write_bytes(bytes(b))
    r = gpufleet("store", "check", "--data", str(data))
    assert r.returncode == 1 and f"damaged: {db}" in r.stdout


def test_unusable_arguments_exit_2_with_one_line(tmp_path) -> None:
    for args in (["--data", str(tmp_path / "nope")], ["--data", str(tmp_path)], []):
        for cmd in ("check", "repair"):
            r = gpufleet("store", cmd, *args)
            assert r.returncode == 2, (cmd, args, r.stdout, r.stderr)
            assert "Traceback" not in r.stderr and r.stderr.strip()
    r = gpufleet("store", "check", "--data", str(tmp_path / "nope"))
    assert r.stderr.strip().count("\n") == 0 and "no hub data directory" in r.stderr


def test_repair_refuses_a_store_in_use(tmp_path) -> None:
    data = _hub_data(tmp_path)
    s = TimeSeriesStore(str(data / "tsdb"))
    try:
        r = gpufleet("store", "repair", "--data", str(data))
    finally:
        s.close()
    assert r.returncode == 2 and "open in another process" in r.stderr and "Traceback" not in r.stderr


def test_a_second_hub_on_a_store_in_use_exits_2_with_one_line(tmp_path) -> None:
    data = _hub_data(tmp_path)
    s = TimeSeriesStore(str(data / "tsdb"))  # as a running hub holds it
    try:
        r = gpufleet("hub", "--data", str(data), "--listen", "127.0.0.1:0")
    finally:
        s.close()
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert "is open in another process" in r.stderr and r.stderr.strip().count("\n") == 0
