"""Every malformed batch is refused at update() with a message naming the sample, the key and the fix."""

from __future__ import annotations

import contextlib
import io
import json
import re

import numpy as np
import pytest
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from ignite_det import CocoMetric
from tests.coco_reference import (
    DATA,
    GT_FILE,
    random_case,
    run_cocoeval,
    stats_dict,
    to_coco,
)
from tests.harness import assert_same_arrays, evaluate_with_engine


def pred(n: int = 2, **override):
    sample = {
        "boxes": torch.tensor([[0.0, 0.0, 10.0, 10.0]] * n),
        "scores": torch.full((n,), 0.5),
        "labels": torch.ones(n, dtype=torch.int64),
    }
    return {**sample, **override}


def target(m: int = 1, **override):
    sample = {"boxes": torch.tensor([[0.0, 0.0, 10.0, 10.0]] * m), "labels": torch.ones(m, dtype=torch.int64)}
    return {**sample, **override}


CASES = [
    (
        "lists of different lengths",
        ([pred()], [target(), target()]),
        ValueError,
        "y_pred and y must have one entry per image each, got 1 predictions and 2 targets",
    ),
    ("not a pair", ([pred()],), TypeError, "update() expects a pair (y_pred, y)"),
    (
        "a tensor instead of a list",
        (torch.zeros(2, 4), [target()]),
        TypeError,
        "y_pred must be a list with one dict per image",
    ),
    ("a sample that is not a dict", ([pred(), "x"], [target(), target()]), TypeError, "y_pred[1] must be a dict"),
    (
        "missing key",
        ([{"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}], [target()]),
        ValueError,
        "y_pred[0] is missing key(s) ['scores']",
    ),
    (
        "target missing labels",
        ([pred()], [{"boxes": torch.zeros(1, 4)}]),
        ValueError,
        "y[0] is missing key(s) ['labels']",
    ),
    (
        "boxes not (N, 4)",
        ([pred(boxes=torch.zeros(2, 5))], [target()]),
        ValueError,
        "y_pred[0]['boxes'] must have shape (N, 4), got (2, 5)",
    ),
    (
        "boxes not a tensor",
        ([pred(boxes=[[0, 0, 1, 1]])], [target()]),
        TypeError,
        "y_pred[0]['boxes'] must be a torch.Tensor of shape (N, 4), got list",
    ),
    (
        "boolean boxes",
        ([pred(boxes=torch.zeros(2, 4, dtype=torch.bool))], [target()]),
        TypeError,
        "y_pred[0]['boxes'] must be a floating point or integer tensor, got dtype torch.bool",
    ),
    (
        "integer boxes beyond float64's exact integers",
        ([pred()], [target(boxes=torch.tensor([[0, 0, 2**53, 2**53]]))]),
        ValueError,
        "y[0]['boxes'] integer coordinates must be smaller than 2**53 in magnitude, got 9007199254740992",
    ),
    (
        "scores length",
        ([pred(scores=torch.ones(3))], [target()]),
        ValueError,
        "y_pred[0]['scores'] has 3 entries but y_pred[0]['boxes'] has 2 boxes",
    ),
    (
        "labels length",
        ([pred(), pred(labels=torch.ones(1, dtype=torch.int64))], [target(), target()]),
        ValueError,
        "y_pred[1]['labels'] has 1 entries but y_pred[1]['boxes'] has 2 boxes",
    ),
    (
        "target labels length",
        ([pred()], [target(labels=torch.ones(3, dtype=torch.int64))]),
        ValueError,
        "y[0]['labels'] has 3 entries but y[0]['boxes'] has 1 boxes",
    ),
    (
        "scores not 1-D",
        ([pred(scores=torch.ones(2, 1))], [target()]),
        ValueError,
        "y_pred[0]['scores'] must be 1-D with shape (2,), got shape (2, 1)",
    ),
    (
        "float labels",
        ([pred(labels=torch.ones(2))], [target()]),
        TypeError,
        "y_pred[0]['labels'] must be an integer tensor, got dtype torch.float32; convert it with .long()",
    ),
    (
        "float target labels",
        ([pred()], [target(labels=torch.ones(1))]),
        TypeError,
        "y[0]['labels'] must be an integer tensor, got dtype torch.float32",
    ),
    (
        "integer scores",
        ([pred(scores=torch.ones(2, dtype=torch.int64))], [target()]),
        TypeError,
        "y_pred[0]['scores'] must be a floating point tensor, got dtype torch.int64",
    ),
    (
        "nan coordinate",
        ([pred(), pred(boxes=torch.tensor([[0.0, 0, 1, 1], [0, float("nan"), 1, 1]]))], [target(), target()]),
        ValueError,
        "y_pred[1]['boxes'] must hold finite coordinates, got [0.0, nan, 1.0, 1.0]",
    ),
    (
        "inf target coordinate",
        ([pred()], [target(boxes=torch.tensor([[0.0, 0, float("inf"), 1]]))]),
        ValueError,
        "y[0]['boxes'] must hold finite coordinates",
    ),
    (
        "nan score",
        ([pred(scores=torch.tensor([0.5, float("nan")]))], [target()]),
        ValueError,
        "y_pred[0]['scores'] must be finite, got [nan]",
    ),
    (
        "x2 < x1",
        ([pred(boxes=torch.tensor([[0.0, 0, 10, 10], [10.0, 0, 5, 10]]))], [target()]),
        ValueError,
        "y_pred[0]['boxes'] in format 'xyxy' must satisfy x2 >= x1 and y2 >= y1, "
        "got box [10.0, 0.0, 5.0, 10.0]; check the box_format",
    ),
    (
        "negative width in target",
        ([pred()], [target(boxes=torch.tensor([[0.0, 0, 10, -1]]))]),
        ValueError,
        "y[0]['boxes'] in format 'xyxy' must satisfy x2 >= x1 and y2 >= y1, got box [0.0, 0.0, 10.0, -1.0]",
    ),
    (
        "iscrowd values",
        ([pred()], [target(iscrowd=torch.tensor([2]))]),
        ValueError,
        "y[0]['iscrowd'] must hold only 0 and 1, got [2.0]",
    ),
    (
        "float iscrowd that is not 0 or 1",
        ([pred(), pred()], [target(), target(2, iscrowd=torch.tensor([1.0, 0.5]))]),
        ValueError,
        "y[1]['iscrowd'] must hold only 0 and 1, got [0.5]",
    ),
    (
        "negative prediction area",
        ([pred(area=torch.tensor([4.0, -1.0]))], [target()]),
        ValueError,
        "y_pred[0]['area'] must be >= 0, got [-1.0]",
    ),
    (
        "prediction area length",
        ([pred(area=torch.tensor([4.0]))], [target()]),
        ValueError,
        "y_pred[0]['area'] has 1 entries but y_pred[0]['boxes'] has 2 boxes",
    ),
    (
        "negative area",
        ([pred()], [target(area=torch.tensor([-4.0]))]),
        ValueError,
        "y[0]['area'] must be >= 0, got [-4.0]",
    ),
    (
        "area length",
        ([pred()], [target(area=torch.tensor([4.0, 5.0]))]),
        ValueError,
        "y[0]['area'] has 2 entries but y[0]['boxes'] has 1 boxes",
    ),
    ("float image_id", ([pred()], [target(image_id=1.5)]), TypeError, "y[0]['image_id'] must be an int, got float 1.5"),
    (
        "image_id tensor of two",
        ([pred()], [target(image_id=torch.tensor([1, 2]))]),
        TypeError,
        "y[0]['image_id'] must be an int or a one-element integer tensor",
    ),
    (
        "image_id on some targets only",
        ([pred(), pred()], [target(image_id=1), target()]),
        ValueError,
        "y[1] has no 'image_id' while other targets in the batch have one",
    ),
]


@pytest.mark.parametrize("output, error, message", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_malformed_batch_is_refused_with_a_clear_message(output, error, message):
    metric = CocoMetric()
    with pytest.raises(error, match=re.escape(message)):
        metric.update(output)
    assert metric._store.num_images == 0  # nothing was stored


def test_box_format_errors_name_the_format():
    metric = CocoMetric(box_format="xywh")
    with pytest.raises(ValueError, match=re.escape("in format 'xywh' must satisfy width >= 0 and height >= 0")):
        metric.update(([pred(boxes=torch.tensor([[0.0, 0, -1, 1]] * 2))], [target()]))


def test_switching_from_image_ids_to_none_between_batches_is_refused():
    metric = CocoMetric()
    metric.update(([pred()], [target(image_id=3)]))
    with pytest.raises(ValueError, match="give every target an image_id or none of them"):
        metric.update(([pred()], [target()]))


def test_repeated_image_id_with_different_labels_says_so():
    metric = CocoMetric()
    metric.update(([pred()], [target(image_id=3)]))
    metric.update(([pred()], [target(image_id=3, labels=torch.tensor([2]))]))
    with pytest.raises(ValueError, match=re.escape("(1 boxes each, with different labels)")):
        metric.compute()


def test_repeated_image_id_with_different_ground_truth_is_refused():
    metric = CocoMetric()
    metric.update(([pred()], [target(image_id=3)]))
    metric.update(([pred()], [target(2, image_id=3)]))
    with pytest.raises(ValueError, match="image_id 3 was given more than once with different ground truth"):
        metric.compute()


def test_empty_predictions_and_targets_are_valid():
    metric = CocoMetric()
    empty = torch.zeros(0)
    metric.update(
        (
            [{"boxes": torch.zeros(0, 4), "scores": empty, "labels": empty.long()}],
            [{"boxes": torch.zeros(0, 4), "labels": empty.long()}],
        )
    )
    metric.update(([pred()], [target()]))
    assert metric.compute()["AP"] == pytest.approx(1.0)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"box_format": "xxyy"}, "box_format must be one of ('xyxy', 'xywh', 'cxcywh'), got 'xxyy'"),
        (
            {"backend": "detectron"},
            "backend must be one of ('native', 'pycocotools', 'faster_coco_eval'), got 'detectron'",
        ),
        ({"iou_thresholds": [0.5, 1.5]}, "iou_thresholds must be a non-empty list of numbers in [0, 1]"),
        ({"max_detections": [0, 10]}, "max_detections must be a non-empty list of positive integers"),
        ({"f1_iou_threshold": 0.42}, "f1_iou_threshold=0.42 must be one of iou_thresholds [0.5, 0.55, 0.6,"),
        (
            {"iou_thresholds": np.linspace(0.5, 0.9, 5), "f1_iou_threshold": 0.95},
            "must be one of iou_thresholds [0.5, 0.6, 0.7, 0.8, 0.9]",  # as typed, not 0.8999999999999999
        ),
        ({"area_ranges": {"all": (0, 1)}}, "area_ranges must not contain 'all'"),
    ],
)
def test_bad_arguments_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        CocoMetric(**kwargs)


# --- inputs other tools pass: accepted, and evaluated exactly as pycocotools evaluates them ---------------


@pytest.mark.parametrize("dtype", [torch.int32, torch.int64])
@pytest.mark.parametrize("box_format", ["xyxy", "xywh"])
def test_integer_boxes_are_widened_exactly(dtype, box_format):
    predictions, targets = random_case(4, box_format=box_format, dtype=dtype)  # integer coordinates
    predictions = [{**p, "scores": p["scores"].double()} for p in predictions]
    assert predictions[0]["boxes"].dtype == dtype
    result = evaluate_with_engine(list(zip(predictions, targets)), 3, box_format=box_format)["coco"]
    coco_eval = run_cocoeval(*to_coco(predictions, targets, box_format))
    assert dict(result) == stats_dict(coco_eval)
    assert_same_arrays(result, coco_eval)


def test_float_iscrowd_of_zeros_and_ones_counts_as_integers():
    predictions, targets = random_case(5)
    as_float = [{**t, "iscrowd": t["iscrowd"].float()} for t in targets]
    assert any(t["iscrowd"].sum() for t in as_float)
    result = evaluate_with_engine(list(zip(predictions, as_float)), 4)["coco"]
    coco_eval = run_cocoeval(*to_coco(predictions, targets))
    assert dict(result) == stats_dict(coco_eval)


def test_empty_tensors_of_any_dtype_mean_no_boxes():
    metric = CocoMetric()
    metric.update(([{"boxes": torch.tensor([]), "scores": torch.tensor([]), "labels": torch.tensor([])}], [target()]))
    assert metric.compute()["AP"] == 0.0


@pytest.mark.parametrize(
    "thresholds, expected",
    [(None, 0.5), ([0.3, 0.5, 0.7], 0.5), ([0.75, 0.6, 0.9], 0.6), (np.arange(0.55, 0.96, 0.05), 0.55)],
)
def test_the_operating_point_is_at_iou_half_or_the_lowest_threshold(thresholds, expected):
    result = evaluate_with_engine([(pred(1), target())], 1, iou_thresholds=thresholds)["coco"]
    assert result.f1_iou_threshold == pytest.approx(expected)
    assert result.best_f1.f1 == 1.0


def test_a_predictions_own_area_drives_its_area_range_as_loadres_does_for_masks(real_samples):
    """Segmentation results without a box: loadRes takes the box from the mask and the area from the mask;
    COCOeval's bbox evaluation then uses that mask area for the detection's area range."""
    gt = json.loads(GT_FILE.read_text())
    segm = json.loads((DATA / "instances_val2014_fakesegm100_results.json").read_text())
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = gt
        coco_gt.createIndex()
        coco_dt = coco_gt.loadRes([{k: v for k, v in r.items() if k != "bbox"} for r in segm])
        coco_eval = COCOeval(coco_gt, coco_dt, "bbox")
        coco_eval.evaluate()
        coco_eval.accumulate()
    by_image: dict[int, list] = {i: [] for i in coco_gt.getImgIds()}
    for det in coco_dt.dataset["annotations"]:
        by_image[det["image_id"]].append(det)
    samples = []
    for _, target in real_samples:
        dets = by_image[target["image_id"]]
        prediction = {
            "boxes": torch.tensor(np.array([d["bbox"] for d in dets], dtype=np.float64)).reshape(-1, 4),
            "scores": torch.tensor([d["score"] for d in dets], dtype=torch.float64),
            "labels": torch.tensor([d["category_id"] for d in dets]),
            "area": torch.tensor([d["area"] for d in dets], dtype=torch.float64),
        }
        samples.append((prediction, target))
    assert any(abs(d["area"] - d["bbox"][2] * d["bbox"][3]) > 1 for d in coco_dt.dataset["annotations"])
    names = {c["id"]: c["name"] for c in gt["categories"]}  # pycocotools evaluates every listed category
    result = evaluate_with_engine(samples, 10, box_format="xywh", class_names=names)["coco"]
    assert_same_arrays(result, coco_eval)


@pytest.mark.parametrize("protocol", ["coco", "lvis"])
def test_a_bare_number_for_max_detections_says_what_to_write(protocol):
    lvis = {"category_frequencies": {1: "f"}} if protocol == "lvis" else {}
    with pytest.raises(TypeError, match=re.escape("got 300 (int); for one cap write [300]")):
        CocoMetric(max_detections=300, protocol=protocol, **lvis)
