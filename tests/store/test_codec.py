from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from gpufleet.store import codec


def _roundtrip(v: np.ndarray) -> np.ndarray:
    out = codec.decode(codec.encode(v), v.size)
    assert out.dtype == np.float64 and out.shape == v.shape
    return out


def _bits_equal(a: np.ndarray, b: np.ndarray) -> bool:
    return np.array_equal(a.view(np.uint64), b.view(np.uint64))


finite = st.floats(allow_nan=False, allow_infinity=False, width=64)


@settings(max_examples=300, deadline=None)
@given(hnp.arrays(np.float64, st.integers(0, 300), elements=finite))
def test_arbitrary_finite_floats_roundtrip_bit_exact(v: np.ndarray) -> None:
    assert _bits_equal(_roundtrip(v), v)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(-(2**53) + 1, 2**53 - 1), min_size=0, max_size=300))
def test_integer_valued_roundtrip(xs: list[int]) -> None:
    v = np.array(xs, dtype=np.float64)
    assert _bits_equal(_roundtrip(v), v)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(-10**9, 10**9), min_size=1, max_size=300), st.integers(0, 6))
def test_fixed_decimals_roundtrip(xs: list[int], d: int) -> None:
    v = np.array(xs, dtype=np.float64) / 10.0**d
    assert _bits_equal(_roundtrip(v), v)


@settings(max_examples=100, deadline=None)
@given(hnp.arrays(np.float64, st.integers(1, 200),
                  elements=st.floats(allow_nan=True, allow_infinity=False, width=64)))
def test_nan_is_carried_outside_the_codec(v: np.ndarray) -> None:
    # The block layer strips NaN (absent) into a bitmap; what remains must round-trip.
    present = v[~np.isnan(v)]
    assert _bits_equal(_roundtrip(present), present)


@pytest.mark.parametrize(
    "values",
    [
        [0.0],
        [-0.0, 1.0],
        [5e-324, 1.7976931348623157e308, -1.7976931348623157e308],
        [1e300, -1e-300, 3.141592653589793],
        [2.0**53, 2.0**53 + 2],
        [0.1, 0.2, 0.30000000000000004],
    ],
)
def test_edge_values(values: list[float]) -> None:
    v = np.array(values)
    assert _bits_equal(_roundtrip(v), v)


def test_detects_precision_of_gpu_like_values() -> None:
    watts = np.array([245.37, 246.1, 250.0, 612.99])
    d, ints = codec.detect_decimals(watts)  # type: ignore[misc]
    assert d == 2 and ints.tolist() == [24537, 24610, 25000, 61299]
    util = np.array([0.0, 97.0, 100.0])
    assert codec.detect_decimals(util)[0] == 0  # type: ignore[index]
    assert codec.detect_decimals(np.array([1 / 3])) is None


def test_regular_counter_compresses_to_almost_nothing() -> None:
    counter = 1e9 + np.arange(3600) * 1000.0  # constant rate: delta-of-delta is all zero
    raw = codec.encode(counter)
    import zstandard

    assert len(zstandard.ZstdCompressor(level=3).compress(raw)) < 60
    assert np.array_equal(codec.decode(raw, counter.size), counter)


@settings(max_examples=150, deadline=None)
@given(st.integers(0, 40), st.integers(1, 6), st.data())
def test_vectorised_column_encoder_matches_scalar(rows: int, cols: int, data) -> None:
    kinds = [
        st.integers(-1000, 1000).map(float),
        st.integers(-10**6, 10**6).map(lambda x: x / 100),
        finite,
        st.sampled_from([0.0, -0.0, 1e15, 2.0**60]),
    ]
    columns = []
    for _ in range(cols):
        kind = data.draw(st.sampled_from(kinds))
        columns.append(data.draw(st.lists(kind, min_size=rows, max_size=rows)))
    m = np.array(columns, dtype=np.float64).T.reshape(rows, cols)
    encoded = codec.encode_columns(m)
    assert encoded == [codec.encode(m[:, j]) for j in range(cols)]
    for j, buf in enumerate(encoded):
        assert _bits_equal(codec.decode(buf, rows), np.ascontiguousarray(m[:, j]))
    together = codec.decode_columns(encoded, rows)
    assert _bits_equal(np.ascontiguousarray(together), np.ascontiguousarray(m))
