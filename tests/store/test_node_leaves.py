"""A node that leaves the fleet must not break compaction (issue 8: OverflowError in copy_node)."""
from __future__ import annotations

from gpufleet.store import Matcher, StoreOptions, TimeSeriesStore

T0 = 1_700_006_400.0  # a multiple of 86400


def k(metric: str, **labels: str):
    return (metric, tuple(sorted(labels.items())))


def test_compaction_keeps_working_after_nodes_leave(tmp_path) -> None:
    opts = StoreOptions()  # product defaults: 300 s head, merge fanout 8
    s = TimeSeriesStore(str(tmp_path / "db"), opts)
    keys = [k("util", gpu=str(g)) for g in range(2)]
    t = T0
    want: dict[str, int] = {"a": 0, "b": 0, "c": 0}
    for window in range(8):  # three nodes for one head window, then "a" alone for seven
        nodes = ["a", "b", "c"] if window == 0 else ["a"]
        for _ in range(30):
            for n in nodes:
                assert s.append(n, t, keys, [1.0, 2.0]) == 0
                want[n] += 1
            t += 10.0
        s.maintain(t)  # the 8th cut triggers a tiered merge of a's blocks with the first cut's
    for _ in range(3):
        s.maintain(t)  # and keeps working afterwards
    got = {r.labels["node"]: len(r.values) for r in s.query_range("util", [Matcher("gpu", "=", "0")], T0, t, 1.0, "last")}
    assert got == want
    assert max(b.tier for b in s._blocks[0]) >= 1  # the merge happened
    s.close()
