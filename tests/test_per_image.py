"""result.per_image against counts brute-forced from pycocotools' own ``evalImgs``, for every backend.

The reference (tests/coco_reference.py ``per_image_from_evalimgs``) walks COCOeval's per-(image,
category) records at area "all" and the largest ``max_detections``; the rows must equal it exactly.
"""

from __future__ import annotations

import json
from pathlib import Path

import ignite.distributed as idist
import numpy as np
import pytest

from ignite_det import CocoMetric
from ignite_det.per_image import PER_IMAGE_COLUMNS, PerImage
from tests.coco_reference import (
    GT_FILE,
    check_against_pycocotools,
    empty_cases,
    per_image_from_evalimgs,
    random_case,
    run_cocoeval,
    to_coco,
)
from tests.harness import evaluate_with_engine, spawn_gloo
from tests.type_cases import keypoint_samples, random_keypoint_case, random_mask_case, run_typed_cocoeval


@pytest.mark.parametrize("seed", range(4))
def test_rows_equal_evalimgs_on_generated_cases(seed, backend):
    predictions, targets = random_case(seed)
    result, coco_eval = check_against_pycocotools(list(zip(predictions, targets)), backend)
    assert result.per_image.rows() == per_image_from_evalimgs(coco_eval)
    assert list(result.per_image.rows()[0]) == list(PER_IMAGE_COLUMNS)


def test_rows_equal_evalimgs_on_the_real_data(real_samples, files_cocoeval, backend):
    """COCOeval evaluates the file's 80 categories, some without ground truth in these 100 images, whose
    detections are false positives: named in ``class_names``, the metric evaluates the same ones."""
    names = {c["id"]: c["name"] for c in json.loads(GT_FILE.read_text())["categories"]}
    result = evaluate_with_engine(real_samples, 10, box_format="xywh", backend=backend, class_names=names)["coco"]
    rows = result.per_image.rows()
    assert rows == per_image_from_evalimgs(files_cocoeval)
    assert len(rows) == 100 and sum(r["tp50"] for r in rows) > 0


@pytest.mark.parametrize("case", list(empty_cases()))
def test_rows_of_empty_evaluations(case, backend):
    result, coco_eval = check_against_pycocotools(empty_cases()[case], backend)
    assert result.per_image.rows() == per_image_from_evalimgs(coco_eval)


def test_masks_and_keypoints(backend):
    gt, results, predictions, targets = random_mask_case(3)
    segm = evaluate_with_engine(list(zip(predictions, targets)), 3, iou_type="segm", backend=backend)["coco"]
    assert segm.per_image.rows() == per_image_from_evalimgs(run_typed_cocoeval(gt, results, "segm"))
    gt, results = random_keypoint_case(3)
    samples = keypoint_samples(gt, results)
    kp = evaluate_with_engine(samples, 3, iou_type="keypoints", box_format="xywh", backend=backend)
    assert kp["coco"].per_image.rows() == per_image_from_evalimgs(run_typed_cocoeval(gt, results, "keypoints"))


@pytest.mark.parametrize(
    "params",
    [
        {"iou_thresholds": [0.6, 0.75], "max_detections": [1, 2, 3]},  # 0.5 not evaluated: its columns are -1
        {"iou_thresholds": [0.5], "max_detections": [1, 3, 5]},  # 0.75 not evaluated; a cut at 5 per cell
    ],
)
def test_other_thresholds_and_cuts(params, backend):
    predictions, targets = random_case(11)
    samples = list(zip(predictions, targets))
    result = evaluate_with_engine(samples, 4, backend=backend, **params)["coco"]
    gt, res = to_coco(predictions, targets)
    coco_eval = run_cocoeval(gt, res, iouThrs=np.array(params["iou_thresholds"]), maxDets=params["max_detections"])
    assert result.per_image.rows() == per_image_from_evalimgs(coco_eval)
    missing = "tp50" if 0.5 not in params["iou_thresholds"] else "tp75"
    assert {row[missing] for row in result.per_image.rows()} == {-1}


def test_worst_first_orders_by_errors_then_misses_then_strict_errors():
    table = np.array(
        [
            [1, 2, 2, 2, 0, 0, 2, 0, 0],  # perfect
            [2, 3, 1, 0, 1, 3, 0, 1, 3],  # 4 errors, 3 missed
            [3, 0, 4, 0, 4, 0, 0, 4, 0],  # 4 errors, none missed
            [4, 3, 3, 2, 1, 1, 0, 3, 3],  # 2 errors, 6 at 0.75
            [5, 3, 3, 2, 1, 1, 2, 1, 1],  # 2 errors, 2 at 0.75
            [6, 3, 1, 0, 1, 3, 0, 1, 3],  # as image 2: by image id
        ]
    )
    assert PerImage.from_table(table).worst_first().image_id.tolist() == [2, 6, 3, 4, 5, 1]


def test_rows_are_json_ready_and_read_only_of_the_result(real_samples):
    result = evaluate_with_engine(real_samples, 25, box_format="xywh")["coco"]
    rows = json.loads(json.dumps(result.per_image.rows()))
    assert rows == result.per_image.rows()
    assert [r["image_id"] for r in rows] == sorted(r["image_id"] for r in rows)
    worst = result.per_image.worst_first()
    errors = worst.fp50 + worst.fn50
    assert (np.diff(errors) <= 0).all()


def test_a_metric_reused_gives_fresh_rows(real_samples):
    metric = CocoMetric(box_format="xywh")
    metric.update(([p for p, _ in real_samples[:10]], [t for _, t in real_samples[:10]]))
    assert len(metric.compute().per_image) == 10
    metric.reset()
    metric.update(([p for p, _ in real_samples[:3]], [t for _, t in real_samples[:3]]))
    assert len(metric.compute().per_image) == 3


# --- under distribution ----------------------------------------------------------------------------


def _per_image_worker(local_rank: int, out_dir: str) -> None:
    predictions, targets = random_case(5, num_images=13)
    samples = list(zip(predictions, targets))
    mine = [samples[i] for i in range(idist.get_rank(), 13, 2)] + ([samples[0]] if idist.get_rank() else [])
    found = {}
    for backend in ("native", "pycocotools"):
        metric = CocoMetric(backend=backend)
        for start in range(0, len(mine), 3):
            batch = mine[start : start + 3]
            metric.update(([p for p, _ in batch], [t for _, t in batch]))
        found[backend] = metric.compute().per_image.rows()
    Path(out_dir, f"rank{idist.get_rank()}.json").write_text(json.dumps(found))


@pytest.mark.usefixtures("gloo_on_the_cpu")
def test_two_gloo_processes_give_the_single_process_rows(tmp_path):
    """Shards interleaved and one padded with a repeat, as DistributedSampler pads: each image once."""
    spawn_gloo(_per_image_worker, str(tmp_path))
    predictions, targets = random_case(5, num_images=13)
    _, coco_eval = check_against_pycocotools(list(zip(predictions, targets)), "native")
    expected = per_image_from_evalimgs(coco_eval)
    for rank in range(2):
        found = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert found == {"native": expected, "pycocotools": expected}
