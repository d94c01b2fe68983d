"""Stable sorts of the native backend as radix sorts on 16-bit digits.

COCOeval's orders are stable sorts (mergesort) by score. numpy sorts 16-bit integers stably by
radix, several times faster than its comparison sort on floats, so keys are built as unsigned
integers that order like the values and sorted digit by digit, least significant first.
"""

from __future__ import annotations

import numpy as np


def descending_score_key(scores: np.ndarray) -> tuple[np.ndarray, int]:
    """Unsigned keys in descending score order, equal for equal scores (so -0.0 and 0.0 tie, as in
    a float sort), and how many bits they use: 32 when every score is a float32 (a model's output
    usually is), else 64."""
    scores = scores + 0.0  # -0.0 becomes 0.0
    narrow = scores.astype(np.float32)
    if np.array_equal(narrow, scores):
        bits, width = narrow.view(np.uint32).astype(np.uint64), 32
    else:
        bits, width = scores.view(np.uint64), 64
    sign = np.uint64(1) << np.uint64(width - 1)
    full = np.uint64(2**width - 1)
    ascending = np.where(bits & sign, ~bits & full, bits | sign)  # IEEE bits ordered like the values
    return full - ascending, width


def radix_order(keys: np.ndarray, bits: int) -> np.ndarray:
    """A stable argsort of unsigned integer keys below ``2**bits``: stable sorts on 16-bit digits,
    least significant first (numpy sorts 16-bit integers stably by radix, several times faster
    than a comparison sort)."""
    order = np.arange(len(keys))
    for shift in range(0, max(bits, 1), 16):
        digits = ((keys[order] >> np.uint64(shift)) & np.uint64(0xFFFF)).astype(np.uint16)
        order = order[np.argsort(digits, kind="stable")]
    return order
