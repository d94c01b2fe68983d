"""The input contract of :class:`~ignite_det.CocoMetric`: validate a batch, then normalise it.

``update((y_pred, y))`` takes two equal-length lists with one entry per image, in
torchvision's detection convention:

============  ==========  =====  ==================================================
key           dtype       shape  meaning
============  ==========  =====  ==================================================
y_pred[i]
``boxes``     float       (N,4)  predicted boxes in ``box_format``, absolute pixels
``scores``    float       (N,)   confidence of each box
``labels``    int         (N,)   category id of each box
``area``      float       (N,)   optional; the detection's area for small/medium/
                                 large (e.g. its mask area); box area when absent
y[i]
``boxes``     float       (M,4)  ground-truth boxes in ``box_format``
``labels``    int         (M,)   category id of each box
``iscrowd``   int / bool  (M,)   optional; 1 marks a crowd region (COCO's rules);
                                 a float tensor of 0.0/1.0 is accepted too
``area``      float       (M,)   optional; COCO's ``area`` (e.g. mask area) that
                                 drives small/medium/large; box area when absent
``image_id``  int         ()     optional; the image's id, used for tie-breaking and
                                 to count an image only once; arrival order when absent
============  ==========  =====  ==================================================

Every check runs before anything is stored, and every message names the sample,
the key, what was expected and what was given. Boxes may be floating point or
integer tensors. They are converted to COCO's ``xywh`` in float64: values are
first widened exactly to float64 (integers up to 2**53 in magnitude), then
``w = x2 - x1`` (or ``x = cx - w / 2``) is computed in float64.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

BOX_FORMATS = ("xyxy", "xywh", "cxcywh")

# Ids travel through float64 tensors between processes, which hold integers exactly up to 2**53.
_MAX_ID = 2**53


@dataclass(frozen=True)
class DetectionBatch:
    """One ``update()`` worth of images in canonical form (all numpy, on the CPU).

    ``*_image`` arrays hold the index (0..B-1) of each box's image within the batch.
    """

    num_images: int
    image_ids: np.ndarray | None  # int64 (B,), None when no target carried an image_id
    det_boxes: np.ndarray  # float64 (N, 4) xywh
    det_scores: np.ndarray  # float64 (N,)
    det_labels: np.ndarray  # int64 (N,)
    det_area: np.ndarray  # float64 (N,)
    det_image: np.ndarray  # int64 (N,)
    gt_boxes: np.ndarray  # float64 (M, 4) xywh
    gt_labels: np.ndarray  # int64 (M,)
    gt_crowd: np.ndarray  # int64 (M,) 0 or 1
    gt_area: np.ndarray  # float64 (M,)
    gt_image: np.ndarray  # int64 (M,)


def normalize_batch(output: Any, box_format: str) -> DetectionBatch:
    """Validate ``(y_pred, y)`` as documented above and return its canonical form.

    Structure (keys, types, shapes, lengths) is checked sample by sample; values (finite, in
    range) on the whole batch at once, going back to the sample only to name it in an error.
    """
    y_pred, y = _split_output(output)
    for index, (prediction, target) in enumerate(zip(y_pred, y)):
        _check_prediction(index, prediction)
        _check_target(index, target)
    image_ids = _image_ids(y)
    det_image = _image_index([len(p["labels"]) for p in y_pred])
    gt_image = _image_index([len(t["labels"]) for t in y])
    det_boxes = _concat_boxes([p["boxes"] for p in y_pred])
    gt_boxes = _concat_boxes([t["boxes"] for t in y])
    _check_box_values("y_pred", det_boxes, det_image, box_format)
    _check_box_values("y", gt_boxes, gt_image, box_format)
    det_scores = _concat_float([p["scores"] for p in y_pred])
    det_labels = _concat_int([p["labels"] for p in y_pred])
    gt_labels = _concat_int([t["labels"] for t in y])
    gt_crowd = _crowd(y, gt_image)
    det_xywh = _to_xywh(det_boxes, box_format)
    gt_xywh = _to_xywh(gt_boxes, box_format)
    det_area = _area(y_pred, det_xywh)
    gt_area = _area(y, gt_xywh)
    _refuse_rows("y_pred", "scores", ~np.isfinite(det_scores), det_image, det_scores, "must be finite")
    _refuse_rows(
        "y_pred",
        "labels",
        np.abs(det_labels) >= _MAX_ID,
        det_image,
        det_labels,
        "must be smaller than 2**53 in magnitude",
    )
    _refuse_rows(
        "y", "labels", np.abs(gt_labels) >= _MAX_ID, gt_image, gt_labels, "must be smaller than 2**53 in magnitude"
    )
    _refuse_rows("y_pred", "area", ~np.isfinite(det_area), det_image, det_area, "must be finite")
    _refuse_rows("y_pred", "area", det_area < 0, det_image, det_area, "must be >= 0")
    _refuse_rows("y", "area", ~np.isfinite(gt_area), gt_image, gt_area, "must be finite")
    _refuse_rows("y", "area", gt_area < 0, gt_image, gt_area, "must be >= 0")
    return DetectionBatch(
        num_images=len(y),
        image_ids=image_ids,
        det_boxes=det_xywh,
        det_scores=det_scores,
        det_labels=det_labels,
        det_area=det_area,
        det_image=det_image,
        gt_boxes=gt_xywh,
        gt_labels=gt_labels,
        gt_crowd=gt_crowd,
        gt_area=gt_area,
        gt_image=gt_image,
    )


def _refuse_rows(name: str, key: str, bad: np.ndarray, image: np.ndarray, values: np.ndarray, rule: str) -> None:
    """Raise for the first sample holding a bad value, naming it and showing its bad values."""
    if not bad.any():
        return
    index = int(image[np.argmax(bad)])
    shown = torch.from_numpy(values[bad & (image == index)])
    raise ValueError(f"{name}[{index}]['{key}'] {rule}, got {_sample(shown)}")


def _split_output(output: Any) -> tuple[Sequence[Mapping], Sequence[Mapping]]:
    if not isinstance(output, Sequence) or len(output) != 2:
        raise TypeError(
            f"update() expects a pair (y_pred, y) of two lists with one dict per image, got {type(output).__name__}"
        )
    y_pred, y = output
    for name, value in (("y_pred", y_pred), ("y", y)):
        if not isinstance(value, Sequence) or isinstance(value, (str, bytes, torch.Tensor)):
            raise TypeError(f"{name} must be a list with one dict per image, got {type(value).__name__}")
    if len(y_pred) != len(y):
        raise ValueError(
            f"y_pred and y must have one entry per image each, got {len(y_pred)} predictions and {len(y)} targets"
        )
    return y_pred, y


def _check_prediction(index: int, prediction: Any) -> None:
    where = f"y_pred[{index}]"
    _check_mapping(where, prediction, ("boxes", "scores", "labels"))
    n = _check_boxes_shape(where, prediction["boxes"])
    _check_vector(where, "scores", prediction["scores"], n, floating=True)
    _check_vector(where, "labels", prediction["labels"], n, floating=False)
    if prediction.get("area") is not None:
        _check_vector(where, "area", prediction["area"], n, floating=None)


def _check_target(index: int, target: Any) -> None:
    where = f"y[{index}]"
    _check_mapping(where, target, ("boxes", "labels"))
    m = _check_boxes_shape(where, target["boxes"])
    _check_vector(where, "labels", target["labels"], m, floating=False)
    if target.get("iscrowd") is not None:
        _check_vector(where, "iscrowd", target["iscrowd"], m, floating=None)
    if target.get("area") is not None:
        _check_vector(where, "area", target["area"], m, floating=None)
    if target.get("image_id") is not None:
        _image_id(where, target["image_id"])


def _check_mapping(where: str, value: Any, keys: tuple[str, ...]) -> None:
    if not isinstance(value, Mapping):
        raise TypeError(f"{where} must be a dict with keys {list(keys)}, got {type(value).__name__}")
    missing = [key for key in keys if key not in value]
    if missing:
        raise ValueError(f"{where} is missing key(s) {missing}; expected keys {list(keys)}, got {sorted(value)}")


def _check_boxes_shape(where: str, boxes: Any) -> int:
    if not isinstance(boxes, torch.Tensor):
        raise TypeError(f"{where}['boxes'] must be a torch.Tensor of shape (N, 4), got {type(boxes).__name__}")
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        if boxes.numel() == 0:  # an empty tensor of any shape means "no boxes"
            return 0
        raise ValueError(f"{where}['boxes'] must have shape (N, 4), got {tuple(boxes.shape)}")
    if boxes.dtype == torch.bool or boxes.is_complex():
        raise TypeError(f"{where}['boxes'] must be a floating point or integer tensor, got dtype {boxes.dtype}")
    if not boxes.is_floating_point() and len(boxes) and int(boxes.abs().max()) >= _MAX_ID:
        # float64 holds every integer below 2**53 exactly; beyond, widening would round silently
        largest = int(boxes.abs().max())
        raise ValueError(f"{where}['boxes'] integer coordinates must be smaller than 2**53 in magnitude, got {largest}")
    return boxes.shape[0]


def _check_vector(where: str, key: str, value: Any, length: int, floating: bool | None) -> None:
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{where}['{key}'] must be a torch.Tensor of shape ({length},), got {type(value).__name__}")
    if value.ndim != 1 and not (value.numel() == 0 and length == 0):
        raise ValueError(f"{where}['{key}'] must be 1-D with shape ({length},), got shape {tuple(value.shape)}")
    if value.numel() != length:
        raise ValueError(
            f"{where}['{key}'] has {value.numel()} entries but {where}['boxes'] has {length} boxes; "
            "they must have the same length"
        )
    if length == 0:  # an empty tensor of any dtype means "none", as for boxes (torch.tensor([]) is float32)
        return
    if floating is True and not value.is_floating_point():
        raise TypeError(f"{where}['{key}'] must be a floating point tensor, got dtype {value.dtype}")
    if floating is False and (value.is_floating_point() or value.is_complex()):
        raise TypeError(
            f"{where}['{key}'] must be an integer tensor, got dtype {value.dtype}; "
            f"convert it with .long() if the values are whole numbers"
        )


def _check_box_values(name: str, boxes: np.ndarray, image: np.ndarray, box_format: str) -> None:
    """Coordinates of the whole batch at once; the first sample with a bad box is named."""
    not_finite = ~np.isfinite(boxes).all(axis=1)
    with np.errstate(invalid="ignore"):
        negative = _negative_size(boxes, box_format)
    bad = not_finite | negative
    if not bad.any():
        return
    index = int(image[np.argmax(bad)])
    where = f"{name}[{index}]['boxes']"
    mine = image == index
    if (not_finite & mine).any():  # within a sample, non-finite coordinates are reported first
        raise ValueError(
            f"{where} must hold finite coordinates, got {_sample(torch.from_numpy(boxes[not_finite & mine]))}"
        )
    rule = "x2 >= x1 and y2 >= y1" if box_format == "xyxy" else "width >= 0 and height >= 0"
    raise ValueError(
        f"{where} in format '{box_format}' must satisfy {rule}, got box {boxes[negative & mine][0].tolist()}; "
        "check the box_format argument"
    )


def _negative_size(boxes: np.ndarray, box_format: str) -> np.ndarray:
    if box_format == "xyxy":
        return (boxes[:, 2] < boxes[:, 0]) | (boxes[:, 3] < boxes[:, 1])
    return (boxes[:, 2] < 0) | (boxes[:, 3] < 0)


def _image_id(where: str, value: Any) -> int:
    if isinstance(value, torch.Tensor):
        if value.numel() != 1 or value.is_floating_point():
            raise TypeError(
                f"{where}['image_id'] must be an int or a one-element integer tensor, "
                f"got a {value.dtype} tensor of shape {tuple(value.shape)}"
            )
        value = value.item()
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{where}['image_id'] must be an int, got {type(value).__name__} {value!r}")
    if abs(int(value)) >= _MAX_ID:
        raise ValueError(f"{where}['image_id'] must be smaller than 2**53 in magnitude, got {value}")
    return int(value)


def _image_ids(y: Sequence[Mapping]) -> np.ndarray | None:
    given = [t.get("image_id") is not None for t in y]
    if not any(given):
        return None
    if not all(given):
        missing = given.index(False)
        raise ValueError(
            f"y[{missing}] has no 'image_id' while other targets in the batch have one; "
            "give every target an image_id or none of them"
        )
    return np.array([_image_id(f"y[{i}]", t["image_id"]) for i, t in enumerate(y)], dtype=np.int64)


def _concat_boxes(boxes: list[torch.Tensor]) -> np.ndarray:
    parts = [b.detach().reshape(-1, 4).to("cpu", torch.float64) for b in boxes]
    return torch.cat(parts).numpy() if parts else np.zeros((0, 4))


def _concat_float(values: list[torch.Tensor]) -> np.ndarray:
    parts = [v.detach().reshape(-1).to("cpu", torch.float64) for v in values]
    return torch.cat(parts).numpy() if parts else np.zeros(0)


def _concat_int(values: list[torch.Tensor]) -> np.ndarray:
    parts = [v.detach().reshape(-1).to("cpu", torch.int64) for v in values]
    return torch.cat(parts).numpy() if parts else np.zeros(0, dtype=np.int64)


def _image_index(counts: list[int]) -> np.ndarray:
    return np.repeat(np.arange(len(counts), dtype=np.int64), counts)


def _crowd(y: Sequence[Mapping], gt_image: np.ndarray) -> np.ndarray:
    """``iscrowd`` as int64 0/1; other values (0.5, 2, -1) are refused before any rounding could hide them."""
    parts = [
        torch.zeros(len(t["labels"]), dtype=torch.float64)
        if t.get("iscrowd") is None
        else t["iscrowd"].detach().reshape(-1).to("cpu", torch.float64)
        for t in y
    ]
    crowd = torch.cat(parts).numpy() if parts else np.zeros(0)
    _refuse_rows("y", "iscrowd", (crowd != 0) & (crowd != 1), gt_image, crowd, "must hold only 0 and 1")
    return crowd.astype(np.int64)


def _area(samples: Sequence[Mapping], xywh: np.ndarray) -> np.ndarray:
    """The ``area`` key when given, else the box area ``w * h`` (what ``loadRes`` sets for box results).

    For ground truth it is COCO's ``area`` field (the mask area on COCO); for a detection, e.g. the
    mask area that ``loadRes`` gives a segmentation result without a box.
    """
    box_area = xywh[:, 2] * xywh[:, 3]
    if all(t.get("area") is None for t in samples):
        return box_area
    parts, start = [], 0
    for t in samples:
        m = len(t["labels"])
        given = t.get("area")
        parts.append(
            box_area[start : start + m]
            if given is None
            else given.detach().reshape(-1).to("cpu", torch.float64).numpy()
        )
        start += m
    return np.concatenate(parts)


def _to_xywh(boxes: np.ndarray, box_format: str) -> np.ndarray:
    if box_format == "xywh":
        return boxes
    out = boxes.copy()
    if box_format == "xyxy":
        out[:, 2:] = boxes[:, 2:] - boxes[:, :2]
    else:  # cxcywh
        out[:, :2] = boxes[:, :2] - boxes[:, 2:] / 2
    return out


def _sample(values: torch.Tensor, limit: int = 4) -> str:
    flat = values.reshape(-1).tolist()
    return str(flat[:limit])[:-1] + (", ...]" if len(flat) > limit else "]")
