"""CocoMetric(iou_type="segm" | "keypoints") against pycocotools' COCOeval on the same data, to the last bit."""

from __future__ import annotations

import contextlib
import io
import re

import numpy as np
import pytest
import torch

from ignite_det import CocoMetric
from tests.coco_reference import NAMES, stats_dict
from tests.harness import assert_same_arrays, evaluate_with_engine
from tests.type_cases import (
    KEYPOINT_NAMES,
    keypoint_samples,
    load_real_segm_samples,
    random_keypoint_case,
    random_mask_case,
    run_typed_cocoeval,
)

# Published with the cocoapi for these files (val2014_fake_eval_res.txt, segm), three decimals.
PUBLISHED_SEGM = (0.320, 0.562, 0.299, 0.387, 0.310, 0.327, 0.268, 0.415, 0.417, 0.469, 0.377, 0.381)


@pytest.mark.parametrize("form", ["binary", "probabilities"])
def test_real_segm_data_equals_pycocotools_on_the_files(segm_files_cocoeval, backend, form):
    """Ground-truth polygons and crowd RLEs rasterised to dense masks, detections decoded from the
    published fake results: the metric gives the published numbers and COCOeval's arrays."""
    every_category = {c: str(c) for c in segm_files_cocoeval.params.catIds}  # as COCOeval evaluates them
    metrics = evaluate_with_engine(
        load_real_segm_samples(form), 7, iou_type="segm", backend=backend, class_names=every_category
    )
    assert tuple(round(metrics[name], 3) for name in NAMES) == PUBLISHED_SEGM
    assert {name: metrics[name] for name in NAMES} == stats_dict(segm_files_cocoeval)
    assert_same_arrays(metrics["coco"], segm_files_cocoeval)


@pytest.mark.parametrize("seed", range(3))
def test_random_masks_equal_pycocotools(seed, backend):
    gt, results, predictions, targets = random_mask_case(seed)
    reference = run_typed_cocoeval(gt, results, "segm")
    metrics = evaluate_with_engine(list(zip(predictions, targets)), 4, iou_type="segm", backend=backend)
    assert {name: metrics[name] for name in NAMES} == stats_dict(reference)
    assert_same_arrays(metrics["coco"], reference)


def _one_category(gt: dict, results: list, category_id: int) -> tuple[dict, list]:
    """The same images with one category's objects and detections only."""
    annotations = [a for a in gt["annotations"] if a["category_id"] == category_id]
    categories = [c for c in gt["categories"] if c["id"] == category_id]
    return {**gt, "annotations": annotations, "categories": categories}, [
        r for r in results if r["category_id"] == category_id
    ]


@pytest.mark.parametrize("seed", range(4))
def test_random_keypoints_equal_pycocotools(seed, backend):
    gt, results = random_keypoint_case(seed)
    reference = run_typed_cocoeval(gt, results, "keypoints")
    samples = keypoint_samples(gt, results)
    metrics = evaluate_with_engine(samples, 5, iou_type="keypoints", box_format="xywh", backend=backend)
    assert tuple(metrics["coco"]) == KEYPOINT_NAMES
    assert [metrics[name] for name in KEYPOINT_NAMES] == reference.stats.tolist()
    assert_same_arrays(metrics["coco"], reference)
    for row in metrics["coco"].per_class:  # each category's numbers: pycocotools on that category alone
        alone = run_typed_cocoeval(*_one_category(gt, results, row.category_id), "keypoints")
        stats = dict(zip(KEYPOINT_NAMES, alone.stats.tolist()))
        assert (row.AP, row.AP50, row.AP75, row.APm, row.APl, row.AR_max) == tuple(
            stats[name] for name in ("AP", "AP50", "AP75", "APm", "APl", "AR")
        )
        assert row.APs == -1.0  # keypoints have no small range


def test_keypoints_with_other_sigmas_equal_pycocotools(backend):
    sigmas = np.array([0.5, 0.25, 1.0, 0.125])  # e.g. the four corners of a shape
    gt, results = random_keypoint_case(5, num_keypoints=4)
    reference = run_typed_cocoeval(gt, results, "keypoints", sigmas)
    samples = keypoint_samples(gt, results, num_keypoints=4)
    metrics = evaluate_with_engine(
        samples, 16, iou_type="keypoints", box_format="xywh", backend=backend, keypoint_sigmas=sigmas.tolist()
    )
    assert_same_arrays(metrics["coco"], reference)


def test_the_keypoint_summary_reads_as_pycocotools_prints_it():
    gt, results = random_keypoint_case(1)
    reference = run_typed_cocoeval(gt, results, "keypoints")
    with contextlib.redirect_stdout(io.StringIO()) as printed:
        reference.summarize()
    result = evaluate_with_engine(keypoint_samples(gt, results), 16, iou_type="keypoints", box_format="xywh")["coco"]
    ours = [re.sub(r"\s+", " ", line).strip() for line in result.summary().splitlines()]
    theirs = [re.sub(r"\s+", " ", line).strip() for line in printed.getvalue().splitlines()]
    assert ours == theirs
    assert [c.category_id for c in result.per_class] == [1, 2]
    assert result.per_class[0].APs == -1.0  # no small range for keypoints


def test_keypoint_defaults_are_pycocotools():
    metric = CocoMetric(iou_type="keypoints")
    assert metric.params.max_detections == (20,)
    assert metric.params.area_names == ("all", "medium", "large")
    assert metric.params.num_keypoints == 17
    assert CocoMetric(iou_type="segm").params.max_detections == (1, 10, 100)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"iou_type": "mask"}, "iou_type must be one of ('bbox', 'segm', 'keypoints'), got 'mask'"),
        ({"iou_type": "segm", "keypoint_sigmas": [0.1]}, "keypoint_sigmas are for iou_type='keypoints'"),
        ({"iou_type": "keypoints", "keypoint_sigmas": [0.1, 0]}, "keypoint_sigmas must be a non-empty list"),
    ],
)
def test_bad_type_arguments_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        CocoMetric(**kwargs)


UPDATE_ERRORS = [
    (
        "segm",
        [{"boxes": torch.zeros(1, 4), "scores": torch.ones(1), "labels": torch.ones(1, dtype=torch.int64)}],
        [{"masks": torch.zeros(0, 4, 4), "labels": torch.zeros(0, dtype=torch.int64)}],
        "y_pred[0] is missing key(s) ['masks']",
    ),
    (
        "segm",
        [{"masks": torch.zeros(2, 1, 4, 4), "scores": torch.ones(3), "labels": torch.ones(2, dtype=torch.int64)}],
        [{"masks": torch.zeros(0, 4, 4), "labels": torch.zeros(0, dtype=torch.int64)}],
        "y_pred[0]['scores'] has 3 entries but y_pred[0]['masks'] has 2 masks",
    ),
    (
        "segm",
        [{"masks": torch.zeros(1, 1, 4, 4), "scores": torch.ones(1), "labels": torch.ones(1, dtype=torch.int64)}],
        [{"masks": torch.zeros(1, 8, 8), "labels": torch.ones(1, dtype=torch.int64)}],
        "y_pred[0] and y[0]: the masks of one image must all have the image's size (H, W), got sizes 4x4, 8x8",
    ),
    (
        "keypoints",
        [{"keypoints": torch.zeros(1, 17, 3), "scores": torch.ones(1), "labels": torch.ones(1, dtype=torch.int64)}],
        [{"keypoints": torch.zeros(1, 17, 3), "labels": torch.ones(1, dtype=torch.int64)}],
        "y[0] is missing key(s) ['boxes']",
    ),
    (
        "keypoints",
        [{"keypoints": torch.zeros(1, 17, 3), "scores": torch.ones(1), "labels": torch.ones(1, dtype=torch.int64)}],
        [{"keypoints": torch.zeros(2, 17, 3), "boxes": torch.zeros(1, 4), "labels": torch.ones(2, dtype=torch.int64)}],
        "y[0]['boxes'] has 1 boxes but y[0]['keypoints'] has 2 objects",
    ),
    (
        "keypoints",
        [{"keypoints": torch.zeros(1, 17, 3), "scores": torch.ones(1), "labels": torch.ones(2, dtype=torch.int64)}],
        [{"keypoints": torch.zeros(0, 17, 3), "boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}],
        "y_pred[0]['labels'] has 2 entries but y_pred[0]['keypoints'] has 1 objects",
    ),
]


@pytest.mark.parametrize("iou_type, y_pred, y, message", UPDATE_ERRORS)
def test_malformed_typed_batches_are_refused_before_anything_is_stored(iou_type, y_pred, y, message):
    metric = CocoMetric(iou_type=iou_type)
    with pytest.raises(ValueError, match=re.escape(message)):
        metric.update((y_pred, y))
    assert metric._store.num_images == 0


def test_keys_of_another_type_are_not_read():
    """Mask R-CNN's and Keypoint R-CNN's outputs carry boxes too; with masks or keypoints they are not read."""
    box = torch.tensor([[0.0, 0.0, 1e9, -5.0]])  # would be refused as a box
    mask = torch.zeros(1, 1, 6, 6)
    mask[..., :3, :3] = 0.9
    y_pred = [{"masks": mask, "boxes": box, "scores": torch.ones(1), "labels": torch.ones(1, dtype=torch.int64)}]
    y = [{"masks": mask[:, 0] > 0.5, "boxes": box, "labels": torch.ones(1, dtype=torch.int64)}]
    metric = CocoMetric(iou_type="segm")
    metric.update((y_pred, y))
    assert metric.compute()["AP"] == 1 / (1 + np.spacing(1))  # pycocotools' precision of one true positive


@pytest.mark.parametrize("iou_type", ["segm", "keypoints"])
def test_an_interrupted_evaluation_resumes_from_its_saved_state(tmp_path, iou_type):
    """Masks (as RLE bytes) and keypoints go into the state as tensors that torch.load(weights_only=True) reads."""
    if iou_type == "segm":
        _, _, predictions, targets = random_mask_case(2)
        samples = list(zip(predictions, targets))
    else:
        samples = keypoint_samples(*random_keypoint_case(2))
    whole, first, resumed = (CocoMetric(iou_type=iou_type, box_format="xywh") for _ in range(3))
    whole.update(([p for p, _ in samples], [t for _, t in samples]))
    first.update(([p for p, _ in samples[:5]], [t for _, t in samples[:5]]))
    torch.save(first.state_dict(), tmp_path / "state.pt")
    resumed.load_state_dict(torch.load(tmp_path / "state.pt", weights_only=True))
    resumed.update(([p for p, _ in samples[5:]], [t for _, t in samples[5:]]))
    expected, got = whole.compute(), resumed.compute()
    assert dict(got) == dict(expected)
    np.testing.assert_array_equal(got.precision, expected.precision)
    np.testing.assert_array_equal(got.confusion_matrix, expected.confusion_matrix)


def test_a_state_with_another_number_of_keypoints_is_refused():
    metric = CocoMetric(iou_type="keypoints", keypoint_sigmas=[0.1] * 4)
    with pytest.raises(ValueError, match="the saved state holds 17 keypoints per object, this metric 4"):
        metric.load_state_dict(CocoMetric(iou_type="keypoints").state_dict())
