"""The canonical record: detections and ground truth of some images as flat arrays, with named columns.

:func:`~ignite_det.inputs.normalize_batch` makes one :class:`Detections` per ``update()``; the store
joins them; the backends, the gather, the operating point and the confusion matrix all read the same
record. When it travels (between processes, into a checkpoint) it becomes three float64 tables, whose
columns are named in :data:`DETECTION_COLUMNS` and :data:`GROUND_TRUTH_COLUMNS`:

=================  =====  ==========================  =====  =========================================
detection column   width  ground-truth column         width  meaning
=================  =====  ==========================  =====  =========================================
``boxes``          4      ``boxes``                   4      xywh
``scores``         1      ``area``                    1      the score; the ground truth's ``area``
``labels``         1      ``labels``                  1      the category id
``area``           1      ``crowd``                   1      the area for area ranges; ``iscrowd``
``position``       1      ``position``                1      the image's place in arrival order
``rle_length``     1      ``rle_length``              1      bytes of the mask's RLE (segm)
``mask_size``      2      ``mask_size``               2      (height, width) of the mask (segm)
``keypoints``      3K     ``keypoints``               3K     x, y, v of each keypoint (keypoints)
=================  =====  ==========================  =====  =========================================

The order is that of the checkpoints written so far, so they still load.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import torch

from ignite_det.rle import Rles


@dataclass(frozen=True)
class Columns:
    """The named columns of a float64 table, in order, then 3 per keypoint (``keypoints``, last)."""

    widths: dict[str, int]

    @property
    def fixed_width(self) -> int:
        """The width before the keypoints."""
        return sum(self.widths.values())

    def num_keypoints(self, width: int) -> int | None:
        """K for a table ``width`` columns wide; None if no K fits."""
        extra = width - self.fixed_width
        return extra // 3 if extra >= 0 and extra % 3 == 0 else None

    def pack(self, values: dict[str, np.ndarray], keypoints: np.ndarray) -> np.ndarray:
        """(rows, width) float64 from each column's values (any shape with the column's width per row)."""
        rows = len(keypoints)
        parts = [np.asarray(values[name], np.float64).reshape(rows, w) for name, w in self.widths.items()]
        return np.concatenate([*parts, keypoints.reshape(rows, 3 * keypoints.shape[1]).astype(np.float64)], axis=1)

    def unpack(self, table: np.ndarray) -> dict[str, np.ndarray]:
        """Each column of ``table`` by name: width-1 columns as (rows,), the others (rows, width),
        ``keypoints`` as (rows, K, 3)."""
        values, start = {}, 0
        for name, width in self.widths.items():
            column = table[:, start : start + width]
            values[name] = column[:, 0].copy() if width == 1 else column.copy()
            start += width
        values["keypoints"] = table[:, start:].reshape(len(table), (table.shape[1] - start) // 3, 3).copy()
        return values


DETECTION_COLUMNS = Columns(
    {"boxes": 4, "scores": 1, "labels": 1, "area": 1, "position": 1, "rle_length": 1, "mask_size": 2}
)
GROUND_TRUTH_COLUMNS = Columns(
    {"boxes": 4, "area": 1, "labels": 1, "crowd": 1, "position": 1, "rle_length": 1, "mask_size": 2}
)
# What the native engine's accumulation reads of a detection, once its own process has matched it: under
# distribution the rest of a detection (its geometry) can stay on that process.
SCORED_COLUMNS = Columns({"scores": 1, "labels": 1, "position": 1})


@dataclass(frozen=True)
class Detections:
    """Everything one evaluation needs, as flat arrays.

    Images are numbered by *position* (arrival order, 0..I-1); boxes point at their image's
    position, so an image that arrives twice (a padded ``DistributedSampler``) can be told apart
    from its copy and dropped. Rows are sorted by position, and within an image keep the order they
    were given in: COCOeval breaks score ties by it.

    Every row holds the fields of every IoU type: with ``"segm"`` the mask (its compressed RLE
    ``counts`` and its image's size), with ``"keypoints"`` the K points; the other types' rows
    hold ``b""``, a size of 0 x 0 and K = 0. So slicing, selecting and joining treat all types alike.

    ``numbered``: the images came without an ``image_id``, and ``image_ids`` are arrival numbers.
    """

    image_ids: np.ndarray  # int64 (I,)  the image_id at each position
    det_boxes: np.ndarray  # float64 (N, 4) xywh
    det_scores: np.ndarray  # float64 (N,)
    det_labels: np.ndarray  # int64 (N,)
    det_area: np.ndarray  # float64 (N,) for area ranges: the box area unless the prediction gave one
    det_position: np.ndarray  # int64 (N,)
    gt_boxes: np.ndarray  # float64 (M, 4) xywh
    gt_labels: np.ndarray  # int64 (M,)
    gt_crowd: np.ndarray  # int64 (M,)
    gt_area: np.ndarray  # float64 (M,)
    gt_position: np.ndarray  # int64 (M,)
    det_rle: np.ndarray  # object (N,): bytes, the compressed RLE counts of the mask (segm)
    det_mask_size: np.ndarray  # int64 (N, 2): (height, width) of the mask
    det_keypoints: np.ndarray  # float64 (N, K, 3)
    gt_rle: np.ndarray  # object (M,)
    gt_mask_size: np.ndarray  # int64 (M, 2)
    gt_keypoints: np.ndarray  # float64 (M, K, 3)
    numbered: bool = False

    @staticmethod
    def empty(num_keypoints: int = 0) -> Detections:
        return Detections(
            image_ids=np.zeros(0, np.int64),
            det_boxes=np.zeros((0, 4)),
            det_scores=np.zeros(0),
            det_labels=np.zeros(0, np.int64),
            det_area=np.zeros(0),
            det_position=np.zeros(0, np.int64),
            gt_boxes=np.zeros((0, 4)),
            gt_labels=np.zeros(0, np.int64),
            gt_crowd=np.zeros(0, np.int64),
            gt_area=np.zeros(0),
            gt_position=np.zeros(0, np.int64),
            det_rle=Rles.empty().counts,
            det_mask_size=np.zeros((0, 2), np.int64),
            det_keypoints=np.zeros((0, num_keypoints, 3)),
            gt_rle=Rles.empty().counts,
            gt_mask_size=np.zeros((0, 2), np.int64),
            gt_keypoints=np.zeros((0, num_keypoints, 3)),
        )

    @property
    def num_images(self) -> int:
        return len(self.image_ids)

    @property
    def num_keypoints(self) -> int:
        return self.det_keypoints.shape[1]

    @staticmethod
    def concatenate(parts: list[Detections], num_keypoints: int = 0) -> Detections:
        """Join evaluations image after image (positions are renumbered); ``num_keypoints`` is K
        for an empty list."""
        if not parts:
            return Detections.empty(num_keypoints)
        if len(parts) == 1:
            return parts[0]
        offsets = np.cumsum([0] + [len(p.image_ids) for p in parts[:-1]])
        joined: dict[str, Any] = {name: np.concatenate([getattr(p, name) for p in parts]) for name in DETECTION_ARRAYS}
        joined["det_position"] = np.concatenate([p.det_position + o for p, o in zip(parts, offsets)])
        joined["gt_position"] = np.concatenate([p.gt_position + o for p, o in zip(parts, offsets)])
        return Detections(**joined, numbered=all(p.numbered for p in parts))

    def image_range(self, start: int, stop: int) -> Detections:
        """The images at positions ``start..stop-1`` with their boxes, renumbered from 0 (rows are sorted
        by position, so this is a slice)."""
        det = slice(*np.searchsorted(self.det_position, [start, stop]))
        gt = slice(*np.searchsorted(self.gt_position, [start, stop]))
        return self._rows(slice(start, stop), det, gt, -start)

    def select_images(self, keep: np.ndarray) -> Detections:
        """Keep the images at positions where ``keep`` (bool, (I,)) is true, with their boxes."""
        if keep.all():
            return self
        new_position = np.cumsum(keep) - 1
        selected = self._rows(keep, keep[self.det_position], keep[self.gt_position], 0)
        return Detections(
            **{
                **selected.__dict__,
                "det_position": new_position[selected.det_position],
                "gt_position": new_position[selected.gt_position],
            }
        )

    def reorder_images(self, order: np.ndarray) -> Detections:
        """The same images at new positions: ``order[i]`` is the position of the image that goes to position ``i``;
        each image's rows keep their order (a stable sort), as COCOeval's and tidecv's ties need."""
        if np.array_equal(order, np.arange(len(order))):
            return self
        new_position = np.empty(len(order), dtype=np.int64)
        new_position[order] = np.arange(len(order))
        det = np.argsort(new_position[self.det_position], kind="stable")
        gt = np.argsort(new_position[self.gt_position], kind="stable")
        rows = self._rows(order, det, gt, 0)
        return Detections(
            **{
                **rows.__dict__,
                "det_position": new_position[rows.det_position],
                "gt_position": new_position[rows.gt_position],
            }
        )

    def _rows(self, images: Any, det: Any, gt: Any, shift: int) -> Detections:
        """Some images, detection rows and ground-truth rows (slices or masks), positions moved by ``shift``."""
        rows = {name: getattr(self, name)[det if name.startswith("det_") else gt] for name in DETECTION_ARRAYS[1:]}
        rows["det_position"] = rows["det_position"] + shift
        rows["gt_position"] = rows["gt_position"] + shift
        return Detections(image_ids=self.image_ids[images], **rows, numbered=self.numbered)

    def det_masks(self, rows: np.ndarray | slice = slice(None)) -> Rles:
        """The masks of the detections at ``rows`` (segm)."""
        return Rles(self.det_rle[rows], self.det_mask_size[rows])

    def gt_masks(self, rows: np.ndarray | slice = slice(None)) -> Rles:
        """The masks of the ground truths at ``rows`` (segm)."""
        return Rles(self.gt_rle[rows], self.gt_mask_size[rows])

    def gt_ignored(self) -> np.ndarray:
        """bool (M,): ground truths COCOeval ignores whatever the area range: crowd regions, and with
        keypoints, people without a labelled point (``num_keypoints == 0``, ``_prepare``)."""
        ignored = self.gt_crowd != 0
        if self.num_keypoints:
            ignored |= ~(self.gt_keypoints[:, :, 2] > 0).any(axis=1)
        return ignored

    def renumbered(self, start: int = 0) -> Detections:
        """The same, with image ids ``start, start + 1, ...`` by position (images that came without an
        ``image_id``)."""
        ids = np.arange(start, start + len(self.image_ids), dtype=np.int64)
        return Detections(**{**self.__dict__, "image_ids": ids, "numbered": True})

    def to_tensors(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Three flat float64 tensors: images (I, 1), detections (N, 11 + 3K) and ground truths
        (M, 11 + 3K), with the columns of :data:`DETECTION_COLUMNS` and :data:`GROUND_TRUTH_COLUMNS`.

        The RLE bytes go in :meth:`rle_tensors`. float64 holds every value exactly: ids and labels are
        checked to be below 2**53 at ``update()``. This is the form that travels between processes and
        into checkpoints.
        """
        dets = DETECTION_COLUMNS.pack(
            {**self._side("det_"), "rle_length": self.det_masks().pack()[1]}, self.det_keypoints
        )
        return self._image_table(), torch.from_numpy(dets), self._ground_truth_table()

    def scored_tensors(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """:meth:`to_tensors` with the detections' columns cut to :data:`SCORED_COLUMNS`, (N, 3): a quarter
        of the bytes, for a gather whose receiver only ranks and counts the detections."""
        scored = SCORED_COLUMNS.pack(self._side("det_"), np.zeros((len(self.det_scores), 0, 3)))
        return self._image_table(), torch.from_numpy(scored), self._ground_truth_table()

    def _image_table(self) -> torch.Tensor:
        return torch.from_numpy(self.image_ids.astype(np.float64).reshape(-1, 1))

    def _ground_truth_table(self) -> torch.Tensor:
        values = {**self._side("gt_"), "rle_length": self.gt_masks().pack()[1]}
        return torch.from_numpy(GROUND_TRUTH_COLUMNS.pack(values, self.gt_keypoints))

    def _side(self, prefix: str) -> dict[str, np.ndarray]:
        """The detections' (``det_``) or ground truths' (``gt_``) arrays, by column name."""
        return {name[len(prefix) :]: getattr(self, name) for name in DETECTION_ARRAYS if name.startswith(prefix)}

    def rle_tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The masks' RLE bytes, detections' and ground truths', each one uint8 tensor (B, 1); the
        length of each mask's string is in :meth:`to_tensors`' tables."""
        det, gt = self.det_masks().pack()[0], self.gt_masks().pack()[0]
        return torch.from_numpy(det.copy()).reshape(-1, 1), torch.from_numpy(gt.copy()).reshape(-1, 1)

    @staticmethod
    def from_scored_tensors(
        images: torch.Tensor, scored: torch.Tensor, gts: torch.Tensor, gt_rles: torch.Tensor | None = None
    ) -> Detections:
        """The inverse of :meth:`scored_tensors`: every ground truth field, and of the detections their
        scores, labels and positions. The detections' geometry is not there: their boxes have width 0 (an
        IoU of them raises rather than giving a number), their areas and keypoints are NaN, their masks empty.
        """
        no_detections = torch.zeros((0, gts.shape[-1]), dtype=torch.float64)
        full = Detections.from_tensors(images, no_detections, gts, None, gt_rles)
        columns = SCORED_COLUMNS.unpack(scored.detach().cpu().numpy().astype(np.float64, copy=False).reshape(-1, 3))
        rows = len(columns["scores"])
        no_masks = Rles.empty(rows)  # the placeholders are read-only broadcasts: no memory, no time
        return Detections(
            **{
                **full.__dict__,
                "det_boxes": np.zeros((rows, 0)),
                "det_scores": columns["scores"],
                "det_labels": columns["labels"].astype(np.int64),
                "det_area": np.broadcast_to(np.nan, (rows,)),
                "det_position": columns["position"].astype(np.int64),
                "det_rle": no_masks.counts,
                "det_mask_size": no_masks.sizes,
                "det_keypoints": np.broadcast_to(np.nan, (rows, full.num_keypoints, 3)),
            }
        )

    @staticmethod
    def from_tensors(
        images: torch.Tensor,
        dets: torch.Tensor,
        gts: torch.Tensor,
        det_rles: torch.Tensor | None = None,
        gt_rles: torch.Tensor | None = None,
    ) -> Detections:
        """The inverse of :meth:`to_tensors` and :meth:`rle_tensors` (tensors on any device).

        Raises:
            ValueError: if the tables' widths are not this version's, or their RLE lengths do not add up
                to the RLE bytes given.
        """
        width = dets.shape[-1]
        if DETECTION_COLUMNS.num_keypoints(width) is None or gts.shape[-1] != width:
            raise ValueError(
                f"not a CocoMetric state of this version: tables of {width} and {gts.shape[-1]} columns, "
                f"expected {DETECTION_COLUMNS.fixed_width} + 3 per keypoint"
            )
        i, d, g = (  # no copy of a float64 table: unpack copies each column anyway
            t.detach().cpu().numpy().astype(np.float64, copy=False).reshape(-1, w)
            for t, w in ((images, 1), (dets, width), (gts, width))
        )
        det = _typed("detections", DETECTION_COLUMNS.unpack(d), det_rles)
        gt = _typed("ground truth", GROUND_TRUTH_COLUMNS.unpack(g), gt_rles)
        return Detections(
            image_ids=i[:, 0].astype(np.int64),
            **{f"det_{name}": value for name, value in det.items()},
            **{f"gt_{name}": value for name, value in gt.items()},
        )


# The array fields, image_ids first: what slicing, selecting, joining and the store carry.
DETECTION_ARRAYS = tuple(f.name for f in fields(Detections) if f.name != "numbered")
# Columns held as integers in the record (the tables hold them as float64).
_INTEGER_COLUMNS = ("labels", "crowd", "position")


def _typed(name: str, columns: dict[str, np.ndarray], rle_bytes: torch.Tensor | None) -> dict[str, Any]:
    """A table's columns as the record's fields: integer columns as int64, the masks from their RLE bytes
    (each row's ``rle_length`` of them) and ``mask_size``.

    Raises:
        ValueError: if the lengths do not add up to the bytes given.
    """
    lengths = columns.pop("rle_length").astype(np.int64)
    raw = np.zeros(0, np.uint8) if rle_bytes is None else rle_bytes.detach().cpu().numpy().reshape(-1).astype(np.uint8)
    if int(lengths.sum()) != len(raw):
        raise ValueError(f"the {name}' masks need {int(lengths.sum())} bytes of RLE, got {len(raw)}")
    masks = Rles.unpack(raw, lengths, columns["mask_size"].astype(np.int64))
    typed = {key: value.astype(np.int64) if key in _INTEGER_COLUMNS else value for key, value in columns.items()}
    return {**typed, "rle": masks.counts, "mask_size": masks.sizes}


# Category ids spanning at most this many values are looked up in a table rather than by binary search
# (a table lookup is some 30 times faster on 500,000 labels).
_LOOKUP_SPAN = 2**22


def category_index(labels: np.ndarray, category_ids: np.ndarray) -> np.ndarray:
    """Index of each label in the sorted ``category_ids``, -1 for labels that are not evaluated.

    Example:
        >>> category_index(np.array([3, 1, 2, 7]), np.array([1, 3, 7])).tolist()
        [1, 0, -1, 2]
    """
    if len(category_ids) == 0:
        return np.full(len(labels), -1, dtype=np.int64)
    low, span = int(category_ids[0]), int(category_ids[-1]) - int(category_ids[0]) + 1
    if span <= _LOOKUP_SPAN:  # ids and labels are below 2**53 in magnitude: no overflow
        table = np.full(span + 2, -1, dtype=np.int64)  # the first and last entries answer labels out of range
        table[category_ids - (low - 1)] = np.arange(len(category_ids))
        offset = labels if low == 1 else np.subtract(labels, low - 1, dtype=np.int64)
        return np.take(table, offset, mode="clip")  # out of range: clipped to the first or last entry
    k = np.minimum(np.searchsorted(category_ids, labels), len(category_ids) - 1)
    return np.where(category_ids[k] == labels, k, -1)
