"""The two TIDE references checked: tidecv through our loader against tidecv's own file loaders and the TIDE
paper's rules, and the bins on COCOeval's matching against pycocotools run on hand-fixed results.

The paper's rules (Bolya et al., ECCV 2020, section 2.2; ``tidecv/quantify.py:226-278``), for a false positive:
background if its image has no ground truth; localisation if its best same-class IoU is in [t_b, t_f]; classification
if its best other-class IoU is >= t_f; duplicate if its best IoU with an already matched same-class ground truth is
>= t_f; background if its best IoU with anything is <= t_b; both otherwise. A ground truth left unmatched that no
Loc or Cls error could take is missed. dAP of a bin = AP with that bin fixed - AP.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from pycocotools.cocoeval import COCOeval
from tidecv import TIDE, datasets

from tests.coco_reference import GT_FILE, RESULTS_FILE, SEGM_RESULTS_FILE, random_case, run_cocoeval, to_coco
from tests.tide_reference import MAIN, SPECIAL, coco_errors, run_tidecv, tide_case
from tests.type_cases import run_typed_cocoeval


def ap50(gt: dict, results: list[dict]) -> float:
    """pycocotools' AP50, the plain way."""
    return float(run_cocoeval(gt, results).stats[1])


def _gt(annotations: list[tuple], num_images: int = 1, categories=(1, 2)) -> dict:
    """annotations: (image_id, category_id, xywh[, iscrowd])."""
    anns = []
    for k, (image_id, cat, box, *crowd) in enumerate(annotations):
        anns.append(
            {
                "id": k + 1,
                "image_id": image_id,
                "category_id": cat,
                "bbox": box,
                "area": box[2] * box[3],
                "iscrowd": crowd[0] if crowd else 0,
            }
        )
    images = [{"id": i + 1, "width": 300, "height": 300, "file_name": f"{i + 1}.jpg"} for i in range(num_images)]
    return {"images": images, "annotations": anns, "categories": [{"id": c, "name": str(c)} for c in categories]}


def _det(image_id: int, cat: int, box: list, score: float) -> dict:
    return {"image_id": image_id, "category_id": cat, "bbox": box, "score": score}


G1, G2, FAR = [10, 10, 40, 40], [100, 100, 40, 40], [200, 200, 20, 20]
SHIFTED = [20, 20, 40, 40]  # IoU 900 / 2300 with G1


def tide_ap(points: list[tuple[float, bool]], num_gt: int) -> float:
    """tidecv's AP of one class (``ap.py:66-118``, /100): precision without eps, 101 points x / 100."""
    points = sorted(points, key=lambda p: -p[0])
    tp = np.cumsum([c for _, c in points])
    precision = list(tp / np.arange(1, len(points) + 1))
    recall = tp / num_gt
    for i in range(len(precision) - 1, 0, -1):
        precision[i - 1] = max(precision[i - 1], precision[i])
    at = np.searchsorted(recall, [x / 100 for x in range(101)], side="left")
    return sum(precision[i] if i < len(precision) else 0 for i in at) / 101


# --- tidecv ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("iou_type", "results_file"), [("bbox", RESULTS_FILE), ("segm", SEGM_RESULTS_FILE)])
def test_run_tidecv_equals_tidecv_on_its_own_loaders(iou_type, results_file):
    gt, results = json.loads(GT_FILE.read_text()), json.loads(results_file.read_text())
    numbers = run_tidecv(gt, results, iou_type)
    mode = TIDE.MASK if iou_type == "segm" else TIDE.BOX
    tide = TIDE(mode=mode)
    run = tide.evaluate(datasets.COCO(str(GT_FILE)), datasets.COCOResult(str(results_file)), mode=mode, name="f")
    assert numbers.ap == run.ap / 100
    assert numbers.main == {k: v / 100 for k, v in tide.get_main_errors()["f"].items()}
    assert numbers.special == {k: v / 100 for k, v in tide.get_special_errors()["f"].items()}


def test_tidecv_ap50_on_the_real_data_is_the_published_64_2():
    numbers = run_tidecv(json.loads(GT_FILE.read_text()), json.loads(RESULTS_FILE.read_text()))
    assert round(numbers.ap * 100, 1) == 64.2  # issue 16 and dbolya/tide#28; COCOeval's AP50 is 69.7
    assert set(numbers.main) == set(MAIN) and set(numbers.special) == set(SPECIAL)


# Each hand-made case: (ground truth, results, the bin of detection 1, fixed results for the pycocotools reference).
CASES = {
    "Loc": (_gt([(1, 1, G1)]), [_det(1, 1, SHIFTED, 0.9)], [_det(1, 1, G1, 0.9)]),
    "Cls": (_gt([(1, 1, G1)]), [_det(1, 2, G1, 0.9)], [_det(1, 1, G1, 0.9)]),
    "Dupe": (
        _gt([(1, 1, G1), (1, 1, G2)]),
        [_det(1, 1, G1, 0.8), _det(1, 1, G1, 0.9), _det(1, 1, G2, 0.7)],
        [_det(1, 1, G1, 0.9), _det(1, 1, G2, 0.7)],
    ),
    "Bkg": (_gt([(1, 1, G1)]), [_det(1, 1, FAR, 0.9), _det(1, 1, G1, 0.8)], [_det(1, 1, G1, 0.8)]),
    "Both": (
        _gt([(1, 1, G1), (1, 2, G2)]),
        [_det(1, 2, SHIFTED, 0.9), _det(1, 2, G2, 0.8), _det(1, 1, G1, 0.7)],
        [_det(1, 2, G2, 0.8), _det(1, 1, G1, 0.7)],
    ),
}


def test_tidecv_bins_follow_the_paper():
    expected_ap = {
        "Loc": (0.0, 1.0),
        "Cls": (0.0, 1.0),  # class 2 has only a prediction: tidecv averages it as AP 0
        "Dupe": (tide_ap([(0.9, True), (0.8, False), (0.7, True)], 2), 1.0),
        "Bkg": (tide_ap([(0.9, False), (0.8, True)], 1), 1.0),
        "Both": ((1.0 + tide_ap([(0.9, False), (0.8, True)], 1)) / 2, 1.0),
    }
    for name, (gt, results, _) in CASES.items():
        numbers = run_tidecv(gt, results)
        assert numbers.counts[name] == 1, name
        assert sum(numbers.counts.values()) == 1, name
        ap, fixed = expected_ap[name]
        assert numbers.ap == pytest.approx(ap, abs=1e-12), name
        assert numbers.main[name] == pytest.approx(fixed - ap, abs=1e-12), name


def test_tidecv_background_on_an_image_without_ground_truth_and_missed_ground_truth():
    gt = _gt([(1, 1, G1), (1, 1, G2)], num_images=2)
    numbers = run_tidecv(gt, [_det(2, 1, G1, 0.95), _det(1, 1, G1, 0.9)])
    assert (numbers.counts["Bkg"], numbers.counts["Miss"]) == (1, 1)
    ap = tide_ap([(0.95, False), (0.9, True)], 2)
    assert numbers.main["Miss"] == pytest.approx(tide_ap([(0.95, False), (0.9, True)], 1) - ap, abs=1e-12)
    assert numbers.special["FalsePos"] == pytest.approx(tide_ap([(0.9, True)], 2) - ap, abs=1e-12)
    assert numbers.special["FalseNeg"] == pytest.approx(numbers.main["Miss"], abs=1e-12)


def test_tidecv_threshold_bounds_are_inclusive():
    # IoU exactly t_f with the matched ground truth is Loc, not Dupe; IoU exactly t_b is Loc, not Bkg.
    gt = _gt([(1, 1, [0, 0, 100, 100])])
    half, tenth = [0, 0, 50, 100], [0, 0, 10, 100]
    numbers = run_tidecv(gt, [_det(1, 1, [0, 0, 100, 100], 0.9), _det(1, 1, half, 0.8), _det(1, 1, tenth, 0.7)])
    assert (numbers.counts["Loc"], numbers.counts["Dupe"], numbers.counts["Bkg"]) == (2, 0, 0)


# --- the bins on COCOeval's matching -------------------------------------------------------------------


@pytest.mark.parametrize("name", list(CASES))
def test_coco_errors_bin_and_dap_against_pycocotools_on_the_fixed_results(name):
    gt, results, fixed = CASES[name]
    errors = coco_errors(gt, results)
    first_fp = min(errors.bins)
    assert errors.bins[first_fp][0] == name
    assert errors.ap == ap50(gt, results)
    assert errors.main[name] == ap50(gt, fixed) - ap50(gt, results)
    others = [other for other in MAIN if other not in (name, "Miss")]
    assert all(errors.main[other] == 0.0 for other in others)


def test_coco_errors_miss_background_without_ground_truth_and_the_special_errors():
    gt = _gt([(1, 1, G1), (1, 1, G2)], num_images=2)
    results = [_det(2, 1, G1, 0.95), _det(1, 1, G1, 0.9)]
    errors = coco_errors(gt, results)
    assert errors.bins == {1: ("Bkg", None)} and errors.missed == [2]
    gt_without_g2 = _gt([(1, 1, G1)], num_images=2)
    assert errors.main["Miss"] == ap50(gt_without_g2, results) - ap50(gt, results)
    assert errors.special["FalsePos"] == ap50(gt, results[1:]) - ap50(gt, results)
    assert errors.special["FalseNeg"] == errors.main["Miss"]


def test_coco_errors_threshold_bounds_are_inclusive():
    gt = _gt([(1, 1, [0, 0, 100, 100])])
    results = [_det(1, 1, [0, 0, 100, 100], 0.9), _det(1, 1, [0, 0, 50, 100], 0.8), _det(1, 1, [0, 0, 10, 100], 0.7)]
    assert coco_errors(gt, results).bins == {2: ("Loc", 1), 3: ("Loc", 1)}


def test_coco_errors_ignore_detections_in_crowd_regions_where_tidecv_bins_them():
    # CHOICE: a detection COCOeval ignores (inside a same-class crowd region) costs nothing and gets no bin.
    gt = _gt([(1, 1, [0, 0, 100, 100], 1), (1, 1, [150, 150, 40, 40])])
    results = [_det(1, 1, [10, 10, 30, 30], 0.9), _det(1, 1, [150, 150, 40, 40], 0.8)]
    assert coco_errors(gt, results).bins == {}
    assert run_tidecv(gt, results).counts["Bkg"] == 1


def test_coco_errors_an_image_with_only_crowd_regions_has_no_ground_truth():
    gt = _gt([(1, 1, [0, 0, 100, 100], 1), (2, 1, G1)], num_images=2)
    results = [_det(1, 1, [150, 150, 30, 30], 0.9), _det(2, 1, G1, 0.8)]
    assert coco_errors(gt, results).bins == {1: ("Bkg", None)}


def test_coco_errors_bin_only_detections_within_the_per_category_cut():
    # CHOICE: the 101st detection of a category on an image is not evaluated by COCOeval and gets no bin.
    gt = _gt([(1, 1, G1)])
    results = [_det(1, 1, FAR, 0.9 - k / 1000) for k in range(101)] + [_det(1, 1, G1, 0.1)]
    errors = coco_errors(gt, results)
    assert sorted(errors.bins) == list(range(1, 101))
    assert errors.missed == [1]


def test_coco_errors_cls_fix_takes_the_best_detection_and_drops_the_others():
    gt = _gt([(1, 1, G1)])
    results = [_det(1, 2, G1, 0.6), _det(1, 2, G1, 0.9), _det(1, 1, FAR, 0.8)]
    errors = coco_errors(gt, results)
    assert errors.bins == {1: ("Cls", 1), 2: ("Cls", 1), 3: ("Bkg", None)}
    fixed = [_det(1, 1, G1, 0.9), _det(1, 1, FAR, 0.8)]
    assert errors.main["Cls"] == ap50(gt, fixed) - ap50(gt, results)
    assert errors.missed == []


@pytest.mark.parametrize("iou_type", ["bbox", "segm"])
def test_coco_errors_on_the_real_data(iou_type):
    gt = json.loads(GT_FILE.read_text())
    results = json.loads((SEGM_RESULTS_FILE if iou_type == "segm" else RESULTS_FILE).read_text())
    errors = coco_errors(gt, results, iou_type)
    assert errors.ap == float(_standard(gt, results, iou_type).stats[1])
    _check_invariants(gt, results, iou_type, errors)
    # No image has over 100 detections here, and the rules are tidecv's, so the bins count the same.
    assert errors.counts == run_tidecv(gt, results, iou_type).counts


@pytest.mark.parametrize("seed", [0, 1])
def test_coco_errors_on_generated_cases(seed):
    gt, results = to_coco(*random_case(seed))
    errors = coco_errors(gt, results)
    assert errors.ap == ap50(gt, results)
    _check_invariants(gt, results, "bbox", errors)
    run_tidecv(gt, results)  # tidecv runs on them too (crowd, > 100 detections, ties)


def _standard(gt: dict, results: list[dict], iou_type: str) -> COCOeval:
    return run_typed_cocoeval(gt, results, iou_type)


def _check_invariants(gt: dict, results: list[dict], iou_type: str, errors) -> None:
    """Every false positive of a plain COCOeval (t=0.5, area all, 100) has one bin; fixes never lower AP."""
    evaluator = _standard(gt, results, iou_type)
    false_positives, unmatched = set(), set()
    for e in evaluator.evalImgs:
        if e is None or e["aRng"] != evaluator.params.areaRng[0] or e["maxDet"] != 100:
            continue
        false_positives |= {i for i, m, ig in zip(e["dtIds"], e["dtMatches"][0], e["dtIgnore"][0]) if not m and not ig}
        unmatched |= {g for g, m, ig in zip(e["gtIds"], e["gtMatches"][0], e["gtIgnore"]) if not m and not ig}
    assert set(errors.bins) == false_positives
    claimed = {g for name, g in errors.bins.values() if name in ("Loc", "Cls")} & unmatched
    assert set(errors.missed) == unmatched - claimed
    assert all(value >= 0 for value in [*errors.main.values(), *errors.special.values()])
    assert errors.special["FalsePos"] >= max(errors.main[name] for name in ("Dupe", "Bkg", "Both"))
    assert errors.special["FalseNeg"] >= errors.main["Miss"]


@pytest.mark.parametrize("iou_type", ["bbox", "segm"])
def test_tide_cases_fill_every_bin_of_both_references(iou_type):
    gt, results = tide_case(1, iou_type)
    assert max(sum(r["image_id"] == i["id"] for r in results) for i in gt["images"]) > 100
    assert any(a["iscrowd"] for a in gt["annotations"])
    numbers, errors = run_tidecv(gt, results, iou_type), coco_errors(gt, results, iou_type)
    assert all(numbers.counts[name] > 0 for name in MAIN)
    assert all(errors.counts[name] > 0 for name in MAIN)
    assert errors.ap == float(_standard(gt, results, iou_type).stats[1])
    _check_invariants(gt, results, iou_type, errors)
