"""Precision, recall and F1 at a confidence threshold: the detector's operating point.

Built from COCOeval's own per-detection matching at one IoU threshold (area "all", the largest
maxDets): a detection is a true positive, a false positive, or not counted (matched to a crowd
region, or beyond maxDets). Recall is relative to the non-crowd ground truths. A threshold keeps
the detections whose score is at least the threshold.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

CURVE_POINTS = 101


@dataclass(frozen=True)
class F1Point:
    """Precision, recall and F1 of the detections scoring at least ``threshold``.

    When there is nothing to count, :attr:`status` says why, in words:

    - ``"no ground truth"``: recall, hence F1, is undefined; all four are NaN;
    - ``"no detection"``: ground truth exists but no detection is counted (none was made, or each
      one fell on a crowd region): there is no threshold (NaN), and precision, recall and F1 are 0.
    """

    threshold: float
    precision: float
    recall: float
    f1: float

    @property
    def status(self) -> str:
        """``"ok"``, ``"no ground truth"`` or ``"no detection"`` (see the class docstring)."""
        if math.isnan(self.recall):
            return "no ground truth"
        return "no detection" if math.isnan(self.threshold) else "ok"

    def describe(self, digits: int = 3) -> str:
        """``threshold=0.412 precision=0.800 recall=0.750 F1=0.774``, or the status when there is nothing to count."""
        if self.status != "ok":
            return self.status
        return (
            f"threshold={self.threshold:.{digits}f} precision={self.precision:.{digits}f} "
            f"recall={self.recall:.{digits}f} F1={self.f1:.{digits}f}"
        )

    def as_array(self) -> np.ndarray:
        return np.array([self.threshold, self.precision, self.recall, self.f1])


def best_f1_points(
    scores: np.ndarray, category_index: np.ndarray, outcome: np.ndarray, num_gt: np.ndarray
) -> tuple[list[F1Point], F1Point]:
    """The best-F1 operating point of each category (``num_gt`` per category) and of all pooled."""
    counted = np.flatnonzero((outcome >= 0) & (category_index >= 0))
    by_class = counted[np.argsort(category_index[counted], kind="stable")]
    bounds = np.searchsorted(category_index[by_class], np.arange(len(num_gt) + 1))
    per_class = [
        _best(scores[by_class[lo:hi]], outcome[by_class[lo:hi]], int(n))
        for lo, hi, n in zip(bounds[:-1], bounds[1:], num_gt)
    ]
    pooled = _best(scores[counted], outcome[counted], int(num_gt.sum()))
    return per_class, pooled


def f1_curve(scores: np.ndarray, outcome: np.ndarray, num_gt: int) -> np.ndarray:
    """Pooled (threshold, precision, recall, f1) at 101 thresholds spanning [min(0, lowest), max(1, highest)].

    Returns a (101, 4) array; precision is 0 where no detection passes the threshold; without
    ground truth, recall and F1 are NaN (undefined) and precision is 0 (every detection is false).
    """
    counted = outcome >= 0
    s, tp = scores[counted], outcome[counted].astype(np.float64)
    low = min(0.0, float(s.min())) if len(s) else 0.0
    high = max(1.0, float(s.max())) if len(s) else 1.0
    thresholds = np.linspace(low, high, CURVE_POINTS)
    order = np.argsort(-s, kind="mergesort")
    cum_tp = np.r_[0.0, np.cumsum(tp[order])]
    kept = np.searchsorted(-s[order], -thresholds, side="right")  # detections with score >= threshold
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(kept > 0, cum_tp[kept] / np.maximum(kept, 1), 0.0)
        recall = cum_tp[kept] / num_gt if num_gt else np.full(len(kept), np.nan)
        f1 = np.where(np.isnan(recall), np.nan, _f1(precision, recall))
    return np.column_stack([thresholds, precision, recall, f1])


def _best(scores: np.ndarray, outcome: np.ndarray, num_gt: int) -> F1Point:
    if num_gt == 0:
        return F1Point(math.nan, math.nan, math.nan, math.nan)
    if len(scores) == 0:
        return F1Point(math.nan, 0.0, 0.0, 0.0)
    order = np.argsort(-scores, kind="mergesort")
    sorted_scores = scores[order]
    tp = np.cumsum(outcome[order] == 1)
    kept = np.arange(1, len(order) + 1)
    last_of_score = np.r_[sorted_scores[1:] != sorted_scores[:-1], True]  # a threshold keeps whole ties
    tp, kept, thresholds = tp[last_of_score], kept[last_of_score], sorted_scores[last_of_score]
    precision = tp / kept
    recall = tp / num_gt
    f1 = _f1(precision, recall)
    best = int(np.argmax(f1))  # the first maximum: the highest threshold reaching the best F1
    return F1Point(float(thresholds[best]), float(precision[best]), float(recall[best]), float(f1[best]))


def _f1(precision: np.ndarray, recall: np.ndarray) -> np.ndarray:
    total = precision + recall
    return np.where(total > 0, 2 * precision * recall / np.where(total > 0, total, 1), 0.0)
