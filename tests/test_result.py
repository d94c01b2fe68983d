"""The result object: per-class numbers, curves, operating point and confusion matrix against references."""

from __future__ import annotations

import contextlib
import io
import json
import math

import numpy as np
import pytest
import torch

from ignite_det import CocoMetric
from ignite_det.result import _class_means, _mean_valid
from tests.coco_reference import cocoeval_on_the_files, load_real_samples, random_case, run_cocoeval, to_coco


def _result(predictions, targets, **kwargs):
    metric = CocoMetric(**kwargs)
    metric.update((predictions, targets))
    return metric.compute()


@pytest.fixture(scope="module")
def real():
    samples = load_real_samples()
    metric = CocoMetric(box_format="xywh")
    metric.update(([p for p, _ in samples], [t for _, t in samples]))
    return metric.compute()


def test_summary_is_pycocotools_summarize_output(real, files_cocoeval):
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        files_cocoeval.summarize()
    expected = [line for line in printed.getvalue().splitlines() if line.startswith(" Average")]
    assert real.summary().splitlines() == expected
    assert str(real).startswith(real.summary())


def test_mapping_is_read_only_and_plain_floats(real):
    assert list(real) == ["AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl"]
    assert all(type(v) is float for v in real.values())
    with pytest.raises(TypeError):
        real["AP"] = 1.0  # type: ignore[index]
    with pytest.raises(ValueError):
        real.precision[0, 0, 0, 0, 0] = 1.0


@pytest.mark.parametrize("seed", [0, 1])
def test_per_class_numbers_equal_pycocotools_restricted_to_that_class(seed):
    predictions, targets = random_case(seed)
    gt, results = to_coco(predictions, targets)
    result = _result(predictions, targets)
    for row in result.per_class:
        reference = run_cocoeval(gt, results, catIds=[row.category_id]).stats
        assert (row.AP, row.AP50, row.AP75, row.APs, row.APm, row.APl, row.AR_max) == tuple(
            float(reference[i]) for i in (0, 1, 2, 3, 4, 5, 8)
        )
        assert row.num_gt == sum(
            1 for a in gt["annotations"] if a["category_id"] == row.category_id and not a["iscrowd"]
        )
        assert row.num_det == sum(1 for p in predictions for label in p["labels"].tolist() if label == row.category_id)


@pytest.mark.parametrize("seed", range(4))
def test_per_class_means_of_the_whole_array_equal_one_mean_per_class(seed):
    """All categories at once (numpy's row sums) give np.mean of each one's valid values, to the last bit,
    whether a category's values are all valid (pycocotools' arrays), none, or some."""
    rng = np.random.default_rng(seed)
    values = np.round(rng.random((10, 101, 30)), int(rng.integers(1, 17)))  # (T, R, K), as a precision slice
    values[:, :, 3] = -1.0  # no ground truth
    values[rng.random(values.shape) < 0.01] = -1.0  # scattered: not from pycocotools, still a mean
    values[:, :, 5] = rng.random((10, 101)) * 1e-3
    means = _class_means(values)
    assert means.tolist() == [_mean_valid(values[:, :, k : k + 1]) for k in range(values.shape[-1])]
    assert _class_means(values[0]).tolist() == [_mean_valid(values[0, :, k]) for k in range(values.shape[-1])]


def test_per_class_on_real_data_equals_pycocotools_restricted_to_that_class(real):
    for row in (real.per_class[0], real.per_class[-1]):  # person, the most frequent class, and the last one
        reference = cocoeval_on_the_files(catIds=[row.category_id])
        assert (row.AP, row.AP50, row.AP75, row.APs, row.APm, row.APl, row.AR100) == tuple(
            float(reference.stats[i]) for i in (0, 1, 2, 3, 4, 5, 8)
        )


def test_pr_curves_equal_pycocotools_precision_on_the_files(real, files_cocoeval):
    """COCOeval's precision (T, R, K, A, M): a class's curve at an IoU, area all, the largest maxDets."""
    reference = files_cocoeval.eval["precision"]
    k = files_cocoeval.params.catIds.index(1)
    recall, precision = real.pr_curve(category_id=1, iou_threshold=0.75)
    np.testing.assert_array_equal(recall, files_cocoeval.params.recThrs)
    np.testing.assert_array_equal(precision, reference[5, :, k, 0, -1])
    _, mean = real.pr_curve()
    curves = reference[0, :, :, 0, -1]  # (R, K): a class without ground truth is -1 throughout, left out
    expected = [np.mean(row[row > -1]) for row in curves]
    np.testing.assert_allclose(mean, expected, rtol=0, atol=1e-15)
    with pytest.raises(ValueError, match="IoU threshold 0.33 was not evaluated"):
        real.pr_curve(iou_threshold=0.33)


def _brute_force_best_f1(predictions, targets, category_id=None):
    """Sweep every score as threshold, counting pycocotools' own matches at IoU 0.5, area all, maxDets 100."""
    gt, results = to_coco(predictions, targets)
    coco_eval = run_cocoeval(gt, results)
    num_images = len(coco_eval.params.imgIds)
    dets = []  # (score, is_tp) of counted detections
    for k, cat in enumerate(coco_eval.params.catIds):
        if category_id is not None and cat != category_id:
            continue
        start = k * len(coco_eval.params.areaRng) * num_images
        for e in coco_eval.evalImgs[start : start + num_images]:
            if e is None:
                continue
            for score, match, ignored in zip(e["dtScores"], e["dtMatches"][0], e["dtIgnore"][0]):
                if not ignored:
                    dets.append((score, match > 0))
    num_gt = sum(1 for a in gt["annotations"] if not a["iscrowd"] and category_id in (None, a["category_id"]))
    best = (-1.0, None)
    for threshold in sorted({s for s, _ in dets}, reverse=True):
        tp = sum(1 for s, t in dets if s >= threshold and t)
        kept = sum(1 for s, _ in dets if s >= threshold)
        p, r = tp / kept, tp / num_gt
        f1 = 2 * p * r / (p + r) if p + r else 0.0
        if f1 > best[0]:
            best = (f1, (threshold, p, r, f1))
    return best[1]


@pytest.mark.parametrize("seed", [0, 3])
def test_best_f1_equals_a_brute_force_sweep(backend, seed):
    predictions, targets = random_case(seed)
    result = _result(predictions, targets, backend=backend)
    expected = _brute_force_best_f1(predictions, targets)
    assert (result.best_f1.threshold, result.best_f1.precision, result.best_f1.recall) == pytest.approx(
        expected[:3], abs=1e-12
    )
    assert result.best_f1.f1 == pytest.approx(expected[3], abs=1e-12)
    for row in result.per_class:
        if row.num_gt == 0:
            assert math.isnan(row.f1.f1)
            continue
        expected = _brute_force_best_f1(predictions, targets, row.category_id)
        if expected is None:
            assert row.f1.f1 == 0.0
        else:
            assert row.f1.f1 == pytest.approx(expected[3], abs=1e-12)
            assert row.f1.threshold == pytest.approx(expected[0])


def test_f1_curve_is_monotone_in_recall_and_spans_the_scores(real):
    curve = real.f1_curve()
    assert len(curve["threshold"]) == 101
    assert curve["threshold"][0] == 0.0 and curve["threshold"][-1] == 1.0
    assert np.all(np.diff(curve["recall"]) <= 0)
    best = real.best_f1
    assert np.nanmax(curve["f1"]) <= best.f1 + 1e-12


def _box(x, y, w=10.0, h=10.0):
    return [x, y, x + w, y + h]


def test_confusion_matrix_counts_hits_confusions_misses_and_spurious_detections():
    target = {
        "boxes": torch.tensor([_box(0, 0), _box(50, 0), _box(100, 0), _box(150, 0, 40, 40)]),
        "labels": torch.tensor([1, 1, 2, 2]),
        "iscrowd": torch.tensor([0, 0, 0, 1]),
        "image_id": 1,
    }
    prediction = {
        "boxes": torch.tensor([_box(0, 0), _box(50, 0), _box(200, 200), _box(155, 5), _box(100, 0)]),
        "scores": torch.tensor([0.9, 0.8, 0.7, 0.6, 0.01]),
        "labels": torch.tensor([1, 2, 1, 2, 2]),
    }
    result = _result([prediction], [target], f1_iou_threshold=0.5)
    matrix = result.confusion_matrix
    assert result.category_ids == (1, 2)
    threshold = _brute_force_best_f1([prediction], [target])[0]  # the operating point, from pycocotools' matches
    kept = [s >= threshold for s in prediction["scores"].tolist()]
    expected = np.zeros((3, 3), dtype=np.int64)
    expected[0, 0] += 1  # class 1 found as 1
    expected[0, 1] += kept[1]  # class 1 detected as 2
    expected[0, 2] += not kept[1]  # ... or missed
    expected[2, 0] += kept[2]  # a spurious class-1 detection
    expected[1, 1] += kept[4]  # class 2 found as 2
    expected[1, 2] += not kept[4]
    # the detection inside the crowd region is counted nowhere
    np.testing.assert_array_equal(matrix, expected)


def test_to_dict_is_json_ready(real):
    report = json.loads(json.dumps(real.to_dict(), allow_nan=False))
    assert report["AP"] == real["AP"]
    assert len(report["per_class"]) == len(real.per_class)
    assert set(report["best_f1"]) == {"threshold", "precision", "recall", "f1", "status"}
    assert report["best_f1"]["status"] == "ok"


@pytest.mark.parametrize("backend", ["pycocotools", "faster_coco_eval"])
@pytest.mark.parametrize("seed", range(6))
def test_operating_outcome_equals_pycocotools_evalimgs(seed, backend):
    """The per-detection outcome a COCOeval backend gives the operating point (the native matcher on
    the evaluated images) equals pycocotools' evalImgs, at several operating IoUs."""
    from ignite_det.backends import backend_class
    from ignite_det.inputs import normalize_batch
    from ignite_det.params import EvalParams
    from ignite_det.store import DetectionStore
    from ignite_det.table import category_index

    predictions, targets = random_case(seed)
    store = DetectionStore()
    store.append(normalize_batch((predictions, targets), "xyxy"))
    detections = store.collect()
    params = EvalParams.create()
    categories = np.unique(detections.gt_labels)
    det_k = category_index(detections.det_labels, categories)
    coco_eval = run_cocoeval(*to_coco(predictions, targets))
    for t in (0, 5, 9):
        outcome = backend_class(backend)(params, t).evaluate(detections, {}, categories, det_k).outcome
        np.testing.assert_array_equal(outcome, _evalimgs_outcome(coco_eval, t, len(detections.det_scores)))
        if t == 0:  # the case holds true positives, false positives and uncounted detections
            assert {-1, 0, 1} <= set(outcome.tolist())


def _evalimgs_outcome(coco_eval, t: int, num_dets: int) -> np.ndarray:
    """Per detection (results in arrival order): 1 matched, 0 unmatched, -1 ignored or never considered."""
    outcome = np.full(num_dets, -1, dtype=np.int8)
    num_images = len(coco_eval.params.imgIds)
    per_category = len(coco_eval.params.areaRng) * num_images
    for start in range(0, len(coco_eval.evalImgs), per_category):
        for e in coco_eval.evalImgs[start : start + num_images]:  # area "all"
            if e is None:
                continue
            for det_id, match, ignored in zip(e["dtIds"], e["dtMatches"][t], e["dtIgnore"][t]):
                if not ignored:
                    outcome[det_id - 1] = match > 0
    return outcome
