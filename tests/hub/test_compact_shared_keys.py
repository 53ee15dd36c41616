"""What a compact-pushed node's series keys and shapes cost the hub: nodes of the same hardware
share their shapes' descriptions and their series lists' metrics, label set numbers and value
picks; a node's shapes share its label sets; the store's schema is the hub's own list (one copy,
found by identity at each push)."""

from __future__ import annotations

from pathlib import Path

import msgspec

from gpufleet import compact
from gpufleet.hub.service import Hub, HubOptions
from gpufleet.series import snapshot_series
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
            # walked (remote write), the list gives the keys a JSON push of the snapshot gives
            v = hub.fleet.nodes[node]
            whole = hub.fleet.snapshot(v)
            assert whole is not None
            want, _ = snapshot_series(whole, {**whole.labels, **v.labels})
            assert tuple(first) == want and list(first) == list(want) and first == want
        for a, b in zip(lists["n1"], lists["n2"]):
            assert a.keys.metrics is b.keys.metrics and a.keys.slots is b.keys.slots
            assert a.pick is None or a.pick is b.pick
            # the shape's own description too: record labels, value keys, starts, the cores' JSON
            assert all(a.ids[scope] is b.ids[scope] for scope in a.ids)
            assert a.names is b.names and a.starts is b.starts
            assert a.cpu_json is not None and a.cpu_json is b.cpu_json and a.cpus is b.cpus and a.links is b.links
            # label sets less the node's own labels (node="..."): one object for the fleet
            assert a.keys.sets is b.keys.sets
            assert a.keys.common != b.keys.common and ("node", "n1") in a.keys.common
    finally:
        hub.close()
