"""One captured validation image as W&B draws it: boxes in pixels, masks as class maps, keypoints drawn on
the picture, each prediction tagged as COCOeval counts it (by the IoU of the evaluation's type)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ignite_det.backends.cells import greedy_match
from ignite_det.backends.cocoeval import box_iou
from ignite_det.iou.keypoints import COCO_PERSON_KEYPOINTS, COCO_PERSON_SKELETON, extent, oks_matrix
from ignite_det.iou.segm import Rles, encode_masks, mask_iou

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


def _no_rows(*shape: int) -> Any:
    return field(default_factory=lambda: np.zeros((0, *shape)))


@dataclass(frozen=True)
class _Sample:
    """One captured validation image, already on the CPU, boxes in xyxy pixels.

    Masks (where the prediction and the target carry ``masks``) are kept as their RLE bytes, packed
    (:meth:`~ignite_det.iou.segm.Rles.pack`); keypoints as float64 (N, K, 3). Only arrays: the samples
    cross between processes as an ``.npz`` archive.
    """

    image_id: int  # the target's image_id, or without one a key from the image's position
    image: np.ndarray
    pred_boxes: np.ndarray
    pred_scores: np.ndarray
    pred_labels: np.ndarray
    gt_boxes: np.ndarray
    gt_labels: np.ndarray
    gt_iscrowd: np.ndarray
    gt_area: np.ndarray = _no_rows()  # float64 (M,): ``area``, or the box area (OKS reads it)
    pred_rle: np.ndarray = _no_rows()  # uint8 (B,)
    pred_rle_lengths: np.ndarray = _no_rows()  # int64 (N,), none without masks
    pred_mask_sizes: np.ndarray = _no_rows(2)  # int64 (N, 2)
    gt_rle: np.ndarray = _no_rows()
    gt_rle_lengths: np.ndarray = _no_rows()
    gt_mask_sizes: np.ndarray = _no_rows(2)
    pred_keypoints: np.ndarray = _no_rows(0, 3)  # float64 (N, K, 3), none without keypoints
    gt_keypoints: np.ndarray = _no_rows(0, 3)

    def pred_masks(self) -> Rles | None:
        if len(self.pred_rle_lengths) != len(self.pred_scores) or len(self.gt_rle_lengths) != len(self.gt_labels):
            return None
        return Rles.unpack(self.pred_rle, self.pred_rle_lengths.astype(np.int64), self.pred_mask_sizes.astype(np.int64))

    def gt_masks(self) -> Rles | None:
        if self.pred_masks() is None:
            return None
        return Rles.unpack(self.gt_rle, self.gt_rle_lengths.astype(np.int64), self.gt_mask_sizes.astype(np.int64))

    def has_keypoints(self) -> bool:
        return len(self.pred_keypoints) == len(self.pred_scores) and len(self.gt_keypoints) == len(self.gt_labels)


def _make_sample(key: int, image: Any, pred: Mapping[str, Any], target: Mapping[str, Any], box_format: str) -> _Sample:
    """A sample from one image and the per-image dicts given to the metric, moved to the CPU.

    Masks and keypoints are kept where both the prediction and the target carry them. Boxes are the
    ones given, else those of the masks or the keypoints' extent (as ``loadRes`` sets them).
    """
    gt_labels = _as_numpy(target["labels"], np.int64).reshape(-1)
    iscrowd = target.get("iscrowd")
    gt_iscrowd = np.zeros(len(gt_labels), dtype=bool) if iscrowd is None else _as_numpy(iscrowd, bool).reshape(-1)
    shapes: dict[str, np.ndarray] = {}
    derived: dict[str, np.ndarray] = {}  # xyxy boxes of the masks or keypoints, per side
    for side, given in (("pred", pred), ("gt", target)):
        if "masks" in pred and "masks" in target:
            rles = encode_masks(f"{side} masks", given["masks"])
            data, lengths = rles.pack()
            shapes.update(
                {f"{side}_rle": data.copy(), f"{side}_rle_lengths": lengths, f"{side}_mask_sizes": rles.sizes}
            )
            derived[side] = _to_xyxy(rles.boxes(), "xywh")
        elif "keypoints" in pred and "keypoints" in target:
            points = _as_numpy(given["keypoints"], np.float64)
            points = points if points.ndim == 3 else np.zeros((0, 0, 3))  # an empty tensor of any shape: none
            shapes[f"{side}_keypoints"] = points
            derived[side] = _to_xyxy(extent(points)[0], "xywh")
    gt_boxes = _given_boxes(target, box_format, derived.get("gt"))
    area = target.get("area")
    gt_area = (gt_boxes[:, 2] - gt_boxes[:, 0]) * (gt_boxes[:, 3] - gt_boxes[:, 1]) if area is None else area
    return _Sample(
        image_id=key,
        image=_to_hwc_uint8(image),
        pred_boxes=_given_boxes(pred, box_format, derived.get("pred")),
        pred_scores=_as_numpy(pred["scores"], np.float64).reshape(-1),
        pred_labels=_as_numpy(pred["labels"], np.int64).reshape(-1),
        gt_boxes=gt_boxes,
        gt_labels=gt_labels,
        gt_iscrowd=gt_iscrowd,
        gt_area=_as_numpy(gt_area, np.float64).reshape(-1),
        **shapes,
    )


def _given_boxes(sample: Mapping[str, Any], box_format: str, derived: np.ndarray | None) -> np.ndarray:
    if "boxes" in sample or derived is None:
        return _to_xyxy(_as_numpy(sample["boxes"], np.float64), box_format)
    return derived


def _outcomes(
    sample: _Sample, iou_threshold: float, iou_type: str = "bbox", sigmas: np.ndarray | None = None
) -> list[str]:
    """COCOeval's verdict on each prediction at one IoU threshold (area "all"): ``"TP"``, ``"FP"``, or
    ``"ignored"`` where it matches a ground truth COCO counts neither way (a crowd region, or with
    keypoints a person without a labelled point).

    Per class, predictions go by descending score (ties in input order) through
    :func:`~ignite_det.backends.cells.greedy_match`, the matcher behind the metric's operating point, on
    COCO's own IoU of ``iou_type``: boxes, masks (when captured) or keypoints (OKS with ``sigmas``).
    """
    outcomes = ["FP"] * len(sample.pred_boxes)
    crowd = sample.gt_iscrowd.astype(bool)
    ignored = crowd.copy()
    if iou_type == "keypoints" and sample.has_keypoints():
        ignored |= ~(sample.gt_keypoints[:, :, 2] > 0).any(axis=1)
    for label in np.unique(sample.pred_labels):
        preds = np.flatnonzero(sample.pred_labels == label)
        preds = preds[np.argsort(-sample.pred_scores[preds], kind="stable")]
        gts = np.flatnonzero(sample.gt_labels == label)
        ious = _ious(sample, preds, gts, iou_type, sigmas)
        for pred, match in zip(preds.tolist(), greedy_match(ious, ignored[gts], crowd[gts], iou_threshold)):
            if match >= 0:
                outcomes[pred] = "ignored" if ignored[gts[match]] else "TP"
    return outcomes


def _ious(sample: _Sample, preds: np.ndarray, gts: np.ndarray, iou_type: str, sigmas: np.ndarray | None) -> np.ndarray:
    crowd = sample.gt_iscrowd.astype(bool)[gts]
    pred_masks, gt_masks = sample.pred_masks(), sample.gt_masks()
    if iou_type == "segm" and pred_masks is not None and gt_masks is not None:
        return mask_iou(pred_masks.select(preds), gt_masks.select(gts), crowd)
    if iou_type == "keypoints" and sample.has_keypoints() and sigmas is not None:
        boxes = _to_xywh(sample.gt_boxes[gts])
        return oks_matrix(sample.pred_keypoints[preds], sample.gt_keypoints[gts], boxes, sample.gt_area[gts], sigmas)
    return box_iou(_to_xywh(sample.pred_boxes[preds]), _to_xywh(sample.gt_boxes[gts]), crowd)


def _layers(
    sample: _Sample,
    class_names: Mapping[int, str],
    score_threshold: float,
    iou_type: str = "bbox",
    sigmas: np.ndarray | None = None,
    iou_threshold: float = 0.5,
) -> dict[str, Any]:
    """What ``wandb.Image`` takes for one sample: the picture (keypoints drawn on it), ``boxes=`` and
    ``masks=`` (``None`` without masks), predictions tagged as COCOeval counts them."""
    outcomes = _outcomes(sample, iou_threshold, iou_type, sigmas)
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
        "image": _draw_keypoints(sample, outcomes, score_threshold),
        "boxes": {
            "predictions": {"box_data": predictions, "class_labels": labels},
            "ground_truth": {"box_data": ground_truth, "class_labels": labels},
        },
        "masks": _mask_layers(sample, labels, outcomes, score_threshold),
    }


def _box_layers(
    sample: _Sample, class_names: Mapping[int, str], score_threshold: float, iou_threshold: float = 0.5
) -> dict[str, dict[str, Any]]:
    """The ``boxes=`` argument of ``wandb.Image``: ``predictions`` (tagged TP/FP/ignored) and ``ground_truth``."""
    return _layers(sample, class_names, score_threshold, iou_threshold=iou_threshold)["boxes"]


_VERDICTS = ("TP", "FP", "ignored")
_GT_KINDS = ("", " (crowd)")
_LAST_CODE = 255  # W&B's mask values are 0-255


def _mask_layers(
    sample: _Sample, labels: Mapping[int, str], outcomes: list[str], score_threshold: float
) -> dict[str, dict[str, Any]] | None:
    """The ``masks=`` argument of ``wandb.Image``: one class map per layer, ``predictions`` (a class per
    label and verdict, ``cat TP``; the best score painted last, on top) and ``ground_truth``; ``None``
    without masks, or when the masks are not of the picture's size.

    W&B keeps one set of class names per layer and key, whatever the image, so the codes depend only
    on ``labels`` (every label of the logged images): label ``i`` in increasing order is code
    ``1 + 3 i + verdict`` in predictions and ``1 + 2 i + crowd`` in ground truth; beyond 255, codes
    are shared as "other classes".
    """
    pred, gt = sample.pred_masks(), sample.gt_masks()
    height, width = sample.image.shape[:2]
    if pred is None or gt is None or not all((m.sizes == (height, width)).all() for m in (pred, gt)):
        return None
    order = {label: i for i, label in enumerate(sorted(labels))}
    shown = np.flatnonzero(sample.pred_scores >= score_threshold)
    shown = shown[np.argsort(sample.pred_scores[shown], kind="stable")]
    pred_codes = [_code(order[int(sample.pred_labels[i])], _VERDICTS, outcomes[i]) for i in shown.tolist()]
    gt_kinds = [_GT_KINDS[int(c)] for c in sample.gt_iscrowd]
    gt_codes = [_code(order[int(c)], _GT_KINDS, k) for c, k in zip(sample.gt_labels.tolist(), gt_kinds)]
    return {
        "predictions": _class_map(
            pred.select(shown), pred_codes, _class_names(labels, order, _VERDICTS, " "), height, width
        ),
        "ground_truth": _class_map(gt, gt_codes, _class_names(labels, order, _GT_KINDS, ""), height, width),
    }


def _code(index: int, variants: tuple[str, ...], variant: str) -> int:
    return min(1 + len(variants) * index + variants.index(variant), _LAST_CODE)


def _class_names(
    labels: Mapping[int, str], order: Mapping[int, int], variants: tuple[str, ...], space: str
) -> dict[int, str]:
    names = {0: "background"}
    for label, index in order.items():
        for variant in variants:
            code = _code(index, variants, variant)
            names[code] = "other classes" if code == _LAST_CODE else f"{labels[label]}{space}{variant}"
    return names


def _class_map(masks: Rles, codes: list[int], names: dict[int, str], height: int, width: int) -> dict[str, Any]:
    """Masks painted in order into one (H, W) uint8 map of their codes (0: no mask)."""
    data = np.zeros((height, width), dtype=np.uint8)
    for mask, code in zip(masks.decode(), codes):
        data[mask.astype(bool)] = code
    return {"mask_data": data, "class_labels": names}


_VERDICT_COLOURS = {"TP": (40, 200, 40), "FP": (235, 50, 50), "ignored": (170, 170, 170)}


def _draw_keypoints(sample: _Sample, outcomes: list[str], score_threshold: float) -> np.ndarray:
    """The picture with keypoints drawn, as a pose is usually shown: predictions above the threshold
    as dots joined by COCO's person skeleton (for 17 points), coloured by verdict (TP green, FP red,
    ignored grey); ground truth's labelled points as white rings, filled where visible (v=2)."""
    if not sample.has_keypoints() or not (len(sample.pred_keypoints) or len(sample.gt_keypoints)):
        return sample.image
    from PIL import Image, ImageDraw

    picture = Image.fromarray(sample.image)
    draw = ImageDraw.Draw(picture)
    radius = max(2.0, min(sample.image.shape[:2]) / 160)
    for points in sample.gt_keypoints:
        for x, y, v in points.tolist():
            if v > 0:
                box = (x - radius, y - radius, x + radius, y + radius)
                draw.ellipse(box, outline=(255, 255, 255), fill=(255, 255, 255) if v == 2 else None)
    for points, score, outcome in zip(sample.pred_keypoints, sample.pred_scores.tolist(), outcomes):
        if score < score_threshold:
            continue
        colour = _VERDICT_COLOURS[outcome]
        xy = points[:, :2].tolist()
        if len(xy) == len(COCO_PERSON_KEYPOINTS):
            for a, b in COCO_PERSON_SKELETON:
                draw.line([tuple(xy[a]), tuple(xy[b])], fill=colour, width=max(1, round(radius / 2)))
        for x, y in xy:
            draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=colour)
    return np.asarray(picture)
