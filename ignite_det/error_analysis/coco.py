"""TIDE's error bins on COCOeval's own matching (``error_analysis="coco"``, the default analysis).

The base is the evaluation itself: each detection's verdict at the operating IoU ``t_f`` (area "all", the
largest ``max_detections``), as COCOeval's ``evalImgs`` hold it and the native matcher gives it to every
backend. On that base, rule by rule (tidecv's order and inequalities, ``tidecv/quantify.py:226-278``):

1. Only COCOeval's false positives are binned: unmatched, not ignored, within the ``max_detections`` cut,
   of an evaluated category (C1, C2, C11). A detection matched to a crowd region is ignored and gets no bin.
2. "Ground truth" below is the image's non-ignored ground truth at area "all" (not crowd), of any evaluated
   category, compared by the plain IoU of the IoU type (C3). Among equal IoUs the first in the image's
   target wins (C4).
3. A false positive is, in this order: ``Bkg`` if its image has no ground truth; ``Loc`` if its best IoU
   with a same-class ground truth is in ``[t_b, t_f]``; ``Cls`` if its best IoU with a ground truth of
   another class is ``>= t_f``; ``Dupe`` if its best IoU with a same-class ground truth already matched is
   ``>= t_f``; ``Bkg`` if its best IoU with any ground truth is ``<= t_b``; ``Both`` otherwise.
4. ``Miss``: a non-ignored ground truth unmatched at ``t_f`` that no ``Loc`` or ``Cls`` error claims (C7).

Each dAP is the AP at ``t_f`` after one fix minus the AP, with the native (exact) accumulate:

- ``Loc`` / ``Cls``: of each unmatched ground truth, the best-ranked detection of that bin (highest score,
  then input order) becomes its true positive, the bin's others are removed (C5). A ``Loc`` one stays in its
  place; a ``Cls`` one is relabelled into the ground truth's (image, category) cell, after that cell's
  detections of equal or higher score, and the cell is not cut again (C6);
- ``Dupe``, ``Bkg``, ``Both``: that bin's detections are removed (they count neither way);
- ``Miss``: the missed ground truth leaves the positives (a category left without any has no AP, C7);
- ``FalsePos``: every false positive removed; ``FalseNeg``: every unmatched ground truth leaves (C8).

dAP is not clamped (C9), and ``t_b`` must be in ``(0, t_f)`` (C10). The choices C1-C11 and their reasons
are in docs/design-lvis-errors.md; the README's error-analysis section says where this differs from tidecv.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

import numpy as np

from ignite_det.backends.native.accumulate import Accumulation, Ranking
from ignite_det.backends.native.matching import (
    FALSE_POSITIVE,
    NOT_COUNTED,
    TRUE_POSITIVE,
    MatchRecords,
    match_images,
    match_one_threshold,
)
from ignite_det.error_analysis.analysis import (
    BKG,
    CLS,
    DUPE,
    LOC,
    MAIN_ERRORS,
    SPECIAL_ERRORS,
    ClassErrors,
    ErrorAnalysis,
    FalsePositives,
    MissedObjects,
)
from ignite_det.iou.bbox import PairIou, box_pair_iou
from ignite_det.params import EvalParams
from ignite_det.table import Detections, category_index

BOTH = MAIN_ERRORS.index("Both")
# (false positive, ground truth) pairs measured at a time: each pair-sized temporary stays in cache (a few MB);
# one pass over millions of pairs is memory-bound and measured 3x slower.
PAIRS_PER_CHUNK = 1 << 17
NOT_AN_ERROR = -1  # ``det_bin`` of a detection that is no false positive


@dataclass(frozen=True)
class ErrorBins:
    """Each false positive's bin and each missed ground truth, in the rows of the :class:`Detections` binned.

    ``det_bin``: int8 (N,) the bin of each detection, an index into :data:`MAIN_ERRORS` (``CLS`` .. ``BKG``),
    -1 (:data:`NOT_AN_ERROR`) for a detection that is not a false positive (a true positive, an ignored one, one
    beyond ``max_detections`` or of a category not evaluated). ``det_gt_row``: int64 (N,) the ground-truth row
    the error is attributed to (``Loc``: the same-class ground truth of best IoU; ``Cls``: the other-class one;
    ``Dupe``: the matched one), -1 for ``Bkg``, ``Both`` and non-errors. ``gt_missed``: bool (G,) the ground
    truths in the ``Miss`` bin. ``gt_matched``: bool (G,) the ground truths a detection matched at ``t_f``.
    """

    det_bin: np.ndarray
    det_gt_row: np.ndarray
    gt_missed: np.ndarray
    gt_matched: np.ndarray


def error_bins(
    d: Detections,
    params: EvalParams,
    iou_index: int,
    background_threshold: float = 0.1,
    pair_iou: PairIou = box_pair_iou,
    category_ids: np.ndarray | None = None,
) -> ErrorBins:
    """TIDE's bins of ``d``'s detections at ``params.iou_thresholds[iou_index]``, matched here (for one sample's
    picture, say; :func:`coco_error_analysis` takes the verdicts the evaluation already has).

    ``d`` holds any number of images (one sample's :class:`~ignite_det.table.Detections`, from
    :func:`~ignite_det.inputs.normalize_batch`); ``pair_iou`` is the IoU type's
    (:func:`ignite_det.iou.by_type.pair_iou`); ``category_ids`` the evaluated categories (default: every label
    of ``d``'s ground truth and detections), others are not evaluated and get no bin, as in COCOeval.

    Example:
        >>> import torch
        >>> from ignite_det.inputs import normalize_batch
        >>> gt = {"boxes": torch.tensor([[0.0, 0, 10, 10], [50, 50, 60, 60]]), "labels": torch.tensor([1, 2])}
        >>> pred = {"boxes": torch.tensor([[0.0, 0, 10, 10], [0, 0, 10, 10], [5, 0, 15, 10], [80, 80, 90, 90]]),
        ...         "scores": torch.tensor([0.9, 0.8, 0.7, 0.6]), "labels": torch.tensor([1, 1, 1, 2])}
        >>> bins = error_bins(normalize_batch(([pred], [gt]), "xyxy"), EvalParams.create(), iou_index=0)
        >>> [MAIN_ERRORS[b] if b >= 0 else "-" for b in bins.det_bin]      # TP, Dupe, Loc (IoU 1/3), Bkg
        ['-', 'Dupe', 'Loc', 'Bkg']
        >>> bins.det_gt_row.tolist(), bins.gt_missed.tolist()              # ground truth 1 was missed
        ([-1, 0, 0, -1], [False, True])
    """
    if category_ids is None:
        category_ids = np.unique(np.r_[d.det_labels, d.gt_labels]).astype(np.int64)
    det_k = category_index(d.det_labels, category_ids)
    outcome = match_images(d, params, pair_iou).outcome_at(0)[iou_index]
    outcome = np.where(det_k >= 0, outcome, np.int8(NOT_COUNTED))
    return bins_of_outcome(d, outcome, det_k, category_ids, params, iou_index, background_threshold, pair_iou)


def bins_of_outcome(
    d: Detections,
    outcome: np.ndarray,
    det_k: np.ndarray,
    category_ids: np.ndarray,
    params: EvalParams,
    iou_index: int,
    background_threshold: float,
    pair_iou: PairIou,
) -> ErrorBins:
    """The bins given each detection's verdict at ``t_f`` (``outcome`` int8 (N,), area "all", -1 for a
    detection not evaluated), as a backend's :class:`~ignite_det.backends.base.Evaluation` has it."""
    t_f = float(params.iou_thresholds[iou_index])
    truth = _counted_gt(d, params, category_ids)
    gt_matched = _gt_matched(d, outcome, det_k, truth, category_ids, params, iou_index, pair_iou)
    fp = np.flatnonzero(outcome == FALSE_POSITIVE)
    det_bin = np.full(len(outcome), NOT_AN_ERROR, np.int8)
    det_gt_row = np.full(len(outcome), -1, np.int64)
    bins, rows = _bin(d, fp, truth, gt_matched, t_f, background_threshold, pair_iou)
    det_bin[fp], det_gt_row[fp] = bins, rows
    claimed = np.zeros(len(truth), bool)
    claimed[det_gt_row[(det_bin == LOC) | (det_bin == CLS)]] = True
    return ErrorBins(det_bin, det_gt_row, truth & ~gt_matched & ~claimed, gt_matched)


def _counted_gt(d: Detections, params: EvalParams, category_ids: np.ndarray) -> np.ndarray:
    """bool (G,): the ground truth COCOeval counts at area "all" (not crowd, area in range, evaluated)."""
    lo, hi = params.area_ranges[0]
    evaluated = category_index(d.gt_labels, category_ids) >= 0
    return evaluated & ~d.gt_ignored() & (d.gt_area >= lo) & (d.gt_area <= hi)  # cocoeval.py:251


def _gt_matched(
    d: Detections,
    outcome: np.ndarray,
    det_k: np.ndarray,
    truth: np.ndarray,
    category_ids: np.ndarray,
    params: EvalParams,
    iou_index: int,
    pair_iou: PairIou,
) -> np.ndarray:
    """bool (G,): the counted ground truths that a true positive took at ``t_f``.

    A cell (image, category) with as many true positives as counted ground truths has them all matched, one
    with none has none: only the images with a cell in between are matched again (one threshold, one area).
    """
    k_count = max(len(category_ids), 1)
    tp = outcome == TRUE_POSITIVE
    cells = d.gt_position * k_count + np.maximum(category_index(d.gt_labels, category_ids), 0)
    found = _occurrences(np.sort(d.det_position[tp] * k_count + det_k[tp]), cells)  # true positives per cell
    n_gt = _occurrences(np.sort(cells[truth]), cells)
    matched = truth & (found == n_gt)
    partial = truth & (found > 0) & (found < n_gt)
    if partial.any():
        images = np.zeros(d.num_images, bool)
        images[d.gt_position[partial]] = True
        some = d.select_images(images)
        gt_rows = np.flatnonzero(images[d.gt_position])
        det_rows = np.flatnonzero(images[d.det_position])
        gt_row = match_one_threshold(some, params, iou_index, 0, pair_iou).gt_row
        taken = gt_row[(gt_row >= 0) & tp[det_rows]]
        matched[gt_rows] = False
        matched[gt_rows[taken]] = True
    return matched


def _occurrences(sorted_keys: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """How many times each of ``keys`` occurs in ``sorted_keys``."""
    return np.searchsorted(sorted_keys, keys, side="right") - np.searchsorted(sorted_keys, keys, side="left")


def _bin(
    d: Detections,
    fp: np.ndarray,
    truth: np.ndarray,
    gt_matched: np.ndarray,
    t_f: float,
    t_b: float,
    pair_iou: PairIou,
) -> tuple[np.ndarray, np.ndarray]:
    """(bin, attributed ground-truth row) of each false positive ``fp``, tested in tidecv's order, a chunk of
    about :data:`PAIRS_PER_CHUNK` pairs at a time."""
    gt = np.flatnonzero(truth)  # by position, then in each image's target order
    first = np.searchsorted(d.gt_position[gt], d.det_position[fp], side="left")
    count = np.searchsorted(d.gt_position[gt], d.det_position[fp], side="right") - first
    bins, rows = np.empty(len(fp), np.int8), np.empty(len(fp), np.int64)
    bounds = _chunks(count)
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        part = slice(lo, hi)
        bins[part], rows[part] = _bin_chunk(d, fp[part], gt, first[part], count[part], gt_matched, t_f, t_b, pair_iou)
    return bins, rows


def _chunks(count: np.ndarray) -> list[int]:
    """Bounds of consecutive false positives with about :data:`PAIRS_PER_CHUNK` pairs each (one at least)."""
    total = np.cumsum(count)
    bounds, start = [0], 0
    while start < len(count):
        before = total[start - 1] if start else 0
        stop = int(np.searchsorted(total, before + PAIRS_PER_CHUNK, side="right"))
        start = max(stop, start + 1)
        bounds.append(min(start, len(count)))
    return bounds


def _bin_chunk(
    d: Detections,
    fp: np.ndarray,
    gt: np.ndarray,
    first: np.ndarray,
    count: np.ndarray,
    gt_matched: np.ndarray,
    t_f: float,
    t_b: float,
    pair_iou: PairIou,
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_bin` of some false positives: ``gt`` the counted ground-truth rows, ``fp[i]``'s pairs those from
    ``first[i]``, ``count[i]`` of them."""
    pairs = _Pairs.create(count)
    pair_gt = gt[np.repeat(first - pairs.starts, count) + np.arange(len(pairs.owner))]
    if pair_iou is box_pair_iou:  # the same float64 operations, a detection's values computed once
        iou = _repeated_box_iou(d, fp, count, pair_gt)
    else:
        iou = pair_iou(d, fp[pairs.owner], pair_gt) if len(pair_gt) else np.zeros(0)
    # Only pairs with IoU >= t_b can make a false positive Loc, Cls or Dupe (each needs a best IoU >= t_b; the
    # best among equals is kept with all its ties), and Bkg needs no pair above t_b: the rest are dropped.
    near = np.flatnonzero(iou >= t_b)
    owner, iou, pair_gt = pairs.owner[near], iou[near], pair_gt[near]
    same = d.gt_labels[pair_gt] == d.det_labels[fp[owner]]
    best_same, row_same = _best(owner, iou, same, pair_gt, len(fp))
    best_other, row_other = _best(owner, iou, ~same, pair_gt, len(fp))
    best_used, row_used = _best(owner, iou, same & gt_matched[pair_gt], pair_gt, len(fp))
    above_background = np.bincount(owner[iou > t_b], minlength=len(fp)) > 0
    # np.select takes the first condition that holds: tidecv's order (quantify.py:228-265).
    conditions = [
        count == 0,
        (best_same >= t_b) & (best_same <= t_f),
        best_other >= t_f,
        best_used >= t_f,
        ~above_background,
    ]
    bins = np.select(conditions, [BKG, LOC, CLS, DUPE, BKG], BOTH).astype(np.int8)
    rows = np.select(conditions[1:4], [row_same, row_other, row_used], -1)
    return bins, np.where(count == 0, -1, rows).astype(np.int64)


@dataclass(frozen=True)
class _Pairs:
    """(false positive, ground truth) pairs listed false positive by false positive (``count`` each), each one's
    ground truths in target order."""

    starts: np.ndarray  # (F,) where each one's pairs start
    owner: np.ndarray  # (P,) the false positive of each pair

    @staticmethod
    def create(count: np.ndarray) -> _Pairs:
        return _Pairs(np.cumsum(count) - count, np.repeat(np.arange(len(count)), count))


def _best(
    owner: np.ndarray, iou: np.ndarray, pool: np.ndarray, pair_gt: np.ndarray, n: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per false positive (``owner``: sorted, pairs in target order within each), the highest IoU among its pairs
    in ``pool`` (0 when none, as tidecv's masked argmax) and its ground-truth row, the first in target order among
    equal IoUs (C4; -1 when none)."""
    best, row = np.zeros(n), np.full(n, -1, np.int64)
    chosen = np.flatnonzero(pool)
    if len(chosen) == 0:
        return best, row
    owner, iou = owner[chosen], iou[chosen]
    starts = np.flatnonzero(np.r_[True, owner[1:] != owner[:-1]])
    top = np.maximum.reduceat(iou, starts)
    best[owner[starts]] = top
    hits = np.flatnonzero(iou == np.repeat(top, np.diff(np.r_[starts, len(owner)])))  # in pair order
    first = np.ones(len(hits), bool)
    first[1:] = owner[hits[1:]] != owner[hits[:-1]]
    row[owner[hits[first]]] = pair_gt[chosen[hits[first]]]
    return best, row


def _repeated_box_iou(d: Detections, fp: np.ndarray, count: np.ndarray, pair_gt: np.ndarray) -> np.ndarray:
    """:func:`~ignite_det.iou.bbox.box_pair_iou` of each false positive ``fp[i]`` with its ``count[i]`` ground
    truths ``pair_gt`` (none a crowd region), to the last bit: the same float64 operations in the same order
    (pycocotools' ``bbIou``), with each box's corners and area computed once and repeated, not gathered per pair."""
    det, gt = d.det_boxes[fp], d.gt_boxes
    x1, y1, w, h = (np.ascontiguousarray(det[:, i]) for i in range(4))

    def repeat(values: np.ndarray) -> np.ndarray:
        return np.repeat(values, count)

    iw = np.minimum(repeat(w + x1), (gt[:, 2] + gt[:, 0])[pair_gt])
    iw -= np.maximum(repeat(x1), gt[pair_gt, 0])
    ih = np.minimum(repeat(h + y1), (gt[:, 3] + gt[:, 1])[pair_gt])
    ih -= np.maximum(repeat(y1), gt[pair_gt, 1])
    apart = (iw <= 0) | (ih <= 0)
    inter = iw * ih
    union = repeat(w * h) + (gt[:, 2] * gt[:, 3])[pair_gt]
    union -= inter
    union[apart], inter[apart] = 1.0, 0.0
    return inter / union


# --- the fixes and their AP -----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Base:
    """What every fix starts from: the verdicts at ``t_f``, the accumulation order, one-threshold parameters."""

    d: Detections
    outcome: np.ndarray  # int8 (N,)
    det_k: np.ndarray
    category_ids: np.ndarray
    params: EvalParams  # t_f only, area "all", the largest max_detections
    ranking: Ranking

    @staticmethod
    def create(
        d: Detections, outcome: np.ndarray, det_k: np.ndarray, category_ids: np.ndarray, params: EvalParams, t: int
    ) -> _Base:
        one = replace(
            params,
            iou_thresholds=params.iou_thresholds[t : t + 1],
            area_names=params.area_names[:1],
            area_ranges=params.area_ranges[:1],
            max_detections=params.max_detections[-1:],
        )
        return _Base(d, outcome, det_k, category_ids, one, _ranking(d, outcome, det_k))

    def precision(
        self,
        outcome: np.ndarray,
        gt_leaves: np.ndarray | None = None,
        moved: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> np.ndarray:
        """(R, K) precision at ``t_f`` with the verdicts ``outcome``; ``gt_leaves`` (G,) ground truths taken out
        of the positives; ``moved`` (rows, category index): detections relabelled into another cell as true
        positives (their own row is no longer counted)."""
        d, det_k, ranking = self.d, self.det_k, self.ranking
        if gt_leaves is not None:
            d = replace(d, gt_crowd=np.where(gt_leaves, 1, d.gt_crowd))  # ignored: out of npig, nothing else
        if moved is not None:
            # The relabelled copy is a new row at the end, in the ground truth's image: the stable sorts of
            # Ranking.create put it after every detection of equal score in that cell (C6).
            rows, k = moved
            outcome = np.r_[outcome, np.full(len(rows), TRUE_POSITIVE, np.int8)]
            det_k = np.r_[det_k, k]
            scores, positions = np.r_[d.det_scores, d.det_scores[rows]], np.r_[d.det_position, d.det_position[rows]]
            d = replace(d, det_scores=scores, det_position=positions)
            ranking = _ranking(d, outcome, det_k)
        records = MatchRecords.from_outcome(np.zeros(len(outcome), np.int32), outcome[None, None, :])
        accumulation = Accumulation(d, records, det_k, self.category_ids, self.params, ranking)
        return accumulation.computed().precision[0, :, :, 0, 0]


def _ranking(d: Detections, outcome: np.ndarray, det_k: np.ndarray) -> Ranking:
    """COCOeval's accumulation order of the counted detections (the others count neither way)."""
    counted = np.where(outcome != NOT_COUNTED, 0, 1).astype(np.int32)
    return Ranking.create(d, counted, det_k, 1)


def coco_error_analysis(
    d: Detections,
    outcome: np.ndarray,
    det_k: np.ndarray,
    category_ids: np.ndarray,
    class_names: Mapping[int, str],
    params: EvalParams,
    iou_index: int,
    background_threshold: float = 0.1,
    pair_iou: PairIou = box_pair_iou,
) -> tuple[ErrorAnalysis, ErrorBins]:
    """The error analysis of an evaluation from its verdicts at ``t_f = params.iou_thresholds[iou_index]``.

    ``d`` holds each image once; ``outcome`` int8 (N,) is each detection's verdict at ``t_f``, area "all",
    the largest ``max_detections`` (1 true positive, 0 false positive, -1 not counted or not evaluated), as
    ``Evaluation.outcomes[iou_index]``; ``det_k`` each detection's index in the sorted ``category_ids``
    (-1: not evaluated). Returns the analysis and the bins it was built from (for the per-image columns).
    """
    bins = bins_of_outcome(d, outcome, det_k, category_ids, params, iou_index, background_threshold, pair_iou)
    base = _Base.create(d, outcome, det_k, category_ids, params, iou_index)
    precision = {name: _fixed_precision(base, bins, name) for name in (None, *MAIN_ERRORS, *SPECIAL_ERRORS)}
    ap = {name: _mean_valid(p) for name, p in precision.items()}
    class_ap = {name: _class_ap(p) for name, p in precision.items()}
    gt_k = category_index(d.gt_labels, category_ids)
    counts = _counts(bins, det_k, gt_k, len(category_ids))  # (K, 6)
    per_class = tuple(
        ClassErrors(
            category_id=int(category_id),
            name=class_names.get(int(category_id), str(int(category_id))),
            ap=float(class_ap[None][k]),
            main={name: _delta(class_ap[name][k], class_ap[None][k]) for name in MAIN_ERRORS},
            special={name: _delta(class_ap[name][k], class_ap[None][k]) for name in SPECIAL_ERRORS},
            counts=dict(zip(MAIN_ERRORS, map(int, counts[k]))),
        )
        for k, category_id in enumerate(category_ids)
    )
    analysis = ErrorAnalysis(
        mode="coco",
        iou_threshold=float(params.iou_thresholds[iou_index]),
        background_threshold=float(background_threshold),
        ap=ap[None],
        main={name: _delta(ap[name], ap[None]) for name in MAIN_ERRORS},
        special={name: _delta(ap[name], ap[None]) for name in SPECIAL_ERRORS},
        counts=dict(zip(MAIN_ERRORS, map(int, counts.sum(axis=0)))),
        per_class=per_class,
        false_positives=false_positive_rows(d, bins),
        missed=missed_rows(d, bins),
    )
    return analysis, bins


def _fixed_precision(base: _Base, bins: ErrorBins, name: str | None) -> np.ndarray:
    """(R, K) precision at ``t_f`` with one bin (or special error) fixed; ``None``: as evaluated."""
    outcome = base.outcome
    if name is None:
        return base.precision(outcome)
    if name in ("Loc", "Cls"):
        return _fix_by_matching(base, bins, MAIN_ERRORS.index(name))
    if name == "Miss":
        return base.precision(outcome, gt_leaves=bins.gt_missed)
    if name == "FalseNeg":  # every counted ground truth left unmatched (C8)
        truth = _counted_gt(base.d, base.params, base.category_ids)
        return base.precision(outcome, gt_leaves=truth & ~bins.gt_matched)
    removed = bins.det_bin >= 0 if name == "FalsePos" else bins.det_bin == MAIN_ERRORS.index(name)
    return base.precision(np.where(removed, np.int8(NOT_COUNTED), outcome))


def _fix_by_matching(base: _Base, bins: ErrorBins, code: int) -> np.ndarray:
    """Loc and Cls: of each unmatched ground truth, the bin's best-ranked detection (highest score, then input
    order) becomes its true positive; the bin's other detections are removed (C5, C6)."""
    rows = np.flatnonzero(bins.det_bin == code)
    gt = bins.det_gt_row[rows]
    by_gt = np.lexsort((rows, -base.d.det_scores[rows], gt))
    first = by_gt[np.r_[True, gt[by_gt][1:] != gt[by_gt][:-1]]] if len(rows) else by_gt
    best, best_gt = rows[first], gt[first]
    fixes = ~bins.gt_matched[best_gt]
    best, best_gt = best[fixes], best_gt[fixes]
    outcome = base.outcome.copy()
    outcome[rows] = NOT_COUNTED
    if code == LOC:  # a true positive where it stands (its own cell)
        outcome[best] = TRUE_POSITIVE
        return base.precision(outcome)
    gt_k = category_index(base.d.gt_labels[best_gt], base.category_ids)
    return base.precision(outcome, moved=(best, gt_k))


def _mean_valid(precision: np.ndarray) -> float:
    """pycocotools' summary mean over the defined values (-1 when none), as ``CocoResult`` takes AP50."""
    valid = precision[precision > -1]
    return float(np.mean(valid)) if len(valid) else -1.0


def _class_ap(precision: np.ndarray) -> np.ndarray:
    """(K,) each category's AP at ``t_f``, -1 where it has no ground truth."""
    return np.array([np.mean(column) if (column > -1).all() else -1.0 for column in precision.T])


def _delta(fixed: float, ap: float) -> float:
    """A dAP (of a category or overall), NaN where there is no AP before or after the fix: without ground
    truth, or when fixing Miss or FalseNeg takes every ground truth away (COCOeval's -1 is no AP to subtract)."""
    return float(fixed - ap) if fixed > -1 and ap > -1 else float("nan")


def _counts(bins: ErrorBins, det_k: np.ndarray, gt_k: np.ndarray, k_count: int) -> np.ndarray:
    """(K, 6) the errors of each bin per category: a false positive under its own (predicted) category, a
    missed ground truth under its category."""
    counts = np.zeros((k_count, len(MAIN_ERRORS)), np.int64)
    errors = bins.det_bin >= 0
    np.add.at(counts, (det_k[errors], bins.det_bin[errors].astype(np.int64)), 1)
    counts[:, MAIN_ERRORS.index("Miss")] = np.bincount(gt_k[bins.gt_missed], minlength=k_count)
    return counts


# --- per detection and per image --------------------------------------------------------------------------


def false_positive_rows(d: Detections, bins: ErrorBins) -> FalsePositives:
    """:class:`FalsePositives`: one row per binned false positive, by image id, then its index in the image."""
    rows = _by_image_id(d, d.det_position, np.flatnonzero(bins.det_bin >= 0))
    gt = bins.det_gt_row[rows]
    has_gt = gt >= 0
    gt = gt[has_gt]
    return FalsePositives(
        image_id=d.image_ids[d.det_position[rows]].astype(np.int64),
        detection=_index_in_image(d.det_position, rows),
        category_id=d.det_labels[rows].astype(np.int64),
        score=d.det_scores[rows].astype(np.float64),
        error=bins.det_bin[rows].astype(np.int64),
        gt_index=_where(has_gt, _index_in_image(d.gt_position, gt)),
        gt_category_id=_where(has_gt, d.gt_labels[gt]),
    )


def missed_rows(d: Detections, bins: ErrorBins) -> MissedObjects:
    """:class:`MissedObjects`: one row per missed ground truth, by image id, then its index in the image."""
    rows = _by_image_id(d, d.gt_position, np.flatnonzero(bins.gt_missed))
    return MissedObjects(
        image_id=d.image_ids[d.gt_position[rows]].astype(np.int64),
        gt_index=_index_in_image(d.gt_position, rows),
        category_id=d.gt_labels[rows].astype(np.int64),
    )


def _by_image_id(d: Detections, position: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``rows`` (ascending) ordered by their image's id, then row (no sort when images arrived in id order)."""
    if np.all(d.image_ids[1:] > d.image_ids[:-1]):
        return rows
    return rows[np.argsort(d.image_ids[position[rows]], kind="stable")]


def _where(has: np.ndarray, values: np.ndarray) -> np.ndarray:
    """int64 (len(has),): ``values`` in order where ``has``, -1 elsewhere."""
    out = np.full(len(has), -1, np.int64)
    out[has] = values
    return out


def _index_in_image(position: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Each row's index among its image's rows (``position`` is sorted: rows come image by image)."""
    return (rows - np.searchsorted(position, position[rows], side="left")).astype(np.int64)
