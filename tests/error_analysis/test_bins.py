"""The per-sample bins (``error_bins``, for pictures) and the pieces of the analysis that must equal their
plain versions bit for bit: the repeated box IoU against ``box_pair_iou``, the chunked pass against one pass."""

from __future__ import annotations

import numpy as np
import pytest

from ignite_det.error_analysis import MAIN_ERRORS, coco
from ignite_det.error_analysis.coco import error_bins
from ignite_det.inputs import normalize_batch
from ignite_det.iou.bbox import box_pair_iou
from ignite_det.iou.by_type import pair_iou
from ignite_det.params import EvalParams
from ignite_det.store import DetectionStore
from tests.harness import evaluate_with_engine
from tests.tide_reference import coco_errors, coco_samples, tide_case


def _one_sample(sample: tuple[dict, dict], iou_type: str = "bbox"):
    store = DetectionStore()
    store.append(normalize_batch(([sample[0]], [sample[1]]), "xywh", iou_type))
    return store.collect()


@pytest.mark.parametrize("iou_type", ["bbox", "segm"])
def test_error_bins_of_each_sample_equal_the_reference(iou_type):
    """Image by image, with the evaluation's categories: each detection's bin and ground truth, each missed one,
    as ``coco_errors`` gives them on the whole case (a cell's bins depend on its image only)."""
    gt, results = tide_case(1, iou_type)
    samples, ids = coco_samples(gt, results, iou_type)
    ref = coco_errors(gt, results, iou_type)
    params = EvalParams.create(iou_type=iou_type)
    categories = np.array(sorted(c["id"] for c in gt["categories"]))
    found, missed = {}, []
    for sample, (det_ids, gt_ids) in zip(samples, ids.values()):
        bins = error_bins(_one_sample(sample, iou_type), params, 0, 0.1, pair_iou(params), categories)
        for det_id, code, row in zip(det_ids, bins.det_bin.tolist(), bins.det_gt_row.tolist()):
            if code >= 0:
                found[det_id] = (MAIN_ERRORS[code], gt_ids[row] if row >= 0 else None)
        missed += [gt_ids[j] for j in np.flatnonzero(bins.gt_missed)]
    assert found == ref.bins
    assert sorted(missed) == ref.missed


def test_repeated_box_iou_is_box_pair_iou_to_the_bit():
    gt, results = tide_case(4)
    d = _one_sample(coco_samples(gt, results)[0][0])
    rng = np.random.default_rng(0)
    d = d.__class__(**{**d.__dict__, "det_boxes": np.round(rng.uniform(0, 60, d.det_boxes.shape), 1)})
    fp = np.arange(len(d.det_scores))
    count = np.full(len(fp), len(d.gt_labels))
    pair_gt = np.tile(np.arange(len(d.gt_labels)), len(fp))
    d = d.__class__(**{**d.__dict__, "gt_crowd": np.zeros(len(d.gt_labels), np.int64)})
    expected = box_pair_iou(d, np.repeat(fp, count), pair_gt)
    assert (expected > 0).any() and (expected == 0).any()
    np.testing.assert_array_equal(coco._repeated_box_iou(d, fp, count, pair_gt), expected)


@pytest.mark.parametrize("size", [1, 7])
def test_tiny_chunks_give_the_same_analysis(size, monkeypatch):
    gt, results = tide_case(0)
    samples, _ = coco_samples(gt, results)
    names = {c["id"]: c["name"] for c in gt["categories"]}
    args = {"box_format": "xywh", "class_names": names, "error_analysis": True}
    whole = evaluate_with_engine(samples, 4, **args)["coco"].errors
    monkeypatch.setattr(coco, "PAIRS_PER_CHUNK", size)
    chunked = evaluate_with_engine(samples, 4, **args)["coco"].errors
    assert chunked.to_dict() == whole.to_dict()
    assert chunked.false_positives.rows() == whole.false_positives.rows()
    assert whole.ap == coco_errors(gt, results).ap


def test_the_transport_round_trip_keeps_everything():
    """What the other ranks rebuild from the broadcast arrays is the analysis rank 0 computed (padded sizes)."""
    from ignite_det.error_analysis.transport import pack_errors, unpack_errors

    gt, results = tide_case(3)
    samples, _ = coco_samples(gt, results)
    names = {c["id"]: c["name"] for c in gt["categories"]}
    errors = evaluate_with_engine(samples, 4, box_format="xywh", class_names=names, error_analysis=True)["coco"].errors
    arrays = pack_errors(errors, len(results) + 3, 200, 9)
    back = unpack_errors(arrays, "coco", errors.iou_threshold, errors.background_threshold, names)
    assert back.to_dict() == errors.to_dict() and back.per_class == errors.per_class
    assert back.false_positives.rows() == errors.false_positives.rows() and len(back.false_positives) > 100
    assert back.missed.rows() == errors.missed.rows() and len(back.missed) > 0
    with pytest.raises(ValueError, match="does not fit"):
        pack_errors(errors, 10, 200, 9)
