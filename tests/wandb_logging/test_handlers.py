"""W&B logging of a COCO evaluation: real Ignite engines, a real CocoMetric, a real offline WandBLogger.

Each run writes ``wandb/offline-run-*/run-*.wandb`` under ``tmp_path``; ``wandb_records`` reads it back
and the tests compare what W&B stored with what the metric returned, epoch by epoch.

The synthetic data is built so every prediction's TP/FP status is known by construction: a "hit" is its
ground truth box moved by at most 1 px (IoU > 0.8), a "miss" the box moved into the bottom half of the
image, where no ground truth is, a duplicate repeats a hit at a lower score, and a spurious box sits in
the bottom half too. The crowd region is on the right, away from everything else.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from ignite.engine import Engine, Events
from ignite.handlers.wandb_logger import WandBLogger, global_step_from_engine

from ignite_det import STAT_NAMES, CocoMetric, CocoReportHandler, DetectionImagesHandler, attach_wandb_logging
from ignite_det.per_image import PER_IMAGE_COLUMNS
from ignite_det.wandb_logging.overlays import OperatingPoint, _layers, _make_sample, _to_hwc_uint8, verdicts
from ignite_det.wandb_logging.report import (
    PER_CLASS_COLUMNS,
    _confusion_rows,
    _f1_lines,
    _per_class_rows,
    _pr_lines,
    _scalars,
)
from tests import wandb_records as wr

CLASSES = {1: "cat", 2: "dog", 3: "bird", 4: "fish"}  # "fish" is only ever predicted, never in ground truth
H, W = 64, 128
IMAGE_IDS = [7, 3, 9, 1, 4, 10, 2, 8, 5, 6]  # the loader's order; 4 has no objects, 3 has a crowd region
CROWD_IMAGE = 3
HIT_RATE = {1: 0.5, 2: 0.95, 3: 0.7}  # per epoch: AP peaks at epoch 2, so the best is not the last
SCORE_THRESHOLD = 0.3
NUM_IMAGES = 4
SAMPLE = sorted(IMAGE_IDS)[:NUM_IMAGES]  # the images shown: the smallest ids, increasing
NUM_WORST = 3  # the worst images pictured in the per-image table
BATCH_SIZE = 3


# ---------------------------------------------------------------------------------------------------------
# Synthetic data and a "model" whose every prediction is a known TP or FP
# ---------------------------------------------------------------------------------------------------------


def _target(image_id: int) -> dict[str, Any]:
    rng = np.random.default_rng(image_id)
    n = 0 if image_id == 4 else int(rng.integers(1, 4))
    boxes = []
    for slot in range(n):  # slots never overlap: x in [4 + 30 k, 4 + 30 k + 24], y in [4, 30]
        x0, y0 = 4 + 30 * slot + rng.uniform(0, 4), rng.uniform(4, 8)
        boxes.append([x0, y0, x0 + rng.uniform(14, 20), y0 + rng.uniform(14, 22)])
    labels = rng.integers(1, 4, size=n).tolist()
    crowd = [0] * n
    if image_id == CROWD_IMAGE:
        boxes.append([100.0, 4.0, 124.0, 28.0])
        labels.append(1)
        crowd.append(1)
    return {
        "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
        "labels": torch.tensor(labels, dtype=torch.int64),
        "iscrowd": torch.tensor(crowd, dtype=torch.int64),
        "image_id": image_id,
    }


def _image(image_id: int) -> torch.Tensor:
    return torch.rand(3, H, W, generator=torch.Generator().manual_seed(image_id))


@dataclass
class Prediction:
    boxes: list[list[float]] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)  # "TP" / "FP" / "ignored" at IoU 0.5, by construction
    hits: list[int | None] = field(default_factory=list)  # the ground truth a TP matches, by construction

    def add(self, box: list[float], score: float, label: int, tag: str, hit: int | None = None) -> None:
        self.boxes.append(box)
        self.scores.append(score)
        self.labels.append(label)
        self.tags.append(tag)
        self.hits.append(hit)

    def as_dict(self) -> dict[str, torch.Tensor]:
        return {
            "boxes": torch.tensor(self.boxes, dtype=torch.float32).reshape(-1, 4),
            "scores": torch.tensor(self.scores, dtype=torch.float32),
            "labels": torch.tensor(self.labels, dtype=torch.int64),
        }


def _predict(target: dict[str, Any], epoch: int) -> Prediction:
    rng = np.random.default_rng(1000 * epoch + target["image_id"])
    pred = Prediction()
    objects = zip(target["boxes"].tolist(), target["labels"].tolist(), target["iscrowd"].tolist())
    for j, (box, label, crowd) in enumerate(objects):
        if crowd:
            pred.add(box, 0.8, label, "ignored")  # on a crowd region: COCO counts it neither way
        elif rng.random() < HIT_RATE[epoch]:
            moved = [v + rng.uniform(-1, 1) for v in box]
            pred.add(moved, float(rng.uniform(0.35, 1.0)), label, "TP", hit=j)
            if rng.random() < 0.3:
                pred.add(moved, float(rng.uniform(0.05, 0.3)), label, "FP")  # a duplicate, lower score
        else:
            pred.add([box[0], box[1] + 32, box[2], box[3] + 32], float(rng.uniform(0.05, 0.9)), label, "FP")
    x0 = float(rng.uniform(0, 100))
    pred.add([x0, 40.0, x0 + 20, 60.0], float(rng.uniform(0.05, 0.6)), int(rng.integers(1, 5)), "FP")
    return pred


def _batches(order: list[int]) -> list[tuple[torch.Tensor, list[dict[str, Any]]]]:
    return [
        (torch.stack([_image(i) for i in order[k : k + BATCH_SIZE]]), [_target(i) for i in order[k : k + BATCH_SIZE]])
        for k in range(0, len(order), BATCH_SIZE)
    ]


@dataclass
class Setup:
    """A trainer, an evaluator with the metric attached, and what the evaluator produced."""

    trainer: Engine
    evaluator: Engine
    results: list[Any] = field(default_factory=list)  # one CocoResult per evaluation
    predictions: dict[tuple[int, int], Prediction] = field(default_factory=dict)  # (evaluation, image_id)
    model_calls: int = 0


def _setup(epoch_orders: dict[int, list[int]] | None = None) -> Setup:
    trainer = Engine(lambda engine, batch: 0.1 * batch)
    evaluator = Engine(lambda engine, batch: _evaluate(setup, batch))
    setup = Setup(trainer, evaluator)
    CocoMetric(box_format="xyxy", class_names=CLASSES).attach(evaluator, "coco")
    evaluator.add_event_handler(Events.COMPLETED, lambda e: setup.results.append(e.state.metrics["coco"]))
    orders = epoch_orders or {}
    trainer.add_event_handler(
        Events.EPOCH_COMPLETED, lambda t: evaluator.run(_batches(orders.get(t.state.epoch, IMAGE_IDS)))
    )
    return setup


def _evaluate(setup: Setup, batch: tuple[torch.Tensor, list[dict[str, Any]]]) -> tuple[list, list]:
    setup.model_calls += 1
    epoch = setup.trainer.state.epoch
    preds = [_predict(t, epoch) for t in batch[1]]
    for t, p in zip(batch[1], preds):
        setup.predictions[(len(setup.results) + 1, t["image_id"])] = p
    return [p.as_dict() for p in preds], batch[1]


def _logger(tmp_path: Path, mode: str = "offline") -> WandBLogger:
    return WandBLogger(project="ignite-det-tests", mode=mode, dir=str(tmp_path), settings={"silent": True})


def _caption_ids(value: dict[str, Any]) -> list[int]:
    """The image ids of logged images, from their captions (``image_id 7; verdicts at ...``)."""
    return [int(caption.split(";")[0].removeprefix("image_id ")) for caption in value["captions"]]


def _rows_by_step(run_dir: Path) -> dict[int, dict[str, Any]]:
    rows = wr.history_rows(run_dir)
    steps = [row["_step"] for row in rows]
    assert steps == sorted(set(steps)), f"steps must increase: {steps}"
    return {row["_step"]: row for row in rows}


# ---------------------------------------------------------------------------------------------------------
# Run A: attach_wandb_logging, 3 epochs, the evaluation order changed at epoch 2
# ---------------------------------------------------------------------------------------------------------

EPOCHS = 3


@dataclass
class Run:
    setup: Setup
    run_dir: Path
    rows: dict[int, dict[str, Any]]


@pytest.fixture(scope="module")
def convenience_run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    tmp_path = tmp_path_factory.mktemp("wandb_convenience")
    setup = _setup(epoch_orders={2: IMAGE_IDS[::-1]})
    logger = _logger(tmp_path)
    logger.attach_output_handler(
        setup.trainer, Events.EPOCH_COMPLETED, tag="train", output_transform=lambda loss: {"loss": loss}
    )
    attach_wandb_logging(  # training is logged per epoch, so validation at the epoch too
        logger,
        setup.evaluator,
        num_images=NUM_IMAGES,
        num_worst_images=NUM_WORST,
        score_threshold=SCORE_THRESHOLD,
        global_step_transform=global_step_from_engine(setup.trainer),
    )
    setup.trainer.run([1.0, 2.0], max_epochs=EPOCHS)
    logger.close()
    run_dir = wr.find_run_dir(tmp_path)
    return Run(setup, run_dir, _rows_by_step(run_dir))


def test_scalars_equal_the_metric_at_the_trainers_epoch(convenience_run: Run) -> None:
    results, rows = convenience_run.setup.results, convenience_run.rows
    assert len(results) == EPOCHS
    assert sorted(rows) == list(range(1, EPOCHS + 1))
    for epoch, result in enumerate(results, start=1):
        row = rows[epoch]
        assert {name: row[f"val/{name}"] for name in STAT_NAMES} == dict(result)
        best = result.best_f1
        assert row["val/precision"] == best.precision
        assert row["val/recall"] == best.recall
        assert row["val/F1"] == best.f1
        assert row["val/best_f1_threshold"] == best.threshold
        assert row["train/loss"] == pytest.approx(0.2)  # training and validation share the row of the epoch


def test_each_number_is_logged_once_under_its_plain_name(convenience_run: Run) -> None:
    for row in convenience_run.rows.values():
        assert not [key for key in row if key.startswith("val/coco")]


def test_summary_keeps_the_best_ap_and_its_step(convenience_run: Run) -> None:
    aps = [result["AP"] for result in convenience_run.setup.results]
    assert int(np.argmax(aps)) != len(aps) - 1, "the data should make an earlier epoch the best"
    summary = wr.summary(convenience_run.run_dir)
    assert summary["val/AP_best"] == max(aps)
    assert summary["val/AP_best_step"] == int(np.argmax(aps)) + 1
    assert summary["val/AP"] == aps[-1]


def test_per_class_table_has_one_row_per_class_each_epoch(convenience_run: Run) -> None:
    for epoch, result in enumerate(convenience_run.setup.results, start=1):
        columns, rows = wr.load_table(convenience_run.run_dir, convenience_run.rows[epoch]["val/per_class"])
        assert columns == list(PER_CLASS_COLUMNS)
        assert len(rows) == len(result.per_class)
        for row, c in zip(rows, result.per_class):
            record = dict(zip(columns, row))
            assert (record["category_id"], record["class"]) == (c.category_id, c.name)
            assert (record["num_gt"], record["num_det"]) == (c.num_gt, c.num_det)
            for name in ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR_max"):
                expected = getattr(c, name)
                assert record[name] == (expected if expected >= 0 else None)
            expected_f1 = c.f1.f1 if math.isfinite(c.f1.f1) else None
            assert record["F1"] == expected_f1


def _chart_rows(run: Run, step: int, key: str, panel: str) -> list[dict[str, Any]]:
    chart = wr.charts(run.run_dir)[key]
    assert chart["panel_config"]["panelDefId"] == panel
    table_key = wr.chart_table_key(chart)
    columns, rows = wr.load_table(run.run_dir, run.rows[step][table_key])
    return [dict(zip(columns, row)) for row in rows]


@pytest.mark.parametrize(("key", "iou"), [("val/pr_curve_iou50", 0.5), ("val/pr_curve_iou75", 0.75)])
def test_pr_curves_per_class_and_mean(convenience_run: Run, key: str, iou: float) -> None:
    for epoch, result in enumerate(convenience_run.setup.results, start=1):
        rows = _chart_rows(convenience_run, epoch, key, "wandb/lineseries/v0")
        expected = {}
        for name, category_id in [*((result.class_names[c], c) for c in result.category_ids), ("mean", None)]:
            recall, precision = result.pr_curve(category_id=category_id, iou_threshold=iou)
            if (precision >= 0).any():
                expected[name] = [[float(r), float(p)] for r, p in zip(recall, precision) if p >= 0]
        assert "fish" not in expected  # no ground truth: no curve
        assert {"mean", "cat", "dog", "bird"} <= set(expected)
        got: dict[str, list[list[float]]] = {}
        for row in rows:
            got.setdefault(row["lineKey"], []).append([row["step"], row["lineVal"]])
        assert got == expected


def test_f1_curve_against_confidence(convenience_run: Run) -> None:
    result = convenience_run.setup.results[-1]
    rows = _chart_rows(convenience_run, EPOCHS, "val/f1_curve", "wandb/lineseries/v0")
    curve = result.f1_curve()
    for key, name in (("F1", "f1"), ("precision", "precision"), ("recall", "recall")):
        got = [(row["step"], row["lineVal"]) for row in rows if row["lineKey"] == key]
        assert got == [(float(t), float(v)) for t, v in zip(curve["threshold"], curve[name])]


def test_confusion_matrix_with_background(convenience_run: Run) -> None:
    for epoch, result in enumerate(convenience_run.setup.results, start=1):
        rows = _chart_rows(convenience_run, epoch, "val/confusion_matrix", "wandb/confusion_matrix/v1")
        names = [result.class_names[c] for c in result.category_ids] + ["background"]
        matrix = np.asarray(result.confusion_matrix)
        assert matrix.shape == (len(names), len(names))
        assert [(r["Actual"], r["Predicted"]) for r in rows] == [(a, p) for a in names for p in names]
        assert [r["nPredictions"] for r in rows] == matrix.reshape(-1).tolist()


def test_images_are_the_smallest_ids_in_order_and_the_same_every_epoch(convenience_run: Run) -> None:
    # the loader's order is IMAGE_IDS at epochs 1 and 3, reversed at epoch 2: the sample does not follow it
    assert IMAGE_IDS[:NUM_IMAGES] != SAMPLE != IMAGE_IDS[::-1][:NUM_IMAGES]
    for epoch, result in enumerate(convenience_run.setup.results, start=1):
        value = convenience_run.rows[epoch]["val/detections"]
        assert value["_type"] == "images/separated"
        assert (value["width"], value["height"]) == (W, H)
        words = f"verdicts at IoU 0.5, operating point score >= {result.best_f1.threshold:.3f}"
        assert value["captions"] == [f"image_id {i}; {words}" for i in SAMPLE]


def test_image_boxes_are_pixel_boxes_with_verdict_classes_split_at_the_operating_point(convenience_run: Run) -> None:
    setup = convenience_run.setup
    for epoch, result in enumerate(setup.results, start=1):
        threshold = result.best_f1.threshold
        images = wr.load_images(convenience_run.run_dir, convenience_run.rows[epoch]["val/detections"])
        assert len(images) == NUM_IMAGES
        for image_id, image in zip(SAMPLE, images):
            assert image["path"].is_file()
            target, pred = _target(image_id), setup.predictions[(epoch, image_id)]
            layers = image["boxes"]
            above = [float(np.float32(s)) >= threshold for s in pred.scores]  # the metric reads float32 scores
            for layer, kept in (("predictions", True), ("below_threshold", False)):
                drawn = [k for k, s in enumerate(pred.scores) if s >= SCORE_THRESHOLD and above[k] == kept]
                boxes = layers[layer]["box_data"]
                names = layers[layer]["class_labels"]
                assert [b["box_caption"].split(" IoU")[0] for b in boxes] == [
                    f"{pred.scores[k]:.2f} {pred.tags[k]}" for k in drawn
                ]
                assert [names[str(b["class_id"])] for b in boxes] == [
                    f"{CLASSES[pred.labels[k]]} {pred.tags[k]}" for k in drawn
                ]
                for b, k in zip(boxes, drawn):
                    assert b["domain"] == "pixel"
                    position = b["position"]
                    got = [position["minX"], position["minY"], position["maxX"], position["maxY"]]
                    assert got == pytest.approx(pred.boxes[k], abs=1e-4)
                    assert b["scores"]["score"] == pytest.approx(pred.scores[k], abs=1e-6)
                    assert (" IoU 0." in b["box_caption"] or " IoU 1.00" in b["box_caption"]) == (pred.tags[k] != "FP")
            found = {pred.hits[k] for k in range(len(pred.scores)) if pred.tags[k] == "TP" and above[k]}
            gt_boxes = layers["ground_truth"]["box_data"]
            names = layers["ground_truth"]["class_labels"]
            expected = [
                CLASSES[label] + (" (crowd)" if crowd else "" if j in found else " missed")
                for j, (label, crowd) in enumerate(zip(target["labels"].tolist(), target["iscrowd"].tolist()))
            ]
            assert [names[str(b["class_id"])] for b in gt_boxes] == expected


def test_crowd_region_is_drawn_and_a_prediction_on_it_ignored(convenience_run: Run) -> None:
    images = wr.load_images(convenience_run.run_dir, convenience_run.rows[1]["val/detections"])
    layers = images[SAMPLE.index(CROWD_IMAGE)]["boxes"]
    gt_names = layers["ground_truth"]["class_labels"]
    assert any(gt_names[str(b["class_id"])] == "cat (crowd)" for b in layers["ground_truth"]["box_data"])
    predictions = layers["predictions"]["box_data"] + layers["below_threshold"]["box_data"]
    names = layers["predictions"]["class_labels"]
    assert any(
        names[str(b["class_id"])] == "cat ignored" and b["box_caption"].startswith("0.80 ignored IoU")
        for b in predictions
    )


def test_capturing_images_does_not_run_the_model_again(convenience_run: Run) -> None:
    assert convenience_run.setup.model_calls == EPOCHS * len(_batches(IMAGE_IDS))


def test_media_files_are_written_for_wandb_sync(convenience_run: Run) -> None:
    assert len(wr.media_files(convenience_run.run_dir, "images")) == EPOCHS * NUM_IMAGES
    tables = [p.name for p in wr.media_files(convenience_run.run_dir, "table")]
    for prefix in ("per_class", "pr_curve_iou50_table", "pr_curve_iou75_table", "f1_curve_table"):
        assert sum(name.startswith(prefix + "_") for name in tables) == EPOCHS


# ---------------------------------------------------------------------------------------------------------
# Run B: the handlers one by one, as in the issue
# ---------------------------------------------------------------------------------------------------------


def test_handlers_attached_one_by_one(tmp_path: Path) -> None:
    setup = _setup()
    logger = _logger(tmp_path)
    step = global_step_from_engine(setup.trainer)
    logger.attach_output_handler(
        setup.evaluator, Events.COMPLETED, tag="val", metric_names=list(STAT_NAMES), global_step_transform=step
    )
    logger.attach(setup.evaluator, CocoReportHandler("coco", tag="val", global_step_transform=step), Events.COMPLETED)
    images = DetectionImagesHandler(tag="val", num_images=2, metric_name="coco", global_step_transform=step)
    logger.attach(setup.evaluator, images, Events.COMPLETED)  # COMPLETED only: images from the 2nd evaluation on
    with pytest.warns(UserWarning, match="captured no images"):
        setup.trainer.run([1.0], max_epochs=3)
    logger.close()

    rows = _rows_by_step(wr.find_run_dir(tmp_path))
    for epoch, result in enumerate(setup.results, start=1):
        assert {name: rows[epoch][f"val/{name}"] for name in STAT_NAMES} == dict(result)
        assert rows[epoch]["val/precision"] == result.best_f1.precision
        assert "val/per_class" in rows[epoch]
    assert "val/detections" not in rows[1]
    for epoch in (2, 3):
        assert _caption_ids(rows[epoch]["val/detections"]) == SAMPLE[:2]
    assert images.image_ids == SAMPLE[:2]


# ---------------------------------------------------------------------------------------------------------
# Run C: no trainer, then a step that would go backwards
# ---------------------------------------------------------------------------------------------------------


def test_without_trainer_each_evaluation_is_a_step_and_steps_never_go_back(tmp_path: Path) -> None:
    setup = _setup()
    logger = _logger(tmp_path)
    attach_wandb_logging(logger, setup.evaluator, num_images=2)
    setup.trainer.state.epoch = 1  # the "model" reads it
    setup.evaluator.run(_batches(IMAGE_IDS))
    setup.evaluator.run(_batches(IMAGE_IDS))
    logger.log({"train/marker": 1}, step=10)
    with pytest.warns(UserWarning, match="step 3 is lower than the W&B run's current step 10"):
        setup.evaluator.run(_batches(IMAGE_IDS))
    logger.close()

    rows = _rows_by_step(wr.find_run_dir(tmp_path))
    assert sorted(rows) == [1, 2, 10]
    for step, result in zip([1, 2, 10], setup.results):
        assert rows[step]["val/AP"] == result["AP"]
        assert "val/detections" in rows[step]


# ---------------------------------------------------------------------------------------------------------
# Disabled mode, finished runs, wrong logger
# ---------------------------------------------------------------------------------------------------------


def test_disabled_mode_is_a_silent_no_op(tmp_path: Path) -> None:
    setup = _setup()
    logger = _logger(tmp_path, mode="disabled")
    attach_wandb_logging(logger, setup.evaluator, trainer=setup.trainer)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        setup.trainer.run([1.0], max_epochs=2)
    logger.close()
    assert not [w for w in caught if Path(w.filename).parent.name == "ignite_det"]
    assert len(setup.results) == 2
    assert not list(tmp_path.glob("**/offline-run-*"))


def _images_but_1_and_3(batch: tuple[torch.Tensor, list[dict[str, Any]]]) -> list[torch.Tensor | None]:
    return [None if target["image_id"] in (1, 3) else image for image, target in zip(*batch)]


def test_images_given_as_none_are_not_shown(tmp_path: Path) -> None:
    setup = _setup()
    logger = _logger(tmp_path)
    attach_wandb_logging(logger, setup.evaluator, trainer=setup.trainer, batch_transform=_images_but_1_and_3)
    setup.trainer.run([1.0], max_epochs=1)
    logger.close()
    row = _rows_by_step(wr.find_run_dir(tmp_path))[1]
    shown = sorted(set(IMAGE_IDS) - {1, 3})
    assert _caption_ids(row["val/detections"]) == shown


def test_without_a_logger_nothing_is_captured_or_logged() -> None:
    """``logger=None`` is for the processes without a W&B run; alone, there is nobody to send images to."""
    setup = _setup()
    report, images = attach_wandb_logging(None, setup.evaluator, trainer=setup.trainer, num_images=2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        setup.trainer.run([1.0], max_epochs=2)
    assert len(setup.results) == 2
    assert report.best_ap is None
    assert images is not None and images.image_ids == [] and not images._candidates


def test_handlers_do_nothing_after_the_run_is_finished(tmp_path: Path) -> None:
    setup = _setup()
    logger = _logger(tmp_path)
    attach_wandb_logging(logger, setup.evaluator, trainer=setup.trainer)
    logger.close()
    setup.trainer.run([1.0], max_epochs=1)
    assert len(setup.results) == 1


def test_handlers_need_a_wandb_logger() -> None:
    engine = Engine(lambda e, b: None)
    with pytest.raises(RuntimeError, match="works only with WandBLogger"):
        CocoReportHandler()(engine, object(), Events.COMPLETED)  # type: ignore[arg-type]
    with pytest.raises(RuntimeError, match="works only with WandBLogger"):
        DetectionImagesHandler()(engine, object(), Events.COMPLETED)  # type: ignore[arg-type]


@pytest.mark.parametrize("num_images", [0, 51, 2.0, True])
def test_num_images_is_checked(num_images: Any) -> None:
    with pytest.raises(ValueError, match="num_images must be an int from 1 to 50"):
        DetectionImagesHandler(num_images=num_images)


def test_box_format_is_checked() -> None:
    with pytest.raises(ValueError, match="box_format must be one of"):
        DetectionImagesHandler(box_format="yxyx")


# ---------------------------------------------------------------------------------------------------------
# Pure helpers, on a real CocoResult
# ---------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def result() -> Any:
    setup = _setup()
    setup.trainer.state.epoch = 1
    setup.evaluator.run(_batches(IMAGE_IDS))
    return setup.results[0]


def test_scalars_helper(result: Any) -> None:
    scalars = _scalars(result, "val")
    assert list(scalars)[: len(STAT_NAMES)] == [f"val/{n}" for n in STAT_NAMES]
    assert all(type(v) is float for v in scalars.values())
    assert scalars["val/F1"] == result.best_f1.f1
    assert "val/AP" not in _scalars(result, "val", include_stats=False)


def test_per_class_rows_mark_undefined_values_as_none(result: Any) -> None:
    rows = {row[1]: dict(zip(PER_CLASS_COLUMNS, row)) for row in _per_class_rows(result)}
    assert len(rows) == len(result.per_class)
    if "fish" in rows:  # predicted, never in ground truth: AP undefined
        assert rows["fish"]["AP"] is None
        assert rows["fish"]["num_gt"] == 0
    assert all(type(row["num_gt"]) is int and type(row["category_id"]) is int for row in rows.values())


def test_pr_and_f1_lines_hold_only_defined_points(result: Any) -> None:
    xs, ys, keys = _pr_lines(result, 0.5)
    assert keys[-1] == "mean"
    assert len(xs) == len(ys) == len(keys)
    assert all(0 <= v <= 1 for y in ys for v in y)
    assert _pr_lines(result, 0.3) == ([], [], [])  # not an evaluated IoU threshold
    f1_xs, f1_ys, f1_keys = _f1_lines(result)
    assert f1_keys == ["F1", "precision", "recall"]
    assert all(len(x) == len(y) for x, y in zip(f1_xs, f1_ys))


def test_confusion_rows_cover_every_cell(result: Any) -> None:
    rows = _confusion_rows(result)
    k = len(result.category_ids) + 1
    assert len(rows) == k * k
    assert rows[-1][:2] == ["background", "background"]
    assert sum(r[2] for r in rows) == int(np.asarray(result.confusion_matrix).sum())


# ---------------------------------------------------------------------------------------------------------
# Pure helpers: matching, images, box layers
# ---------------------------------------------------------------------------------------------------------


def _sample_of(
    pred: Sequence[Sequence[float]],
    scores: list[float],
    gt: Sequence[Sequence[float]],
    crowd: list[int] | None = None,
    pred_labels: list[int] | None = None,
    gt_labels: list[int] | None = None,
    image: np.ndarray | None = None,
) -> Any:
    """A captured sample of xyxy boxes, read as the metric reads them."""
    n, m = len(pred), len(gt)
    prediction = {
        "boxes": torch.tensor(pred, dtype=torch.float64).reshape(-1, 4),
        "scores": torch.tensor(scores, dtype=torch.float64),
        "labels": torch.tensor(pred_labels or [1] * n),
    }
    target = {
        "boxes": torch.tensor(gt, dtype=torch.float64).reshape(-1, 4),
        "labels": torch.tensor(gt_labels or [1] * m),
        "iscrowd": torch.tensor(crowd or [0] * m),
        "image_id": 1,
    }
    return _make_sample(1, np.zeros((1, 1, 3), np.uint8) if image is None else image, prediction, target, "xyxy")


def _outcomes_of(*args: Any, **kwargs: Any) -> list[str]:
    return verdicts(_sample_of(*args, **kwargs).tables["bbox"], OperatingPoint.of(None)).detections


def test_outcomes_are_greedy_by_score() -> None:
    box = [0, 0, 10, 10]
    assert _outcomes_of([box, box], [0.2, 0.9], [box]) == ["FP", "TP"]


def test_outcomes_need_iou_of_one_half() -> None:
    gt = [[0, 0, 10, 10]]
    assert _outcomes_of([[0, 0, 10, 5]], [0.9], gt) == ["TP"]  # IoU exactly 0.5
    assert _outcomes_of([[0, 0, 10, 4.9]], [0.9], gt) == ["FP"]


def test_outcomes_take_the_best_free_ground_truth_of_the_same_class() -> None:
    gts = [[0, 0, 10, 10], [0, 0, 10, 9]]
    pred = [[0, 0, 10, 10], [0, 0, 10, 10]]
    assert _outcomes_of(pred, [0.9, 0.8], gts, pred_labels=[1, 2], gt_labels=[2, 1]) == ["TP", "TP"]
    assert _outcomes_of(pred, [0.9, 0.8], gts[:1], pred_labels=[1, 1], gt_labels=[2]) == ["FP", "FP"]


def test_a_prediction_on_a_crowd_region_is_ignored_as_cocoeval_ignores_it() -> None:
    crowd = [0, 0, 100, 100]
    inside = [10, 10, 20, 20]  # IoU 0.01 with the region, but all of it lies inside: COCO's crowd IoU is 1
    assert _outcomes_of([inside, inside], [0.9, 0.8], [crowd], crowd=[1]) == ["ignored", "ignored"]
    # A regular ground truth is preferred to a crowd region, whatever the order.
    assert _outcomes_of([inside, inside], [0.9, 0.8], [crowd, inside], crowd=[1, 0]) == ["TP", "ignored"]


def _xyxy(xywh: np.ndarray) -> np.ndarray:
    return np.c_[xywh[:, :2], xywh[:, :2] + xywh[:, 2:]]


def test_outcomes_agree_with_cocoeval_evalimgs() -> None:
    """Against pycocotools' own matching of one image (its evalImgs at IoU 0.5, area "all")."""
    import contextlib
    import io

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    rng = np.random.default_rng(5)
    gt_xywh = np.c_[rng.uniform(0, 60, (12, 2)), rng.uniform(5, 30, (12, 2))]
    gt_crowd = (rng.random(12) < 0.25).astype(int)
    gt_labels = rng.integers(1, 3, 12)
    picked = rng.integers(0, 12, 40)
    pred_xywh = gt_xywh[picked] + rng.normal(0, 3, (40, 4)) * [1, 1, 0.5, 0.5]
    pred_xywh[:, 2:] = np.abs(pred_xywh[:, 2:]) + 1
    pred_labels = np.where(rng.random(40) < 0.8, gt_labels[picked], 3 - gt_labels[picked])
    scores = np.round(rng.random(40), 1)  # plenty of ties
    gt = COCO()
    gt.dataset = {
        "images": [{"id": 1}],
        "categories": [{"id": 1}, {"id": 2}],
        "annotations": [
            {
                "id": i + 1,
                "image_id": 1,
                "category_id": int(c),
                "bbox": b.tolist(),
                "area": b[2] * b[3],
                "iscrowd": int(k),
            }
            for i, (b, c, k) in enumerate(zip(gt_xywh, gt_labels, gt_crowd))
        ],
    }
    results = [
        {"image_id": 1, "category_id": int(c), "bbox": b.tolist(), "score": float(s)}
        for b, c, s in zip(pred_xywh, pred_labels, scores)
    ]
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
        coco_eval = COCOeval(gt, gt.loadRes(results), "bbox")
        coco_eval.params.maxDets = [100]
        coco_eval.evaluate()
    expected = ["FP"] * 40
    for e in coco_eval.evalImgs:
        if e is None or e["aRng"] != [0, 10000000000.0]:
            continue
        for dt_id, matched, ignored in zip(e["dtIds"], e["dtMatches"][0], e["dtIgnore"][0]):
            expected[dt_id - 1] = "ignored" if ignored else ("TP" if matched else "FP")
    got = _outcomes_of(
        _xyxy(pred_xywh).tolist(),
        scores.tolist(),
        _xyxy(gt_xywh).tolist(),
        gt_crowd.tolist(),
        pred_labels.tolist(),
        gt_labels.tolist(),
    )
    assert got == expected
    assert {"TP", "FP", "ignored"} <= set(got)


@pytest.mark.parametrize(
    ("image", "expected"),
    [
        (torch.ones(3, 2, 5), np.full((2, 5, 3), 255, np.uint8)),
        (torch.full((3, 2, 5), 0.5), np.full((2, 5, 3), 128, np.uint8)),
        (torch.full((3, 2, 5), 0.5, dtype=torch.bfloat16), np.full((2, 5, 3), 128, np.uint8)),
        (torch.full((1, 2, 5), 2.0), np.full((2, 5, 3), 255, np.uint8)),
        (torch.full((3, 2, 5), 7, dtype=torch.uint8), np.full((2, 5, 3), 7, np.uint8)),
        (np.full((2, 5, 3), 9, np.uint8), np.full((2, 5, 3), 9, np.uint8)),
        (torch.zeros(2, 5), np.zeros((2, 5, 3), np.uint8)),
    ],
)
def test_images_become_hwc_uint8(image: Any, expected: np.ndarray) -> None:
    got = _to_hwc_uint8(image)
    assert got.dtype == np.uint8
    np.testing.assert_array_equal(got, expected)


def test_images_of_wrong_shape_are_refused() -> None:
    with pytest.raises(ValueError, match="1, 3 or 4 channels"):
        _to_hwc_uint8(torch.zeros(5, 2, 2))
    with pytest.raises(ValueError, match="2 or 3 dimensions"):
        _to_hwc_uint8(torch.zeros(1, 3, 2, 2))


def _sample() -> Any:
    boxes = [[1.0, 2.0, 10.0, 12.0], [0.0, 0.0, 3.0, 3.0], [1.0, 2.0, 10.0, 12.0]]
    return _sample_of(boxes, [0.9, 0.5, 0.1], boxes[:1], pred_labels=[1, 7, 1], image=np.zeros((20, 30, 3), np.uint8))


def _box_layers(score_floor: float) -> dict[str, Any]:
    return _layers(_sample(), {1: "cat"}, score_floor, OperatingPoint.of(None))["boxes"]


def test_box_layers_hold_plain_python_types() -> None:
    layers = _box_layers(score_floor=0.3)
    predictions = layers["predictions"]["box_data"]
    assert [b["box_caption"] for b in predictions] == ["0.90 TP IoU 1.00", "0.50 FP"]  # 0.1 is under the floor
    names = layers["predictions"]["class_labels"]
    assert [names[b["class_id"]] for b in predictions] == ["cat TP", "7 FP"]
    assert layers["below_threshold"]["box_data"] == []  # no operating point: every score counts
    for box in predictions + layers["ground_truth"]["box_data"]:
        assert type(box["class_id"]) is int
        assert all(type(v) is float for v in box["position"].values())
        assert box["domain"] == "pixel"
    assert all(type(b["scores"]["score"]) is float for b in predictions)


def test_box_layers_are_accepted_by_wandb_image() -> None:
    import wandb

    wandb.Image(_sample().image, boxes=_box_layers(score_floor=0.0))  # wandb validates the boxes here


def test_training_logged_every_iteration_and_validation_at_the_trainers_iteration(tmp_path: Path) -> None:
    setup = _setup()
    logger = _logger(tmp_path)
    logger.attach_output_handler(
        setup.trainer, Events.ITERATION_COMPLETED, tag="train", output_transform=lambda loss: {"loss": loss}
    )
    at_iteration = global_step_from_engine(setup.trainer, Events.ITERATION_COMPLETED)
    attach_wandb_logging(logger, setup.evaluator, num_images=2, global_step_transform=at_iteration)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no step goes backwards, so nothing to warn about
        setup.trainer.run([1.0, 2.0, 3.0], max_epochs=2)
    logger.close()
    rows = _rows_by_step(wr.find_run_dir(tmp_path))
    assert sorted(rows) == list(range(1, 7))  # one row per iteration
    for epoch, result in enumerate(setup.results, start=1):
        row = rows[3 * epoch]  # the last iteration of the epoch
        assert row["train/loss"] == pytest.approx(0.3)
        assert {name: row[f"val/{name}"] for name in STAT_NAMES} == dict(result)
        assert _caption_ids(row["val/detections"]) == SAMPLE[:2]
    assert all("val/AP" not in rows[step] for step in (1, 2, 4, 5))


def test_per_image_table_holds_every_image_worst_first_each_epoch(convenience_run: Run) -> None:
    for epoch, result in enumerate(convenience_run.setup.results, start=1):
        columns, rows, _ = wr.load_artifact_table(convenience_run.run_dir, convenience_run.rows[epoch]["val/per_image"])
        assert columns == [*PER_IMAGE_COLUMNS, "image"]
        counts = [row[: len(PER_IMAGE_COLUMNS)] for row in rows]
        assert [dict(zip(PER_IMAGE_COLUMNS, row)) for row in counts] == result.per_image.worst_first().rows()
        assert sorted(row[0] for row in rows) == result.per_image.image_id.tolist()


def test_per_image_table_shows_the_worst_images_with_their_boxes(convenience_run: Run) -> None:
    setup = convenience_run.setup
    for epoch, result in enumerate(setup.results, start=1):
        columns, rows, files = wr.load_artifact_table(
            convenience_run.run_dir, convenience_run.rows[epoch]["val/per_image"]
        )
        worst = result.per_image.worst_first().image_id.tolist()
        pictures = [row[-1] for row in rows]
        assert [p is not None for p in pictures] == [k < NUM_WORST for k in range(len(rows))]
        for image_id, picture in zip(worst[:NUM_WORST], pictures):
            assert picture["_type"] == "image-file" and files[picture["path"]].is_file()
            assert (picture["width"], picture["height"]) == (W, H)
            assert picture["caption"].startswith(f"image_id {image_id}; verdicts at IoU 0.5")
            pred = setup.predictions[(epoch, image_id)]
            boxes = picture["boxes"]
            assert len(boxes["ground_truth"]) == len(_target(image_id)["labels"])
            shown = sum(s >= SCORE_THRESHOLD for s in pred.scores)
            assert len(boxes["predictions"]) + len(boxes["below_threshold"]) == shown
            drawn = [b["box_caption"].split(" ")[1] for b in (*boxes["predictions"], *boxes["below_threshold"])]
            assert sorted(drawn) == sorted(t for t, s in zip(pred.tags, pred.scores) if s >= SCORE_THRESHOLD)
