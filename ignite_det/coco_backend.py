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
import gc
import io
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np

from ignite_det.matching import MatchCells
from ignite_det.params import EvalParams
from ignite_det.store import Detections, category_index

BACKENDS = ("pycocotools", "faster_coco_eval")

# What pycocotools' accumulate computes for precision after one true positive: 1 / (0 + 1 + eps).
_ONE_TP_PRECISION = 1.0 / (0.0 + 1.0 + np.spacing(1))


@dataclass(frozen=True)
class CocoArrays:
    """COCOeval's accumulated arrays, axes as in pycocotools' ``accumulate``.

    ``precision`` and ``scores``: (T, R, K, A, M); ``recall``: (T, K, A, M); -1 where undefined.
    """

    precision: np.ndarray
    recall: np.ndarray
    scores: np.ndarray


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


def match_cells(d: Detections, category_ids: Sequence[int], params: EvalParams, backend: str) -> MatchCells:
    """The cells to match, with IoUs from the backend's own bbox IoU (the same C formula in both)."""
    if backend == "pycocotools":
        from pycocotools.mask import iou
    else:
        from faster_coco_eval.core.mask import iou
    return MatchCells.build(d, list(category_ids), params.max_detections[-1], iou)


def accumulate(
    d: Detections, category_ids: Sequence[int], params: EvalParams, backend: str, cells: MatchCells
) -> CocoArrays:
    """Run COCOeval's evaluate and accumulate on ``d`` (one image id per position)."""
    if backend == "pycocotools":
        return _pycocotools(d, list(category_ids), params)
    return _faster_coco_eval(d, list(category_ids), params, cells)


# --- pycocotools ---------------------------------------------------------------------------------


def _pycocotools(d: Detections, cat_ids: list[int], params: EvalParams) -> CocoArrays:
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
    return CocoArrays(coco_eval.eval["precision"], coco_eval.eval["recall"], coco_eval.eval["scores"])


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
        {
            "id": i,
            "image_id": img,
            "category_id": cat,
            "bbox": box,
            "score": score,
            "area": box[2] * box[3],
            "iscrowd": 0,
        }
        for i, img, cat, box, score in zip(
            (index + 1).tolist(),
            d.image_ids[d.det_position[index]].tolist(),
            d.det_labels[index].tolist(),
            d.det_boxes[index].tolist(),
            d.det_scores[index].tolist(),
        )
    ]


# --- faster-coco-eval ----------------------------------------------------------------------------


def _faster_coco_eval(d: Detections, cat_ids: list[int], params: EvalParams, cells: MatchCells) -> CocoArrays:
    import faster_coco_eval.faster_eval_api_cpp as _C

    gt_dataset, dt_dataset = _datasets(_C.Dataset, d, cat_ids)
    ious = cells.iou_table()
    npig = _non_ignored_gt_counts(d, cat_ids, params)
    probes = np.unique(npig[npig >= 2])
    settings = SimpleNamespace(
        iouThrs=params.iou_thresholds,
        recThrs=np.concatenate([params.rec_thresholds, 1.5 / probes]),
        maxDets=list(params.max_detections),
        areaRng=[list(r) for r in params.area_ranges],
        areaRngLbl=list(params.area_names),
        useCats=1,
        catIds=cat_ids,
        imgIds=cells.img_ids,
    )
    result = _C.COCOevalEvaluateAccumulate(settings, ious, gt_dataset, dt_dataset, cells.img_ids, cat_ids, True)
    r = len(params.rec_thresholds)
    precision = np.array(result["precision"][:, :r])
    _restore_one_tp_precision(precision, result["precision"][:, r:], npig, probes)
    return CocoArrays(precision, np.array(result["recall"]), np.array(result["scores"][:, :r]))


def _datasets(dataset_class: type, d: Detections, cat_ids: list[int]):
    """faster-coco-eval's datasets filled straight from arrays, skipping COCO objects and loadRes.

    Annotations carry only what its C++ core reads (id, score, area, iscrowd, ignore); ids are
    row index + 1, and boxes are appended in arrival order (its stable sort keeps ties in that order).
    """
    gt_dataset, dt_dataset = dataset_class(), dataset_class()
    image_ids = d.image_ids.tolist()
    with gc_paused():  # half a million small dicts: the cyclic collector would rescan them over and over
        for i, position, cat, area, crowd in zip(
            range(1, len(d.gt_labels) + 1),
            d.gt_position.tolist(),
            d.gt_labels.tolist(),
            d.gt_area.tolist(),
            d.gt_crowd.tolist(),
        ):
            gt_dataset.append_ref(image_ids[position], cat, {"id": i, "area": area, "iscrowd": crowd, "ignore": crowd})
        rows = np.flatnonzero(np.isin(d.det_labels, cat_ids))
        det_area = d.det_boxes[rows, 2] * d.det_boxes[rows, 3]
        for i, position, cat, score, area in zip(
            (rows + 1).tolist(),
            d.det_position[rows].tolist(),
            d.det_labels[rows].tolist(),
            d.det_scores[rows].tolist(),
            det_area.tolist(),
        ):
            dt_dataset.append_ref(image_ids[position], cat, {"id": i, "score": score, "area": area})
    return gt_dataset, dt_dataset


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
