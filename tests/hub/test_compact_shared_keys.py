"""What a compact-pushed node's series keys cost the hub: nodes of the same hardware share their
series lists' metrics, label set numbers and value picks; a node's shapes share its label sets;
the store's schema is the hub's own list (one copy, found by identity at each push)."""

from __future__ import annotations

from pathlib import Path

import msgspec

from gpufleet import compact
from gpufleet.hub.service import Hub, HubOptions
from gpufleet.store import SeriesList
from test_compact_push import frame, reshaped, sim_snapshots


def test_series_lists_are_shared_across_nodes_and_shapes(tmp_path: Path) -> None:
    hub = Hub(HubOptions(data=tmp_path / "data"))
    try:
        snaps = sim_snapshots(3, profile="8xH100")
        snaps[1] = reshaped(snaps[1])  # a second shape, then back to the first
        for node in ("n1", "n2"):  # the same hardware
            for s in snaps:
                body, _ = frame(msgspec.structs.replace(s, node=node))
                hub.ingest_compact(compact.MAGIC + body, node, f"{s.timestamp + 1:.3f}")
        assert hub.store is not None
        lists = {}
        for node in ("n1", "n2"):
            shapes = sorted(hub.shapes[node].by_id.values(), key=lambda sh: -len(sh.keys))
            assert len(shapes) == 2
            first, fewer = (sh.keys for sh in shapes)  # the node's own shape, one with a disk fewer
            assert isinstance(first, SeriesList) and len(first) > 500 and len(fewer) < len(first)
            # the shape with one disk fewer holds the other's label set objects, not copies
            assert {id(x) for x in fewer.sets} < {id(x) for x in first.sets}
            st = hub.store._nodes[node]
            assert st.sch is not None and st.sch.keys is first  # the store holds the hub's list itself
            assert any(sch.keys is fewer for sch in st.schemas)
            lists[node] = shapes
        for a, b in zip(lists["n1"], lists["n2"]):
            assert a.keys.metrics is b.keys.metrics and a.keys.slots is b.keys.slots
            assert a.pick is None or a.pick is b.pick
            assert a.cpu_json is not None and a.cpu_json is b.cpu_json  # the cores' JSON, matched once
            assert a.keys.sets != b.keys.sets  # each node's own labels (node="...")
    finally:
        hub.close()
