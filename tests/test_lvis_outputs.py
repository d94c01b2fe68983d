"""``result.per_image`` and ``write_predictions`` under ``protocol="lvis"``, against lvis-api itself.

- per image: counts brute-forced from lvis-api's ``eval_imgs`` (``LVISEval.evaluate_img``, area "all"), as
  pycocotools' ``evalImgs`` are used for COCO: ``num_gt`` its ground truths, ``num_det`` its detections (those the
  300 cap and the federated filter kept), ``tp``/``fp`` its matched / unmatched detections it does not ignore;
- written predictions: lvis-api evaluating the written file against the same ground truth gives the metric's 13
  numbers and its precision and recall arrays. The file holds what lvis-api evaluates: detections beyond the
  300 of their image and those the federated filter drops are not written (lvis-api would drop them again).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ignite_det import CocoMetric
from ignite_det.cli.main import main
from ignite_det.per_image import PER_IMAGE_COLUMNS
from tests.harness import write_json
from tests.lvis_reference import lvis_case, lvis_val_100, lvis_val_100_results, run_lvis

IOU_50, IOU_75 = 0, 5  # lvis-api's IoU thresholds 0.5:0.05:0.95


def _metric(case_gt: dict, samples: list, iou_type: str) -> CocoMetric:
    frequencies = {c["id"]: c["frequency"] for c in case_gt["categories"]}
    metric = CocoMetric(iou_type=iou_type, protocol="lvis", category_frequencies=frequencies)
    for start in range(0, len(samples), 4):
        batch = samples[start : start + 4]
        metric.update(([p for p, _ in batch], [t for _, t in batch]))
    return metric


def _lvis_api_rows(case_gt: dict, results: list[dict], iou_type: str) -> dict[int, list[int]]:
    """Per image id, the :data:`PER_IMAGE_COLUMNS` counted from lvis-api's ``eval_imgs`` (area "all")."""
    evaluator = run_lvis(case_gt, results, iou_type).evaluator
    rows = {image["id"]: [image["id"]] + [0] * 8 for image in case_gt["images"]}
    for record in evaluator.eval_imgs:
        if record is None or record["area_rng"] != evaluator.params.area_rng[0]:
            continue
        row = rows[record["image_id"]]
        num_gt = int((np.asarray(record["gt_ignore"]) == 0).sum())
        row[1] += num_gt
        row[2] += len(record["dt_ids"])
        for column, t in ((3, IOU_50), (6, IOU_75)):
            matched, ignored = record["dt_matches"][t] > 0, record["dt_ignore"][t] > 0
            tp = int((matched & ~ignored).sum())
            row[column] += tp
            row[column + 1] += int((~matched & ~ignored).sum())
            row[column + 2] += num_gt - tp
    return rows


@pytest.mark.parametrize(("iou_type", "seed"), [("bbox", 0), ("bbox", 1), ("segm", 2), ("segm", 3)])
def test_per_image_counts_equal_lvis_apis_eval_imgs(iou_type: str, seed: int) -> None:
    case = lvis_case(seed, iou_type)
    expected = _lvis_api_rows(case.gt, case.results, iou_type)
    got = _metric(case.gt, case.samples, iou_type).compute().per_image.rows()
    assert [[row[c] for c in PER_IMAGE_COLUMNS] for row in got] == [expected[i] for i in sorted(expected)]
    assert sum(row["fp50"] for row in got) > 0 and sum(row["tp75"] for row in got) > 0


@pytest.mark.parametrize("iou_type", ["bbox", "segm"])
def test_per_image_counts_on_real_lvis_images_through_the_command_line(tmp_path: Path, iou_type: str) -> None:
    gt = lvis_val_100()
    results = lvis_val_100_results(gt, 0, iou_type)
    expected = _lvis_api_rows(gt, results, iou_type)
    gt_path, results_path = write_json(tmp_path, "gt.json", gt), write_json(tmp_path, "results.json", results)
    out = tmp_path / "report.json"
    command = ["evaluate", str(gt_path), str(results_path), "--protocol", "lvis", "--iou-type", iou_type]
    assert main([*command, "--per-image", "--output", str(out)]) == 0
    got = json.loads(out.read_text())["per_image"]
    assert [[row[c] for c in PER_IMAGE_COLUMNS] for row in got] == [expected[i] for i in sorted(expected)]


@pytest.mark.parametrize(("iou_type", "seed"), [("bbox", 0), ("bbox", 3), ("segm", 1)])
def test_written_predictions_evaluated_by_lvis_api_give_the_metrics_numbers(
    tmp_path: Path, iou_type: str, seed: int
) -> None:
    case = lvis_case(seed, iou_type)
    metric = _metric(case.gt, case.samples, iou_type)
    result = metric.compute()
    path = tmp_path / "results.json"
    written = metric.write_predictions(path)
    reference = run_lvis(case.gt, json.loads(path.read_text()), iou_type)
    assert dict(result) == reference.stats
    np.testing.assert_array_equal(result.precision[..., 0], reference.precision)
    np.testing.assert_array_equal(result.recall[..., 0], reference.recall)
    # What is written is what lvis-api evaluates of the original results: its detections over every area.
    evaluated = _lvis_api_rows(case.gt, case.results, iou_type)
    assert written == sum(row[2] for row in evaluated.values()) < len(case.results)
