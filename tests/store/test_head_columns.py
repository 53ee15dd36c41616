"""A head segment finds a series' column by its id, whatever order its ids came in."""

from __future__ import annotations

import numpy as np

from gpufleet.store.head import Segment


def _ids(*xs: int) -> np.ndarray:
    return np.array(xs, np.int64)


def test_column_of_known_and_unknown_sids_when_ids_are_not_ascending() -> None:
    seg = Segment(_ids(5, 3, 9))
    assert [seg.column(s) for s in (5, 3, 9)] == [0, 1, 2]
    assert [seg.column(s) for s in (0, 4, 10, 100)] == [None, None, None, None]


def test_columns_for_adds_missing_sids_in_the_order_given() -> None:
    seg = Segment(_ids(1, 2, 3))
    seg.append(10.0, np.array([1.0, 2.0, 3.0]))
    cols = seg.columns_for(_ids(3, 7, 0))
    assert cols is not None and cols.tolist() == [2, 3, 4]
    assert seg.sids.tolist() == [1, 2, 3, 7, 0]
    assert seg.column(0) == 4 and seg.column(7) == 3 and seg.column(4) is None
    seg.append(15.0, np.array([30.0, 70.0, 0.5]), cols)
    vals = seg.values()
    assert np.isnan(vals[0, 3:]).all() and vals[1, 2:].tolist() == [30.0, 70.0, 0.5]
    assert np.isnan(vals[1, :2]).all()


def test_columns_for_a_prefix_needs_no_columns_and_an_empty_segment_grows() -> None:
    seg = Segment(_ids(4, 8, 6))
    assert seg.columns_for(_ids(4, 8)) is None
    empty = Segment(_ids())
    assert empty.column(1) is None
    assert empty.columns_for(_ids(2, 1)) is None
    assert empty.sids.tolist() == [2, 1] and empty.column(1) == 1
