"""The trusted reference: pycocotools run the documented way on COCO dicts, and the conversions tests share."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from tests.harness import assert_same_arrays, evaluate_with_engine

DATA = Path(__file__).parent / "data"
GT_FILE = DATA / "instances_val2014_100.json"
RESULTS_FILE = DATA / "instances_val2014_fakebbox100_results.json"
SEGM_RESULTS_FILE = DATA / "instances_val2014_fakesegm100_results.json"

# Published with the cocoapi for these files, to full precision (pycocotools 2.0.x, bbox).
PUBLISHED_BBOX = {
    "AP": 0.5045806987249628,
    "AP50": 0.6969727247299577,
    "AP75": 0.5729816669904824,
    "APs": 0.5856257209410443,
    "APm": 0.5193996948036719,
    "APl": 0.5013978986347466,
    "AR1": 0.38681277964578054,
    "AR10": 0.5936795762842003,
    "AR100": 0.595352982877607,
    "ARs": 0.6398109626113442,
    "ARm": 0.5664205978994309,
    "ARl": 0.5642905982905982,
}
NAMES = tuple(PUBLISHED_BBOX)


def run_cocoeval(gt: dict, results: list[dict], **params) -> COCOeval:
    """Plain pycocotools: COCO() from a dict, loadRes, evaluate, accumulate, summarize."""
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = json.loads(json.dumps(gt))
        coco_gt.createIndex()
        coco_dt = coco_gt.loadRes(json.loads(json.dumps(results))) if results else _empty_results(coco_gt)
        return _evaluated(COCOeval(coco_gt, coco_dt, "bbox"), params)


def cocoeval_on_the_files(results_file: Path = RESULTS_FILE, iou_type: str = "bbox", **params) -> COCOeval:
    """Plain pycocotools on the 100 real images: COCO(GT_FILE), loadRes(results_file), evaluate, accumulate,
    summarize (its printout swallowed)."""
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(GT_FILE))
        return _evaluated(COCOeval(gt, gt.loadRes(str(results_file)), iou_type), params)


def _evaluated(coco_eval: COCOeval, params: dict) -> COCOeval:
    """``coco_eval`` with ``params`` set, evaluated, accumulated and summarised (call it with stdout redirected)."""
    for name, value in params.items():
        setattr(coco_eval.params, name, value)
    coco_eval.evaluate()
    coco_eval.accumulate()
    coco_eval.summarize()
    return coco_eval


def _empty_results(coco_gt: COCO) -> COCO:
    coco_dt = COCO()
    coco_dt.dataset = {
        "images": coco_gt.dataset["images"],
        "categories": coco_gt.dataset["categories"],
        "annotations": [],
    }
    coco_dt.createIndex()
    return coco_dt


def stats_dict(coco_eval: COCOeval) -> dict[str, float]:
    return dict(zip(NAMES, map(float, coco_eval.stats[:12])))


def to_xywh(boxes: torch.Tensor, box_format: str) -> np.ndarray:
    """The documented conversion: widen exactly to float64, then convert in float64."""
    b = boxes.detach().to(torch.float64).numpy().reshape(-1, 4).copy()
    if box_format == "xyxy":
        b[:, 2:] = b[:, 2:] - b[:, :2]
    elif box_format == "cxcywh":
        b[:, :2] = b[:, :2] - b[:, 2:] / 2
    return b


def to_coco(
    predictions: list[dict], targets: list[dict], box_format: str = "xyxy", categories=None
) -> tuple[dict, list]:
    """COCO dicts for tensors in torchvision's convention (image ids from the targets, or arrival order)."""
    images, annotations, results = [], [], []
    for index, (p, t) in enumerate(zip(predictions, targets)):
        image_id = int(t.get("image_id", index))
        if any(img["id"] == image_id for img in images):
            continue  # a repeated image counts once
        images.append({"id": image_id})
        gt_boxes = to_xywh(t["boxes"], box_format)
        crowd = t.get("iscrowd", torch.zeros(len(gt_boxes), dtype=torch.int64)).tolist()
        area = t["area"].double().tolist() if "area" in t else (gt_boxes[:, 2] * gt_boxes[:, 3]).tolist()
        for box, label, c, a in zip(gt_boxes.tolist(), t["labels"].tolist(), crowd, area):
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": label,
                    "bbox": box,
                    "area": a,
                    "iscrowd": int(c),
                }
            )
        det_boxes = to_xywh(p["boxes"], box_format)
        for box, label, score in zip(det_boxes.tolist(), p["labels"].tolist(), p["scores"].double().tolist()):
            results.append({"image_id": image_id, "category_id": label, "bbox": box, "score": score})
    if categories is None:
        categories = sorted({a["category_id"] for a in annotations})
    gt = {"images": images, "annotations": annotations, "categories": [{"id": c} for c in categories]}
    return gt, results


def load_real_samples() -> list[tuple[dict, dict]]:
    """The 100 real COCO images as (prediction, target) tensors, boxes in xywh float64, in file order."""
    gt = json.loads(GT_FILE.read_text())
    res = json.loads(RESULTS_FILE.read_text())
    per_image: dict[int, tuple[list, list]] = {img["id"]: ([], []) for img in gt["images"]}
    for a in gt["annotations"]:
        per_image[a["image_id"]][0].append(a)
    for r in res:
        per_image[r["image_id"]][1].append(r)
    samples = []
    for image_id, (anns, dets) in per_image.items():
        target = {
            "boxes": torch.tensor([a["bbox"] for a in anns], dtype=torch.float64).reshape(-1, 4),
            "labels": torch.tensor([a["category_id"] for a in anns], dtype=torch.int64),
            "iscrowd": torch.tensor([a["iscrowd"] for a in anns], dtype=torch.int64),
            "area": torch.tensor([a["area"] for a in anns], dtype=torch.float64),
            "image_id": image_id,
        }
        prediction = {
            "boxes": torch.tensor([r["bbox"] for r in dets], dtype=torch.float64).reshape(-1, 4),
            "scores": torch.tensor([r["score"] for r in dets], dtype=torch.float64),
            "labels": torch.tensor([r["category_id"] for r in dets], dtype=torch.int64),
        }
        samples.append((prediction, target))
    return samples


def random_case(
    seed: int,
    num_images: int = 12,
    num_classes: int = 4,
    box_format: str = "xyxy",
    dtype: torch.dtype = torch.float32,
    with_image_ids: bool = True,
) -> tuple[list, list]:
    """Small images full of COCO's sharp edges.

    Integer coordinates and scores on a 0.1 grid make IoU and score ties; boxes of exactly 32x32
    and 96x96 sit on the area bounds; crowd regions; an ``area`` field that differs from the box
    area; a category that only detections use; images with only ground truth or only detections;
    and images with more than 100 detections of one class.
    """
    rng = np.random.default_rng(seed)
    predictions, targets = [], []
    for index in range(num_images):
        kind = index % 6
        n_gt = 0 if kind == 4 else int(rng.integers(1, 7))
        sides = rng.choice([8, 20, 32, 50, 96, 120], size=(n_gt, 2))
        xy = rng.integers(0, 200, size=(n_gt, 2))
        gt = np.concatenate([xy, xy + sides], axis=1).astype(np.float64)
        labels = rng.integers(1, num_classes + 1, n_gt)
        crowd = (rng.random(n_gt) < 0.15).astype(np.int64)
        area = (sides[:, 0] * sides[:, 1]).astype(np.float64)
        area = np.where(rng.random(n_gt) < 0.4, area * rng.choice([0.5, 0.9, 1.1]), area)
        n_det = 0 if kind == 5 else (130 if kind == 3 else int(rng.integers(0, 15)))
        source = rng.integers(0, max(n_gt, 1), n_det)
        jitter = rng.integers(-6, 7, size=(n_det, 4)).astype(np.float64)
        det = (gt[source] if n_gt else rng.integers(0, 150, (n_det, 4)).astype(np.float64)) + jitter
        det[:, 2:] = np.maximum(det[:, 2:], det[:, :2])
        det_labels = labels[source] if n_gt else rng.integers(1, num_classes + 1, n_det)
        det_labels = np.where(rng.random(n_det) < 0.1, num_classes + 1, det_labels)  # a class without GT
        if kind == 3:
            det_labels[:] = det_labels[0]  # more than 100 detections of one class in one image
        scores = np.round(rng.random(n_det), 1)
        target = {
            "boxes": _from_xyxy(gt, box_format, dtype),
            "labels": torch.from_numpy(labels),
            "iscrowd": torch.from_numpy(crowd),
            "area": torch.from_numpy(area),
        }
        if with_image_ids:
            target["image_id"] = int(1000 - 7 * index)  # ids not in arrival order
        targets.append(target)
        predictions.append(
            {
                "boxes": _from_xyxy(det, box_format, dtype),
                "scores": torch.from_numpy(scores).to(dtype),
                "labels": torch.from_numpy(det_labels),
            }
        )
    return predictions, targets


def _from_xyxy(boxes: np.ndarray, box_format: str, dtype: torch.dtype) -> torch.Tensor:
    b = boxes.copy()
    if box_format == "xywh":
        b[:, 2:] = b[:, 2:] - b[:, :2]
    elif box_format == "cxcywh":
        b = np.concatenate([(b[:, :2] + b[:, 2:]) / 2, b[:, 2:] - b[:, :2]], axis=1)
    return torch.from_numpy(b.reshape(-1, 4)).to(dtype)


# --- evaluations with nothing (or little) to count ---------------------------------------------------


def no_boxes(scores: bool) -> dict[str, torch.Tensor]:
    """An image without boxes: a prediction (with ``scores``) or a target."""
    sample = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}
    return {**sample, "scores": torch.zeros(0)} if scores else sample


def box(x: float, y: float, w: float = 20.0, h: float = 20.0) -> list[float]:
    """An xyxy box of size w x h at (x, y)."""
    return [x, y, x + w, y + h]


def ground_truth(boxes: list, labels: list, image_id: int, crowd: list | None = None) -> dict:
    target = {"boxes": torch.tensor(boxes).reshape(-1, 4), "labels": torch.tensor(labels), "image_id": image_id}
    if crowd is not None:
        target["iscrowd"] = torch.tensor(crowd)
    return target


def detections(boxes: list, labels: list, scores: list) -> dict:
    return {"boxes": torch.tensor(boxes).reshape(-1, 4), "labels": torch.tensor(labels), "scores": torch.tensor(scores)}


def empty_cases() -> dict[str, list[tuple[dict, dict]]]:
    """By name, the (prediction, target) pairs of an evaluation with nothing (or little) to count."""
    gt = [ground_truth([box(0, 0), box(40, 40)], [1, 2], image_id=i) for i in range(1, 4)]
    negatives = [ground_truth([], [], image_id=i) for i in range(10, 13)]
    some = [detections([box(1, 1), box(60, 0)], [1, 2], [0.9, 0.4]) for _ in range(3)]
    return {
        "no detection at all": [(no_boxes(True), t) for t in gt],
        "no ground truth at all": [(p, t) for p, t in zip(some, negatives)],
        "nothing at all": [(no_boxes(True), t) for t in negatives],
        "detections of absent categories only": [(detections([box(0, 0)], [7], [0.8]), t) for t in gt],
        "crowd-only ground truth": [
            (p, ground_truth([box(0, 0, 60, 60)], [1], image_id=i, crowd=[1])) for i, p in enumerate(some, start=1)
        ],
        "detections on negative images only": [(no_boxes(True), t) for t in gt] + list(zip(some, negatives)),
    }


def check_against_pycocotools(samples: list, backend: str, batch_size: int = 2, box_format: str = "xyxy"):
    """Our 12 numbers and arrays equal pycocotools' on the same data; returns our result and pycocotools'."""
    result = evaluate_with_engine(samples, batch_size, backend=backend, box_format=box_format)["coco"]
    gt, results = to_coco([p for p, _ in samples], [t for _, t in samples], box_format)
    coco_eval = run_cocoeval(gt, results)
    assert dict(result) == stats_dict(coco_eval)
    assert_same_arrays(result, coco_eval)
    return result, coco_eval


def per_image_from_evalimgs(coco_eval: COCOeval) -> list[dict[str, int]]:
    """Per-image counts brute-forced from pycocotools' ``evalImgs`` (area "all", the largest maxDets, summed
    over categories), one dict per image in image-id order; -1 for a threshold COCOeval did not evaluate."""
    p = coco_eval.params
    t_of = {iou: [t for t, x in enumerate(p.iouThrs) if abs(x - iou) < 1e-9] for iou in (0.5, 0.75)}
    names = ("num_gt", "num_det", "tp50", "fp50", "fn50", "tp75", "fp75", "fn75")
    rows = {i: dict.fromkeys(names, 0) for i in p.imgIds}
    for e in coco_eval.evalImgs:
        if e is None or e["aRng"] != p.areaRng[0]:
            continue
        row = rows[e["image_id"]]
        row["num_gt"] += sum(1 for g in e["gtIgnore"] if not g)
        row["num_det"] += len(e["dtIds"])
        for iou, ts in t_of.items():
            for t in ts:
                suffix = str(int(iou * 100))
                row["tp" + suffix] += sum(1 for m, ig in zip(e["dtMatches"][t], e["dtIgnore"][t]) if m and not ig)
                row["fp" + suffix] += sum(1 for m, ig in zip(e["dtMatches"][t], e["dtIgnore"][t]) if not m and not ig)
                row["fn" + suffix] += sum(1 for m, ig in zip(e["gtMatches"][t], e["gtIgnore"]) if not m and not ig)
    for iou, ts in t_of.items():
        if not ts:
            for row in rows.values():
                row.update({f"{kind}{int(iou * 100)}": -1 for kind in ("tp", "fp", "fn")})
    return [{"image_id": int(i), **rows[i]} for i in sorted(rows)]
