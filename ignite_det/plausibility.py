"""Inputs that are valid but probably a mistake: each rule says what it saw, in numbers, and what to check.

COCOeval scores these inputs without a word, and the number it gives is wrong for the user's model:

==========================  =====================================================================
mistake                     what gives it away
==========================  =====================================================================
xyxy boxes in a results     more than a tenth of the boxes reach past their image's width or
file                        height (by more than a pixel): ``[x1, y1, x2, y2]`` read as ``[x, y,
                            w, h]`` does that; real xywh boxes (a model's, clipped) do not
xyxy boxes given to         nearly every predicted box (95% of 32 or more) is as wide as its x and as
``CocoMetric`` as xywh      tall as its y, as ``[x1, y1, x2, y2]`` read as ``[x, y, w, h]`` always is,
                            while fewer than half of the ground truth's boxes are (about an eighth of
                            real boxes are: those near the top-left corner, or large)
normalised boxes            every predicted coordinate within [-1, 1] while the ground truth's
                            reach past 2 pixels (a DETR-style model's output, not scaled)
category ids shifted by     most results name a category of their image's ground truth only once
one                         1 is added to (or taken from) their category id, more than twice as
                            many as without the shift, in two categories or more (0-based class
                            indices against COCO's ids)
a swapped ``(y, y_pred)``   ``y_pred[i]`` has no ``scores`` where ``y[i]`` has them
==========================  =====================================================================

No rule changes a number. :class:`~ignite_det.CocoMetric` warns once per evaluation, at ``compute()``,
with :class:`ImplausibleInputWarning`; the command line prints the same sentences on stderr. The swapped
pair is the exception: ``update()`` refuses it anyway (``y_pred`` lacks ``scores``), and this rule only
adds the likely cause to that error.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

from ignite_det.table import category_index

PAST_IMAGE_FRACTION = 0.1  # xywh results from a model reach past the image by rounding at most
PAST_IMAGE_TOLERANCE = 1.0  # pixels beyond the edge a box may reach by rounding
CORNER_FRACTION = 0.95  # xyxy read as xywh: every box has w >= x and h >= y (a few may be degenerate)
CORNER_MIN_BOXES = 32  # fewer boxes could all lie near the top-left corner by chance
CORNER_GROUND_TRUTH = 0.5  # the ground truth's own share must be below this: not a data set of such boxes
NORMALISED_LIMIT = 1.0  # every coordinate of normalised boxes lies within [-1, 1] (cx - w / 2 may be < 0)
PIXEL_EXTENT = 2.0  # ground truth reaching past this is in pixels
SHIFT_MAJORITY = 0.5  # the share of results that must match their image only after the shift
SHIFT_CATEGORIES = 2  # one category alone cannot tell a shift from a wrong class


class ImplausibleInputWarning(UserWarning):
    """An input that COCOeval scores without complaint but that is almost surely a mistake."""


class Objects(NamedTuple):
    """One side's objects: xywh boxes float64 (N, 4), category ids int64 (N,), image index int64 (N,)."""

    boxes: np.ndarray
    labels: np.ndarray
    image: np.ndarray


def check_not_swapped(index: int, prediction: Any, target: Any) -> None:
    """Refuse a ``y_pred[index]`` without ``scores`` next to a ``y[index]`` with them: the pair is swapped.

    Raises:
        ValueError: naming both samples and the fix.

    Example:
        >>> target = {"boxes": [], "scores": [], "labels": []}
        >>> check_not_swapped(0, {"boxes": [], "labels": []}, target)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: y_pred[0] is missing key(s) ['scores'] (it has ['boxes', 'labels']), and y[0] has 'scores': ...
    """
    if not (isinstance(prediction, Mapping) and isinstance(target, Mapping)):
        return
    if "scores" not in prediction and "scores" in target:
        raise ValueError(
            f"y_pred[{index}] is missing key(s) ['scores'] (it has {sorted(prediction)}), and y[{index}] has "
            "'scores': are y_pred and y swapped? update() takes (y_pred, y), the predictions first (check the "
            "engine's output or output_transform)"
        )


def boxes_past_image(boxes: np.ndarray, image_sizes: Sequence[tuple[int, int] | None]) -> str | None:
    """The xyxy warning, when more than a tenth of the boxes reach past their image.

    Args:
        boxes: xywh boxes, float64 (N, 4), as read from a results file.
        image_sizes: (height, width) of each box's image; None where the ground truth does not say.

    Example:
        >>> boxes_past_image(np.array([[300.0, 200.0, 500.0, 400.0]]), [(480, 640)])[:44]
        '1 of 1 boxes extend beyond their image (by m'
    """
    known = np.array([size is not None for size in image_sizes], dtype=bool)
    if not known.any():
        return None
    height, width = np.array([size for size in image_sizes if size is not None], dtype=np.float64).T
    x2, y2 = boxes[known, 0] + boxes[known, 2], boxes[known, 1] + boxes[known, 3]
    past = (x2 > width + PAST_IMAGE_TOLERANCE) | (y2 > height + PAST_IMAGE_TOLERANCE)
    n = int(past.sum())
    if n <= PAST_IMAGE_FRACTION * len(past):
        return None
    return (
        f"{n} of {len(past)} boxes extend beyond their image (by more than {PAST_IMAGE_TOLERANCE:g} pixel past its "
        "width or height): are they [x1, y1, x2, y2]? COCO results are [x, y, w, h]"
    )


def xyxy_as_xywh(det: Objects, gt: Objects) -> str | None:
    """The warning for xyxy boxes given as xywh: nearly every predicted box reaches at least as far from its
    corner as its corner is from the image's (``w >= x`` and ``h >= y``), the ground truth's mostly not.

    Example:
        >>> corners = np.array([[10.0, 20.0, 60.0, 90.0]] * 40)  # [x1, y1, x2, y2] read as [x, y, w, h]
        >>> pixels = Objects(np.array([[300.0, 200.0, 50.0, 70.0]]), np.array([1]), np.array([0]))
        >>> xyxy_as_xywh(Objects(corners, np.ones(40), np.zeros(40)), pixels)[:58]
        '40 of 40 predicted boxes are as wide as their x and as tal'
    """
    if len(det.boxes) < CORNER_MIN_BOXES or len(gt.boxes) == 0:
        return None
    n, det_share = _corner_boxes(det.boxes)
    _, gt_share = _corner_boxes(gt.boxes)
    if det_share < CORNER_FRACTION or gt_share >= CORNER_GROUND_TRUTH:
        return None
    return (
        f"{n} of {len(det.boxes)} predicted boxes are as wide as their x and as tall as their y, against "
        f"{gt_share:.0%} of the ground truth's: are they [x1, y1, x2, y2]? Pass box_format='xyxy' (or convert them "
        "to [x, y, w, h])"
    )


def _corner_boxes(boxes: np.ndarray) -> tuple[int, float]:
    """How many xywh boxes have ``w >= x`` and ``h >= y``, and their share."""
    n = int(np.count_nonzero((boxes[:, 2] >= boxes[:, 0]) & (boxes[:, 3] >= boxes[:, 1])))
    return n, n / len(boxes)


def normalised_boxes(det: Objects, gt: Objects) -> str | None:
    """The warning for predicted boxes all within [-1, 1] while the ground truth's are in pixels.

    Example:
        >>> unit = Objects(np.array([[0.1, 0.2, 0.3, 0.4]]), np.array([1]), np.array([0]))
        >>> pixels = Objects(np.array([[10.0, 20.0, 300.0, 400.0]]), np.array([1]), np.array([0]))
        >>> normalised_boxes(unit, pixels)[:59]
        'every predicted box lies within [-1, 1] (largest coordinate'
    """
    if len(det.boxes) == 0 or len(gt.boxes) == 0:
        return None
    if _extent(det.boxes[:64]) > NORMALISED_LIMIT:  # a few boxes in pixels settle it (the usual case)
        return None
    det_extent, gt_extent = _extent(det.boxes), _extent(gt.boxes)
    if det_extent > NORMALISED_LIMIT or gt_extent <= PIXEL_EXTENT:
        return None
    return (
        f"every predicted box lies within [-1, 1] (largest coordinate {det_extent:.3g}, over {len(det.boxes)} "
        f"boxes) while the ground truth's reach {gt_extent:.6g}: are the predictions normalised? Scale them to "
        "pixels (x by the image's width, y by its height) before evaluating"
    )


def category_shift(det: Objects, gt: Objects) -> str | None:
    """The warning for category ids off by one: most results match their image's ground truth only shifted.

    A result *matches* when its image has a ground truth object of its category.

    Example:
        >>> det = Objects(np.zeros((3, 4)), np.array([0, 2, 4]), np.array([0, 0, 0]))
        >>> gt = Objects(np.zeros((3, 4)), np.array([1, 3, 5]), np.array([0, 0, 0]))
        >>> category_shift(det, gt)[:60]  # 3 results in 3 categories
        '3 of 3 results name a category of their image only once 1 is'
    """
    n = len(det.labels)
    if n == 0 or len(gt.labels) == 0:
        return None
    cells = _GroundTruthCells.create(det, gt)
    as_is, _ = cells.matching(det, 0)
    if 2 * as_is >= n:  # no shift can then match more than twice as many (the common case: skip the passes)
        return None
    for shift in (1, -1):
        shifted, categories = cells.matching(det, shift)
        if shifted > SHIFT_MAJORITY * n and shifted > 2 * as_is and categories >= SHIFT_CATEGORIES:
            added, bases = ("added to", ("0", "1")) if shift > 0 else ("taken from", ("1", "0"))
            return (
                f"{shifted} of {n} results name a category of their image only once 1 is {added} their category "
                f"id ({as_is} without the shift): are the predicted ids {bases[0]}-based where the ground truth's "
                f"start at {bases[1]}? Map the predicted ids to the ground truth's category ids"
            )
    return None


# CocoMetric looks at this many images (its first, in arrival order): a mistake of the model's output shows in
# every image alike, and a COCO-val-sized evaluation would spend a few percent of compute() on the rest.
METRIC_SAMPLE_IMAGES = 500


def warn_implausible(detections: Any) -> None:
    """Warn (:class:`ImplausibleInputWarning`) about normalised boxes, xyxy boxes given as xywh and shifted
    category ids in one evaluation's ``Detections`` (its first :data:`METRIC_SAMPLE_IMAGES` images); called by
    ``CocoMetric.compute()`` on rank 0, with rank 0's own images (under distribution the other processes'
    boxes stay where they are; a mistake of the model's output shows on every process alike)."""
    import ignite.distributed as idist

    if idist.get_rank() != 0:
        return
    if detections.num_images > METRIC_SAMPLE_IMAGES:
        detections = detections.image_range(0, METRIC_SAMPLE_IMAGES)
    det = Objects(detections.det_boxes, detections.det_labels, detections.det_position)
    gt = Objects(detections.gt_boxes, detections.gt_labels, detections.gt_position)
    for message in (normalised_boxes(det, gt), xyxy_as_xywh(det, gt), category_shift(det, gt)):
        if message is not None:
            warnings.warn(f"CocoMetric: {message}", ImplausibleInputWarning, stacklevel=3)


def results_warnings(name: str, det: Objects, gt: Objects, image_sizes: Sequence[tuple[int, int] | None]) -> list[str]:
    """Every rule's warning about a results file, each beginning with ``name``: the command line's hook.

    Args:
        name: the results file, to begin each message.
        det: the results' boxes, category ids and image index (into ``image_sizes``), every result.
        gt: the ground truth's, on the same image index.
        image_sizes: (height, width) of each image; None where unknown.
    """
    found = (
        boxes_past_image(det.boxes, [image_sizes[i] for i in det.image.tolist()]),
        normalised_boxes(det, gt),
        category_shift(det, gt),
    )
    return [f"{name}: {message}" for message in found if message is not None]


def _extent(boxes: np.ndarray) -> float:
    """The largest magnitude of any corner coordinate of xywh boxes."""
    corners = (boxes[:, :2], boxes[:, :2] + boxes[:, 2:])
    # max |v| as max(max v, -min v): no array of magnitudes (+ 0.0 turns -0.0 into 0.0, as abs would)
    return max(max(float(c.max()), -float(c.min())) for c in corners) + 0.0


class _GroundTruthCells(NamedTuple):
    """The (image, category) cells holding ground truth, as keys ``image * (K + 1) + k + 1`` with ``k``
    the category's index among the K sorted ``categories`` (ids reach 2**53, so no key of the ids
    themselves would fit in 64 bits); ``k + 1`` is 0 for a category without ground truth, never a cell."""

    categories: np.ndarray
    keys: np.ndarray  # sorted, unique
    det_base: np.ndarray  # image * (K + 1) + 1 of each detection

    @staticmethod
    def create(det: Objects, gt: Objects) -> _GroundTruthCells:
        categories = np.unique(gt.labels)
        width = len(categories) + 1
        keys = gt.image.astype(np.int64) * width + np.searchsorted(categories, gt.labels) + 1
        return _GroundTruthCells(categories, np.unique(keys), det.image.astype(np.int64) * width + 1)

    def matching(self, det: Objects, shift: int) -> tuple[int, int]:
        """How many detections, their category id shifted by ``shift``, name a category of their image,
        and how many distinct categories they name."""
        k = category_index(det.labels + shift if shift else det.labels, self.categories)
        matched = _members(self.keys, self.det_base + k)
        return int(np.count_nonzero(matched)), int(
            np.count_nonzero(np.bincount(k[matched], minlength=len(self.categories)))
        )


# Up to this many possible keys, membership is looked up in a table of flags rather than by binary search
# (a binary search into a large sorted array misses the cache at every step: several times slower).
_TABLE_LIMIT = 2**26


def _members(keys: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """bool per query: is it one of ``keys`` (sorted, unique, non-negative, like the queries)?"""
    size = int(max(keys.max(initial=-1), queries.max(initial=-1))) + 1
    if size <= _TABLE_LIMIT:
        table = np.zeros(size, dtype=bool)
        table[keys] = True
        return table[queries]
    return keys[np.minimum(np.searchsorted(keys, queries), len(keys) - 1)] == queries
