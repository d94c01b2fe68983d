"""COCO's box IoU on (detection, ground truth) pairs, as pycocotools' ``bbIou`` computes it.

The native engine asks only for the IoU of given (detection, ground truth) pairs, never for whole
matrices; masks and keypoints can plug in a function of the same signature (:data:`PairIou`).
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from ignite_det.table import Detections

# (detections, detection rows, ground-truth rows) -> float64 IoU of each pair, as COCOeval computes it.
PairIou = Callable[[Detections, np.ndarray, np.ndarray], np.ndarray]


def box_pair_iou(d: Detections, det_rows: np.ndarray, gt_rows: np.ndarray) -> np.ndarray:
    """IoU of each pair ``(d.det_boxes[det_rows[i]], d.gt_boxes[gt_rows[i]])``, xywh boxes.

    The same float64 operations, in the same order, as pycocotools' ``bbIou`` (maskApi.c): no +1
    pixel convention, 0 where the boxes do not overlap, and for a crowd region the intersection over
    the detection's own area. So the result equals pycocotools' ``mask.iou`` to the last bit.

    Example:
        >>> import numpy as np
        >>> from ignite_det.table import Detections
        >>> d = Detections.empty()
        >>> d = Detections(**{**d.__dict__, "det_boxes": np.array([[0.0, 0, 10, 10]]),
        ...                   "gt_boxes": np.array([[5.0, 0, 10, 10]]), "gt_crowd": np.array([0])})
        >>> box_pair_iou(d, np.array([0]), np.array([0])).tolist()
        [0.3333333333333333]
    """
    dt = d.det_boxes[det_rows]
    gt = d.gt_boxes[gt_rows]
    w = np.minimum(dt[:, 2] + dt[:, 0], gt[:, 2] + gt[:, 0]) - np.maximum(dt[:, 0], gt[:, 0])
    h = np.minimum(dt[:, 3] + dt[:, 1], gt[:, 3] + gt[:, 1]) - np.maximum(dt[:, 1], gt[:, 1])
    overlap = (w > 0) & (h > 0)
    inter = w * h
    dt_area = dt[:, 2] * dt[:, 3]
    union = np.where(d.gt_crowd[gt_rows] != 0, dt_area, (dt_area + gt[:, 2] * gt[:, 3]) - inter)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(overlap, inter / np.where(overlap, union, 1.0), 0.0)
