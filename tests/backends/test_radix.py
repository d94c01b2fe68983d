"""The native backend's sort keys against numpy's stable sort of the negated scores: the order pycocotools'
mergesort gives (descending, ties in input order, -0.0 tying with 0.0)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ignite_det.backends.native.radix import descending_score_key, radix_order

FLOAT32_SCORES = st.lists(st.floats(width=32, allow_nan=False, allow_infinity=False), min_size=0, max_size=60)
FLOAT64_SCORES = st.lists(st.floats(allow_nan=False, allow_infinity=False), min_size=0, max_size=60)


def _check(scores: np.ndarray) -> None:
    key, bits = descending_score_key(scores)
    np.testing.assert_array_equal(radix_order(key, bits), np.argsort(-scores, kind="stable"))


@settings(max_examples=200, deadline=None)
@given(FLOAT32_SCORES)
def test_float32_scores_take_32_bit_keys_in_mergesort_order(values):
    scores = np.array(values, dtype=np.float64)
    _check(scores)
    assert descending_score_key(scores)[1] == 32


@settings(max_examples=200, deadline=None)
@given(FLOAT64_SCORES)
def test_float64_scores_in_mergesort_order(values):
    _check(np.array(values, dtype=np.float64))


@pytest.mark.parametrize("seed", range(3))
def test_ties_signed_zeros_and_the_callers_array_left_alone(seed):
    rng = np.random.default_rng(seed)
    scores = rng.choice(np.array([0.0, -0.0, 0.5, -0.5, 1e-45, -1e-45, 0.1, 3.0e38]), 500)
    before = scores.copy()
    _check(scores)
    np.testing.assert_array_equal(scores.view(np.uint64), before.view(np.uint64))  # -0.0 stays -0.0 there
    mixed = np.r_[scores, 0.1 + 1e-12]  # one score that is no float32: every key is 64 bits
    _check(mixed)
    assert descending_score_key(mixed)[1] == 64
