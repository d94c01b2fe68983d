"""The one module that runs COCOeval: pycocotools (the reference) or faster-coco-eval (the fast one).

Two backends (:class:`~ignite_det.backends.base.EvaluationBackend`), :class:`PycocotoolsBackend` and
:class:`FasterCocoEvalBackend`: at ``compute()`` the images' (image, category) cells are laid out as
COCOeval takes them (:class:`MatchCells`), with the IoUs of the backend's own box IoU, and COCOeval's
evaluate and accumulate run on them. The per-detection outcome of the operating point comes from the
native matcher, the one implementation of COCOeval's matching in the package (it equals ``evalImgs``).

Both backends give the same numbers to the last bit. faster-coco-eval's accumulate computes
precision as ``tp / (tp + fp)`` where pycocotools computes ``tp / (tp + fp + np.spacing(1))``;
the two differ only where ``tp + fp == 1``, i.e. where the first counted detection of a curve is a
true positive: pycocotools then gets ``1 / (1 + eps) = 0.9999999999999998``, and keeps it after
interpolation unless the second counted detection is a true positive too (precision exactly 1).
:func:`_faster_coco_eval` samples each curve once more at recall ``1.5 / npig`` (where precision is
1.0 exactly when the second counted detection is a true positive) and restores pycocotools' value.

Neither runs ``protocol="lvis"``: :class:`~ignite_det.CocoMetric` refuses it with these backends, as
COCOeval caps detections per (image, category) and has no federated rules.
"""

from __future__ import annotations

import contextlib
import gc
import io
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from types import SimpleNamespace

import numpy as np

from ignite_det.backends.base import CocoArrays, Evaluation, Records, non_ignored_gt_counts
from ignite_det.backends.native.matching import MatchRecords, match_in_chunks
from ignite_det.iou.by_type import BoxIou, CellIou, cell_iou, pair_iou
from ignite_det.params import EvalParams
from ignite_det.store import DetectionStore
from ignite_det.table import Detections, category_index

AddAnnotation = Callable[[int, int, dict], None]  # (image id, category id, annotation)

# (image, category) cells evaluated per COCOeval run; see accumulate().
CELLS_PER_RUN = 50_000

# What pycocotools' accumulate computes for precision after one true positive: 1 / (0 + 1 + eps).
_ONE_TP_PRECISION = 1.0 / (0.0 + 1.0 + np.spacing(1))


# One COCOeval run on a group of categories: (detections, category ids, the group's indices, params, cells).
CocoEvalRun = Callable[[Detections, list[int], range, EvalParams, "MatchCells"], CocoArrays]


@dataclass(frozen=True)
class MatchCells:
    """The (image, category) cells that hold both detections and ground truth, in COCOeval's order.

    Images are in sorted image-id order, as COCOeval sorts them; a cell's detections are its best
    ``max_det`` by score, ties in arrival order (a stable sort); its ground truths in arrival order.
    """

    img_ids: list[int]
    cells: list[tuple[int, int]]  # (image index, category index)
    dets: list[np.ndarray]
    gts: list[np.ndarray]
    ious: list[np.ndarray]  # (D, G) per cell, by the backend's IoU

    @staticmethod
    def build(d: Detections, cat_ids: list[int], max_det: int, iou: CellIou) -> MatchCells:
        order = np.argsort(d.image_ids, kind="stable")
        img_rank = np.empty_like(order)
        img_rank[order] = np.arange(len(order))
        k = len(cat_ids)
        cats = np.asarray(cat_ids, dtype=np.int64)
        det_k = category_index(d.det_labels, cats)
        rows = np.flatnonzero(det_k >= 0)
        det_key = img_rank[d.det_position[rows]] * k + det_k[rows]
        sort = np.lexsort((np.arange(len(rows)), -d.det_scores[rows], det_key))
        det_rows, det_key = rows[sort], det_key[sort]
        det_starts, det_ends = _runs(det_key)

        gt_key = img_rank[d.gt_position] * k + category_index(d.gt_labels, cats)
        gt_rows = np.argsort(gt_key, kind="stable")
        gt_starts, gt_ends = _runs(gt_key[gt_rows])
        keys, det_at, gt_at = np.intersect1d(det_key[det_starts], gt_key[gt_rows][gt_starts], return_indices=True)
        dets = [det_rows[det_starts[i] : min(det_ends[i], det_starts[i] + max_det)] for i in det_at]
        gts = [gt_rows[gt_starts[i] : gt_ends[i]] for i in gt_at]
        return MatchCells(
            img_ids=d.image_ids[order].tolist(),
            cells=list(zip((keys // max(k, 1)).tolist(), (keys % max(k, 1)).tolist())),
            dets=dets,
            gts=gts,
            ious=[iou(d, r, g) for r, g in zip(dets, gts)],
        )

    def iou_table(self, categories: range) -> list[list]:
        """The IoU matrices of some categories (indices), nested image -> category, as
        faster-coco-eval's C++ core takes them."""
        # Empty cells all share one list: building a fresh one per (image, category) cost more than
        # the rest of the table (400k lists on COCO val), and the C++ core only reads them.
        no_pairs: list = []
        table: list[list] = [[no_pairs] * len(categories) for _ in self.img_ids]
        for (i, k), ious in zip(self.cells, self.ious):
            if k in categories:
                table[i][k - categories.start] = ious
        return table


def _runs(sorted_keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start and end of each run of equal values in a sorted array."""
    if len(sorted_keys) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    starts = np.flatnonzero(np.r_[True, sorted_keys[1:] != sorted_keys[:-1]])
    return starts, np.r_[starts[1:], len(sorted_keys)]


def accumulate(
    d: Detections, category_ids: Sequence[int], params: EvalParams, run: CocoEvalRun, cells: MatchCells
) -> CocoArrays:
    """Run COCOeval's evaluate and accumulate on ``d`` (one image id per position), a group of
    categories at a time.

    COCOeval keeps state for every (image, category, area range), evaluated or empty: most of its
    memory (1.6 million entries on COCO val). Categories are independent in both ``evaluateImg`` and
    ``accumulate``, so evaluating them in groups of at most ``CELLS_PER_RUN`` (image, category)
    cells gives the same arrays with a fraction of that peak.
    """
    cat_ids = list(category_ids)
    step = max(1, CELLS_PER_RUN // max(1, len(cells.img_ids)))
    groups = [range(lo, min(lo + step, len(cat_ids))) for lo in range(0, len(cat_ids), step)] or [range(0)]
    parts = [run(d, cat_ids, group, params, cells) for group in groups]
    return CocoArrays(
        precision=np.concatenate([part.precision for part in parts], axis=2),
        recall=np.concatenate([part.recall for part in parts], axis=1),
        scores=np.concatenate([part.scores for part in parts], axis=2),
    )


def _add_annotations(d: Detections, cat_ids: list[int], add_gt: AddAnnotation, add_dt: AddAnnotation) -> None:
    """Every annotation of the categories ``cat_ids`` as the dict COCOeval reads, in arrival order,
    by (image id, category id).

    The dicts keep only the fields that pycocotools' ``evaluateImg`` and faster-coco-eval's C++ core
    read: ground truths ``id, area, iscrowd, ignore`` (``ignore`` is ``iscrowd``, or for keypoints
    no labelled point, as ``COCOeval._prepare`` sets it, cocoeval.py:108-111), detections
    ``id, score, area`` (``det_area``: w * h for a box result, as loadRes sets it, coco.py:342, the
    mask area or the keypoints' extent for the other types, unless the prediction gave its own).
    Ids are row index + 1: COCOeval tests a match for truth, so id 0 would read as "unmatched".
    """
    image_ids = d.image_ids.tolist()
    with gc_paused():  # half a million small dicts: the cyclic collector would rescan them over and over
        rows = np.flatnonzero(np.isin(d.gt_labels, cat_ids))
        for i, position, cat, area, crowd, ignore in zip(
            (rows + 1).tolist(),
            d.gt_position[rows].tolist(),
            d.gt_labels[rows].tolist(),
            d.gt_area[rows].tolist(),
            d.gt_crowd[rows].tolist(),
            d.gt_ignored()[rows].astype(np.int64).tolist(),
        ):
            add_gt(image_ids[position], cat, {"id": i, "area": area, "iscrowd": crowd, "ignore": ignore})
        rows = np.flatnonzero(np.isin(d.det_labels, cat_ids))
        for i, position, cat, score, area in zip(
            (rows + 1).tolist(),
            d.det_position[rows].tolist(),
            d.det_labels[rows].tolist(),
            d.det_scores[rows].tolist(),
            d.det_area[rows].tolist(),
        ):
            add_dt(image_ids[position], cat, {"id": i, "score": score, "area": area})


# --- pycocotools ---------------------------------------------------------------------------------


def _pycocotools(d: Detections, cat_ids: list[int], group: range, params: EvalParams, cells: MatchCells) -> CocoArrays:
    """pycocotools' own ``evaluate`` (its ``evaluateImg`` per cell) and ``accumulate``.

    Only the two steps that read COCO objects are replaced: ``_prepare``, which groups the
    annotations by (image, category), and ``computeIoU``, whose matrices ``cells`` already holds
    (computed by pycocotools' ``mask.iou`` on the same boxes, detections in the same order). That
    skips building two indexed COCO objects and a box list per annotation: less time, and less
    memory than the plain recipe.
    """
    from pycocotools.cocoeval import COCOeval

    group_ids = [cat_ids[k] for k in group]
    gts: defaultdict = defaultdict(list)
    dts: defaultdict = defaultdict(list)
    _add_annotations(
        d, group_ids, lambda img, cat, ann: gts[img, cat].append(ann), lambda img, cat, ann: dts[img, cat].append(ann)
    )
    ious = {(cells.img_ids[i], cat_ids[k]): matrix for (i, k), matrix in zip(cells.cells, cells.ious) if k in group}

    class PreparedCOCOeval(COCOeval):
        def _prepare(self) -> None:
            self._gts, self._dts = gts, dts

        def computeIoU(self, imgId: int, catId: int) -> np.ndarray | list:  # noqa: N802, N803 (its names)
            return ious.get((imgId, catId), [])

    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress unconditionally
        coco_eval = PreparedCOCOeval(iouType="bbox")
        p = coco_eval.params
        p.imgIds, p.catIds = cells.img_ids, group_ids
        p.iouThrs, p.recThrs = params.iou_thresholds, params.rec_thresholds
        p.maxDets = list(params.max_detections)
        p.areaRng = [list(r) for r in params.area_ranges]
        p.areaRngLbl = list(params.area_names)
        coco_eval.evaluate()
        coco_eval.accumulate()
    return CocoArrays(coco_eval.eval["precision"], coco_eval.eval["recall"], coco_eval.eval["scores"])


# --- faster-coco-eval ----------------------------------------------------------------------------


def _faster_coco_eval(
    d: Detections, cat_ids: list[int], group: range, params: EvalParams, cells: MatchCells
) -> CocoArrays:
    import faster_coco_eval.faster_eval_api_cpp as _C

    group_ids = [cat_ids[k] for k in group]
    # Datasets filled straight from arrays, skipping COCO objects and loadRes.
    gt_dataset, dt_dataset = _C.Dataset(), _C.Dataset()
    _add_annotations(d, group_ids, gt_dataset.append_ref, dt_dataset.append_ref)
    ious = cells.iou_table(group)
    npig = non_ignored_gt_counts(d, group_ids, params)
    probes = np.unique(npig[npig >= 2])
    settings = SimpleNamespace(
        iouThrs=params.iou_thresholds,
        recThrs=np.concatenate([params.rec_thresholds, 1.5 / probes]),
        maxDets=list(params.max_detections),
        areaRng=[list(r) for r in params.area_ranges],
        areaRngLbl=list(params.area_names),
        useCats=1,
        catIds=group_ids,
        imgIds=cells.img_ids,
    )
    result = _C.COCOevalEvaluateAccumulate(settings, ious, gt_dataset, dt_dataset, cells.img_ids, group_ids, True)
    r = len(params.rec_thresholds)
    precision = np.array(result["precision"][:, :r])
    _restore_one_tp_precision(precision, result["precision"][:, r:], npig, probes)
    return CocoArrays(precision, np.array(result["recall"]), np.array(result["scores"][:, :r]))


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """No cyclic garbage collection inside: bursts of millions of small containers (dicts, lists)
    each trigger a collection that rescans every live container; measured 10-40 % of building them."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _restore_one_tp_precision(precision: np.ndarray, probed: np.ndarray, npig: np.ndarray, probes: np.ndarray) -> None:
    """Turn faster-coco-eval's 1.0 into pycocotools' 1/(1+eps) where only one-detection prefixes reach it."""
    k_count, a_count = npig.shape
    second_is_tp = np.zeros((precision.shape[0], k_count, a_count, precision.shape[4]), dtype=bool)
    for a in range(a_count):
        for k in range(k_count):
            if npig[k, a] >= 2:
                slot = int(np.searchsorted(probes, npig[k, a]))
                second_is_tp[:, k, a, :] = probed[:, slot, k, a, :] == 1.0
    wrong = (precision == 1.0) & ~second_is_tp[:, None]
    precision[wrong] = _ONE_TP_PRECISION


# --- the two backends ------------------------------------------------------------------------------


class _CocoEvalBackend:
    """What both COCOeval backends share: nothing per image before ``compute()``, the cells laid out
    with the backend's box IoU, COCOeval run on them, the outcome from the native matcher."""

    needs_geometry = True  # COCOeval computes every IoU on rank 0

    def __init__(self, params: EvalParams, operating_iou: int) -> None:
        self.params = params
        self.operating_iou = operating_iou

    def update(self, store: DetectionStore) -> None:
        """Nothing: COCOeval sees the images whole, at ``compute()``."""

    def records(self, store: DetectionStore) -> Records:
        return {}

    def evaluate(self, d: Detections, records: Records, category_ids: np.ndarray, det_k: np.ndarray) -> Evaluation:
        cat_ids = category_ids.tolist()
        cells = MatchCells.build(d, cat_ids, self.params.max_detections[-1], cell_iou(self.params, self._box_iou()))
        arrays = accumulate(d, cat_ids, self.params, self._run, cells)
        matched = self._area_all_records(d)
        outcomes = matched.evaluated_outcomes(det_k)
        kept = matched.rank < self.params.max_detections[-1]
        by_score = np.argsort(-d.det_scores, kind="stable")
        return Evaluation(arrays, outcomes[self.operating_iou], by_score, outcomes, kept)

    def _area_all_records(self, d: Detections) -> MatchRecords:
        """Each detection at every IoU threshold, area "all", by the native matcher (COCOeval's
        ``evalImgs`` hold the same, as Python objects per cell)."""
        area_all = replace(self.params, area_ranges=self.params.area_ranges[:1], area_names=self.params.area_names[:1])
        return match_in_chunks(d, area_all, pair_iou(self.params))

    @staticmethod
    def _box_iou() -> BoxIou:
        """The backend's own ``mask.iou`` (the same C formula in both), for boxes."""
        raise NotImplementedError

    _run: CocoEvalRun  # one COCOeval run on a group of categories


class PycocotoolsBackend(_CocoEvalBackend):
    """pycocotools' ``COCOeval`` itself: the reference."""

    @staticmethod
    def check_installed() -> None:
        """pycocotools is a dependency of ignite-det: always there."""

    @staticmethod
    def _box_iou() -> BoxIou:
        from pycocotools.mask import iou

        return iou

    _run = staticmethod(_pycocotools)


class FasterCocoEvalBackend(_CocoEvalBackend):
    """faster-coco-eval's C++ ``COCOeval``, with pycocotools' one-true-positive precision restored."""

    @staticmethod
    def check_installed() -> None:
        try:
            import faster_coco_eval  # noqa: F401
        except ImportError as error:
            raise ModuleNotFoundError(
                "backend='faster_coco_eval' needs faster-coco-eval: pip install 'ignite-det[fast]'"
            ) from error

    @staticmethod
    def _box_iou() -> BoxIou:
        from faster_coco_eval.core.mask import iou

        return iou

    _run = staticmethod(_faster_coco_eval)
