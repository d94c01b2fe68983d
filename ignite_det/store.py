"""Compact accumulation of normalised batches: one growing array per field, no per-box objects."""

from __future__ import annotations

import torch

from ignite_det.growing import GrowingArray
from ignite_det.table import DETECTION_ARRAYS, Detections


class DetectionStore:
    """Appends batches; images without an ``image_id`` are numbered in arrival order.

    Every array of :class:`~ignite_det.table.Detections` grows in place (:class:`~ignite_det.growing.GrowingArray`),
    positions counted from the first image: :meth:`collect` and :meth:`images` are views, not copies.
    """

    def __init__(self, num_keypoints: int = 0) -> None:
        self.num_keypoints = num_keypoints  # K, the keypoints of each object with iou_type "keypoints"
        self._arrays: dict[str, GrowingArray] | None = None  # by Detections field, from the first batch
        self._num_images = 0
        self.has_image_ids: bool | None = None  # decided by the first non-empty batch

    @property
    def num_images(self) -> int:
        return self._num_images

    def check(self, batch: Detections) -> None:
        """Refuse a batch whose use of ``image_id`` differs from earlier batches (before storing anything)."""
        if batch.num_images == 0 or self.has_image_ids is None:
            return
        if batch.numbered == self.has_image_ids:
            state = "had" if self.has_image_ids else "had no"
            now = "has none" if batch.numbered else "has one"
            raise ValueError(
                f"y[0] {now} 'image_id', but the targets of earlier batches {state} 'image_id'; "
                "give every target an image_id or none of them (call reset() between evaluations)"
            )

    def append(self, batch: Detections) -> None:
        """Add a batch from :func:`~ignite_det.inputs.normalize_batch`; numbered images continue the numbering."""
        if batch.num_images == 0:
            return
        self.check(batch)
        self.has_image_ids = not batch.numbered
        self._append(batch, renumber=batch.numbered)

    def _append(self, part: Detections, renumber: bool) -> None:
        """Copy ``part``'s rows after those held, its positions moved after the images held; with ``renumber``,
        its image ids are arrival numbers that continue the store's."""
        if renumber:
            part = part.renumbered(self._num_images)
        if self._arrays is None:
            self._arrays = {name: GrowingArray.like(getattr(part, name)) for name in DETECTION_ARRAYS}
        for name, array in self._arrays.items():
            values = getattr(part, name)
            array.append(values + self._num_images if name in ("det_position", "gt_position") else values)
        self._num_images += part.num_images

    def images(self, start: int, stop: int) -> Detections:
        """The images at positions ``start..stop-1`` (arrival order), renumbered from 0."""
        return self.collect().image_range(start, stop)

    def collect(self) -> Detections:
        """Everything stored (views: no copy)."""
        if self._arrays is None:
            return Detections.empty(self.num_keypoints)
        return Detections(
            **{name: array.values for name, array in self._arrays.items()}, numbered=self.has_image_ids is False
        )

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
        parts = []
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
            parts.append(part)
        flags.discard(-1)
        if len(flags) > 1:
            raise ValueError("the saved states disagree: some targets carried 'image_id' and others did not")
        store.has_image_ids = bool(flags.pop()) if flags else None
        for part in parts:
            if len(part.image_ids):  # arrival numbers restart in every saved state: they continue here
                store._append(part, renumber=store.has_image_ids is False)
        return store
