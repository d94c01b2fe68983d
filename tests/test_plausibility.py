"""Silent mistakes get a warning that says what it saw: the cocoapi's real files, turned into each mistake.

Each mistake is scored by pycocotools on the same file too: the warning changes no number.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

from ignite_det import STAT_NAMES, CocoMetric, plausibility
from ignite_det.cli.main import main
from ignite_det.plausibility import ImplausibleInputWarning
from tests.coco_reference import GT_FILE, load_real_samples, run_cocoeval, stats_dict


def _cli(tmp_path: Path, gt: dict, results: list[dict], capsys) -> tuple[dict[str, float], list[str]]:
    """The report's 12 numbers and the warning lines on stderr of ``ignite-det evaluate``."""
    gt_file, results_file, report = tmp_path / "gt.json", tmp_path / "results.json", tmp_path / "report.json"
    gt_file.write_text(json.dumps(gt))
    results_file.write_text(json.dumps(results))
    capsys.readouterr()
    assert main(["evaluate", str(gt_file), str(results_file), "--output", str(report)]) == 0
    stats = json.loads(report.read_text())
    lines = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    return {name: stats[name] for name in STAT_NAMES}, lines


def _as_xyxy(results: list[dict]) -> list[dict]:
    return [{**r, "bbox": [x, y, x + w, y + h]} for r in results for x, y, w, h in [r["bbox"]]]


def _normalised(results: list[dict], gt: dict) -> list[dict]:
    size = {image["id"]: (image["width"], image["height"]) for image in gt["images"]}
    out = []
    for r in results:
        width, height = size[r["image_id"]]
        x, y, w, h = r["bbox"]
        out.append({**r, "bbox": [x / width, y / height, w / width, h / height]})
    return out


def _shifted(results: list[dict], by: int) -> list[dict]:
    return [{**r, "category_id": r["category_id"] + by} for r in results]


# ---------------------------------------------------------------------------------------------------------
# The command line
# ---------------------------------------------------------------------------------------------------------


def test_real_files_give_no_warning(tmp_path: Path, gt, results, capsys) -> None:
    stats, lines = _cli(tmp_path, gt, results, capsys)
    assert lines == []
    assert stats == stats_dict(run_cocoeval(gt, results))


def test_xyxy_results_are_named_with_the_count(tmp_path: Path, gt, results, capsys) -> None:
    xyxy = _as_xyxy(results)
    stats, lines = _cli(tmp_path, gt, xyxy, capsys)
    assert len(lines) == 1
    assert "568 of 734 boxes extend beyond their image" in lines[0]
    assert "are they [x1, y1, x2, y2]? COCO results are [x, y, w, h]" in lines[0]
    assert stats == stats_dict(run_cocoeval(gt, xyxy))  # the number is pycocotools' own
    assert stats["AP"] < 0.05


def test_a_few_boxes_past_the_edge_are_no_xyxy(tmp_path: Path, gt, results, capsys) -> None:
    """Real xywh files reach past their image by rounding at most; a tenth of the boxes does not warn."""
    results = copy.deepcopy(results)
    for r in results[:73]:  # just under a tenth, each well past its image
        r["bbox"][2] += 2000
    _, lines = _cli(tmp_path, gt, results, capsys)
    assert lines == []


def test_normalised_results_are_named(tmp_path: Path, gt, results, capsys) -> None:
    unit = _normalised(results, gt)
    stats, lines = _cli(tmp_path, gt, unit, capsys)
    assert len(lines) == 1
    assert "every predicted box lies within [-1, 1]" in lines[0] and "over 734 boxes" in lines[0]
    assert "the ground truth's reach 640" in lines[0] and "are the predictions normalised?" in lines[0]
    assert stats == stats_dict(run_cocoeval(gt, unit))


def test_the_command_says_it_once(tmp_path: Path, gt, results) -> None:
    """In a fresh process, where Python would print the metric's own warning: stderr has one line."""
    results_file = tmp_path / "results.json"
    results_file.write_text(json.dumps(_normalised(results, gt)))
    command = [sys.executable, "-m", "ignite_det", "evaluate", str(GT_FILE), str(results_file)]
    run = subprocess.run(command, capture_output=True, text=True, check=True)
    assert run.stderr.splitlines() == [
        f"ignite-det: warning: {results_file}: every predicted box lies within [-1, 1] (largest coordinate 1, over "
        "734 boxes) while the ground truth's reach 640: are the predictions normalised? Scale them to pixels (x by "
        "the image's width, y by its height) before evaluating"
    ]


def test_category_ids_shifted_by_one_are_named(tmp_path: Path, gt, results, capsys) -> None:
    shifted = _shifted(results, -1)
    stats, lines = _cli(tmp_path, gt, shifted, capsys)
    assert len(lines) == 2
    assert "251 of 734 results have category ids not in the ground truth" in lines[0]
    assert "results name a category of their image only once 1 is added to their category id" in lines[1]
    assert "are the predicted ids 0-based where the ground truth's start at 1?" in lines[1]
    assert stats == stats_dict(run_cocoeval(gt, shifted))


def test_category_ids_one_too_high_are_named(tmp_path: Path, gt, results, capsys) -> None:
    _, lines = _cli(tmp_path, gt, _shifted(results, 1), capsys)
    assert "only once 1 is taken from their category id" in lines[-1]
    assert "1-based where the ground truth's start at 0?" in lines[-1]


# ---------------------------------------------------------------------------------------------------------
# The metric: once per evaluation, at compute()
# ---------------------------------------------------------------------------------------------------------


def _metric_stats(samples: list[tuple[dict, dict]], batch_size: int = 10) -> tuple[dict[str, float], list[str]]:
    """The metric's numbers and its ImplausibleInputWarnings, fed ``batch_size`` images per update."""
    metric = CocoMetric(box_format="xywh")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for start in range(0, len(samples), batch_size):
            chunk = samples[start : start + batch_size]
            metric.update(([p for p, _ in chunk], [t for _, t in chunk]))
        result = metric.compute()
    found = [str(w.message) for w in caught if issubclass(w.category, ImplausibleInputWarning)]
    return {name: result[name] for name in STAT_NAMES}, found


def test_metric_real_samples_give_no_warning(gt, results) -> None:
    stats, found = _metric_stats(load_real_samples())
    assert found == []
    assert stats == stats_dict(run_cocoeval(gt, results))


def _normalised_samples(gt: dict) -> list[tuple[dict, dict]]:
    """The real samples with each predicted box divided by its image's width and height."""
    size = {image["id"]: (image["width"], image["height"]) for image in gt["images"]}
    samples = []
    for prediction, target in load_real_samples():
        width, height = size[target["image_id"]]
        scale = torch.tensor([width, height, width, height], dtype=torch.float64)
        samples.append(({**prediction, "boxes": prediction["boxes"] / scale}, target))
    return samples


def test_metric_warns_once_about_normalised_boxes(gt, results) -> None:
    samples = _normalised_samples(gt)
    stats, found = _metric_stats(samples)
    assert len(found) == 1  # ten updates, one warning
    assert found[0].startswith("CocoMetric: every predicted box lies within [-1, 1]") and "over 734 boxes" in found[0]
    assert stats == stats_dict(run_cocoeval(gt, _normalised(results, gt)))


def test_metric_judges_its_first_images(gt, monkeypatch) -> None:
    """The metric looks at its first METRIC_SAMPLE_IMAGES images (in arrival order) only."""
    monkeypatch.setattr(plausibility, "METRIC_SAMPLE_IMAGES", 3)
    samples = _normalised_samples(gt)
    first = sum(len(p["boxes"]) for p, _ in samples[:3])
    _, found = _metric_stats(samples)
    assert len(found) == 1 and f"over {first} boxes" in found[0]
    _, found = _metric_stats(load_real_samples()[:3] + samples[3:])  # normalised after the first three: unseen
    assert found == []


def test_metric_warns_once_about_xyxy_boxes_given_as_xywh(gt, results) -> None:
    """The real results' boxes as [x1, y1, x2, y2] to a metric told xywh: each has w >= x and h >= y, where an
    eighth of the real ground truth's boxes do (counted here)."""
    samples = []
    for prediction, target in load_real_samples():
        corners = prediction["boxes"].clone()
        corners[:, 2:] += corners[:, :2]
        samples.append(({**prediction, "boxes": corners}, target))
    stats, found = _metric_stats(samples)
    boxes = [a["bbox"] for a in gt["annotations"]]
    gt_share = sum(w >= x and h >= y for x, y, w, h in boxes) / len(boxes)
    assert len(found) == 1
    assert found[0].startswith(
        f"CocoMetric: 734 of 734 predicted boxes are as wide as their x and as tall as their y, "
        f"against {gt_share:.0%} of the ground truth's: are they [x1, y1, x2, y2]?"
    )
    as_corners = [{**r, "bbox": [x, y, x + w, y + h]} for r in results for x, y, w, h in [r["bbox"]]]
    assert stats == stats_dict(run_cocoeval(gt, as_corners))  # the number is still COCOeval's


def test_metric_warns_once_about_shifted_labels(gt, results) -> None:
    samples = [({**p, "labels": p["labels"] - 1}, t) for p, t in load_real_samples()]
    stats, found = _metric_stats(samples)
    assert len(found) == 1
    assert "results name a category of their image only once 1 is added to their category id" in found[0]
    assert stats == stats_dict(run_cocoeval(gt, _shifted(results, -1)))


def test_one_category_off_by_one_is_no_shift() -> None:
    """A single category cannot tell a shift from a wrong class (the generated "absent categories" case)."""
    samples = [
        ({**p, "labels": torch.full_like(p["labels"], 2)}, {**t, "labels": torch.ones_like(t["labels"])})
        for p, t in load_real_samples()
    ]
    _, found = _metric_stats(samples)
    assert found == []


def test_swapped_pair_is_named() -> None:
    prediction, target = load_real_samples()[0]
    with pytest.raises(ValueError) as error:
        CocoMetric(box_format="xywh").update(([target], [prediction]))
    message = str(error.value)
    assert message.startswith("y_pred[0] is missing key(s) ['scores'] (it has ['area', 'boxes', 'image_id', 'iscrowd'")
    assert "and y[0] has 'scores': are y_pred and y swapped? update() takes (y_pred, y)" in message


def test_missing_scores_without_a_swap_keeps_its_message() -> None:
    prediction, target = load_real_samples()[0]
    del prediction["scores"]
    with pytest.raises(ValueError, match=r"^y_pred\[0\] is missing key\(s\) \['scores'\]; expected keys"):
        CocoMetric(box_format="xywh").update(([prediction], [target]))
