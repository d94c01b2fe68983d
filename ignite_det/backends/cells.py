"""COCOeval's per-image greedy matching at one IoU threshold (cocoeval.py:273-296), per detection.

The operating point (best F1) and the detection overlays need each detection's outcome at one
IoU threshold; faster-coco-eval does not expose its matches, so both backends use this matcher on
IoUs computed by the backend's own bbox IoU. Tests check it against pycocotools' ``evalImgs``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ignite_det.iou.by_type import CellIou
from ignite_det.store import Detections, category_index


@dataclass(frozen=True)
class MatchCells:
    """The (image, category) cells that hold both detections and ground truth, in COCOeval's order.

    Images are in sorted image-id order, as COCOeval sorts them; a cell's detections are its best
    ``max_det`` by score, ties in arrival order (a stable sort); its ground truths in arrival order.
    """

    img_ids: list[int]
    counted: np.ndarray  # bool (N,): a detection within the top max_det of its (image, category)
    cells: list[tuple[int, int]]  # (image index, category index)
    dets: list[np.ndarray]
    gts: list[np.ndarray]
    ious: list[np.ndarray]  # (D, G) per cell, by the backend's IoU

    @staticmethod
    def build(d: Detections, cat_ids: list[int], max_det: int, iou: CellIou) -> MatchCells:
        order = np.argsort(d.image_ids, kind="stable")
        img_rank = np.empty_like(order)
        img_rank[order] = np.arange(len(order))
        k = len(cat_ids)
        cats = np.asarray(cat_ids, dtype=np.int64)
        det_k = category_index(d.det_labels, cats)
        rows = np.flatnonzero(det_k >= 0)
        det_key = img_rank[d.det_position[rows]] * k + det_k[rows]
        sort = np.lexsort((np.arange(len(rows)), -d.det_scores[rows], det_key))
        det_rows, det_key = rows[sort], det_key[sort]
        det_starts, det_ends = _runs(det_key)
        rank = np.arange(len(det_rows)) - np.repeat(det_starts, det_ends - det_starts)
        counted = np.zeros(len(d.det_scores), dtype=bool)
        counted[det_rows[rank < max_det]] = True

        gt_key = img_rank[d.gt_position] * k + category_index(d.gt_labels, cats)
        gt_rows = np.argsort(gt_key, kind="stable")
        gt_starts, gt_ends = _runs(gt_key[gt_rows])
        keys, det_at, gt_at = np.intersect1d(det_key[det_starts], gt_key[gt_rows][gt_starts], return_indices=True)
        dets = [det_rows[det_starts[i] : min(det_ends[i], det_starts[i] + max_det)] for i in det_at]
        gts = [gt_rows[gt_starts[i] : gt_ends[i]] for i in gt_at]
        return MatchCells(
            img_ids=d.image_ids[order].tolist(),
            counted=counted,
            cells=list(zip((keys // max(k, 1)).tolist(), (keys % max(k, 1)).tolist())),
            dets=dets,
            gts=gts,
            ious=[iou(d, r, g) for r, g in zip(dets, gts)],
        )

    def iou_table(self, categories: range) -> list[list]:
        """The IoU matrices of some categories (indices), nested image -> category, as
        faster-coco-eval's C++ core takes them."""
        # Empty cells all share one list: building a fresh one per (image, category) cost more than
        # the rest of the table (400k lists on COCO val), and the C++ core only reads them.
        no_pairs: list = []
        table: list[list] = [[no_pairs] * len(categories) for _ in self.img_ids]
        for (i, k), ious in zip(self.cells, self.ious):
            if k in categories:
                table[i][k - categories.start] = ious
        return table

    def outcome(self, d: Detections, threshold: float, area_range: tuple[float, float]) -> np.ndarray:
        """Per detection, COCOeval's greedy matching at one IoU threshold and one area range."""
        lo, hi = area_range
        outcome = np.full(len(d.det_scores), -1, dtype=np.int8)
        outcome[self.counted & (d.det_area >= lo) & (d.det_area <= hi)] = 0  # unmatched: a false positive
        gt_ignored = d.gt_ignored() | (d.gt_area < lo) | (d.gt_area > hi)
        for ious, dets, gts in zip(self.ious, self.dets, self.gts):
            matches = greedy_match(ious, gt_ignored[gts], d.gt_crowd[gts] != 0, threshold)
            for det, gt in zip(dets.tolist(), matches):
                if gt >= 0:
                    outcome[det] = -1 if gt_ignored[gts[gt]] else 1
        return outcome


def _runs(sorted_keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start and end of each run of equal values in a sorted array."""
    if len(sorted_keys) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    starts = np.flatnonzero(np.r_[True, sorted_keys[1:] != sorted_keys[:-1]])
    return starts, np.r_[starts[1:], len(sorted_keys)]


def greedy_match(ious: np.ndarray, gt_ignored: np.ndarray, gt_crowd: np.ndarray, threshold: float) -> list[int]:
    """The ground truth (index into the given order) matched by each detection, or -1.

    Args:
        ious: (D, G) IoU, detections best score first, ground truths in arrival order.
        gt_ignored: (G,) bool, crowd or outside the area range.
        gt_crowd: (G,) bool; a crowd region can be matched by several detections.
        threshold: the IoU threshold; an IoU equal to it matches.
    """
    ignored = gt_ignored.tolist()
    order = sorted(range(len(ignored)), key=ignored.__getitem__)  # regular ones first, stable, as COCOeval sorts
    crowd = gt_crowd.tolist()
    taken = [False] * len(order)
    rows = np.asarray(ious).tolist()
    matches = []
    for row in rows:
        best, match = min(threshold, 1 - 1e-10), -1
        for g in order:
            if taken[g] and not crowd[g]:
                continue
            if match > -1 and not ignored[match] and ignored[g]:
                break  # a regular match beats any ignored one
            if row[g] < best:
                continue
            best, match = row[g], g
        if match > -1:
            taken[match] = True
        matches.append(match)
    return matches
