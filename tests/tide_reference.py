"""TIDE's error analysis two ways: tidecv 1.0.1 itself, and issue 16's bins on COCOeval's own matching.

``run_tidecv`` runs tidecv (``TIDE().evaluate(...)``, its defaults: positive IoU 0.5, background 0.1, 100
detections per image) on in-memory COCO ground truth and results, and returns its numbers divided by 100.
tidecv 1.0.1 runs unpatched on numpy 2 (it uses no removed alias); it only reads files, so the loader below does
what ``tidecv.datasets.COCO`` and ``COCOResult`` do (``datasets.py:60-126``) from dicts.

``coco_errors`` is the straightforward reference of issue 16, section 1: TIDE's bins (``tidecv/quantify.py:226-278``,
same order, same inequalities) on pycocotools' ``evalImgs`` at ``t_f`` (area "all", one ``maxDets``), and each
dAP from pycocotools' own ``accumulate`` on the fixed ``evalImgs``. Where COCOeval's base forces a choice tidecv
never faced, the choice is written next to the code as ``CHOICE``, and collected in docs/design-lvis-errors.md.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
from collections import defaultdict
from dataclasses import dataclass

import numpy as np
from pycocotools import mask as coco_mask
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from tidecv import TIDE
from tidecv import functions as tide_functions
from tidecv.data import Data

MAIN = ("Cls", "Loc", "Both", "Dupe", "Bkg", "Miss")
SPECIAL = ("FalsePos", "FalseNeg")


@dataclass(frozen=True)
class TideNumbers:
    """TIDE's AP at ``t_f``, its six main and two special dAP, as fractions, and how many errors of each bin."""

    ap: float
    main: dict[str, float]
    special: dict[str, float]
    counts: dict[str, int]


# --- tidecv itself -------------------------------------------------------------------------------------


def run_tidecv(
    gt: dict, results: list[dict], iou_type: str = "bbox", pos_threshold: float = 0.5, background_threshold: float = 0.1
) -> TideNumbers:
    """tidecv 1.0.1 on COCO dicts: ``TIDE(...).evaluate(gt, preds, mode)``, then its main and special errors / 100.

    ``iou_type`` is ``"bbox"`` or ``"segm"`` (tidecv's ``TIDE.MASK``; masks are RLEs or polygons).
    """
    mode = TIDE.MASK if iou_type == "segm" else TIDE.BOX
    tide = TIDE(pos_threshold=pos_threshold, background_threshold=background_threshold, mode=mode)
    run = tide.evaluate(_tide_gt(gt), _tide_results(results), mode=mode, name="run")
    main = tide.get_main_errors()["run"]
    special = tide.get_special_errors()["run"]
    counts = {error.short_name: n for error, n in run.count_errors().items()}
    return TideNumbers(
        ap=run.ap / 100,
        main={name: main[name] / 100 for name in MAIN},
        special={name: special[name] / 100 for name in SPECIAL},
        counts=counts,
    )


def _tide_gt(gt: dict) -> Data:
    """``tidecv.datasets.COCO`` from a dict; an annotation without ``segmentation`` has no mask (box mode only)."""
    gt = json.loads(json.dumps(gt))
    data = Data("gt", max_dets=100)
    images = {image["id"]: image for image in gt["images"]}
    for image in gt["images"]:
        data.add_image(image["id"], image.get("file_name", str(image["id"])))
    for cat in gt.get("categories", []):
        data.add_class(cat["id"], cat.get("name", str(cat["id"])))
    for ann in gt["annotations"]:
        image = images[ann["image_id"]]
        mask = None
        if "segmentation" in ann:
            mask = tide_functions.toRLE(ann["segmentation"], image.get("width"), image.get("height"))
        if ann.get("iscrowd", 0):
            data.add_ignore_region(ann["image_id"], ann["category_id"], ann["bbox"], mask)
        else:
            data.add_ground_truth(ann["image_id"], ann["category_id"], ann["bbox"], mask)
    return data


def _tide_results(results: list[dict]) -> Data:
    """``tidecv.datasets.COCOResult`` from a list."""
    data = Data("results")
    for det in json.loads(json.dumps(results)):
        box, mask = det.get("bbox"), det.get("segmentation")
        data.add_detection(det["image_id"], det["category_id"], det["score"], box, mask)
    return data


# --- TIDE's bins on COCOeval's matching (issue 16, section 1) ---------------------------------------------


@dataclass(frozen=True)
class CocoErrors:
    """TIDE's bins on COCOeval's matching at ``t_f``.

    ``ap`` is COCOeval's AP at ``t_f`` (area all, ``max_dets``); ``main``/``special`` the dAP as fractions;
    ``counts`` the number of each bin (``Miss`` counts ground truth); ``bins`` each false positive's bin and the
    ground-truth id it is attributed to (``None`` for Bkg/Both), by detection id (``loadRes`` numbering, from 1);
    ``missed`` the missed ground-truth ids; ``per_class`` category -> bin -> that category's dAP (``nan`` where
    the category has no AP in the fixed or the original evaluation).
    """

    ap: float
    main: dict[str, float]
    special: dict[str, float]
    counts: dict[str, int]
    bins: dict[int, tuple[str, int | None]]
    missed: list[int]
    per_class: dict[int, dict[str, float]]


def coco_errors(
    gt: dict, results: list[dict], iou_type: str = "bbox", t_f: float = 0.5, t_b: float = 0.1, max_dets: int = 100
) -> CocoErrors:
    """Issue 16's error analysis, computed the plain way on pycocotools (``t_b`` must be > 0)."""
    evaluator = _matched(gt, results, iou_type, t_f, max_dets)
    cells = {(e["image_id"], e["category_id"]): e for e in evaluator.evalImgs if e is not None}
    bins = _bins(evaluator, cells, iou_type, t_f, t_b)
    missed = _missed(cells, bins)
    base = _accumulate(evaluator, evaluator.evalImgs)
    fixes = {name: _fixed(evaluator, cells, bins, missed, name) for name in MAIN + SPECIAL}
    aps = {name: _accumulate(evaluator, fixed) for name, fixed in fixes.items()}
    counts = {name: sum(b == name for b, _ in bins.values()) for name in MAIN}
    counts["Miss"] = len(missed)
    per_class = {
        cat: {name: float(aps[name][1][k] - base[1][k]) for name in MAIN + SPECIAL}
        for k, cat in enumerate(evaluator.params.catIds)
    }
    return CocoErrors(
        ap=base[0],
        main={name: _delta(aps[name][0], base[0]) for name in MAIN},
        special={name: _delta(aps[name][0], base[0]) for name in SPECIAL},
        counts=counts,
        bins=bins,
        missed=sorted(missed),
        per_class=per_class,
    )


def _delta(fixed: float, ap: float) -> float:
    """AP(fixed) - AP; undefined (NaN) where either is COCOeval's -1 (no ground truth to average over)."""
    return fixed - ap if fixed > -1 and ap > -1 else float("nan")


def _matched(gt: dict, results: list[dict], iou_type: str, t_f: float, max_dets: int) -> COCOeval:
    """COCOeval evaluated at the one IoU ``t_f``, area "all", ``max_dets`` per (image, category)."""
    coco_gt = COCO()
    coco_gt.dataset = json.loads(json.dumps(gt))
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt.createIndex()
        coco_dt = coco_gt.loadRes(json.loads(json.dumps(results))) if results else _no_results(coco_gt)
        evaluator = COCOeval(coco_gt, coco_dt, iou_type)
        evaluator.params.iouThrs = np.array([t_f])
        evaluator.params.areaRng = evaluator.params.areaRng[:1]
        evaluator.params.areaRngLbl = ["all"]
        evaluator.params.maxDets = [max_dets]
        evaluator.evaluate()
    return evaluator


def _no_results(coco_gt: COCO) -> COCO:
    coco_dt = COCO()
    coco_dt.dataset = {"images": coco_gt.dataset["images"], "categories": coco_gt.dataset["categories"]}
    coco_dt.dataset["annotations"] = []
    coco_dt.createIndex()
    return coco_dt


def _bins(evaluator: COCOeval, cells: dict, iou_type: str, t_f: float, t_b: float) -> dict:
    """Each false positive's (bin, ground-truth id), tested in tidecv's order (``quantify.py:228-265``).

    CHOICE: only COCOeval's false positives at ``t_f`` are binned: unmatched and not ignored. Detections beyond the
    per-(image, category) ``max_dets`` cut are not in ``evalImgs`` and get no bin; ignored detections (matched to a
    crowd region or an ignored ground truth) cost COCOeval nothing and get no bin (tidecv bins its ignored ones).
    CHOICE: "ground truth" in the tests below is COCOeval's non-ignored ground truth of the image (``gtIgnore == 0``
    at area all: not crowd, no ``ignore`` flag), as tidecv's ``ex.gt`` leaves its ignore regions out; IoU is the
    plain (non-crowd) IoU of the IoU type.
    """
    truth = _image_truth(cells)
    bins = {}
    for (image_id, cat), cell in sorted(cells.items()):
        for d, det_id in enumerate(cell["dtIds"]):
            if cell["dtMatches"][0, d] == 0 and not cell["dtIgnore"][0, d]:
                bins[det_id] = _bin(evaluator, truth.get(image_id, []), det_id, cat, iou_type, t_f, t_b)
    return bins


def _image_truth(cells: dict) -> dict:
    """image id -> list of (gt id, category, matched at t_f) of its non-ignored ground truth, by id."""
    truth = defaultdict(list)
    for (image_id, cat), cell in cells.items():
        for j, gt_id in enumerate(cell["gtIds"]):
            if not cell["gtIgnore"][j]:
                truth[image_id].append((gt_id, cat, cell["gtMatches"][0, j] > 0))
    return {image_id: sorted(rows) for image_id, rows in truth.items()}


def _bin(evaluator, truth: list, det_id: int, cat: int, iou_type: str, t_f: float, t_b: float) -> tuple:
    if not truth:
        return "Bkg", None  # its image has no ground truth
    ious = _ious(evaluator, det_id, [gt_id for gt_id, _, _ in truth], iou_type)
    same = [(iou, row) for iou, row in zip(ious, truth) if row[1] == cat]
    other = [(iou, row) for iou, row in zip(ious, truth) if row[1] != cat]
    used = [(iou, row) for iou, row in same if row[2]]
    for name, pool, hit in (
        ("Loc", same, lambda v: t_b <= v <= t_f),
        ("Cls", other, lambda v: v >= t_f),
        ("Dupe", used, lambda v: v >= t_f),
    ):
        iou, row = _best(pool)
        if hit(iou):
            return name, row[0]
    return ("Bkg", None) if max(ious) <= t_b else ("Both", None)


def _best(pool: list) -> tuple:
    """The highest IoU, the lowest ground-truth id among equals (CHOICE: tidecv takes the first in its file order,
    numpy's argmax); 0 when empty."""
    if not pool:
        return 0.0, None
    best = max(iou for iou, _ in pool)
    return best, next(row for iou, row in pool if iou == best)


def _ious(evaluator: COCOeval, det_id: int, gt_ids: list[int], iou_type: str) -> list[float]:
    if iou_type == "segm":
        det = [evaluator.cocoDt.annToRLE(evaluator.cocoDt.anns[det_id])]
        gts = [evaluator.cocoGt.annToRLE(evaluator.cocoGt.anns[g]) for g in gt_ids]
    else:
        det = [evaluator.cocoDt.anns[det_id]["bbox"]]
        gts = [evaluator.cocoGt.anns[g]["bbox"] for g in gt_ids]
    return [float(v) for v in np.asarray(coco_mask.iou(det, gts, [0] * len(gts))).reshape(-1)]


def _missed(cells: dict, bins: dict) -> set[int]:
    """Non-ignored ground truth unmatched at t_f and claimed by no Loc or Cls false positive (tidecv's ``usable``)."""
    claimed = {gt_id for name, gt_id in bins.values() if name in ("Loc", "Cls")}
    missed = set()
    for cell in cells.values():
        for j, gt_id in enumerate(cell["gtIds"]):
            if not cell["gtIgnore"][j] and cell["gtMatches"][0, j] == 0 and gt_id not in claimed:
                missed.add(gt_id)
    return missed


def _fixed(evaluator: COCOeval, cells: dict, bins: dict, missed: set, name: str) -> list:
    """A copy of ``evalImgs`` with one bin (or special error) fixed.

    Removing a detection is marking it ignored (``accumulate`` then counts it neither way); it does not bring in a
    detection from beyond the ``max_dets`` cut (CHOICE: the cut is taken once, on the original detections).
    """
    fixed = copy.deepcopy(evaluator.evalImgs)
    by_cell = {(e["image_id"], e["category_id"]): e for e in fixed if e is not None}
    where = {det_id: (key, d) for key, cell in by_cell.items() for d, det_id in enumerate(cell["dtIds"])}
    scores = {det_id: by_cell[key]["dtScores"][d] for det_id, (key, d) in where.items()}
    if name in ("Loc", "Cls"):
        _fix_by_matching(evaluator, by_cell, where, scores, bins, name)
    elif name == "FalsePos":
        for det_id in bins:
            _remove(by_cell, where, det_id)
    elif name in ("Miss", "FalseNeg"):
        for cell in by_cell.values():
            for j, gt_id in enumerate(cell["gtIds"]):
                if gt_id in missed or (name == "FalseNeg" and cell["gtMatches"][0, j] == 0):
                    cell["gtIgnore"][j] = 1  # the ground truth leaves the positives
    else:
        for det_id, (bin_name, _) in bins.items():
            if bin_name == name:
                _remove(by_cell, where, det_id)
    return fixed


def _fix_by_matching(evaluator, by_cell, where, scores, bins, name) -> None:
    """Loc and Cls: the best-ranked such detection of each unclaimed (unmatched) ground truth becomes its true
    positive (relabelled to the ground truth's category for Cls), every other one of the bin is removed.

    CHOICE: "best-ranked" is within the bin being fixed (tidecv shares one best score between Loc and Cls of a
    ground truth, ``error.py:112-117``), by score, then detection id (input order) among equal scores.
    CHOICE: a Loc detection becomes a true positive in its place; a relabelled (Cls) one goes into the ground
    truth's (image, category) cell after that cell's detections of equal or higher score, and the cell is not cut
    again.
    """
    candidates = defaultdict(list)
    for det_id, (bin_name, gt_id) in bins.items():
        if bin_name == name:
            candidates[gt_id].append(det_id)
    for gt_id, det_ids in candidates.items():
        gt_ann = evaluator.cocoGt.anns[gt_id]
        target = by_cell[(gt_ann["image_id"], gt_ann["category_id"])]
        unmatched = target["gtMatches"][0, list(target["gtIds"]).index(gt_id)] == 0
        best = min(det_ids, key=lambda i: (-scores[i], i))
        for det_id in det_ids:
            _remove(by_cell, where, det_id)
        if unmatched and name == "Loc":  # same cell: it becomes a true positive where it stands
            key, d = where[best]
            by_cell[key]["dtMatches"][0, d], by_cell[key]["dtIgnore"][0, d] = gt_id, False
        elif unmatched:
            _insert_true_positive(target, best, scores[best], gt_id)


def _remove(by_cell: dict, where: dict, det_id: int) -> None:
    key, d = where[det_id]
    by_cell[key]["dtIgnore"][0, d] = True


def _insert_true_positive(cell: dict, det_id: int, score: float, gt_id: int) -> None:
    at = sum(s >= score for s in cell["dtScores"])
    cell["dtIds"] = [*cell["dtIds"][:at], det_id, *cell["dtIds"][at:]]
    cell["dtScores"] = [*cell["dtScores"][:at], score, *cell["dtScores"][at:]]
    cell["dtMatches"] = np.insert(cell["dtMatches"], at, gt_id, axis=1)
    cell["dtIgnore"] = np.insert(cell["dtIgnore"], at, False, axis=1)


def _accumulate(evaluator: COCOeval, eval_imgs: list) -> tuple[float, np.ndarray]:
    """pycocotools' ``accumulate`` on ``eval_imgs``: (AP at t_f over categories with ground truth, per-category AP).

    Its per-cell ``[:maxDet]`` slice is lifted (the cells are already cut at ``max_dets``; a Cls fix may add one).
    """
    evaluator = copy.copy(evaluator)
    evaluator.evalImgs = eval_imgs
    evaluator.params = copy.deepcopy(evaluator.params)
    evaluator._paramsEval = copy.deepcopy(evaluator._paramsEval)
    evaluator.params.maxDets = evaluator._paramsEval.maxDets = [10**9]
    with contextlib.redirect_stdout(io.StringIO()):
        evaluator.accumulate()
    precision = evaluator.eval["precision"][0, :, :, 0, 0]  # (R, K)
    defined = precision > -1
    ap = float(np.mean(precision[defined])) if defined.any() else -1.0
    per_class = np.array([np.mean(p) if (p > -1).all() else np.nan for p in precision.T])
    return ap, per_class


# --- TIDE-style cases ---------------------------------------------------------------------------------


def tide_case(seed: int, iou_type: str = "bbox", num_images: int = 16, num_classes: int = 4) -> tuple[dict, list]:
    """A seeded COCO case (ground truth dict, results) with every kind of TIDE error, as dicts for both references.

    Per image: ground truth with some crowd regions; detections that are good, poorly localised (IoU around
    0.1-0.5), duplicates, of the wrong class, both, and background; images without ground truth; the first two
    images with 120 detections across classes (over both tools' 100). Scores on a 0.05 grid (ties). For
    ``iou_type="segm"`` every box is also given as an RLE mask (``segmentation``), ground truth and results.
    """
    rng = np.random.default_rng(seed)
    categories = [{"id": c, "name": f"c{c}"} for c in range(1, num_classes + 1)]
    gt = {"images": [], "annotations": [], "categories": categories}
    results = []
    for index in range(num_images):
        image = {"id": 3 * index + 1, "width": 240, "height": 200, "file_name": f"{index}.jpg"}
        gt["images"].append(image)
        boxes = _tide_boxes(rng, 0 if index % 7 == 3 else int(rng.integers(1, 6)))
        labels = rng.integers(1, num_classes + 1, len(boxes))
        for box, label in zip(boxes, labels):
            ann = {"id": len(gt["annotations"]) + 1, "image_id": image["id"], "category_id": int(label)}
            ann.update(bbox=box, area=box[2] * box[3], iscrowd=int(rng.random() < 0.1))
            gt["annotations"].append(_with_mask(ann, image, iou_type))
        for det in _tide_detections(rng, boxes, labels, num_classes, 120 if index < 2 else int(rng.integers(0, 15))):
            results.append(_with_mask({"image_id": image["id"], **det}, image, iou_type))
    return gt, results


def _tide_boxes(rng: np.random.Generator, n: int) -> list[list[float]]:
    wh = rng.integers(16, 80, size=(n, 2))
    xy = rng.integers(0, 150, size=(n, 2))
    return [[float(v) for v in (*p, *s)] for p, s in zip(xy, wh)]


def _tide_detections(rng, boxes, labels, num_classes: int, n: int) -> list[dict]:
    """Each detection copies a ground truth and spoils it one way, or is background."""
    dets = []
    for _ in range(n):
        kind = rng.choice(["good", "loc", "dupe", "cls", "both", "bkg"]) if boxes else "bkg"
        k = int(rng.integers(0, len(boxes))) if boxes else 0
        box = list(boxes[k]) if boxes else [float(v) for v in rng.integers(0, 150, 4) + [0, 0, 10, 10]]
        label = int(labels[k]) if boxes else int(rng.integers(1, num_classes + 1))
        if kind in ("loc", "both"):
            box = [box[0] + box[2] * 0.5, box[1] + box[3] * 0.3, box[2], box[3]]
        elif kind in ("good", "dupe", "cls"):
            box = [box[0] + float(rng.integers(-2, 3)), box[1] + float(rng.integers(-2, 3)), box[2], box[3]]
        elif kind == "bkg":
            box = [float(rng.integers(170, 220)), float(rng.integers(150, 180)), 15.0, 15.0]
        if kind in ("cls", "both"):
            label = label % num_classes + 1
        dets.append({"category_id": label, "bbox": box, "score": float(np.round(rng.integers(1, 20) * 0.05, 2))})
    return dets


def _with_mask(entry: dict, image: dict, iou_type: str) -> dict:
    if iou_type != "segm":
        return entry
    box = np.array([entry["bbox"]], dtype=np.float64)
    rle = coco_mask.frPyObjects(box, image["height"], image["width"])[0]
    entry["segmentation"] = {"size": rle["size"], "counts": rle["counts"].decode("ascii")}
    if "score" in entry:
        del entry["bbox"]  # segm results: the mask only, as a Mask R-CNN export without boxes
    return entry


# --- the same cases as the metric's input -------------------------------------------------------------


def coco_samples(gt: dict, results: list[dict], iou_type: str = "bbox") -> tuple[list[tuple[dict, dict]], dict]:
    """(prediction, target) pairs of every image of ``gt`` (boxes in xywh, masks as RLE dicts), and the ids
    ``loadRes`` and the file give them: ``ids[image_id] = (detection ids, ground-truth ids)`` in each image's
    order (detections in ``results`` order, ground truth by annotation id), for comparing per-detection rows."""
    import torch

    anns: dict[int, list[dict]] = {image["id"]: [] for image in gt["images"]}
    dets: dict[int, list[tuple[int, dict]]] = {image["id"]: [] for image in gt["images"]}
    for ann in sorted(gt["annotations"], key=lambda a: a["id"]):
        anns[ann["image_id"]].append(ann)
    for det_id, det in enumerate(results, start=1):  # loadRes numbers results from 1, in order
        dets[det["image_id"]].append((det_id, det))
    samples, ids = [], {}
    for image_id in anns:
        gts, preds = anns[image_id], [det for _, det in dets[image_id]]
        target: dict = {
            "labels": torch.tensor([a["category_id"] for a in gts], dtype=torch.int64),
            "iscrowd": torch.tensor([a.get("iscrowd", 0) for a in gts], dtype=torch.int64),
            "area": torch.tensor([a["area"] for a in gts], dtype=torch.float64),
            "image_id": image_id,
        }
        prediction: dict = {
            "scores": torch.tensor([r["score"] for r in preds], dtype=torch.float64),
            "labels": torch.tensor([r["category_id"] for r in preds], dtype=torch.int64),
        }
        if iou_type == "segm":
            target["masks"] = [_rle(a["segmentation"]) for a in gts]
            prediction["masks"] = [_rle(r["segmentation"]) for r in preds]
        else:
            target["boxes"] = torch.tensor([a["bbox"] for a in gts], dtype=torch.float64).reshape(-1, 4)
            prediction["boxes"] = torch.tensor([r["bbox"] for r in preds], dtype=torch.float64).reshape(-1, 4)
        samples.append((prediction, target))
        ids[image_id] = ([det_id for det_id, _ in dets[image_id]], [a["id"] for a in gts])
    return samples, ids


def _rle(segmentation: dict) -> dict:
    return {"size": list(segmentation["size"]), "counts": segmentation["counts"]}
