"""Per-image results: COCOeval's true positives, false positives and misses, image by image.

One row per image, in image-id order, counted from the same per-detection outcomes as the AP
(area "all", the largest ``max_detections``, summed over the evaluated categories), so that
``tp50.sum()`` over the rows is the number of true positives COCOeval's ``evalImgs`` hold at IoU 0.5:

============  ===================================================================================
``num_gt``    ground truths COCOeval does not ignore (not crowd; with keypoints, a labelled point)
``num_det``   detections kept after the ``max_detections`` cut, per (image, category)
``tp50``      detections matched to a non-ignored ground truth at IoU 0.5
``fp50``      detections neither matched nor ignored at IoU 0.5
``fn50``      non-ignored ground truths left unmatched at IoU 0.5: ``num_gt - tp50``
``tp75`` ...  the same at IoU 0.75
``Cls`` ...   with ``CocoMetric(error_analysis=...)``: how many errors of each of TIDE's bins the image
              holds (``Cls, Loc, Both, Dupe, Bkg`` false positives and ``Miss`` ground truths, see
              :mod:`ignite_det.error_analysis`); without it these six columns are absent
============  ===================================================================================

When 0.5 (or 0.75) is not among the ``iou_thresholds``, its three columns are -1 (undefined, as
COCOeval marks what it did not compute), rather than counts from a matching the evaluation never ran.

There is no per-image AP: AP ranks detections across the whole data set, and one image's
precision-recall curve is undefined without ground truth and degenerate with one object. The
counts are what an image contributes to the data set's AP, and :meth:`PerImage.worst_first` sorts
by them.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from ignite_det.error_analysis.analysis import MAIN_ERRORS, ErrorAnalysis
from ignite_det.params import EvalParams
from ignite_det.table import Detections

# The columns of a row, in order: the keys of each row of the JSON report.
PER_IMAGE_COLUMNS = ("image_id", "num_gt", "num_det", "tp50", "fp50", "fn50", "tp75", "fp75", "fn75")


@dataclass(frozen=True)
class PerImage:
    """The per-image rows as int64 columns (I,), images in ascending ``image_id``; see the module docstring.

    ``bins``: with error analysis, int64 (I, 6) the count of each of :data:`MAIN_ERRORS` per image (the
    columns after the nine), else None.

    Example:
        >>> rows = PerImage.from_table(np.array([[7, 2, 3, 1, 2, 1, 0, 3, 2], [9, 1, 1, 1, 0, 0, 1, 0, 0]]))
        >>> rows.worst_first().image_id.tolist()       # image 7: 3 errors at IoU 0.5
        [7, 9]
        >>> rows.rows()[1]["tp50"]
        1
    """

    image_id: np.ndarray
    num_gt: np.ndarray
    num_det: np.ndarray
    tp50: np.ndarray
    fp50: np.ndarray
    fn50: np.ndarray
    tp75: np.ndarray
    fp75: np.ndarray
    fn75: np.ndarray
    bins: np.ndarray | None = None

    @staticmethod
    def from_table(table: np.ndarray, bins: np.ndarray | None = None) -> PerImage:
        """From an (I, 9) array with the :data:`PER_IMAGE_COLUMNS` in order (as it is broadcast), and the
        (I, 6) bin counts if any."""
        table = np.asarray(table).astype(np.int64).reshape(-1, len(PER_IMAGE_COLUMNS))
        if bins is not None:
            bins = np.asarray(bins).astype(np.int64).reshape(len(table), len(MAIN_ERRORS))
        return PerImage(**{name: table[:, i].copy() for i, name in enumerate(PER_IMAGE_COLUMNS)}, bins=bins)

    def with_errors(self, errors: ErrorAnalysis) -> PerImage:
        """The same rows with the count of each bin of ``errors`` (its per-detection rows) per image."""
        images, width = len(self.image_id), len(MAIN_ERRORS)
        fp, missed = errors.false_positives, errors.missed
        cells = np.r_[
            np.searchsorted(self.image_id, fp.image_id) * width + fp.error,
            np.searchsorted(self.image_id, missed.image_id) * width + MAIN_ERRORS.index("Miss"),
        ]
        bins = np.bincount(cells.astype(np.int64), minlength=images * width).reshape(images, width)
        return PerImage(**{name: getattr(self, name) for name in PER_IMAGE_COLUMNS}, bins=bins)

    @property
    def columns(self) -> tuple[str, ...]:
        """The keys of a row: :data:`PER_IMAGE_COLUMNS`, then :data:`MAIN_ERRORS` with error analysis."""
        return PER_IMAGE_COLUMNS if self.bins is None else PER_IMAGE_COLUMNS + MAIN_ERRORS

    def table(self) -> np.ndarray:
        """The (I, 9) int64 array of the columns, in :data:`PER_IMAGE_COLUMNS` order ((I, 15) with the bins)."""
        table = np.stack([getattr(self, name) for name in PER_IMAGE_COLUMNS], axis=1).reshape(-1, 9)
        return table if self.bins is None else np.concatenate([table, self.bins], axis=1)

    def __len__(self) -> int:
        return len(self.image_id)

    def __iter__(self) -> Iterator[dict[str, int]]:
        return iter(self.rows())

    def rows(self) -> list[dict[str, int]]:
        """One plain dict per image, keys :attr:`columns` (JSON-ready)."""
        return [dict(zip(self.columns, row)) for row in self.table().tolist()]

    def select(self, order: np.ndarray) -> PerImage:
        """The rows at ``order`` (indices or a boolean mask), in that order."""
        bins = None if self.bins is None else self.bins[order]
        return PerImage(**{name: getattr(self, name)[order] for name in PER_IMAGE_COLUMNS}, bins=bins)

    def worst_first(self) -> PerImage:
        """The rows sorted worst first: most errors (``fp50 + fn50``) first, then most misses
        (``fn50``: a missed object costs recall, which no score threshold wins back), then most errors
        at IoU 0.75 (poor localisation), then ascending ``image_id``.

        Errors are counted rather than rated (an error rate would put an image with one false positive and
        no ground truth beside one with a hundred), so the images that cost the most AP come first.
        """
        keys = (self.image_id, -(self.fp75 + self.fn75), -self.fn50, -(self.fp50 + self.fn50))
        return self.select(np.lexsort(keys))

    def text(self, limit: int | None = None) -> str:
        """A fixed-width table of the rows (the first ``limit`` of them), one line per image.

        Example:
            >>> print(PerImage.from_table(np.array([[7, 2, 3, 1, 2, 1, 0, 3, 2]])).text())
              image_id  num_gt num_det    tp50    fp50    fn50    tp75    fp75    fn75
                     7       2       3       1       2       1       0       3       2
        """
        widths = [10] + [7] * (len(self.columns) - 1)
        lines = [" ".join(f"{name:>{w}}" for name, w in zip(self.columns, widths))]
        for row in self.table()[:limit].tolist():
            lines.append(" ".join(f"{value:>{w}}" for value, w in zip(row, widths)))
        return "\n".join(lines)


def per_image_table(
    d: Detections, outcomes: np.ndarray, kept: np.ndarray, det_k: np.ndarray, params: EvalParams
) -> np.ndarray:
    """The (I, 9) float64 rows of :class:`PerImage` (float64: it is broadcast with the other arrays).

    ``outcomes``: int8 (T, N) each detection's outcome at every IoU threshold, area "all" (1 true
    positive, 0 false positive, -1 not counted); ``kept``: bool (N,) ranked within
    ``max_detections[-1]`` in its cell; ``det_k``: category index, -1 not evaluated.
    """
    order = np.argsort(d.image_ids, kind="stable")
    images = len(d.image_ids)
    lo, hi = params.area_ranges[0]
    counted_gt = ~d.gt_ignored() & (d.gt_area >= lo) & (d.gt_area <= hi)  # cocoeval.py:251, area "all"
    num_gt = np.bincount(d.gt_position[counted_gt], minlength=images)
    evaluated = det_k >= 0
    columns = [d.image_ids, num_gt, _per_position(d, kept & evaluated, images)]
    for iou in (0.5, 0.75):
        t = params.iou_index(iou)
        if t is None:
            columns += [np.full(images, -1)] * 3
            continue
        tp = _per_position(d, evaluated & (outcomes[t] == 1), images)
        columns += [tp, _per_position(d, evaluated & (outcomes[t] == 0), images), num_gt - tp]
    return np.stack(columns, axis=1)[order].astype(np.float64)


def _per_position(d: Detections, rows: np.ndarray, images: int) -> np.ndarray:
    """How many of the detections where ``rows`` is true each image position holds."""
    return np.bincount(d.det_position[rows], minlength=images)
