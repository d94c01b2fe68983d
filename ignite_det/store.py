"""Compact accumulation of normalised batches: a few growing lists of numpy arrays, no per-box objects."""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
import torch

from ignite_det.inputs import DetectionBatch


@dataclass(frozen=True)
class Detections:
    """Everything one evaluation needs, as flat arrays.

    Images are numbered by *position* (arrival order, 0..I-1); boxes point at their image's
    position, so an image that arrives twice (a padded ``DistributedSampler``) can be told apart
    from its copy and dropped. Rows are sorted by position, and within an image keep the order they
    were given in: COCOeval breaks score ties by it.
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

    @staticmethod
    def empty() -> Detections:
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
        )

    @staticmethod
    def concatenate(parts: list[Detections]) -> Detections:
        """Join evaluations image after image (positions are renumbered)."""
        if not parts:
            return Detections.empty()
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
        )

    def renumbered(self) -> Detections:
        """The same, with image ids 0..I-1 by position (for images that came without an ``image_id``)."""
        return Detections(**{**self.__dict__, "image_ids": np.arange(len(self.image_ids), dtype=np.int64)})

    def to_tensors(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Three flat float64 tensors: images (I, 1), detections (N, 8), ground truths (M, 8).

        float64 holds every value exactly: ids and labels are checked to be below 2**53 at ``update()``.
        This is the form that travels between processes and into checkpoints.
        """
        images = self.image_ids.astype(np.float64).reshape(-1, 1)
        dets = np.column_stack([self.det_boxes, self.det_scores, self.det_labels, self.det_area, self.det_position])
        gts = np.column_stack([self.gt_boxes, self.gt_area, self.gt_labels, self.gt_crowd, self.gt_position])
        return (
            torch.from_numpy(images),
            torch.from_numpy(dets.astype(np.float64).reshape(-1, 8)),
            torch.from_numpy(gts.astype(np.float64).reshape(-1, 8)),
        )

    @staticmethod
    def from_tensors(images: torch.Tensor, dets: torch.Tensor, gts: torch.Tensor) -> Detections:
        """The inverse of :meth:`to_tensors` (tensors on any device)."""
        i, d, g = (
            t.detach().cpu().numpy().astype(np.float64).reshape(-1, w) for t, w in ((images, 1), (dets, 8), (gts, 8))
        )
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
        )


def category_index(labels: np.ndarray, category_ids: np.ndarray) -> np.ndarray:
    """Index of each label in the sorted ``category_ids``, -1 for labels that are not evaluated."""
    if len(category_ids) == 0:
        return np.full(len(labels), -1, dtype=np.int64)
    k = np.minimum(np.searchsorted(category_ids, labels), len(category_ids) - 1)
    return np.where(category_ids[k] == labels, k, -1)


class DetectionStore:
    """Appends batches; images without an ``image_id`` are numbered in arrival order."""

    def __init__(self) -> None:
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
        return Detections.concatenate(parts)

    def state(self) -> dict[str, torch.Tensor]:
        """Everything stored, as tensors only (``torch.load(weights_only=True)`` reads them back)."""
        images, dets, gts = self.collect().to_tensors()
        flag = -1 if self.has_image_ids is None else int(self.has_image_ids)
        return {"images": images, "detections": dets, "ground_truth": gts, "has_image_ids": torch.tensor(flag)}

    @staticmethod
    def from_states(states: list[dict[str, torch.Tensor]]) -> DetectionStore:
        """A store holding the data of one or more :meth:`state` dicts, one after the other.

        Raises:
            ValueError: if a state lacks a key, or the states disagree on whether targets carry ``image_id``.
        """
        store = DetectionStore()
        flags = set()
        for state in states:
            missing = {"images", "detections", "ground_truth", "has_image_ids"} - set(state)
            if missing:
                raise ValueError(f"not a CocoMetric state: missing {sorted(missing)}; got keys {sorted(state)}")
            flags.add(int(state["has_image_ids"]))
            part = Detections.from_tensors(state["images"], state["detections"], state["ground_truth"])
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
        joined = Detections.concatenate(self._parts)
        self._parts = [joined]  # later updates append after it; concatenating again is cheap
        return joined
