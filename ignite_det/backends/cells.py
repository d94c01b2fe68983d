"""COCOeval's greedy matching at one IoU threshold, in pure Python: kept only for the W&B overlays
(:mod:`ignite_det.wandb_logging.overlays`), which move to the native matcher
(:mod:`ignite_det.backends.native.matching`) in another change; the metric does not use it.
"""

from __future__ import annotations

import numpy as np


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
