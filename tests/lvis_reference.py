"""lvis-api (the ``lvis`` 0.5.3 package) as the trusted reference for LVIS's federated evaluation, and LVIS-style cases.

``run_lvis`` runs lvis-api's own ``LVIS``, ``LVISResults`` and ``LVISEval`` on in-memory dicts, the documented
way (the ground truth through a JSON file, since ``LVIS`` only reads files), and returns its 13 numbers under its
names with its precision (T, R, K, A) and recall (T, K, A) arrays. lvis-api calls ``np.float`` (``eval.py:361-362``),
which numpy 1.24 removed: ``numpy_float_alias`` restores it for the call only.

``lvis_case`` makes seeded cases full of the federated protocol's sharp edges, as LVIS dicts and as the same data in
torchvision's per-image (prediction, target) convention with the keys issue 17 names.
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from lvis import LVIS, LVISEval, LVISResults
from pycocotools import mask as coco_mask

DATA = Path(__file__).parent / "data"
LVIS_VAL_100_FILE = DATA / "lvis_val_100.json"

LVIS_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl", "APr", "APc", "APf", "AR@300", "ARs@300", "ARm@300", "ARl@300")


@contextlib.contextmanager
def numpy_float_alias() -> Iterator[None]:
    """``numpy.float`` as the builtin ``float`` (what it was before numpy 1.24) inside the block, and only there.

    Example:
        >>> with numpy_float_alias():
        ...     np.zeros(2).astype(np.float).dtype
        dtype('float64')
        >>> "float" in vars(np)
        False
    """
    if "float" in vars(np):  # an older numpy still has it: leave it alone
        yield
        return
    np.float = float  # type: ignore[attr-defined]
    try:
        yield
    finally:
        del np.float  # type: ignore[attr-defined]


@dataclass(frozen=True)
class LvisReference:
    """What lvis-api computes: ``stats`` under its names, ``precision`` (T, R, K, A) and ``recall`` (T, K, A).

    Axes as lvis-api's ``accumulate`` (``eval.py:313-317``): T the 10 IoU thresholds, R the 101 recall points,
    K the categories in sorted id order, A the areas all/small/medium/large; -1 where a category has no ground truth.
    """

    stats: dict[str, float]
    precision: np.ndarray
    recall: np.ndarray
    evaluator: LVISEval


def run_lvis(gt: dict, results: list[dict], iou_type: str = "bbox", max_dets: int = 300) -> LvisReference:
    """lvis-api on an LVIS ground-truth dict and a results list, as ``LVISEval(...).run()`` computes it.

    ``max_dets`` is ``LVISResults``' per-image cap (``results.py:39-40``); it also names the AR numbers.
    Neither argument is modified.
    """
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "gt.json"
        path.write_text(json.dumps(gt))
        lvis_gt = LVIS(str(path))
    lvis_dt = _results(lvis_gt, json.loads(json.dumps(results)), max_dets)
    evaluator = LVISEval(lvis_gt, lvis_dt, iou_type)
    evaluator.params.max_dets = max_dets
    with numpy_float_alias(), _quiet():
        evaluator.run()
    names = [*LVIS_NAMES[:9], *(name.replace("300", str(max_dets)) for name in LVIS_NAMES[9:])]
    stats = {name: float(evaluator.results[name]) for name in names}
    return LvisReference(stats, evaluator.eval["precision"], evaluator.eval["recall"], evaluator)


def _results(lvis_gt: LVIS, results: list[dict], max_dets: int) -> LVISResults:
    """``LVISResults``, also for no detections at all (it reads ``results[0]``, ``results.py:42``)."""
    if results:
        with _quiet():
            return LVISResults(lvis_gt, results, max_dets=max_dets)
    empty = LVISResults.__new__(LVISResults)
    empty.logger = logging.getLogger("lvis.results")
    empty.dataset = copy.deepcopy(lvis_gt.dataset)
    empty.dataset["annotations"] = []
    empty._create_index()
    return empty


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """lvis-api logs a warning for in-memory results and for nothing else worth seeing here."""
    logger = logging.getLogger("lvis")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


# --- LVIS-style cases ----------------------------------------------------------------------------


@dataclass(frozen=True)
class LvisCase:
    """One case three ways: the LVIS ground truth dict, the results list, and per-image (prediction, target)."""

    gt: dict
    results: list[dict]
    samples: list[tuple[dict, dict]]


def lvis_case(
    seed: int,
    iou_type: str = "bbox",
    num_images: int = 12,
    num_categories: int = 9,
    empty_group: str | None = "r",
    crowded_images: int = 2,
) -> LvisCase:
    """A seeded LVIS-style case full of the federated protocol's sharp edges.

    - categories in the three frequency groups; the categories of ``empty_group`` have no ground truth anywhere
      (only detections), so lvis-api gives that group -1;
    - each image has ``neg_category_ids`` (verified absent) and ``not_exhaustive_category_ids`` (some of its
      positive categories), and detections of categories in neither list (the federated filter drops them);
    - the first ``crowded_images`` images have 340 detections across categories (the 300 cap across categories);
    - scores on a 0.05 grid (ties), boxes of exactly 32x32 and 96x96 (the area bounds), a ground-truth ``area``
      that differs from the box (or mask) area on some annotations, empty images, images without detections;
    - for ``iou_type="segm"`` every annotation and detection is a mask, given as an RLE.

    Targets carry ``boxes`` (xyxy), ``labels``, ``image_id``, ``area``, ``neg_category_ids`` and
    ``not_exhaustive_category_ids`` (int64 tensors), and ``masks`` (uint8, N x H x W) for segm; predictions
    ``boxes``, ``scores``, ``labels`` (and ``masks``).
    """
    rng = np.random.default_rng(seed)
    categories = _categories(num_categories)
    with_gt = [c["id"] for c in categories if c["frequency"] != empty_group]
    all_ids = [c["id"] for c in categories]
    images, annotations, results, samples = [], [], [], []
    for index in range(num_images):
        image = _image(rng, index, seed)
        kind = index % 6
        n_gt = 0 if kind == 4 else int(rng.integers(1, 7))
        gt_boxes = _boxes(rng, n_gt, image)
        gt_labels = rng.choice(with_gt, n_gt)
        _label_lists(rng, image, gt_labels, all_ids)
        n_det = 340 if index < crowded_images else (0 if kind == 5 else int(rng.integers(0, 25)))
        det_boxes, det_labels = _detections(rng, n_det, gt_boxes, gt_labels, all_ids, image)
        scores = np.round(rng.integers(0, 21, n_det) * 0.05, 2)
        gt_masks = _masks(gt_boxes, image) if iou_type == "segm" else None
        det_masks = _masks(det_boxes, image) if iou_type == "segm" else None
        area = _gt_area(rng, gt_boxes, gt_masks)
        images.append(image)
        annotations += _gt_annotations(len(annotations), image, gt_boxes, gt_labels, area, gt_masks, iou_type)
        results += _results_of(image, det_boxes, det_labels, scores, det_masks, iou_type)
        samples.append(_sample(image, gt_boxes, gt_labels, area, gt_masks, det_boxes, det_labels, scores, det_masks))
    gt = {"images": images, "annotations": annotations, "categories": categories}
    return LvisCase(gt, results, samples)


def _label_lists(rng: np.random.Generator, image: dict, gt_labels: np.ndarray, all_ids: list[int]) -> None:
    """The image's ``neg_category_ids`` (some absent categories) and ``not_exhaustive_category_ids`` (some present)."""
    present = sorted(set(gt_labels.tolist()))
    absent = [c for c in all_ids if c not in present]
    negatives = rng.choice(absent, int(rng.integers(0, len(absent) // 2 + 1)), replace=False)
    image["neg_category_ids"] = sorted(negatives.tolist())
    image["not_exhaustive_category_ids"] = [c for c in present if rng.random() < 0.3]


def _gt_area(rng: np.random.Generator, boxes: np.ndarray, masks: np.ndarray | None) -> np.ndarray:
    """The box (or mask) area, but 1.25 x + 3 on about a third of the annotations (LVIS's polygon areas differ)."""
    area = masks.sum(axis=(1, 2)) if masks is not None else _box_area(boxes)
    return np.where(rng.random(len(boxes)) < 0.3, area * 1.25 + 3, area).astype(np.float64)


def _categories(n: int) -> list[dict]:
    """Ids 2, 5, 8, ... (not 1..n), frequencies r, c, f in turn."""
    return [{"id": 3 * k + 2, "name": f"cat{k}", "frequency": "rcf"[k % 3], "synset": f"cat{k}.n.01"} for k in range(n)]


def _image(rng: np.random.Generator, index: int, seed: int) -> dict:
    h, w = int(rng.integers(150, 260)), int(rng.integers(150, 260))
    return {"id": 10_000 - 7 * index - seed % 5, "height": h, "width": w}


def _boxes(rng: np.random.Generator, n: int, image: dict) -> np.ndarray:
    """xyxy integer boxes inside the image, sides on and around the 32 and 96 area bounds."""
    sides = rng.choice([8, 20, 32, 33, 50, 96, 97, 120], size=(n, 2))
    sides[0::4], sides[2::4] = 32, 96  # squares exactly on the area bounds
    sides = np.minimum(sides, [image["width"] - 1, image["height"] - 1])
    x = rng.integers(0, image["width"] - sides[:, 0])
    y = rng.integers(0, image["height"] - sides[:, 1])
    return np.stack([x, y, x + sides[:, 0], y + sides[:, 1]], axis=1).astype(np.float64).reshape(n, 4)


def _detections(rng, n, gt_boxes, gt_labels, all_ids, image) -> tuple[np.ndarray, np.ndarray]:
    """Jittered copies of the ground truth (some relabelled to any category, verified or not) and random boxes."""
    if len(gt_boxes) == 0:
        return _boxes(rng, n, image), rng.choice(all_ids, n)
    source = rng.integers(0, len(gt_boxes), n)
    boxes = gt_boxes[source] + rng.integers(-5, 6, size=(n, 4))
    boxes[:, [0, 2]] = np.clip(boxes[:, [0, 2]], 0, image["width"])
    boxes[:, [1, 3]] = np.clip(boxes[:, [1, 3]], 0, image["height"])
    boxes[:, 2:] = np.maximum(boxes[:, 2:], boxes[:, :2] + 1)
    labels = np.where(rng.random(n) < 0.25, rng.choice(all_ids, n), gt_labels[source])
    random = rng.random(n) < 0.15
    boxes[random] = _boxes(rng, int(random.sum()), image)
    return boxes, labels


def _masks(boxes: np.ndarray, image: dict) -> np.ndarray:
    """bool (N, H, W): each box filled, with a notch cut out of every other one (a mask is not its box)."""
    masks = np.zeros((len(boxes), image["height"], image["width"]), dtype=bool)
    for i, (x0, y0, x1, y1) in enumerate(boxes.astype(int)):
        masks[i, y0:y1, x0:x1] = True
        if i % 2:
            masks[i, y0 : (y0 + y1) // 2, x0 : (x0 + x1) // 2] = False
    return masks


def _box_area(boxes: np.ndarray) -> np.ndarray:
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def _rle(mask: np.ndarray) -> dict:
    rle = coco_mask.encode(np.asfortranarray(mask[:, :, None].astype(np.uint8)))[0]
    return {"size": rle["size"], "counts": rle["counts"].decode("ascii")}


def _xywh(box: np.ndarray) -> list[float]:
    return [float(box[0]), float(box[1]), float(box[2] - box[0]), float(box[3] - box[1])]


def _gt_annotations(start, image, boxes, labels, area, masks, iou_type) -> list[dict]:
    anns = []
    for k, (box, label, a) in enumerate(zip(boxes, labels, area)):
        ann = {"id": start + k + 1, "image_id": image["id"], "category_id": int(label), "area": float(a)}
        ann["bbox"] = _xywh(box)
        if iou_type == "segm":
            ann["segmentation"] = _rle(masks[k])
            ann["bbox"] = coco_mask.toBbox({**ann["segmentation"], "counts": ann["segmentation"]["counts"].encode()})
            ann["bbox"] = ann["bbox"].tolist()
        anns.append(ann)
    return anns


def _results_of(image, boxes, labels, scores, masks, iou_type) -> list[dict]:
    """bbox results carry only ``bbox``; segm results only ``segmentation`` (so lvis-api takes the mask area)."""
    out = []
    for k, (box, label, score) in enumerate(zip(boxes, labels, scores)):
        det = {"image_id": image["id"], "category_id": int(label), "score": float(score)}
        if iou_type == "segm":
            det["segmentation"] = _rle(masks[k])
        else:
            det["bbox"] = _xywh(box)
        out.append(det)
    return out


def _sample(image, gt_boxes, gt_labels, area, gt_masks, det_boxes, det_labels, scores, det_masks) -> tuple:
    target = {
        "boxes": torch.from_numpy(gt_boxes.reshape(-1, 4)),
        "labels": torch.from_numpy(np.asarray(gt_labels, dtype=np.int64)),
        "image_id": image["id"],
        "area": torch.from_numpy(np.asarray(area, dtype=np.float64)),
        "neg_category_ids": torch.tensor(image["neg_category_ids"], dtype=torch.int64),
        "not_exhaustive_category_ids": torch.tensor(image["not_exhaustive_category_ids"], dtype=torch.int64),
    }
    prediction = {
        "boxes": torch.from_numpy(det_boxes.reshape(-1, 4)),
        "scores": torch.from_numpy(np.asarray(scores, dtype=np.float64)),
        "labels": torch.from_numpy(np.asarray(det_labels, dtype=np.int64)),
    }
    if gt_masks is not None:
        target["masks"] = torch.from_numpy(gt_masks.astype(np.uint8))
        prediction["masks"] = torch.from_numpy(det_masks.astype(np.uint8))
    return prediction, target


def lvis_val_100() -> dict:
    """The 100 real LVIS v1 val images shipped with faster-coco-eval's tests (see tests/data/README.md)."""
    return json.loads(LVIS_VAL_100_FILE.read_text())


def lvis_val_100_results(gt: dict, seed: int, iou_type: str = "bbox") -> list[dict]:
    """Seeded detections for the real LVIS images: each annotation found again with a jittered box, some
    relabelled to a neighbouring category id, some of the image's negative categories, and one image given
    more than 300 detections. For segm the detections are the boxes' masks, as RLE."""
    rng = np.random.default_rng(seed)
    images = {img["id"]: img for img in gt["images"]}
    results = []
    for ann in gt["annotations"]:
        for _ in range(int(rng.integers(1, 4))):
            x, y, w, h = (np.asarray(ann["bbox"]) + rng.normal(0, 2, 4) * [1, 1, 0.5, 0.5]).tolist()
            label = ann["category_id"] if rng.random() < 0.8 else ann["category_id"] + 1
            results.append(_lvis_det(images[ann["image_id"]], label, [x, y, max(w, 1), max(h, 1)], rng, iou_type))
    for image in gt["images"]:
        for label in image["neg_category_ids"][:3]:
            results.append(_lvis_det(image, label, [10, 10, 40, 30], rng, iou_type))
    crowded = gt["images"][0]
    for _ in range(320):
        box = [float(v) for v in rng.integers(0, 200, 4) + [0, 0, 5, 5]]
        results.append(_lvis_det(crowded, int(rng.choice(crowded["neg_category_ids"])), box, rng, iou_type))
    return results


def _lvis_det(image: dict, label: int, box: list[float], rng: np.random.Generator, iou_type: str) -> dict:
    det = {"image_id": image["id"], "category_id": int(label), "score": float(np.round(rng.random(), 2))}
    if iou_type == "bbox":
        det["bbox"] = box
        return det
    rle = coco_mask.frPyObjects(np.array([box], dtype=np.float64), image["height"], image["width"])[0]
    det["segmentation"] = {"size": rle["size"], "counts": rle["counts"].decode("ascii")}
    return det
