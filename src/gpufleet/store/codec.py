"""Column codec: float64 arrays <-> compact bytes (before zstd).

GPU telemetry is mostly integers (%, degC, MHz, bytes) or a few decimals (W),
so a column is first tested for a fixed decimal precision d (0..6) at which
``round(v * 10**d) / 10**d`` reproduces every value bit for bit.  Such columns
become int64, are delta (or delta-of-delta) coded, zigzagged, stored at the
narrowest byte width and byte-shuffled (all low bytes, then all next bytes...)
so zstd sees long runs.  Anything else falls back to XOR of successive IEEE
bit patterns.  Both paths are exact: decode(encode(v)) is bitwise equal.
NaN never reaches the codec: absence is carried by a presence bitmap.
"""
from __future__ import annotations

import struct
from collections.abc import Sequence

import numpy as np

_KIND_EMPTY = 0
_KIND_INT = 1
_KIND_XOR = 2

_MAX_DECIMALS = 6
_EXACT_LIMIT = float(2**53)
_HDR = struct.Struct("<BBBB")  # kind, decimals, byte width, delta order
_I64 = struct.Struct("<q")
_POW10 = [10.0**d for d in range(_MAX_DECIMALS + 1)]


def detect_decimals(v: np.ndarray) -> tuple[int, np.ndarray] | None:
    """Return (d, ints) with ints / 10**d == v exactly, or None."""
    if v.size == 0:
        return 0, np.zeros(0, np.int64)
    if not np.isfinite(v).all():
        return None
    # -0.0 would come back as +0.0; keep it bit-exact through the XOR path.
    zeros = v == 0.0
    if zeros.any() and np.signbit(v[zeros]).any():
        return None
    peak = float(np.abs(v).max())
    for d in range(_MAX_DECIMALS + 1):
        scale = _POW10[d]
        if peak * scale >= _EXACT_LIMIT:
            return None
        r = np.rint(v * scale)
        if np.array_equal(r / scale, v):
            return d, r.astype(np.int64)
    return None


def _zigzag(x: np.ndarray) -> np.ndarray:
    return ((x << 1) ^ (x >> 63)).view(np.uint64)


def _unzigzag(z: np.ndarray) -> np.ndarray:
    return (z >> np.uint64(1)).view(np.int64) ^ -(z & np.uint64(1)).view(np.int64)


def _width(z: np.ndarray) -> int:
    if z.size == 0:
        return 1
    top = int(z.max())
    for w in (1, 2, 4):
        if top < (1 << (8 * w)):
            return w
    return 8


_UINT = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}


def _shuffle(z: np.ndarray, w: int) -> bytes:
    narrow = z.astype(_UINT[w])
    return narrow.view(np.uint8).reshape(-1, w).T.tobytes()


def _unshuffle(buf: bytes | memoryview, n: int, w: int) -> np.ndarray:
    planes = np.frombuffer(buf, np.uint8, count=n * w).reshape(w, n)
    return np.ascontiguousarray(planes.T).view(_UINT[w]).reshape(n).astype(np.uint64)


def _bitcost(x: np.ndarray) -> float:
    # Rough size estimate used only to pick delta order; cheap and monotone in |x|.
    return float(np.log2(np.abs(x, dtype=np.float64) + 1.0).sum()) + 0.5 * float(np.count_nonzero(x))


def encode(v: np.ndarray) -> bytes:
    """Encode a 1-D float64 array without NaN. Length is stored by the caller."""
    v = np.ascontiguousarray(v, dtype=np.float64)
    n = v.size
    if n == 0:
        return _HDR.pack(_KIND_EMPTY, 0, 0, 0)
    det = detect_decimals(v)
    if det is not None:
        d, ints = det
        d1 = np.diff(ints)
        order = 1
        body = d1
        if n > 2:
            d2 = np.diff(d1)
            if _bitcost(d2) < _bitcost(d1[1:]):
                order, body = 2, d2
        heads = [int(ints[0])] + ([int(d1[0])] if order == 2 else [])
        heads = heads[: n]  # n == 1 -> only the first value
        z = _zigzag(body)
        w = _width(z)
        parts = [_HDR.pack(_KIND_INT, d, w, order)]
        parts += [_I64.pack(h) for h in heads]
        parts.append(_shuffle(z, w))
        return b"".join(parts)
    bits = v.view(np.uint64)
    x = bits.copy()
    x[1:] ^= bits[:-1]
    return _HDR.pack(_KIND_XOR, 0, 8, 0) + _shuffle(x, 8)


def decode(buf: bytes | memoryview, n: int) -> np.ndarray:
    """Inverse of :func:`encode` for an array of length n."""
    kind, d, w, order = _HDR.unpack_from(buf, 0)
    if kind == _KIND_EMPTY or n == 0:
        return np.zeros(0, np.float64)
    pos = _HDR.size
    if kind == _KIND_XOR:
        x = _unshuffle(memoryview(buf)[pos:], n, 8)
        return np.bitwise_xor.accumulate(x).view(np.float64)
    if kind != _KIND_INT:
        raise ValueError(f"corrupt column: unknown kind {kind}")
    nheads = min(order, n)
    heads = [_I64.unpack_from(buf, pos + 8 * i)[0] for i in range(nheads)]
    pos += 8 * nheads
    nbody = max(n - order, 0)
    body = _unzigzag(_unshuffle(memoryview(buf)[pos:], nbody, w)) if nbody else np.zeros(0, np.int64)
    if order == 1:
        ints = np.empty(n, np.int64)
        ints[0] = heads[0]
        if n > 1:
            np.cumsum(body, out=ints[1:])
            ints[1:] += heads[0]
    else:
        if n == 1:
            ints = np.array(heads[:1], np.int64)
        else:
            d1 = np.empty(n - 1, np.int64)
            d1[0] = heads[1]
            if n > 2:
                np.cumsum(body, out=d1[1:])
                d1[1:] += heads[1]
            ints = np.empty(n, np.int64)
            ints[0] = heads[0]
            np.cumsum(d1, out=ints[1:])
            ints[1:] += heads[0]
    floats: np.ndarray = ints.astype(np.float64) / _POW10[d]
    return floats


def _bitcost_cols(x: np.ndarray) -> np.ndarray:
    cost: np.ndarray = np.log2(np.abs(x, dtype=np.float64) + 1.0).sum(axis=0) + 0.5 * np.count_nonzero(x, axis=0)
    return cost


def encode_columns(m: np.ndarray) -> list[bytes]:
    """Encode every column of a rows x n matrix (no NaN); same bytes as encode() per column."""
    lengths, blocks = encode_columns_packed(m)
    out: list[bytes] = [b""] * lengths.size
    for cols, mat in blocks:
        for j, row in zip(cols.tolist(), mat):
            out[j] = row.tobytes()
    return out


# Columns whose encodings share a length, as (column indices, count x length uint8 matrix).
Packed = list[tuple[np.ndarray, np.ndarray]]


def encode_columns_packed(m: np.ndarray) -> tuple[np.ndarray, Packed]:
    """Every column's encode() bytes, as their lengths and matrices of equal-length ones.

    Vectorised across columns: a block holds hundreds of thousands of short series,
    so per-column Python work, not arithmetic, is what costs; the block writer lays
    these matrices into its frames without a Python step per series.
    """
    m = np.asarray(m, dtype=np.float64)
    rows, n = m.shape
    lengths = np.zeros(n, np.int64)
    blocks: Packed = []
    if rows == 0 or n == 0:
        for j in range(n):
            enc = encode(m[:, j])
            lengths[j] = len(enc)
            blocks.append((np.array([j]), np.frombuffer(enc, np.uint8)[None, :]))
        return lengths, blocks
    dec = np.full(n, -1, np.int64)
    ints = np.empty((rows, n), np.int64)
    negzero = ((m == 0.0) & np.signbit(m)).any(axis=0)
    finite = np.isfinite(m).all(axis=0)
    peak = np.where(finite, np.abs(np.where(np.isfinite(m), m, 0.0)).max(axis=0), np.inf)
    und = np.flatnonzero(finite & ~negzero)
    for d in range(_MAX_DECIMALS + 1):
        if und.size == 0:
            break
        scale = _POW10[d]
        und = und[peak[und] * scale < _EXACT_LIMIT]
        sub = m[:, und]
        r = np.rint(sub * scale)
        ok = (r / scale == sub).all(axis=0)
        good = und[ok]
        dec[good] = d
        ints[:, good] = r[:, ok].astype(np.int64)
        und = und[~ok]
    xcols = np.flatnonzero(dec < 0)
    if xcols.size:  # XOR of successive IEEE bit patterns, as encode() falls back to
        bits = np.ascontiguousarray(m[:, xcols]).view(np.uint64)
        x = bits.copy()
        x[1:] ^= bits[:-1]
        k = xcols.size
        mat = np.empty((k, _HDR.size + 8 * rows), np.uint8)
        mat[:, : _HDR.size] = np.frombuffer(_HDR.pack(_KIND_XOR, 0, 8, 0), np.uint8)
        mat[:, _HDR.size :] = np.ascontiguousarray(x.T).view(np.uint8).reshape(k, rows, 8).transpose(0, 2, 1).reshape(k, 8 * rows)
        lengths[xcols] = mat.shape[1]
        blocks.append((xcols, mat))
    icols = np.flatnonzero(dec >= 0)
    if icols.size:
        iv = ints[:, icols]
        d1 = np.diff(iv, axis=0)
        order = np.ones(icols.size, np.int64)
        d2 = None
        if rows > 2:
            d2 = np.diff(d1, axis=0)
            order[_bitcost_cols(d2) < _bitcost_cols(d1[1:])] = 2
        for o in (1, 2):
            sel = np.flatnonzero(order == o)
            if sel.size == 0:
                continue
            body = d1[:, sel] if o == 1 else d2[:, sel]  # type: ignore[index]
            z = _zigzag(np.ascontiguousarray(body))
            nb = z.shape[0]
            top = z.max(axis=0) if nb else np.zeros(sel.size, np.uint64)
            widths = np.where(top < 256, 1, np.where(top < 65536, 2, np.where(top < 2**32, 4, 8)))
            for w in (1, 2, 4, 8):
                wsel = np.flatnonzero(widths == w)
                if wsel.size == 0:
                    continue
                cols = icols[sel[wsel]]
                k = cols.size
                size = _HDR.size + 8 * o + nb * w
                mat = np.empty((k, size), np.uint8)
                mat[:, 0] = _KIND_INT
                mat[:, 1] = dec[cols]
                mat[:, 2] = w
                mat[:, 3] = o
                heads = np.empty((k, o), "<i8")
                heads[:, 0] = iv[0, sel[wsel]]
                if o == 2:
                    heads[:, 1] = d1[0, sel[wsel]]
                mat[:, _HDR.size : _HDR.size + 8 * o] = heads.view(np.uint8)
                narrow = np.ascontiguousarray(z[:, wsel].astype(_UINT[w]).T)  # k x nb
                planes = narrow.view(np.uint8).reshape(k, nb, w).transpose(0, 2, 1).reshape(k, nb * w)
                mat[:, _HDR.size + 8 * o :] = planes
                lengths[cols] = size
                blocks.append((cols, mat))
    return lengths, blocks


def decode_columns(bufs: Sequence[bytes | memoryview], n: int) -> np.ndarray:
    """Decode several columns of length n at once into an n x len(bufs) matrix.

    Columns sharing (decimals, width, order) are unshuffled, unzigzagged and
    summed in one numpy pass; used when whole nodes are read for merging.
    """
    out = np.empty((n, len(bufs)), np.float64)
    groups: dict[tuple[int, int, int], list[int]] = {}
    for i, buf in enumerate(bufs):
        kind, d, w, order = _HDR.unpack_from(buf, 0)
        if kind != _KIND_INT or n <= order:
            out[:, i] = decode(buf, n)
        else:
            groups.setdefault((d, w, order), []).append(i)
    for (d, w, order), idx in groups.items():
        k = len(idx)
        nb = n - order
        start = _HDR.size + 8 * order
        heads = np.array([struct.unpack_from(f"<{order}q", bufs[i], _HDR.size) for i in idx], np.int64)
        body = b"".join(bytes(memoryview(bufs[i])[start : start + nb * w]) for i in idx)
        planes = np.frombuffer(body, np.uint8).reshape(k, w, nb).transpose(0, 2, 1)
        z = np.ascontiguousarray(planes).view(_UINT[w]).reshape(k, nb).astype(np.uint64)
        x = _unzigzag(z)
        if order == 2:
            d1 = np.empty((k, n - 1), np.int64)
            d1[:, 0] = heads[:, 1]
            d1[:, 1:] = x
            np.cumsum(d1, axis=1, out=d1)
            x = d1
        ints = np.empty((k, n), np.int64)
        ints[:, 0] = heads[:, 0]
        ints[:, 1:] = x
        np.cumsum(ints, axis=1, out=ints)
        out[:, idx] = (ints.astype(np.float64) / _POW10[d]).T
    return out
