"""An evaluation fed twice: ``update()`` after ``compute()`` without ``reset()``, and an ``image_id`` given
again with other predictions.

Outside an Ignite engine nothing calls ``reset()``, so a second pass over the same images (the next
epoch, another model) lands in the evaluation already computed. Its images repeat ids already seen,
and a repeated id is dropped as a ``DistributedSampler``'s padding would be, so the number stays
frozen. Both are said here, in words, with a warning: neither changes a number.
"""

from __future__ import annotations

import warnings

import ignite.distributed as idist
import numpy as np

from ignite_det.table import Detections

# A padded repeat runs the same model on the same image, maybe on another device: its floats may differ
# in the last bits (cuDNN picks kernels per batch shape), so predictions count as the same within these.
_RTOL, _ATOL = 1e-3, 1e-3


def warn_update_after_compute(stacklevel: int = 4) -> None:
    """The warning of an ``update()`` that follows ``compute()`` with no ``reset()`` in between."""
    warnings.warn(
        "CocoMetric.update() after compute() without reset(): the new images are added to the evaluation "
        "already computed, and any image_id seen before is dropped as a repeat (the numbers would not move). "
        "Call reset() before each evaluation (an Ignite engine does it at every run).",
        UserWarning,
        stacklevel=stacklevel,
    )


def warn_changed_predictions(detections: Detections, keep: np.ndarray) -> None:
    """Warn (on rank 0) when repeated images (``~keep``) carry other predictions than their first
    occurrence: a second evaluation without ``reset()``, not a padded repeat.

    ``keep`` (bool, (I,)) marks the first occurrence of each ``image_id``.
    """
    changed = changed_repeats(detections, keep)
    if not changed or idist.get_rank() != 0:
        return
    repeats = int((~keep).sum())
    warnings.warn(
        f"{len(changed)} of {repeats} repeated image_ids came with other predictions than the first time "
        f"(image_id {', '.join(str(i) for i in changed[:5])}{', ...' if len(changed) > 5 else ''}); "
        "only the first occurrence of each image_id is counted. A repeat with the same predictions is a "
        "DistributedSampler's padding; other predictions mean a second evaluation: call reset() before each "
        "evaluation.",
        UserWarning,
        stacklevel=4,
    )


def changed_repeats(detections: Detections, keep: np.ndarray) -> list[int]:
    """The image ids of repeated images whose predictions (boxes, scores, labels) differ from the first
    occurrence's, in order of the repeats."""
    ids = detections.image_ids
    first_position = {int(ids[p]): p for p in np.flatnonzero(keep)}
    bounds = np.searchsorted(detections.det_position, np.arange(len(ids) + 1))  # rows are sorted by position
    changed = []
    for position in np.flatnonzero(~keep):
        original = first_position[int(ids[position])]
        if not _same(detections, slice(*bounds[original : original + 2]), slice(*bounds[position : position + 2])):
            changed.append(int(ids[position]))
    return changed


def _same(d: Detections, first: slice, repeat: slice) -> bool:
    if first.stop - first.start != repeat.stop - repeat.start:
        return False
    if not np.array_equal(d.det_labels[first], d.det_labels[repeat]):
        return False
    close = [np.allclose(a[first], a[repeat], rtol=_RTOL, atol=_ATOL) for a in (d.det_boxes, d.det_scores)]
    return all(close)
