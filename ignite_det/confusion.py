"""A detection confusion matrix: which class each ground truth was detected as, if any.

At one IoU threshold and one confidence threshold, per image: detections scoring at least the
threshold and non-crowd ground truths of the evaluated categories are paired one-to-one, greedily
by decreasing IoU (at least the IoU threshold), whatever their classes. Rows are the ground
truth's class, columns the detection's; the last row and column are "background": a detection
paired with nothing is counted in the background row (a spurious detection), a ground truth paired
with nothing in the background column (a missed object). An unpaired detection that covers a
crowd region (intersection over its own area at least the IoU threshold) is not counted, as
COCOeval does not count it.
"""

from __future__ import annotations

import numpy as np

from ignite_det.store import Detections, category_index


def confusion_matrix(
    d: Detections, category_ids: np.ndarray, score_threshold: float, iou_threshold: float = 0.5
) -> np.ndarray:
    """(K+1, K+1) int64 counts in the order of ``category_ids``, background last."""
    k = len(category_ids)
    background = k
    matrix = np.zeros((k + 1, k + 1), dtype=np.int64)
    det_k = category_index(d.det_labels, category_ids)
    gt_k = category_index(d.gt_labels, category_ids)
    det_keep = (det_k >= 0) & (d.det_scores >= score_threshold)
    gt_keep = gt_k >= 0
    det_pos, gt_pos = d.det_position[det_keep], d.gt_position[gt_keep]
    det_boxes, det_cls = d.det_boxes[det_keep], det_k[det_keep]
    gt_boxes, gt_cls, gt_crowd = d.gt_boxes[gt_keep], gt_k[gt_keep], d.gt_crowd[gt_keep]
    det_bounds = np.searchsorted(det_pos, np.arange(len(d.image_ids) + 1))
    gt_bounds = np.searchsorted(gt_pos, np.arange(len(d.image_ids) + 1))
    for image in range(len(d.image_ids)):
        ds = slice(det_bounds[image], det_bounds[image + 1])
        gs = slice(gt_bounds[image], gt_bounds[image + 1])
        _add_image(
            matrix, det_boxes[ds], det_cls[ds], gt_boxes[gs], gt_cls[gs], gt_crowd[gs], iou_threshold, background
        )
    return matrix


def _add_image(matrix, det_boxes, det_cls, gt_boxes, gt_cls, gt_crowd, iou_threshold, background) -> None:
    regular = gt_crowd == 0
    ious = _iou(det_boxes, gt_boxes[regular])
    det_paired = np.zeros(len(det_boxes), dtype=bool)
    gt_paired = np.zeros(int(regular.sum()), dtype=bool)
    regular_cls = gt_cls[regular]
    candidates = np.argwhere(ious >= iou_threshold)
    for di, gi in candidates[np.argsort(-ious[tuple(candidates.T)], kind="stable")]:
        if not det_paired[di] and not gt_paired[gi]:
            det_paired[di] = gt_paired[gi] = True
            matrix[regular_cls[gi], det_cls[di]] += 1
    np.add.at(matrix[:, background], regular_cls[~gt_paired], 1)
    spurious = ~det_paired
    if (~regular).any() and spurious.any():
        covered = _coverage(det_boxes, gt_boxes[~regular]).max(axis=1) >= iou_threshold
        spurious &= ~covered
    np.add.at(matrix[background], det_cls[spurious], 1)


def _intersection(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    w = np.minimum(a[:, None, 0] + a[:, None, 2], b[None, :, 0] + b[None, :, 2]) - np.maximum(
        a[:, None, 0], b[None, :, 0]
    )
    h = np.minimum(a[:, None, 1] + a[:, None, 3], b[None, :, 1] + b[None, :, 3]) - np.maximum(
        a[:, None, 1], b[None, :, 1]
    )
    return np.clip(w, 0, None) * np.clip(h, 0, None)


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    inter = _intersection(a, b)
    union = (a[:, 2] * a[:, 3])[:, None] + (b[:, 2] * b[:, 3])[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def _coverage(a: np.ndarray, crowd: np.ndarray) -> np.ndarray:
    inter = _intersection(a, crowd)
    area = (a[:, 2] * a[:, 3])[:, None]
    return np.divide(inter, area, out=np.zeros_like(inter), where=area > 0)
