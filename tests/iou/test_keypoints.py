"""The keypoints type on its own: OKS, detection area and summary against pycocotools' COCOeval."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from pycocotools.cocoeval import COCOeval

from ignite_det.iou.keypoints import (
    COCO_KEYPOINT_SIGMAS,
    KEYPOINT_AREA_RANGES,
    KEYPOINT_MAX_DETECTIONS,
    KEYPOINT_STAT_NAMES,
    check_keypoints,
    check_sigmas,
    extent,
    keypoints_array,
    oks,
    oks_matrix,
)
from ignite_det.params import EvalParams
from ignite_det.result import summarize_keypoints
from tests.type_cases import random_keypoint_case, run_typed_cocoeval


def run_keypoint_cocoeval(gt: dict, results: list, sigmas: np.ndarray | None = None) -> COCOeval:
    return run_typed_cocoeval(gt, results, "keypoints", sigmas)


def _cell_arrays(coco_eval: COCOeval, key: tuple, k: int) -> tuple[np.ndarray, ...]:
    """A cell's detections as computeOks takes them (best 20 by score, stable), and its ground truth."""
    dts, gts = coco_eval._dts[key], coco_eval._gts[key]
    order = np.argsort([-d["score"] for d in dts], kind="mergesort")[: coco_eval.params.maxDets[-1]]
    det = np.array([dts[i]["keypoints"] for i in order], dtype=np.float64).reshape(-1, k, 3)
    gt = np.array([g["keypoints"] for g in gts], dtype=np.float64).reshape(-1, k, 3)
    boxes = np.array([g["bbox"] for g in gts], dtype=np.float64).reshape(-1, 4)
    area = np.array([g["area"] for g in gts], dtype=np.float64)
    return det, gt, boxes, area


@pytest.mark.parametrize("seed", range(8))
def test_oks_equals_computeoks_bit_for_bit(seed):
    coco_eval = run_keypoint_cocoeval(*random_keypoint_case(seed))
    compared = 0
    for key, expected in coco_eval.ious.items():
        if len(expected) == 0:
            continue
        det, gt, boxes, area = _cell_arrays(coco_eval, key, 17)
        np.testing.assert_array_equal(oks_matrix(det, gt, boxes, area, COCO_KEYPOINT_SIGMAS), expected)
        compared += np.size(expected)
    assert compared > 50


def test_oks_with_other_sigmas_equals_computeoks():
    sigmas = np.array([0.5, 0.25, 1.0, 0.125])  # e.g. four corners of a shape
    coco_eval = run_keypoint_cocoeval(*random_keypoint_case(11, num_keypoints=4), sigmas=sigmas)
    for key, expected in coco_eval.ious.items():
        if len(expected):
            det, gt, boxes, area = _cell_arrays(coco_eval, key, 4)
            np.testing.assert_array_equal(oks_matrix(det, gt, boxes, area, sigmas), expected)


def test_people_without_a_labelled_point_are_measured_against_their_box_region():
    """A detection inside the box grown by its size on each side scores 1; outside, less."""
    gt = np.zeros((1, 2, 3))
    box = np.array([[10.0, 20.0, 4.0, 6.0]])  # region x in [6, 18], y in [14, 32]
    inside = np.array([[[6.0, 14.0, 1.0], [18.0, 32.0, 1.0]]])
    outside = np.array([[[5.0, 14.0, 1.0], [18.0, 33.0, 1.0]]])
    sigmas = np.array([0.1, 0.1])
    assert oks(inside, gt, box, np.array([100.0]), sigmas).tolist() == [1.0]
    assert oks(outside, gt, box, np.array([100.0]), sigmas)[0] < 1.0


@pytest.mark.parametrize("seed", range(3))
def test_detection_area_and_box_are_those_loadres_sets(seed):
    coco_eval = run_keypoint_cocoeval(*random_keypoint_case(seed))
    dts = [d for anns in coco_eval._dts.values() for d in anns]
    boxes, area = extent(np.array([d["keypoints"] for d in dts], dtype=np.float64).reshape(-1, 17, 3))
    np.testing.assert_array_equal(area, [d["area"] for d in dts])
    np.testing.assert_array_equal(boxes, [d["bbox"] for d in dts])


@pytest.mark.parametrize("seed", range(4))
def test_keypoint_summary_equals_pycocotools(seed):
    coco_eval = run_keypoint_cocoeval(*random_keypoint_case(seed))
    params = EvalParams.create(max_detections=KEYPOINT_MAX_DETECTIONS, area_ranges=KEYPOINT_AREA_RANGES)
    np.testing.assert_array_equal(params.area_ranges, coco_eval.params.areaRng)
    assert list(params.max_detections) == coco_eval.params.maxDets
    assert list(params.area_names) == coco_eval.params.areaRngLbl
    stats = summarize_keypoints(coco_eval.eval["precision"], coco_eval.eval["recall"], params)
    assert tuple(stats) == KEYPOINT_STAT_NAMES
    assert list(stats.values()) == coco_eval.stats.tolist()


def test_default_sigmas_are_pycocotools():
    from pycocotools.cocoeval import Params

    np.testing.assert_array_equal(check_sigmas(None), Params(iouType="keypoints").kpt_oks_sigmas)
    assert check_sigmas([0.5, 1]).tolist() == [0.5, 1.0]


def test_keypoints_are_widened_to_float64_and_predictions_may_omit_the_third_column():
    points = torch.tensor([[[1.5, 2.0], [3.0, 4.25]]], dtype=torch.float32)
    assert check_keypoints("y_pred[0]['keypoints']", points, 2, target=False) == 1
    np.testing.assert_array_equal(
        keypoints_array("y_pred[0]['keypoints']", points, 2, target=False), [[[1.5, 2.0, 0.0], [3.0, 4.25, 0.0]]]
    )
    for empty in (torch.zeros(0), torch.zeros(0, 2, 3)):
        assert check_keypoints("k", empty, 2, target=True) == 0
        assert keypoints_array("k", empty, 2, target=True).shape == (0, 2, 3)


ERRORS = [
    (
        np.zeros((1, 17, 3)),
        True,
        TypeError,
        "y[0]['keypoints'] must be a torch.Tensor of shape (M, 17, 3), got ndarray",
    ),
    (torch.zeros(2, 17), True, ValueError, "y[0]['keypoints'] must have shape (M, 17, 3), got (2, 17)"),
    (torch.zeros(2, 17, 2), True, ValueError, "y[0]['keypoints'] must have shape (M, 17, 3), got (2, 17, 2)"),
    (torch.zeros(2, 17, 4), False, ValueError, "y[0]['keypoints'] must have shape (N, 17, 3), got (2, 17, 4)"),
    (
        torch.zeros(2, 4, 3),
        False,
        ValueError,
        "y[0]['keypoints'] has 4 keypoints per object, but keypoint_sigmas has 17; pass keypoint_sigmas",
    ),
    (
        torch.zeros(1, 17, 3, dtype=torch.bool),
        True,
        TypeError,
        "must be a floating point or integer tensor, got dtype torch.bool",
    ),
]


@pytest.mark.parametrize("value, target, error, message", ERRORS)
def test_malformed_keypoints_are_refused(value, target, error, message):
    with pytest.raises(error, match=re.escape(message)):
        check_keypoints("y[0]['keypoints']", value, 17, target=target)


def test_keypoint_values_that_would_give_wrong_numbers_are_refused():
    nan = torch.tensor([[[1.0, float("nan"), 2.0]]])
    with pytest.raises(ValueError, match=re.escape("y[0]['keypoints'] must hold finite x and y, got [nan]")):
        keypoints_array("y[0]['keypoints']", nan, 1, target=True)
    visibility = torch.tensor([[[1.0, 1.0, 3.0], [1.0, 1.0, 0.5]]])
    with pytest.raises(
        ValueError,
        match=re.escape(
            "y[0]['keypoints'][..., 2] must hold COCO's visibility 0 (not labelled), 1 (labelled, hidden) "
            "or 2 (visible), got [0.5, 3.0]"
        ),
    ):
        keypoints_array("y[0]['keypoints']", visibility, 2, target=True)
    assert keypoints_array("p", visibility, 2, target=False)[0, 0, 2] == 3.0  # a prediction's third column is not read
    for bad in ([], [0.1, -1.0], [[0.1]], [float("inf")]):
        with pytest.raises(ValueError, match="keypoint_sigmas must be a non-empty list of positive numbers"):
            check_sigmas(bad)
