"""CocoMetric.write_predictions: the file, read by pycocotools' ``loadRes``, evaluates to the metric's numbers.

The references are pycocotools on the same data converted the documented way (tests/coco_reference.py
``to_coco``, tests/type_cases.py), never our own output: the written objects equal the reference's
results list, and COCOeval run on the written file gives the metric's 12 numbers and arrays.
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import ignite.distributed as idist
import numpy as np
import pytest
import torch
from ignite.engine import Engine
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from ignite_det import CocoMetric
from ignite_det import predictions as predictions_module
from tests.coco_reference import GT_FILE, RESULTS_FILE, random_case, run_cocoeval, stats_dict, to_coco
from tests.harness import assert_same_arrays, spawn_gloo
from tests.type_cases import keypoint_samples, random_keypoint_case, random_mask_case


def _run(samples: list, batch_size: int = 4, **metric_args) -> CocoMetric:
    """A real Ignite evaluation; the metric, to write its predictions afterwards."""
    metric = CocoMetric(**metric_args)
    evaluator = Engine(lambda engine, batch: ([p for p, _ in batch], [t for _, t in batch]))
    metric.attach(evaluator, "coco")
    evaluator.run([samples[i : i + batch_size] for i in range(0, len(samples), batch_size)])
    return metric


def _evaluate_file(gt: COCO, path: Path, iou_type: str) -> COCOeval:
    with contextlib.redirect_stdout(io.StringIO()):
        coco_eval = COCOeval(gt, gt.loadRes(str(path)), iou_type)
        coco_eval.evaluate()
        coco_eval.accumulate()
        coco_eval.summarize()
    return coco_eval


def _coco(gt: dict) -> COCO:
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = json.loads(json.dumps(gt))
        coco.createIndex()
    return coco


def test_boxes_written_are_the_reference_results_and_evaluate_to_the_metric(tmp_path, backend, monkeypatch):
    monkeypatch.setattr(predictions_module, "_LINES_PER_WRITE", 7)  # the file is written in many pieces
    predictions, targets = random_case(2, box_format="cxcywh")
    samples = list(zip(predictions, targets))
    metric = _run(samples, box_format="cxcywh", backend=backend)
    result = metric.compute()
    path = tmp_path / "results.json"
    gt, reference = to_coco(predictions, targets, "cxcywh")
    assert metric.write_predictions(path) == len(reference)
    by_image = sorted(reference, key=lambda r: r["image_id"])  # stable: each image's detections in order
    assert json.loads(path.read_text()) == by_image
    coco_eval = _evaluate_file(_coco(gt), path, "bbox")
    assert dict(result) == stats_dict(coco_eval) == stats_dict(run_cocoeval(gt, reference))
    assert_same_arrays(result, coco_eval)


def test_the_real_results_file_comes_back(tmp_path, real_samples, files_cocoeval):
    metric = _run(real_samples, 10, box_format="xywh")
    path = tmp_path / "results.json"
    metric.write_predictions(path)
    written = json.loads(path.read_text())
    published = sorted(json.loads(RESULTS_FILE.read_text()), key=lambda r: r["image_id"])
    assert [(r["image_id"], r["category_id"], r["bbox"], r["score"]) for r in written] == [
        (r["image_id"], r["category_id"], r["bbox"], r["score"]) for r in published
    ]
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(GT_FILE))
    assert _evaluate_file(gt, path, "bbox").stats.tolist() == files_cocoeval.stats.tolist()


def test_masks_written_as_rle_evaluate_to_the_metric(tmp_path, backend):
    gt, results, predictions, targets = random_mask_case(4)
    metric = _run(list(zip(predictions, targets)), 3, iou_type="segm", backend=backend)
    result = metric.compute()
    path = tmp_path / "segm.json"
    metric.write_predictions(path)
    written = json.loads(path.read_text())
    assert all(set(r) == {"image_id", "category_id", "segmentation", "score"} for r in written)
    coco_eval = _evaluate_file(_coco(gt), path, "segm")
    assert list(result.values()) == coco_eval.stats.tolist()
    assert_same_arrays(result, coco_eval)


def test_keypoints_written_evaluate_to_the_metric(tmp_path, backend):
    gt, results = random_keypoint_case(4)
    metric = _run(keypoint_samples(gt, results), 3, iou_type="keypoints", box_format="xywh", backend=backend)
    result = metric.compute()
    path = tmp_path / "keypoints.json"
    metric.write_predictions(path)
    coco_eval = _evaluate_file(_coco(gt), path, "keypoints")
    assert list(result.values()) == coco_eval.stats.tolist()
    assert_same_arrays(result, coco_eval)


def test_a_test_dev_run_collects_and_writes_without_ground_truth(tmp_path):
    """No annotations: the targets carry an image_id and no boxes. compute() reports nothing to score."""
    predictions, targets = random_case(6)
    unlabelled = [
        {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64), "image_id": t["image_id"]}
        for t in targets
    ]
    metric = _run(list(zip(predictions, unlabelled)))
    path = tmp_path / "test-dev.json"
    _, reference = to_coco(predictions, targets)
    assert metric.write_predictions(path) == len(reference)
    assert json.loads(path.read_text()) == sorted(reference, key=lambda r: r["image_id"])
    result = metric.compute()
    assert result.best_f1.status == "no ground truth"
    assert set(result.values()) == {-1.0}
    assert result.per_image.num_gt.tolist() == [0] * len(targets)
    assert "no ground truth" in str(result)


def test_every_float_reads_back_to_its_own_bits(tmp_path, monkeypatch):
    """Floats are written as repr: json (as loadRes reads the file) gives back the very float64s given."""
    monkeypatch.setattr(predictions_module, "_LINES_PER_WRITE", 3)
    awkward = [0.1 + 0.2, 1e-7, 5e-324, 3 * 2.0**-1074, 1e16 + 2, 123456789.123, 1 / 3, 640.0, 2.5e-5, 1e300 * 1.7]
    boxes = torch.tensor([awkward[i : i + 4] for i in range(len(awkward) - 3)], dtype=torch.float64).abs()
    scores = torch.tensor(awkward[: len(boxes)], dtype=torch.float64)
    labels = torch.arange(len(boxes)) * 1000 + 1
    metric = CocoMetric(box_format="xywh")
    target = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64), "image_id": 2**53 - 1}
    metric.update(([{"boxes": boxes, "scores": scores, "labels": labels}], [target]))
    path = tmp_path / "awkward.json"
    assert metric.write_predictions(path) == len(boxes)
    written = json.loads(path.read_text())
    assert [r["bbox"] for r in written] == boxes.tolist()
    assert [r["score"] for r in written] == scores.tolist()
    assert [(r["image_id"], r["category_id"]) for r in written] == [(2**53 - 1, c) for c in labels.tolist()]


def test_rle_counts_holding_a_backslash_are_escaped(tmp_path):
    """A first run of 44 zeros is written as the character 92, the backslash, which JSON escapes."""
    from pycocotools import mask as coco_mask

    dense = torch.zeros(1, 1, 50, dtype=torch.uint8)
    dense[0, 0, 44:] = 1
    expected = coco_mask.encode(np.asfortranarray(dense.numpy().transpose(1, 2, 0)))[0]["counts"].decode()
    assert "\\" in expected
    metric = CocoMetric(iou_type="segm")
    metric.update(
        (
            [{"masks": dense, "scores": torch.tensor([0.5]), "labels": torch.tensor([1])}],
            [{**_no_gt(), "masks": dense[:0]}],
        )
    )
    path = tmp_path / "backslash.json"
    metric.write_predictions(path)
    assert "\\\\" in path.read_text()
    assert json.loads(path.read_text())[0]["segmentation"] == {"size": [1, 50], "counts": expected}


def _no_gt() -> dict:
    return {"labels": torch.zeros(0, dtype=torch.int64), "image_id": 1}


def test_nothing_accumulated_writes_an_empty_list(tmp_path):
    path = tmp_path / "empty.json"
    assert CocoMetric().write_predictions(path) == 0
    assert json.loads(path.read_text()) == []


# --- under distribution ----------------------------------------------------------------------------


def _writer(local_rank: int, out_dir: str) -> None:
    predictions, targets = random_case(8, num_images=11)
    samples = list(zip(predictions, targets))
    mine = [samples[i] for i in range(idist.get_rank(), 11, 2)] + ([samples[0]] if idist.get_rank() else [])
    metric = CocoMetric()
    metric.update(([p for p, _ in mine], [t for _, t in mine]))
    count = metric.write_predictions(Path(out_dir, "results.json"))
    written = json.loads(Path(out_dir, "results.json").read_text())  # complete on every rank once it returns
    Path(out_dir, f"rank{idist.get_rank()}.json").write_text(json.dumps({"count": count, "seen": len(written)}))


@pytest.mark.usefixtures("gloo_on_the_cpu")
def test_two_gloo_processes_write_each_image_once(tmp_path):
    spawn_gloo(_writer, str(tmp_path))
    predictions, targets = random_case(8, num_images=11)
    _, reference = to_coco(predictions, targets)
    assert json.loads((tmp_path / "results.json").read_text()) == sorted(reference, key=lambda r: r["image_id"])
    for rank in range(2):
        assert json.loads((tmp_path / f"rank{rank}.json").read_text()) == {
            "count": len(reference),
            "seen": len(reference),
        }
