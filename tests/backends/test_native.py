"""The native backend against pycocotools: its IoU, its per-detection records, and its arrays, whatever
the chunk size, batch size and image ids. pycocotools is the oracle throughout."""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest
import torch
from pycocotools.mask import iou as pycocotools_iou

from ignite_det import CocoMetric, confusion
from ignite_det.backends.native import matching as native_matching
from ignite_det.backends.native.matching import ChunkedMatcher, match_images
from ignite_det.inputs import normalize_batch
from ignite_det.iou.bbox import box_pair_iou
from ignite_det.params import EvalParams
from ignite_det.store import Detections, DetectionStore
from tests.coco_reference import (
    NAMES,
    PUBLISHED_BBOX,
    check_against_pycocotools,
    empty_cases,
    random_case,
    run_cocoeval,
    stats_dict,
    to_coco,
)
from tests.harness import assert_same_arrays, evaluate_with_engine

CHUNKS = [1, 2, 7, native_matching.IMAGES_PER_CHUNK]


@pytest.fixture
def images_per_chunk(request, monkeypatch):
    monkeypatch.setattr(native_matching, "IMAGES_PER_CHUNK", request.param)
    return request.param


def _detections(predictions: list, targets: list, box_format: str = "xyxy") -> Detections:
    store = DetectionStore()
    store.append(normalize_batch((predictions, targets), box_format))
    return store.collect()


# --- IoU ---------------------------------------------------------------------------------------------


def test_box_pair_iou_equals_pycocotools_to_the_last_bit():
    rng = np.random.default_rng(0)
    n = 400
    dets = np.column_stack([rng.uniform(0, 50, (n, 2)), rng.uniform(0, 40, (n, 2))])
    gts = np.column_stack([rng.uniform(0, 50, (n, 2)), rng.uniform(0, 40, (n, 2))])
    dets[:40] = gts[:40]  # identical boxes
    dets[40:80, 2:] = 0.0  # zero-size detections
    dets[80:120, :2] = gts[80:120, :2] + gts[80:120, 2:]  # touching corners
    dets[120:200] = np.round(dets[120:200]) + 0.1  # values that are not exact in binary
    crowd = (rng.random(n) < 0.3).astype(np.int64)
    d = Detections(**{**Detections.empty().__dict__, "det_boxes": dets, "gt_boxes": gts, "gt_crowd": crowd})
    rows, cols = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    ours = box_pair_iou(d, rows.ravel(), cols.ravel()).reshape(n, n)
    expected = pycocotools_iou(dets, gts, crowd.tolist())
    np.testing.assert_array_equal(ours.view(np.int64), np.asarray(expected).view(np.int64))
    assert (ours == 0).any() and (ours == 1).any() and ((ours > 0) & (ours < 1)).any()


# --- per-detection records -----------------------------------------------------------------------------


def _evalimgs_outcomes(coco_eval, num_dets: int) -> np.ndarray:
    """(A, T, N) per detection (results in arrival order), from pycocotools' evalImgs: 1 matched and
    counted, 0 unmatched and counted, -1 ignored or beyond maxDets."""
    p = coco_eval.params
    a_count, t_count, i_count = len(p.areaRng), len(p.iouThrs), len(p.imgIds)
    outcome = np.full((a_count, t_count, num_dets), -1, dtype=np.int8)
    for index, e in enumerate(coco_eval.evalImgs):
        if e is None:
            continue
        a = (index // i_count) % a_count
        ids = np.asarray(e["dtIds"], dtype=np.int64) - 1
        matched = np.asarray(e["dtMatches"]) > 0
        outcome[a][:, ids] = np.where(np.asarray(e["dtIgnore"], dtype=bool), -1, matched)
    return outcome


CUSTOM = {
    "iou_thresholds": [0.0, 0.3, 0.5, 0.75, 1.0],  # 0: any pair of a cell matches; 1: only a perfect one
    "max_detections": [1, 3, 5],
    "area_ranges": {"tiny": (0.0, 400.0), "mid": (400.0, 1024.0), "big": (1024.0, 1e10)},
}


def _pycocotools_params(params: EvalParams) -> dict:
    return {
        "iouThrs": params.iou_thresholds,
        "recThrs": params.rec_thresholds,
        "maxDets": list(params.max_detections),
        "areaRng": [list(r) for r in params.area_ranges],
        "areaRngLbl": list(params.area_names),
    }


@pytest.mark.parametrize("custom", [False, True], ids=["coco-params", "custom-params"])
@pytest.mark.parametrize("seed", range(6))
def test_records_equal_pycocotools_evalimgs_at_every_threshold_and_area(seed, custom):
    predictions, targets = random_case(seed)
    params = EvalParams.create(**CUSTOM) if custom else EvalParams.create()
    detections = _detections(predictions, targets)
    records = match_images(detections, params)
    coco_eval = run_cocoeval(*to_coco(predictions, targets), **_pycocotools_params(params))
    expected = _evalimgs_outcomes(coco_eval, records.outcome.shape[2])
    # Records are kept for every label; COCOeval evaluates the categories that have ground truth.
    evaluated = np.isin(detections.det_labels, coco_eval.params.catIds)
    assert not evaluated.all()
    np.testing.assert_array_equal(records.outcome[:, :, evaluated], expected[:, :, evaluated])
    assert {-1, 0, 1} <= set(np.unique(records.outcome).tolist())


@pytest.mark.parametrize("seed", range(4))
def test_records_hold_every_detection_matched_nowhere_as_one_outcome_per_area(seed):
    """The two parts of the records against pycocotools' evalImgs: the special detections are those that
    evalImgs matches to some ground truth (crowd and ignored ones included) at some threshold and area range;
    every other has one outcome at every threshold of an area range, a false positive where
    ``false_positive`` says so, else not counted."""
    predictions, targets = random_case(seed)
    detections = _detections(predictions, targets)
    records = match_images(detections, EvalParams.create())
    coco_eval = run_cocoeval(*to_coco(predictions, targets))
    expected = _evalimgs_outcomes(coco_eval, len(records.rank))
    evaluated = np.isin(detections.det_labels, coco_eval.params.catIds)
    matched = np.zeros(len(records.rank), bool)
    for e in coco_eval.evalImgs:
        if e is not None:
            ids = np.asarray(e["dtIds"], dtype=np.int64) - 1
            matched[ids] |= (np.asarray(e["dtMatches"]) > 0).any(axis=0)
    special = np.zeros(len(records.rank), bool)
    special[records.special] = True
    assert np.all(np.diff(records.special) > 0)
    np.testing.assert_array_equal(special[evaluated], matched[evaluated])
    plain = evaluated & ~special
    uniform = np.broadcast_to(records.false_positive[:, None, plain].astype(np.int8) - 1, expected[:, :, plain].shape)
    np.testing.assert_array_equal(uniform, expected[:, :, plain])
    assert 0 < special.sum() < len(special) / 2  # the point of two parts: most detections match nothing


@pytest.mark.parametrize("seed", range(3))
def test_records_from_dense_outcomes_and_through_the_gathers_columns_are_the_same(seed):
    predictions, targets = random_case(seed, num_images=20)
    records = match_images(_detections(predictions, targets), EvalParams.create())
    dense = records.outcome
    again = native_matching.MatchRecords.from_outcome(records.rank, dense)
    np.testing.assert_array_equal(again.outcome, dense)
    # special exactly where some area range holds other than all false positives or all not counted
    plain = ({0}, {-1})
    mixed = [n for n in range(dense.shape[2]) if any(set(dense[a, :, n]) not in plain for a in range(len(dense)))]
    assert again.special.tolist() == mixed
    carried = native_matching.MatchRecords.from_columns(records.as_columns())
    np.testing.assert_array_equal(carried.outcome, dense)
    np.testing.assert_array_equal(carried.rank, records.rank)


def test_chunked_records_equal_one_pass(monkeypatch):
    """Chunks that cut batches, and batches that hold several chunks, give the records of one pass."""
    predictions, targets = random_case(4, num_images=30)
    params = EvalParams.create()
    store = DetectionStore()
    whole = match_images(_detections(predictions, targets), params)
    for chunk in (1, 2, 7):
        monkeypatch.setattr(native_matching, "IMAGES_PER_CHUNK", chunk)
        store, matcher = DetectionStore(), ChunkedMatcher(params)
        for lo, hi in ((0, 3), (3, 4), (4, 20), (20, 30)):
            store.append(normalize_batch((predictions[lo:hi], targets[lo:hi]), "xyxy"))
            matcher.update(store)
            assert matcher._matched == hi // chunk * chunk  # matched as soon as a chunk is complete
        records = matcher.records(store)
        np.testing.assert_array_equal(records.rank, whole.rank)
        np.testing.assert_array_equal(records.outcome, whole.outcome)


def test_records_read_between_updates_are_those_so_far_and_stay_so(monkeypatch):
    """compute() in the middle of an evaluation reads the records (matching a partial chunk); later updates
    go on from there, and the records read earlier keep their values."""
    predictions, targets = random_case(5, num_images=30)
    params = EvalParams.create()
    whole = match_images(_detections(predictions, targets), params)
    monkeypatch.setattr(native_matching, "IMAGES_PER_CHUNK", 4)
    store, matcher = DetectionStore(), ChunkedMatcher(params)
    reads = []
    for lo, hi in ((0, 3), (3, 4), (4, 18), (18, 30)):
        store.append(normalize_batch((predictions[lo:hi], targets[lo:hi]), "xyxy"))
        matcher.update(store)
        reads.append(matcher.records(store))
    for records in reads:
        rows = len(records.rank)
        np.testing.assert_array_equal(records.rank, whole.rank[:rows])
        np.testing.assert_array_equal(records.outcome, whole.outcome[:, :, :rows])
    assert len(reads[-1].rank) == len(whole.rank)


# --- the metric, through a real Engine -------------------------------------------------------------------


@pytest.mark.parametrize("images_per_chunk", CHUNKS, indirect=True)
@pytest.mark.parametrize("batch_size", [1, 16])
def test_real_coco_images_give_the_published_numbers_and_arrays(
    images_per_chunk, batch_size, files_cocoeval, real_samples
):
    samples = real_samples
    samples.reverse()  # arrival order must not matter
    metrics = evaluate_with_engine(samples, batch_size, box_format="xywh")
    assert {name: metrics[name] for name in NAMES} == PUBLISHED_BBOX
    result = metrics["coco"]
    kept = [i for i, c in enumerate(files_cocoeval.params.catIds) if c in result.category_ids]
    for name in ("precision", "scores"):
        np.testing.assert_array_equal(getattr(result, name), files_cocoeval.eval[name][:, :, kept])
    np.testing.assert_array_equal(result.recall, files_cocoeval.eval["recall"][:, kept])


@pytest.mark.parametrize("images_per_chunk", CHUNKS, indirect=True)
@pytest.mark.parametrize("batch_size", [1, 3, 16])
@pytest.mark.parametrize("with_image_ids", [True, False])
@pytest.mark.parametrize("seed", [0, 3])
def test_random_edge_cases_equal_pycocotools_and_the_reference_backend(
    images_per_chunk, batch_size, with_image_ids, seed
):
    predictions, targets = random_case(seed, num_images=18, with_image_ids=with_image_ids)
    samples = list(zip(predictions, targets))
    reference = run_cocoeval(*to_coco(predictions, targets))
    result = evaluate_with_engine(samples, batch_size)["coco"]
    assert dict(result) == stats_dict(reference)
    assert_same_arrays(result, reference)
    # What comes from the records besides the arrays equals what the pycocotools backend derives.
    oracle = evaluate_with_engine(samples, batch_size, backend="pycocotools")["coco"]
    assert [repr(row) for row in result.per_class] == [repr(row) for row in oracle.per_class]
    np.testing.assert_array_equal(result.best_f1.as_array(), oracle.best_f1.as_array())
    np.testing.assert_array_equal(result.f1_curve()["f1"], oracle.f1_curve()["f1"])
    np.testing.assert_array_equal(result.confusion_matrix, oracle.confusion_matrix)


@pytest.mark.parametrize("gt_order", [(0, 1), (1, 0)], ids=["A-then-B", "B-then-A"])
def test_a_tie_in_iou_goes_to_the_last_ground_truth_given(gt_order):
    """COCOeval's ``<`` then assign: of equal IoUs the last ground truth wins (trap 8), which decides here
    whether the second detection still finds one."""
    a, b = [0.0, 0.0, 10.0, 10.0], [2.0, 0.0, 10.0, 10.0]  # xywh
    first = [1.0, 0.0, 10.0, 10.0]  # IoU 9/11 with both
    second = [-3.0, 0.0, 10.0, 10.0]  # IoU 7/13 with a, 1/3 with b
    gts = [(a, b)[i] for i in gt_order]
    prediction = {
        "boxes": torch.tensor([first, second], dtype=torch.float64),
        "scores": torch.tensor([0.9, 0.8], dtype=torch.float64),
        "labels": torch.tensor([1, 1]),
    }
    target = {"boxes": torch.tensor(gts, dtype=torch.float64), "labels": torch.tensor([1, 1]), "image_id": 1}
    result = evaluate_with_engine([(prediction, target)], 1, box_format="xywh")["coco"]
    reference = run_cocoeval(*to_coco([prediction], [target], "xywh"))
    assert dict(result) == stats_dict(reference)
    assert_same_arrays(result, reference)
    expected_tps = 2 if gt_order == (0, 1) else 1  # the first detection takes b, or a
    assert result.recall[0, 0, 0, -1] == expected_tps / 2


@pytest.mark.parametrize("images_per_chunk", [2], indirect=True)
def test_custom_parameters_and_unsorted_recall_thresholds_equal_pycocotools(images_per_chunk):
    # pycocotools samples unsorted recall thresholds as given, and stops at the first one out of reach.
    predictions, targets = random_case(5)
    rec = [0.9, 0.1, 0.5, 0.0, 1.0, 0.33]
    params = EvalParams.create(rec_thresholds=rec, **CUSTOM)
    reference = run_cocoeval(*to_coco(predictions, targets), **_pycocotools_params(params))
    result = evaluate_with_engine(list(zip(predictions, targets)), 4, rec_thresholds=rec, **CUSTOM)["coco"]
    assert_same_arrays(result, reference)
    recall, precision = reference.eval["recall"], reference.eval["precision"]
    cut_short = (recall >= 0.1) & (recall < 0.9) & (precision[:, 1] == 0)  # 0.1 reached, but 0.9 came first
    assert cut_short.any()


@pytest.mark.parametrize("images_per_chunk", [1], indirect=True)
@pytest.mark.parametrize("case", list(empty_cases()))
def test_empty_evaluations_in_chunks_of_one_image(images_per_chunk, case):
    check_against_pycocotools(empty_cases()[case], "native", batch_size=2)


@pytest.mark.parametrize("images_per_chunk", [2], indirect=True)
def test_a_loaded_state_replaces_records_already_matched(images_per_chunk):
    """Records are derived from the store: loading a state discards what was matched before."""
    predictions, targets = random_case(9, num_images=12)
    batches = [(predictions[i : i + 3], targets[i : i + 3]) for i in range(0, 12, 3)]
    first = CocoMetric()
    for batch in batches[:2]:
        first.update(batch)
    resumed = CocoMetric()
    for batch in batches[2:]:  # matched, then thrown away by the load
        resumed.update(batch)
    resumed.load_state_dict(first.state_dict())
    for batch in batches[2:]:
        resumed.update(batch)
    assert dict(resumed.compute()) == stats_dict(run_cocoeval(*to_coco(predictions, targets)))


def test_the_native_backend_is_the_default():
    assert CocoMetric().backend == "native"


def test_a_predictions_own_area_decides_its_area_range_as_in_pycocotools():
    """An unmatched detection counts as a false positive only in the area range of its ``area`` (a mask's,
    say), which pycocotools reads from the result's ``area`` field."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    gt_box, det_box = [0.0, 0.0, 40.0, 40.0], [100.0, 100.0, 40.0, 40.0]  # xywh, both 1600 px² (medium)
    prediction = {
        "boxes": torch.tensor([gt_box, det_box]),
        "scores": torch.tensor([0.8, 0.9], dtype=torch.float64),  # the false positive first
        "labels": torch.tensor([1, 1]),
        "area": torch.tensor([1600.0, 300.0]),  # the false positive is small
    }
    target = {"boxes": torch.tensor([gt_box]), "labels": torch.tensor([1]), "image_id": 7}
    result = evaluate_with_engine([(prediction, target)], 1, box_format="xywh")["coco"]
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt, coco_dt = COCO(), COCO()
        coco_gt.dataset = {
            "images": [{"id": 7}],
            "categories": [{"id": 1}],
            "annotations": [{"id": 1, "image_id": 7, "category_id": 1, "bbox": gt_box, "area": 1600.0, "iscrowd": 0}],
        }
        coco_dt.dataset = {
            "images": [{"id": 7}],
            "categories": [{"id": 1}],
            "annotations": [
                {"id": i + 1, "image_id": 7, "category_id": 1, "bbox": box, "score": s, "area": a, "iscrowd": 0}
                for i, (box, s, a) in enumerate(((gt_box, 0.8, 1600.0), (det_box, 0.9, 300.0)))
            ],
        }
        coco_gt.createIndex()
        coco_dt.createIndex()
        coco_eval = COCOeval(coco_gt, coco_dt, "bbox")
        coco_eval.evaluate()
        coco_eval.accumulate()
        coco_eval.summarize()
    assert dict(result) == stats_dict(coco_eval)
    assert_same_arrays(result, coco_eval)
    # Counted in "all", not in "medium", where its box area would have put it.
    assert result["APm"] > 0.99 and result["AP"] < 0.6


@pytest.mark.parametrize("threads", [1, 2])
def test_any_thread_count_gives_pycocotools_arrays(threads, monkeypatch):
    """Accumulation and the confusion matrix run on torch's intra-op thread count; each count gives the same."""
    monkeypatch.setattr(confusion, "IMAGES_PER_BLOCK", 3)  # blocks shared among the threads
    predictions, targets = random_case(5, num_images=40)
    samples = list(zip(predictions, targets))
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        result = evaluate_with_engine(samples, 7)["coco"]
    finally:
        torch.set_num_threads(before)
    reference = run_cocoeval(*to_coco(predictions, targets))
    assert dict(result) == stats_dict(reference)
    assert_same_arrays(result, reference)
    oracle = evaluate_with_engine(samples, 7, backend="pycocotools")["coco"]
    np.testing.assert_array_equal(result.confusion_matrix, oracle.confusion_matrix)
