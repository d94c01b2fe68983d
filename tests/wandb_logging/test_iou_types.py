"""W&B images and report for masks and keypoints: real engines, a real offline run read back from its files.

Every prediction's verdict is known by construction (a copy of a ground truth is a TP, one elsewhere an
FP, one on a crowd region or on a person without a labelled point is ignored), and the verdicts are
also checked against pycocotools' own matching (``evalImgs``) on random cases.
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from ignite.engine import Engine
from ignite.handlers.wandb_logger import WandBLogger
from PIL import Image
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from ignite_det import CocoMetric, attach_wandb_logging
from ignite_det.iou.keypoints import COCO_KEYPOINT_SIGMAS
from ignite_det.params import EvalParams
from ignite_det.wandb_logging.overlays import OperatingPoint, _layers, _make_sample, verdicts
from tests import wandb_records as wr
from tests.type_cases import keypoint_samples, random_keypoint_case, random_mask_case

H, W = 48, 64
CLASSES = {1: "cat", 2: "dog"}


def _rect(y0: int, x0: int, y1: int, x1: int) -> np.ndarray:
    mask = np.zeros((H, W), dtype=bool)
    mask[y0:y1, x0:x1] = True
    return mask


# Per image: ground truth (mask, label, crowd) and predictions (mask, label, score, verdict at IoU 0.5).
CAT, DOG, CROWD, EMPTY_SPOT = _rect(2, 2, 14, 20), _rect(2, 30, 20, 44), _rect(26, 2, 46, 30), _rect(30, 48, 44, 62)
SEGM_IMAGES: dict[int, dict[str, list]] = {
    1: {
        "gt": [(CAT, 1, 0), (DOG, 2, 0)],
        "pred": [(CAT, 1, 0.9, "TP"), (EMPTY_SPOT, 2, 0.6, "FP"), (CAT, 1, 0.5, "FP")],  # a duplicate is an FP
    },
    2: {"gt": [(DOG, 2, 0), (CROWD, 1, 1)], "pred": [(DOG, 2, 0.8, "TP"), (_rect(28, 4, 40, 20), 1, 0.7, "ignored")]},
}


def _segm_batch() -> tuple[list[torch.Tensor], list[dict], list[dict]]:
    images, preds, targets = [], [], []
    for image_id, content in SEGM_IMAGES.items():
        images.append(torch.rand(3, H, W, generator=torch.Generator().manual_seed(image_id)))
        gt_masks, labels, crowd = zip(*content["gt"])
        targets.append(
            {
                "masks": torch.from_numpy(np.stack(gt_masks)),
                "labels": torch.tensor(labels),
                "iscrowd": torch.tensor(crowd),
                "image_id": image_id,
            }
        )
        masks, labels, scores, _ = zip(*content["pred"])
        probabilities = torch.from_numpy(np.stack(masks)).float() * 0.7 + 0.2  # Mask R-CNN's (N, 1, H, W)
        preds.append({"masks": probabilities[:, None], "labels": torch.tensor(labels), "scores": torch.tensor(scores)})
    return images, preds, targets


def _run(tmp_path: Path, batch: tuple, metric: CocoMetric) -> tuple[Path, Any]:
    evaluator = Engine(lambda engine, b: (b[1], b[2]))
    metric.attach(evaluator, "coco")
    logger = WandBLogger(project="ignite-det-tests", mode="offline", dir=str(tmp_path), settings={"silent": True})
    attach_wandb_logging(logger, evaluator, num_images=len(batch[0]))
    state = evaluator.run([batch])
    logger.close()
    return wr.find_run_dir(tmp_path), state.metrics["coco"]


def test_segm_images_carry_mask_layers_tagged_as_cocoeval_counts(tmp_path):
    run_dir, result = _run(tmp_path, _segm_batch(), CocoMetric(iou_type="segm", class_names=CLASSES))
    (row,) = [r for r in wr.history_rows(run_dir) if "val/detections" in r]
    assert row["val/AP"] == result["AP"]
    classes = wr.mask_class_labels(run_dir)
    pred_names, gt_names = (
        classes[f"val/detections_wandb_delimeter_{layer}"] for layer in ("predictions", "ground_truth")
    )
    images = wr.load_images(run_dir, row["val/detections"])
    threshold = result.best_f1.threshold
    assert threshold == pytest.approx(0.8)  # TPs at 0.9 and 0.8, FPs below: the masks below are not painted
    for image, (image_id, content) in zip(images, SEGM_IMAGES.items()):
        assert image["caption"] == f"image_id {image_id}; verdicts at IoU 0.5, operating point score >= 0.800"
        predicted = np.asarray(Image.open(image["masks"]["predictions"]))
        truth = np.asarray(Image.open(image["masks"]["ground_truth"]))
        assert predicted.shape == truth.shape == (H, W)
        boxes = image["boxes"]["predictions"]["box_data"] + image["boxes"]["below_threshold"]["box_data"]
        names = image["boxes"]["predictions"]["class_labels"]
        assert sorted((names[str(b["class_id"])], b["box_caption"].split(" IoU")[0]) for b in boxes) == sorted(
            (f"{CLASSES[label]} {verdict}", f"{score:.2f} {verdict}") for _, label, score, verdict in content["pred"]
        )
        # At each pixel, the best-scoring prediction at the operating point that covers it, with its verdict.
        on_top = np.full((H, W), "background", dtype=object)
        for mask, label, score, verdict in sorted(content["pred"], key=lambda p: p[2]):
            if score >= threshold - 1e-6:
                on_top[mask] = f"{CLASSES[label]} {verdict}"
        assert (np.vectorize(pred_names.get)(predicted) == on_top).all()
        for mask, label, crowd in content["gt"]:
            found = any(
                (m == mask).all() and lab == label and v == "TP" and sc >= threshold - 1e-6
                for m, lab, sc, v in content["pred"]
            )
            kind = " (crowd)" if crowd else "" if found else " missed"
            assert {gt_names[int(v)] for v in np.unique(truth[mask])} == {CLASSES[label] + kind}
        if image_id == 1:  # the dog of image 1 has no prediction: missed
            assert "dog missed" in {gt_names[int(v)] for v in np.unique(truth)}
        covered = np.any([m for m, *_ in content["gt"]], axis=0)
        assert set(np.unique(truth[~covered]).tolist()) == {0} and gt_names[0] == "background"


# --- keypoints -----------------------------------------------------------------------------------

KH, KW = 96, 96


def _person(x: float, y: float, visibility: int = 2) -> np.ndarray:
    rng = np.random.default_rng(int(x * 7 + y))
    points = np.column_stack([x + rng.uniform(-12, 12, 17), y + rng.uniform(-20, 20, 17), np.full(17, visibility)])
    return np.round(points)


def _keypoint_batch() -> tuple[list[torch.Tensor], list[dict], list[dict], dict]:
    """One image: a person found (TP), a person missed, a person without labelled points under a
    prediction (ignored), and a prediction far from anyone (FP)."""
    found, missed, unlabelled = _person(20, 30), _person(70, 30), _person(20, 72, visibility=0)
    unlabelled[:, :2] = 0
    boxes = [[5.0, 5.0, 35.0, 55.0], [55.0, 5.0, 85.0, 55.0], [5.0, 60.0, 35.0, 90.0]]
    target = {
        "keypoints": torch.tensor(np.stack([found, missed, unlabelled])),
        "boxes": torch.tensor(boxes),
        "labels": torch.tensor([1, 1, 1]),
        "area": torch.tensor([1500.0, 1500.0, 900.0]),
        "image_id": 1,
    }
    ignored = np.column_stack([np.full(17, 20.0), np.full(17, 75.0), np.ones(17)])  # inside the region
    far = _person(75, 80)
    predictions = {  # the FP scores above the TP: the operating point (0.9) then keeps all three
        "keypoints": torch.tensor(np.stack([found + [0.5, 0.5, 0], ignored, far]), dtype=torch.float32),
        "scores": torch.tensor([0.9, 0.95, 0.92]),
        "labels": torch.tensor([1, 1, 1]),
    }
    image = torch.zeros(3, KH, KW)
    expected = {"TP": found, "ignored": ignored, "FP": far, "missed": missed}
    return [image], [predictions], [target], expected


def test_keypoint_images_are_drawn_and_tagged_as_cocoeval_counts(tmp_path):
    images, preds, targets, expected = _keypoint_batch()
    run_dir, result = _run(
        tmp_path, (images, preds, targets), CocoMetric(iou_type="keypoints", class_names={1: "person"})
    )
    (row,) = [r for r in wr.history_rows(run_dir) if "val/detections" in r]
    assert [row[f"val/{name}"] for name in result] == list(result.values())
    assert list(result) == ["AP", "AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75", "ARm", "ARl"]
    (image,) = wr.load_images(run_dir, row["val/detections"])
    boxes = image["boxes"]["predictions"]["box_data"]
    names = image["boxes"]["predictions"]["class_labels"]
    assert [names[str(b["class_id"])] for b in boxes] == ["person TP", "person ignored", "person FP"]
    assert [b["box_caption"].split(" IoU")[0] for b in boxes] == ["0.90 TP", "0.95 ignored", "0.92 FP"]
    picture = np.asarray(Image.open(image["path"]).convert("RGB"))
    colours = {"TP": (40, 200, 40), "ignored": (170, 170, 170), "FP": (235, 50, 50), "missed": (255, 255, 255)}
    for name, points in expected.items():
        x, y = (int(round(v)) for v in points[3, :2])  # a point of each: its colour is where it was drawn
        assert tuple(picture[y, x]) == colours[name], name
    assert tuple(picture[KH - 1, 0]) == (0, 0, 0)  # and the picture is left alone elsewhere


# --- verdicts against pycocotools' own matching --------------------------------------------------


def _evalimgs_verdicts(coco_eval: COCOeval, image_id: int, num_results: int, first_id: int) -> list[str]:
    """COCOeval's verdict on each result of one image at IoU 0.5, area "all" (ids are 1-based file order);
    a result of an evaluated (image, category) missing from its ``dtIds`` is beyond ``maxDets``: uncounted."""
    found = ["FP"] * num_results
    for e in coco_eval.evalImgs:
        if e is None or e["image_id"] != image_id or e["aRng"] != coco_eval.params.areaRng[0]:
            continue
        for dt_id in coco_eval.cocoDt.getAnnIds(imgIds=[image_id], catIds=[e["category_id"]]):
            found[dt_id - first_id] = "uncounted"
        for dt_id, matched, ignored in zip(e["dtIds"], e["dtMatches"][0], e["dtIgnore"][0]):
            found[dt_id - first_id] = "ignored" if ignored else ("TP" if matched else "FP")
    return found


def _evaluated(gt: dict, results: list, iou_type: str) -> COCOeval:
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = json.loads(json.dumps(gt))
        coco.createIndex()
        coco_eval = COCOeval(coco, coco.loadRes(json.loads(json.dumps(results))), iou_type)
        coco_eval.evaluate()
    return coco_eval


@pytest.mark.parametrize("iou_type", ["segm", "keypoints"])
def test_verdicts_agree_with_cocoeval_evalimgs(iou_type):
    if iou_type == "segm":
        gt, results, predictions, targets = random_mask_case(1)
        samples = list(zip(predictions, targets))
    else:
        gt, results = random_keypoint_case(3)
        samples = keypoint_samples(gt, results)
    coco_eval = _evaluated(gt, results, iou_type)
    sigmas = COCO_KEYPOINT_SIGMAS if iou_type == "keypoints" else None
    point = OperatingPoint(EvalParams.create(iou_type=iou_type, keypoint_sigmas=sigmas), 0, -np.inf)
    seen = set()
    first_id = 1
    for (pred, target), image in zip(samples, gt["images"]):
        n = len(pred["scores"])
        sample = _make_sample(image["id"], torch.zeros(3, 4, 4), pred, target, "xywh")
        got = verdicts(sample.tables[iou_type], point).detections
        assert got == _evalimgs_verdicts(coco_eval, image["id"], n, first_id), image["id"]
        seen |= set(got)
        first_id += n
    assert {"TP", "FP", "ignored"} <= seen


def test_masks_of_another_size_than_the_picture_are_not_drawn():
    images, preds, targets = _segm_batch()
    sample = _make_sample(1, torch.zeros(3, H // 2, W // 2), preds[0], targets[0], "xyxy")
    point = OperatingPoint(EvalParams.create(iou_type="segm"), 0, -np.inf)
    layers = _layers(sample, CLASSES, 0.3, point)
    assert layers["masks"] is None and len(layers["boxes"]["predictions"]["box_data"]) == 3
