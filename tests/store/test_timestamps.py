"""Absurd timestamps are refused, and poison written by an older release is set aside (issue 8)."""
from __future__ import annotations

import math
import time
from pathlib import Path

import pytest

from gpufleet.store import StoreOptions, TimeSeriesStore

KEYS = [("util", (("gpu", "0"),)), ("util", (("gpu", "1"),))]


@pytest.mark.parametrize("bad", [1e308, -5.0, math.nan, math.inf, "far future"])
def test_absurd_timestamps_are_refused_and_do_not_poison_the_node(tmp_path: Path, bad) -> None:
    s = TimeSeriesStore(str(tmp_path / "db"))
    now = time.time()
    ts = now + 86400.0 if bad == "far future" else bad
    with pytest.raises(ValueError, match="timestamp"):
        s.append("a", ts, KEYS, [1.0, 2.0])
    with pytest.raises(ValueError, match="timestamp"):
        s.append_rows("a", [now - 10, ts], KEYS, [[1.0, 2.0], [3.0, 4.0]])
    assert s.append("a", now, KEYS, [5.0, 6.0]) == 0  # the next real push is stored
    s.close()
    s = TimeSeriesStore(str(tmp_path / "db"))
    assert s.append("a", now + 1, KEYS, [5.0, 6.0]) == 0  # and across a restart
    assert s.stats()["dropped_duplicates"] == 0
    s.close()


def test_a_little_ahead_is_accepted(tmp_path: Path) -> None:
    s = TimeSeriesStore(str(tmp_path / "db"), StoreOptions(max_future_s=600))
    assert s.append("a", time.time() + 300, KEYS, [1.0, 2.0]) == 0
    with pytest.raises(ValueError, match="600 s ahead"):
        s.append("b", time.time() + 900, KEYS, [1.0, 2.0])
    s.close()


@pytest.mark.filterwarnings("ignore:invalid value encountered in cast")  # the old release overflowing
def test_poison_from_an_older_release_is_set_aside_at_open(tmp_path: Path, monkeypatch, caplog) -> None:
    path = tmp_path / "db"
    now = time.time()
    with monkeypatch.context() as m:  # the previous release: no timestamp check
        m.setattr(TimeSeriesStore, "_check_ts", lambda *a: None)
        s = TimeSeriesStore(str(path))
        for i in range(5):
            s.append("a", now - 100 + i, KEYS, [1.0, 2.0])
            s.append("b", now - 100 + i, KEYS, [1.0, 2.0])
        s.append("a", 1e308, KEYS, [9.0, 9.0])
        s.append("b", now + 86400, KEYS, [9.0, 9.0])
        s.maintain(now, full=True)  # poison in blocks (a negative file name for 1e308)
        s.append("c", 1e308, KEYS, [9.0, 9.0])  # and in the WAL
        s.close()
    assert any(p.name.startswith("-") for p in path.glob("blocks/*/*.blk"))
    caplog.set_level("ERROR", logger="gpufleet.store")
    s = TimeSeriesStore(str(path))
    assert not [p for p in path.glob("blocks/*/*.blk") if p.name.startswith("-")]
    assert list(path.glob("blocks/*/*.corrupt"))
    assert any("WAL" in r.message and "not replayed" in r.message for r in caplog.records)
    for node in ("a", "b", "c"):  # every node takes real pushes again
        assert s.append(node, now, KEYS, [3.0, 4.0]) == 0, node
    got = s.query_range("util", [], now - 200, now + 10, 1.0, "last")
    assert {r.labels["node"] for r in got} == {"a", "b", "c"}
    assert all(v < 9.0 for r in got for v in r.values)
    # nothing escapes retention: far enough ahead, every block has expired
    s.maintain(now + 500 * 86400.0)
    assert not list(path.glob("blocks/*/*.blk"))
    s.close()
