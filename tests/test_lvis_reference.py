"""The lvis-api oracle checked against LVIS's rules: a brute-force evaluator written here from the rules, and
hand-made cases whose numbers follow from one rule each.

The rules, as lvis-api states them (``lvis/results.py``, ``lvis/eval.py``, ``lvis/lvis.py`` of lvis 0.5.3):
1. at most ``max_dets`` detections per image across categories, the top scores in a stable descending sort,
   before anything else (``results.py:39-40, 73-84``);
2. annotations and detections of area 0 are not loaded (``lvis.py:90-96``, called from ``eval.py:64-69``);
3. a detection of a category neither in the image's ground truth nor in its ``neg_category_ids`` is dropped
   (``eval.py:88-103``);
4. per (image, category), detections by score, each takes the unmatched ground truth of highest IoU at or above
   the threshold, regular ground truth before ignored (``eval.py:233-265``); no crowd (``eval.py:177``);
5. an unmatched detection outside the area range or of a category in ``not_exhaustive_category_ids`` is
   ignored (``eval.py:267-278``);
6. COCO's 101-point precision and recall per category, -1 without ground truth; the 13 numbers are means over
   the defined entries, -1 when none is (``eval.py:313-469``).
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
from pycocotools import mask as coco_mask

from tests.lvis_reference import LVIS_NAMES, lvis_case, lvis_val_100, lvis_val_100_results, numpy_float_alias, run_lvis

IOU_THRS = np.linspace(0.5, 0.95, 10)
REC_THRS = np.linspace(0.0, 1.0, 101)
AREAS = {"all": (0, 1e10), "small": (0, 32**2), "medium": (32**2, 96**2), "large": (96**2, 1e10)}


# --- the brute force, from the rules ---------------------------------------------------------------


def brute_force_lvis(gt: dict, results: list[dict], iou_type: str = "bbox", max_dets: int = 300) -> dict:
    """The 13 numbers and the arrays, computed from rules 1-6 with nothing of lvis-api's."""
    cells = _cells(gt, _kept_detections(gt, results, max_dets), iou_type)
    images = {img["id"]: img for img in gt["images"]}
    cats = sorted(c["id"] for c in gt["categories"])
    precision = -np.ones((10, 101, len(cats), 4))
    recall = -np.ones((10, len(cats), 4))
    for k, cat in enumerate(cats):
        in_cat = [(images[i], cell) for (i, c), cell in sorted(cells.items()) if c == cat]
        for a, bounds in enumerate(AREAS.values()):
            for t, thr in enumerate(IOU_THRS):
                curve = _category_curve(in_cat, cat, bounds, thr)
                if curve is not None:
                    precision[t, :, k, a], recall[t, k, a] = curve
    return {"stats": _summary(precision, recall, gt, max_dets), "precision": precision, "recall": recall}


def _cells(gt: dict, dets: list[dict], iou_type: str) -> dict:
    """(image_id, category_id) -> (ground truth, detections by score, IoU matrix), without crowd (rule 4)."""
    cells: dict[tuple, tuple[list, list]] = {}
    for g in gt["annotations"]:
        if g["area"] > 0:  # rule 2
            cells.setdefault((g["image_id"], g["category_id"]), ([], []))[0].append(g)
    for d in dets:
        cells.setdefault((d["image_id"], d["category_id"]), ([], []))[1].append(d)
    key = "segmentation" if iou_type == "segm" else "bbox"
    out = {}
    for cell, (g, d) in cells.items():
        d = sorted(d, key=lambda x: -x["score"])
        ious = coco_mask.iou([x[key] for x in d], [x[key] for x in g], [0] * len(g)) if g and d else None
        out[cell] = (g, d, ious)
    return out


def _kept_detections(gt: dict, results: list[dict], max_dets: int) -> list[dict]:
    """Rules 1, 2 and 3, in that order; Python's sort is stable, so equal scores keep input order."""
    by_image: dict[int, list[dict]] = {}
    for det in results:
        by_image.setdefault(det["image_id"], []).append({**det, "area": _det_area(det)})
    kept = []
    for image_dets in by_image.values():
        if max_dets >= 0 and len(image_dets) > max_dets:
            image_dets = sorted(image_dets, key=lambda d: -d["score"])[:max_dets]
        kept += image_dets
    kept = [d for d in kept if d["area"] > 0]
    positive = {(g["image_id"], g["category_id"]) for g in gt["annotations"] if g["area"] > 0}
    verified = positive | {(img["id"], cat) for img in gt["images"] for cat in img["neg_category_ids"]}
    return [d for d in kept if (d["image_id"], d["category_id"]) in verified]


def _det_area(det: dict) -> float:
    if "bbox" in det:
        return det["bbox"][2] * det["bbox"][3]
    return float(coco_mask.area(det["segmentation"]))


def _category_curve(in_cat: list, cat: int, bounds: tuple, thr: float):
    """Rules 4, 5, 6 for one category, area range and threshold: (precision at the 101 points, recall) or None."""
    scores, tps, fps, num_gt = [], [], [], 0
    for image, (g, d, ious) in in_cat:
        g_ignore = [bool(x.get("ignore", 0)) or not bounds[0] <= x["area"] <= bounds[1] for x in g]
        num_gt += g_ignore.count(False)
        not_exhaustive = cat in image["not_exhaustive_category_ids"]
        for det, state in zip(d, _match(ious, len(d), g_ignore, thr)):
            if state == "unmatched" and (not_exhaustive or not bounds[0] <= det["area"] <= bounds[1]):
                state = "ignored"
            if state != "ignored":
                scores.append(det["score"])
                tps.append(state == "tp")
                fps.append(state == "unmatched")
    if not in_cat or num_gt == 0:
        return None
    return _precision_recall(np.array(scores), np.array(tps), np.array(fps), num_gt)


def _match(ious, num_dets: int, g_ignore: list[bool], thr: float) -> list[str]:
    """Each detection in score order takes the best unmatched ground truth, regular before ignored."""
    taken, outcome = set(), []
    for i in range(num_dets):
        candidates = [j for j in range(len(g_ignore)) if j not in taken and ious[i, j] >= min(thr, 1 - 1e-10)]
        regular = [j for j in candidates if not g_ignore[j]]
        pool = regular or candidates
        if not pool:
            outcome.append("unmatched")
            continue
        best = max(pool, key=lambda j: (ious[i, j], j))  # the later of equal IoUs, as a >= scan keeps
        taken.add(best)
        outcome.append("ignored" if g_ignore[best] else "tp")
    return outcome


def _precision_recall(scores, tps, fps, num_gt) -> tuple[np.ndarray, float]:
    order = np.argsort(-scores, kind="stable")
    tp, fp = np.cumsum(tps[order]).astype(float), np.cumsum(fps[order]).astype(float)
    rc = tp / num_gt
    pr = tp / (fp + tp + np.spacing(1))
    pr = np.maximum.accumulate(pr[::-1])[::-1] if len(pr) else pr
    at = np.searchsorted(rc, REC_THRS, side="left")
    points = np.array([pr[i] if i < len(pr) else 0.0 for i in at])
    return points, (rc[-1] if len(rc) else 0.0)


def _summary(precision: np.ndarray, recall: np.ndarray, gt: dict, max_dets: int) -> dict[str, float]:
    frequency = [c["frequency"] for c in sorted(gt["categories"], key=lambda c: c["id"])]
    mean = lambda s: float(np.mean(s[s > -1])) if (s > -1).any() else -1.0  # noqa: E731
    group = lambda f: [k for k, x in enumerate(frequency) if x == f]  # noqa: E731
    values = [
        mean(precision[..., 0]),
        mean(precision[0, ..., 0]),
        mean(precision[5, ..., 0]),
        *(mean(precision[..., a]) for a in (1, 2, 3)),
        *(mean(precision[:, :, group(f), 0]) for f in "rcf"),
        *(mean(recall[..., a]) for a in range(4)),
    ]
    names = [*LVIS_NAMES[:9], *(n.replace("300", str(max_dets)) for n in LVIS_NAMES[9:])]
    return dict(zip(names, values))


# --- hand-made cases, one rule each -----------------------------------------------------------------


def _gt(images: list[dict], annotations: list[tuple], frequencies: dict[int, str]) -> dict:
    """images: dicts with id, neg/not-exhaustive lists; annotations: (image_id, category_id, xywh[, area])."""
    anns = []
    for k, (image_id, cat, box, *area) in enumerate(annotations):
        anns.append(
            {"id": k + 1, "image_id": image_id, "category_id": cat, "bbox": box, "area": (area or [box[2] * box[3]])[0]}
        )
    cats = [{"id": c, "frequency": f, "name": str(c)} for c, f in frequencies.items()]
    full = [
        {"height": 200, "width": 200, "neg_category_ids": [], "not_exhaustive_category_ids": [], **i} for i in images
    ]
    return {"images": full, "annotations": anns, "categories": cats}


def _det(image_id: int, cat: int, box: list, score: float) -> dict:
    return {"image_id": image_id, "category_id": cat, "bbox": box, "score": score}


A, B = 1, 2
# A lone true positive has precision 1 / (1 + eps) in COCO's formula, so "perfect" is 1 to within 1e-15.
PERFECT = pytest.approx(1.0, abs=1e-15)
BOX, ELSEWHERE = [10, 10, 40, 40], [150, 150, 20, 20]


def _both(gt: dict, results: list[dict], **kwargs) -> dict[str, float]:
    """lvis-api's numbers, after checking that the brute force gives the same bits."""
    reference = run_lvis(gt, results, **kwargs)
    brute = brute_force_lvis(gt, results, **kwargs)
    assert reference.stats == brute["stats"]
    np.testing.assert_array_equal(reference.precision, brute["precision"])
    np.testing.assert_array_equal(reference.recall, brute["recall"])
    return reference.stats


@pytest.mark.parametrize("unverified", [299, 300])
def test_the_cap_counts_detections_the_federated_filter_drops(unverified):
    # 300 unverified detections above the true one push it out of the 300, although the filter drops them all.
    gt = _gt([{"id": 1}], [(1, A, BOX)], {A: "f", B: "c"})
    results = [_det(1, B, ELSEWHERE, 0.9)] * unverified + [_det(1, A, BOX, 0.8)]
    stats = _both(gt, results)
    assert stats["AP"] == (0.0 if unverified == 300 else PERFECT)
    assert stats["AR@300"] == (0.0 if unverified == 300 else 1.0)


def test_the_cap_is_across_categories_not_per_category():
    # 200 + 101 verified detections of two categories on one image: the last (lowest-scored) one goes.
    gt = _gt([{"id": 1, "neg_category_ids": [B]}], [(1, A, BOX)], {A: "f", B: "c"})
    results = [_det(1, B, ELSEWHERE, 0.9)] * 200 + [_det(1, A, ELSEWHERE, 0.5)] * 100 + [_det(1, A, BOX, 0.4)]
    assert _both(gt, results)["AP"] == 0.0
    assert _both(gt, results, max_dets=-1)["AP"] > 0.0  # lvis-api's own switch off: max_dets < 0


@pytest.mark.parametrize("true_first", [True, False])
def test_ties_at_the_cap_keep_input_order(true_first):
    gt = _gt([{"id": 1}], [(1, A, BOX)], {A: "f", B: "c"})
    fillers = [_det(1, B, ELSEWHERE, 0.8)] * 300
    results = [_det(1, A, BOX, 0.8), *fillers] if true_first else [*fillers, _det(1, A, BOX, 0.8)]
    assert _both(gt, results)["AP"] == (PERFECT if true_first else 0.0)


@pytest.mark.parametrize("negative", [False, True])
def test_federated_filter_drops_unverified_categories(negative):
    # B has ground truth on image 2; on image 1 it is verified absent only when ``negative``.
    images = [{"id": 1, "neg_category_ids": [B] if negative else []}, {"id": 2}]
    gt = _gt(images, [(1, A, BOX), (2, B, BOX)], {A: "f", B: "c"})
    results = [_det(1, B, ELSEWHERE, 1.0), _det(1, A, BOX, 0.5), _det(2, B, BOX, 0.9)]
    stats = _both(gt, results)
    assert stats["APf"] == PERFECT
    assert stats["APc"] == (pytest.approx(0.5, abs=1e-15) if negative else PERFECT)


@pytest.mark.parametrize("not_exhaustive", [False, True])
def test_unmatched_detections_of_not_exhaustive_categories_are_ignored(not_exhaustive):
    images = [{"id": 1, "not_exhaustive_category_ids": [A] if not_exhaustive else []}]
    gt = _gt(images, [(1, A, BOX)], {A: "f"})
    results = [_det(1, A, ELSEWHERE, 1.0), _det(1, A, BOX, 0.5)]
    assert _both(gt, results)["AP"] == (PERFECT if not_exhaustive else pytest.approx(0.5, abs=1e-15))


def test_an_empty_frequency_group_is_minus_one():
    # No category is rare; the common one has no ground truth (only a verified-absent detection).
    gt = _gt([{"id": 1, "neg_category_ids": [B]}], [(1, A, BOX)], {A: "f", B: "c"})
    stats = _both(gt, [_det(1, A, BOX, 0.9), _det(1, B, ELSEWHERE, 0.8)])
    assert (stats["APr"], stats["APc"], stats["APf"]) == (-1.0, -1.0, PERFECT)


def test_area_bounds_belong_to_both_ranges_and_the_area_field_decides():
    # A 32x32 box is small and medium; a 40x40 box whose ``area`` field says 500 is small only.
    gt = _gt([{"id": 1}, {"id": 2}], [(1, A, [10, 10, 32, 32]), (2, B, [10, 10, 40, 40], 500.0)], {A: "f", B: "f"})
    stats = _both(gt, [_det(1, A, [10, 10, 32, 32], 0.9), _det(2, B, [10, 10, 40, 40], 0.9)])
    assert (stats["APs"], stats["APm"], stats["APl"]) == (PERFECT, PERFECT, -1.0)
    assert stats["ARm@300"] == 1.0  # recall has no eps


def test_zero_area_annotations_are_not_ground_truth():
    # lvis.py's get_ann_ids keeps area > 0 only: the category is then unverified and its detection dropped.
    gt = _gt([{"id": 1}], [(1, A, BOX), (1, B, BOX, 0.0)], {A: "f", B: "c"})
    stats = _both(gt, [_det(1, A, BOX, 0.9), _det(1, B, BOX, 0.95)])
    assert (stats["APf"], stats["APc"]) == (PERFECT, -1.0)


def test_no_detections_at_all():
    gt = _gt([{"id": 1}], [(1, A, BOX)], {A: "f"})
    stats = _both(gt, [])
    assert stats["AP"] == 0.0 and stats["AR@300"] == 0.0


# --- generated and real cases ------------------------------------------------------------------------


@pytest.mark.parametrize(("seed", "iou_type"), [(0, "bbox"), (1, "bbox"), (2, "segm")])
def test_oracle_equals_the_brute_force_on_generated_cases(seed, iou_type):
    case = lvis_case(seed, iou_type)
    assert any(len(p["scores"]) > 300 for p, _ in case.samples)
    stats = _both(case.gt, case.results, iou_type=iou_type)
    assert stats["APr"] == -1.0 and stats["APc"] > 0 and stats["APf"] > 0


def test_oracle_equals_the_brute_force_on_real_lvis_images():
    gt = lvis_val_100()
    gt["annotations"] = [a for a in gt["annotations"] if a["image_id"] in {i["id"] for i in gt["images"][:25]}]
    gt["images"] = gt["images"][:25]
    results = [r for r in lvis_val_100_results(lvis_val_100(), 0) if r["image_id"] in {i["id"] for i in gt["images"]}]
    stats = _both(gt, results)
    assert all(stats[name] > 0 for name in ("AP", "APc", "APf", "AR@300"))


def test_generated_samples_carry_the_lvis_keys():
    case = lvis_case(3, "segm", num_images=4)
    prediction, target = case.samples[0]
    assert {"boxes", "labels", "image_id", "area", "neg_category_ids", "not_exhaustive_category_ids", "masks"} <= set(
        target
    )
    assert {"boxes", "scores", "labels", "masks"} <= set(prediction)
    image = case.gt["images"][0]
    assert target["neg_category_ids"].tolist() == image["neg_category_ids"]
    assert target["masks"].shape[1:] == (image["height"], image["width"])


def test_the_numpy_shim_is_local():
    gt = _gt([{"id": 1}], [(1, A, BOX)], {A: "f"})
    run_lvis(gt, [_det(1, A, BOX, 0.9)])
    assert "float" not in vars(np)
    with numpy_float_alias():
        assert np.float is float
    with pytest.raises(AttributeError):
        np.float  # noqa: B018


def test_run_lvis_does_not_modify_its_arguments():
    case = lvis_case(4, num_images=4)
    gt, results = copy.deepcopy(case.gt), copy.deepcopy(case.results)
    run_lvis(case.gt, case.results)
    assert (case.gt, case.results) == (gt, results)


@pytest.mark.parametrize("iou_type", ["bbox", "segm"])
def test_generated_cases_hold_every_sharp_edge(iou_type):
    case = lvis_case(5, iou_type)
    images = {img["id"]: img for img in case.gt["images"]}
    positive = {(a["image_id"], a["category_id"]) for a in case.gt["annotations"]}
    per_image: dict[int, list[dict]] = {}
    for det in case.results:
        per_image.setdefault(det["image_id"], []).append(det)
    negative = {(i, c) for i, img in images.items() for c in img["neg_category_ids"]}

    def verified(d: dict) -> bool:
        return (d["image_id"], d["category_id"]) in positive | negative

    crowded = [dets for dets in per_image.values() if len(dets) > 300]
    cut = [d for dets in crowded for d in sorted(dets, key=lambda d: -d["score"])[300:]]
    assert any(verified(d) for d in cut)  # the cap removes detections that would count
    assert any(not verified(d) for d in case.results)  # and the federated filter has work
    assert any(d["category_id"] in images[d["image_id"]]["not_exhaustive_category_ids"] for d in case.results)
    assert any(images[i]["neg_category_ids"] for i in images) and not all(per_image.get(i) for i in images)
    scores = [d["score"] for d in case.results]
    assert len(set(scores)) < len(scores)  # ties
    areas = [a["area"] for a in case.gt["annotations"]]
    assert {32.0**2, 96.0**2} <= set(areas)
    if iou_type == "bbox":
        assert any(a["area"] != a["bbox"][2] * a["bbox"][3] for a in case.gt["annotations"])
    else:
        assert all(isinstance(a["segmentation"]["counts"], str) for a in case.gt["annotations"])
        assert all(isinstance(d["segmentation"]["counts"], str) for d in case.results)
    frequencies = {c["frequency"] for c in case.gt["categories"]}
    labelled = {a["category_id"] for a in case.gt["annotations"]}
    with_gt = {c["frequency"] for c in case.gt["categories"] if c["id"] in labelled}
    assert frequencies == {"r", "c", "f"} and with_gt == {"c", "f"}


@pytest.mark.parametrize("iou_type", ["bbox", "segm"])
def test_generated_samples_are_the_dicts_data(iou_type):
    case = lvis_case(6, iou_type, num_images=6, crowded_images=1)
    anns, results = iter(case.gt["annotations"]), iter(case.results)
    for (prediction, target), image in zip(case.samples, case.gt["images"]):
        assert target["image_id"] == image["id"]
        assert target["not_exhaustive_category_ids"].tolist() == image["not_exhaustive_category_ids"]
        for k in range(len(target["labels"])):
            ann = next(anns)
            assert (ann["category_id"], ann["area"]) == (target["labels"][k].item(), target["area"][k].item())
            _same_geometry(ann, target, k, iou_type)
        for k in range(len(prediction["scores"])):
            det = next(results)
            given = (prediction["labels"][k].item(), prediction["scores"][k].item())
            assert (det["category_id"], det["score"]) == given
            _same_geometry(det, prediction, k, iou_type)
    assert next(anns, None) is None and next(results, None) is None


def _same_geometry(entry: dict, tensors: dict, k: int, iou_type: str) -> None:
    if iou_type == "segm":
        mask = tensors["masks"][k].numpy()
        rle = coco_mask.encode(np.asfortranarray(mask[:, :, None]))[0]
        assert entry["segmentation"]["counts"] == rle["counts"].decode("ascii")
    else:
        x0, y0, x1, y1 = tensors["boxes"][k].tolist()
        assert entry["bbox"] == [x0, y0, x1 - x0, y1 - y0]
