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

    @property
    def counting_threshold(self) -> float:
        """The lowest score counted at this operating point: ``threshold``, or ``-inf`` (every detection)
        when there is none (nothing detected, or no ground truth).

        The one name of the threshold from which the confusion matrix counts detections
        (``CocoResult.confusion_score_threshold`` is its deprecated alias).

        >>> F1Point(0.4, 0.8, 0.75, 0.774).counting_threshold, F1Point(*[float("nan")] * 4).counting_threshold
        (0.4, -inf)
        """
        return self.threshold if math.isfinite(self.threshold) else -math.inf

    def as_array(self) -> np.ndarray:
        return np.array([self.threshold, self.precision, self.recall, self.f1])


def best_f1_points(
    scores: np.ndarray,
    category_index: np.ndarray,
    outcome: np.ndarray,
    num_gt: np.ndarray,
    by_score: np.ndarray,
    by_class: np.ndarray | None = None,
) -> tuple[list[F1Point], F1Point]:
    """The best-F1 operating point of each category (``num_gt`` per category) and of all pooled.

    ``by_score``: rows in descending score order (ties in any order) that include every counted
    detection (the backend's :class:`~ignite_det.backends.base.Evaluation` has them sorted);
    ``by_class``: the same category by category, when the backend has them so (else they are sorted here).
    """
    counted = (outcome >= 0) & (category_index >= 0)
    rows = _counted_by_score(counted, by_score)
    if by_class is None:
        k = category_index[rows]
        by_class = rows[np.argsort(k.astype(np.uint16) if len(k) and k.max() < 2**16 else k, kind="stable")]
    else:
        by_class = _counted_by_score(counted, by_class)
    bounds = np.searchsorted(category_index[by_class], np.arange(len(num_gt) + 1))
    per_class = _best(scores[by_class], outcome[by_class] == 1, bounds, num_gt)
    pooled = _best(scores[rows], outcome[rows] == 1, np.array([0, len(rows)]), np.array([num_gt.sum()]))
    return per_class, pooled[0]


def f1_curve(scores: np.ndarray, outcome: np.ndarray, num_gt: int, by_score: np.ndarray) -> np.ndarray:
    """Pooled (threshold, precision, recall, f1) at 101 thresholds spanning [min(0, lowest), max(1, highest)].

    Returns a (101, 4) array; precision is 0 where no detection passes the threshold; without
    ground truth, recall and F1 are NaN (undefined) and precision is 0 (every detection is false).
    ``by_score`` as for :func:`best_f1_points`.
    """
    rows = _counted_by_score(outcome >= 0, by_score)
    negated = np.negative(scores[rows])  # ascending, as searchsorted needs
    low = min(0.0, -float(negated.max())) if len(rows) else 0.0
    high = max(1.0, -float(negated.min())) if len(rows) else 1.0
    thresholds = np.linspace(low, high, CURVE_POINTS)
    kept = np.searchsorted(negated, -thresholds, side="right")  # detections with score >= threshold
    cum_tp = np.zeros(len(rows) + 1, dtype=np.int64)  # exact integers: then read at the thresholds only
    np.cumsum(outcome[rows], dtype=np.int64, out=cum_tp[1:])
    cum_tp = cum_tp[kept].astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(kept > 0, cum_tp / np.maximum(kept, 1), 0.0)
        recall = cum_tp / num_gt if num_gt else np.full(len(kept), np.nan)
        f1 = np.where(np.isnan(recall), np.nan, _f1(precision, recall))
    return np.column_stack([thresholds, precision, recall, f1])


def _counted_by_score(counted: np.ndarray, by_score: np.ndarray) -> np.ndarray:
    return by_score[counted[by_score]]


def _best(scores: np.ndarray, is_tp: np.ndarray, bounds: np.ndarray, num_gt: np.ndarray) -> list[F1Point]:
    """The best-F1 point of each segment ``bounds[s]:bounds[s + 1]`` of detections sorted by
    descending score, all segments at once.

    A threshold keeps whole ties, so only the last detection of each score is a candidate; of equal
    F1s the first (the highest threshold) wins. Between true positives F1 only falls (``2 tp / (kept +
    num_gt)``), so it peaks where a tie that holds a true positive ends: those are the candidates, with
    each segment's first tie (without a true positive F1 is 0 throughout, and the first wins).
    """
    n, segments = len(scores), len(num_gt)
    last_of_score = np.ones(n, dtype=bool)  # a segment's last detection too
    np.not_equal(scores[1:], scores[:-1], out=last_of_score[:-1])
    segment_ends = bounds[1:]
    last_of_score[segment_ends[segment_ends > 0] - 1] = True
    tie_ends = np.flatnonzero(last_of_score)
    tp_before = np.zeros(n + 1, dtype=np.int64)  # true positives before each place
    np.cumsum(is_tp, out=tp_before[1:])
    tp_at_end = tp_before[tie_ends + 1]
    candidate = np.empty(len(tie_ends), dtype=bool)  # the tie holds a true positive
    np.not_equal(tp_at_end[1:], tp_at_end[:-1], out=candidate[1:])
    candidate[:1] = tp_at_end[:1] > 0
    candidate[np.searchsorted(tie_ends, bounds[:-1][bounds[:-1] < n])] = True  # each segment's first tie
    at = tie_ends[candidate]
    where = np.searchsorted(bounds, at, side="right") - 1  # each one's segment
    tp = tp_at_end[candidate] - tp_before[bounds[where]]
    kept = at + 1 - bounds[where]
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = tp / kept
        recall = tp / num_gt[where]
        f1 = _f1(precision, recall)
    starts = np.searchsorted(where, np.arange(segments + 1))
    has_any = starts[:-1] < starts[1:]
    best = np.full(segments, -1)
    if has_any.any():
        top = np.maximum.reduceat(f1, starts[:-1][has_any])
        first_top = np.where(f1 == np.repeat(top, np.diff(starts)[has_any]), np.arange(len(f1)), len(f1))
        best[has_any] = np.minimum.reduceat(first_top, starts[:-1][has_any])
    thresholds = scores[at]
    return [_point(int(b), thresholds, precision, recall, f1, int(g)) for b, g in zip(best, num_gt)]


def _point(
    best: int, thresholds: np.ndarray, precision: np.ndarray, recall: np.ndarray, f1: np.ndarray, num_gt: int
) -> F1Point:
    if num_gt == 0:
        return F1Point(math.nan, math.nan, math.nan, math.nan)
    if best < 0:
        return F1Point(math.nan, 0.0, 0.0, 0.0)
    return F1Point(float(thresholds[best]), float(precision[best]), float(recall[best]), float(f1[best]))


def _f1(precision: np.ndarray, recall: np.ndarray) -> np.ndarray:
    total = precision + recall
    return np.where(total > 0, 2 * precision * recall / np.where(total > 0, total, 1), 0.0)
