"""Stable sorts of the native backend as radix sorts on 16-bit digits.

COCOeval's orders are stable sorts (mergesort) by score. numpy sorts 16-bit integers stably by
radix, several times faster than its comparison sort on floats, so keys are built as unsigned
integers that order like the values and sorted digit by digit, least significant first.
"""

from __future__ import annotations

import numpy as np


def descending_score_key(scores: np.ndarray) -> tuple[np.ndarray, int]:
    """Unsigned keys in descending score order, equal for equal scores (so -0.0 and 0.0 tie, as in
    a float sort), and how many bits they use: 32 (uint32 keys) when every score is a float32 (a
    model's output usually is), else 64 (uint64 keys).

    Example:
        >>> keys, bits = descending_score_key(np.array([0.5, -1.0, 2.0, 0.0, -0.0]))
        >>> np.argsort(keys, kind="stable").tolist(), bits
        ([2, 0, 3, 4, 1], 32)
    """
    # Built in place in one new array: at LVIS size (3 million scores) each temporary costs tens of ms.
    with np.errstate(over="ignore"):  # a score beyond float32's range becomes inf: then not equal, 64 bits
        narrow = scores.astype(np.float32)
    if np.array_equal(narrow, scores):  # -0.0 equals 0.0 here
        narrow += np.float32(0.0)  # -0.0 becomes 0.0
        key, width = narrow.view(np.uint32), 32
    else:
        key, width = (scores + 0.0).view(np.uint64), 64
    unsigned = key.dtype.type
    # IEEE bits order like the values once a positive number's sign bit is set and a negative one's
    # bits are all flipped; the descending key is the complement of that: a positive number's bits with
    # all but the sign flipped, a negative number's bits as they are.
    flip = key >> unsigned(width - 1)  # 1 for a negative number, else 0
    flip -= unsigned(1)  # then 0, else all bits
    flip &= unsigned(2 ** (width - 1) - 1)  # all but the sign, for a positive number
    key ^= flip
    return key, width


def radix_order(keys: np.ndarray, bits: int) -> np.ndarray:
    """A stable argsort of unsigned integer keys below ``2**bits``: stable sorts on 16-bit digits,
    least significant first (numpy sorts 16-bit integers stably by radix, several times faster
    than a comparison sort)."""
    order: np.ndarray | None = None
    unsigned = keys.dtype.type
    for shift in range(0, max(bits, 1), 16):
        current = keys if order is None else keys[order]
        digits = (current >> unsigned(shift) if shift else current).astype(np.uint16)  # the cast keeps 16 bits
        step = np.argsort(digits, kind="stable")
        order = step if order is None else order[step]
    assert order is not None
    return order
