"""``ignite-det evaluate --protocol lvis`` on LVIS files equals lvis-api run on the same files, bit for bit."""

from __future__ import annotations

import json

import pytest
from pycocotools import mask as coco_mask

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


# --- LVISResults' own reading of a results file (results.py:39-62), which differs from loadRes's ---------------


def _crowded_image_ids(case, count: int = 300) -> list[int]:
    per_image: dict[int, int] = {}
    for result in case.results:
        per_image[result["image_id"]] = per_image.get(result["image_id"], 0) + 1
    return [image for image, n in per_image.items() if n > count - 60]


def test_results_of_unknown_categories_take_places_in_the_300(tmp_path, capsys):
    """LVISResults caps each image at 300 before anything looks at the category: results of a category the
    ground truth does not have push others out of the 300, then are not evaluated (eval.py:64-69)."""
    case = lvis_case(3, "bbox")
    unknown = max(c["id"] for c in case.gt["categories"]) + 1
    image = _crowded_image_ids(case)[0]
    results = [{"image_id": image, "category_id": unknown, "bbox": [1, 1, 40, 40], "score": 0.97}] * 80 + case.results
    reference = run_lvis(case.gt, results)
    assert reference.stats != run_lvis(case.gt, case.results).stats, "the case must make the 80 results count"
    report = _report(tmp_path, case.gt, results)
    assert {name: report[name] for name in reference.stats} == reference.stats
    assert "take places in the 300 per image" in capsys.readouterr().err


def test_unknown_categories_are_still_refused_with_strict(tmp_path, capsys):
    case = lvis_case(3, "bbox")
    results = [{**case.results[0], "category_id": 10_000}, *case.results]
    gt_path, results_path = write_json(tmp_path, "gt.json", case.gt), write_json(tmp_path, "r.json", results)
    code = main(["evaluate", str(gt_path), str(results_path), "--protocol", "lvis", "--strict"])
    assert_one_line_error(code, capsys, results_path, ["category ids", "10000"])


def test_segm_results_with_a_bbox_take_the_box_area(tmp_path):
    """results[0] has a bbox: LVISResults sets every result's area to w * h of its bbox (results.py:42-52), also
    for segm, so a notched mask whose box is on the other side of 32² or 96² changes its area range."""
    case = lvis_case(3, "segm")
    results = [{**r, "bbox": _mask_box(r["segmentation"])} for r in case.results]
    reference = run_lvis(case.gt, results, "segm")
    assert reference.stats != run_lvis(case.gt, case.results, "segm").stats, "box areas must change a number"
    report = _report(tmp_path, case.gt, results, "--iou-type", "segm")
    assert {name: report[name] for name in reference.stats} == reference.stats


def test_bbox_evaluation_of_mask_results_takes_the_mask_area(tmp_path):
    """results[0] has no bbox: LVISResults sets every result's area to its mask's and its bbox to the mask's box
    (results.py:54-62); a bbox evaluation then ranges detections by mask area, not by w * h."""
    case = lvis_case(3, "segm")
    reference = run_lvis(case.gt, case.results, "bbox")
    with_boxes = [{**r, "bbox": _mask_box(r["segmentation"])} for r in case.results]
    assert reference.stats != run_lvis(case.gt, with_boxes, "bbox").stats, "mask areas must change a number"
    report = _report(tmp_path, case.gt, case.results, "--iou-type", "bbox")
    assert {name: report[name] for name in reference.stats} == reference.stats


def _mask_box(rle: dict) -> list[float]:
    return coco_mask.toBbox({**rle, "counts": rle["counts"].encode()}).tolist()
