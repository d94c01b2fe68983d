"""tidecv 1.0.1's error analysis, number for number: ``CocoMetric(error_analysis="tidecv")``.

TIDE (Bolya et al., ECCV 2020) is best known through the ``tidecv`` package, whose numbers fill the published
tables. :func:`tidecv_errors` reproduces them from the metric's record: tidecv's AP at ``t_f``, its six main and
two special dAP (as fractions: tidecv's value / 100, equal to 1e-9) and how many errors fall in each bin
(``count_errors()``). tidecv is not COCOeval; these are its rules, with the lines of the installed
``tidecv`` 1.0.1 that define them (see docs/design-lvis-errors.md, Part 2):

====  =========================================================================================  =====================
rule  what tidecv does                                                                           where
====  =========================================================================================  =====================
T1    each image's predictions sorted by descending score (stable: input order among equals),    quantify.py:39-41,
      the first 100 kept, across classes                                                         datasets.py:86
T2    matching in that order: a prediction takes the unused same-class ground truth of highest   quantify.py:66-90
      IoU (``argmax``: the first of equal IoUs, in annotation order) if the IoU is >= ``t_f``
T3    crowd annotations are ignore regions, not ground truth: an unmatched prediction whose      quantify.py:93-110
      crowd IoU (intersection over its own area) with a same-class region is > ``t_f`` is
      ignored (not in the AP)
T4    every unmatched *or ignored* prediction gets one bin, tested in order: Bkg if its image    quantify.py:226-265
      has no ground truth; Loc if ``t_b <= best same-class IoU <= t_f``; Cls if best other-class
      IoU >= ``t_f``; Dupe if best IoU with a used same-class ground truth >= ``t_f``; Bkg if
      best IoU with any ground truth <= ``t_b``; Both otherwise
T5    the "best" of T4 is an ``argmax`` over IoUs multiplied by a class mask: a masked entry     quantify.py:66-70,
      counts as IoU 0 (so with ``t_b = 0`` Loc fires on an IoU of 0)                             117-127, 236-259
T6    fixing Loc or Cls: per unused ground truth, only its first claimant in visit order (the    errors/error.py:87-123,
      highest score; ``best_score`` is one field shared by its Loc *and* Cls errors) becomes a   main_errors.py:6-38
      true positive, relabelled to the ground truth's class for Cls; the others are removed,
      and so are Loc/Cls errors on a used ground truth
T7    Miss: a ground truth left unused and claimed by no Loc/Cls error; fixing it removes it     quantify.py:267-278,
      from the positives                                                                         306-309
T8    an ignored prediction has no data point, but its Loc/Cls fix adds a true positive          errors/error.py:19-27
T9    AP of a class: precision ``tp / (tp + fp)`` without eps, made non-increasing from the      ap.py:66-118
      right, sampled at the 101 recalls ``x / 100`` (not ``np.linspace``) with
      ``searchsorted(..., "left")``; 0 for a class without ground truth
T10   mAP over every class with ground truth *or* predictions (a class with only false          ap.py:58-59, 148-150
      positives counts as 0)
T11   ties in score keep the order of the data points: image by image, each image's             ap.py:48-49, 72-74,
      predictions in T1's order; in a fixed run the errors come first and the original true     quantify.py:282-331
      positives after, so among equal scores a fixed error ranks before a true positive
T12   main dAP = ``max(AP(fixed) - AP, 0)``, one bin at a time; the special ones are not         quantify.py:333-367
      clamped: FalsePos scores every false positive 0 and every true positive 1, FalseNeg
      removes every unused ground truth (not only the Miss bin)
T13   only the ground truth's images are evaluated                                               quantify.py:160-171
====  =========================================================================================  =====================

Where the metric's record differs from tidecv's input, and where tidecv has no answer:

- Images are visited in the record's order (arrival order): tidecv visits the ground-truth file's image order.
  The two agree when the images are fed in the file's order (as ``ignite-det evaluate`` does); the order only
  matters through score ties between images (T11). Under distribution the record is rank after rank.
- tidecv divides by zero where a run has no class left to average (no detections at all, or only background
  on images without ground truth). Here such a mean is 0: it only happens when the AP itself is 0, so the dAP
  is 0. With no class at all in the evaluation the AP is -1.0 (undefined, as COCOeval says) and every dAP 0.
- tidecv crashes (``best_id``) when a claimant's score is <= -1; here the first claimant wins whatever its score.
- Keypoints: TIDE defines no keypoint errors.

Per class (``ErrorAnalysis.per_class``, for ``category_ids``): tidecv's own per-class AP of the original and
of each fixed run (``ap_data.objs[k].get_ap()``), dAP unclamped, NaN where the class is not scored in either
run; counts by the detection's class (Miss: the ground truth's). Detections of classes outside
``category_ids`` count in the mAP (T10) but have no row.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields

import numpy as np

from ignite_det.error_analysis.analysis import (
    BKG,
    BOTH,
    CLS,
    DUPE,
    LOC,
    MAIN_ERRORS,
    MISS,
    SPECIAL_ERRORS,
    ClassErrors,
    ErrorAnalysis,
    FalsePositives,
    MissedObjects,
)
from ignite_det.iou.bbox import PairIou
from ignite_det.iou.by_type import pair_iou
from ignite_det.params import EvalParams
from ignite_det.table import Detections

# tidecv's ``Data(max_dets=100)`` of its COCO loader (datasets.py:86): predictions kept per image, across classes.
TIDECV_MAX_DETECTIONS = 100
# Images whose (detection, ground truth) pairs are measured at a time: a parameter so tests can make it tiny.
IMAGES_PER_CHUNK = 1000
# ap.py:103: x / 100, which differs from np.linspace(0, 1, 101) at 10 of the 101 points (T9).
RECALL_POINTS = np.array([x / 100 for x in range(101)])

# A kept detection's status after matching (T2, T3).
TRUE_POSITIVE, FALSE_POSITIVE, IGNORED = 0, 1, 2


@dataclass(frozen=True)
class _Verdicts:
    """What tidecv decides for each kept detection, in visit order (image by image, T1's order within one).

    ``rows``: the detection's row in the record; ``status``: TRUE_POSITIVE, FALSE_POSITIVE or IGNORED;
    ``error``: its bin (an index into MAIN_ERRORS) for the last two, -1 for a true positive; ``target``: the
    ground-truth row a Loc, Cls or Dupe error points at, else -1.
    """

    rows: np.ndarray
    status: np.ndarray
    error: np.ndarray
    target: np.ndarray

    @staticmethod
    def concatenate(parts: list[_Verdicts]) -> _Verdicts:
        if not parts:
            empty = np.zeros(0, np.int64)
            return _Verdicts(empty, empty.astype(np.int8), empty.astype(np.int8), empty)
        return _Verdicts(*(np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(_Verdicts)))


def tidecv_errors(
    d: Detections,
    category_ids: np.ndarray,
    class_names: Mapping[int, str],
    params: EvalParams,
    iou_threshold: float,
    background_threshold: float,
) -> ErrorAnalysis:
    """tidecv 1.0.1's ``TIDE(pos_threshold, background_threshold).evaluate(gt, preds)`` on the record ``d``.

    Args:
        d: the gathered, deduplicated record; every image in it is a ground-truth image (T13).
        category_ids: the categories of ``per_class``, in its order.
        class_names: names of the categories (a missing one is named by its id).
        params: the evaluation's parameters; only ``iou_type`` (``"bbox"`` or ``"segm"``) is read.
        iou_threshold: tidecv's ``pos_threshold``, ``t_f`` (> 0).
        background_threshold: tidecv's ``background_threshold``, ``t_b`` (>= 0).

    Returns:
        The analysis with ``mode="tidecv"``: tidecv's AP, main and special dAP and counts, per class, and one
        row per binned prediction (ignored ones included, as tidecv bins them) and per missed ground truth.

    Raises:
        ValueError: for keypoints, or thresholds out of range.

    Example:
        >>> import torch
        >>> from ignite_det.inputs import normalize_batch
        >>> batch = ([{"boxes": torch.tensor([[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 6.0]]),
        ...            "scores": torch.tensor([0.9, 0.8]), "labels": torch.tensor([1, 1])}],
        ...          [{"boxes": torch.tensor([[0.0, 0.0, 10.0, 10.0], [50.0, 50.0, 60.0, 60.0]]),
        ...            "labels": torch.tensor([1, 1])}])
        >>> errors = tidecv_errors(normalize_batch(batch, "xyxy"), np.array([1]), {1: "cat"},
        ...                        EvalParams.create(), 0.5, 0.1)
        >>> errors.counts
        {'Cls': 0, 'Loc': 0, 'Both': 0, 'Dupe': 1, 'Bkg': 0, 'Miss': 1}
        >>> round(errors.ap, 4), round(errors.main["Miss"], 4)
        (0.505, 0.495)
    """
    _check_arguments(params, iou_threshold, background_threshold)
    measure = pair_iou(params)
    kept = visit_order(d)
    gt_used = np.zeros(len(d.gt_labels), dtype=bool)
    chunks = np.searchsorted(d.det_position[kept], np.arange(0, d.num_images + IMAGES_PER_CHUNK, IMAGES_PER_CHUNK))
    verdicts = _Verdicts.concatenate(
        [
            _judge(d, kept[lo:hi], gt_used, measure, iou_threshold, background_threshold)
            for lo, hi in zip(chunks[:-1], chunks[1:])
            if hi > lo
        ]
    )
    fixable, usable = _claims(verdicts, gt_used)
    missed = (d.gt_crowd == 0) & ~gt_used & ~usable
    runs = _Runs(d, verdicts, fixable, gt_used, missed)
    return _analysis(d, verdicts, missed, runs, category_ids, class_names, iou_threshold, background_threshold)


def _check_arguments(params: EvalParams, iou_threshold: float, background_threshold: float) -> None:
    if params.iou_type not in ("bbox", "segm"):
        raise ValueError(
            f"error_analysis='tidecv' is for iou_type 'bbox' or 'segm', got {params.iou_type!r}: "
            "TIDE defines no keypoint errors"
        )
    if not 0 < iou_threshold <= 1:
        raise ValueError(f"the error analysis' iou_threshold must be in (0, 1], got {iou_threshold}")
    if not 0 <= background_threshold <= 1:
        raise ValueError(f"the error analysis' background_threshold must be in [0, 1], got {background_threshold}")


def visit_order(d: Detections, max_detections: int = TIDECV_MAX_DETECTIONS) -> np.ndarray:
    """The detection rows tidecv evaluates, in its order (T1): image by image, each image's by descending
    score (input order among equal scores, a stable sort), its first ``max_detections`` across classes.

    Example:
        >>> d = Detections.empty()
        >>> d = Detections(**{**d.__dict__, "det_scores": np.array([0.5, 0.9, 0.5, 0.7]),
        ...                   "det_position": np.array([0, 0, 0, 1])})
        >>> visit_order(d, max_detections=2).tolist()
        [1, 0, 3]
    """
    by_score = np.argsort(-d.det_scores, kind="stable")  # -0.0 and 0.0 tie, as in Python's sort
    order = by_score[np.argsort(d.det_position[by_score], kind="stable")]
    return order[_rank_in_runs(d.det_position[order]) < max_detections]


def _rank_in_runs(sorted_keys: np.ndarray) -> np.ndarray:
    """0, 1, 2, ... within each run of equal values of a sorted array."""
    if len(sorted_keys) == 0:
        return np.zeros(0, dtype=np.int64)
    starts = np.flatnonzero(np.r_[True, sorted_keys[1:] != sorted_keys[:-1]])
    return np.arange(len(sorted_keys)) - np.repeat(starts, np.diff(np.r_[starts, len(sorted_keys)]))


# --- one image chunk: matching and bins (T2-T5) ---------------------------------------------------------


@dataclass(frozen=True)
class _Pairs:
    """Every (kept detection, ground truth of its image) pair, crowd regions included, by detection (in visit
    order), then ground truth in annotation order; ``iou`` is the crowd IoU for a crowd region."""

    det: np.ndarray  # index into the chunk's kept detections
    gt: np.ndarray  # ground-truth row
    iou: np.ndarray
    same_class: np.ndarray
    crowd: np.ndarray

    @staticmethod
    def create(d: Detections, rows: np.ndarray, measure: PairIou) -> _Pairs:
        position = d.det_position[rows]
        first = np.searchsorted(d.gt_position, position, side="left")
        count = np.searchsorted(d.gt_position, position, side="right") - first
        det = np.repeat(np.arange(len(rows)), count)
        gt = np.repeat(first, count) + (np.arange(len(det)) - np.repeat(np.cumsum(count) - count, count))
        iou = measure(d, rows[det], gt) if len(det) else np.zeros(0)
        same = d.det_labels[rows[det]] == d.gt_labels[gt]
        return _Pairs(det, gt, np.asarray(iou, np.float64), same, d.gt_crowd[gt] != 0)


def _judge(d: Detections, rows: np.ndarray, gt_used: np.ndarray, measure: PairIou, t_f: float, t_b: float) -> _Verdicts:
    """Match the kept detections ``rows`` (whole images, in visit order), mark ignored ones, bin the others;
    marks the ground truth matched in ``gt_used``."""
    pairs = _Pairs.create(d, rows, measure)
    classes, label = np.unique(d.det_labels[rows], return_inverse=True)
    matched = _match(pairs, d.det_position[rows] * len(classes) + label.reshape(-1), t_f)
    gt_used[matched[matched >= 0]] = True
    status = np.where(matched >= 0, TRUE_POSITIVE, FALSE_POSITIVE).astype(np.int8)
    # T3: strictly above t_f, same class, only if unmatched.
    near_crowd = pairs.crowd & pairs.same_class & (pairs.iou > t_f) & (matched[pairs.det] < 0)
    status[pairs.det[near_crowd]] = IGNORED
    error, target = _bins(d, rows, pairs, status != TRUE_POSITIVE, gt_used, t_f, t_b)
    return _Verdicts(rows, status, error, target)


def _match(pairs: _Pairs, cell: np.ndarray, t_f: float) -> np.ndarray:
    """T2: the ground-truth row each detection takes (-1 for none).

    Only pairs of the same class with IoU >= ``t_f`` can match, and only detections of one (image, class)
    cell compete, so round ``r`` matches the ``r``-th candidate detection of every cell at once. A pair's key
    orders by IoU, then by earlier ground truth (numpy's ``argmax`` keeps the first of equal values).
    """
    matched = np.full(len(cell), -1, dtype=np.int64)
    candidate = ~pairs.crowd & pairs.same_class & (pairs.iou >= t_f)
    det, gt, iou = pairs.det[candidate], pairs.gt[candidate], pairs.iou[candidate]
    if len(det) == 0:
        return matched
    bits = max(1, len(det).bit_length())
    key = (np.unique(iou, return_inverse=True)[1].astype(np.int64) << bits) | (len(det) - 1 - np.arange(len(det)))
    starts = np.flatnonzero(np.r_[True, det[1:] != det[:-1]])
    cells = cell[det[starts]]
    by_cell = np.argsort(cells, kind="stable")
    round_of_det = np.empty(len(starts), dtype=np.int64)
    round_of_det[by_cell] = _rank_in_runs(cells[by_cell])
    round_of_pair = np.repeat(round_of_det, np.diff(np.r_[starts, len(det)]))
    by_round = np.argsort(round_of_pair, kind="stable")
    bounds = np.searchsorted(round_of_pair[by_round], np.arange(round_of_det.max() + 2))
    taken = np.zeros(int(gt.max()) + 1, dtype=bool)
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        chosen = by_round[lo:hi]
        keys = np.where(taken[gt[chosen]], np.int64(-1), key[chosen])
        best = np.maximum.reduceat(keys, np.flatnonzero(np.r_[True, np.diff(det[chosen]) != 0]))
        pair = len(det) - 1 - (best[best >= 0] & ((np.int64(1) << bits) - 1))
        matched[det[pair]] = gt[pair]
        taken[gt[pair]] = True
    return matched


def _bins(
    d: Detections,
    rows: np.ndarray,
    pairs: _Pairs,
    binned: np.ndarray,
    gt_used: np.ndarray,
    t_f: float,
    t_b: float,
) -> tuple[np.ndarray, np.ndarray]:
    """T4/T5: the bin and target ground-truth row of each ``binned`` detection (-1, -1 for the others)."""
    error = np.where(binned, BKG, -1).astype(np.int8)  # an image without ground truth: all Bkg
    target = np.full(len(rows), -1, dtype=np.int64)
    keep = binned[pairs.det] & ~pairs.crowd  # tidecv's ex.gt leaves the ignore regions out
    if not keep.any():
        return error, target
    det, gt, iou, same = pairs.det[keep], pairs.gt[keep], pairs.iou[keep], pairs.same_class[keep]
    starts = np.flatnonzero(np.r_[True, det[1:] != det[:-1]])
    owner = det[starts]
    used = gt_used[gt]
    tests = (  # (bin, the masked IoUs (T5), the closed range its maximum must fall in)
        (LOC, iou * same, t_b, t_f),
        (CLS, iou * ~same, t_f, np.inf),
        (DUPE, iou * same * used, t_f, np.inf),
    )
    undecided = np.ones(len(starts), dtype=bool)
    for code, values, low, high in tests:
        best, first = _segment_argmax(values, starts)
        hit = undecided & (low <= best) & (best <= high)
        error[owner[hit]] = code
        target[owner[hit]] = gt[first[hit]]
        undecided &= ~hit
    best_any = np.maximum.reduceat(iou, starts)
    error[owner[undecided]] = np.where(best_any[undecided] <= t_b, BKG, BOTH)
    return error, target


def _segment_argmax(values: np.ndarray, starts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per segment (non-empty, beginning at ``starts``): the maximum and the index of its first occurrence."""
    best = np.maximum.reduceat(values, starts)
    lengths = np.diff(np.r_[starts, len(values)])
    at_best = values == np.repeat(best, lengths)
    first = np.minimum.reduceat(np.where(at_best, np.arange(len(values)), len(values)), starts)
    return best, first


def _claims(v: _Verdicts, gt_used: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """T6: which Loc/Cls errors a fix turns into a true positive (the first claimant of each unused ground
    truth, in visit order), and which ground truths are claimed (``usable``)."""
    claiming = np.flatnonzero(((v.error == LOC) | (v.error == CLS)) & (v.target >= 0))
    claiming = claiming[~gt_used[v.target[claiming]]]
    usable = np.zeros(len(gt_used), dtype=bool)
    usable[v.target[claiming]] = True
    fixable = np.zeros(len(v.rows), dtype=bool)
    fixable[claiming[np.unique(v.target[claiming], return_index=True)[1]]] = True
    return fixable, usable


# --- the AP runs (T9-T12) ----------------------------------------------------------------------------------


class _Runs:
    """tidecv's original run and its fixed runs (``fix_errors``), each as per-class APs.

    A run's data points are *items*: the kept detections (their own class and score) and, for the Cls fix, a
    copy of each fixable Cls error relabelled to its ground truth's class. The items are sorted once by
    (class, descending score, visit order); a run takes its items in that order and, where it has original
    true positives, moves them after the errors' points of equal class and score (a stable sort on the tie
    runs, nearly sorted already: T11).
    """

    def __init__(
        self, d: Detections, v: _Verdicts, fixable: np.ndarray, gt_used: np.ndarray, missed: np.ndarray
    ) -> None:
        regular = d.gt_crowd == 0
        self.labels = np.unique(np.r_[d.det_labels[v.rows], d.gt_labels[regular]])
        self.num_gt = self._per_class(d.gt_labels[regular])
        self.unused = self._per_class(d.gt_labels[regular & ~gt_used])
        self.missed = self._per_class(d.gt_labels[missed])
        self.kept = len(v.rows)
        self.status, self.error = v.status, v.error
        self.fixable = fixable
        relabelled = np.flatnonzero((v.error == CLS) & fixable)
        self.relabelled = relabelled
        self.label = np.r_[self._class(d.det_labels[v.rows]), self._class(d.gt_labels[v.target[relabelled]])]
        score = d.det_scores[v.rows]
        score = np.r_[score, score[relabelled]]
        visit = np.r_[np.arange(self.kept), relabelled]
        self.order = np.lexsort((visit, -score, self.label))
        label, score = self.label[self.order], score[self.order]
        tie = np.cumsum(np.r_[False, (label[1:] != label[:-1]) | (score[1:] != score[:-1])])
        self.tie = np.empty(len(tie), dtype=np.int64)
        self.tie[self.order] = tie

    def counts(self, det_labels: np.ndarray, errors: np.ndarray, missed_labels: np.ndarray) -> np.ndarray:
        """int64 (classes, 6): each class's count of each bin; a detection's bin counts in its own class, a
        missed ground truth in its class."""
        width = len(MAIN_ERRORS)
        counts = np.bincount(self._class(det_labels) * width + errors, minlength=len(self.labels) * width)
        counts = counts.reshape(len(self.labels), width)
        counts[:, MISS] = self._per_class(missed_labels)
        return counts

    def _class(self, labels: np.ndarray) -> np.ndarray:
        return np.searchsorted(self.labels, labels)

    def _per_class(self, labels: np.ndarray) -> np.ndarray:
        return np.bincount(self._class(labels), minlength=len(self.labels))

    def _items(self, kept: np.ndarray, copies: np.ndarray | None = None) -> np.ndarray:
        """bool over the items: the kept detections ``kept`` and the relabelled copies ``copies``."""
        return np.r_[kept, np.zeros(len(self.relabelled), dtype=bool) if copies is None else copies]

    def original(self) -> tuple[np.ndarray, np.ndarray]:
        """The run itself: points in visit order, no groups."""
        present = self._items(self.status != IGNORED)
        order = self.order[present[self.order]]
        return class_aps(self.label[order], self.status[order] == TRUE_POSITIVE, self.num_gt)

    def fixed(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """``fix_errors`` for one main or special error: errors' points first, then the true positives."""
        true_positive = self.status == TRUE_POSITIVE
        false_positive = self.status == FALSE_POSITIVE
        num_gt = {"Miss": self.num_gt - self.missed, "FalseNeg": self.num_gt - self.unused}.get(name, self.num_gt)
        code = MAIN_ERRORS.index(name) if name in MAIN_ERRORS else -1
        kept = true_positive | (false_positive & (self.error != code))
        correct = true_positive.copy()
        copies = None
        if code == LOC:
            kept |= (self.error == LOC) & self.fixable
            correct |= (self.error == LOC) & self.fixable
        elif code == CLS:
            copies = np.ones(len(self.relabelled), dtype=bool)
        present = self._items(kept, copies)
        order = self.order[present[self.order]]
        later = self._items(true_positive)[order]  # the original true positives go after equal errors
        if name == "FalsePos":  # every false positive scores 0, every true positive 1 (errors/main_errors.py)
            order = order[np.argsort(self.label[order] * 2 + ~later, kind="stable")]
        elif later.any():
            order = order[np.argsort(self.tie[order] * 2 + later, kind="stable")]
        is_correct = self._items(correct, copies)[order]
        return class_aps(self.label[order], is_correct, num_gt)


def class_aps(label: np.ndarray, correct: np.ndarray, num_gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """tidecv's AP of each class (T9) as a fraction, and which classes its mean counts (T10), from the data
    points sorted by class, descending score and tidecv's tie order (T11).

    The precision envelope and the recall search run over all classes at once on complex keys
    (class + 1j * value), which numpy orders lexicographically: exact, no offsets added to the floats.
    """
    num_classes = len(num_gt)
    count = np.bincount(label, minlength=num_classes)
    start = np.cumsum(count) - count
    tp = np.cumsum(correct)
    tp = tp - np.r_[0, tp][start[label]]
    precision = tp / (np.arange(len(label)) - start[label] + 1)
    n = num_gt[label]
    with np.errstate(divide="ignore", invalid="ignore"):
        recall = np.where(n > 0, tp / np.where(n > 0, n, 1), 0.0)
    envelope = np.maximum.accumulate((-label + 1j * precision)[::-1])[::-1].imag
    scored = np.flatnonzero(num_gt > 0)
    queries = scored[:, None] + 1j * RECALL_POINTS[None, :]
    at = np.searchsorted(label + 1j * recall, queries, side="left")
    inside = at < (start + count)[scored][:, None]
    sampled = np.where(inside, envelope[np.minimum(at, max(len(label) - 1, 0))] if len(label) else 0.0, 0.0)
    aps = np.zeros(num_classes)
    aps[scored] = sampled.sum(axis=1) / len(RECALL_POINTS)
    return aps, (count > 0) | (num_gt > 0)


def _mean(aps: np.ndarray, counted: np.ndarray) -> float | None:
    return float(np.mean(aps[counted])) if counted.any() else None


# --- the result ------------------------------------------------------------------------------------------


def _analysis(
    d: Detections,
    v: _Verdicts,
    missed: np.ndarray,
    runs: _Runs,
    category_ids: np.ndarray,
    class_names: Mapping[int, str],
    t_f: float,
    t_b: float,
) -> ErrorAnalysis:
    base_aps, base_counted = runs.original()
    fixed = {name: runs.fixed(name) for name in (*MAIN_ERRORS, *SPECIAL_ERRORS)}
    base = _mean(base_aps, base_counted)
    gains = {}
    for name, (aps, counted) in fixed.items():
        mean = _mean(aps, counted)
        # A run without a class to average: tidecv divides by zero; only possible when the AP is 0 (see above).
        gains[name] = 0.0 if base is None else (mean if mean is not None else 0.0) - base
    main = {name: max(gains[name], 0.0) for name in MAIN_ERRORS}  # T12
    special = {name: gains[name] for name in SPECIAL_ERRORS}
    binned = v.status != TRUE_POSITIVE
    class_counts = runs.counts(d.det_labels[v.rows[binned]], v.error[binned], d.gt_labels[missed])
    counts = {name: int(n) for name, n in zip(MAIN_ERRORS, class_counts.sum(axis=0))}
    per_class = _per_class(runs, base_aps, base_counted, fixed, class_counts, category_ids, class_names)
    return ErrorAnalysis(
        mode="tidecv",
        iou_threshold=float(t_f),
        background_threshold=float(t_b),
        ap=-1.0 if base is None else base,
        main=main,
        special=special,
        counts=counts,
        per_class=per_class,
        false_positives=_false_positive_rows(d, v, binned),
        missed=_missed_rows(d, missed),
    )


def _per_class(
    runs: _Runs,
    base_aps: np.ndarray,
    base_counted: np.ndarray,
    fixed: dict[str, tuple[np.ndarray, np.ndarray]],
    class_counts: np.ndarray,
    category_ids: np.ndarray,
    class_names: Mapping[int, str],
) -> tuple[ClassErrors, ...]:
    """One row per category of ``category_ids``: tidecv's per-class AP of each run (``objs[k].get_ap()``)."""
    rows = []
    for category in np.asarray(category_ids, dtype=np.int64).tolist():
        k = int(np.searchsorted(runs.labels, category))
        present = k < len(runs.labels) and runs.labels[k] == category
        known = present and bool(base_counted[k])
        gains = {
            name: float(aps[k] - base_aps[k]) if known and counted[k] else float("nan")
            for name, (aps, counted) in fixed.items()
        }
        counts = class_counts[k] if present else np.zeros(len(MAIN_ERRORS), np.int64)
        rows.append(
            ClassErrors(
                category_id=category,
                name=class_names.get(category, str(category)),
                ap=float(base_aps[k]) if known else -1.0,
                main={name: gains[name] for name in MAIN_ERRORS},
                special={name: gains[name] for name in SPECIAL_ERRORS},
                counts={name: int(n) for name, n in zip(MAIN_ERRORS, counts)},
            )
        )
    return tuple(rows)


def _false_positive_rows(d: Detections, v: _Verdicts, binned: np.ndarray) -> FalsePositives:
    rows, target = v.rows[binned], v.target[binned]
    position = d.det_position[rows]
    detection = rows - np.searchsorted(d.det_position, position, side="left")
    has_gt = target >= 0
    gt_index = np.where(has_gt, target - np.searchsorted(d.gt_position, position, side="left"), -1)
    image_id = d.image_ids[position]
    order = np.argsort(_image_rank(d)[position] * len(d.det_scores) + rows)  # by image id, then place
    columns = {
        "image_id": image_id,
        "detection": detection,
        "category_id": d.det_labels[rows],
        "score": d.det_scores[rows],
        "error": v.error[binned].astype(np.int64),
        "gt_index": gt_index,
        "gt_category_id": np.where(has_gt, d.gt_labels[np.maximum(target, 0)] if len(d.gt_labels) else -1, -1),
    }
    return FalsePositives(**{name: np.asarray(c)[order] for name, c in columns.items()})


def _missed_rows(d: Detections, missed: np.ndarray) -> MissedObjects:
    rows = np.flatnonzero(missed)
    position = d.gt_position[rows]
    gt_index = rows - np.searchsorted(d.gt_position, position, side="left")
    image_id = d.image_ids[position]
    order = np.argsort(_image_rank(d)[position] * len(d.gt_labels) + rows)
    return MissedObjects(image_id[order], gt_index[order], d.gt_labels[rows][order])


def _image_rank(d: Detections) -> np.ndarray:
    """int64 (I,): each position's place in image-id order."""
    rank = np.empty(d.num_images, dtype=np.int64)
    rank[np.argsort(d.image_ids, kind="stable")] = np.arange(d.num_images)
    return rank
