"""``ignite-det evaluate --errors``: the printed TIDE tables and the JSON report's ``errors`` and per-image bins,
against the references of ``tests/tide_reference.py`` on the cocoapi's real files: ``coco_errors`` (TIDE's bins on
pycocotools' ``evalImgs``, dAP from pycocotools' ``accumulate``) for ``--errors``, tidecv itself for
``--errors tidecv``.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from ignite_det.cli.main import main
from ignite_det.per_image import PER_IMAGE_COLUMNS
from tests import wandb_records as wr
from tests.coco_reference import GT_FILE, RESULTS_FILE, SEGM_RESULTS_FILE, per_image_from_evalimgs
from tests.tide_reference import MAIN, SPECIAL, coco_errors, run_tidecv


def _evaluate(tmp_path: Path, *extra: str, results: Path = RESULTS_FILE) -> tuple[int, dict]:
    report = tmp_path / "report.json"
    code = main(["evaluate", str(GT_FILE), str(results), "--output", str(report), *extra])
    return code, json.loads(report.read_text()) if report.exists() else {}


def _same(got: float | None, expected: float) -> bool:
    """The report's number equals the reference's; an undefined one (NaN) is JSON's null."""
    return got == expected or (got is None and math.isnan(expected))


def _printed_tables(out: str) -> dict[str, float]:
    """The numbers of TIDE's two printed tables, by bin name (AP points, as printed)."""
    lines = out.splitlines()
    start = next(k for k, line in enumerate(lines) if line.startswith("Errors ("))
    numbers = {}
    for names, values in ((lines[start + 1], lines[start + 2]), (lines[start + 3], lines[start + 4])):
        numbers.update(zip(names.split(), map(float, values.split())))
    return numbers


@pytest.fixture(scope="module")
def reference(gt: dict, results: list) -> Any:
    return coco_errors(gt, results)


def test_errors_report_equals_the_reference_on_cocoevals_matching(tmp_path: Path, capsys, reference: Any) -> None:
    code, report = _evaluate(tmp_path, "--errors")
    assert code == 0
    errors = report["errors"]
    assert {"AP", "main", "special", "per_class"} <= set(errors)
    assert errors["mode"] == "coco"
    assert errors["AP"] == reference.ap == report["AP50"]
    assert list(errors["main"]) == list(MAIN) and list(errors["special"]) == list(SPECIAL)
    assert errors["main"] == reference.main
    assert errors["special"] == reference.special
    assert errors["counts"] == reference.counts
    assert {c["category_id"] for c in errors["per_class"]} == set(reference.per_class)
    for c in errors["per_class"]:
        expected = reference.per_class[c["category_id"]]
        assert all(_same(c["main"][name], expected[name]) for name in MAIN), c["name"]
        assert all(_same(c["special"][name], expected[name]) for name in SPECIAL), c["name"]
    printed = _printed_tables(capsys.readouterr().out)
    assert printed == {name: round(100 * v, 2) for name, v in (*reference.main.items(), *reference.special.items())}


def test_per_image_rows_count_each_images_errors_by_bin(
    tmp_path: Path, capsys, gt: dict, results: list, reference: Any, files_cocoeval: Any
) -> None:
    code, report = _evaluate(tmp_path, "--errors", "--per-image")
    assert code == 0
    rows = report["per_image"]
    assert all(list(row) == [*PER_IMAGE_COLUMNS, *MAIN] for row in rows)
    counts = per_image_from_evalimgs(files_cocoeval)
    assert [{k: row[k] for k in PER_IMAGE_COLUMNS} for row in rows] == counts
    # the reference's bins by detection id (loadRes numbers results from 1) and missed ground-truth ids
    image_of_gt = {a["id"]: a["image_id"] for a in gt["annotations"]}
    expected: Counter = Counter()
    for det_id, (name, _) in reference.bins.items():
        expected[(results[det_id - 1]["image_id"], name)] += 1
    for gt_id in reference.missed:
        expected[(image_of_gt[gt_id], "Miss")] += 1
    assert {(row["image_id"], name): row[name] for row in rows for name in MAIN if row[name]} == dict(expected)
    lines = capsys.readouterr().out.splitlines()
    header = lines[next(k for k, line in enumerate(lines) if line.startswith("Worst images")) + 1]
    assert header.split() == [*PER_IMAGE_COLUMNS, *MAIN]


def test_errors_tidecv_equals_tidecv(tmp_path: Path, capsys, gt: dict, results: list) -> None:
    code, report = _evaluate(tmp_path, "--errors", "tidecv")
    assert code == 0
    tide = run_tidecv(gt, results)
    errors = report["errors"]
    assert errors["mode"] == "tidecv"
    assert errors["AP"] == pytest.approx(tide.ap, abs=1e-9)
    assert errors["main"] == pytest.approx(tide.main, abs=1e-9)
    assert errors["special"] == pytest.approx(tide.special, abs=1e-9)
    assert errors["AP"] != report["AP50"]  # tidecv's own AP (64.2 where COCOeval's AP50 is 69.7)
    assert "Errors (tidecv)" in capsys.readouterr().out


def test_background_threshold_reaches_the_analysis(tmp_path: Path, gt: dict, results: list) -> None:
    code, report = _evaluate(tmp_path, "--errors", "--background-threshold", "0.3")
    assert code == 0
    reference = coco_errors(gt, results, t_b=0.3)
    assert report["errors"]["background_threshold"] == 0.3
    assert (report["errors"]["main"], report["errors"]["counts"]) == (reference.main, reference.counts)


def test_background_threshold_may_reach_the_lowest_iou_threshold_when_0_5_is_not_evaluated(tmp_path: Path) -> None:
    """Without 0.5 among the thresholds the analysis runs at the lowest, and t_b may go up to it (the command
    line's check agrees with the metric's)."""
    code, report = _evaluate(tmp_path, "--errors", "--background-threshold", "0.65", "--iou-thresholds", "0.7", "0.9")
    assert code == 0
    assert report["errors"]["background_threshold"] == 0.65


def test_masks(tmp_path: Path, gt: dict) -> None:
    code, report = _evaluate(tmp_path, "--errors", "--iou-type", "segm", results=SEGM_RESULTS_FILE)
    assert code == 0
    reference = coco_errors(gt, json.loads(SEGM_RESULTS_FILE.read_text()), "segm")
    assert report["errors"]["AP"] == reference.ap == report["AP50"]
    assert (report["errors"]["main"], report["errors"]["special"]) == (reference.main, reference.special)


def test_without_errors_the_report_has_none(tmp_path: Path, capsys) -> None:
    code, report = _evaluate(tmp_path, "--per-image")
    assert code == 0 and "errors" not in report
    assert all(list(row) == list(PER_IMAGE_COLUMNS) for row in report["per_image"])
    assert "Errors (" not in capsys.readouterr().out


def test_wandb_run_holds_the_reports_errors(tmp_path: Path, monkeypatch, reference: Any) -> None:
    import wandb

    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    wandb.teardown()  # W&B reads its environment once per process
    try:
        code, report = _evaluate(tmp_path, "--errors", "--wandb-project", "ignite-det-tests", "--wandb-mode", "offline")
    finally:
        wandb.teardown()
    assert code == 0
    (row,) = [r for r in wr.history_rows(wr.find_run_dir(tmp_path)) if "val/AP" in r]
    assert row["val/errors/AP"] == report["errors"]["AP"] == reference.ap
    assert {name: row[f"val/errors/dAP/{name}"] for name in MAIN} == report["errors"]["main"] == reference.main
    assert {name: row[f"val/errors/dAP/{name}"] for name in SPECIAL} == reference.special
    _, rows = wr.load_table(wr.find_run_dir(tmp_path), row["val/errors/per_class"])
    assert [r[0] for r in rows] == [c["category_id"] for c in report["errors"]["per_class"]]
