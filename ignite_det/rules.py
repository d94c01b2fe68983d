"""The value rules of COCO data, in one table: the metric's input (:mod:`ignite_det.inputs`) and the command
line's COCO files (:mod:`ignite_det.cli.coco_json`) both check their numbers against these.

Each reader only says where a value came from (``y[2]['area']``, ``GT.json: annotations[7]['area']``);
what a value must be, and the words for it, are here. The structure of a mask's RLE is checked in
:mod:`ignite_det.rle` (:func:`~ignite_det.rle.check_rle_structure`, :func:`~ignite_det.rle.compressed_rle`),
by both readers too.

================  ====================================================================  ==================
rule              broken by                                                             for
================  ====================================================================  ==================
:data:`FINITE`    NaN, inf                                                              scores, areas, boxes,
                                                                                        keypoints
:data:`ID_RANGE`  magnitude 2**53 or more: ids and labels travel as float64             ids, labels
:data:`AREA`      negative                                                              areas
:data:`CROWD`     anything but 0 and 1                                                  ``iscrowd``
:data:`BOX_SIZE`  a negative width or height (boxes in xywh)                            boxes
:data:`VISIBLE`   anything but 0, 1 and 2                                               a ground truth's
                                                                                        keypoint visibility
================  ====================================================================  ==================

Example:
    >>> import numpy as np
    >>> CROWD.broken(np.array([0.0, 1.0, 0.5])).tolist()
    [False, False, True]
    >>> CROWD.requirement
    'must hold only 0 and 1'
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

# Ids travel through float64 tensors between processes, which hold integers exactly up to 2**53.
MAX_ID = 2**53


@dataclass(frozen=True)
class Rule:
    """A rule on values: ``broken`` marks the values that break it (element-wise, or per box row for
    :data:`BOX_SIZE`); ``requirement`` says what is asked, to follow the value's name in a message."""

    broken: Callable[[np.ndarray], np.ndarray]
    requirement: str


FINITE = Rule(lambda values: ~np.isfinite(values), "must be finite")
ID_RANGE = Rule(lambda values: np.abs(values) >= MAX_ID, "must be smaller than 2**53 in magnitude")
AREA = Rule(lambda values: values < 0, "must be >= 0")
CROWD = Rule(lambda values: (values != 0) & (values != 1), "must hold only 0 and 1")
BOX_SIZE = Rule(lambda xywh: (xywh[:, 2] < 0) | (xywh[:, 3] < 0), "must have width >= 0 and height >= 0")
VISIBLE = Rule(lambda values: (values != 0) & (values != 1) & (values != 2), "must have visibility 0, 1 or 2")


def first_broken(rule: Rule, values: np.ndarray) -> int | None:
    """The first row of ``values`` holding a value that breaks ``rule`` (rows: the first axis), or None."""
    bad = rule.broken(values)
    rows = bad.any(axis=tuple(range(1, bad.ndim)))  # a row is bad if any of its values is
    return int(np.argmax(rows)) if rows.any() else None
