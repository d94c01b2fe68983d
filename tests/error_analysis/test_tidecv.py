"""``tidecv_errors`` against tidecv 1.0.1 itself (``tests/tide_reference.run_tidecv``) on the same COCO dicts.

Each case goes through the metric's own path (``normalize_batch`` -> ``DetectionStore`` -> ``collect()``) and
through tidecv; the AP, the six main and two special dAP must agree to 1e-9 (tidecv's numbers / 100) and the
counts of each bin exactly. Per class and per detection are checked against tidecv's own run objects (its
per-class ``APDataObject``s of each ``fix_errors`` run, its error objects). Where tidecv divides by zero
(nothing left to average) the expected numbers are written out by hand.
"""

from __future__ import annotations

import json
from collections import defaultdict

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tidecv import TIDE
from tidecv import functions as tide_functions
from tidecv.errors.main_errors import FalsePositiveError

from ignite_det.error_analysis import MAIN_ERRORS, SPECIAL_ERRORS, ErrorAnalysis
from ignite_det.error_analysis import tidecv as tidecv_module
from ignite_det.error_analysis.tidecv import RECALL_POINTS, tidecv_errors, visit_order
from ignite_det.inputs import normalize_batch
from ignite_det.params import EvalParams
from ignite_det.store import DetectionStore
from ignite_det.table import Detections
from tests.coco_reference import GT_FILE, RESULTS_FILE, SEGM_RESULTS_FILE
from tests.tide_reference import _tide_gt, _tide_results, run_tidecv, tide_case

TOLERANCE = 1e-9


# --- the two paths ---------------------------------------------------------------------------------------


def record(gt: dict, results: list[dict], iou_type: str = "bbox", batch_size: int = 3) -> Detections:
    """The metric's record of a COCO case: one (prediction, target) pair per image in the file's image order,
    fed in batches; masks as the RLEs tidecv makes of the same annotations (``tidecv.functions.toRLE``)."""
    anns, dets = defaultdict(list), defaultdict(list)
    for ann in gt["annotations"]:
        anns[ann["image_id"]].append(ann)
    for det in results:
        dets[det["image_id"]].append(det)
    pairs = [_sample(image, anns[image["id"]], dets[image["id"]], iou_type) for image in gt["images"]]
    store = DetectionStore()
    for start in range(0, len(pairs), batch_size):
        batch = pairs[start : start + batch_size]
        store.append(normalize_batch(([p for p, _ in batch], [t for _, t in batch]), "xywh", iou_type))
    return store.collect()


def _sample(image: dict, anns: list[dict], dets: list[dict], iou_type: str) -> tuple[dict, dict]:
    target = {
        "labels": torch.tensor([a["category_id"] for a in anns], dtype=torch.int64),
        "iscrowd": torch.tensor([a.get("iscrowd", 0) for a in anns], dtype=torch.int64),
        "image_id": image["id"],
    }
    prediction = {
        "scores": torch.tensor([r["score"] for r in dets], dtype=torch.float64),
        "labels": torch.tensor([r["category_id"] for r in dets], dtype=torch.int64),
    }
    if iou_type == "segm":
        w, h = image["width"], image["height"]
        target["masks"] = [tide_functions.toRLE(a["segmentation"], w, h) for a in anns]
        prediction["masks"] = [r["segmentation"] for r in dets]
    else:
        target["boxes"] = torch.tensor([a["bbox"] for a in anns], dtype=torch.float64).reshape(-1, 4)
        prediction["boxes"] = torch.tensor([r["bbox"] for r in dets], dtype=torch.float64).reshape(-1, 4)
    return prediction, target


def ours(gt: dict, results: list[dict], iou_type: str = "bbox", t_f: float = 0.5, t_b: float = 0.1) -> ErrorAnalysis:
    categories = np.array(sorted(c["id"] for c in gt["categories"]), dtype=np.int64)
    names = {c["id"]: c.get("name", str(c["id"])) for c in gt["categories"]}
    return tidecv_errors(
        record(gt, results, iou_type), categories, names, EvalParams.create(iou_type=iou_type), t_f, t_b
    )


def assert_equals_tidecv(gt: dict, results: list[dict], iou_type: str = "bbox", t_f: float = 0.5, t_b: float = 0.1):
    errors = ours(gt, results, iou_type, t_f, t_b)
    reference = run_tidecv(gt, results, iou_type, t_f, t_b)
    assert errors.ap == pytest.approx(reference.ap, abs=TOLERANCE, rel=0)
    for name in MAIN_ERRORS:
        assert errors.main[name] == pytest.approx(reference.main[name], abs=TOLERANCE, rel=0), name
    for name in SPECIAL_ERRORS:
        assert errors.special[name] == pytest.approx(reference.special[name], abs=TOLERANCE, rel=0), name
    assert errors.counts == reference.counts
    assert errors.mode == "tidecv" and (errors.iou_threshold, errors.background_threshold) == (t_f, t_b)
    return errors


# --- generated and real cases ----------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(8))
def test_generated_box_cases_equal_tidecv(seed):
    # Crowd regions, wrong classes, poor boxes, duplicates, background, 120 detections on two images, ties.
    assert_equals_tidecv(*tide_case(seed, "bbox"))


@pytest.mark.parametrize("seed", range(4))
def test_generated_mask_cases_equal_tidecv(seed):
    assert_equals_tidecv(*tide_case(seed, "segm"), iou_type="segm")


@pytest.mark.parametrize(("t_f", "t_b"), [(0.75, 0.1), (0.3, 0.05), (0.5, 0.0), (0.5, 0.5), (0.1, 0.1)])
def test_other_thresholds_equal_tidecv(t_f, t_b):
    # t_b = 0: T5's masked argmax makes Loc fire on an IoU of 0 with any ground truth; t_b = t_f: Loc takes all.
    for seed in (1, 2):
        assert_equals_tidecv(*tide_case(seed, "bbox"), t_f=t_f, t_b=t_b)


def test_the_cocoapi_real_box_results_equal_tidecv():
    # The file lists images (and annotations) out of id order: tidecv visits them in the file's order.
    gt, results = json.loads(GT_FILE.read_text()), json.loads(RESULTS_FILE.read_text())
    errors = assert_equals_tidecv(gt, results)
    assert round(100 * errors.ap, 2) == 64.20 and round(100 * errors.main["Cls"], 2) == 22.25  # the design note's


def test_the_cocoapi_real_mask_results_equal_tidecv():
    gt, results = json.loads(GT_FILE.read_text()), json.loads(SEGM_RESULTS_FILE.read_text())
    errors = assert_equals_tidecv(gt, results, "segm")
    assert round(100 * errors.ap, 2) == 51.80


def test_small_chunks_give_the_same_numbers(monkeypatch):
    gt, results = tide_case(3, "bbox")
    whole = ours(gt, results)
    monkeypatch.setattr(tidecv_module, "IMAGES_PER_CHUNK", 2)
    chunked = ours(gt, results)
    assert chunked.to_dict() == whole.to_dict()
    assert chunked.false_positives.rows() == whole.false_positives.rows()
    assert chunked.missed.rows() == whole.missed.rows()


# --- per class and per detection, against tidecv's run objects -------------------------------------------


def _tide_run(gt: dict, results: list[dict], iou_type: str = "bbox"):
    mode = TIDE.MASK if iou_type == "segm" else TIDE.BOX
    return TIDE(mode=mode).evaluate(_tide_gt(gt), _tide_results(results), mode=mode, name="run")


def _fixed_class_aps(run) -> dict[str, dict[int, float]]:
    """Per error, tidecv's per-class AP (/100) of its ``fix_errors`` run, for the classes it averages."""
    runs = {e.short_name: run.fix_errors(lambda err, e=e: isinstance(err, e)) for e in TIDE._error_types}
    runs["FalsePos"] = run.fix_errors(transform=FalsePositiveError.fix)
    runs["FalseNeg"] = run.fix_errors(false_neg_dict=run.false_negatives)
    runs["original"] = run.ap_data
    return {
        name: {k: obj.get_ap() / 100 for k, obj in data.objs.items() if not obj.is_empty()}
        for name, data in runs.items()
    }


@pytest.mark.parametrize(("seed", "iou_type"), [(0, "bbox"), (5, "bbox"), (1, "segm")])
def test_per_class_equals_tidecvs_per_class_ap_data(seed, iou_type):
    gt, results = tide_case(seed, iou_type)
    errors = ours(gt, results, iou_type)
    run = _tide_run(gt, results, iou_type)
    aps = _fixed_class_aps(run)
    counts: dict[int, dict[str, int]] = defaultdict(lambda: dict.fromkeys(MAIN_ERRORS, 0))
    for error in run.errors:
        owner = error.gt if error.short_name == "Miss" else error.pred
        counts[owner["class"]][error.short_name] += 1
    assert [c.category_id for c in errors.per_class] == sorted(c["id"] for c in gt["categories"])
    for row in errors.per_class:
        k = row.category_id
        assert row.counts == counts[k], k
        assert row.name == f"c{k}"
        if k not in aps["original"]:
            assert row.ap == -1.0
            continue
        assert row.ap == pytest.approx(aps["original"][k], abs=TOLERANCE, rel=0)
        for name, value in {**row.main, **row.special}.items():
            if k in aps[name]:
                assert value == pytest.approx(aps[name][k] - aps["original"][k], abs=TOLERANCE, rel=0), (k, name)
            else:
                assert np.isnan(value), (k, name)
    assert sum(c.counts["Cls"] for c in errors.per_class) == errors.counts["Cls"]


def _places(items: list[dict]) -> dict[int, tuple[int, int]]:
    """index in the COCO list -> (image id, index among that image's entries)."""
    seen: dict[int, int] = defaultdict(int)
    places = {}
    for index, item in enumerate(items):
        places[index] = (item["image_id"], seen[item["image_id"]])
        seen[item["image_id"]] += 1
    return places


@pytest.mark.parametrize("seed", [0, 4])
def test_per_detection_rows_equal_tidecvs_errors(seed):
    gt, results = tide_case(seed, "bbox")
    errors = ours(gt, results)
    run = _tide_run(gt, results)
    det_place, gt_place = _places(results), _places(gt["annotations"])
    expected, missed = [], []
    for error in run.errors:
        if error.short_name == "Miss":
            image_id, index = gt_place[error.gt["_id"]]
            missed.append({"image_id": image_id, "gt_index": index, "category_id": error.gt["class"]})
            continue
        pred = error.pred
        truth = getattr(error, "gt", None)
        if error.short_name == "Dupe":
            truth = run.gt.annotations[error.suppressor["matched_with"]]
        image_id, index = det_place[pred["_id"]]
        expected.append(
            {
                "image_id": image_id,
                "detection": index,
                "category_id": pred["class"],
                "score": pred["score"],
                "error": error.short_name,
                "gt_index": gt_place[truth["_id"]][1] if truth is not None else -1,
                "gt_category_id": truth["class"] if truth is not None else -1,
            }
        )
    key = lambda row: (row["image_id"], row.get("detection", row.get("gt_index")))  # noqa: E731
    assert errors.false_positives.rows() == sorted(expected, key=key)
    assert errors.missed.rows() == sorted(missed, key=key)


# --- hand cases, one per rule ----------------------------------------------------------------------------


def _gt(annotations: list[tuple], num_images: int = 1, categories=(1, 2)) -> dict:
    """annotations: (image_id, category_id, xywh[, iscrowd])."""
    anns = [
        {
            "id": k + 1,
            "image_id": i,
            "category_id": c,
            "bbox": b,
            "area": b[2] * b[3],
            "iscrowd": crowd[0] if crowd else 0,
        }
        for k, (i, c, b, *crowd) in enumerate(annotations)
    ]
    images = [{"id": i + 1, "width": 300, "height": 300, "file_name": f"{i + 1}.jpg"} for i in range(num_images)]
    return {"images": images, "annotations": anns, "categories": [{"id": c, "name": str(c)} for c in categories]}


def _det(image_id: int, cat: int, box: list, score: float) -> dict:
    return {"image_id": image_id, "category_id": cat, "bbox": box, "score": score}


G1, G2, FAR = [10, 10, 40, 40], [100, 100, 40, 40], [200, 200, 20, 20]
SHIFTED = [20, 20, 40, 40]  # IoU 900 / 2300 with G1: a Loc error


def test_t1_top_100_per_image_across_classes_in_stable_score_order():
    gt = _gt([(1, 1, G1), (1, 2, G2)])
    # 100 background detections of class 2 at 0.5, then the true positive of class 1 at 0.5: the 101st, cut.
    results = [_det(1, 2, FAR, 0.5) for _ in range(100)] + [_det(1, 1, G1, 0.5), _det(1, 2, G2, 0.4)]
    errors = assert_equals_tidecv(gt, results)
    assert errors.counts["Bkg"] == 100 and errors.counts["Miss"] == 2
    assert visit_order(record(gt, results)).tolist() == list(range(100))


def test_t2_equal_ious_go_to_the_first_ground_truth_in_annotation_order():
    box = [50, 50, 40, 40]
    gt = _gt([(1, 1, [50, 50, 40, 80]), (1, 1, [50, 10, 40, 80])])  # both IoU 0.5 with box
    errors = assert_equals_tidecv(gt, [_det(1, 1, box, 0.9)])
    assert errors.missed.rows() == [{"image_id": 1, "gt_index": 1, "category_id": 1}]


def test_t3_crowd_regions_ignore_only_same_class_detections_strictly_above_t_f():
    crowd = [0, 0, 100, 100]
    gt = _gt([(1, 1, crowd, 1), (1, 1, [150, 150, 40, 40])])
    inside, half_in = [10, 10, 30, 30], [80, 10, 40, 40]  # crowd IoU 1 and exactly 0.5
    results = [_det(1, 1, inside, 0.9), _det(1, 1, half_in, 0.8), _det(1, 2, inside, 0.7), _det(1, 1, G2, 0.6)]
    errors = assert_equals_tidecv(gt, results)
    # All four are binned (T4 bins the ignored one too); only the first is out of the AP.
    assert len(errors.false_positives) == 4 and errors.counts["Bkg"] == 4


def test_t3_an_ignored_detection_fixed_as_loc_adds_a_true_positive():
    # T8: the ignored detection has no data point, but its Loc fix returns one.
    gt = _gt([(1, 1, [0, 0, 100, 100], 1), (1, 1, [0, 0, 60, 60]), (1, 2, G2)])
    results = [_det(1, 1, [0, 30, 60, 60], 0.9), _det(1, 2, G2, 0.5)]  # crowd IoU 1: ignored; IoU 1/3: Loc
    errors = assert_equals_tidecv(gt, results)
    assert errors.counts["Loc"] == 1 and errors.ap == 0.5 and errors.main["Loc"] == 0.5


def test_t6_loc_and_cls_share_one_best_score_per_ground_truth():
    # A Cls error scoring higher claims G1: fixing Loc alone then turns nothing into a true positive.
    gt = _gt([(1, 1, G1), (1, 2, G2)])
    results = [_det(1, 2, G1, 0.9), _det(1, 1, SHIFTED, 0.8), _det(1, 2, G2, 0.7)]
    errors = assert_equals_tidecv(gt, results)
    assert (errors.counts["Cls"], errors.counts["Loc"]) == (1, 1)
    assert errors.main["Loc"] == 0.0 and errors.main["Cls"] > 0


def _one_class_ap(correct: list[bool], num_gt: int, recall_points: np.ndarray) -> float:
    """tidecv's AP of one class (ap.py:66-118) from its points in rank order, sampled at ``recall_points``."""
    tp = np.cumsum(correct)
    precision = np.maximum.accumulate((tp / np.arange(1, len(tp) + 1))[::-1])[::-1]
    at = np.searchsorted(tp / num_gt, recall_points, side="left")
    return sum(precision[i] if i < len(precision) else 0.0 for i in at) / len(recall_points)


def test_t9_recall_points_are_x_over_100_not_linspace():
    assert np.sum(RECALL_POINTS != np.linspace(0, 1, 101)) == 10
    # 20 ground truths, 7 found, a false positive, then the 8th: recall reaches 0.35 = 7/20 exactly, and
    # np.linspace's 35th point (0.35000000000000003) would fall on the 8th true positive instead.
    boxes = [[10 * k, 0, 8, 8] for k in range(20)]
    gt = _gt([(1, 1, b) for b in boxes])
    results = [_det(1, 1, b, 0.9 - k / 100) for k, b in enumerate(boxes[:7])]
    results += [_det(1, 1, FAR, 0.5), _det(1, 1, boxes[7], 0.4)]
    errors = assert_equals_tidecv(gt, results)
    correct = [True] * 7 + [False, True]
    assert errors.ap == pytest.approx(_one_class_ap(correct, 20, RECALL_POINTS), abs=1e-15)
    assert abs(errors.ap - _one_class_ap(correct, 20, np.linspace(0, 1, 101))) > 1e-4


def test_t10_a_class_with_only_predictions_counts_as_zero():
    gt = _gt([(1, 1, G1)], categories=(1, 2, 3))
    errors = assert_equals_tidecv(gt, [_det(1, 1, G1, 0.9), _det(1, 2, FAR, 0.8)])
    assert errors.ap == 0.5
    assert [c.ap for c in errors.per_class] == [1.0, 0.0, -1.0]  # class 3: neither ground truth nor predictions


def test_t11_a_fixed_error_ranks_before_an_original_true_positive_of_equal_score():
    gt = _gt([(1, 1, G1), (2, 1, G1)], num_images=2)
    results = [_det(1, 1, G1, 0.9), _det(2, 1, FAR, 0.9)]
    errors = assert_equals_tidecv(gt, results)
    # The original run has the true positive first; FalseNeg's run puts the false positive first.
    assert errors.ap == pytest.approx(51 / 101, abs=1e-15)
    assert errors.special["FalseNeg"] == pytest.approx(0.5 - 51 / 101, abs=1e-15)


def test_t12_main_errors_are_clamped_special_errors_are_not():
    gt = _gt([(1, 1, G1), (2, 1, G1)], num_images=2)
    errors = assert_equals_tidecv(gt, [_det(1, 1, G1, 0.9), _det(2, 1, FAR, 0.9)])
    assert errors.special["FalseNeg"] < 0 and min(errors.main.values()) == 0.0


def test_t13_detections_on_images_without_ground_truth_are_background():
    gt = _gt([(1, 1, G1)], num_images=3)
    results = [_det(2, 1, G1, 0.95), _det(1, 1, G1, 0.9), _det(3, 2, FAR, 0.3)]
    errors = assert_equals_tidecv(gt, results)
    assert errors.counts["Bkg"] == 2


# --- empty cases: where tidecv divides by zero the numbers are written out ------------------------------------


def test_no_detections_at_all():
    gt = _gt([(1, 1, G1), (2, 2, G2)], num_images=3)
    run = _tide_run(gt, [])  # tidecv's own run is defined; its fixed runs divide by zero
    with pytest.raises(ZeroDivisionError):
        run_tidecv(gt, [])
    errors = ours(gt, [])
    assert errors.ap == run.ap / 100 == 0.0
    assert errors.counts == {e.short_name: n for e, n in run.count_errors().items()}
    assert set(errors.main.values()) == {0.0} and set(errors.special.values()) == {0.0}
    assert len(errors.missed) == 2 and len(errors.false_positives) == 0


def test_only_background_on_images_without_ground_truth():
    gt = _gt([], num_images=2)
    results = [_det(1, 1, FAR, 0.9), _det(2, 2, G1, 0.5)]
    errors = ours(gt, results)
    assert errors.ap == _tide_run(gt, results).ap / 100 == 0.0
    assert errors.counts == {**dict.fromkeys(MAIN_ERRORS, 0), "Bkg": 2}
    assert set(errors.main.values()) == {0.0} and set(errors.special.values()) == {0.0}


def test_nothing_to_evaluate():
    errors = tidecv_errors(Detections.empty(), np.array([1]), {1: "a"}, EvalParams.create(), 0.5, 0.1)
    assert errors.ap == -1.0 and set(errors.main.values()) == {0.0}
    assert errors.per_class[0].ap == -1.0 and np.isnan(errors.per_class[0].main["Cls"])
    assert len(errors.false_positives) == 0 and len(errors.missed) == 0


def test_images_without_ground_truth_beside_others():
    gt, results = tide_case(6, "bbox")  # images 3 and 10 have none (index % 7 == 3)
    assert_equals_tidecv(gt, results)


# --- the contract ----------------------------------------------------------------------------------------


def test_keypoints_and_bad_thresholds_are_refused():
    d = Detections.empty(17)
    with pytest.raises(ValueError, match="no keypoint errors"):
        tidecv_errors(d, np.array([1]), {}, EvalParams.create(iou_type="keypoints"), 0.5, 0.1)
    with pytest.raises(ValueError, match="iou_threshold must be in"):
        tidecv_errors(Detections.empty(), np.array([1]), {}, EvalParams.create(), 0.0, 0.1)
    with pytest.raises(ValueError, match="background_threshold must be in"):
        tidecv_errors(Detections.empty(), np.array([1]), {}, EvalParams.create(), 0.5, -0.1)


# --- random cases -----------------------------------------------------------------------------------------

_COORD = st.integers(0, 6).map(lambda v: 10.0 * v)
_SIDE = st.integers(1, 4).map(lambda v: 10.0 * v)
_BOX = st.tuples(_COORD, _COORD, _SIDE, _SIDE).map(list)
_GT = st.tuples(st.integers(1, 3), st.integers(1, 2), _BOX, st.integers(0, 5).map(lambda v: int(v == 0)))
_DET = st.tuples(st.integers(1, 3), st.integers(1, 2), _BOX, st.integers(1, 4).map(lambda v: v / 4))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_GT, max_size=8), st.lists(_DET, max_size=14))
def test_random_cases_on_a_coarse_grid_equal_tidecv(annotations, detections):
    # Boxes on a 10-pixel grid and scores in quarters: equal IoUs, equal scores, exact threshold hits.
    gt = _gt(annotations, num_images=3)
    results = [_det(*det) for det in detections]
    try:
        reference = run_tidecv(gt, results)
    except ZeroDivisionError:  # nothing left to average in some fixed run: the AP is 0 and so is every dAP
        errors = ours(gt, results)
        assert errors.ap in (0.0, -1.0) and set(errors.main.values()) | set(errors.special.values()) == {0.0}
        return
    errors = ours(gt, results)
    assert errors.ap == pytest.approx(reference.ap, abs=TOLERANCE, rel=0)
    assert errors.main == pytest.approx(reference.main, abs=TOLERANCE, rel=0)
    assert errors.special == pytest.approx(reference.special, abs=TOLERANCE, rel=0)
    assert errors.counts == reference.counts
