"""The ``keypoints`` IoU type: COCO's object keypoint similarity (OKS), as pycocotools computes it.

Predictions carry ``keypoints`` (N, K, 3), Keypoint R-CNN's output: x, y and a third column that
COCOeval does not read. Targets carry ``keypoints`` (M, K, 3) with COCO's visibility flag
(0: not labelled, 1: labelled but hidden, 2: visible), and ``boxes``: COCOeval measures a
detection against a person without any labelled point by its distance to a region around the
person's box. Everything is kept in float64.

The rules, from pycocotools' ``cocoeval.py`` and ``coco.py``:

- OKS (``computeOks``): ``e = (dx**2 + dy**2) / (2 * sigma)**2 / (area + eps) / 2`` per point,
  over the labelled points of the ground truth (``v > 0``), ``oks = sum(exp(-e)) / count``; for a
  ground truth with no labelled point, ``dx``, ``dy`` are the distances of every detected point
  outside the box grown by its own width and height on each side, over all K points.
  :func:`oks` does the same float64 operations in the same order, so it equals pycocotools to the
  last bit (the sum included: it adds the same number of terms in numpy's own order).
- A ground truth with no labelled point is ignored, as a crowd region is (``_prepare``).
- A detection's ``area``, which puts it in the medium or large range, is the extent of all its K
  points (``loadRes``), whatever the third column says.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ignite_det.rules import FINITE, VISIBLE

# cocoeval.py Params.setKpParams: the 17 COCO person keypoints, nose first.
COCO_KEYPOINT_SIGMAS = (
    np.array([0.26, 0.25, 0.25, 0.35, 0.35, 0.79, 0.79, 0.72, 0.72, 0.62, 0.62, 1.07, 1.07, 0.87, 0.87, 0.89, 0.89])
    / 10.0
)
# COCO's person category (person_keypoints_*.json): the point names and the skeleton, as 0-based pairs.
COCO_PERSON_KEYPOINTS = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder", "left_elbow",
    "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle",
    "right_ankle",
)  # fmt: skip
COCO_PERSON_SKELETON = tuple(
    (a - 1, b - 1)
    for a, b in (
        (16, 14), (14, 12), (17, 15), (15, 13), (12, 13), (6, 12), (7, 13), (6, 7), (6, 8), (7, 9),
        (8, 10), (9, 11), (2, 3), (1, 2), (1, 3), (2, 4), (3, 5), (4, 6), (5, 7),
    )
)  # fmt: skip
KEYPOINT_MAX_DETECTIONS = (20,)
KEYPOINT_AREA_RANGES: dict[str, tuple[float, float]] = {"medium": (32**2, 96**2), "large": (96**2, 1e5**2)}
KEYPOINT_STAT_NAMES = ("AP", "AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75", "ARm", "ARl")


def oks(
    det_keypoints: np.ndarray,
    gt_keypoints: np.ndarray,
    gt_boxes: np.ndarray,
    gt_area: np.ndarray,
    sigmas: np.ndarray,
) -> np.ndarray:
    """float64 (P,): the OKS of each pair ``(det_keypoints[p], gt_keypoints[p])``.

    Args:
        det_keypoints: float64 (P, K, 2 or 3), the detected points (x, y first).
        gt_keypoints: float64 (P, K, 3), the ground truth's points and visibility.
        gt_boxes: float64 (P, 4), the ground truth's box in xywh.
        gt_area: float64 (P,), the ground truth's ``area``.
        sigmas: float64 (K,), the per-point constants (:data:`COCO_KEYPOINT_SIGMAS` for people).

    Example:
        >>> gt = np.array([[[10.0, 10.0, 2.0], [20.0, 10.0, 2.0], [0.0, 0.0, 0.0]]])
        >>> det = gt + np.array([1.0, 0.0, 0.0])
        >>> oks(det, gt, np.array([[5.0, 5.0, 20.0, 10.0]]), np.array([200.0]), np.array([0.1, 0.1, 0.1])).round(6)
        array([0.939413])
    """
    variances = (sigmas * 2) ** 2
    xd, yd = det_keypoints[:, :, 0], det_keypoints[:, :, 1]
    xg, yg, vg = gt_keypoints[:, :, 0], gt_keypoints[:, :, 1], gt_keypoints[:, :, 2]
    labelled = vg > 0
    counts = labelled.sum(axis=1)
    dx, dy = xd - xg, yd - yg
    unlabelled = counts == 0
    if unlabelled.any():
        dx[unlabelled], dy[unlabelled] = _distance_to_region(xd[unlabelled], yd[unlabelled], gt_boxes[unlabelled])
    e = (dx**2 + dy**2) / variances / (gt_area[:, None] + np.spacing(1)) / 2
    out = np.zeros(len(e))
    labelled[unlabelled] = True  # a person without a labelled point is measured on all K points
    counts[unlabelled] = e.shape[1]
    for count in np.unique(counts).tolist():
        rows = np.flatnonzero(counts == count)
        # The kept terms of each row, contiguous: numpy then sums each row as it sums the 1-D
        # array e[vg > 0] in computeOks (the same pairwise order), so the sum is bit-identical.
        terms = e[rows][labelled[rows]].reshape(len(rows), count)
        out[rows] = np.sum(np.exp(-terms), axis=1) / count
    return out


def oks_matrix(
    det_keypoints: np.ndarray,
    gt_keypoints: np.ndarray,
    gt_boxes: np.ndarray,
    gt_area: np.ndarray,
    sigmas: np.ndarray,
) -> np.ndarray:
    """float64 (D, G): :func:`oks` of every detection with every ground truth, as ``computeOks`` returns it."""
    d, g = len(det_keypoints), len(gt_keypoints)
    if d == 0 or g == 0:
        return np.zeros((d, g))
    det_i, gt_i = np.repeat(np.arange(d), g), np.tile(np.arange(g), d)
    return oks(det_keypoints[det_i], gt_keypoints[gt_i], gt_boxes[gt_i], gt_area[gt_i], sigmas).reshape(d, g)


def _distance_to_region(xd: np.ndarray, yd: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """How far each point lies outside the ground truth's box doubled on every side (computeOks)."""
    x, y, w, h = (boxes[:, i : i + 1] for i in range(4))
    x0, x1 = x - w, x + w * 2
    y0, y1 = y - h, y + h * 2
    zero = np.zeros_like(xd)
    dx = np.maximum(zero, x0 - xd) + np.maximum(zero, xd - x1)
    dy = np.maximum(zero, y0 - yd) + np.maximum(zero, yd - y1)
    return dx, dy


def extent(keypoints: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(boxes float64 (N, 4) xywh, area float64 (N,)) of all K points, as ``loadRes`` sets a
    keypoint result's ``bbox`` and ``area``."""
    if len(keypoints) == 0:
        return np.zeros((0, 4)), np.zeros(0)
    x, y = keypoints[:, :, 0], keypoints[:, :, 1]
    x0, x1, y0, y1 = x.min(axis=1), x.max(axis=1), y.min(axis=1), y.max(axis=1)
    return np.column_stack([x0, y0, x1 - x0, y1 - y0]), (x1 - x0) * (y1 - y0)


# --- the input contract --------------------------------------------------------------------------


def check_sigmas(sigmas: Any) -> np.ndarray:
    """``keypoint_sigmas`` as float64 (K,); None gives COCO's 17 person sigmas.

    Raises:
        ValueError: if they are not a non-empty list of positive finite numbers.
    """
    if sigmas is None:
        return COCO_KEYPOINT_SIGMAS.copy()
    values = np.asarray(sigmas.tolist() if isinstance(sigmas, torch.Tensor) else sigmas, dtype=np.float64)
    if values.ndim != 1 or len(values) == 0 or not np.all(np.isfinite(values) & (values > 0)):
        raise ValueError(
            f"keypoint_sigmas must be a non-empty list of positive numbers, one per keypoint, got {sigmas}"
        )
    return values


def check_keypoints(where: str, keypoints: Any, num_keypoints: int, target: bool) -> int:
    """Check the structure of one sample's ``keypoints``; return how many objects they describe.

    Predictions are (N, K, 3) (or (N, K, 2)), targets (M, K, 3), K the number of ``keypoint_sigmas``.

    Raises:
        TypeError: for a value that is not a floating point or integer tensor.
        ValueError: for another shape.
    """
    expected = f"(M, {num_keypoints}, 3)" if target else f"(N, {num_keypoints}, 3)"
    if not isinstance(keypoints, torch.Tensor):
        raise TypeError(f"{where} must be a torch.Tensor of shape {expected}, got {type(keypoints).__name__}")
    if keypoints.numel() == 0 and (keypoints.ndim != 3 or keypoints.shape[0] == 0):  # empty: no objects
        return 0
    columns = (3,) if target else (2, 3)
    if keypoints.ndim != 3 or keypoints.shape[2] not in columns:
        raise ValueError(f"{where} must have shape {expected}, got {tuple(keypoints.shape)}")
    if keypoints.shape[1] != num_keypoints:
        raise ValueError(
            f"{where} has {keypoints.shape[1]} keypoints per object, but keypoint_sigmas has {num_keypoints}; "
            "pass keypoint_sigmas with one sigma per keypoint (the default is COCO's 17 person keypoints)"
        )
    if keypoints.dtype == torch.bool or keypoints.is_complex():
        raise TypeError(f"{where} must be a floating point or integer tensor, got dtype {keypoints.dtype}")
    return keypoints.shape[0]


def keypoints_array(where: str, keypoints: torch.Tensor, num_keypoints: int, target: bool) -> np.ndarray:
    """One sample's checked ``keypoints`` as float64 (N, K, 3) (a missing third column is 0).

    Raises:
        ValueError: for coordinates that are not finite, or a target visibility other than 0, 1, 2.
    """
    if keypoints.numel() == 0:
        return np.zeros((0, num_keypoints, 3))
    values = keypoints.detach().to("cpu", torch.float64).numpy()
    if values.shape[2] == 2:
        values = np.concatenate([values, np.zeros(values.shape[:2] + (1,))], axis=2)
    bad = FINITE.broken(values[:, :, :2])
    if bad.any():
        raise ValueError(
            f"{where} must hold finite x and y, got {values[:, :, :2][bad][:4].tolist()}; "
            "give unlabelled points any finite position with visibility 0"
        )
    if target:
        v = values[:, :, 2]
        wrong = VISIBLE.broken(v)
        if wrong.any():
            raise ValueError(
                f"{where}[..., 2] must hold COCO's visibility 0 (not labelled), 1 (labelled, hidden) or 2 "
                f"(visible), got {np.unique(v[wrong])[:4].tolist()}"
            )
    return values
