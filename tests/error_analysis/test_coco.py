"""error_analysis="coco" against the straightforward reference (tests/tide_reference.py ``coco_errors``: TIDE's bins
on pycocotools' ``evalImgs``, each dAP from pycocotools' own ``accumulate`` on hand-fixed ``evalImgs``).

Every number is compared exactly: the AP and each dAP are pycocotools' float64 means over the same precision
arrays, so they are equal to the last bit, not approximately.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path

import ignite.distributed as idist
import numpy as np
import pytest

from ignite_det import CocoMetric, ErrorAnalysis
from ignite_det.error_analysis import MAIN_ERRORS, SPECIAL_ERRORS
from ignite_det.per_image import PER_IMAGE_COLUMNS
from tests.coco_reference import GT_FILE, SEGM_RESULTS_FILE
from tests.harness import evaluate_with_engine, spawn_gloo
from tests.tide_reference import coco_errors, coco_samples, tide_case
from tests.type_cases import load_real_segm_samples

T_50 = 0.5


def analyse(gt: dict, results: list, iou_type: str = "bbox", backend: str = "native", batch: int = 3, **kw):
    """The metric's result through a real Ignite engine, every category of ``gt`` evaluated (as COCOeval does)."""
    samples, _ = coco_samples(gt, results, iou_type)
    names = {c["id"]: c["name"] for c in gt["categories"]}
    metric_args = {"box_format": "xywh", "iou_type": iou_type, "backend": backend, "class_names": names}
    return evaluate_with_engine(samples, batch, error_analysis=True, **metric_args, **kw)["coco"]


def assert_equal_to_reference(result, gt: dict, results: list, iou_type: str = "bbox", t_f=T_50, t_b=0.1) -> None:
    """The summary, per class, per detection and per image, all exactly as ``coco_errors``."""
    ref = coco_errors(gt, results, iou_type, t_f=t_f, t_b=t_b)
    errors = result.errors
    assert isinstance(errors, ErrorAnalysis) and errors.mode == "coco"
    assert errors.ap == ref.ap
    assert_same_numbers(errors.main, ref.main)
    assert_same_numbers(errors.special, ref.special)
    assert errors.counts == ref.counts
    for c, row in zip(errors.per_class, result.per_class):
        expected = ref.per_class[c.category_id]
        assert_same_numbers({**c.main, **c.special}, expected)
        assert c.ap == (row.AP50 if t_f == T_50 else c.ap)
    _, ids = coco_samples(gt, results, iou_type)
    assert _rows_by_id(errors, ids) == {det_id: (name, gt_id) for det_id, (name, gt_id) in ref.bins.items()}
    missed = [ids[i][1][j] for i, j in zip(errors.missed.image_id.tolist(), errors.missed.gt_index.tolist())]
    assert missed == sorted(ref.missed, key=lambda g: (_image_of(gt, g), g))
    assert result.per_image.rows() == _per_image_reference(result, gt, results, ref)


def assert_same_numbers(found: dict, expected: dict) -> None:
    """Equal to the last bit, name by name; an undefined dAP (NaN) only where the reference's is too."""
    assert found.keys() == expected.keys()
    for name in found:
        assert found[name] == expected[name] or (math.isnan(found[name]) and math.isnan(expected[name])), name


def _rows_by_id(errors: ErrorAnalysis, ids: dict) -> dict:
    """The per-detection rows keyed by ``loadRes``' detection id, with the ground-truth id (None for -1)."""
    found = {}
    for row in errors.false_positives.rows():
        det_ids, gt_ids = ids[row["image_id"]]
        found[det_ids[row["detection"]]] = (row["error"], None if row["gt_index"] < 0 else gt_ids[row["gt_index"]])
    return found


def _image_of(gt: dict, gt_id: int) -> int:
    return next(a["image_id"] for a in gt["annotations"] if a["id"] == gt_id)


def _per_image_reference(result, gt: dict, results: list, ref) -> list[dict]:
    """The rows with each image's bin counts brute-forced from the reference's bins."""
    counts: Counter = Counter()
    for det_id, (name, _) in ref.bins.items():
        counts[results[det_id - 1]["image_id"], name] += 1
    for gt_id in ref.missed:
        counts[_image_of(gt, gt_id), "Miss"] += 1
    rows = []
    for row in result.per_image.rows():
        base = {key: row[key] for key in PER_IMAGE_COLUMNS}
        rows.append({**base, **{name: counts[row["image_id"], name] for name in MAIN_ERRORS}})
    return rows


# --- generated cases, every backend ------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(4))
def test_generated_boxes_equal_the_reference(seed, backend):
    gt, results = tide_case(seed)
    result = analyse(gt, results, backend=backend)
    assert result.errors.ap == result["AP50"]
    assert_equal_to_reference(result, gt, results)
    assert set(result.errors.counts.values()) != {0}


@pytest.mark.parametrize("seed", range(2))
def test_generated_masks_equal_the_reference(seed, backend):
    gt, results = tide_case(seed, "segm")
    result = analyse(gt, results, "segm", backend=backend)
    assert result.errors.ap == result["AP50"]
    assert_equal_to_reference(result, gt, results, "segm")


def test_every_bin_occurs_in_the_generated_cases():
    """The cases exercise every bin, so the equalities above test each rule."""
    seen: Counter = Counter()
    for seed in range(4):
        seen.update(coco_errors(*tide_case(seed)).counts)
    assert all(seen[name] > 0 for name in MAIN_ERRORS), seen


@pytest.mark.parametrize("t_f, t_b", [(0.75, 0.3), (0.6, 0.05)])
def test_other_thresholds(t_f, t_b, backend):
    gt, results = tide_case(5)
    iou = np.linspace(0.5, 0.95, 10)
    t_f = float(iou[np.argmin(abs(iou - t_f))])
    result = analyse(gt, results, backend=backend, f1_iou_threshold=t_f, background_threshold=t_b)
    assert result.errors.iou_threshold == t_f and result.errors.background_threshold == t_b
    key = {0.75: "AP75"}.get(round(t_f, 2))
    if key:
        assert result.errors.ap == result[key]
    assert_equal_to_reference(result, gt, results, t_f=t_f, t_b=t_b)


def test_a_smaller_max_detections_cut(backend):
    """The per-(image, category) cut is COCOeval's (C2): the first two images hold 120 detections."""
    gt, results = tide_case(2)
    result = analyse(gt, results, backend=backend, max_detections=[1, 5, 10])
    ref = coco_errors(gt, results, max_dets=10)
    assert (result.errors.ap, result.errors.main, result.errors.special) == (ref.ap, ref.main, ref.special)
    assert result.errors.counts == ref.counts


# --- the real data ---------------------------------------------------------------------------------


def test_real_boxes_equal_the_reference(gt, results, backend):
    result = analyse(gt, results, backend=backend, batch=10)
    assert result.errors.ap == result["AP50"] == 0.6969727247299577  # the cocoapi's published AP50
    assert_equal_to_reference(result, gt, results)
    assert result.errors.counts == {"Cls": 83, "Loc": 1, "Both": 0, "Dupe": 1, "Bkg": 0, "Miss": 97}


def test_real_masks_equal_the_reference(backend):
    gt, results = json.loads(GT_FILE.read_text()), json.loads(SEGM_RESULTS_FILE.read_text())
    names = {c["id"]: c["name"] for c in gt["categories"]}
    samples = load_real_segm_samples()
    result = evaluate_with_engine(
        samples, 10, iou_type="segm", backend=backend, class_names=names, error_analysis="coco"
    )["coco"]
    ref = coco_errors(gt, results, "segm")
    errors = result.errors
    assert errors.ap == ref.ap == result["AP50"]
    assert (errors.main, errors.special, errors.counts) == (ref.main, ref.special, ref.counts)
    assert errors.counts == {"Cls": 76, "Loc": 82, "Both": 7, "Dupe": 0, "Bkg": 4, "Miss": 109}


# --- hand cases: each bin, each tie ----------------------------------------------------------------


G1, G2, G3, FAR = [10, 10, 40, 40], [100, 100, 40, 40], [200, 10, 40, 40], [250, 250, 20, 20]
SHIFTED = [20, 20, 40, 40]  # IoU 900 / 2300 with G1
HALF = [10, 10, 40, 20]  # IoU exactly 0.5 with G1
TENTH = [10, 10, 4, 40]  # IoU exactly 0.1 with G1 (160 / 1600)


def _gt(annotations: list[tuple], num_images: int = 1) -> dict:
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
    images = [{"id": i + 1, "width": 300, "height": 300} for i in range(num_images)]
    return {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]}


def _det(image_id: int, cat: int, box: list, score: float) -> dict:
    return {"image_id": image_id, "category_id": cat, "bbox": box, "score": score}


def _bins(result) -> list[tuple[int, str, int]]:
    return [(r["detection"], r["error"], r["gt_index"]) for r in result.errors.false_positives.rows()]


def test_one_of_each_bin(backend):
    gt = _gt([(1, 1, G1), (1, 2, G2), (1, 2, G3)])
    results = [
        _det(1, 1, G1, 0.9),  # true positive
        _det(1, 1, G1, 0.8),  # Dupe of G1
        _det(1, 1, G2, 0.7),  # Cls: on G2, of class 2
        _det(1, 1, SHIFTED, 0.6),  # Loc: IoU 0.39 with G1
        _det(1, 2, SHIFTED, 0.5),  # Both: class 2, IoU 0.39 with G1 only
        _det(1, 1, FAR, 0.4),  # Bkg
    ]
    result = analyse(gt, results, backend=backend)
    assert _bins(result) == [(1, "Dupe", 0), (2, "Cls", 1), (3, "Loc", 0), (4, "Both", -1), (5, "Bkg", -1)]
    assert result.errors.missed.rows() == [{"image_id": 1, "gt_index": 2, "category_id": 2}]
    assert result.errors.counts == {"Cls": 1, "Loc": 1, "Both": 1, "Dupe": 1, "Bkg": 1, "Miss": 1}
    row = result.per_image.rows()[0]
    assert list(row) == [*PER_IMAGE_COLUMNS, *MAIN_ERRORS] and [row[name] for name in MAIN_ERRORS] == [1] * 6
    assert_equal_to_reference(result, gt, results)


def test_boundaries_follow_tidecv_inequalities(backend):
    """IoU exactly t_f with a taken ground truth is Loc (tested before Dupe); exactly t_b with the same class is
    Loc (``t_b <= IoU``), with another class only it is Bkg (``IoU <= t_b``)."""
    gt = _gt([(1, 1, G1), (2, 1, G1)], num_images=2)
    results = [_det(1, 1, G1, 0.9), _det(1, 1, HALF, 0.8), _det(2, 2, TENTH, 0.7), _det(2, 1, TENTH, 0.6)]
    result = analyse(gt, results, backend=backend)
    assert _bins(result) == [(1, "Loc", 0), (0, "Bkg", -1), (1, "Loc", 0)]
    assert_equal_to_reference(result, gt, results)


def test_ties(backend):
    """Equal scores: the first Loc detection of a ground truth is the one fixed (C5); equal IoUs: the first
    ground truth in the target (C4); a relabelled Cls detection ranks after equal scores of its new cell (C6)."""
    gt = _gt([(1, 1, G1), (1, 2, G2), (1, 2, G2), (2, 1, G1), (2, 2, G3)], num_images=2)
    results = [
        _det(1, 1, SHIFTED, 0.5),  # Loc of G1, first of two equal scores: becomes the TP in the Loc fix
        _det(1, 1, SHIFTED, 0.5),
        _det(1, 1, G2, 0.7),  # Cls: equal IoU with two class-2 ground truths, attributed to the first
        _det(2, 2, G1, 0.6),  # Cls on image 2's G1 ...
        _det(2, 1, FAR, 0.6),  # ... whose cell holds a false positive of equal score
        _det(2, 2, G3, 0.6),
    ]
    result = analyse(gt, results, backend=backend, batch=1)
    assert _bins(result) == [(0, "Loc", 0), (1, "Loc", 0), (2, "Cls", 1), (0, "Cls", 0), (1, "Bkg", -1)]
    assert_equal_to_reference(result, gt, results)


def test_crowd_regions(backend):
    """A detection matched to a crowd region is ignored and gets no bin (C1); an image with only crowd regions
    has no ground truth: its false positives are background (C3)."""
    gt = _gt([(1, 1, G1), (1, 1, G2, 1), (2, 2, G1, 1)], num_images=2)
    results = [_det(1, 1, G2, 0.9), _det(1, 2, G2, 0.8), _det(2, 2, FAR, 0.7), _det(2, 1, G1, 0.6)]
    result = analyse(gt, results, backend=backend)
    assert _bins(result) == [(1, "Bkg", -1), (0, "Bkg", -1), (1, "Bkg", -1)]
    assert_equal_to_reference(result, gt, results)


# --- empty evaluations ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "annotations, results",
    [
        ([(1, 1, G1)], []),  # no detection: everything missed
        ([], [_det(1, 1, G1, 0.9)]),  # no ground truth anywhere: AP undefined, every detection background
        ([(1, 1, G1, 1)], [_det(1, 1, FAR, 0.9)]),  # only a crowd region
        ([], []),
    ],
)
def test_empty_evaluations(annotations, results, backend):
    gt = _gt(annotations)
    result = analyse(gt, results, backend=backend)
    assert_equal_to_reference(result, gt, results)
    errors = result.errors
    if not annotations or annotations[0][3:]:  # no ground truth: no AP, so no dAP either
        assert errors.ap == -1.0 and all(math.isnan(v) for v in [*errors.main.values(), *errors.special.values()])
        assert errors.text().splitlines()[0].endswith("AP -") and "nan" not in errors.text()
    elif not results:  # fixing the misses takes every ground truth away: that AP is undefined, not 0 - 1
        assert math.isnan(errors.main["Miss"]) and math.isnan(errors.special["FalseNeg"])
        assert errors.main["Cls"] == 0.0 and json.loads(json.dumps(errors.to_dict()))["main"]["Miss"] is None


# --- the argument checks -----------------------------------------------------------------------------


def test_off_by_default_and_the_per_image_keys_unchanged(real_samples):
    result = evaluate_with_engine(real_samples[:5], 5, box_format="xywh")["coco"]
    assert result.errors is None and "errors" not in result.to_dict()
    assert list(result.per_image.rows()[0]) == list(PER_IMAGE_COLUMNS)


def test_keypoints_are_refused_with_the_reason():
    with pytest.raises(ValueError, match="TIDE .* defines none for keypoints"):
        CocoMetric(iou_type="keypoints", error_analysis=True)


def test_lvis_is_refused():
    with pytest.raises(ValueError, match="protocol='coco' only"):
        CocoMetric(protocol="lvis", category_frequencies={1: "r"}, error_analysis=True)


@pytest.mark.parametrize("t_b", [0.0, 0.5, 0.7, -0.1])
def test_background_threshold_must_be_below_the_iou(t_b):
    with pytest.raises(ValueError, match=r"background_threshold must be in \(0, 0.5\)"):
        CocoMetric(error_analysis=True, background_threshold=t_b)


def test_an_unknown_mode_is_refused():
    with pytest.raises(ValueError, match="error_analysis must be"):
        CocoMetric(error_analysis="tide")  # type: ignore[arg-type]


def test_the_report_is_json_ready(gt, results):
    result = analyse(gt, results, batch=25)
    report = json.loads(json.dumps(result.to_dict()))["errors"]
    assert report["AP"] == result["AP50"] and set(report["main"]) == set(MAIN_ERRORS)
    assert set(report["special"]) == set(SPECIAL_ERRORS) and len(report["per_class"]) == 80
    assert "Cls" in result.errors.text() and "FalsePos" in str(result.errors)


# --- under distribution --------------------------------------------------------------------------


def _worker(local_rank: int, out_dir: str) -> None:
    gt, results = tide_case(3)
    samples, _ = coco_samples(gt, results)
    mine = [samples[i] for i in range(idist.get_rank(), len(samples), 2)] + ([samples[0]] if idist.get_rank() else [])
    names = {c["id"]: c["name"] for c in gt["categories"]}
    found = {}
    for backend in ("native", "pycocotools"):
        metric = CocoMetric("xywh", backend=backend, class_names=names, error_analysis=True)
        for start in range(0, len(mine), 3):
            batch = mine[start : start + 3]
            metric.update(([p for p, _ in batch], [t for _, t in batch]))
        result = metric.compute()
        found[backend] = _everything(result)
    Path(out_dir, f"rank{idist.get_rank()}.json").write_text(json.dumps(found))


def _everything(result) -> dict:
    errors = result.errors
    return {
        "report": errors.to_dict(),
        "fp": errors.false_positives.rows(),
        "missed": errors.missed.rows(),
        "per_image": result.per_image.rows(),
    }


@pytest.mark.usefixtures("gloo_on_the_cpu")
def test_two_gloo_processes_give_the_single_process_analysis(tmp_path):
    """Shards interleaved and one padded with a repeat; every rank returns the single-process analysis."""
    spawn_gloo(_worker, str(tmp_path))
    gt, results = tide_case(3)
    expected = json.loads(json.dumps(_everything(analyse(gt, results))))
    for rank in range(2):
        found = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert found == {"native": expected, "pycocotools": expected}
