"""A detection confusion matrix: which class each ground truth was detected as, if any.

At one IoU threshold and one confidence threshold, per image: detections scoring at least the
threshold and non-crowd ground truths of the evaluated categories are paired one-to-one, greedily
by decreasing IoU (at least the IoU threshold), whatever their classes. Rows are the ground
truth's class, columns the detection's; the last row and column are "background": a detection
paired with nothing is counted in the background row (a spurious detection), a ground truth paired
with nothing in the background column (a missed object). An unpaired detection that covers a
crowd region (intersection over its own area at least the IoU threshold) is not counted, as
COCOeval does not count it; so is one that matches a ground truth COCOeval ignores otherwise (a
person without a labelled keypoint). The IoU is that of the evaluation's IoU type (box, mask, OKS).
"""

from __future__ import annotations

import numpy as np

from ignite_det.iou.bbox import PairIou, box_pair_iou
from ignite_det.parallel import map_in_threads
from ignite_det.table import Detections, category_index

# Images paired per block in _overlaps; a module constant so that tests can make it tiny and cross block bounds.
IMAGES_PER_BLOCK = 256


def confusion_matrix(
    d: Detections,
    category_ids: np.ndarray,
    score_threshold: float,
    iou_threshold: float = 0.5,
    pair_iou: PairIou = box_pair_iou,
) -> np.ndarray:
    """(K+1, K+1) int64 counts in the order of ``category_ids``, background last.

    A ``score_threshold`` of ``inf`` (no operating point: nothing detected, or no ground truth)
    keeps no detection, so every ground truth is counted as missed.
    """
    block = IMAGES_PER_BLOCK  # read at call time, so that tests can make it tiny
    k = len(category_ids)
    matrix = np.zeros((k + 1, k + 1), dtype=np.int64)
    above = np.flatnonzero(d.det_scores >= score_threshold)  # usually few: look up only their categories
    above_k = category_index(d.det_labels[above], category_ids)
    dets, dets_k = above[above_k >= 0], above_k[above_k >= 0]
    gt_k = category_index(d.gt_labels, category_ids)
    ignored = d.gt_ignored()
    regular = np.flatnonzero((gt_k >= 0) & ~ignored)
    crowd = np.flatnonzero((gt_k >= 0) & ignored)
    num_images = len(d.image_ids)

    # Greedy one-to-one pairing by decreasing IoU; images are independent, so one global order will do.
    det_i, gt_i, ious = _overlaps(d, dets, regular, num_images, pair_iou, iou_threshold, block)
    order = np.argsort(-ious, kind="stable")
    di, gi = _greedy_pairs(det_i[order], gt_i[order], len(dets), len(regular))
    det_paired = np.zeros(len(dets), dtype=bool)
    gt_paired = np.zeros(len(regular), dtype=bool)
    det_paired[di] = gt_paired[gi] = True
    np.add.at(matrix, (gt_k[regular[gi]], dets_k[di]), 1)
    np.add.at(matrix[:, k], gt_k[regular[~gt_paired]], 1)

    spurious = ~det_paired
    covered, _, _ = _overlaps(d, dets, crowd, num_images, pair_iou, iou_threshold, block)
    spurious[covered] = False
    np.add.at(matrix[k], dets_k[spurious], 1)
    return matrix


def _greedy_pairs(det_i: np.ndarray, gt_i: np.ndarray, num_dets: int, num_gts: int) -> tuple[np.ndarray, np.ndarray]:
    """The pairs a greedy one-to-one pairing takes, going through the candidate pairs in the order given
    and taking each pair whose detection and ground truth are both still free.

    In rounds rather than pair by pair: a pair that comes first among the remaining pairs of its
    detection and of its ground truth is taken by the pair-by-pair pass too (every earlier pair that
    touched either was dropped for a partner taken before it); taking all of them, then dropping the
    pairs they make unavailable, repeats that pass exactly. Each round takes at least the first pair.

    Example:
        >>> det_i, gt_i = _greedy_pairs(np.array([0, 1, 0, 1]), np.array([0, 0, 1, 1]), 2, 2)
        >>> det_i.tolist(), gt_i.tolist()
        ([0, 1], [0, 1])
    """
    index = np.arange(len(det_i))
    taken = []
    det_free, gt_free = np.ones(num_dets, dtype=bool), np.ones(num_gts, dtype=bool)
    # Each one's first remaining pair; reset where a round wrote, so that a round costs what is left of the
    # pairs (a long chain in one crowded image makes many rounds, each with few pairs left).
    none = len(det_i)
    first_of_det, first_of_gt = np.full(num_dets, none), np.full(num_gts, none)
    while len(index):
        d, g = det_i[index], gt_i[index]
        np.minimum.at(first_of_det, d, index)
        np.minimum.at(first_of_gt, g, index)
        wins = (first_of_det[d] == index) & (first_of_gt[g] == index)
        first_of_det[d], first_of_gt[g] = none, none
        det_free[d[wins]] = gt_free[g[wins]] = False
        taken.append(index[wins])
        index = index[det_free[d] & gt_free[g]]
    chosen = np.sort(np.concatenate(taken)) if taken else np.zeros(0, np.int64)
    return det_i[chosen], gt_i[chosen]


def _overlaps(
    d: Detections, dets: np.ndarray, gts: np.ndarray, num_images: int, measure: PairIou, threshold: float, block: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(det index, gt index, value) of same-image pairs whose ``measure`` reaches ``threshold``.

    Indices point into ``dets`` and ``gts``. Images go by in blocks of ``block``, so that the
    all-pairs arrays stay small (a COCO-val-sized evaluation has millions of same-image pairs).
    """
    det_position, gt_position = d.det_position[dets], d.gt_position[gts]

    def pairs(start: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        stop = min(start + block, num_images)
        det_lo, det_hi = np.searchsorted(det_position, [start, stop])
        gt_lo, gt_hi = np.searchsorted(gt_position, [start, stop])
        det_i, gt_i = _same_image_pairs(
            det_position[det_lo:det_hi] - start, gt_position[gt_lo:gt_hi] - start, stop - start
        )
        det_i, gt_i = det_i + det_lo, gt_i + gt_lo
        values = measure(d, dets[det_i], gts[gt_i])
        keep = values >= threshold
        return det_i[keep], gt_i[keep], values[keep]

    found = map_in_threads(pairs, range(0, num_images, block))  # blocks in order: the pairs as one pass makes them
    if not found:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0)
    return tuple(np.concatenate(parts) for parts in zip(*found))  # type: ignore[return-value]


def _same_image_pairs(
    det_position: np.ndarray, gt_position: np.ndarray, num_images: int
) -> tuple[np.ndarray, np.ndarray]:
    """Every (detection, ground truth) index pair within one image; positions must be sorted."""
    gt_count = np.bincount(gt_position, minlength=num_images)
    gt_start = np.r_[0, np.cumsum(gt_count)[:-1]]
    per_det = gt_count[det_position]
    det_i = np.repeat(np.arange(len(det_position)), per_det)
    first = np.cumsum(per_det) - per_det  # where each detection's pairs start (also right for no detection)
    gt_i = np.arange(len(det_i)) - np.repeat(first, per_det) + np.repeat(gt_start[det_position], per_det)
    return det_i, gt_i
