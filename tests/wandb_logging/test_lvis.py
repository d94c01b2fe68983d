"""The W&B report under ``protocol="lvis"``, read back from real offline runs, against lvis-api's own arrays.

The per-class table gains each class's frequency group (the ground truth file's ``frequency``); the PR curves are
the mean curve of each frequency group and of all classes, computed here from lvis-api's precision array; with
LVIS's 1,203 classes every panel stays small (four curves, a confusion matrix of the worst classes).
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from ignite.engine import Engine
from ignite.handlers.wandb_logger import WandBLogger

from ignite_det import CocoMetric, attach_wandb_logging
from ignite_det.wandb_logging.overlays import OperatingPoint, _make_sample, verdicts
from ignite_det.wandb_logging.report import PER_CLASS_COLUMNS, _per_class_rows, per_class_columns
from tests import wandb_records as wr
from tests.lvis_reference import LvisCase, lvis_case, run_lvis

GROUPS = {"rare": "r", "common": "c", "frequent": "f"}


def _frequencies(case: LvisCase) -> dict[int, str]:
    return {c["id"]: c["frequency"] for c in case.gt["categories"]}


def _run(tmp_path: Path, case: LvisCase, iou_type: str = "bbox") -> tuple[Path, dict[str, Any], Any]:
    metric = CocoMetric(protocol="lvis", category_frequencies=_frequencies(case), iou_type=iou_type)
    evaluator = Engine(lambda engine, batch: (list(batch[0]), list(batch[1])))
    metric.attach(evaluator, "coco")
    logger = WandBLogger(project="ignite-det-tests", mode="offline", dir=str(tmp_path), settings={"silent": True})
    attach_wandb_logging(logger, evaluator, num_images=0)
    predictions, targets = zip(*case.samples)
    state = evaluator.run([(predictions[:5], targets[:5]), (predictions[5:], targets[5:])])
    logger.close()
    run_dir = wr.find_run_dir(tmp_path)
    (row,) = wr.history_rows(run_dir)
    return run_dir, row, state.metrics["coco"]


def _chart_rows(run_dir: Path, row: dict[str, Any], key: str) -> list[dict[str, Any]]:
    chart = wr.charts(run_dir)[key]
    columns, rows = wr.load_table(run_dir, row[wr.chart_table_key(chart)])
    return [dict(zip(columns, r)) for r in rows]


def _group_means(precision: np.ndarray, members: np.ndarray) -> list[list[float]]:
    """lvis-api's precision (R, K) at one IoU: the mean over ``members`` with a defined value, per recall point."""
    recall = np.linspace(0.0, 1.00, 101)
    points = []
    for r, row in zip(recall, precision[:, members]):
        valid = row[row > -1]
        if len(valid):
            points.append([float(r), float(valid.sum() / len(valid))])
    return points


@pytest.mark.parametrize("iou_type", ["bbox", "segm"])
def test_table_has_the_frequency_group_and_curves_are_the_groups_means(tmp_path: Path, iou_type: str) -> None:
    case = lvis_case(2, iou_type, empty_group="c")
    reference = run_lvis(case.gt, case.results, iou_type)
    run_dir, row, result = _run(tmp_path, case, iou_type)
    assert {name: row[f"val/{name}"] for name in reference.stats} == reference.stats

    columns, rows = wr.load_table(run_dir, row["val/per_class"])
    assert columns == ["category_id", "class", "frequency", *PER_CLASS_COLUMNS[2:]]
    records = [dict(zip(columns, r)) for r in rows]
    assert {r["category_id"]: r["frequency"] for r in records} == _frequencies(case)
    assert [r["AP"] for r in records] == [c.AP if c.AP >= 0 else None for c in result.per_class]

    groups = np.array([_frequencies(case)[c] for c in sorted(_frequencies(case))])  # lvis-api's K: sorted ids
    for key, t in (("val/pr_curve_iou50", 0), ("val/pr_curve_iou75", 5)):
        got: dict[str, list[list[float]]] = {}
        for point in _chart_rows(run_dir, row, key):
            got.setdefault(point["lineKey"], []).append([point["step"], point["lineVal"]])
        precision = reference.precision[t, :, :, 0]
        expected = {name: _group_means(precision, groups == g) for name, g in GROUPS.items()}
        expected["mean"] = _group_means(precision, np.ones(len(groups), dtype=bool))
        assert got == {name: points for name, points in expected.items() if points}
        assert "common" not in got  # the group without ground truth: lvis-api's -1, no curve


def test_lvis_sized_report_stays_small(tmp_path: Path) -> None:
    """1,203 classes: four PR curves whatever the number of classes; the heatmap the 10 worst and the rest summed."""
    case = lvis_case(0, "bbox", num_images=6, num_categories=1203, crowded_images=1)
    run_dir, row, result = _run(tmp_path, case)
    columns, rows = wr.load_table(run_dir, row["val/per_class"])
    assert len(rows) == 1203
    assert sorted({r[columns.index("frequency")] for r in rows}) == ["c", "f", "r"]
    for key in ("val/pr_curve_iou50", "val/pr_curve_iou75"):
        assert {p["lineKey"] for p in _chart_rows(run_dir, row, key)} <= {"rare", "common", "frequent", "mean"}
    cells = _chart_rows(run_dir, row, "val/confusion_matrix")
    assert len(cells) == (10 + 2) ** 2


def test_coco_table_has_no_frequency_column() -> None:
    prediction = {"boxes": torch.tensor([[0.0, 0, 10, 10]]), "scores": torch.tensor([0.9]), "labels": torch.tensor([1])}
    target = {"boxes": torch.tensor([[0.0, 0, 10, 10]]), "labels": torch.tensor([1]), "image_id": 1}
    metric = CocoMetric()
    metric.update(([prediction], [target]))
    result = metric.compute()
    assert per_class_columns(result) == PER_CLASS_COLUMNS
    assert len(_per_class_rows(result)[0]) == len(PER_CLASS_COLUMNS)


def _lvis_api_verdicts(case: LvisCase, iou_type: str) -> Counter:
    """Per detection of the results, lvis-api's verdict at IoU 0.5 (area "all") from its ``eval_imgs``:
    ``TP``/``FP``/``ignored``, and ``uncounted`` for those it never evaluates (beyond 300, unverified)."""
    evaluator = run_lvis(case.gt, case.results, iou_type).evaluator
    verdict: dict[int, str] = {}
    for record in evaluator.eval_imgs:
        if record is None or record["area_rng"] != evaluator.params.area_rng[0]:
            continue
        for k, dt_id in enumerate(record["dt_ids"]):
            matched, ignored = record["dt_matches"][0, k] > 0, record["dt_ignore"][0, k] > 0
            verdict[dt_id] = "ignored" if ignored else ("TP" if matched else "FP")
    counted = Counter(_key(evaluator.lvis_dt.anns[i], verdict[i], iou_type) for i in verdict)
    every = Counter(_key(r, "uncounted", iou_type) for r in case.results)
    for (image, category, score, box, _), n in counted.items():
        every[(image, category, score, box, "uncounted")] -= n
    return +(every + counted)


def _key(result: dict, verdict: str, iou_type: str) -> tuple:
    """A detection by image, category, score and (for bbox) box; masks are told apart by the rest."""
    box = tuple(round(float(v), 6) for v in result["bbox"]) if iou_type == "bbox" else None
    return (result["image_id"], result["category_id"], round(float(result["score"]), 6), box, verdict)


@pytest.mark.parametrize(("iou_type", "seed"), [("bbox", 0), ("bbox", 1), ("segm", 2)])
def test_picture_verdicts_are_lvis_apis(iou_type: str, seed: int) -> None:
    """Every detection's verdict on the pictures equals lvis-api's at IoU 0.5: unverified categories and those
    beyond 300 are 'uncounted', unmatched detections of not-exhaustive categories 'ignored'."""
    case = lvis_case(seed, iou_type)
    metric = CocoMetric(protocol="lvis", category_frequencies=_frequencies(case), iou_type=iou_type)
    predictions, targets = zip(*case.samples)
    metric.update((list(predictions), list(targets)))
    point = dataclasses.replace(OperatingPoint.of(metric.compute()), iou_index=0)
    got: Counter = Counter()
    for prediction, target in case.samples:
        sample = _make_sample(target["image_id"], torch.zeros(3, 4, 4), prediction, target, "xyxy")
        kind, d = sample.table(iou_type)
        found = verdicts(d, point, sample.lvis_lists)
        for label, score, box, verdict in zip(d.det_labels, d.det_scores, d.det_boxes, found.detections):
            result = {"image_id": target["image_id"], "category_id": label, "score": score, "bbox": box}
            got[_key(result, verdict, iou_type)] += 1
    expected = _lvis_api_verdicts(case, iou_type)
    assert got == expected
    assert {key[-1] for key in expected} == {"TP", "FP", "ignored", "uncounted"}
