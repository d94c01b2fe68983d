"""The W&B handlers on evaluations with nothing to count: no detections, no ground truth, neither,
detections only of classes absent from the ground truth, and ground truth made only of crowd regions.

Each case runs a real evaluator with a real ``CocoMetric`` and ``attach_wandb_logging``; all cases log
to one offline W&B run, each under its own tag, which is read back: what is logged must be defined (no
NaN number, no "nan" in a title or cell) and say in words why a number is missing.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
from ignite.engine import Engine
from ignite.handlers.wandb_logger import WandBLogger

from ignite_det import STAT_NAMES, CocoMetric, attach_wandb_logging
from ignite_det.wandb_logging.report import PER_CLASS_COLUMNS
from tests import wandb_records as wr

CLASSES = {1: "cat", 2: "dog"}
BOXES = [[10.0, 10.0, 50.0, 40.0], [60.0, 20.0, 90.0, 60.0]]


def _boxes(rows: list[list[float]]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float32).reshape(-1, 4)


def _target(image_id: int, labels: list[int], crowd: bool = False) -> dict[str, Any]:
    return {
        "boxes": _boxes(BOXES[: len(labels)]),
        "labels": torch.tensor(labels, dtype=torch.int64),
        "iscrowd": torch.full((len(labels),), int(crowd), dtype=torch.int64),
        "image_id": image_id,
    }


def _prediction(labels: list[int]) -> dict[str, torch.Tensor]:
    return {
        "boxes": _boxes(BOXES[: len(labels)]),
        "scores": torch.tensor([0.9, 0.6][: len(labels)], dtype=torch.float32),
        "labels": torch.tensor(labels, dtype=torch.int64),
    }


@dataclass(frozen=True)
class Case:
    """Two images: their predicted and ground truth labels (boxes from BOXES), and the title's words."""

    pred_labels: list[int]
    gt_labels: list[int]
    crowd: bool
    threshold_words: str
    has_ground_truth: bool  # some non-crowd ground truth: PR and F1 curves are drawn


CASES = {
    "no_detections": Case([], [1, 2], False, "no score threshold (no detection)", True),
    "no_ground_truth": Case([1, 2], [], False, "no score threshold (no ground truth)", False),
    "nothing": Case([], [], False, "no score threshold (no ground truth)", False),
    # every detection is a false positive, yet the best F1 (0) has a threshold: the highest score
    "other_classes": Case([2, 2], [1, 1], False, "score >= 0.900", True),
    "all_crowd": Case([1, 2], [1, 2], True, "no score threshold (no ground truth)", False),
}


def _evaluate(logger: WandBLogger, tag: str, case: Case) -> Engine:
    evaluator = Engine(lambda engine, batch: (batch[1], batch[2]))
    CocoMetric(class_names=CLASSES).attach(evaluator, "coco")
    attach_wandb_logging(logger, evaluator, tag=tag, num_images=2, score_threshold=0.0)
    images = [torch.rand(3, 64, 96, generator=torch.Generator().manual_seed(i)) for i in (1, 2)]
    preds = [_prediction(case.pred_labels) for _ in images]
    targets = [_target(i, case.gt_labels, case.crowd) for i in (1, 2)]
    evaluator.run([(images, preds, targets)])
    return evaluator


@dataclass
class Logged:
    run_dir: Path
    row: dict[str, Any]  # the one history row: every case logs at step 1
    summary: dict[str, Any]
    charts: dict[str, Any]
    results: dict[str, Any]  # case -> CocoResult


@pytest.fixture(scope="module")
def logged(tmp_path_factory: pytest.TempPathFactory) -> Logged:
    tmp_path = tmp_path_factory.mktemp("wandb_empty")
    logger = WandBLogger(project="ignite-det-tests", mode="offline", dir=str(tmp_path), settings={"silent": True})
    results = {name: _evaluate(logger, name, case).state.metrics["coco"] for name, case in CASES.items()}
    logger.close()
    run_dir = wr.find_run_dir(tmp_path)
    (row,) = wr.history_rows(run_dir)
    return Logged(run_dir, row, wr.summary(run_dir), wr.charts(run_dir), results)


def _leaves(value: Any) -> Iterator[Any]:
    if isinstance(value, dict):
        for item in value.values():
            yield from _leaves(item)
    elif isinstance(value, list):
        for item in value:
            yield from _leaves(item)
    else:
        yield value


def _assert_defined(value: Any, where: str) -> None:
    for leaf in _leaves(value):
        assert not (isinstance(leaf, float) and not math.isfinite(leaf)), f"{where}: {leaf}"
        assert not (isinstance(leaf, str) and re.search(r"\b(nan|inf)\b", leaf, re.IGNORECASE)), f"{where}: {leaf!r}"


@pytest.mark.parametrize("case", list(CASES))
def test_the_report_is_logged_and_defined(logged: Logged, case: str) -> None:
    row, result = logged.row, logged.results[case]
    assert {name: row[f"{case}/{name}"] for name in STAT_NAMES} == dict(result)
    for key in ("per_class", "confusion_matrix_table", "detections"):
        assert f"{case}/{key}" in row
    for key, value in row.items():
        if key.startswith(f"{case}/"):
            _assert_defined(value, key)
    columns, rows = wr.load_table(logged.run_dir, row[f"{case}/per_class"])
    assert columns == list(PER_CLASS_COLUMNS)
    assert [r[1] for r in rows] == [CLASSES[c] for c in result.category_ids]
    _assert_defined(rows, f"{case}/per_class")


@pytest.mark.parametrize("case", list(CASES))
def test_an_undefined_operating_point_is_left_out_not_nan(logged: Logged, case: str) -> None:
    best = logged.results[case].best_f1
    for name, value in (("precision", best.precision), ("recall", best.recall), ("F1", best.f1)):
        assert (f"{case}/{name}" in logged.row) == math.isfinite(value)
    assert (f"{case}/best_f1_threshold" in logged.row) == (CASES[case].threshold_words.startswith("score"))


@pytest.mark.parametrize("case", list(CASES))
def test_the_confusion_matrix_title_says_why_there_is_no_threshold(logged: Logged, case: str) -> None:
    chart = logged.charts[f"{case}/confusion_matrix"]
    _assert_defined(chart, f"{case}/confusion_matrix chart")
    assert chart["panel_config"]["stringSettings"]["title"] == (
        f"{case} confusion matrix @ IoU 0.5, {CASES[case].threshold_words}"
    )
    columns, rows = wr.load_table(logged.run_dir, logged.row[wr.chart_table_key(chart)])
    k = len(logged.results[case].category_ids) + 1
    assert columns == ["Actual", "Predicted", "nPredictions"] and len(rows) == k * k


@pytest.mark.parametrize("case", list(CASES))
def test_curves_are_drawn_only_from_defined_points(logged: Logged, case: str) -> None:
    for name in ("pr_curve_iou50", "pr_curve_iou75", "f1_curve"):
        assert (f"{case}/{name}" in logged.charts) == CASES[case].has_ground_truth
    for name in ("pr_curve_iou50", "pr_curve_iou75", "f1_curve"):
        chart = logged.charts.get(f"{case}/{name}")
        if chart is not None:
            _columns, rows = wr.load_table(logged.run_dir, logged.row[wr.chart_table_key(chart)])
            assert rows, f"{case}/{name} is logged empty"
            _assert_defined(rows, f"{case}/{name}")


@pytest.mark.parametrize("case", list(CASES))
def test_the_best_ap_is_kept_only_when_defined(logged: Logged, case: str) -> None:
    ap = logged.results[case]["AP"]
    assert (f"{case}/AP_best" in logged.summary) == (ap >= 0)
    if ap >= 0:
        assert logged.summary[f"{case}/AP_best"] == ap


@pytest.mark.parametrize("case", list(CASES))
def test_images_are_logged_with_their_boxes(logged: Logged, case: str) -> None:
    images = wr.load_images(logged.run_dir, logged.row[f"{case}/detections"])
    assert [image["caption"].split(";")[0] for image in images] == ["image_id 1", "image_id 2"]
    for image in images:
        layers = image["boxes"]
        shown = layers["predictions"]["box_data"] + layers["below_threshold"]["box_data"]
        assert len(shown) == len(CASES[case].pred_labels)
        assert len(image["boxes"]["ground_truth"]["box_data"]) == len(CASES[case].gt_labels)
