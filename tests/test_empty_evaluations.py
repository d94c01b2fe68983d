"""Evaluations with nothing (or little) to count, as every training run meets them, against pycocotools.

An untrained model detects nothing; a set of negative images has no ground truth; detections may all
be of categories the ground truth lacks; ground truth may be crowd only. pycocotools evaluates all of
these (AP 0 where ground truth exists and nothing was detected, -1 where a category has none), and so
must every backend, through a real Engine, with every attribute of the result defined.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import wandb
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ignite_det import CocoReportHandler, backends, confusion
from ignite_det.backends import cocoeval
from ignite_det.backends.native import matching as native_matching
from tests.coco_reference import NAMES, load_real_samples, run_cocoeval, stats_dict, to_coco
from tests.test_metric_parity import assert_same_arrays, evaluate_with_engine

BACKENDS = list(backends.BACKENDS)


def _no_boxes(scores: bool) -> dict[str, torch.Tensor]:
    sample = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}
    return {**sample, "scores": torch.zeros(0)} if scores else sample


def _box(x: float, y: float, w: float = 20.0, h: float = 20.0) -> list[float]:
    return [x, y, x + w, y + h]


def _gt(boxes: list, labels: list, image_id: int, crowd: list | None = None) -> dict:
    target = {"boxes": torch.tensor(boxes).reshape(-1, 4), "labels": torch.tensor(labels), "image_id": image_id}
    if crowd is not None:
        target["iscrowd"] = torch.tensor(crowd)
    return target


def _det(boxes: list, labels: list, scores: list) -> dict:
    return {"boxes": torch.tensor(boxes).reshape(-1, 4), "labels": torch.tensor(labels), "scores": torch.tensor(scores)}


def empty_cases() -> dict[str, list[tuple[dict, dict]]]:
    gt = [_gt([_box(0, 0), _box(40, 40)], [1, 2], image_id=i) for i in range(1, 4)]
    negatives = [_gt([], [], image_id=i) for i in range(10, 13)]
    some = [_det([_box(1, 1), _box(60, 0)], [1, 2], [0.9, 0.4]) for _ in range(3)]
    return {
        "no detection at all": [(_no_boxes(True), t) for t in gt],
        "no ground truth at all": [(p, t) for p, t in zip(some, negatives)],
        "nothing at all": [(_no_boxes(True), t) for t in negatives],
        "detections of absent categories only": [(_det([_box(0, 0)], [7], [0.8]), t) for t in gt],
        "crowd-only ground truth": [
            (p, _gt([_box(0, 0, 60, 60)], [1], image_id=i, crowd=[1])) for i, p in enumerate(some, start=1)
        ],
        "detections on negative images only": [(_no_boxes(True), t) for t in gt] + list(zip(some, negatives)),
    }


def check_against_pycocotools(samples: list, backend: str, batch_size: int = 2, box_format: str = "xyxy"):
    """Our 12 numbers and arrays equal pycocotools' on the same data; returns our result and pycocotools'."""
    result = evaluate_with_engine(samples, batch_size, backend=backend, box_format=box_format)["coco"]
    gt, results = to_coco([p for p, _ in samples], [t for _, t in samples], box_format)
    coco_eval = run_cocoeval(gt, results)
    assert dict(result) == stats_dict(coco_eval)
    assert_same_arrays(result, coco_eval)
    return result, coco_eval


def check_every_attribute(result) -> None:
    """Every attribute and presentation of a result is defined, JSON-ready and free of 'nan'."""
    assert set(result) == set(NAMES)
    for row in result.per_class:
        assert row.f1.status in ("ok", "no ground truth", "no detection")
    for category_id in (None, *result.category_ids):
        recall, precision = result.pr_curve(category_id=category_id)
        assert recall.shape == precision.shape == (101,)
        assert ((precision >= 0) & (precision <= 1) | (precision == -1)).all()
    curve = result.f1_curve()
    assert set(curve) == {"threshold", "precision", "recall", "f1"}
    text = str(result) + result.summary() + result.class_table()
    assert "nan" not in text.lower()
    assert result.best_f1.describe() in text
    report = json.loads(json.dumps(result.to_dict(), allow_nan=False))
    assert report["best_f1"]["status"] == result.best_f1.status
    k = len(result.category_ids)
    assert result.confusion_matrix.shape == (k + 1, k + 1)
    assert (result.confusion_matrix >= 0).all()
    payload = CocoReportHandler(include_stats=True).payload(wandb, result)  # the W&B objects build
    assert all(not (isinstance(v, float) and math.isnan(v)) for v in payload.values())


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", list(empty_cases()))
def test_empty_evaluations_equal_pycocotools(case, backend):
    result, coco_eval = check_against_pycocotools(empty_cases()[case], backend)
    check_every_attribute(result)
    has_gt = any(len(t["labels"]) and not t.get("iscrowd", torch.zeros(1)).all() for _, t in empty_cases()[case])
    if not has_gt:
        assert result.best_f1.status == "no ground truth"
        assert result["AP"] == -1.0
        assert np.isnan(result.f1_curve()["recall"]).all()


@pytest.mark.parametrize("backend", BACKENDS)
def test_no_detection_gives_ap_zero_and_every_object_missed(backend):
    result, _ = check_against_pycocotools(empty_cases()["no detection at all"], backend)
    assert result["AP"] == 0.0 and result["AR100"] == 0.0
    assert result.best_f1.status == "no detection"
    assert result.best_f1.describe() == "no detection"
    assert result.confusion_matrix[:-1, -1].tolist() == [3, 3]  # every ground truth missed
    assert result.confusion_matrix.sum() == 6
    assert "Best F1 at IoU=0.50: no detection" in str(result)


@pytest.mark.parametrize("backend", BACKENDS)
def test_negative_images_count_every_detection_as_spurious(backend):
    result, _ = check_against_pycocotools(empty_cases()["no ground truth at all"], backend)
    assert result.category_ids == ()  # pycocotools evaluates the ground truth's categories: none
    assert result.best_f1.status == "no ground truth"
    assert result.confusion_score_threshold == -math.inf


def test_class_table_prints_a_dash_where_a_class_has_no_ground_truth():
    samples = [(_det([_box(0, 0), _box(50, 50)], [1, 2], [0.9, 0.8]), _gt([_box(0, 0)], [1], image_id=1))]
    result = evaluate_with_engine(samples, 1, class_names={1: "cat", 2: "dog"})["coco"]
    dog = next(line for line in result.class_table().splitlines() if line.startswith("dog"))
    assert "nan" not in dog and dog.split()[1:7] == ["-"] * 6  # AP ... APl undefined
    assert dog.split()[-4:] == ["-"] * 4  # no operating point


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("where", ["negatives after", "detections on the first 256 only"])
def test_a_block_of_images_without_detections(where, backend, monkeypatch):
    """The confusion matrix pairs images in blocks of 256; a block without detections crashed it."""
    real = load_real_samples()
    if where == "negatives after":  # the published 100 images, then 157 negative ones
        samples = real + [(_no_boxes(True), _gt([], [], image_id=10**6 + i)) for i in range(157)]
    else:  # 257 images, detections on the first 256 (by image id) only
        samples = (real * 3)[:257]
        samples = [(p if i < 256 else _no_boxes(True), {**t, "image_id": i}) for i, (p, t) in enumerate(samples)]
    check_against_pycocotools(samples, backend, batch_size=64, box_format="xywh")


# --- generated cases -------------------------------------------------------------------------------


@st.composite
def evaluations(draw) -> tuple[list[tuple[dict, dict]], int]:
    """Small evaluations with arbitrary patterns of emptiness, and a batch size."""
    num_images = draw(st.integers(1, 8))
    num_negative = draw(st.integers(0, 10))
    num_classes = draw(st.integers(1, 3))
    crowd_rate = draw(st.sampled_from([0.0, 0.3, 1.0]))  # 1.0: crowd-only ground truth
    detections = draw(st.sampled_from(["none", "everywhere", "few images", "absent categories", "negatives only"]))
    with_ids = draw(st.booleans())
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    samples = []
    for index in range(num_images + num_negative):
        negative = index >= num_images
        n_gt = 0 if negative else int(rng.integers(0, 4))
        xy = rng.integers(0, 60, (n_gt, 2))
        gt_boxes = np.concatenate([xy, xy + rng.choice([8, 32, 40, 100], (n_gt, 2))], axis=1).astype(np.float64)
        labels = rng.integers(1, num_classes + 1, n_gt)
        target = {
            "boxes": torch.from_numpy(gt_boxes),
            "labels": torch.from_numpy(labels),
            "iscrowd": torch.from_numpy((rng.random(n_gt) < crowd_rate).astype(np.int64)),
        }
        if with_ids:
            target["image_id"] = int(rng.permutation(1000)[0]) * 1000 + index  # unique, not in arrival order
        detect = {
            "none": False,
            "everywhere": True,
            "few images": index % 5 == 0,
            "absent categories": True,
            "negatives only": negative,
        }[detections]
        n_det = int(rng.integers(1, 6)) if detect else 0
        source = gt_boxes[rng.integers(0, n_gt, n_det)] if n_gt else rng.integers(0, 60, (n_det, 4)) * [1, 1, 0, 0]
        det_boxes = source + rng.integers(-3, 4, (n_det, 4))
        det_boxes[:, 2:] = np.maximum(det_boxes[:, 2:], det_boxes[:, :2] + 1)
        det_labels = rng.integers(1, num_classes + 1, n_det)
        if detections == "absent categories":
            det_labels = det_labels + num_classes
        prediction = {
            "boxes": torch.from_numpy(det_boxes.astype(np.float64)),
            "scores": torch.from_numpy(np.round(rng.random(n_det), 1)),  # ties
            "labels": torch.from_numpy(det_labels),
        }
        samples.append((prediction, target))
    return samples, draw(st.integers(1, 5))


@settings(max_examples=25, deadline=None, derandomize=True, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=evaluations())
def test_generated_evaluations_equal_pycocotools(case):
    samples, batch_size = case
    with pytest.MonkeyPatch.context() as patch:  # tiny blocks, so that block bounds are crossed
        patch.setattr(confusion, "IMAGES_PER_BLOCK", 2)
        patch.setattr(cocoeval, "CELLS_PER_RUN", 3)
        patch.setattr(native_matching, "IMAGES_PER_CHUNK", 2)
        for backend in BACKENDS:
            result, coco_eval = check_against_pycocotools(samples, backend, batch_size)
            check_every_attribute(result)
            _check_confusion_counts_each_object_once(result, samples)
            _check_best_f1_against_evalimgs(result, coco_eval)


def _check_confusion_counts_each_object_once(result, samples) -> None:
    """Each non-crowd ground truth of an evaluated class is in its class row exactly once."""
    labels = np.concatenate([t["labels"][t["iscrowd"] == 0].numpy() for _, t in samples])
    expected = [int((labels == c).sum()) for c in result.category_ids]
    assert result.confusion_matrix[:-1].sum(axis=1).tolist() == expected


def _check_best_f1_against_evalimgs(result, coco_eval) -> None:
    """The pooled best F1 equals a sweep over pycocotools' own matches (IoU 0.5, area all, 100 dets)."""
    p = coco_eval.params
    dets = []
    for e in coco_eval.evalImgs[: len(p.catIds) * len(p.areaRng) * len(p.imgIds)]:
        if e is not None and e["aRng"] == p.areaRng[0]:
            dets += [(s, m > 0) for s, m, ig in zip(e["dtScores"], e["dtMatches"][0], e["dtIgnore"][0]) if not ig]
    evaluated = [e for e in coco_eval.evalImgs if e is not None and e["aRng"] == p.areaRng[0]]
    num_gt = sum(int(not ignored) for e in evaluated for ignored in e["gtIgnore"])
    best = result.best_f1
    if num_gt == 0:
        assert best.status == "no ground truth"
        return
    if not dets:
        assert best.status == "no detection"
        return
    f1s = []
    for threshold in sorted({s for s, _ in dets}, reverse=True):
        tp = sum(t for s, t in dets if s >= threshold)
        kept = sum(1 for s, _ in dets if s >= threshold)
        f1s.append(2 * tp / (kept + num_gt))
    assert best.f1 == pytest.approx(max(f1s), abs=1e-12)
