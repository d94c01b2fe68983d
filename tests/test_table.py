"""The canonical record (ignite_det/table.py): its named columns keep the layout checkpoints were written in,
and the value rules (ignite_det/rules.py) read the same at both doors.

``tests/data/checkpoint_before_table.pt`` holds ``CocoMetric.state_dict()`` of a box, a mask and a keypoint
evaluation, written by the code before the record and its columns were named (commit 800bdbf), from the
cases below:

    states["bbox"]: CocoMetric() updated with random_case(8, num_images=14)
    states["segm"]: CocoMetric(iou_type="segm") with random_mask_case(3, num_images=6)
    states["keypoints"]: CocoMetric(iou_type="keypoints", box_format="xywh") with
        keypoint_samples(*random_keypoint_case(7, num_images=10))
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from ignite_det import CocoMetric, backends
from ignite_det.inputs import normalize_batch
from ignite_det.rules import CROWD
from ignite_det.table import DETECTION_COLUMNS, GROUND_TRUTH_COLUMNS, Detections
from tests.coco_reference import random_case, run_cocoeval, stats_dict, to_coco
from tests.type_cases import keypoint_samples, random_keypoint_case, random_mask_case, run_typed_cocoeval

SAVED = Path(__file__).parent / "data" / "checkpoint_before_table.pt"


def _reference(iou_type: str) -> list[float]:
    """pycocotools' summary of the case each saved state was made from."""
    if iou_type == "bbox":
        return list(stats_dict(run_cocoeval(*to_coco(*random_case(8, num_images=14)))).values())
    if iou_type == "segm":
        return run_typed_cocoeval(*random_mask_case(3, num_images=6)[:2], "segm").stats.tolist()
    return run_typed_cocoeval(*random_keypoint_case(7, num_images=10), "keypoints").stats.tolist()


@pytest.mark.parametrize("backend", backends.BACKENDS)
@pytest.mark.parametrize("iou_type", ["bbox", "segm", "keypoints"])
def test_a_checkpoint_written_before_the_named_columns_loads(iou_type, backend):
    saved = torch.load(SAVED, weights_only=True)[iou_type]
    metric = CocoMetric(iou_type=iou_type, backend=backend, box_format="xywh" if iou_type == "keypoints" else "xyxy")
    metric.load_state_dict(saved)
    assert list(metric.compute().values()) == _reference(iou_type)


def _record(iou_type: str) -> Detections:
    if iou_type == "segm":
        _, _, predictions, targets = random_mask_case(3, num_images=6)
        return normalize_batch((predictions, targets), "xyxy", "segm")
    if iou_type == "keypoints":
        samples = keypoint_samples(*random_keypoint_case(7, num_images=10))
        return normalize_batch(([p for p, _ in samples], [t for _, t in samples]), "xywh", "keypoints", 17)
    return normalize_batch(random_case(8, num_images=14), "xyxy")


@pytest.mark.parametrize("iou_type", ["bbox", "segm", "keypoints"])
def test_the_tables_carry_every_field_and_name_their_columns(iou_type):
    record = _record(iou_type)
    images, dets, gts = record.to_tensors()
    back = Detections.from_tensors(images, dets, gts, *record.rle_tensors())
    for name, value in record.__dict__.items():
        if name != "numbered":
            np.testing.assert_array_equal(getattr(back, name), value, err_msg=name)
    named = DETECTION_COLUMNS.unpack(dets.numpy())
    np.testing.assert_array_equal(named["scores"], record.det_scores)
    np.testing.assert_array_equal(named["keypoints"], record.det_keypoints)
    np.testing.assert_array_equal(GROUND_TRUTH_COLUMNS.unpack(gts.numpy())["crowd"], record.gt_crowd)


def test_both_doors_word_a_rule_alike(tmp_path, capsys):
    from ignite_det.cli.main import main

    box = torch.tensor([[0.0, 0.0, 2.0, 2.0]])
    target = {"boxes": box, "labels": torch.tensor([1]), "iscrowd": torch.tensor([2])}
    prediction = {"boxes": box, "scores": torch.tensor([0.5]), "labels": torch.tensor([1])}
    with pytest.raises(ValueError, match=re.escape(f"y[0]['iscrowd'] {CROWD.requirement}, got [2.0]")):
        normalize_batch(([prediction], [target]), "xyxy")
    annotation = {"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 2, 2], "area": 4, "iscrowd": 2}
    gt = tmp_path / "gt.json"
    gt.write_text(json.dumps({"images": [{"id": 1}], "annotations": [annotation], "categories": [{"id": 1}]}))
    results = tmp_path / "results.json"
    results.write_text(json.dumps([{"image_id": 1, "category_id": 1, "bbox": [0, 0, 2, 2], "score": 0.5}]))
    assert main(["evaluate", str(gt), str(results)]) != 0
    assert f"{gt}: annotations[0]['iscrowd'] {CROWD.requirement}, got 2" in capsys.readouterr().err
