"""``ignite-det evaluate --protocol lvis`` on LVIS files equals lvis-api run on the same files, bit for bit."""

from __future__ import annotations

import json

import pytest

from ignite_det.cli.main import main
from tests.harness import assert_one_line_error, write_json
from tests.lvis_reference import lvis_case, lvis_val_100, lvis_val_100_results, run_lvis


def _report(tmp_path, gt: dict, results: list[dict], *args: str) -> dict:
    gt_path, results_path = write_json(tmp_path, "gt.json", gt), write_json(tmp_path, "results.json", results)
    out = tmp_path / "report.json"
    assert main(["evaluate", str(gt_path), str(results_path), "--protocol", "lvis", "--output", str(out), *args]) == 0
    return json.loads(out.read_text())


@pytest.mark.parametrize("iou_type", ["bbox", "segm"])
def test_generated_lvis_files(tmp_path, iou_type):
    case = lvis_case(3, iou_type)
    reference = run_lvis(case.gt, case.results, iou_type)
    report = _report(tmp_path, case.gt, case.results, "--iou-type", iou_type)
    assert {name: report[name] for name in reference.stats} == reference.stats


@pytest.mark.parametrize("iou_type", ["bbox", "segm"])
def test_real_lvis_files(tmp_path, iou_type):
    gt = lvis_val_100()
    results = lvis_val_100_results(gt, 2, iou_type)
    reference = run_lvis(gt, results, iou_type)
    report = _report(tmp_path, gt, results, "--iou-type", iou_type)
    assert {name: report[name] for name in reference.stats} == reference.stats


def test_lvis_ground_truth_without_protocol_is_said_on_stderr(tmp_path, capsys):
    case = lvis_case(1, "bbox")
    gt_path, results_path = write_json(tmp_path, "gt.json", case.gt), write_json(tmp_path, "r.json", case.results)
    assert main(["evaluate", str(gt_path), str(results_path)]) == 0
    assert "looks like LVIS" in capsys.readouterr().err


def test_protocol_lvis_on_a_file_without_the_lists(tmp_path, capsys):
    case = lvis_case(1, "bbox")
    del case.gt["images"][2]["not_exhaustive_category_ids"]
    gt_path, results_path = write_json(tmp_path, "gt.json", case.gt), write_json(tmp_path, "r.json", case.results)
    code = main(["evaluate", str(gt_path), str(results_path), "--protocol", "lvis"])
    assert_one_line_error(code, capsys, gt_path, ["--protocol lvis", "images[2]", "not_exhaustive_category_ids"])
