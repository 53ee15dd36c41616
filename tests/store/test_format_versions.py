"""Every store format version this release has written still opens (tests/fixtures/store/v<N>)."""
from __future__ import annotations

import importlib.util
import logging
import shutil
from pathlib import Path

import pytest

from gpufleet.store import TimeSeriesStore, formats
from gpufleet.store.check import check_store
from gpufleet.store.recordlog import scan_log

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "store"
VERSIONS = sorted(int(p.name[1:]) for p in FIXTURES.glob("v*") if p.is_dir())

_spec = importlib.util.spec_from_file_location("make_store", FIXTURES / "make_store.py")
assert _spec is not None and _spec.loader is not None
make_store = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(make_store)


def test_there_is_a_fixture_for_every_version_up_to_this_one() -> None:
    assert VERSIONS == list(range(1, formats.FORMAT + 1))


def _check(path: Path) -> None:
    want = make_store.samples()
    s = TimeSeriesStore(str(path))
    got = s.query_range("gpufleet_gpu_utilization_ratio", [], make_store.T0, make_store.T0 + 3600, 1.0, "last")
    got += s.query_range("gpufleet_gpu_power_watts", [], make_store.T0, make_store.T0 + 3600, 1.0, "last")
    assert len(got) == len(want)
    for r in got:
        pts = want[(r.labels["node"], r.labels["__name__"], r.labels["gpu"])]
        assert r.timestamps.tolist() == [t for t, _ in pts]
        assert r.values == [v for _, v in pts]
    # the dedup clock came back too: the last push again is a duplicate
    last = make_store.T0 + 10.0 * (make_store.PUSHES - 1)
    assert s.append("node-a", last, list(make_store.KEYS), [0.0] * len(make_store.KEYS)) == len(make_store.KEYS)
    s.close()


@pytest.mark.parametrize("version", VERSIONS)
def test_a_store_of_each_version_opens_with_all_its_samples(tmp_path, caplog, version) -> None:
    path = tmp_path / "db"
    shutil.copytree(FIXTURES / f"v{version}", path)
    caplog.set_level(logging.WARNING, logger="gpufleet.store")
    report = check_store(str(path))  # store check reads every version, and an old one is no damage
    assert not report.damaged and report.files >= 5
    _check(path)
    assert not caplog.records  # an older format is no damage
    # opened once, its logs are in the current format, and it opens again the same
    for log in [path / "series.log", *path.glob("wal/*.log")]:
        assert scan_log(str(log), b"GFSI" if log.name == "series.log" else b"GFWL").version == formats.FORMAT
    _check(path)
    # and it takes new data and compacts it with the old
    s = TimeSeriesStore(str(path))
    s.maintain(make_store.T0 + 7200 + 700, full=True)
    s.close()
    _check(path)
