"""``ignite-det evaluate``: the published COCO numbers from the files, one-line errors, the W&B run it writes."""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pycocotools.coco import COCO

from ignite_det import STAT_NAMES
from ignite_det.cli.main import main
from ignite_det.per_image import PER_IMAGE_COLUMNS
from tests import wandb_records as wr
from tests.coco_reference import (
    GT_FILE,
    PUBLISHED_BBOX,
    RESULTS_FILE,
    SEGM_RESULTS_FILE,
    per_image_from_evalimgs,
    run_cocoeval,
    stats_dict,
)
from tests.harness import assert_one_line_error, write_json

SUMMARY_FIRST_LINE = " Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ] = 0.505"


def _evaluate(tmp_path: Path, *extra: str, gt: Path = GT_FILE, results: Path = RESULTS_FILE) -> tuple[int, dict]:
    report = tmp_path / "report.json"
    code = main(["evaluate", str(gt), str(results), "--output", str(report), *extra])
    return code, json.loads(report.read_text()) if report.exists() else {}


# ---------------------------------------------------------------------------------------------------------
# Numbers and output
# ---------------------------------------------------------------------------------------------------------


def test_published_numbers_in_report_and_summary(tmp_path: Path, capsys, backend: str) -> None:
    code, report = _evaluate(tmp_path, "--backend", backend)
    assert code == 0
    assert {name: report[name] for name in STAT_NAMES} == PUBLISHED_BBOX
    assert len(report["per_class"]) == 80 and report["num_images"] == 100
    assert set(report["best_f1"]) == {"threshold", "precision", "recall", "f1", "status"}
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


def test_a_reader_that_leaves_early_is_no_error() -> None:
    """``ignite-det evaluate ... | head``: the pipe closes before the report is written."""
    read_end, write_end = os.pipe()
    os.close(read_end)  # every write now fails with EPIPE, as after `head` exits
    command = [sys.executable, "-m", "ignite_det", "evaluate", str(GT_FILE), str(RESULTS_FILE), "--per-class"]
    out = subprocess.run(command, stdout=write_end, stderr=subprocess.PIPE, text=True, timeout=120)
    os.close(write_end)
    assert out.returncode == 0
    assert "Traceback" not in out.stderr and "BrokenPipeError" not in out.stderr


def test_help_is_plain_text(capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["evaluate", "--help"])
    out = capsys.readouterr().out
    assert exit_info.value.code == 0
    assert "GT.json is a COCO instances file" in out and "--strict" in out
    assert "``" not in out and ":class:" not in out and ":mod:" not in out


# ---------------------------------------------------------------------------------------------------------
# Files that pycocotools evaluates: the same numbers, and a warning where pycocotools goes its own way
# ---------------------------------------------------------------------------------------------------------


def test_empty_predictions_are_a_model_that_found_nothing(tmp_path: Path, capsys, gt: dict, backend: str) -> None:
    code, report = _evaluate(tmp_path, "--backend", backend, results=write_json(tmp_path, "empty.json", []))
    assert code == 0, capsys.readouterr().err
    assert {name: report[name] for name in STAT_NAMES} == stats_dict(run_cocoeval(gt, []))
    assert report["AP"] == 0.0 and report["num_images"] == len(gt["images"])


def test_unknown_categories_are_left_out_with_a_warning(tmp_path: Path, capsys, gt: dict, results: list) -> None:
    """pycocotools evaluates the ground truth's categories only: the other results count for nothing."""
    changed = _one(_one(_one(results, 1, category_id=1000), 7, category_id=1001), 9, category_id=1000)
    code, report = _evaluate(tmp_path, results=write_json(tmp_path, "unknown.json", changed))
    assert code == 0
    assert {name: report[name] for name in STAT_NAMES} == stats_dict(run_cocoeval(gt, changed))
    assert report != PUBLISHED_BBOX  # the three results mattered
    assert capsys.readouterr().err.splitlines()[0] == (
        f"ignite-det: warning: {tmp_path / 'unknown.json'}: 3 of 734 results have category ids not in the "
        "ground truth (2 distinct: 1000, 1001); they are left out, as pycocotools leaves them out "
        "(--strict refuses them)"
    )


def test_strict_refuses_unknown_categories(tmp_path: Path, capsys, results: list) -> None:
    path = write_json(tmp_path, "unknown.json", _one(results, 1, category_id=1000))
    code = main(["evaluate", str(GT_FILE), str(path), "--strict"])
    assert_one_line_error(
        code, capsys, path, ["1 of 734 results have category ids not in the ground truth (1 distinct: 1000)"]
    )


def _zero_id_case(crowd: int = 0) -> tuple[dict, list]:
    """Two objects found exactly; the first annotation has id 0."""
    boxes = [[10.0, 10.0, 40.0, 30.0], [100.0, 50.0, 60.0, 60.0]]
    annotations = [
        {"id": i, "image_id": 7, "category_id": 1, "bbox": b, "area": b[2] * b[3], "iscrowd": c}
        for i, b, c in zip((0, 1), boxes, (crowd, 0))
    ]
    gt = {
        "images": [{"id": 7, "file_name": "7.jpg", "height": 200, "width": 200}],
        "annotations": annotations,
        "categories": [{"id": 1, "name": "box"}],
    }
    return gt, [{"image_id": 7, "category_id": 1, "bbox": b, "score": s} for b, s in zip(boxes, (0.9, 0.8))]


def test_annotation_id_0_counts_with_a_warning(tmp_path: Path, capsys, backend: str) -> None:
    """pycocotools reads a match to annotation id 0 as no match (cocoapi#546): ignite-det scores the file
    as pycocotools scores it with the ids renumbered, and warns."""
    gt, results = _zero_id_case()
    gt_path = write_json(tmp_path, "gt.json", gt)
    code, report = _evaluate(
        tmp_path, "--backend", backend, gt=gt_path, results=write_json(tmp_path, "r.json", results)
    )
    assert code == 0 and report["AP"] == 1.0
    renumbered = dict(gt, annotations=[dict(a, id=a["id"] + 1) for a in gt["annotations"]])
    assert {name: report[name] for name in STAT_NAMES} == stats_dict(run_cocoeval(renumbered, results))
    assert stats_dict(run_cocoeval(gt, results))["AP"] < 1.0  # pycocotools on the file as it is
    assert capsys.readouterr().err.splitlines()[0] == (
        f"ignite-det: warning: {gt_path}: 1 annotation has id 0; ignite-det counts a detection matched to it as "
        "a true positive, pycocotools would score it differently: it never counts a detection matched to "
        "annotation id 0 as a true positive (cocoapi#546)"
    )


def test_crowd_region_with_id_0_needs_no_warning(tmp_path: Path, capsys) -> None:
    """A match to a crowd region is ignored whatever its id: pycocotools gives the same numbers."""
    gt, results = _zero_id_case(crowd=1)
    code, report = _evaluate(
        tmp_path, gt=write_json(tmp_path, "gt.json", gt), results=write_json(tmp_path, "r.json", results)
    )
    assert code == 0
    assert {name: report[name] for name in STAT_NAMES} == stats_dict(run_cocoeval(gt, results))
    assert "warning" not in capsys.readouterr().err


def test_masks_without_boxes_as_pycocotools_loads_them(tmp_path: Path, capsys, gt: dict, backend: str) -> None:
    """The cocoapi's segm results (compressed RLE, no bbox) evaluated as boxes: loadRes takes each box
    from the mask and the mask's area, not w * h, for small/medium/large."""
    masks = json.loads(SEGM_RESULTS_FILE.read_text())
    assert not any("bbox" in r for r in masks)
    code, report = _evaluate(tmp_path, "--backend", backend, results=SEGM_RESULTS_FILE)
    assert code == 0, capsys.readouterr().err
    assert {name: report[name] for name in STAT_NAMES} == stats_dict(run_cocoeval(gt, masks))


def test_polygons_and_uncompressed_rle(tmp_path: Path, gt: dict) -> None:
    """Polygons (rasterised at the image's size) and uncompressed RLE, read as annToRLE reads them; the
    reference gets the same masks as compressed RLE, the one form loadRes reads."""
    coco = COCO()
    coco.dataset = gt
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    results, references = [], []
    chosen = [a for i, a in enumerate(gt["annotations"]) if i < 300 or a["iscrowd"]]
    for i, annotation in enumerate(chosen):
        segmentation = annotation["segmentation"]
        if isinstance(segmentation, list):  # polygons, moved i % 7 pixels right: IoU below 1, some misses
            segmentation = [[v + (i % 7) * (1 - k % 2) for k, v in enumerate(p)] for p in segmentation]
        result = {
            "image_id": annotation["image_id"],
            "category_id": annotation["category_id"],
            "score": (i * 37) % 100 / 100,
        }
        results.append(dict(result, segmentation=segmentation))
        rle = coco.annToRLE(dict(annotation, segmentation=segmentation))
        references.append(dict(result, segmentation={"size": rle["size"], "counts": rle["counts"].decode()}))
    assert {type(r["segmentation"]).__name__ for r in results} == {"list", "dict"}  # polygons, crowd RLE
    code, report = _evaluate(tmp_path, results=write_json(tmp_path, "polygons.json", results))
    assert code == 0
    assert {name: report[name] for name in STAT_NAMES} == stats_dict(run_cocoeval(gt, references))


def test_a_given_box_wins_over_the_mask(tmp_path: Path, results: list) -> None:
    """With both keys loadRes takes the box, and w * h as the area: the published box numbers."""
    both = [dict(r, segmentation=[[0, 0, 5, 0, 5, 5]]) for r in results]
    code, report = _evaluate(tmp_path, results=write_json(tmp_path, "both.json", both))
    assert code == 0 and {name: report[name] for name in STAT_NAMES} == PUBLISHED_BBOX


def test_polygon_needs_the_image_size(tmp_path: Path, capsys) -> None:
    gt, _ = _zero_id_case(crowd=1)
    del gt["images"][0]["height"]
    results = [{"image_id": 7, "category_id": 1, "segmentation": [[1, 1, 9, 1, 9, 9]], "score": 0.5}]
    path = write_json(tmp_path, "r.json", results)
    code = main(["evaluate", str(write_json(tmp_path, "gt.json", gt)), str(path)])
    assert_one_line_error(
        code, capsys, path, ["results[0]['segmentation'] is a polygon, which is rasterised at the image's size"]
    )


# ---------------------------------------------------------------------------------------------------------
# Malformed input: exit 2, one line naming the file and the problem
# ---------------------------------------------------------------------------------------------------------


def _one(results: list, index: int, **change: Any) -> list:
    return [dict(r, **change) if i == index else r for i, r in enumerate(results)]


def _without(results: list, index: int, key: str) -> list:
    return [{k: v for k, v in r.items() if k != key} if i == index else r for i, r in enumerate(results)]


def _segm(results: list, index: int, segmentation: Any) -> list:
    return _one(_without(results, index, "bbox"), index, segmentation=segmentation)


# (name, predictions: results -> content or raw text, expected words)
PREDICTION_CASES = [
    ("invalid_json", lambda r: '[{"image_id": 1,', ["not valid JSON"]),
    ("not_a_list", lambda r: {"annotations": r}, ["must be a JSON list", "got a JSON dict"]),
    ("entry_not_object", lambda r: [*r[:3], 7], ["results[3] must be an object, got int"]),
    ("missing_score", lambda r: _without(r, 5, "score"), ["results[5] has no 'score' key"]),
    (
        "missing_bbox",
        lambda r: _without(r, 0, "bbox"),
        ["results[0] has no 'bbox' key, nor a 'segmentation' to take the box from"],
    ),
    (
        "unknown_image",
        lambda r: _one(_one(r, 2, image_id=999999), 4, image_id=123456789),
        ["2 of 734 results have image ids not in the ground truth (2 distinct: 999999, 123456789)"],
    ),
    ("nan_box", lambda r: _one(r, 3, bbox=[1.0, float("nan"), 2.0, 2.0]), ["results[3]['bbox'] must be finite"]),
    ("inf_score", lambda r: _one(r, 6, score=float("inf")), ["results[6]['score'] must be finite, got inf"]),
    ("negative_width", lambda r: _one(r, 2, bbox=[1, 1, -3, 2]), ["results[2]['bbox']", "width, height >= 0"]),
    ("short_box", lambda r: _one(r, 4, bbox=[1, 2, 3]), ["results[4]['bbox'] must be a list of 4 numbers"]),
    ("string_score", lambda r: _one(r, 1, score="0.5"), ["results[1]['score'] must be a number, got '0.5'"]),
    ("float_image_id", lambda r: _one(r, 0, image_id=1.5), ["results[0]['image_id'] must be an integer"]),
    # Masks without a box: the message completes "results[i]['segmentation'] ..."
    ("segm_number", lambda r: _segm(r, 2, 5), ["results[2]['segmentation'] must be an RLE", "got 5"]),
    ("segm_empty_list", lambda r: _segm(r, 2, []), ["results[2]['segmentation'] must be an RLE", "got []"]),
    ("segm_size", lambda r: _segm(r, 1, {"size": [4], "counts": "0"}), ["'size' must be [height, width]"]),
    ("segm_counts", lambda r: _segm(r, 1, {"size": [2, 2], "counts": 7}), ["'counts' must be a string"]),
    (
        "segm_counts_sum",
        lambda r: _segm(r, 3, {"size": [2, 3], "counts": [1, 2]}),
        ["results[3]['segmentation'] is an RLE whose run lengths ('counts') add up to 3, not height * width = 6"],
    ),
    (
        "segm_bad_string",
        lambda r: _segm(r, 4, {"size": [4, 5], "counts": "zzz!!"}),
        ["results[4]['segmentation'] is not a valid compressed RLE of a [4, 5] mask"],
    ),
    (
        "segm_short_polygon",
        lambda r: _segm(r, 0, [[1, 2, 3, 4, 5, 6], [1, 2, 3, 4]]),
        ["results[0]['segmentation'] holds a polygon of 4 coordinates", "at least 3 points"],
    ),
    ("segm_polygon_not_numbers", lambda r: _segm(r, 0, [[1, 2, "3", 4, 5, 6]]), ["got a list holding [1, 2, '3'"]),
]


@pytest.mark.parametrize("name, make, words", PREDICTION_CASES, ids=[c[0] for c in PREDICTION_CASES])
def test_malformed_predictions(tmp_path: Path, capsys, results: list, name: str, make, words: list[str]) -> None:
    path = tmp_path / f"{name}.json"
    content = make(results)
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    assert_one_line_error(main(["evaluate", str(GT_FILE), str(path)]), capsys, path, words)


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
    assert_one_line_error(main(["evaluate", str(path), str(RESULTS_FILE)]), capsys, path, words)


def test_unreadable_file(tmp_path: Path, capsys) -> None:
    path = tmp_path / "missing.json"
    assert_one_line_error(main(["evaluate", str(GT_FILE), str(path)]), capsys, path, ["cannot read the file"])


def test_huge_id(tmp_path: Path, capsys, results: list) -> None:
    path = tmp_path / "huge.json"
    path.write_text(json.dumps(_one(results, 0, category_id=2**60)))
    assert_one_line_error(main(["evaluate", str(GT_FILE), str(path)]), capsys, path, ["smaller than 2**53"])


def test_output_directory_must_exist(tmp_path: Path, capsys) -> None:
    code = main(["evaluate", str(GT_FILE), str(RESULTS_FILE), "--output", str(tmp_path / "no" / "report.json")])
    assert_one_line_error(code, capsys, None, ["--output", "does not exist"])


@pytest.mark.parametrize(
    "extra, words",
    [
        (["--iou-thresholds", "0.5", "1.5"], "--iou-thresholds must be numbers in [0, 1], got 0.5 1.5"),
        (["--iou-thresholds", "nan"], "--iou-thresholds must be numbers in [0, 1], got nan"),
        (["--max-dets", "0", "10"], "--max-dets must be integers >= 1, got 0 10"),
        (["--background-threshold", "0.2"], "--background-threshold is for the error analysis: give --errors too"),
        (["--errors", "--background-threshold", "1.5"], "--background-threshold must be a number in (0, 0.5): below"),
        (["--errors", "--background-threshold", "0.5"], "the IoU at which the error analysis runs, 0.5, got 0.5"),
        (["--errors", "--background-threshold", "0"], "--background-threshold must be a number in (0, 0.5)"),
        (
            ["--errors", "--background-threshold", "0.75", "--iou-thresholds", "0.7", "0.9"],
            "--background-threshold must be a number in (0, 0.7): below the IoU at which the error analysis runs, "
            "0.7, got 0.75",
        ),
        (["--errors", "--iou-type", "keypoints"], "--errors is for boxes and masks: TIDE defines no keypoint errors"),
        (["--wandb-artifact"], "--wandb-artifact logs to W&B: give --wandb-project too"),
    ],
)
def test_bad_arguments_as_typed(capsys, extra: list[str], words: str) -> None:
    assert_one_line_error(main(["evaluate", str(GT_FILE), str(RESULTS_FILE), *extra]), capsys, None, [words])


# ---------------------------------------------------------------------------------------------------------
# W&B
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.usefixtures("wandb_env")
def test_wandb_offline_run_holds_the_report_and_images(tmp_path: Path, capsys, gt: dict) -> None:
    from PIL import Image

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
    assert [i["caption"].split(";")[0] for i in logged] == [f"image_id {i}" for i in shown_ids]
    ground_truth = sum(a["image_id"] == shown_ids[0] for a in gt["annotations"])
    assert len(logged[0]["boxes"]["ground_truth"]["box_data"]) == ground_truth


@pytest.mark.usefixtures("wandb_env")
def test_wandb_artifact_holds_the_results_file_and_the_report(tmp_path: Path, monkeypatch, gt: dict) -> None:
    monkeypatch.setenv("WANDB_DATA_DIR", str(tmp_path / "data"))
    extra = ("--wandb-project", "ignite-det-tests", "--wandb-mode", "offline", "--wandb-artifact", "--per-image")
    code, report = _evaluate(tmp_path, *extra)
    assert code == 0
    (artifact,) = wr.artifacts(wr.find_run_dir(tmp_path), "evaluation")
    assert {"best", "latest", "step-1"} == set(artifact.aliases)
    files = wr.artifact_files(artifact)
    assert json.loads(files["report.json"].read_text()) == report  # --output's report, per_image included
    written = json.loads(files["predictions.json"].read_text())
    assert stats_dict(run_cocoeval(gt, written)) == {name: report[name] for name in STAT_NAMES}


@pytest.mark.usefixtures("wandb_env")
def test_wandb_disabled_writes_no_run(tmp_path: Path, capsys) -> None:
    code, report = _evaluate(tmp_path, "--wandb-project", "ignite-det-tests", "--wandb-mode", "disabled")
    assert code == 0 and report["AP"] == PUBLISHED_BBOX["AP"]
    assert not list(tmp_path.glob("**/offline-run-*")) and "W&B" not in capsys.readouterr().err


@pytest.fixture
def wandb_env(monkeypatch, tmp_path: Path) -> Iterator[None]:
    """Runs under tmp_path. W&B reads its environment once per process, at its first run: tear its
    process-wide state down before and after, so each test's environment counts."""
    import wandb

    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    wandb.teardown()
    yield
    wandb.teardown()


@pytest.fixture
def no_wandb_account(monkeypatch, tmp_path: Path, wandb_env: None) -> None:
    """No API key, no netrc, no W&B settings file, no WANDB_MODE: W&B online has nothing to log in with.
    No WANDB_SILENT either: the command's own settings keep W&B quiet."""
    for name in ("WANDB_API_KEY", "WANDB_MODE", "WANDB_BASE_URL", "WANDB_SILENT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb-config"))
    import wandb

    wandb.teardown()


@pytest.mark.usefixtures("no_wandb_account")
def test_wandb_is_offline_by_default(tmp_path: Path, capsys) -> None:
    code, report = _evaluate(tmp_path, "--wandb-project", "ignite-det-tests")
    assert code == 0
    run_dir = wr.find_run_dir(tmp_path)
    err = capsys.readouterr().err
    assert run_dir.name.startswith("offline-run-") and f"wandb sync {run_dir}" in err
    assert "WARNING" not in err  # such as W&B's "URL not available in offline run"
    (row,) = [r for r in wr.history_rows(run_dir) if "val/AP" in r]
    assert row["val/AP"] == report["AP"]


def test_wandb_mode_from_the_environment(tmp_path: Path, capsys, monkeypatch, no_wandb_account: None) -> None:
    monkeypatch.setenv("WANDB_MODE", "disabled")
    code, _ = _evaluate(tmp_path, "--wandb-project", "ignite-det-tests")
    assert code == 0 and not list(tmp_path.glob("**/offline-run-*")) and "W&B" not in capsys.readouterr().err


@pytest.mark.usefixtures("no_wandb_account")
def test_wandb_failure_is_one_line(capsys) -> None:
    """Online without an API key: W&B refuses at once (no network needed), and the command says so in one line."""
    code = main(["evaluate", str(GT_FILE), str(RESULTS_FILE), "--wandb-project", "p", "--wandb-mode", "online"])
    assert_one_line_error(
        code,
        capsys,
        None,
        ["W&B failed in online mode: No API key configured", "--wandb-mode offline needs no account"],
    )


@pytest.mark.usefixtures("no_wandb_account")
def test_wandb_refusal_offline_is_one_line(capsys) -> None:
    code = main(["evaluate", str(GT_FILE), str(RESULTS_FILE), "--wandb-project", "a/b"])
    line = assert_one_line_error(code, capsys, None, ["W&B failed in offline mode: Invalid project name 'a/b'"])
    assert "needs no account" not in line


def test_per_image_prints_the_worst_and_reports_every_image(tmp_path: Path, capsys, files_cocoeval) -> None:
    code, report = _evaluate(tmp_path, "--per-image")
    assert code == 0
    assert report["per_image"] == per_image_from_evalimgs(files_cocoeval)  # pycocotools' evalImgs, image by image
    assert all(list(row) == list(PER_IMAGE_COLUMNS) for row in report["per_image"])
    out = capsys.readouterr().out.splitlines()
    start = out.index("Worst images (most errors at IoU 0.5, fp50 + fn50; then fn50; then fp75 + fn75):")
    header, *rows = out[start + 1 :]
    assert header.split() == list(PER_IMAGE_COLUMNS) and len(rows) == 10
    worst = max(
        report["per_image"], key=lambda r: (r["fp50"] + r["fn50"], r["fn50"], r["fp75"] + r["fn75"], -r["image_id"])
    )
    assert [int(v) for v in rows[0].split()] == list(worst.values())


def test_without_per_image_the_report_has_no_rows(tmp_path: Path, capsys) -> None:
    code, report = _evaluate(tmp_path)
    assert code == 0 and "per_image" not in report
    assert "Worst images" not in capsys.readouterr().out
