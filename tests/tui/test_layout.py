"""`gpufleet top`'s lines and arrangement, without a terminal: widths, missing readings, states."""

from __future__ import annotations

from rich.cells import cell_len

from gpufleet.tui.arrange import Arrangement, arrange
from gpufleet.tui.layout import gpu_line, node_line
from gpufleet.tui.model import build
from gpufleet.tui.spark import sparkline


def _snap(node: str, gpus: list[dict], labels: dict | None = None) -> dict:
    return {"node": node, "timestamp": 1000.0, "labels": labels or {"rack": "r1"},
            "values": {"cpu_utilization_ratio": 0.25, "memory_used_bytes": 8e9, "memory_total_bytes": 64e9},
            "gpus": gpus}


def _gpu(i: int, util: float | None, user: str | None = None, **values: float) -> dict:
    v = {"up": 1.0, "memory_used_bytes": 1e9, "memory_total_bytes": 80e9, "temperature_celsius": 60.0,
         "power_watts": 300.0, **values}
    if util is not None:
        v["utilization_ratio"] = util
    procs = [{"pid": 10 + i, "user": user, "command": f"python job{i}.py --long-flag value", "memory_bytes": 1e9}] \
        if user else []
    return {"index": i, "model": "NVIDIA H100 80GB HBM3", "values": v, "processes": procs}


def _fleet():
    snaps = [
        _snap("alpha", [_gpu(0, 0.9, "alice"), _gpu(1, 0.0), _gpu(2, 0.5, "bob")]),
        _snap("beta", [_gpu(0, 0.1, "bob"), _gpu(1, 0.0)], {"rack": "r2"}),
        _snap("gamma", [_gpu(0, 0.0)]),
    ]
    statuses = {"alpha": {"status": "up"}, "beta": {"status": "up"},
                "gamma": {"status": "down", "last_seen": 1000.0, "error": "connection refused"},
                "delta": {"status": "stale", "last_seen": 1000.0}}  # known to the hub, no data yet
    return build(snaps, statuses, [], 1100.0)


def _text(segs) -> str:
    return "".join(s.text for s in segs)


def test_every_line_is_exactly_the_terminal_width() -> None:
    fleet = _fleet()
    for width in (40, 60, 80, 120, 200):
        for ln in arrange(fleet, Arrangement()):
            t = _text(gpu_line(ln.gpu, ln.node, width) if ln.gpu else node_line(ln.node, width, 1100.0))
            assert cell_len(t) == width, (width, t)
            assert "\n" not in t


def test_columns_give_way_by_priority() -> None:
    fleet = _fleet()
    n = fleet.nodes[0]
    wide = _text(gpu_line(n.gpus[0], n, 120))
    assert "GPU 0" in wide and "90%" in wide and "60°C" in wide and "300W" in wide and "alice python" in wide
    narrow = _text(gpu_line(n.gpus[0], n, 60))
    assert "GPU 0" in narrow and "90%" in narrow and "300W" not in narrow  # power goes first
    tiny = _text(gpu_line(n.gpus[0], n, 40))
    assert "GPU 0" in tiny and "90%" in tiny and "°C" not in tiny and "alice" in tiny


def test_missing_readings_show_as_missing_never_zero() -> None:
    snap = _snap("n", [{"index": 0, "model": "X", "values": {"up": 1.0}, "processes": []}])
    fleet = build([snap], {"n": {"status": "up"}})
    t = _text(gpu_line(fleet.nodes[0].gpus[0], fleet.nodes[0], 120))
    assert "—°C" in t and "—W" in t and "0°C" not in t and " 0W" not in t and "0%" not in t


def test_down_and_stale_nodes_look_different() -> None:
    fleet = _fleet()
    by = {n.name: n for n in fleet.nodes}
    up = node_line(by["alpha"], 100, 1100.0)
    down = node_line(by["gamma"], 100, 1100.0)
    stale = node_line(by["delta"], 100, 1100.0)
    assert " up " in _text(up) and "DOWN 100s" in _text(down) and "STALE 100s" in _text(stale)
    assert "connection refused" in _text(down)
    styles = {s.style for s in down} - {s.style for s in up}
    assert any(st and st.bgcolor for st in styles)  # a coloured badge, not just a word
    # A down node's last GPU readings are dimmed and never offered as free.
    g = _text(gpu_line(by["gamma"].gpus[0], by["gamma"], 100))
    assert "free" not in g
    assert all(s.style is None or s.style.dim or not s.text.strip() or "GPU" in s.text
               for s in gpu_line(by["gamma"].gpus[0], by["gamma"], 100) if "█" in s.text or "%" in s.text)


def test_sort_filter_and_free_view() -> None:
    fleet = _fleet()
    names = lambda lines: [ln.node.name for ln in lines if ln.gpu is None]  # noqa: E731
    how = Arrangement()
    assert names(arrange(fleet, how)) == ["alpha", "beta", "delta", "gamma"]
    how.sort = 1  # util: busiest first
    assert names(arrange(fleet, how))[0] == "alpha"
    how.sort = 6  # status: down, stale, up
    assert names(arrange(fleet, how))[:2] == ["gamma", "delta"]
    how = Arrangement(filter="user:bob")
    got = [(ln.node.name, ln.gpu.index) for ln in arrange(fleet, how) if ln.gpu]
    assert got == [("alpha", 2), ("beta", 0)]
    assert names(arrange(fleet, Arrangement(filter="rack=r2"))) == ["beta"]
    assert names(arrange(fleet, Arrangement(filter="status:down"))) == ["gamma"]
    assert [ln.gpu.index for ln in arrange(fleet, Arrangement(filter="job2")) if ln.gpu] == [2]
    free = [(ln.node.name, ln.gpu.index) for ln in arrange(fleet, Arrangement(free_only=True)) if ln.gpu]
    assert free == [("alpha", 1), ("beta", 1)]  # gamma's idle GPU is on a down node
    assert len(fleet.free_gpus()) == 2


def test_sparkline_keeps_gaps() -> None:
    assert sparkline([0.0, None, 1.0], 0.0, 1.0) == "▁ █"
    assert sparkline([None, None]) == ""


def test_gpu_rows_are_rebuilt_only_for_nodes_that_pushed() -> None:
    cache: dict = {}
    a = _snap("alpha", [_gpu(0, 0.9, "alice")])
    b = _snap("beta", [_gpu(0, 0.1)])
    first = build([a, b], {}, cache=cache)
    b2 = {**b, "timestamp": 1001.0, "gpus": [_gpu(0, 0.6, "bob")]}
    second = build([a, b2], {}, cache=cache)
    assert second.nodes[0].gpus is first.nodes[0].gpus  # alpha did not push: its rows are reused
    assert second.nodes[1].gpus[0].util == 0.6 and second.nodes[1].gpus[0].users == ["bob"]
    assert set(cache) == {"alpha", "beta"}
    build([b2], {}, cache=cache)
    assert set(cache) == {"beta"}  # a node that left the fleet leaves the cache too
