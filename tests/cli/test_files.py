"""Files that pycocotools evaluates are evaluated by ``ignite-det evaluate`` too, with pycocotools' numbers.

Each case is a real cocoapi file (or the keypoint generator's) changed into a form other projects
write; pycocotools scores the very same file as the reference.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from ignite_det import KEYPOINT_STAT_NAMES, STAT_NAMES
from ignite_det.cli.main import main
from tests.coco_reference import GT_FILE, RESULTS_FILE, SEGM_RESULTS_FILE, run_cocoeval, stats_dict
from tests.type_cases import random_keypoint_case, run_typed_cocoeval


@pytest.fixture(scope="module")
def segm_results() -> list[dict[str, Any]]:
    return json.loads(SEGM_RESULTS_FILE.read_text())


def _cli(tmp_path: Path, gt: dict, results: list, capsys, *extra: str) -> tuple[int, list[float], str]:
    """Exit status, the report's numbers (COCO's 12, or the 10 of keypoints) and stderr."""
    gt_file, results_file, report = tmp_path / "gt.json", tmp_path / "results.json", tmp_path / "report.json"
    gt_file.write_text(json.dumps(gt))
    results_file.write_text(json.dumps(results))
    capsys.readouterr()
    code = main(["evaluate", str(gt_file), str(results_file), "--output", str(report), *extra])
    err = capsys.readouterr().err
    if code != 0:
        return code, [], err
    stats = json.loads(report.read_text())
    names = KEYPOINT_STAT_NAMES if "keypoints" in extra else STAT_NAMES
    return code, [stats[name] for name in names], err


def _reference(gt: dict, results: list, iou_type: str) -> list[float]:
    return run_typed_cocoeval(gt, results, iou_type).stats.tolist()


# ---------------------------------------------------------------------------------------------------------
# iscrowd as JSON booleans
# ---------------------------------------------------------------------------------------------------------


def test_iscrowd_booleans_are_read_as_pycocotools_reads_them(tmp_path: Path, gt, results, capsys) -> None:
    boolean = {**gt, "annotations": [{**a, "iscrowd": a["iscrowd"] == 1} for a in gt["annotations"]]}
    assert sum(a["iscrowd"] is True for a in boolean["annotations"]) == 9  # crowd regions are there to read
    code, stats, err = _cli(tmp_path, boolean, results, capsys)
    assert code == 0 and "warning" not in err
    assert stats == list(stats_dict(run_cocoeval(boolean, results)).values())
    assert stats == list(stats_dict(run_cocoeval(gt, results)).values())  # the same file with 0 and 1


def test_iscrowd_other_values_are_still_refused(tmp_path: Path, gt, results, capsys) -> None:
    wrong = {**gt, "annotations": [{**a, "iscrowd": "no"} for a in gt["annotations"]]}
    code, _, err = _cli(tmp_path, wrong, results, capsys)
    assert code == 2 and "annotations[0]['iscrowd'] must be an integer, got 'no'" in err


# ---------------------------------------------------------------------------------------------------------
# num_keypoints that miscounts the labelled points
# ---------------------------------------------------------------------------------------------------------


def test_miscounted_num_keypoints_are_named_and_scored(tmp_path: Path, capsys) -> None:
    gt, results = random_keypoint_case(0)
    annotations = gt["annotations"]
    labelled = [i for i, a in enumerate(annotations) if a["num_keypoints"] > 0]
    for i in labelled[::2]:
        annotations[i] = {**annotations[i], "num_keypoints": annotations[i]["num_keypoints"] + 3}
    code, stats, err = _cli(tmp_path, gt, results, capsys, "--iou-type", "keypoints")
    assert code == 0
    first = labelled[0]
    count = annotations[first]["num_keypoints"]
    assert f"{len(labelled[::2])} of {len(annotations)} annotations have a 'num_keypoints' other than" in err
    assert f"e.g. annotations[{first}]: {count} where {count - 3} are labelled; this changes no number" in err
    assert stats == _reference(gt, results, "keypoints")


@pytest.mark.parametrize("given, words", [(0, "is 0, but 13 of its keypoints"), (5, "is 5, but 0 of its keypoints")])
def test_num_keypoints_must_agree_about_zero(tmp_path: Path, capsys, given: int, words: str) -> None:
    gt, results = random_keypoint_case(0)
    index = 2 if given == 0 else 0  # annotation 2 has 13 labelled points, annotation 0 none
    gt["annotations"][index] = {**gt["annotations"][index], "num_keypoints": given}
    code, _, err = _cli(tmp_path, gt, results, capsys, "--iou-type", "keypoints")
    assert code == 2
    assert f"annotations[{index}]['num_keypoints'] {words} are labelled (v > 0); pycocotools ignores" in err


# ---------------------------------------------------------------------------------------------------------
# --iou-type segm with box results; results[0] picks loadRes's branch
# ---------------------------------------------------------------------------------------------------------


def test_box_results_as_segm_are_their_boxes_masks(tmp_path: Path, gt, results, capsys) -> None:
    code, stats, err = _cli(tmp_path, gt, results, capsys, "--iou-type", "segm")
    assert code == 0
    assert "734 of 734 results have a 'bbox' and no 'segmentation'; they are scored as masks of their boxes" in err
    assert stats == _reference(gt, results, "segm")
    assert round(stats[0], 4) == 0.1322


def test_segm_box_results_need_a_box_each(tmp_path: Path, gt, results, capsys) -> None:
    broken = [*results[:5], {k: v for k, v in results[5].items() if k != "bbox"}, *results[6:]]
    code, _, err = _cli(tmp_path, gt, broken, capsys, "--iou-type", "segm")
    assert code == 2 and "results[5] has no 'bbox' key" in err


def _half_boxed(segm_results: list[dict]) -> list[dict]:
    """The mask results, every second one (not the first) with a box half its mask's size."""
    from pycocotools import mask

    out = []
    for i, r in enumerate(segm_results):
        if i % 2:
            x, y, w, h = mask.toBbox(r["segmentation"]).tolist()
            r = {**r, "bbox": [x, y, w / 2, h / 2]}
        out.append(r)
    return out


@pytest.mark.parametrize("iou_type", ["bbox", "segm"])
def test_mask_first_files_take_every_area_from_the_mask(tmp_path: Path, gt, segm_results, capsys, iou_type) -> None:
    """loadRes reads a file whose results[0] has no box as masks: a later result's box is kept, but
    its area is its mask's."""
    mixed = _half_boxed(segm_results)
    code, stats, _ = _cli(tmp_path, gt, mixed, capsys, "--iou-type", iou_type)
    assert code == 0
    assert stats == _reference(gt, mixed, iou_type)


@pytest.mark.parametrize("iou_type", ["bbox", "segm"])
def test_box_first_files_take_every_area_from_the_box(tmp_path: Path, gt, segm_results, capsys, iou_type) -> None:
    boxed = _half_boxed(segm_results)
    boxed = boxed[1:2] + boxed[:1] + boxed[2:]  # a result with a box first: loadRes reads every result's box
    boxed = [r if "bbox" in r else {**r, "bbox": [0.0, 0.0, 30.0, 40.0 + i]} for i, r in enumerate(boxed)]
    code, stats, _ = _cli(tmp_path, gt, boxed, capsys, "--iou-type", iou_type)
    assert code == 0
    assert stats == _reference(gt, boxed, iou_type)


def test_keypoint_first_files_take_every_area_from_the_points(tmp_path: Path, capsys) -> None:
    """loadRes's keypoint branch (results[0] has neither box nor mask) sets every area to the points' extent."""
    gt, results = random_keypoint_case(2)
    mixed = [dict(r, bbox=[0.0, 0.0, 40.0, 20.0 + i]) if i % 2 else r for i, r in enumerate(results)]
    code, stats, _ = _cli(tmp_path, gt, mixed, capsys, "--iou-type", "keypoints")
    assert code == 0
    assert stats == _reference(gt, mixed, "keypoints")
    assert stats == _reference(gt, results, "keypoints")  # the boxes change nothing there


# ---------------------------------------------------------------------------------------------------------
# Start-up: a run imports only what it uses
# ---------------------------------------------------------------------------------------------------------


def test_a_plain_run_imports_neither_wandb_nor_pillow() -> None:
    """W&B and Pillow are imported only by a run that logs (start-up is torch's and Ignite's imports)."""
    script = (
        "import sys; from ignite_det.cli.main import main; "
        f"code = main(['evaluate', {str(GT_FILE)!r}, {str(RESULTS_FILE)!r}]); "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('wandb', 'PIL'))); sys.exit(code)"
    )
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert run.stdout.splitlines()[-1] == "[]"


def test_the_command_list_names_every_iou_type(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "evaluate  COCO AP/AR of a results file: boxes, masks or keypoints" in capsys.readouterr().out
