"""``ignite-det evaluate``: the published COCO numbers from the files, one-line errors, the W&B run it writes."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from ignite_det import STAT_NAMES
from ignite_det.cli import main
from tests import wandb_records as wr
from tests.coco_reference import GT_FILE, PUBLISHED_BBOX, RESULTS_FILE, run_cocoeval, stats_dict

BACKENDS = ("pycocotools", "faster_coco_eval")
SUMMARY_FIRST_LINE = " Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ] = 0.505"


def _evaluate(tmp_path: Path, *extra: str, gt: Path = GT_FILE, results: Path = RESULTS_FILE) -> tuple[int, dict]:
    report = tmp_path / "report.json"
    code = main(["evaluate", str(gt), str(results), "--output", str(report), *extra])
    return code, json.loads(report.read_text()) if report.exists() else {}


@pytest.fixture(scope="module")
def gt() -> dict[str, Any]:
    return json.loads(GT_FILE.read_text())


@pytest.fixture(scope="module")
def results() -> list[dict[str, Any]]:
    return json.loads(RESULTS_FILE.read_text())


# ---------------------------------------------------------------------------------------------------------
# Numbers and output
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_published_numbers_in_report_and_summary(tmp_path: Path, capsys, backend: str) -> None:
    code, report = _evaluate(tmp_path, "--backend", backend)
    assert code == 0
    assert {name: report[name] for name in STAT_NAMES} == PUBLISHED_BBOX
    assert len(report["per_class"]) == 80 and report["num_images"] == 100
    assert set(report["best_f1"]) == {"threshold", "precision", "recall", "f1"}
    out = capsys.readouterr().out.splitlines()
    assert out[0] == SUMMARY_FIRST_LINE and len(out) == 12  # the summary only, without --per-class


def test_per_class_prints_the_table(tmp_path: Path, capsys) -> None:
    assert main(["evaluate", str(GT_FILE), str(RESULTS_FILE), "--per-class"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(SUMMARY_FIRST_LINE)
    assert "Best F1 at IoU=0.50" in out
    assert any(line.startswith("class ") for line in out.splitlines())
    assert any(line.startswith("person ") for line in out.splitlines())


def test_images_without_predictions_are_evaluated(tmp_path: Path, gt: dict, results: list) -> None:
    """Predictions for two images only: the other 98 still count (their ground truth is missed)."""
    kept_ids = sorted({r["image_id"] for r in results})[:2]
    subset = [r for r in results if r["image_id"] in kept_ids]
    path = tmp_path / "subset.json"
    path.write_text(json.dumps(subset))
    code, report = _evaluate(tmp_path, results=path)
    assert code == 0 and report["num_images"] == len(gt["images"])
    assert {name: report[name] for name in STAT_NAMES} == stats_dict(run_cocoeval(gt, subset))


def test_custom_iou_thresholds(tmp_path: Path) -> None:
    """AP50 and AP75 do not depend on the other thresholds: they stay the published ones."""
    code, report = _evaluate(tmp_path, "--max-dets", "1", "10", "100", "--iou-thresholds", "0.5", "0.75")
    assert code == 0 and report["iou_thresholds"] == [0.5, 0.75]
    assert (report["AP50"], report["AP75"]) == (PUBLISHED_BBOX["AP50"], PUBLISHED_BBOX["AP75"])
    assert math.isclose(report["AP"], (report["AP50"] + report["AP75"]) / 2)


def test_python_dash_m(tmp_path: Path) -> None:
    report = tmp_path / "report.json"
    command = [sys.executable, "-m", "ignite_det", "evaluate", str(GT_FILE), str(RESULTS_FILE), "--output", str(report)]
    out = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[0] == SUMMARY_FIRST_LINE
    assert json.loads(report.read_text())["AP"] == PUBLISHED_BBOX["AP"]


# ---------------------------------------------------------------------------------------------------------
# Malformed input: exit 2, one line naming the file and the problem
# ---------------------------------------------------------------------------------------------------------


def _one(results: list, index: int, **change: Any) -> list:
    return [dict(r, **change) if i == index else r for i, r in enumerate(results)]


def _without(results: list, index: int, key: str) -> list:
    return [{k: v for k, v in r.items() if k != key} if i == index else r for i, r in enumerate(results)]


# (name, predictions: results -> content or raw text, expected words)
PREDICTION_CASES = [
    ("invalid_json", lambda r: '[{"image_id": 1,', ["not valid JSON"]),
    ("not_a_list", lambda r: {"annotations": r}, ["must be a JSON list", "got a JSON dict"]),
    ("entry_not_object", lambda r: [*r[:3], 7], ["results[3] must be an object, got int"]),
    ("missing_score", lambda r: _without(r, 5, "score"), ["results[5] has no 'score' key"]),
    ("missing_bbox", lambda r: _without(r, 0, "bbox"), ["results[0] has no 'bbox' key"]),
    (
        "unknown_image",
        lambda r: _one(_one(r, 2, image_id=999999), 4, image_id=123456789),
        ["2 of 734 results have image ids not in the ground truth (2 distinct: 999999, 123456789)"],
    ),
    (
        "unknown_category",
        lambda r: _one(r, 1, category_id=1000),
        ["1 of 734 results have category ids not in the ground truth (1 distinct: 1000)"],
    ),
    ("nan_box", lambda r: _one(r, 3, bbox=[1.0, float("nan"), 2.0, 2.0]), ["results[3]['bbox'] must be finite"]),
    ("inf_score", lambda r: _one(r, 6, score=float("inf")), ["results[6]['score'] must be finite, got inf"]),
    ("negative_width", lambda r: _one(r, 2, bbox=[1, 1, -3, 2]), ["results[2]['bbox']", "width, height >= 0"]),
    ("short_box", lambda r: _one(r, 4, bbox=[1, 2, 3]), ["results[4]['bbox'] must be a list of 4 numbers"]),
    ("string_score", lambda r: _one(r, 1, score="0.5"), ["results[1]['score'] must be a number, got '0.5'"]),
    ("float_image_id", lambda r: _one(r, 0, image_id=1.5), ["results[0]['image_id'] must be an integer"]),
]


@pytest.mark.parametrize("name, make, words", PREDICTION_CASES, ids=[c[0] for c in PREDICTION_CASES])
def test_malformed_predictions(tmp_path: Path, capsys, results: list, name: str, make, words: list[str]) -> None:
    path = tmp_path / f"{name}.json"
    content = make(results)
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    _assert_one_line_error(main(["evaluate", str(GT_FILE), str(path)]), capsys, path, words)


GT_CASES = [
    ("not_object", lambda g: [g], ["must be a JSON object, got list"]),
    ("no_annotations", lambda g: {k: v for k, v in g.items() if k != "annotations"}, ["has no 'annotations' key"]),
    (
        "missing_area",
        lambda g: dict(g, annotations=_without(g["annotations"], 4, "area")),
        ["annotations[4] has no 'area' key"],
    ),
    (
        "unknown_image",
        lambda g: dict(g, annotations=_one(g["annotations"], 0, image_id=-5)),
        ["annotations have image ids not in its 'images' (1 distinct: -5)"],
    ),
    (
        "negative_height",
        lambda g: dict(g, annotations=_one(g["annotations"], 1, bbox=[0, 0, 1, -1])),
        ["annotations[1]['bbox']", "width, height >= 0"],
    ),
    ("no_images", lambda g: dict(g, images=[], annotations=[]), ["'images' is empty"]),
]


@pytest.mark.parametrize("name, make, words", GT_CASES, ids=[c[0] for c in GT_CASES])
def test_malformed_ground_truth(tmp_path: Path, capsys, gt: dict, name: str, make, words: list[str]) -> None:
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(make(gt)))
    _assert_one_line_error(main(["evaluate", str(path), str(RESULTS_FILE)]), capsys, path, words)


def test_unreadable_file(tmp_path: Path, capsys) -> None:
    path = tmp_path / "missing.json"
    _assert_one_line_error(main(["evaluate", str(GT_FILE), str(path)]), capsys, path, ["cannot read the file"])


def test_huge_id(tmp_path: Path, capsys, results: list) -> None:
    path = tmp_path / "huge.json"
    path.write_text(json.dumps(_one(results, 0, category_id=2**60)))
    _assert_one_line_error(main(["evaluate", str(GT_FILE), str(path)]), capsys, path, ["smaller than 2**53"])


def test_output_directory_must_exist(tmp_path: Path, capsys) -> None:
    code = main(["evaluate", str(GT_FILE), str(RESULTS_FILE), "--output", str(tmp_path / "no" / "report.json")])
    _assert_one_line_error(code, capsys, None, ["--output", "does not exist"])


def test_segm_is_not_supported(capsys) -> None:
    code = main(["evaluate", str(GT_FILE), str(RESULTS_FILE), "--iou-type", "segm"])
    _assert_one_line_error(code, capsys, None, ["--iou-type segm is not supported", "boxes only"])


def _assert_one_line_error(code: int, capsys, path: Path | None, words: list[str]) -> None:
    captured = capsys.readouterr()
    assert code == 2
    assert captured.out == ""
    line = captured.err.strip()
    assert "\n" not in line and "Traceback" not in line, captured.err
    assert line.startswith("ignite-det: error: " + (f"{path}: " if path else ""))
    for word in words:
        assert word in line


# ---------------------------------------------------------------------------------------------------------
# W&B
# ---------------------------------------------------------------------------------------------------------


def test_wandb_offline_run_holds_the_report_and_images(tmp_path: Path, capsys, monkeypatch, gt: dict) -> None:
    from PIL import Image

    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    images_dir = tmp_path / "images"
    images_dir.mkdir()
    shown = gt["images"][:3]
    for image in shown:  # tiny images, only for a few ids: those are the ones shown
        Image.new("RGB", (8, 6), (40, 80, 120)).save(images_dir / image["file_name"], format="PNG")
    extra = ("--wandb-project", "ignite-det-tests", "--wandb-mode", "offline", "--images-dir", str(images_dir))
    code, report = _evaluate(tmp_path, *extra)
    assert code == 0
    run_dir = wr.find_run_dir(tmp_path)
    assert f"wandb sync {run_dir}" in capsys.readouterr().err
    (row,) = [r for r in wr.history_rows(run_dir) if "val/AP" in r]
    assert {name: row[f"val/{name}"] for name in STAT_NAMES} == {name: report[name] for name in STAT_NAMES}
    assert math.isclose(row["val/F1"], report["best_f1"]["f1"])
    columns, rows = wr.load_table(run_dir, row["val/per_class"])
    assert columns[:2] == ["category_id", "class"] and len(rows) == 80
    logged = wr.load_images(run_dir, row["val/detections"])
    shown_ids = sorted(image["id"] for image in shown)  # the smallest ids among the images with a file
    assert [i["caption"] for i in logged] == [f"image_id {i}" for i in shown_ids]
    ground_truth = sum(a["image_id"] == shown_ids[0] for a in gt["annotations"])
    assert len(logged[0]["boxes"]["ground_truth"]["box_data"]) == ground_truth


def test_wandb_disabled_writes_no_run(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    code, report = _evaluate(tmp_path, "--wandb-project", "ignite-det-tests", "--wandb-mode", "disabled")
    assert code == 0 and report["AP"] == PUBLISHED_BBOX["AP"]
    assert not list(tmp_path.glob("**/offline-run-*")) and "W&B" not in capsys.readouterr().err
