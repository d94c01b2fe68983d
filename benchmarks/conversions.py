"""From the per-image torch tensors a model emits to each evaluator's own input, one batch at a time.

Two forms, both fed batch by batch as a training loop would feed them:

- :class:`CocoDicts`: the COCO dicts every recipe takes (a ``COCO`` dataset and the list ``loadRes``
  takes), one Python dict per image, annotation and detection;
- :class:`Columns`: numpy columns (image id, category id, xywh box, area, crowd flag, score), what
  the array paths take: hotcoco's ``COCO.from_arrays`` and ``loadRes(ndarray)``,
  ultrafast-pycocotools' ``loadRes(ndarray)``, vernier's ``CocoDataset.from_arrays`` and its
  detection matrix.

Both turn xyxy boxes into COCO's xywh in float64 the same way, so every method sees the same numbers.
"""

from __future__ import annotations

import numpy as np
import torch


def to_xywh(xyxy: np.ndarray) -> np.ndarray:
    """COCO ``[x, y, w, h]`` in float64 from ``[x1, y1, x2, y2]``."""
    out = xyxy.astype(np.float64).copy()
    out[:, 2:] -= out[:, :2]
    return out


def categories(num_classes: int) -> list[dict]:
    """COCO's ``categories`` section for classes 1 to ``num_classes``."""
    return [{"id": i, "name": f"class_{i}"} for i in range(1, num_classes + 1)]


class CocoDicts:
    """The COCO dicts of the images fed so far: ``dataset()`` for ``COCO``, ``results`` for ``loadRes``.

    >>> dicts = CocoDicts(num_classes=1, size=(640, 480))
    >>> target = {"boxes": torch.tensor([[0.0, 0.0, 10.0, 20.0]]), "labels": torch.tensor([1]),
    ...           "iscrowd": torch.tensor([0]), "area": torch.tensor([150.0]), "image_id": 7}
    >>> dicts.add_targets([target])
    >>> dicts.dataset()["annotations"][0]["bbox"]
    [0.0, 0.0, 10.0, 20.0]
    """

    def __init__(self, num_classes: int, size: tuple[int, int]) -> None:
        self.num_classes, self.width, self.height = num_classes, size[0], size[1]
        self.images: list[dict] = []
        self.annotations: list[dict] = []
        self.results: list[dict] = []

    def add(self, predictions: list[dict], targets: list[dict]) -> None:
        """One batch: the targets' images and annotations, the predictions' results."""
        self.add_targets(targets)
        self.add_predictions(predictions, targets)

    def add_targets(self, targets: list[dict]) -> None:
        for target in targets:
            image_id = target["image_id"]
            self.images.append({"id": image_id, "width": self.width, "height": self.height})
            xywh = to_xywh(target["boxes"].numpy())
            rows = zip(xywh.tolist(), target["labels"].tolist(), target["iscrowd"].tolist(), target["area"].tolist())
            for box, label, is_crowd, area in rows:
                annotation_id = len(self.annotations) + 1
                self.annotations.append(
                    {
                        "id": annotation_id,
                        "image_id": image_id,
                        "category_id": label,
                        "bbox": box,
                        "area": area,
                        "iscrowd": is_crowd,
                    }
                )

    def add_predictions(self, predictions: list[dict], targets: list[dict]) -> None:
        for prediction, target in zip(predictions, targets):
            xywh = to_xywh(prediction["boxes"].double().numpy())
            rows = zip(xywh.tolist(), prediction["labels"].tolist(), prediction["scores"].double().tolist())
            image_id = target["image_id"]
            self.results += [{"image_id": image_id, "category_id": c, "bbox": b, "score": s} for b, c, s in rows]

    def dataset(self) -> dict:
        return {"images": self.images, "annotations": self.annotations, "categories": categories(self.num_classes)}


class Columns:
    """Numpy columns of the images fed so far, converted a whole batch at a time (no per-image Python).

    >>> columns = Columns(num_classes=1, size=(640, 480))
    >>> prediction = {"boxes": torch.tensor([[0.0, 0.0, 10.0, 20.0]]), "scores": torch.tensor([0.5]),
    ...               "labels": torch.tensor([1])}
    >>> target = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64),
    ...           "iscrowd": torch.zeros(0, dtype=torch.int64), "area": torch.zeros(0), "image_id": 7}
    >>> columns.add([prediction], [target])
    >>> columns.detections().tolist()
    [[7.0, 0.0, 0.0, 10.0, 20.0, 0.5, 1.0]]
    """

    def __init__(self, num_classes: int, size: tuple[int, int]) -> None:
        self.num_classes, self.width, self.height = num_classes, size[0], size[1]
        self._image_ids: list[np.ndarray] = []
        self._gt: list[dict[str, np.ndarray]] = []
        self._dt: list[np.ndarray] = []

    def add(self, predictions: list[dict], targets: list[dict]) -> None:
        """One batch, each field concatenated over its images with one call."""
        self.add_targets(targets)
        self.add_predictions(predictions, targets)

    def add_targets(self, targets: list[dict]) -> None:
        image_ids = np.array([t["image_id"] for t in targets], dtype=np.int64)
        self._image_ids.append(image_ids)
        self._gt.append(
            {
                "image_id": np.repeat(image_ids, [len(t["labels"]) for t in targets]),
                "category_id": torch.cat([t["labels"] for t in targets]).numpy(),
                "bbox": to_xywh(torch.cat([t["boxes"] for t in targets]).numpy()),
                "area": torch.cat([t["area"] for t in targets]).double().numpy(),
                "iscrowd": torch.cat([t["iscrowd"] for t in targets]).numpy(),
            }
        )

    def add_predictions(self, predictions: list[dict], targets: list[dict]) -> None:
        counts = [len(p["scores"]) for p in predictions]  # np.repeat: torch's repeat_interleave is 100x slower here
        matrix = np.empty((sum(counts), 7))
        matrix[:, 0] = np.repeat([t["image_id"] for t in targets], counts)
        matrix[:, 1:5] = to_xywh(torch.cat([p["boxes"] for p in predictions]).double().numpy())
        matrix[:, 5] = torch.cat([p["scores"] for p in predictions]).double().numpy()
        matrix[:, 6] = torch.cat([p["labels"] for p in predictions]).numpy()
        self._dt.append(matrix)

    @classmethod
    def merge(cls, parts: list[Columns]) -> Columns:
        """The columns of several ranks' images, one rank after the other."""
        merged = cls(parts[0].num_classes, (parts[0].width, parts[0].height))
        for part in parts:
            merged._image_ids += part._image_ids
            merged._gt += part._gt
            merged._dt += part._dt
        return merged

    def image_ids(self) -> np.ndarray:
        return np.concatenate(self._image_ids)

    def images(self) -> list[dict]:
        """COCO's ``images`` section, one dict per image (the array APIs take it so)."""
        return [{"id": i, "width": self.width, "height": self.height} for i in self.image_ids().tolist()]

    def ground_truth(self) -> dict[str, np.ndarray]:
        """Columns ``image_id``, ``category_id``, ``bbox`` (N, 4 xywh), ``area``, ``iscrowd``, ``id`` (from 1)."""
        gt = {key: np.concatenate([batch[key] for batch in self._gt]) for key in self._gt[0]}
        gt["id"] = np.arange(1, len(gt["area"]) + 1, dtype=np.int64)
        return gt

    def detections(self) -> np.ndarray:
        """The (N, 7) float64 matrix ``[image_id, x, y, w, h, score, category_id]`` of ``loadRes``."""
        return np.concatenate(self._dt)
