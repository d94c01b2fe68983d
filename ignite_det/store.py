"""Compact accumulation of normalised batches: a few growing lists of numpy arrays, no per-box objects."""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
import torch

from ignite_det.inputs import DetectionBatch
from ignite_det.iou.segm import Rles

# Columns of the detection and ground-truth tables before the keypoints (3 per keypoint).
_BASE_COLUMNS = 11


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

    @staticmethod
    def concatenate(parts: list[Detections], num_keypoints: int = 0) -> Detections:
        """Join evaluations image after image (positions are renumbered); ``num_keypoints`` is K
        for an empty list."""
        if not parts:
            return Detections.empty(num_keypoints)
        offsets = np.cumsum([0] + [len(p.image_ids) for p in parts[:-1]])
        joined = {f.name: np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(Detections)}
        joined["det_position"] = np.concatenate([p.det_position + o for p, o in zip(parts, offsets)])
        joined["gt_position"] = np.concatenate([p.gt_position + o for p, o in zip(parts, offsets)])
        return Detections(**joined)

    def image_range(self, start: int, stop: int) -> Detections:
        """The images at positions ``start..stop-1`` with their boxes, renumbered from 0 (rows are sorted
        by position, so this is a slice)."""
        det_lo, det_hi = np.searchsorted(self.det_position, [start, stop])
        gt_lo, gt_hi = np.searchsorted(self.gt_position, [start, stop])
        return Detections(
            **{f.name: getattr(self, f.name)[det_lo:det_hi] for f in fields(Detections) if f.name.startswith("det_")},
            **{f.name: getattr(self, f.name)[gt_lo:gt_hi] for f in fields(Detections) if f.name.startswith("gt_")},
            image_ids=self.image_ids[start:stop],
        ).shifted(-start)

    def shifted(self, shift: int) -> Detections:
        """The same images with every position moved by ``shift``."""
        if shift == 0:
            return self
        return Detections(
            **{**self.__dict__, "det_position": self.det_position + shift, "gt_position": self.gt_position + shift}
        )

    def select_images(self, keep: np.ndarray) -> Detections:
        """Keep the images at positions where ``keep`` (bool, (I,)) is true, with their boxes."""
        if keep.all():
            return self
        new_position = np.cumsum(keep) - 1
        det = keep[self.det_position]
        gt = keep[self.gt_position]
        return Detections(
            image_ids=self.image_ids[keep],
            det_boxes=self.det_boxes[det],
            det_scores=self.det_scores[det],
            det_labels=self.det_labels[det],
            det_area=self.det_area[det],
            det_position=new_position[self.det_position[det]],
            gt_boxes=self.gt_boxes[gt],
            gt_labels=self.gt_labels[gt],
            gt_crowd=self.gt_crowd[gt],
            gt_area=self.gt_area[gt],
            gt_position=new_position[self.gt_position[gt]],
            det_rle=self.det_rle[det],
            det_mask_size=self.det_mask_size[det],
            det_keypoints=self.det_keypoints[det],
            gt_rle=self.gt_rle[gt],
            gt_mask_size=self.gt_mask_size[gt],
            gt_keypoints=self.gt_keypoints[gt],
        )

    @property
    def num_keypoints(self) -> int:
        return self.det_keypoints.shape[1]

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

    def renumbered(self) -> Detections:
        """The same, with image ids 0..I-1 by position (for images that came without an ``image_id``)."""
        return Detections(**{**self.__dict__, "image_ids": np.arange(len(self.image_ids), dtype=np.int64)})

    def to_tensors(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Three flat float64 tensors: images (I, 1), detections (N, 11 + 3K), ground truths (M, 11 + 3K).

        Columns: the box (4), score and label (ground truth: area, label, crowd), area (position),
        position, then the mask's RLE length and size (3), then the keypoints (3K). The RLE bytes go
        in :meth:`rle_tensors`. float64 holds every value exactly: ids and labels are checked to be
        below 2**53 at ``update()``. This is the form that travels between processes and into checkpoints.
        """
        images = self.image_ids.astype(np.float64).reshape(-1, 1)
        width = _BASE_COLUMNS + 3 * self.num_keypoints
        dets = np.column_stack(
            [
                self.det_boxes,
                self.det_scores,
                self.det_labels,
                self.det_area,
                self.det_position,
                self.det_masks().pack()[1].astype(np.float64),
                self.det_mask_size,
                self.det_keypoints.reshape(len(self.det_scores), 3 * self.num_keypoints),
            ]
        )
        gts = np.column_stack(
            [
                self.gt_boxes,
                self.gt_area,
                self.gt_labels,
                self.gt_crowd,
                self.gt_position,
                self.gt_masks().pack()[1].astype(np.float64),
                self.gt_mask_size,
                self.gt_keypoints.reshape(len(self.gt_labels), 3 * self.num_keypoints),
            ]
        )
        return (
            torch.from_numpy(images),
            torch.from_numpy(dets.astype(np.float64).reshape(-1, width)),
            torch.from_numpy(gts.astype(np.float64).reshape(-1, width)),
        )

    def rle_tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The masks' RLE bytes, detections' and ground truths', each one uint8 tensor (B, 1); the
        length of each mask's string is in :meth:`to_tensors`' tables."""
        det, gt = self.det_masks().pack()[0], self.gt_masks().pack()[0]
        return torch.from_numpy(det.copy()).reshape(-1, 1), torch.from_numpy(gt.copy()).reshape(-1, 1)

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
        if width < _BASE_COLUMNS or (width - _BASE_COLUMNS) % 3 or gts.shape[-1] != width:
            raise ValueError(
                f"not a CocoMetric state of this version: tables of {width} and {gts.shape[-1]} columns, "
                f"expected {_BASE_COLUMNS} + 3 per keypoint"
            )
        k = (width - _BASE_COLUMNS) // 3
        i, d, g = (
            t.detach().cpu().numpy().astype(np.float64).reshape(-1, w)
            for t, w in ((images, 1), (dets, width), (gts, width))
        )
        det_masks = _unpack("detections", det_rles, d)
        gt_masks = _unpack("ground truth", gt_rles, g)
        return Detections(
            image_ids=i[:, 0].astype(np.int64),
            det_boxes=d[:, :4].copy(),
            det_scores=d[:, 4].copy(),
            det_labels=d[:, 5].astype(np.int64),
            det_area=d[:, 6].copy(),
            det_position=d[:, 7].astype(np.int64),
            gt_boxes=g[:, :4].copy(),
            gt_area=g[:, 4].copy(),
            gt_labels=g[:, 5].astype(np.int64),
            gt_crowd=g[:, 6].astype(np.int64),
            gt_position=g[:, 7].astype(np.int64),
            det_rle=det_masks.counts,
            det_mask_size=det_masks.sizes,
            det_keypoints=d[:, _BASE_COLUMNS:].reshape(len(d), k, 3).copy(),
            gt_rle=gt_masks.counts,
            gt_mask_size=gt_masks.sizes,
            gt_keypoints=g[:, _BASE_COLUMNS:].reshape(len(g), k, 3).copy(),
        )


def _unpack(name: str, data: torch.Tensor | None, table: np.ndarray) -> Rles:
    """The masks of a table's rows from their RLE bytes (columns 8-10: length, height, width)."""
    lengths = table[:, 8].astype(np.int64)
    raw = np.zeros(0, np.uint8) if data is None else data.detach().cpu().numpy().reshape(-1).astype(np.uint8)
    if int(lengths.sum()) != len(raw):
        raise ValueError(f"the {name}' masks need {int(lengths.sum())} bytes of RLE, got {len(raw)}")
    return Rles.unpack(raw, lengths, table[:, 9:11].astype(np.int64))


def category_index(labels: np.ndarray, category_ids: np.ndarray) -> np.ndarray:
    """Index of each label in the sorted ``category_ids``, -1 for labels that are not evaluated."""
    if len(category_ids) == 0:
        return np.full(len(labels), -1, dtype=np.int64)
    k = np.minimum(np.searchsorted(category_ids, labels), len(category_ids) - 1)
    return np.where(category_ids[k] == labels, k, -1)


class DetectionStore:
    """Appends batches; images without an ``image_id`` are numbered in arrival order."""

    def __init__(self, num_keypoints: int = 0) -> None:
        self.num_keypoints = num_keypoints  # K, the keypoints of each object with iou_type "keypoints"
        self._parts: list[Detections] = []
        self._num_images = 0
        self.has_image_ids: bool | None = None  # decided by the first non-empty batch

    @property
    def num_images(self) -> int:
        return self._num_images

    def check(self, batch: DetectionBatch) -> None:
        """Refuse a batch whose use of ``image_id`` differs from earlier batches (before storing anything)."""
        if batch.num_images == 0 or self.has_image_ids is None:
            return
        if (batch.image_ids is not None) != self.has_image_ids:
            state = "had" if self.has_image_ids else "had no"
            now = "has one" if batch.image_ids is not None else "has none"
            raise ValueError(
                f"y[0] {now} 'image_id', but the targets of earlier batches {state} 'image_id'; "
                "give every target an image_id or none of them (call reset() between evaluations)"
            )

    def append(self, batch: DetectionBatch) -> None:
        if batch.num_images == 0:
            return
        self.check(batch)
        self.has_image_ids = batch.image_ids is not None
        ids = batch.image_ids
        if ids is None:
            ids = np.arange(self._num_images, self._num_images + batch.num_images, dtype=np.int64)
        self._parts.append(
            Detections(
                image_ids=ids,
                det_boxes=batch.det_boxes,
                det_scores=batch.det_scores,
                det_labels=batch.det_labels,
                det_area=batch.det_area,
                det_position=batch.det_image,
                gt_boxes=batch.gt_boxes,
                gt_labels=batch.gt_labels,
                gt_crowd=batch.gt_crowd,
                gt_area=batch.gt_area,
                gt_position=batch.gt_image,
                det_rle=batch.det_rles.counts,
                det_mask_size=batch.det_rles.sizes,
                det_keypoints=batch.det_keypoints,
                gt_rle=batch.gt_rles.counts,
                gt_mask_size=batch.gt_rles.sizes,
                gt_keypoints=batch.gt_keypoints,
            )
        )
        self._num_images += batch.num_images

    def images(self, start: int, stop: int) -> Detections:
        """The images at positions ``start..stop-1`` (arrival order), renumbered from 0."""
        parts, offset = [], 0
        for part in self._parts:
            count = len(part.image_ids)
            if offset < stop and offset + count > start:
                parts.append(part.image_range(max(start - offset, 0), min(stop - offset, count)))
            offset += count
        return Detections.concatenate(parts, self.num_keypoints)

    def state(self) -> dict[str, torch.Tensor]:
        """Everything stored, as tensors only (``torch.load(weights_only=True)`` reads them back)."""
        detections = self.collect()
        images, dets, gts = detections.to_tensors()
        det_rles, gt_rles = detections.rle_tensors()
        flag = -1 if self.has_image_ids is None else int(self.has_image_ids)
        return {
            "images": images,
            "detections": dets,
            "ground_truth": gts,
            "detection_rles": det_rles,
            "ground_truth_rles": gt_rles,
            "has_image_ids": torch.tensor(flag),
        }

    @staticmethod
    def from_states(states: list[dict[str, torch.Tensor]], num_keypoints: int = 0) -> DetectionStore:
        """A store holding the data of one or more :meth:`state` dicts, one after the other.

        Raises:
            ValueError: if a state lacks a key, or the states disagree on whether targets carry ``image_id``
                or on the number of keypoints.
        """
        store = DetectionStore(num_keypoints)
        flags = set()
        for state in states:
            missing = {"images", "detections", "ground_truth", "has_image_ids"} - set(state)
            if missing:
                raise ValueError(f"not a CocoMetric state: missing {sorted(missing)}; got keys {sorted(state)}")
            flags.add(int(state["has_image_ids"]))
            part = Detections.from_tensors(
                state["images"],
                state["detections"],
                state["ground_truth"],
                state.get("detection_rles"),
                state.get("ground_truth_rles"),
            )
            if part.num_keypoints != num_keypoints:
                raise ValueError(
                    f"the saved state holds {part.num_keypoints} keypoints per object, this metric {num_keypoints}"
                )
            if len(part.image_ids):
                store._parts.append(part)
        flags.discard(-1)
        if len(flags) > 1:
            raise ValueError("the saved states disagree: some targets carried 'image_id' and others did not")
        store.has_image_ids = bool(flags.pop()) if flags else None
        joined = store.collect()
        if store.has_image_ids is False:  # arrival numbers restart in every saved state
            joined = joined.renumbered()
            store._parts = [joined]
        store._num_images = len(joined.image_ids)
        return store

    def collect(self) -> Detections:
        joined = Detections.concatenate(self._parts, self.num_keypoints)
        self._parts = [joined]  # later updates append after it; concatenating again is cheap
        return joined
