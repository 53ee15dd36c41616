"""Sealed head chunks: a few rows of a node's rows x series float64 matrix as compact bytes.

The head keeps the last minutes of every series of every node; as float64 that is 8 bytes
a sample (~470 MiB for 1,000 nodes of ~1,000 series over 5 minutes).  It therefore seals
its rows in small chunks, each coded against the row just before it (the last row of the
previous chunk), all columns at once with numpy, no Python loop per series:

* a column whose values are all exact decimals at some precision d (0..6: GPU telemetry
  is mostly integers or a few decimals, as in ``codec``) becomes int64 ``round(v * 10**d)``,
  delta coded against the previous row and zigzagged;
* any other column (-0.0, many digits, infinities, NaNs other than the head's) is XORed, as
  IEEE bits, with the previous row's.

Absent values (the head's NaN, the canonical quiet NaN) do not take a decimal column off its
precision: they are the integer ``ABSENT_INT``, which no value reaches (values stay under
2**53).  A node whose series list flips between two shapes has such NaNs in every piece, and
its columns would otherwise turn XOR and back every chunk.

The resulting rows x cols uint64 matrix is byte-shuffled (all lowest bytes of every value,
then the next...) and compressed with zstd at level 1: unchanged values become zeros and
small changes leave the high planes zero, which zstd takes down to a few bits.  Lossless:
``unseal(seal(ref, m), ref)`` is bit for bit ``m``, NaN payloads included.
"""
from __future__ import annotations

import struct
import threading

import numpy as np
import zstandard

_HDR = struct.Struct("<HI")  # rows, cols; then cols bytes of precision (XOR_COL = bits XOR)
XOR_COL = 255
_MAX_DECIMALS = 6
_EXACT_LIMIT = float(2**53)
_POW10 = np.array([10.0**d for d in range(_MAX_DECIMALS + 1)])
_ABSENT_BITS = np.uint64(0x7FF8000000000000)  # np.nan as the head pads with it
ABSENT_INT = float(2**61)  # zigzag needs |delta| < 2**62: |value| < 2**53 and this
_ABSENT_INTEGER = np.int64(2**61)
# zstd levels: a chunk is kept for minutes (level 1); a single row only until its chunk is
# sealed, and every push seals one, so speed first there (-1: ~4x faster, ~25 % larger)
CHUNK_LEVEL = 1
ROW_LEVEL = -1

_local = threading.local()  # zstd contexts are not for concurrent use: one per thread


def _zc(level: int) -> zstandard.ZstdCompressor:
    zcs: dict[int, zstandard.ZstdCompressor] | None = getattr(_local, "zc", None)
    if zcs is None:
        zcs = _local.zc = {}
    zc = zcs.get(level)
    if zc is None:
        zc = zcs[level] = zstandard.ZstdCompressor(level=level)
    return zc


def _zd() -> zstandard.ZstdDecompressor:
    zd: zstandard.ZstdDecompressor | None = getattr(_local, "zd", None)
    if zd is None:
        zd = _local.zd = zstandard.ZstdDecompressor()
    return zd


def decimals(m: np.ndarray, hint: np.ndarray | None = None) -> np.ndarray:
    """Per column a precision d with rint(v * 10**d) / 10**d == v for every row, else XOR_COL.

    Without a hint, the smallest such d.  With one (the precisions of the previous rows),
    a column keeps its d while every value still reproduces at it, and a column hinted
    XOR_COL stays XOR (a chunk seal, without hint, looks again): one vectorised check a
    push instead of up to seven.  Any d that reproduces is exact; a larger one than
    needed only costs a little size until the next chunk.
    """
    cols = m.shape[1]
    with np.errstate(invalid="ignore", over="ignore"):
        if hint is None or hint.size != cols:
            return _search(m, np.arange(cols), np.full(cols, XOR_COL, np.uint8))
        scale = _POW10[np.minimum(hint, _MAX_DECIMALS)]
        absent = m.view(np.uint64) == _ABSENT_BITS
        ok = ((np.rint(m * scale) / scale == m) | absent).all(axis=0)
        ok &= np.where(absent, 0.0, np.abs(m)).max(axis=0) * scale < _EXACT_LIMIT
        ok &= ~((m == 0.0) & np.signbit(m)).any(axis=0)
        redo = np.flatnonzero(~ok & (hint != XOR_COL))
        if not redo.size:
            return hint  # the same object: callers may compare by identity
        dec = hint.copy()
        dec[redo] = XOR_COL
        # only finer than before: a column whose values alternate between 1 and 4
        # decimals settles at 4 instead of changing (and breaking restack) every push
        return _search(m, redo, dec, hint[redo] + 1)


def settle(m: np.ndarray, hint: np.ndarray | None) -> np.ndarray:
    """Precisions for a whole chunk: each column keeps its hinted one, or a finer one where a
    value needs it (values that go between 1 and 2 decimals stay at 2, rather than going back
    to 1 at every chunk and failing the next pushes' quick seal), and the XOR columns are
    looked at again (a value may have come back)."""
    if hint is None or hint.size != m.shape[1]:
        return decimals(m)
    dec = decimals(m, hint)
    xc = np.flatnonzero(dec == XOR_COL)
    if not xc.size:
        return dec
    with np.errstate(invalid="ignore", over="ignore"):
        return _search(m, xc, dec.copy())


def recheck(row: np.ndarray, dec: np.ndarray) -> np.ndarray:
    """``dec`` with its XOR columns looked at again on ``row`` (a value came back, say)."""
    xc = np.flatnonzero(dec == XOR_COL)
    if not xc.size:
        return dec
    with np.errstate(invalid="ignore", over="ignore"):
        # Noisy columns (all 17 digits) stay XOR chunk after chunk: a check at the finest
        # precision and one for whole numbers (large counters) set them aside before the
        # search tries each precision. Only a choice of coding: a column this misses stays
        # XOR, which is exact too.
        v = row[xc]
        r = v * _POW10[_MAX_DECIMALS]
        near = (np.rint(r) / _POW10[_MAX_DECIMALS] == v) & (np.abs(r) < _EXACT_LIMIT)
        near |= (np.rint(v) == v) & (np.abs(v) < _EXACT_LIMIT)
        xc = xc[near | (v.view(np.uint64) == _ABSENT_BITS)]
        if not xc.size:
            return dec
        return _search(row[None, :], xc, dec.copy())


def _search(m: np.ndarray, which: np.ndarray, dec: np.ndarray, floor: np.ndarray | None = None) -> np.ndarray:
    """Fill dec[which] with the smallest exact precision (at least ``floor``) of those columns."""
    sub = m[:, which]
    absent = sub.view(np.uint64) == _ABSENT_BITS
    finite = (np.isfinite(sub) | absent).all(axis=0)
    # -0.0 would come back as +0.0 through the integers: keep it on the XOR path
    finite &= ~((sub == 0.0) & np.signbit(sub)).any(axis=0)
    peak = np.where(absent, 0.0, np.abs(sub)).max(axis=0) if m.shape[0] else np.zeros(which.size)
    und = np.flatnonzero(finite)
    for d in range(_MAX_DECIMALS + 1):
        if not und.size:
            break
        scale = _POW10[d]
        und = und[peak[und] * scale < _EXACT_LIMIT]
        part = sub[:, und]
        ok = ((np.rint(part * scale) / scale == part) | absent[:, und]).all(axis=0)
        if floor is not None:
            ok &= floor[und] <= d
        dec[which[und[ok]]] = d
        und = und[~ok]
    return dec


def _ref_ints(ref: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """The reference row as integers at each column's scale (0 where it has none).

    Encoder and decoder compute it from the same float row, so it needs to be
    deterministic only, not exact: an absent reference is ABSENT_INT (as an absent
    value codes), any other that is not a number in range 0.
    """
    with np.errstate(invalid="ignore", over="ignore"):
        r = ref * scale
        ok = np.isfinite(r) & (np.abs(r) < _EXACT_LIMIT)
        out = np.where(ok, np.rint(np.where(ok, r, 0.0)), 0.0)
        return np.where(ref.view(np.uint64) == _ABSENT_BITS, ABSENT_INT, out).astype(np.int64)


def _full_ref(ref: np.ndarray | None, cols: int) -> np.ndarray:
    """The reference row at ``cols`` columns: None (no row before) is zeros; columns a
    shorter row lacks were absent then (NaN), as the head pads them."""
    if ref is None:
        return np.zeros(cols)
    return ref[:cols] if ref.size >= cols else pad(ref, cols)


def pad(row: np.ndarray, cols: int) -> np.ndarray:
    """A copy of ``row`` widened to ``cols`` with NaN (absent) in the new columns."""
    out = np.full(cols, np.nan)
    out[: row.size] = row
    return out


def seal(ref: np.ndarray | None, m: np.ndarray, dec: np.ndarray | None = None) -> bytes:
    """Code ``m`` (rows x cols float64) against ``ref``, the row before it (see _full_ref).

    ``dec``: the columns' precisions from :func:`decimals` of ``m`` (or of rows including
    all of ``m``'s), computed here when None; a precision that does not hold loses digits.
    """
    rows, cols = m.shape
    ref = _full_ref(ref, cols)
    if dec is None:
        dec = decimals(m)
    out = np.empty((rows, cols), np.uint64)
    xc = np.flatnonzero(dec == XOR_COL)
    ic = np.flatnonzero(dec != XOR_COL)
    if ic.size:
        scale = _POW10[dec[ic]]
        ints = np.empty((rows + 1, ic.size), np.int64)
        ints[0] = _ref_ints(ref[ic], scale)
        sub = m[:, ic]
        ints[1:] = np.where(sub.view(np.uint64) == _ABSENT_BITS, ABSENT_INT, np.rint(sub * scale))
        d = np.diff(ints, axis=0)
        out[:, ic] = ((d << 1) ^ (d >> 63)).view(np.uint64)  # zigzag: small |d|, small number
    if xc.size:
        bits = np.empty((rows + 1, xc.size), np.uint64)
        bits[0] = ref[xc].view(np.uint64)
        bits[1:] = m[:, xc].view(np.uint64)
        out[:, xc] = bits[1:] ^ bits[:-1]
    # planes: byte k of every value, column by column (a series' rows side by side)
    planes = np.ascontiguousarray(out.T).view(np.uint8).reshape(cols, rows, 8).transpose(2, 0, 1)
    return _pack(rows, cols, dec.tobytes(), planes.tobytes())


_NEGZERO = np.uint64(1 << 63)


def seal_rows(ref: np.ndarray | None, m: np.ndarray, hint: np.ndarray | None) -> tuple[bytes, np.ndarray]:
    """A few pushes' rows (rows x cols) sealed against ``ref``, and the precisions used.

    The same bytes as ``seal(ref, m, decimals(m, hint))``, in about half the numpy calls
    when every value still fits its hinted precision (the steady state, paid every few
    pushes): the precision check and the coding share one ``rint``.
    """
    rows, cols = m.shape
    if hint is not None and hint.size == cols and ref is not None and ref.size == cols:
        with np.errstate(invalid="ignore", over="ignore"):
            isxor = hint == XOR_COL
            sf = _POW10[np.minimum(hint, _MAX_DECIMALS)]  # XOR columns: any scale, unused
            r = np.rint(m * sf)
            mbits = m.view(np.uint64)
            absent = mbits == _ABSENT_BITS
            ok = (r / sf == m) & (np.abs(r) < _EXACT_LIMIT) & (mbits != _NEGZERO)
            if (ok | absent | isxor).all():
                q = np.rint(ref * sf)  # the reference as integers, exactly as _ref_ints has it
                ints = np.empty((rows + 1, cols), np.int64)  # XOR columns: replaced below
                q = np.where(np.isfinite(q) & (np.abs(q) < _EXACT_LIMIT), q, 0.0)
                ints[0] = np.where(ref.view(np.uint64) == _ABSENT_BITS, ABSENT_INT, q)
                ints[1:] = np.where(absent, ABSENT_INT, r)
                d = np.diff(ints, axis=0)
                bits = np.empty((rows + 1, cols), np.uint64)
                bits[0] = ref.view(np.uint64)
                bits[1:] = m.view(np.uint64)
                u = np.where(isxor, bits[1:] ^ bits[:-1], ((d << 1) ^ (d >> 63)).view(np.uint64))
                planes = np.ascontiguousarray(u.T).view(np.uint8).reshape(cols, rows, 8).transpose(2, 0, 1)
                return _pack(rows, cols, hint.tobytes(), planes.tobytes()), hint
    dec = decimals(m, hint)
    return seal(ref, m, dec), dec


def restack(bufs: list[bytes]) -> bytes | None:
    """Pieces sealed one after another (each against the row before it) as one chunk,
    without decoding them (None: can't).

    Pieces of the same width and precisions are coded exactly as one chunk of all their
    rows would be, so their coded values are just laid side by side and compressed once,
    which takes a good part off their size.
    """
    raws = [_zd().decompress(b) for b in bufs]
    _rows, cols = _HDR.unpack_from(raws[0], 0)
    body = _HDR.size + cols
    dec = raws[0][_HDR.size : body]
    counts = []
    for r in raws:
        rows, c = _HDR.unpack_from(r, 0)
        if c != cols or r[_HDR.size : body] != dec:
            return None
        counts.append(rows)
    planes = [np.frombuffer(r, np.uint8, 8 * cols * k, body).reshape(8, cols, k) for r, k in zip(raws, counts)]
    return _pack(sum(counts), cols, dec, np.concatenate(planes, axis=2).tobytes())


def _pack(rows: int, cols: int, dec: bytes, planes: bytes) -> bytes:
    out = _zc(CHUNK_LEVEL if rows > 1 else ROW_LEVEL).compress(_HDR.pack(rows, cols) + dec + planes)
    # zstandard returns a bytes object still holding its worst-case allocation (input size
    # and more); kept for minutes, that would cost more than the floats it replaces
    return bytes(memoryview(out))


def unseal(buf: bytes, ref: np.ndarray | None) -> np.ndarray:
    """Inverse of :func:`seal`: the rows x cols float64 matrix (``ref`` as given to seal)."""
    raw = _zd().decompress(buf)
    rows, cols = _HDR.unpack_from(raw, 0)
    ref = _full_ref(ref, cols)
    pos = _HDR.size
    dec = np.frombuffer(raw, np.uint8, cols, pos)
    pos += cols
    planes = np.frombuffer(raw, np.uint8, 8 * cols * rows, pos).reshape(8, cols, rows)
    u = np.ascontiguousarray(planes.transpose(2, 1, 0)).view(np.uint64).reshape(rows, cols)
    out = np.empty((rows, cols), np.float64)
    xc = np.flatnonzero(dec == XOR_COL)
    ic = np.flatnonzero(dec != XOR_COL)
    if ic.size:
        scale = _POW10[dec[ic]]
        z = u[:, ic]
        d = (z >> np.uint64(1)).view(np.int64) ^ -(z & np.uint64(1)).view(np.int64)
        ints = np.cumsum(d, axis=0)
        ints += _ref_ints(ref[ic], scale)
        out[:, ic] = np.where(ints == _ABSENT_INTEGER, np.nan, ints.astype(np.float64) / scale)
    if xc.size:
        bits = np.empty((rows + 1, xc.size), np.uint64)
        bits[0] = ref[xc].view(np.uint64)
        bits[1:] = u[:, xc]
        out[:, xc] = np.bitwise_xor.accumulate(bits, axis=0)[1:].view(np.float64)
    return out

