"""One captured validation image as W&B draws it: boxes in pixels, each prediction tagged as COCOeval counts it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ignite_det.coco_backend import box_iou
from ignite_det.matching import greedy_match

BOX_FORMATS = ("xyxy", "xywh", "cxcywh")


def _as_numpy(value: Any, dtype: Any) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    return np.asarray(value, dtype=dtype)


def _to_hwc_uint8(image: Any) -> np.ndarray:
    """An image as an ``(H, W, 3)`` uint8 array (``(H, W, 4)`` for RGBA).

    A ``torch.Tensor`` is read as ``(C, H, W)`` or ``(H, W)`` (torchvision's layout), anything else
    (numpy array, PIL image) as ``(H, W, C)`` or ``(H, W)``. Float values are taken to be in [0, 1].
    """
    is_tensor = isinstance(image, torch.Tensor)
    if is_tensor and image.is_floating_point():
        image = image.float()  # numpy has no bfloat16
    array = image.detach().cpu().numpy() if is_tensor else np.asarray(image)
    if array.ndim == 2:
        array = array[..., None] if not is_tensor else array[None]
    if array.ndim != 3:
        raise ValueError(f"image must have 2 or 3 dimensions, got shape {tuple(array.shape)}")
    if is_tensor:
        array = array.transpose(1, 2, 0)
    if array.shape[-1] not in (1, 3, 4):
        raise ValueError(f"image must have 1, 3 or 4 channels, got shape {tuple(array.shape)} (HWC)")
    if array.dtype != np.uint8:
        array = np.round(np.clip(array.astype(np.float64), 0.0, 1.0) * 255.0).astype(np.uint8)
    if array.shape[-1] == 1:
        array = np.repeat(array, 3, axis=-1)
    return np.ascontiguousarray(array)


def _to_xywh(xyxy: np.ndarray) -> np.ndarray:
    return np.concatenate([xyxy[:, :2], xyxy[:, 2:] - xyxy[:, :2]], axis=1)


def _to_xyxy(boxes: np.ndarray, box_format: str) -> np.ndarray:
    boxes = boxes.reshape(-1, 4)
    if box_format == "xywh":
        return np.concatenate([boxes[:, :2], boxes[:, :2] + boxes[:, 2:]], axis=1)
    if box_format == "cxcywh":
        return np.concatenate([boxes[:, :2] - boxes[:, 2:] / 2, boxes[:, :2] + boxes[:, 2:] / 2], axis=1)
    return boxes


def _box(xyxy: np.ndarray, class_id: int, caption: str, score: float | None = None) -> dict[str, Any]:
    """One W&B box: plain Python numbers only, pixel coordinates."""
    x0, y0, x1, y1 = (float(v) for v in xyxy)
    box: dict[str, Any] = {
        "position": {"minX": x0, "maxX": x1, "minY": y0, "maxY": y1},
        "domain": "pixel",
        "class_id": int(class_id),
        "box_caption": caption,
    }
    if score is not None:
        box["scores"] = {"score": float(score)}
    return box


@dataclass(frozen=True)
class _Sample:
    """One captured validation image, already on the CPU, boxes in xyxy pixels."""

    image_id: int  # the target's image_id, or without one a key from the image's position
    image: np.ndarray
    pred_boxes: np.ndarray
    pred_scores: np.ndarray
    pred_labels: np.ndarray
    gt_boxes: np.ndarray
    gt_labels: np.ndarray
    gt_iscrowd: np.ndarray


def _make_sample(key: int, image: Any, pred: Mapping[str, Any], target: Mapping[str, Any], box_format: str) -> _Sample:
    """A sample from one image and the per-image dicts given to the metric, moved to the CPU."""
    gt_labels = _as_numpy(target["labels"], np.int64).reshape(-1)
    iscrowd = target.get("iscrowd")
    gt_iscrowd = np.zeros(len(gt_labels), dtype=bool) if iscrowd is None else _as_numpy(iscrowd, bool).reshape(-1)
    return _Sample(
        image_id=key,
        image=_to_hwc_uint8(image),
        pred_boxes=_to_xyxy(_as_numpy(pred["boxes"], np.float64), box_format),
        pred_scores=_as_numpy(pred["scores"], np.float64).reshape(-1),
        pred_labels=_as_numpy(pred["labels"], np.int64).reshape(-1),
        gt_boxes=_to_xyxy(_as_numpy(target["boxes"], np.float64), box_format),
        gt_labels=gt_labels,
        gt_iscrowd=gt_iscrowd,
    )


def _outcomes(sample: _Sample, iou_threshold: float) -> list[str]:
    """COCOeval's verdict on each prediction at one IoU threshold (area "all"): ``"TP"``, ``"FP"``, or
    ``"ignored"`` where it matches a crowd region, which COCO counts neither way.

    Per class, predictions go by descending score (ties in input order) through
    :func:`~ignite_det.matching.greedy_match`, the matcher behind the metric's operating point, on
    COCO's own box IoU.
    """
    outcomes = ["FP"] * len(sample.pred_boxes)
    crowd = sample.gt_iscrowd.astype(bool)
    for label in np.unique(sample.pred_labels):
        preds = np.flatnonzero(sample.pred_labels == label)
        preds = preds[np.argsort(-sample.pred_scores[preds], kind="stable")]
        gts = np.flatnonzero(sample.gt_labels == label)
        ious = box_iou(_to_xywh(sample.pred_boxes[preds]), _to_xywh(sample.gt_boxes[gts]), crowd[gts])
        for pred, match in zip(preds.tolist(), greedy_match(ious, crowd[gts], crowd[gts], iou_threshold)):
            if match >= 0:
                outcomes[pred] = "ignored" if crowd[gts[match]] else "TP"
    return outcomes


def _box_layers(
    sample: _Sample, class_names: Mapping[int, str], score_threshold: float, iou_threshold: float = 0.5
) -> dict[str, dict[str, Any]]:
    """The ``boxes=`` argument of ``wandb.Image``: ``predictions`` (tagged TP/FP/ignored) and ``ground_truth``."""
    outcomes = _outcomes(sample, iou_threshold)
    labels = {int(c): str(n) for c, n in class_names.items()}
    for c in (*sample.pred_labels.tolist(), *sample.gt_labels.tolist()):
        labels.setdefault(int(c), str(int(c)))
    predictions = [
        _box(box, label, f"{labels[int(label)]} {score:.2f} {outcome}", score)
        for box, label, score, outcome in zip(sample.pred_boxes, sample.pred_labels, sample.pred_scores, outcomes)
        if score >= score_threshold
    ]
    ground_truth = [
        _box(box, label, labels[int(label)] + (" (crowd)" if crowd else ""))
        for box, label, crowd in zip(sample.gt_boxes, sample.gt_labels, sample.gt_iscrowd)
    ]
    return {
        "predictions": {"box_data": predictions, "class_labels": labels},
        "ground_truth": {"box_data": ground_truth, "class_labels": labels},
    }
