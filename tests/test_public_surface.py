"""The public surface: Literal choices, keyword-only arguments, Ignite's Metric options, deprecated names."""

from __future__ import annotations

import math
import typing

import pytest
from ignite.engine import Engine

from ignite_det import Backend, BoxFormat, CocoMetric, IouType
from ignite_det.backends import BACKENDS
from ignite_det.params import BOX_FORMATS, IOU_TYPES
from tests.coco_reference import random_case, run_cocoeval, stats_dict, to_coco


def _evaluate(seed: int, **metric_args: typing.Any) -> dict:
    predictions, targets = random_case(seed)
    evaluator = Engine(lambda engine, batch: batch)
    CocoMetric(**metric_args).attach(evaluator, "coco")
    return evaluator.run([(predictions, targets)]).metrics


def test_the_literal_types_list_exactly_the_choices_the_checks_accept():
    assert typing.get_args(BoxFormat) == BOX_FORMATS
    assert typing.get_args(Backend) == BACKENDS
    assert typing.get_args(IouType) == IOU_TYPES == ("bbox", "segm", "keypoints")
    assert typing.get_type_hints(CocoMetric.__init__)["backend"] == Backend


def test_arguments_after_box_format_are_keyword_only():
    CocoMetric("xywh", iou_type="bbox")
    with pytest.raises(TypeError, match="positional"):
        CocoMetric("xyxy", "bbox")  # type: ignore[misc]


@pytest.mark.parametrize("mode", ["named", "flatten", "both"])
def test_metrics_result_mode_is_passed_on_to_ignite(mode):
    predictions, targets = random_case(3)
    reference = stats_dict(run_cocoeval(*to_coco(predictions, targets)))
    metrics = _evaluate(3, metrics_result_mode=mode)
    expected_keys = {"named": {"coco"}, "flatten": set(reference), "both": {"coco", *reference}}[mode]
    assert set(metrics) == expected_keys
    numbers = metrics["coco"] if mode == "named" else metrics
    assert {name: numbers[name] for name in reference} == reference


def test_an_unknown_keyword_names_what_ignite_takes():
    with pytest.raises(TypeError, match=r"unexpected keyword argument\(s\) \['result_mode'\].*metrics_result_mode"):
        CocoMetric(result_mode="named")
    with pytest.raises(TypeError, match="skip_unrolling"):
        CocoMetric(skip_unrolling=False)


def test_ar_max_is_the_recall_at_the_largest_max_detections_and_ar100_a_deprecated_alias():
    predictions, targets = random_case(5)
    gt, results = to_coco(predictions, targets)
    result = _evaluate(5, max_detections=[1, 10, 300])["coco"]
    for row in result.per_class:
        reference = run_cocoeval(gt, results, catIds=[row.category_id], maxDets=[1, 10, 300])
        assert row.AR_max == float(reference.stats[8])  # pycocotools' AR at maxDets[2], here 300
        with pytest.warns(DeprecationWarning, match="AR_max"):
            assert row.AR100 == row.AR_max
    assert "AR300" in result.class_table().splitlines()[0]


def test_confusion_score_threshold_is_a_deprecated_alias_of_counting_threshold():
    result = _evaluate(7)["coco"]
    assert math.isfinite(result.best_f1.counting_threshold)
    assert result.best_f1.counting_threshold == result.best_f1.threshold
    with pytest.warns(DeprecationWarning, match="best_f1.counting_threshold"):
        assert result.confusion_score_threshold == result.best_f1.counting_threshold
