"""Mask and keypoint cases: COCO dicts for pycocotools, the same data as tensors for CocoMetric.

The references are built without ignite-det's code: masks are encoded one at a time by pycocotools
from Fortran-ordered arrays (torchvision's reference evaluator does so), ground-truth masks of the
real data are rasterised by ``COCO.annToMask``.
"""

from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import torch
from pycocotools import mask as coco_mask
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from tests.coco_reference import GT_FILE, SEGM_RESULTS_FILE

KEYPOINT_NAMES = ("AP", "AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75", "ARm", "ARl")


def run_typed_cocoeval(gt: dict, results: list, iou_type: str, sigmas: np.ndarray | None = None) -> COCOeval:
    """Plain pycocotools on COCO dicts: loadRes, evaluate, accumulate, summarize."""
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = json.loads(json.dumps(gt))
        coco_gt.createIndex()
        if results:
            coco_dt = coco_gt.loadRes(json.loads(json.dumps(results)))
        else:
            coco_dt = COCO()
            coco_dt.dataset = {"images": gt["images"], "categories": gt["categories"], "annotations": []}
            coco_dt.createIndex()
        coco_eval = COCOeval(coco_gt, coco_dt, iou_type)
        if sigmas is not None:
            coco_eval.params.kpt_oks_sigmas = sigmas
        coco_eval.evaluate()
        coco_eval.accumulate()
        coco_eval.summarize()
    return coco_eval


def encode_one_by_one(masks: np.ndarray) -> list[dict]:
    """pycocotools RLEs (counts as str, JSON-ready) of (N, H, W) masks, one call per mask."""
    rles = [coco_mask.encode(np.asfortranarray(m[:, :, None].astype(np.uint8)))[0] for m in masks]
    return [{"size": r["size"], "counts": r["counts"].decode("ascii")} for r in rles]


# --- masks ---------------------------------------------------------------------------------------


def _shapes(rng: np.random.Generator, n: int, h: int, w: int) -> np.ndarray:
    """bool (n, h, w): rectangles of sizes around COCO's area bounds, some with holes, some empty."""
    masks = np.zeros((n, h, w), dtype=bool)
    for i in range(n):
        if rng.random() < 0.05:
            continue
        mh, mw = (int(v) for v in rng.choice([4, 16, 32, 48, 100, 130], 2))
        y, x = int(rng.integers(0, max(1, h - mh // 2))), int(rng.integers(0, max(1, w - mw // 2)))
        masks[i, y : y + mh, x : x + mw] = True
        if rng.random() < 0.3:
            masks[i] &= rng.random((h, w)) > 0.2
    return masks


def _perturbed(rng: np.random.Generator, masks: np.ndarray) -> np.ndarray:
    """Detections near the ground truth: shifted, eroded by noise, or exact."""
    out = masks.copy()
    for i in range(len(out)):
        dy, dx = (int(v) for v in rng.integers(-6, 7, 2))
        out[i] = np.roll(out[i], (dy, dx), axis=(0, 1))
        if rng.random() < 0.3:
            out[i] &= rng.random(out[i].shape) > 0.1
    return out


def random_mask_case(seed: int, num_images: int = 10, num_classes: int = 3) -> tuple[dict, list, list, list]:
    """Mask evaluation full of COCO's sharp edges, as (gt dict, results, predictions, targets).

    Images of different sizes; crowd regions; a ground-truth ``area`` that differs from the mask
    area (COCO's polygon area does); scores on a 0.1 grid (ties); empty images, images with only
    ground truth or only detections, one with more than 100 detections of a class; a category
    only detections use; predictions as Mask R-CNN probabilities (N, 1, H, W), binary masks and
    COCO RLEs, in turn.
    """
    rng = np.random.default_rng(seed)
    images, annotations, results, predictions, targets = [], [], [], [], []
    for index in range(num_images):
        image_id = 500 - 3 * index  # not in arrival order
        h, w = int(rng.integers(80, 170)), int(rng.integers(80, 170))
        kind = index % 6
        n_gt = 0 if kind == 4 else int(rng.integers(1, 6))
        gt_masks = _shapes(rng, n_gt, h, w)
        labels = rng.integers(1, num_classes + 1, n_gt)
        crowd = (rng.random(n_gt) < 0.15).astype(np.int64)
        area = gt_masks.sum(axis=(1, 2)).astype(np.float64)
        area = np.where(rng.random(n_gt) < 0.3, area * 1.3 + 7, area)
        n_det = 0 if kind == 5 else (105 if kind == 3 else int(rng.integers(0, 12)))
        if n_gt and kind != 2:
            source = rng.integers(0, n_gt, n_det)
            det_masks, det_labels = _perturbed(rng, gt_masks[source]), labels[source].copy()
        else:
            det_masks, det_labels = _shapes(rng, n_det, h, w), rng.integers(1, num_classes + 1, n_det)
        det_labels = np.where(rng.random(n_det) < 0.1, num_classes + 1, det_labels)
        if kind == 3:
            det_labels[:] = det_labels[0]
        scores = np.round(rng.random(n_det), 1)

        images.append({"id": image_id, "height": h, "width": w})
        for rle, label, c, a in zip(encode_one_by_one(gt_masks), labels, crowd, area):
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": int(label),
                    "segmentation": rle,
                    "area": float(a),
                    "iscrowd": int(c),
                    "bbox": coco_mask.toBbox({**rle, "counts": rle["counts"].encode()}).tolist(),
                }
            )
        for rle, label, score in zip(encode_one_by_one(det_masks), det_labels, scores):
            results.append({"image_id": image_id, "category_id": int(label), "segmentation": rle, "score": score})
        targets.append(
            {
                "masks": torch.from_numpy(gt_masks.astype(np.uint8)),
                "labels": torch.from_numpy(labels),
                "iscrowd": torch.from_numpy(crowd),
                "area": torch.from_numpy(area),
                "image_id": image_id,
            }
        )
        form = index % 3
        if form == 0:  # Mask R-CNN: probabilities, a pixel is in the mask above 0.5
            given = torch.from_numpy(np.where(det_masks, 0.5 + rng.random(det_masks.shape) / 2 + 1e-6, 0.5))
            given = given.float().clamp(max=1.0)[:, None]
        elif form == 1:
            given = torch.from_numpy(det_masks)
        else:
            given = encode_one_by_one(det_masks)
        predictions.append({"masks": given, "scores": torch.from_numpy(scores), "labels": torch.from_numpy(det_labels)})
    categories = sorted({a["category_id"] for a in annotations})
    gt = {"images": images, "annotations": annotations, "categories": [{"id": c} for c in categories]}
    return gt, results, predictions, targets


def load_real_segm_samples(form: str = "binary") -> list[tuple[dict, dict]]:
    """The 100 real COCO images with the cocoapi's fake segm results, as (prediction, target) tensors.

    Ground-truth polygons and crowd RLEs are rasterised by ``annToMask``; the ``area`` field is the
    file's (the polygon's area). Detections are decoded from their RLEs: ``form`` "binary" gives
    (N, H, W) uint8, "probabilities" Mask R-CNN's (N, 1, H, W) float32 (0.75 inside, 0.5 outside:
    exactly 0.5 is not above it).
    """
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(str(GT_FILE))
    results = json.loads(SEGM_RESULTS_FILE.read_text())
    samples = []
    for image in coco.dataset["images"]:
        h, w = image["height"], image["width"]
        anns = coco.loadAnns(coco.getAnnIds(imgIds=[image["id"]]))
        dets = [r for r in results if r["image_id"] == image["id"]]
        gt_masks = np.stack([coco.annToMask(a) for a in anns]) if anns else np.zeros((0, h, w), np.uint8)
        det_masks = (
            np.ascontiguousarray(coco_mask.decode([r["segmentation"] for r in dets]).transpose(2, 0, 1))
            if dets
            else np.zeros((0, h, w), np.uint8)
        )
        masks = torch.from_numpy(det_masks)
        if form == "probabilities":
            masks = (masks.float() * 0.25 + 0.5)[:, None]
        target = {
            "masks": torch.from_numpy(gt_masks),
            "labels": torch.tensor([a["category_id"] for a in anns], dtype=torch.int64),
            "iscrowd": torch.tensor([a["iscrowd"] for a in anns], dtype=torch.int64),
            "area": torch.tensor([a["area"] for a in anns], dtype=torch.float64),
            "image_id": image["id"],
        }
        prediction = {
            "masks": masks,
            "scores": torch.tensor([r["score"] for r in dets], dtype=torch.float64),
            "labels": torch.tensor([r["category_id"] for r in dets], dtype=torch.int64),
        }
        samples.append((prediction, target))
    return samples


# --- keypoints -----------------------------------------------------------------------------------


def random_keypoint_case(seed: int, num_keypoints: int = 17, num_images: int = 16) -> tuple[dict, list]:
    """COCO dicts full of the keypoint edge cases.

    Points that are not labelled (v=0, at 0, 0), labelled but hidden (v=1) and visible (v=2); people
    without any labelled point (measured against their box region, and ignored); crowd regions;
    integer ground-truth coordinates as in COCO's files, float32 detections as Keypoint R-CNN's;
    an ``area`` unrelated to the box (even 0); scores on a 0.1 grid (ties); images with no person,
    no detection, or more than 20 detections; two categories.
    """
    rng = np.random.default_rng(seed)
    images, annotations, results = [], [], []
    for image_id in range(num_images):
        images.append({"id": image_id})
        kind = image_id % 5
        n_gt = 0 if kind == 0 else int(rng.integers(1, 5))
        centres = rng.uniform(30, 300, (max(n_gt, 1), 2))
        people = [np.round(c + rng.normal(0, 20, (num_keypoints, 2))) for c in centres]
        for j in range(n_gt):
            points = people[j].copy()
            visibility = rng.choice([0, 1, 2], num_keypoints, p=[0.3, 0.2, 0.5])
            if rng.random() < 0.25:
                visibility[:] = 0  # a person without a labelled point
            points[visibility == 0] = 0
            w, h = rng.choice([0.0, 20.0, 60.0, 150.0]), rng.choice([30.0, 80.0, 200.0])
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": int(rng.integers(1, 3)),
                    "keypoints": np.column_stack([points, visibility]).astype(int).ravel().tolist(),
                    "num_keypoints": int((visibility > 0).sum()),
                    "bbox": [float(centres[j, 0] - w / 2), float(centres[j, 1] - h / 2), float(w), float(h)],
                    "area": float(rng.choice([0.0, 500.0, 3000.0, 9216.0, 20000.0])),
                    "iscrowd": int(rng.random() < 0.1),
                }
            )
        n_det = 0 if kind == 1 else (25 if kind == 4 else int(rng.integers(1, 8)))
        for _ in range(n_det):
            near = people[int(rng.integers(0, len(people)))]  # close to a person, or loosely around one
            points = near + rng.normal(0, rng.choice([1.0, 3.0, 8.0, 30.0]), (num_keypoints, 2))
            points = points.astype(np.float32).astype(np.float64)
            results.append(
                {
                    "image_id": image_id,
                    "category_id": int(rng.integers(1, 3)),
                    "keypoints": np.column_stack([points, np.ones(num_keypoints)]).ravel().tolist(),
                    "score": float(np.round(rng.random(), 1)),
                }
            )
    categories = sorted({a["category_id"] for a in annotations})
    gt = {"images": images, "annotations": annotations, "categories": [{"id": c} for c in categories]}
    return gt, results


def keypoint_samples(gt: dict, results: list, num_keypoints: int = 17) -> list[tuple[dict, dict]]:
    """The same data as (prediction, target) tensors: float32 detections (as Keypoint R-CNN's),
    boxes in xywh, in the file's image order."""
    samples = []
    for image in gt["images"]:
        anns = [a for a in gt["annotations"] if a["image_id"] == image["id"]]
        dets = [r for r in results if r["image_id"] == image["id"]]
        target = {
            "keypoints": torch.tensor([a["keypoints"] for a in anns], dtype=torch.float64).reshape(
                -1, num_keypoints, 3
            ),
            "boxes": torch.tensor([a["bbox"] for a in anns], dtype=torch.float64).reshape(-1, 4),
            "labels": torch.tensor([a["category_id"] for a in anns], dtype=torch.int64),
            "iscrowd": torch.tensor([a["iscrowd"] for a in anns], dtype=torch.int64),
            "area": torch.tensor([a["area"] for a in anns], dtype=torch.float64),
            "image_id": image["id"],
        }
        prediction = {
            "keypoints": torch.tensor([r["keypoints"] for r in dets], dtype=torch.float32).reshape(
                -1, num_keypoints, 3
            ),
            "scores": torch.tensor([r["score"] for r in dets], dtype=torch.float64),
            "labels": torch.tensor([r["category_id"] for r in dets], dtype=torch.int64),
        }
        samples.append((prediction, target))
    return samples
