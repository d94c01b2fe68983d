"""The one module that runs COCOeval: pycocotools (the reference) or faster-coco-eval (the fast one).

Both backends give the same numbers to the last bit. faster-coco-eval's accumulate computes
precision as ``tp / (tp + fp)`` where pycocotools computes ``tp / (tp + fp + np.spacing(1))``;
the two differ only where ``tp + fp == 1``, i.e. where the first counted detection of a curve is a
true positive: pycocotools then gets ``1 / (1 + eps) = 0.9999999999999998``, and keeps it after
interpolation unless the second counted detection is a true positive too (precision exactly 1).
:func:`_faster_coco_eval` samples each curve once more at recall ``1.5 / npig`` (where precision is
1.0 exactly when the second counted detection is a true positive) and restores pycocotools' value.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence
from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np

from ignite_det.params import EvalParams
from ignite_det.store import Detections, category_index

BACKENDS = ("pycocotools", "faster_coco_eval")

# What pycocotools' accumulate computes for precision after one true positive: 1 / (0 + 1 + eps).
_ONE_TP_PRECISION = 1.0 / (0.0 + 1.0 + np.spacing(1))


@dataclass(frozen=True)
class Evaluation:
    """COCOeval's accumulated arrays, axes as in pycocotools' ``accumulate``.

    ``precision`` and ``scores``: (T, R, K, A, M); ``recall``: (T, K, A, M); -1 where undefined.
    ``det_outcome``: (N,) int8 per detection at ``f1_iou``, area "all", the largest maxDets:
    1 true positive, 0 false positive, -1 not counted (matched to a crowd region, beyond maxDets,
    or a category that is not evaluated).
    """

    precision: np.ndarray
    recall: np.ndarray
    scores: np.ndarray
    det_outcome: np.ndarray


def check_backend(backend: str) -> None:
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "faster_coco_eval":
        try:
            import faster_coco_eval  # noqa: F401
        except ImportError as error:
            raise ModuleNotFoundError(
                "backend='faster_coco_eval' needs faster-coco-eval: pip install 'ignite-det[fast]'"
            ) from error


def evaluate(
    detections: Detections,
    category_ids: Sequence[int],
    params: EvalParams,
    backend: str,
    f1_iou_index: int,
) -> Evaluation:
    """Run COCOeval's evaluate and accumulate on ``detections`` (one image id per position)."""
    if backend == "pycocotools":
        return _pycocotools(detections, list(category_ids), params, f1_iou_index)
    return _faster_coco_eval(detections, list(category_ids), params, f1_iou_index)


# --- pycocotools ---------------------------------------------------------------------------------


def _pycocotools(d: Detections, cat_ids: list[int], params: EvalParams, f1_t: int) -> Evaluation:
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    img_ids = d.image_ids.tolist()
    evaluated = np.isin(d.det_labels, cat_ids)
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress unconditionally
        gt = _coco(COCO, img_ids, cat_ids, _gt_annotations(d))
        dt = _coco(COCO, img_ids, cat_ids, _dt_annotations(d, evaluated))
        coco_eval = COCOeval(gt, dt, iouType="bbox")
        p = coco_eval.params
        p.imgIds, p.catIds = img_ids, cat_ids
        p.iouThrs, p.recThrs = params.iou_thresholds, params.rec_thresholds
        p.maxDets = list(params.max_detections)
        p.areaRng = [list(r) for r in params.area_ranges]
        p.areaRngLbl = list(params.area_names)
        coco_eval.evaluate()
        coco_eval.accumulate()
    outcome = _pycocotools_outcome(
        coco_eval.evalImgs, len(img_ids), len(params.area_ranges), len(d.det_scores), f1_t
    )
    return Evaluation(
        coco_eval.eval["precision"], coco_eval.eval["recall"], coco_eval.eval["scores"], outcome
    )


def _coco(coco_class: type, img_ids: list[int], cat_ids: list[int], annotations: list[dict]):
    coco = coco_class()
    coco.dataset = {
        "images": [{"id": i} for i in img_ids],
        "categories": [{"id": c} for c in cat_ids],
        "annotations": annotations,
    }
    coco.createIndex()
    return coco


def _gt_annotations(d: Detections) -> list[dict]:
    # Annotation ids start at 1: COCOeval stores matches as ids and tests them for truth (id 0 = "unmatched").
    return [
        {"id": i, "image_id": img, "category_id": cat, "bbox": box, "area": area, "iscrowd": crowd}
        for i, img, cat, box, area, crowd in zip(
            range(1, len(d.gt_labels) + 1),
            d.image_ids[d.gt_position].tolist(),
            d.gt_labels.tolist(),
            d.gt_boxes.tolist(),
            d.gt_area.tolist(),
            d.gt_crowd.tolist(),
        )
    ]


def _dt_annotations(d: Detections, evaluated: np.ndarray) -> list[dict]:
    # What loadRes makes of a box result (coco.py:337-344), less the polygon nobody reads for bbox;
    # ids are index + 1 so that matches map back to our rows.
    index = np.flatnonzero(evaluated)
    return [
        {"id": i, "image_id": img, "category_id": cat, "bbox": box, "score": score, "area": box[2] * box[3], "iscrowd": 0}
        for i, img, cat, box, score in zip(
            (index + 1).tolist(),
            d.image_ids[d.det_position[index]].tolist(),
            d.det_labels[index].tolist(),
            d.det_boxes[index].tolist(),
            d.det_scores[index].tolist(),
        )
    ]


def _pycocotools_outcome(eval_imgs: list, num_images: int, num_areas: int, num_dets: int, t: int) -> np.ndarray:
    """Per-detection outcome at IoU index ``t`` from COCOeval's evalImgs (laid out category, area, image)."""
    outcome = np.full(num_dets, -1, dtype=np.int8)
    per_category = num_areas * num_images
    for start in range(0, len(eval_imgs), per_category):
        for e in eval_imgs[start : start + num_images]:  # area "all" comes first
            if e is None or not e["dtIds"]:
                continue
            rows = np.asarray(e["dtIds"]) - 1
            counted = ~e["dtIgnore"][t].astype(bool)
            outcome[rows[counted]] = e["dtMatches"][t][counted] > 0
    return outcome


# --- faster-coco-eval ----------------------------------------------------------------------------


def _faster_coco_eval(d: Detections, cat_ids: list[int], params: EvalParams, f1_t: int) -> Evaluation:
    import faster_coco_eval.faster_eval_api_cpp as _C
    from faster_coco_eval.core import mask as mask_utils

    inputs = _FasterInputs.build(d, cat_ids, params.max_detections[-1])
    gt_dataset, dt_dataset = _C.Dataset(), _C.Dataset()
    for img, cat, ann in inputs.gt_refs:
        gt_dataset.append_ref(img, cat, ann)
    for img, cat, ann in inputs.dt_refs:
        dt_dataset.append_ref(img, cat, ann)
    ious = inputs.ious(mask_utils.iou, d, len(cat_ids))
    npig = _non_ignored_gt_counts(d, cat_ids, params)
    probes = np.unique(npig[npig >= 2])

    def run(**overrides: object) -> dict:
        settings = {
            "iouThrs": params.iou_thresholds,
            "recThrs": params.rec_thresholds,
            "maxDets": list(params.max_detections),
            "areaRng": [list(r) for r in params.area_ranges],
            "areaRngLbl": list(params.area_names),
            "useCats": 1,
            "catIds": cat_ids,
            "imgIds": inputs.img_ids,
            **overrides,
        }
        return _C.COCOevalEvaluateAccumulate(
            SimpleNamespace(**settings), ious, gt_dataset, dt_dataset, inputs.img_ids, cat_ids, True
        )

    result = run(recThrs=np.concatenate([params.rec_thresholds, 1.5 / probes]))
    r = len(params.rec_thresholds)
    precision = np.array(result["precision"][:, :r])
    _restore_one_tp_precision(precision, result["precision"][:, r:], npig, probes)
    # The matches at one IoU threshold and area "all" alone, for the per-detection outcome.
    single = run(
        iouThrs=params.iou_thresholds[f1_t : f1_t + 1],
        recThrs=np.zeros(1),
        maxDets=[params.max_detections[-1]],
        areaRng=[list(params.area_ranges[0])],
        areaRngLbl=["all"],
    )
    outcome = inputs.outcome(single["matched"], d, params.area_ranges[0])
    return Evaluation(precision, np.array(result["recall"]), np.array(result["scores"][:, :r]), outcome)


def _non_ignored_gt_counts(d: Detections, cat_ids: list[int], params: EvalParams) -> np.ndarray:
    """accumulate's npig per (category, area range): ground truths neither crowd nor out of range."""
    counts = np.zeros((len(cat_ids), len(params.area_ranges)), dtype=np.int64)
    k = category_index(d.gt_labels, np.asarray(cat_ids, dtype=np.int64))
    for a, (lo, hi) in enumerate(params.area_ranges):
        counted = (k >= 0) & (d.gt_crowd == 0) & (d.gt_area >= lo) & (d.gt_area <= hi)
        counts[:, a] = np.bincount(k[counted], minlength=len(cat_ids))
    return counts


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


@dataclass(frozen=True)
class _FasterInputs:
    """faster-coco-eval's inputs built straight from arrays, skipping COCO objects and loadRes.

    Annotations carry only what its C++ core reads (id, score, area, iscrowd, ignore); ids are
    row index + 1. Images are in sorted image-id order, as COCOeval sorts them for tie-breaking.
    """

    img_ids: list[int]
    gt_refs: list[tuple[int, int, dict]]
    dt_refs: list[tuple[int, int, dict]]
    counted: np.ndarray  # bool (N,): a detection within the top maxDets of its (image, category)
    pair_dets: list[np.ndarray]  # per (image, category) pair with both: det rows, best score first
    pair_gts: list[np.ndarray]  # the pair's ground-truth rows in arrival order
    pair_cells: list[tuple[int, int]]  # (image index, category index) of each pair

    @staticmethod
    def build(d: Detections, cat_ids: list[int], max_det: int) -> _FasterInputs:
        order = np.argsort(d.image_ids, kind="stable")
        img_rank = np.empty_like(order)
        img_rank[order] = np.arange(len(order))
        cats = np.asarray(cat_ids, dtype=np.int64)
        det_k = category_index(d.det_labels, cats)
        gt_k = category_index(d.gt_labels, cats)
        evaluated = det_k >= 0
        image_ids = d.image_ids.tolist()

        gt_img = [image_ids[p] for p in d.gt_position.tolist()]
        gt_refs = [
            (img, cat, {"id": i, "area": area, "iscrowd": crowd, "ignore": crowd})
            for i, img, cat, area, crowd in zip(
                range(1, len(gt_img) + 1), gt_img, d.gt_labels.tolist(), d.gt_area.tolist(), d.gt_crowd.tolist()
            )
        ]
        rows = np.flatnonzero(evaluated)
        det_area = d.det_boxes[:, 2] * d.det_boxes[:, 3]
        dt_refs = [
            (image_ids[p], cat, {"id": i, "score": score, "area": area})
            for i, p, cat, score, area in zip(
                (rows + 1).tolist(),
                d.det_position[rows].tolist(),
                d.det_labels[rows].tolist(),
                d.det_scores[rows].tolist(),
                det_area[rows].tolist(),
            )
        ]

        # Detections of one (image, category), best score first, ties in arrival order (a stable sort).
        det_key = img_rank[d.det_position[rows]] * len(cats) + det_k[rows]
        det_rows = rows[np.lexsort((np.arange(len(rows)), -d.det_scores[rows], det_key))]
        det_key = img_rank[d.det_position[det_rows]] * len(cats) + det_k[det_rows]
        det_starts, det_ends = _runs(det_key)
        rank = np.arange(len(det_rows)) - np.repeat(det_starts, det_ends - det_starts)
        counted = np.zeros(len(d.det_scores), dtype=bool)
        counted[det_rows[rank < max_det]] = True

        gt_key = img_rank[d.gt_position] * len(cats) + gt_k
        gt_rows = np.argsort(gt_key, kind="stable")
        gt_starts, gt_ends = _runs(gt_key[gt_rows])
        _, det_at, gt_at = np.intersect1d(det_key[det_starts], gt_key[gt_rows][gt_starts], return_indices=True)
        pair_dets = [det_rows[det_starts[i] : min(det_ends[i], det_starts[i] + max_det)] for i in det_at]
        pair_gts = [gt_rows[gt_starts[i] : gt_ends[i]] for i in gt_at]
        keys = det_key[det_starts[det_at]]
        cells = list(zip((keys // max(len(cats), 1)).tolist(), (keys % max(len(cats), 1)).tolist()))
        return _FasterInputs(
            [image_ids[p] for p in order.tolist()], gt_refs, dt_refs, counted, pair_dets, pair_gts, cells
        )

    def ious(self, iou, d: Detections, num_categories: int) -> list[list]:
        """IoU matrices nested image -> category, computed by faster-coco-eval's own bbox IoU."""
        table: list[list] = [[[] for _ in range(num_categories)] for _ in self.img_ids]
        for (i, k), dets, gts in zip(self.pair_cells, self.pair_dets, self.pair_gts):
            table[i][k] = iou(d.det_boxes[dets], d.gt_boxes[gts], d.gt_crowd[gts].tolist())
        return table

    def outcome(self, matched: dict[str, float], d: Detections, all_range: tuple[float, float]) -> np.ndarray:
        outcome = np.full(len(d.det_scores), -1, dtype=np.int8)
        area = d.det_boxes[:, 2] * d.det_boxes[:, 3]
        in_range = (area >= all_range[0]) & (area <= all_range[1])
        outcome[self.counted & in_range] = 0
        if matched:
            pairs = np.array([key.split("_") for key in matched], dtype=np.int64) - 1
            outcome[pairs[:, 0]] = np.where(d.gt_crowd[pairs[:, 1]] == 0, 1, -1)
        return outcome


def _runs(sorted_keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start and end of each run of equal values in a sorted array."""
    if len(sorted_keys) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    starts = np.flatnonzero(np.r_[True, sorted_keys[1:] != sorted_keys[:-1]])
    return starts, np.r_[starts[1:], len(sorted_keys)]
