"""COCOeval's ``accumulate`` on match records: a sort and some cumulative counts, all categories at once.

For each (area range, maxDets), pycocotools sorts a category's counted detections by descending
score (a stable sort over images in sorted-id order, each image's detections in their cell order),
and at each IoU threshold takes cumulative true and false positive counts ``tp``, ``fp``, recall
``tp / npig``, precision ``tp / (fp + tp + eps)`` made non-increasing from the right, and samples
both at the recall thresholds with ``searchsorted`` (cocoeval.py:354-409).

The same numbers follow from the true positives alone, with integers until the last division:

- the first position where recall reaches a threshold is where the ``c``-th true positive is, for
  the smallest ``c`` with ``c / npig >= threshold`` (a float64 division is monotone in ``c``), or
  the first detection when ``c`` is 0;
- between true positives precision only falls, so the interpolated precision at the ``c``-th true
  positive is the largest precision at it or any later true positive.

Precision is computed as pycocotools computes it, ``c / ((fp + c) + eps)`` in float64, so the
arrays are equal to the last bit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ignite_det.backends.base import CocoArrays, non_ignored_gt_counts
from ignite_det.backends.native.matching import FALSE_POSITIVE, NOT_COUNTED, TRUE_POSITIVE, MatchRecords
from ignite_det.backends.native.radix import descending_score_key, radix_order
from ignite_det.params import EvalParams
from ignite_det.table import Detections

_EPS = np.spacing(1)


@dataclass(frozen=True)
class Ranking:
    """The evaluated detections (of an evaluated category, within ``max_detections[-1]`` of their
    cell) in COCOeval's accumulation order.

    ``by_score``: rows by descending score, ties by image id, then rank in the cell (what
    pycocotools' stable sort over its per-image lists gives). ``by_class``: the same, category by
    category (a stable sort of ``by_score``), as ``accumulate`` takes them.
    """

    by_score: np.ndarray
    by_class: np.ndarray

    @staticmethod
    def create(d: Detections, rank: np.ndarray, det_k: np.ndarray, max_det: int) -> Ranking:
        """Stable radix sorts, least significant key first: image id, score, category.

        Rows come image by image, each image's in arrival order; within a cell, detections of equal
        score are in rank order already (a stable sort ranked them), so ties need no rank key.
        """
        rows = np.flatnonzero((det_k >= 0) & (rank < max_det))
        image_order = np.empty(len(d.image_ids), dtype=np.uint64)
        image_order[np.argsort(d.image_ids, kind="stable")] = np.arange(len(d.image_ids))
        row_image = image_order[d.det_position[rows]]
        if np.any(row_image[1:] < row_image[:-1]):  # images did not arrive in id order
            rows = rows[radix_order(row_image, len(d.image_ids).bit_length())]
        key, bits = descending_score_key(d.det_scores[rows])
        by_score = rows[radix_order(key, bits)]
        k = det_k[by_score]
        return Ranking(by_score, by_score[radix_order(k.astype(np.uint64), int(k.max(initial=0)).bit_length())])


def accumulate_records(
    d: Detections,
    records: MatchRecords,
    det_k: np.ndarray,
    category_ids: np.ndarray,
    params: EvalParams,
    ranking: Ranking,
) -> CocoArrays:
    """pycocotools' ``precision``, ``recall`` and ``scores`` from the records of ``d``'s detections.

    ``d`` holds each image once (positions 0..I-1); ``records`` and ``det_k`` (each detection's
    index in ``category_ids``, -1 if not evaluated) are in its detection row order; ``ranking`` is
    :meth:`Ranking.create` on them.
    """
    t_count, r_count = len(params.iou_thresholds), len(params.rec_thresholds)
    k_count, a_count, m_count = len(category_ids), len(params.area_ranges), len(params.max_detections)
    # Filled area range by area range: laid out (A, M, ...) and returned as transposed views.
    precision = np.empty((a_count, m_count, t_count, r_count, k_count))
    scores = np.empty_like(precision)
    recall = np.empty((a_count, m_count, t_count, k_count))
    npig = non_ignored_gt_counts(d, category_ids, params)  # (K, A)
    rows = ranking.by_class
    all_k, all_scores = det_k[rows], d.det_scores[rows]
    firsts = [
        _FirstDetections.of(all_k, all_scores, keep, k_count)
        for keep in _within(records.rank[rows], params.max_detections)
    ]
    buffer = np.empty(len(rows), dtype=np.int64 if len(rows) >= 2**31 else np.int32)
    r_order = np.argsort(params.rec_thresholds, kind="stable")
    for a in range(a_count):
        area_rows = _counted_rows(records.outcome[a], rows)
        rank, area_k, area_scores = records.rank[area_rows], det_k[area_rows], d.det_scores[area_rows]
        missing = npig[:, a] == 0  # no ground truth to find: -1, as pycocotools leaves it
        needed = _tp_needed(npig[:, a], params.rec_thresholds[r_order])
        outcome = np.take(records.outcome[a], area_rows, axis=1)  # (T, n) in accumulation order
        for m, keep in enumerate(_within(rank, params.max_detections)):
            p, r, s = _curves(
                outcome if keep is None else np.compress(keep, outcome, axis=1),
                area_k if keep is None else area_k[keep],
                area_scores if keep is None else area_scores[keep],
                firsts[m],
                npig[:, a],
                needed,
                r_order,
                buffer,
            )
            np.copyto(precision[a, m], np.where(missing, -1.0, p))
            np.copyto(recall[a, m], np.where(missing, -1.0, r))
            np.copyto(scores[a, m], np.where(missing, -1.0, s))
    return CocoArrays(precision.transpose(2, 3, 4, 0, 1), recall.transpose(2, 3, 0, 1), scores.transpose(2, 3, 4, 0, 1))


def _within(rank: np.ndarray, max_detections: Sequence[int]) -> list[np.ndarray | None]:
    """Per maxDets, which of the rows ranked ``rank`` in their cell it counts; None for the largest (all of them)."""
    return [rank < limit if m < len(max_detections) - 1 else None for m, limit in enumerate(max_detections)]


# An area range's rows are cut to those it counts when that leaves out at least this share of them.
_CUT_SHARE = 0.25


def _counted_rows(outcome: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``rows`` without the detections counted at no IoU threshold of one area range (``outcome``: (T, N)):
    they add neither true nor false positives, and the area ranges of small, medium and large objects leave
    out most detections."""
    counted = outcome.max(axis=0, initial=NOT_COUNTED) != NOT_COUNTED
    if np.count_nonzero(counted) > (1 - _CUT_SHARE) * len(counted):
        return rows
    return rows[counted[rows]]


@dataclass(frozen=True)
class _FirstDetections:
    """Per category, whether it has a detection among the (area range's, maxDets') evaluated ones, counted or
    not, and the score of the first one: what pycocotools reports at a recall threshold of 0, where
    ``searchsorted`` stops at its first detection whatever that one's outcome."""

    exists: np.ndarray
    score: np.ndarray

    @staticmethod
    def of(det_k: np.ndarray, det_scores: np.ndarray, keep: np.ndarray | None, k_count: int) -> _FirstDetections:
        """From the detections sorted by category, then as COCOeval sorts them, those ``keep`` selects (all: None)."""
        if keep is not None:
            det_k, det_scores = det_k[keep], det_scores[keep]
        first = np.searchsorted(det_k, np.arange(k_count))
        exists = np.searchsorted(det_k, np.arange(k_count), side="right") > first
        score = det_scores[np.minimum(first, len(det_scores) - 1)] if len(det_scores) else np.zeros(k_count)
        return _FirstDetections(exists, score)


def _curves(
    outcome: np.ndarray,
    det_k: np.ndarray,
    det_scores: np.ndarray,
    firsts: _FirstDetections,
    npig: np.ndarray,
    needed: np.ndarray,
    r_order: np.ndarray,
    buffer: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Precision (T, R, K), recall (T, K) and scores (T, R, K) of one (area range, maxDets).

    ``outcome`` (T, n) holds the counted detections sorted by category, then as COCOeval sorts them
    (detections counted at no threshold may be left out: ``firsts`` is taken before that).
    Segment ``t * K + k`` is category ``k`` at threshold ``t``. ``needed`` (K, R): true positives
    needed to reach each recall threshold, thresholds in ascending order ``r_order``. ``buffer``:
    scratch of n integers or more, reused across calls (a fresh array this size costs more in page
    faults than the sum).
    """
    t_count, n = outcome.shape
    k_count = len(npig)
    first = np.searchsorted(det_k, np.arange(k_count))
    tp = _TruePositives(outcome, det_k, first, buffer)
    recall = tp.count.reshape(t_count, k_count) / np.maximum(npig, 1)

    needed = np.tile(needed, (t_count, 1))  # (T*K, R)
    seg_first = tp.first[:, None]
    seg_end = seg_first + tp.count[:, None]
    valid = np.where(needed == 0, np.tile(firsts.exists, t_count)[:, None], needed <= tp.count[:, None])
    at = np.where(valid, seg_first + np.maximum(needed - 1, 0), seg_end)  # index into the true positives

    # Interpolated precision: the largest precision at or after each query, within its segment.
    # reduceat's pieces run from one query to the next (or the segment's end); an empty piece gives
    # the true positive at its start, which is in the query's suffix anyway.
    bounds = np.concatenate([at, seg_end], axis=1)
    pieces = np.maximum.reduceat(np.r_[tp.precision, -np.inf], bounds.ravel()).reshape(bounds.shape)[:, :-1]
    pieces = np.where(at < seg_end, pieces, -np.inf)
    q = np.maximum.accumulate(pieces[:, ::-1], axis=1)[:, ::-1]
    q = np.where(valid, np.maximum(q, 0.0), 0.0)  # no true positive yet: pycocotools' precision is 0
    first_score = np.tile(firsts.score, t_count)
    tp_score = np.r_[det_scores[tp.columns], 0.0][at]
    ss = np.where(valid, np.where(needed == 0, first_score[:, None], tp_score), 0.0)

    # Back to the given threshold order; pycocotools stops at the first threshold out of reach.
    reached = np.empty_like(valid)
    reached[:, r_order] = valid
    reached = np.logical_and.accumulate(reached, axis=1)
    precision, score = np.empty_like(q), np.empty_like(ss)
    precision[:, r_order], score[:, r_order] = q, ss
    precision, score = (
        np.where(reached, x, 0.0).reshape(t_count, k_count, len(r_order)).transpose(0, 2, 1) for x in (precision, score)
    )
    return precision, recall, score


class _TruePositives:
    """The true positives of every (threshold, category) segment, in order, with their precision.

    ``count`` and ``first`` (T*K,): how many each segment has and where its first one is listed;
    ``columns``: each one's detection (column of ``outcome``); ``precision``: pycocotools' ``tp / (fp
    + tp + eps)`` at it, counts exact as integers until the division. One threshold at a time: the
    temporaries stay in cache.
    """

    def __init__(self, outcome: np.ndarray, det_k: np.ndarray, first: np.ndarray, buffer: np.ndarray) -> None:
        k_count = len(first)
        columns, counts, precision = [], [], []
        fp_cum = buffer[: outcome.shape[1]]
        for row in outcome:
            cols = np.flatnonzero(row == TRUE_POSITIVE)
            np.cumsum(row == FALSE_POSITIVE, out=fp_cum)  # with out=: several times faster than a new array
            k = det_k[cols]
            count = np.bincount(k, minlength=k_count)
            # false positives of earlier categories
            fp_before = np.where(first > 0, fp_cum[np.maximum(first - 1, 0)], 0) if len(fp_cum) else first
            c = (np.arange(len(cols)) - (np.cumsum(count) - count)[k] + 1).astype(np.float64)
            fp = (fp_cum[cols] - fp_before[k]).astype(np.float64)
            columns.append(cols)
            counts.append(count)
            precision.append(c / ((fp + c) + _EPS))  # as pycocotools: tp / (fp + tp + np.spacing(1))
        self.columns = np.concatenate(columns)
        self.count = np.concatenate(counts)
        self.first = np.cumsum(self.count) - self.count
        self.precision = np.concatenate(precision)


def _tp_needed(npig: np.ndarray, rec_thresholds: np.ndarray) -> np.ndarray:
    """(K, R) the smallest ``c`` with ``c / npig >= threshold`` in float64 (``npig + 1``: never)."""
    n = np.maximum(npig, 1)[:, None, None].astype(np.int64)
    guess = np.floor(rec_thresholds[None, :, None] * n).astype(np.int64) + np.arange(-2, 4)[None, None, :]
    guess = np.clip(guess, 0, n)
    reaches = guess / n >= rec_thresholds[None, :, None]
    return np.where(reaches, guess, n + 1).min(axis=2)
