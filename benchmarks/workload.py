"""Deterministic detection workloads for the benchmarks.

``coco`` (the default, COCO-val-sized): 5,000 images of 640x480, about 36,800 ground-truth boxes
over 80 classes with COCO's mix of small, medium and large objects (roughly 41/34/25 %), about 1 %
crowd regions, and 100 scored detections per image: noisy copies of the ground truth (some with the
wrong class) plus background false positives.

``lvis`` (LVIS-sized): 10,000 images, about 12.3 ground truths per image over 1,203 classes, 300
detections per image, built the same way.

``small``: 300 images of the ``coco`` kind, for checking every method's numbers in a minute.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from conversions import CocoDicts

WIDTH, HEIGHT = 640, 480

# name: (images, detections per image, classes, mean ground truths per image)
SIZES = {"coco": (5000, 100, 80, 7.36), "lvis": (10000, 300, 1203, 12.3), "small": (300, 100, 80, 7.36)}


@dataclass
class Workload:
    """The same evaluation as tensors (what a model emits) and, built on demand, as COCO dicts."""

    predictions: list[dict[str, torch.Tensor]]
    targets: list[dict[str, torch.Tensor]]
    num_classes: int

    @property
    def coco_gt(self) -> dict:
        dicts = CocoDicts(self.num_classes, (WIDTH, HEIGHT))
        dicts.add_targets(self.targets)
        return dicts.dataset()

    @property
    def coco_results(self) -> list[dict]:
        dicts = CocoDicts(self.num_classes, (WIDTH, HEIGHT))
        dicts.add_predictions(self.predictions, self.targets)
        return dicts.results


def _object_sizes(rng: np.random.Generator, n: int) -> np.ndarray:
    """Side lengths (w, h) with COCO's small/medium/large proportions."""
    bucket = rng.choice(3, size=n, p=[0.41, 0.34, 0.25])
    side = np.where(
        bucket == 0,
        rng.uniform(4, 32, n),
        np.where(bucket == 1, rng.uniform(32, 96, n), rng.uniform(96, 400, n)),
    )
    aspect = np.exp(rng.normal(0, 0.4, n))
    w = np.clip(side * np.sqrt(aspect), 2, WIDTH - 1)
    h = np.clip(side / np.sqrt(aspect), 2, HEIGHT - 1)
    return np.stack([w, h], axis=1)


def _ground_truth(rng: np.random.Generator, n: int, num_classes: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    wh = _object_sizes(rng, n)
    x = rng.uniform(0, WIDTH - wh[:, 0])
    y = rng.uniform(0, HEIGHT - wh[:, 1])
    boxes = np.round(np.stack([x, y, x + wh[:, 0], y + wh[:, 1]], axis=1), 2)
    frequency = rng.dirichlet(np.full(num_classes, 0.7))
    labels = rng.choice(num_classes, size=n, p=frequency) + 1
    crowd = (rng.random(n) < 0.01).astype(np.int64)
    return boxes, labels, crowd


def _detections(rng: np.random.Generator, gt_boxes: np.ndarray, gt_labels: np.ndarray, count: int, num_classes: int):
    n_gt = len(gt_boxes)
    n_hits = min(count // 2, 3 * n_gt)
    source = rng.integers(0, max(n_gt, 1), n_hits) if n_gt else np.zeros(0, np.int64)
    hit = gt_boxes[source] if n_gt else np.zeros((0, 4))
    size = np.concatenate([hit[:, 2:] - hit[:, :2]] * 2, axis=1)
    hit = hit + rng.normal(0, 0.08, hit.shape) * size
    hit_labels = gt_labels[source] if n_gt else np.zeros(0, np.int64)
    wrong = rng.random(n_hits) < 0.15
    hit_labels = np.where(wrong, rng.integers(1, num_classes + 1, n_hits), hit_labels)
    hit_scores = rng.beta(5, 2, n_hits)

    n_noise = count - n_hits
    wh = _object_sizes(rng, n_noise)
    x = rng.uniform(0, WIDTH - wh[:, 0])
    y = rng.uniform(0, HEIGHT - wh[:, 1])
    noise = np.stack([x, y, x + wh[:, 0], y + wh[:, 1]], axis=1)
    noise_labels = rng.integers(1, num_classes + 1, n_noise)
    noise_scores = rng.beta(2, 5, n_noise)

    boxes = np.concatenate([hit, noise])
    boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, WIDTH)
    boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, HEIGHT)
    boxes[:, 2:] = np.maximum(boxes[:, 2:], boxes[:, :2])
    scores = np.round(np.concatenate([hit_scores, noise_scores]), 3)  # rounding makes ties
    labels = np.concatenate([hit_labels, noise_labels])
    return boxes, scores, labels


def make_workload(name: str = "coco", seed: int = 0) -> Workload:
    """Build a workload of :data:`SIZES`; the same seed always gives the same data."""
    num_images, detections_per_image, num_classes, gt_per_image = SIZES[name]
    rng = np.random.default_rng(seed)
    predictions, targets = [], []
    for image_id in range(1, num_images + 1):
        gt_boxes, gt_labels, crowd = _ground_truth(rng, rng.poisson(gt_per_image), num_classes)
        area = (gt_boxes[:, 2] - gt_boxes[:, 0]) * (gt_boxes[:, 3] - gt_boxes[:, 1])
        area = area * rng.uniform(0.6, 0.9, len(area))  # a mask covers less than its box
        boxes, scores, labels = _detections(rng, gt_boxes, gt_labels, detections_per_image, num_classes)
        targets.append(
            {
                "boxes": torch.from_numpy(gt_boxes),
                "labels": torch.from_numpy(gt_labels),
                "iscrowd": torch.from_numpy(crowd),
                "area": torch.from_numpy(area),
                "image_id": image_id,
            }
        )
        predictions.append(
            {
                "boxes": torch.from_numpy(boxes).float(),
                "scores": torch.from_numpy(scores).float(),
                "labels": torch.from_numpy(labels),
            }
        )
    return Workload(predictions, targets, num_classes)


# LVIS v1's category counts per frequency group (rare, common, frequent), in id order r..., c..., f... shuffled
LVIS_GROUPS = (("r", 337), ("c", 461), ("f", 405))


@dataclass
class LvisWorkload:
    """An LVIS-style evaluation as tensors: targets with the federated lists, each category's frequency group."""

    predictions: list[dict[str, torch.Tensor]]
    targets: list[dict[str, torch.Tensor]]
    frequencies: dict[int, str]


def make_lvis_workload(num_images: int = 10_000, seed: int = 0, detections_per_image: int = 300) -> LvisWorkload:
    """LVIS-sized (default: 10,000 images, ~12.3 ground truths per image over 1,203 classes, 300 detections per
    image, 3 million): the ``lvis`` workload's boxes without crowd regions (LVIS has none), and per image about 8
    ``neg_category_ids`` (absent categories; a third of the background detections are given one, so the
    federated filter keeps them as false positives, the rest of unverified categories are dropped) and each
    positive category ``not_exhaustive`` with probability 0.1. Same seed, same data.
    """
    _, _, num_classes, gt_per_image = SIZES["lvis"]
    rng = np.random.default_rng(seed)
    groups = np.concatenate([np.full(n, g) for g, n in LVIS_GROUPS])
    frequencies = {k + 1: str(g) for k, g in enumerate(rng.permutation(groups))}
    predictions, targets = [], []
    for image_id in range(1, num_images + 1):
        gt_boxes, gt_labels, _ = _ground_truth(rng, rng.poisson(gt_per_image), num_classes)
        area = (gt_boxes[:, 2] - gt_boxes[:, 0]) * (gt_boxes[:, 3] - gt_boxes[:, 1])
        area = area * rng.uniform(0.6, 0.9, len(area))  # a polygon covers less than its box
        boxes, scores, labels = _detections(rng, gt_boxes, gt_labels, detections_per_image, num_classes)
        present = np.unique(gt_labels)
        negatives = np.setdiff1d(rng.choice(num_classes, 8, replace=False) + 1, present)
        if len(negatives):
            verified = rng.random(len(labels)) < 0.33
            labels = np.where(verified & (scores < 0.5), rng.choice(negatives, len(labels)), labels)
        targets.append(
            {
                "boxes": torch.from_numpy(gt_boxes),
                "labels": torch.from_numpy(gt_labels),
                "area": torch.from_numpy(area),
                "image_id": image_id,
                "neg_category_ids": torch.from_numpy(np.sort(negatives)),
                "not_exhaustive_category_ids": torch.from_numpy(present[rng.random(len(present)) < 0.1]),
            }
        )
        predictions.append(
            {
                "boxes": torch.from_numpy(boxes).float(),
                "scores": torch.from_numpy(scores).float(),
                "labels": torch.from_numpy(labels),
            }
        )
    return LvisWorkload(predictions, targets, frequencies)
