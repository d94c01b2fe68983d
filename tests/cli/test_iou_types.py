"""``ignite-det evaluate --iou-type segm | keypoints``: pycocotools' numbers on the same files, one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ignite_det.cli.main import main
from tests.coco_reference import GT_FILE, NAMES, SEGM_RESULTS_FILE
from tests.harness import assert_one_line_error, write_json
from tests.type_cases import KEYPOINT_NAMES, random_keypoint_case, random_mask_case, run_typed_cocoeval


def _report(tmp_path: Path, gt: Path, results: Path, *extra: str) -> dict:
    report = tmp_path / "report.json"
    assert main(["evaluate", str(gt), str(results), "--output", str(report), *extra]) == 0
    return json.loads(report.read_text())


def test_segm_of_the_real_files_equals_pycocotools(tmp_path, capsys, backend):
    """Polygons and crowd RLEs in the ground truth, compressed RLEs without a box in the results."""
    report = _report(tmp_path, GT_FILE, SEGM_RESULTS_FILE, "--iou-type", "segm", "--backend", backend)
    expected = run_typed_cocoeval(json.loads(GT_FILE.read_text()), json.loads(SEGM_RESULTS_FILE.read_text()), "segm")
    assert [report[name] for name in NAMES] == expected.stats.tolist()
    assert capsys.readouterr().out.splitlines()[0].endswith("= 0.320")


def test_segm_results_with_a_box_take_its_area_as_loadres_does(tmp_path):
    """loadRes takes a result's box branch when it has a bbox: the box's w * h picks its area range."""
    gt = json.loads(GT_FILE.read_text())
    results = json.loads(SEGM_RESULTS_FILE.read_text())
    boxed = [dict(r, bbox=[0.0, 0.0, 30.0 + (i % 50) * 3, 20.0]) for i, r in enumerate(results)]
    report = _report(tmp_path, GT_FILE, write_json(tmp_path, "boxed.json", boxed), "--iou-type", "segm")
    expected = run_typed_cocoeval(gt, boxed, "segm")
    assert [report[name] for name in NAMES] == expected.stats.tolist()
    assert report["APs"] != _report(tmp_path, GT_FILE, SEGM_RESULTS_FILE, "--iou-type", "segm")["APs"]


def test_random_masks_in_files_equal_pycocotools(tmp_path):
    gt, results, _, _ = random_mask_case(4)
    report = _report(
        tmp_path, write_json(tmp_path, "gt.json", gt), write_json(tmp_path, "res.json", results), "--iou-type", "segm"
    )
    assert [report[name] for name in NAMES] == run_typed_cocoeval(gt, results, "segm").stats.tolist()


def test_keypoints_in_files_equal_pycocotools(tmp_path, capsys, backend):
    gt, results = random_keypoint_case(6)
    gt_file, results_file = write_json(tmp_path, "gt.json", gt), write_json(tmp_path, "res.json", results)
    report = _report(tmp_path, gt_file, results_file, "--iou-type", "keypoints", "--backend", backend)
    assert [report[name] for name in KEYPOINT_NAMES] == run_typed_cocoeval(gt, results, "keypoints").stats.tolist()
    assert "maxDets= 20" in capsys.readouterr().out


def test_keypoints_with_other_sigmas(tmp_path):
    sigmas = [0.5, 0.25, 1.0, 0.125]
    gt, results = random_keypoint_case(8, num_keypoints=4)
    gt_file, results_file = write_json(tmp_path, "gt.json", gt), write_json(tmp_path, "res.json", results)
    report = _report(tmp_path, gt_file, results_file, "--iou-type", "keypoints", "--keypoint-sigmas", *map(str, sigmas))
    expected = run_typed_cocoeval(gt, results, "keypoints", np.array(sigmas))
    assert [report[name] for name in KEYPOINT_NAMES] == expected.stats.tolist()


def test_keypoint_results_with_a_box_take_its_area(tmp_path):
    gt, results = random_keypoint_case(2)
    boxed = [dict(r, bbox=[0.0, 0.0, 40.0, 20.0 + i]) for i, r in enumerate(results)]
    gt_file, results_file = write_json(tmp_path, "gt.json", gt), write_json(tmp_path, "res.json", boxed)
    report = _report(tmp_path, gt_file, results_file, "--iou-type", "keypoints")
    assert [report[name] for name in KEYPOINT_NAMES] == run_typed_cocoeval(gt, boxed, "keypoints").stats.tolist()


def _keypoint_files(tmp_path: Path, edit_gt=None, edit_results=None) -> tuple[Path, Path]:
    gt, results = random_keypoint_case(0)
    if edit_gt:
        edit_gt(gt)
    if edit_results:
        edit_results(results)
    return write_json(tmp_path, "gt.json", gt), write_json(tmp_path, "res.json", results)


def _set(entries: list, index: int, **values) -> None:
    entries[index] = {**entries[index], **values}


@pytest.mark.parametrize(
    "edit_gt, edit_results, extra, where, words",
    [
        (
            lambda g: _set(g["annotations"], 2, num_keypoints=0),
            None,
            [],
            "gt",
            ["annotations[2]['num_keypoints'] is 0, but 13 of its keypoints are labelled (v > 0)"],
        ),
        (
            lambda g: _set(g["annotations"], 1, keypoints=[1, 2, 3]),
            None,
            [],
            "gt",
            ["annotations[1]['keypoints'] must be a list of 3 * 17 numbers"],
        ),
        (
            lambda g: _set(g["annotations"], 0, keypoints=[1.0, 2.0, 7.0] * 17),
            None,
            [],
            "gt",
            ["annotations[0]['keypoints'] must have visibility 0, 1 or 2"],
        ),
        (
            None,
            lambda r: _set(r, 3, keypoints=[1.0] * 50),
            [],
            "results",
            ["results[3]['keypoints'] must be a list of 3 * 17 numbers"],
        ),
        (None, lambda r: r[1].pop("keypoints"), [], "results", ["results[1] has no 'keypoints' key"]),
        (None, None, ["--keypoint-sigmas", "0.1", "0.2"], "gt", ["annotations have 17 keypoints each", "2 --keypoint"]),
    ],
)
def test_malformed_keypoint_files(tmp_path, capsys, edit_gt, edit_results, extra, where, words):
    gt_file, results_file = _keypoint_files(tmp_path, edit_gt, edit_results)
    code = main(["evaluate", str(gt_file), str(results_file), "--iou-type", "keypoints", *extra])
    assert_one_line_error(code, capsys, gt_file if where == "gt" else results_file, words)


def test_segm_needs_a_segmentation_and_checks_it(tmp_path, capsys):
    results = json.loads(SEGM_RESULTS_FILE.read_text())
    results[4] = {k: v for k, v in results[4].items() if k != "segmentation"}
    path = write_json(tmp_path, "res.json", results)
    code = main(["evaluate", str(GT_FILE), str(path), "--iou-type", "segm"])
    assert_one_line_error(code, capsys, path, ["results[4] has no 'segmentation' key"])
    results[4] = dict(results[5], segmentation={"size": [640, 480], "counts": "0"})
    path = write_json(tmp_path, "res.json", results)
    code = main(["evaluate", str(GT_FILE), str(path), "--iou-type", "segm"])
    assert_one_line_error(code, capsys, path, ["results[4] does not describe a 640x480 mask"])


def test_keypoint_sigmas_need_the_keypoints_type(capsys):
    code = main(["evaluate", str(GT_FILE), str(SEGM_RESULTS_FILE), "--keypoint-sigmas", "0.1"])
    assert_one_line_error(code, capsys, None, ["--keypoint-sigmas are for --iou-type keypoints"])
