"""How a detection is compared with a ground truth, per IoU type: the one place that dispatches on it.

=============  ======================================================  ========================
``iou_type``   measure                                                 computed by
=============  ======================================================  ========================
``bbox``       box IoU; for a crowd region, intersection / detection   ``mask.iou`` (:mod:`~ignite_det.iou.bbox`)
``segm``       mask IoU; for a crowd region, intersection / detection  :mod:`ignite_det.iou.segm`
``keypoints``  object keypoint similarity (OKS)                        :mod:`ignite_det.iou.keypoints`
=============  ======================================================  ========================

Two shapes of the same measure: a :data:`CellIou` gives the matrix of one (image, category) cell,
as COCOeval's ``computeIoU``/``computeOks`` return it; a :data:`PairIou` gives the values of
given (detection, ground truth) pairs (:data:`~ignite_det.iou.bbox.PairIou`), for the native
backend's matching and the confusion matrix. Both equal pycocotools to the last bit.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from ignite_det.iou.bbox import PairIou, box_pair_iou
from ignite_det.iou.keypoints import oks, oks_matrix
from ignite_det.iou.segm import mask_iou, mask_pair_iou
from ignite_det.params import EvalParams
from ignite_det.table import Detections

# (detections, detection rows (D,), ground-truth rows (G,)) -> float64 (D, G)
CellIou = Callable[[Detections, np.ndarray, np.ndarray], np.ndarray]
# (detection boxes (D, 4), ground-truth boxes (G, 4), iscrowd list) -> (D, G): a backend's mask.iou on boxes
BoxIou = Callable[[np.ndarray, np.ndarray, list], np.ndarray]


def cell_iou(params: EvalParams, box_iou: BoxIou) -> CellIou:
    """The cell matrix of ``params.iou_type``; boxes are measured with the backend's own ``box_iou``."""
    if params.iou_type == "segm":
        return lambda d, det, gt: mask_iou(d.det_masks(det), d.gt_masks(gt), d.gt_crowd[gt])
    if params.iou_type == "keypoints":
        sigmas = params.keypoint_sigmas
        return lambda d, det, gt: oks_matrix(
            d.det_keypoints[det], d.gt_keypoints[gt], d.gt_boxes[gt], d.gt_area[gt], sigmas
        )
    return lambda d, det, gt: np.asarray(box_iou(d.det_boxes[det], d.gt_boxes[gt], d.gt_crowd[gt].tolist()))


def pair_iou(params: EvalParams) -> PairIou:
    """The pair values of ``params.iou_type``."""
    if params.iou_type == "segm":
        return _mask_pairs
    if params.iou_type == "keypoints":
        sigmas = params.keypoint_sigmas
        return lambda d, det, gt: oks(d.det_keypoints[det], d.gt_keypoints[gt], d.gt_boxes[gt], d.gt_area[gt], sigmas)
    return box_pair_iou


def _mask_pairs(d: Detections, det: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Pairs of one image share a ``mask.iou`` call: each RLE is parsed once, and pairs whose boxes do
    not overlap cost pycocotools a box test only (a call per (image, category) cost more, measured)."""
    return mask_pair_iou(d.det_masks(), d.gt_masks(), d.gt_crowd, det, gt, d.det_position[det])
