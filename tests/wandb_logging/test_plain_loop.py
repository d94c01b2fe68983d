"""The W&B report of a plain PyTorch loop (``WandBReport``), read back from a real offline run.

No engine: the loop calls ``metric.update``, ``report.add_images`` and ``report.log`` itself, into its own
``wandb.init`` run at its own step. What the run stored is compared with the metric's result and, for
the verdicts of the sample images, with pycocotools' own matching (``evalImgs``) at the metric's
operating IoU and ``max_detections``.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import wandb
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from ignite_det import STAT_NAMES, CocoMetric, WandBReport
from ignite_det.wandb_logging.report import PER_CLASS_COLUMNS
from tests import wandb_records as wr

H, W = 60, 80
NUM_IMAGES = 12
CLASSES = {1: "circle", 2: "square", 3: "triangle"}


def _case(seed: int, num_classes: int = 3, crowd: bool = False) -> tuple[list[dict], list[dict]]:
    """Random images: ground truth boxes, and per image detections that hit, duplicate or miss them,
    with distinct float64 scores (so a logged box is found again by its score)."""
    rng = np.random.default_rng(seed)
    scores = iter(rng.permutation(np.arange(1, 2000)) / 2000.0)
    y_pred, y = [], []
    for image_id in range(1, NUM_IMAGES + 1):
        m = int(rng.integers(0, 5))
        xy = rng.uniform(0, 50, (m, 2))
        gt = np.c_[xy, xy + rng.uniform(8, 25, (m, 2))]
        labels = rng.integers(1, num_classes + 1, m)
        iscrowd = (rng.random(m) < 0.2).astype(np.int64) if crowd else np.zeros(m, np.int64)
        boxes, det_labels = [], []
        for box, label in zip(gt, labels):
            for _ in range(int(rng.integers(0, 4))):  # 0 to 3 detections per object: misses and duplicates
                boxes.append(box + rng.normal(0, 2.5, 4))
                det_labels.append(label if rng.random() < 0.85 else 1 + label % num_classes)
        for _ in range(int(rng.integers(0, 3))):  # spurious ones
            x, y0 = rng.uniform(0, 60, 2)
            boxes.append([x, y0, x + 10, y0 + 10])
            det_labels.append(int(rng.integers(1, num_classes + 1)))
        det = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        det[:, 2:] = np.maximum(det[:, 2:], det[:, :2] + 1)
        y_pred.append(
            {
                "boxes": torch.from_numpy(det),
                "scores": torch.tensor([next(scores) for _ in range(len(det))], dtype=torch.float64),
                "labels": torch.tensor(det_labels, dtype=torch.int64),
            }
        )
        y.append(
            {
                "boxes": torch.from_numpy(gt).reshape(-1, 4),
                "labels": torch.from_numpy(labels),
                "iscrowd": torch.from_numpy(iscrowd),
                "image_id": image_id,
            }
        )
    return y_pred, y


def _pictures(count: int, seed: int) -> list[torch.Tensor]:
    return [torch.rand(3, H, W, generator=torch.Generator().manual_seed(seed + i)) for i in range(count)]


def _init(tmp_path: Path, mode: str = "offline") -> Any:
    return wandb.init(project="ignite-det-tests", mode=mode, dir=str(tmp_path), settings=wandb.Settings(silent=True))


def _loop(metric: CocoMetric, report: WandBReport, case: tuple[list[dict], list[dict]], batch: int = 5) -> Any:
    """One evaluation as a plain loop runs it."""
    y_pred, y = case
    metric.reset()
    for k in range(0, len(y), batch):
        pictures = _pictures(len(y[k : k + batch]), seed=k)
        metric.update((y_pred[k : k + batch], y[k : k + batch]))
        report.add_images(pictures, y_pred[k : k + batch], y[k : k + batch])
    return metric.compute()


@pytest.fixture(scope="module")
def plain_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Any], list[tuple]]:
    tmp_path = tmp_path_factory.mktemp("plain_loop")
    run = _init(tmp_path)
    metric = CocoMetric(class_names=CLASSES)
    report = WandBReport(num_images=4)
    cases = [_case(1), _case(2)]
    results = []
    for step, case in zip((3, 7), cases):
        results.append(_loop(metric, report, case))
        report.log(results[-1], step=step)
    run.finish()
    return wr.find_run_dir(tmp_path), results, cases  # find_run_dir: exactly one offline run, no empty one


def test_the_report_lands_in_the_users_run_at_the_users_steps(plain_run: tuple) -> None:
    run_dir, results, _ = plain_run
    rows = {row["_step"]: row for row in wr.history_rows(run_dir)}
    assert sorted(rows) == [3, 7]
    for step, result in zip((3, 7), results):
        row = rows[step]
        assert {name: row[f"val/{name}"] for name in STAT_NAMES} == dict(result)
        assert row["val/F1"] == result.best_f1.f1
        for key in ("val/per_class", "val/pr_curve_iou50_table", "val/confusion_matrix_table", "val/detections"):
            assert key in row, key
    summary = wr.summary(run_dir)
    assert summary["val/AP_best"] == max(r["AP"] for r in results)


def test_per_class_ap_is_a_scalar_per_class(plain_run: tuple) -> None:
    run_dir, results, _ = plain_run
    rows = {row["_step"]: row for row in wr.history_rows(run_dir)}
    for step, result in zip((3, 7), results):
        for c in result.per_class:
            assert rows[step][f"val/AP/{c.name}"] == c.AP
            assert rows[step][f"val/AP50/{c.name}"] == c.AP50


def test_per_class_table_counts_the_detections_at_the_operating_point(plain_run: tuple) -> None:
    run_dir, results, cases = plain_run
    rows = {row["_step"]: row for row in wr.history_rows(run_dir)}
    for step, result, (y_pred, _) in zip((3, 7), results, cases):
        columns, table = wr.load_table(run_dir, rows[step]["val/per_class"])
        assert columns == list(PER_CLASS_COLUMNS)
        scores = torch.cat([p["scores"] for p in y_pred]).numpy()
        labels = torch.cat([p["labels"] for p in y_pred]).numpy()
        threshold = result.best_f1.threshold
        for record in (dict(zip(columns, row)) for row in table):
            of_class = labels == record["category_id"]
            assert record["num_det"] == int(of_class.sum())
            assert record["num_det_at_threshold"] == int((of_class & (scores >= threshold)).sum())  # no crowd here
        assert 0 < sum(dict(zip(columns, r))["num_det_at_threshold"] for r in table) < len(scores)


def test_the_sample_images_are_the_smallest_ids_every_evaluation(plain_run: tuple) -> None:
    run_dir, results, _ = plain_run
    rows = {row["_step"]: row for row in wr.history_rows(run_dir)}
    for step, result in zip((3, 7), results):
        captions = rows[step]["val/detections"]["captions"]
        words = f"verdicts at IoU 0.5, operating point score >= {result.best_f1.threshold:.3f}"
        assert captions == [f"image_id {i}; {words}" for i in (1, 2, 3, 4)]


# --- the verdicts against pycocotools, at the operating IoU, with max_detections cutting ----------


def _pycocotools(case: tuple[list[dict], list[dict]], max_detections: list[int]) -> tuple[COCOeval, dict]:
    """COCOeval on the same data; results numbered 1.. in input order, keyed by (image_id, score)."""
    y_pred, y = case
    images = [{"id": t["image_id"], "height": H, "width": W} for t in y]
    annotations, results, result_of = [], [], {}
    for t in y:
        for box, label, crowd in zip(t["boxes"].tolist(), t["labels"].tolist(), t["iscrowd"].tolist()):
            xywh = [box[0], box[1], box[2] - box[0], box[3] - box[1]]
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": t["image_id"],
                    "category_id": label,
                    "bbox": xywh,
                    "area": xywh[2] * xywh[3],
                    "iscrowd": crowd,
                }
            )
    for p, t in zip(y_pred, y):
        for box, score, label in zip(p["boxes"].tolist(), p["scores"].tolist(), p["labels"].tolist()):
            results.append(
                {
                    "image_id": t["image_id"],
                    "category_id": label,
                    "bbox": [box[0], box[1], box[2] - box[0], box[3] - box[1]],
                    "score": score,
                }
            )
            result_of[(t["image_id"], score)] = len(results)
    gt = COCO()
    gt.dataset = {"images": images, "categories": [{"id": c} for c in CLASSES], "annotations": annotations}
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
        coco_eval = COCOeval(gt, gt.loadRes(results), "bbox")
        coco_eval.params.maxDets = max_detections
        coco_eval.evaluate()
    return coco_eval, result_of


def _expected(coco_eval: COCOeval, t: int, threshold: float) -> tuple[dict[int, str], dict[int, str]]:
    """Per result id its verdict, per ground-truth id its kind, from evalImgs at IoU index ``t``, area "all"."""
    dets: dict[int, str] = {}
    gts: dict[int, str] = {}
    scores = {a["id"]: a["score"] for a in coco_eval.cocoDt.dataset["annotations"]}
    for e in coco_eval.evalImgs:
        if e is None or e["aRng"] != coco_eval.params.areaRng[0]:
            continue
        for dt_id in coco_eval.cocoDt.getAnnIds(imgIds=[e["image_id"]], catIds=[e["category_id"]]):
            dets[dt_id] = "uncounted"  # not among the cell's first maxDets[-1]
        for dt_id, matched, ignored in zip(e["dtIds"], e["dtMatches"][t], e["dtIgnore"][t]):
            dets[dt_id] = "ignored" if ignored else ("TP" if matched else "FP")
        for gt_id, matched, ignored in zip(e["gtIds"], e["gtMatches"][t], e["gtIgnore"]):
            if ignored:
                gts[gt_id] = "(crowd)"
            else:
                gts[gt_id] = "" if matched and scores[int(matched)] >= threshold else "missed"
    return dets, gts


def test_image_verdicts_equal_evalimgs_at_the_operating_iou_with_max_detections(tmp_path: Path) -> None:
    case = _case(5, crowd=True)
    run = _init(tmp_path)
    metric = CocoMetric(class_names=CLASSES, max_detections=(1, 2, 3), f1_iou_threshold=0.75)
    report = WandBReport(num_images=NUM_IMAGES, score_threshold=0.0)
    result = _loop(metric, report, case)
    report.log(result, step=1)
    run.finish()
    run_dir = wr.find_run_dir(tmp_path)
    (row,) = [r for r in wr.history_rows(run_dir) if "val/detections" in r]
    images = wr.load_images(run_dir, row["val/detections"])
    coco_eval, result_of = _pycocotools(case, [1, 2, 3])
    threshold = result.best_f1.threshold
    want_dets, want_gts = _expected(coco_eval, list(coco_eval.params.iouThrs).index(0.75), threshold)
    got_dets: dict[int, str] = {}
    got_gts: dict[int, str] = {}
    gt_ids = iter(range(1, 1000))
    for image, (_, target) in zip(images, zip(*case)):
        image_id = int(image["caption"].split(";")[0].removeprefix("image_id "))
        assert image_id == target["image_id"]
        assert "verdicts at IoU 0.75" in image["caption"]
        layers = image["boxes"]
        for layer in ("predictions", "below_threshold"):
            names = layers[layer]["class_labels"]
            for box in layers[layer]["box_data"]:
                score = box["scores"]["score"]
                assert (score >= threshold) == (layer == "predictions")
                name = names[str(box["class_id"])]
                got_dets[result_of[(image_id, score)]] = name.split(" ", 1)[1]
        names = layers["ground_truth"]["class_labels"]
        for box in layers["ground_truth"]["box_data"]:
            got_gts[next(gt_ids)] = names[str(box["class_id"])].partition(" ")[2]
    assert got_dets == want_dets
    assert got_gts == want_gts
    assert set(got_dets.values()) == {"TP", "FP", "ignored", "uncounted"}  # every verdict is exercised
    assert {"", "missed", "(crowd)"} == set(got_gts.values())


# --- many classes: the panels show the worst ones, the table all of them --------------------------


def test_with_many_classes_the_panels_show_the_worst_and_the_table_all(tmp_path: Path) -> None:
    case = _case(7, num_classes=3)
    run = _init(tmp_path)
    metric = CocoMetric(class_names=CLASSES)
    report = WandBReport(num_images=0, max_plot_classes=2)
    result = _loop(metric, report, case)
    report.log(result, step=1)
    run.finish()
    run_dir = wr.find_run_dir(tmp_path)
    (row,) = wr.history_rows(run_dir)
    charts = wr.charts(run_dir)
    _, table = wr.load_table(run_dir, row["val/per_class"])
    assert len(table) == len(CLASSES)
    for key, stat in (("val/pr_curve_iou50", "AP50"), ("val/pr_curve_iou75", "AP75")):
        columns, lines = wr.load_table(run_dir, row[wr.chart_table_key(charts[key])])
        worst = sorted(result.per_class, key=lambda c: (getattr(c, stat), c.category_id))[:2]
        keys = {dict(zip(columns, line))["lineKey"] for line in lines}
        assert keys == {c.name for c in worst} | {"mean"}
    columns, cells = wr.load_table(run_dir, row[wr.chart_table_key(charts["val/confusion_matrix"])])
    cells = [dict(zip(columns, cell)) for cell in cells]
    worst = sorted(result.per_class, key=lambda c: (c.AP, c.category_id))[:2]
    shown = sorted(worst, key=lambda c: c.category_id)
    names = [c.name for c in shown] + ["other classes", "background"]
    assert [(c["Actual"], c["Predicted"]) for c in cells] == [(a, p) for a in names for p in names]
    matrix = np.asarray(result.confusion_matrix)
    assert sum(c["nPredictions"] for c in cells) == int(matrix.sum())  # every count is kept
    k = [result.category_ids.index(c.category_id) for c in shown]
    for i, a in enumerate(k):
        for j, b in enumerate(k):
            assert cells[i * len(names) + j]["nPredictions"] == int(matrix[a, b])


# --- the run, the step, disabled mode --------------------------------------------------------------


def test_a_step_lower_than_the_runs_is_raised_with_a_warning(tmp_path: Path) -> None:
    case = _case(3)
    run = _init(tmp_path)
    metric, report = CocoMetric(class_names=CLASSES), WandBReport(num_images=2)
    run.log({"train/loss": 1.0}, step=10)
    with pytest.warns(UserWarning, match="step 4 is lower than the W&B run's current step 10") as caught:
        report.log(_loop(metric, report, case), step=4)
    assert [Path(w.filename).name for w in caught] == [Path(__file__).name]  # points at the caller's line
    with warnings.catch_warnings(record=True) as again:  # said once: every evaluation would repeat it
        warnings.simplefilter("always")
        report.log(_loop(metric, report, case), step=5)
    assert not [w for w in again if "lower than" in str(w.message)]
    run.finish()
    rows = wr.history_rows(wr.find_run_dir(tmp_path))
    # both at the run's step: W&B merges what is logged again at its current step into the same row
    assert [r["_step"] for r in rows] == [10] and "val/AP" in rows[0] and rows[0]["train/loss"] == 1.0


def test_without_a_run_log_says_what_to_do() -> None:
    assert wandb.run is None
    metric, report = CocoMetric(), WandBReport(num_images=0)
    with pytest.raises(RuntimeError, match=r"no W&B run; call wandb.init\(\) first"):
        report.log(_loop(metric, report, _case(3)), step=1)


def test_a_disabled_run_logs_nothing_and_writes_no_folder(tmp_path: Path) -> None:
    run = _init(tmp_path, mode="disabled")
    metric, report = CocoMetric(), WandBReport(num_images=2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        report.log(_loop(metric, report, _case(3)), step=1)
    run.finish()
    assert not list(tmp_path.glob("**/offline-run-*"))


@pytest.mark.parametrize("num_images", [-1, 51, 2.0, True])
def test_num_images_is_checked(num_images: Any) -> None:
    with pytest.raises(ValueError, match="num_images must be an int from 0 to 50"):
        WandBReport(num_images=num_images)


def test_a_detection_of_a_category_nobody_evaluates_is_uncounted_as_in_evalimgs() -> None:
    # COCOeval evaluates the ground truth's categories: a detection of any other category lies in no
    # evalImgs cell, so the picture must not call it a false positive either.
    import torch

    from ignite_det.inputs import normalize_batch
    from ignite_det.wandb_logging.overlays import OperatingPoint, verdicts
    from tests.coco_reference import run_cocoeval, to_coco

    box = [[0.0, 0.0, 10.0, 10.0]] * 2
    pred = {"boxes": torch.tensor(box), "scores": torch.tensor([0.9, 0.8]), "labels": torch.tensor([1, 7])}
    target = {"boxes": torch.tensor(box[:1]), "labels": torch.tensor([1]), "image_id": 1}
    metric = CocoMetric()
    metric.update(([pred], [target]))
    found = verdicts(normalize_batch(([pred], [target]), "xyxy"), OperatingPoint.of(metric.compute()))
    coco_eval = run_cocoeval(*to_coco([pred], [target]))
    evaluated = [e for e in coco_eval.evalImgs if e is not None and e["aRng"] == coco_eval.params.areaRng[0]]
    assert [e["dtIds"] for e in evaluated] == [[1]]  # only the category-1 detection is in a cell
    assert found.detections == ["TP", "uncounted"]
