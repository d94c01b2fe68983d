"""The backend interface: what :class:`~ignite_det.CocoMetric` asks of an evaluation engine, and what it gets.

A backend is created from the evaluation's parameters at every ``reset()`` and sees the data path
in three steps:

==================  ===========================================================================
``update(store)``   after each batch is stored: work that can be done per image as images arrive
                    (the native engine matches them in chunks); nothing for COCOeval
``records(store)``  at ``compute()``: per-detection arrays (axis 0 in the store's detection rows),
                    or values for some detections only (:class:`RowSubset`), that the gather
                    carries with the detections and deduplicates with them; ``{}`` when the
                    backend has nothing to carry
``evaluate(...)``   on rank 0, on every process's images: COCOeval's arrays, and each detection's
                    outcome at the operating IoU (area "all", the largest ``max_detections``) from
                    the one exact matcher (:mod:`ignite_det.backends.native.matching`)
==================  ===========================================================================

A new backend is one module with a class of this shape, plus an entry in
:data:`ignite_det.backends.BACKENDS`' registry. What every backend shares, the arrays' layout and
COCOeval's count of the ground truth to find, lives here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple, Protocol

import numpy as np

from ignite_det.params import EvalParams
from ignite_det.store import DetectionStore
from ignite_det.table import Detections, category_index


class RowSubset(NamedTuple):
    """Values for some detections only: ``rows`` (S,) ascending detection rows, ``values`` (S, ...) theirs.
    A record the gather carries and deduplicates as it does per-detection arrays, costing only its rows.

    Example:
        >>> subset = RowSubset(np.array([1, 4]), np.array([10, 40]))
        >>> subset.select(np.array([True, True, False, True, True]))  # row 2 dropped: row 4 becomes 3
        RowSubset(rows=array([1, 3]), values=array([10, 40]))
    """

    rows: np.ndarray
    values: np.ndarray

    def select(self, kept: np.ndarray) -> RowSubset:
        """The subset among the detections where ``kept`` (bool per detection row), in their new rows."""
        new_row = np.cumsum(kept) - 1
        keep = kept[self.rows]
        return RowSubset(new_row[self.rows[keep]], self.values[keep])


# By name, what a backend gathers beside the detections: per-detection arrays, detections along axis 0, or
# values for some detections (RowSubset).
Records = Mapping[str, np.ndarray | RowSubset]


@dataclass(frozen=True)
class CocoArrays:
    """COCOeval's accumulated arrays, axes as in pycocotools' ``accumulate``.

    ``precision`` and ``scores``: (T, R, K, A, M); ``recall``: (T, K, A, M); -1 where undefined.
    """

    precision: np.ndarray
    recall: np.ndarray
    scores: np.ndarray


@dataclass(frozen=True)
class Evaluation:
    """What a backend's ``evaluate`` returns.

    ``outcome``: int8 (N,) per detection at the operating IoU threshold, area "all": 1 a true positive,
    0 a false positive, -1 not counted (ignored, beyond ``max_detections[-1]``, or of a category that
    is not evaluated). ``by_score``: detection rows by descending score (ties in any order), including
    every counted one, for the operating point. ``outcomes``: int8 (T, N) the same at every IoU
    threshold, for the per-image counts; ``kept``: bool (N,) ranked within ``max_detections[-1]`` in
    its (image, category) cell. ``by_class``: where the backend has it, rows category by category (in
    ``det_k`` order), each by descending score, including every counted one.

    ``coco_arrays``: COCOeval's arrays, or a call that waits for them when the backend computes them in the
    background (:class:`~ignite_det.parallel.Background`), so that the caller can use the rest meanwhile;
    :attr:`arrays` has them either way.
    """

    coco_arrays: CocoArrays | Callable[[], CocoArrays]
    outcome: np.ndarray
    by_score: np.ndarray
    outcomes: np.ndarray
    kept: np.ndarray
    by_class: np.ndarray | None = None

    @property
    def arrays(self) -> CocoArrays:
        """COCOeval's arrays, once computed."""
        return self.coco_arrays if isinstance(self.coco_arrays, CocoArrays) else self.coco_arrays()


class EvaluationBackend(Protocol):
    """One evaluation's engine; see the module docstring for when each method runs.

    ``needs_geometry``: whether ``evaluate`` reads the detections' boxes, masks or keypoints; if not, only
    their scores, labels and images travel to rank 0 under distribution (with the records).
    """

    needs_geometry: bool

    def __init__(self, params: EvalParams, operating_iou: int) -> None:
        """``operating_iou``: the index in ``params.iou_thresholds`` of the operating point's IoU."""

    @staticmethod
    def check_installed() -> None:
        """Raise ModuleNotFoundError, naming the pip command, when the backend's library is missing."""

    def update(self, store: DetectionStore) -> None: ...

    def records(self, store: DetectionStore) -> Records: ...

    def evaluate(self, d: Detections, records: Records, category_ids: np.ndarray, det_k: np.ndarray) -> Evaluation:
        """``d`` holds each image once; ``records`` are in its detection rows; ``det_k`` is each
        detection's index in the sorted ``category_ids`` (-1: not evaluated)."""
        ...


def non_ignored_gt_counts(d: Detections, cat_ids: Sequence[int] | np.ndarray, params: EvalParams) -> np.ndarray:
    """accumulate's npig per (category, area range): ground truths neither crowd nor out of range."""
    counts = np.zeros((len(cat_ids), len(params.area_ranges)), dtype=np.int64)
    k = category_index(d.gt_labels, np.asarray(cat_ids, dtype=np.int64))
    for a, (lo, hi) in enumerate(params.area_ranges):
        counted = (k >= 0) & ~d.gt_ignored() & (d.gt_area >= lo) & (d.gt_area <= hi)
        counts[:, a] = np.bincount(k[counted], minlength=len(cat_ids))
    return counts
