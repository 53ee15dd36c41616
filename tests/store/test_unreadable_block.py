from __future__ import annotations

from pathlib import Path

from gpufleet.store import TimeSeriesStore


def test_an_unreadable_block_is_set_aside_and_the_rest_served(tmp_path: Path) -> None:
    s = TimeSeriesStore(str(tmp_path / "db"))
    key = ("gpufleet_gpu_power_watts", (("gpu", "0"),))
    for i in range(100):
        s.append("a", 1_000_000.0 + i, [key], [float(i)])
        s.append("b", 1_000_000.0 + i, [key], [float(i)])
    s.maintain(now=1_000_200.0, full=True)
    s.close()
    blocks = sorted((tmp_path / "db" / "blocks" / "r0").glob("*.blk"))
    assert blocks
    victim = blocks[0]
    data = bytearray(victim.read_bytes())
    data[-40:-20] = b"\xff" * 20  # inside the block's index
    victim.write_bytes(bytes(data))
    s = TimeSeriesStore(str(tmp_path / "db"))  # opens instead of failing
    try:
        assert victim.with_name(victim.name + ".corrupt").exists() and not victim.exists()
        assert len(s.series()) == 2  # the catalogue still knows both series
    finally:
        s.close()
