"""GrowingArray: what was appended, in order, rows of any shape; a view taken earlier survives later growth."""

from __future__ import annotations

import numpy as np
import pytest

from ignite_det.growing import GrowingArray


@pytest.mark.parametrize("row_shape", [(), (4,), (2, 4)])
def test_appends_equal_one_concatenation(row_shape):
    rng = np.random.default_rng(len(row_shape))
    counts = (0, 1, 5, 17, 0, 40, 3)  # across several regrowths, with empty parts
    parts = [rng.integers(-100, 100, (count, *row_shape)).astype(np.int8) for count in counts]
    array = GrowingArray.like(parts[0])
    for part in parts:
        array.append(part)
    expected = np.concatenate(parts)
    np.testing.assert_array_equal(array.values, expected)
    assert array.values.dtype == np.int8 and len(array) == len(expected)


def test_an_earlier_view_is_unchanged_by_later_appends():
    array = GrowingArray(np.dtype(np.float64), (0,))
    array.append(np.arange(16.0))
    early = array.values
    array.append(np.arange(100.0) + 1000)  # replaces the buffer
    array.append(np.arange(3.0))  # writes after the rows held
    np.testing.assert_array_equal(early, np.arange(16.0))
    np.testing.assert_array_equal(array.values[:16], early)


def test_object_rows():
    array = GrowingArray(np.dtype(object), (0,))
    for chunk in ([b"a", b""], [b"bc"] * 20):
        array.append(np.array(chunk, dtype=object))
    assert array.values.tolist() == [b"a", b""] + [b"bc"] * 20


def test_broadcast_rows_are_kept_as_one_until_another_row_arrives():
    """Rows that come as a broadcast of one row (the masks of boxes: none) are held as that row; any other row,
    broadcast or not, turns them into ordinary rows. Either way the values are those appended."""
    row = np.array([[7, 8]])

    def broadcast(count: int, value: np.ndarray = row) -> np.ndarray:
        return np.broadcast_to(value, (count, *value.shape[1:]))

    other = row + 1
    single = np.array(row)  # one row, not a broadcast: equal to the held one, so it joins it
    parts = [broadcast(5), broadcast(0), single, broadcast(30)]
    array = GrowingArray.like(row)
    for part in parts:
        array.append(part)
    held = array.values
    assert held.strides[0] == 0 and not held.flags.writeable  # still one row
    np.testing.assert_array_equal(held, np.concatenate(parts))
    parts += [broadcast(3, other), broadcast(20), np.concatenate([row, other])]
    for part in parts[4:]:
        array.append(part)
    np.testing.assert_array_equal(array.values, np.concatenate(parts))
    assert array.values.strides[0] != 0
    np.testing.assert_array_equal(held, np.concatenate(parts[:4]))  # an earlier view is unchanged


def test_rows_that_start_as_ordinary_rows_stay_so():
    array = GrowingArray(np.dtype(object), (0,))
    array.append(np.array([b"a"], dtype=object))
    array.append(np.broadcast_to(np.array([b""], dtype=object), (4,)))
    assert array.values.tolist() == [b"a"] + [b""] * 4
    assert array.values.flags.writeable
