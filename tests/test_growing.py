"""GrowingArray: what was appended, in order, along any axis; a view taken earlier survives later growth."""

from __future__ import annotations

import numpy as np
import pytest

from ignite_det.growing import GrowingArray


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_appends_equal_one_concatenation(axis):
    rng = np.random.default_rng(axis)
    shape = [3, 2, 4]
    parts = []
    for count in (0, 1, 5, 17, 0, 40, 3):  # across several regrowths, with empty parts
        shape[axis] = count
        parts.append(rng.integers(-100, 100, shape).astype(np.int8))
    array = GrowingArray.like(parts[0], axis=axis)
    for part in parts:
        array.append(part)
    expected = np.concatenate(parts, axis=axis)
    np.testing.assert_array_equal(array.values, expected)
    assert array.values.dtype == np.int8 and len(array) == expected.shape[axis]


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
