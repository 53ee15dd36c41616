"""A block's series frames are laid out for a whole node at once (block._payloads):
the bytes are still, series by series, the documented format of codec.encode, and every
value reads back exact."""
from __future__ import annotations

import struct

import numpy as np

from gpufleet.store import codec
from gpufleet.store.block import Block, BlockWriter
from gpufleet.store.rollup import rollup_grid

T0 = 1_700_006_400.0


def _grid(rng: np.random.Generator, rows: int, n: int) -> np.ndarray:
    m = np.cumsum(rng.integers(-3, 4, (rows, n)), axis=0).astype(float) + 100
    m[:, :20] = rng.standard_normal((rows, 20))  # XOR path
    m[:, 20:40] = np.round(rng.uniform(0, 700, (rows, 20)), 3)  # decimals
    m[:, 40:50] = np.where(rng.random((rows, 10)) < 0.3, np.nan, m[:, 40:50])  # gaps
    m[:, 50:55] = np.nan  # never present: left out
    m[:, 55:60] = -0.0
    m[:, 60:65] = 2.0**60 + rng.integers(0, 5, (rows, 5)) * 2.0**10  # past 2**53
    m[:, 65:70] = np.cumsum(rng.integers(0, 2**40, (rows, 5)), axis=0)  # 8-byte deltas
    return m


def test_columns_packed_are_encode_byte_for_byte():
    rng = np.random.default_rng(11)
    for rows in (1, 2, 3, 12, 61):
        m = _grid(rng, rows, 90)
        m = np.where(np.isnan(m), 1.0, m)
        lengths, blocks = codec.encode_columns_packed(m)
        seen = 0
        for cols, mat in blocks:
            for j, row in zip(cols.tolist(), mat):
                assert row.tobytes() == codec.encode(m[:, j]), (rows, j)
                assert lengths[j] == row.size
                seen += 1
        assert seen == m.shape[1]


def test_block_series_bytes_and_values(tmp_path):
    rng = np.random.default_rng(12)
    path = str(tmp_path / "b.blk")
    w = BlockWriter(path, 0, 0, 1, [], 3)
    grids = {}
    for nid, rows in enumerate((60, 1, 2, 37)):
        ts = T0 + 5.0 * np.arange(rows)
        m = _grid(rng, rows, 400)
        sids = np.arange(400, dtype=np.int64) + 1000 * nid
        w.add_node(nid, ts, sids, [m])
        grids[nid] = (ts, sids, m)
    w.finish()
    b = Block(path)
    assert b.verify() == ""
    for nid, (ts, sids, m) in grids.items():
        for j, sid in enumerate(sids.tolist()):
            got = b.read_series(sid)
            keep = ~np.isnan(m[:, j])
            if not keep.any():
                assert got is None
                continue
            assert got is not None
            assert np.array_equal(got[0], ts[keep])
            assert np.array_equal(got[1][0].view(np.uint64), m[keep, j].view(np.uint64))
            row = int(np.flatnonzero(b.series["sid"] == sid)[0])
            payload = bytes(b._payload(row))
            if keep.all():  # always present: flag 0, then the column's length and encoding
                enc = codec.encode(m[:, j])
                assert payload == b"\x00" + struct.pack("<I", len(enc)) + enc
        rts, rsids, (rm,) = b.read_node(nid)  # type: ignore[misc]
        kept = ~np.isnan(m).all(axis=0)
        assert np.array_equal(rsids, sids[kept])
        assert np.array_equal(rm.view(np.uint64), m[:, kept].view(np.uint64))
    b.close()


def test_rollup_block_five_columns_read_back(tmp_path):
    rng = np.random.default_rng(13)
    path = str(tmp_path / "r.blk")
    ts = T0 + 5.0 * np.arange(60)
    m = _grid(rng, 60, 120)
    bts, cols = rollup_grid(ts, m, 60)
    sids = np.arange(120, dtype=np.int64)
    w = BlockWriter(path, 60, 0, 1, [], 3)
    w.add_node(7, bts, sids, cols)
    w.finish()
    b = Block(path)
    rts, rsids, rcols = b.read_node(7)  # type: ignore[misc]
    kept = ~np.isnan(cols[3]).all(axis=0)
    assert np.array_equal(rts, bts) and np.array_equal(rsids, sids[kept])
    for got, want in zip(rcols, cols):
        assert np.array_equal(got.view(np.uint64), want[:, kept].view(np.uint64))
    b.close()
