"""The error analysis in W&B, end to end: a real ``CocoMetric(error_analysis=True)`` on the cocoapi's 100 real
images through a real evaluator and ``attach_wandb_logging``, and what the offline run stored compared with the
metric's own ``result.errors`` (itself tested against pycocotools' ``evalImgs`` in ``tests/error_analysis``):
bar charts, per-class table, scalars, the per-image table's bin columns, and the sample images' captions, each
false positive's against its row of ``result.errors.false_positives`` and each missed ground truth against
``result.errors.missed``.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
from ignite.engine import Engine, Events
from ignite.handlers.wandb_logger import WandBLogger

from ignite_det import CocoMetric, attach_wandb_logging
from ignite_det.error_analysis.analysis import MAIN_ERRORS, SPECIAL_ERRORS
from ignite_det.per_image import PER_IMAGE_COLUMNS
from ignite_det.wandb_logging.errors import ERROR_CLASS_COLUMNS
from tests import wandb_records as wr
from tests.coco_reference import GT_FILE, load_real_samples

NUM_IMAGES = 16
NUM_WORST = 3


@dataclass
class Run:
    run_dir: Path
    result: Any
    row: dict[str, Any]


def _pictures() -> dict[int, torch.Tensor]:
    """A blank picture of each image's size (the boxes are what is checked)."""
    images = json.loads(GT_FILE.read_text())["images"]
    return {image["id"]: torch.zeros(3, image["height"], image["width"], dtype=torch.uint8) for image in images}


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    tmp_path = tmp_path_factory.mktemp("wandb_errors_e2e")
    samples, pictures = load_real_samples(), _pictures()
    batches = [
        ([pictures[t["image_id"]] for _, t in chunk], [p for p, _ in chunk], [t for _, t in chunk])
        for chunk in (samples[k : k + 10] for k in range(0, len(samples), 10))
    ]
    names = {c["id"]: c["name"] for c in json.loads(GT_FILE.read_text())["categories"]}
    evaluator = Engine(lambda _engine, batch: batch)
    CocoMetric(
        box_format="xywh", class_names=names, error_analysis=True, output_transform=lambda o: (o[1], o[2])
    ).attach(evaluator, "coco")
    results: list[Any] = []
    evaluator.add_event_handler(Events.COMPLETED, lambda e: results.append(e.state.metrics["coco"]))
    logger = WandBLogger(project="ignite-det-tests", mode="offline", dir=str(tmp_path), settings={"silent": True})
    attach_wandb_logging(
        logger,
        evaluator,
        num_images=NUM_IMAGES,
        num_worst_images=NUM_WORST,
        score_threshold=0.0,  # every detection drawn, so every false positive's caption is there
        box_format="xywh",
        batch_transform=lambda batch: batch[0],
        output_transform=lambda output: (output[1], output[2]),
    )
    evaluator.run(batches)
    logger.close()
    run_dir = wr.find_run_dir(tmp_path)
    (row,) = [r for r in wr.history_rows(run_dir) if "val/AP" in r]
    return Run(run_dir, results[0], row)


def test_scalars_are_the_results_errors(run: Run) -> None:
    errors = run.result.errors
    assert errors is not None and errors.mode == "coco"
    assert run.row["val/errors/AP"] == errors.ap == run.result["AP50"]
    assert {name: run.row[f"val/errors/dAP/{name}"] for name in MAIN_ERRORS} == errors.main
    assert {name: run.row[f"val/errors/dAP/{name}"] for name in SPECIAL_ERRORS} == errors.special
    assert {name: run.row[f"val/errors/count/{name}"] for name in MAIN_ERRORS} == errors.counts


@pytest.mark.parametrize(("which", "names"), [("main", MAIN_ERRORS), ("special", SPECIAL_ERRORS)])
def test_bar_charts_are_the_results_errors(run: Run, which: str, names: tuple[str, ...]) -> None:
    chart = wr.charts(run.run_dir)[f"val/errors/{which}"]
    assert chart["panel_config"]["panelDefId"] == "wandb/bar/v0"
    _, rows = wr.load_table(run.run_dir, run.row[wr.chart_table_key(chart)])
    assert rows == [[name, getattr(run.result.errors, which)[name]] for name in names]


def _same(got: Any, expected: float) -> bool:
    """W&B's cell equals the result's number; an undefined one (-1 AP, NaN dAP) is an empty cell."""
    return got == expected or (got is None and (expected < 0 or math.isnan(expected)))


def test_per_class_table_is_the_results_per_class_errors(run: Run) -> None:
    columns, rows = wr.load_table(run.run_dir, run.row["val/errors/per_class"])
    assert columns == list(ERROR_CLASS_COLUMNS)
    assert len(rows) == len(run.result.errors.per_class) == len(run.result.per_class)
    for got, c in zip(rows, run.result.errors.per_class):
        record = dict(zip(columns, got))
        assert (record["category_id"], record["class"]) == (c.category_id, c.name)
        assert _same(record["AP"], c.ap)
        assert all(_same(record[f"dAP {name}"], c.main[name]) for name in MAIN_ERRORS), c.name
        assert all(_same(record[f"dAP {name}"], c.special[name]) for name in SPECIAL_ERRORS), c.name
        assert {name: record[f"count {name}"] for name in MAIN_ERRORS} == c.counts


def test_per_image_table_holds_the_bin_counts(run: Run) -> None:
    columns, rows, _ = wr.load_artifact_table(run.run_dir, run.row["val/per_image"])
    assert columns == [*PER_IMAGE_COLUMNS, *MAIN_ERRORS, "image"]
    assert [dict(zip(columns[:-1], row[:-1])) for row in rows] == run.result.per_image.worst_first().rows()
    assert [row[-1] is not None for row in rows] == [k < NUM_WORST for k in range(len(rows))]


def _expected_captions(result: Any, image_id: int) -> tuple[Counter, list[int]]:
    """The false-positive words of an image from ``result.errors.false_positives`` and its missed ground truths."""
    fp, missed = result.errors.false_positives, result.errors.missed
    words: Counter = Counter()
    for row in fp.rows():
        if row["image_id"] == image_id:
            name = row["error"]
            gt_name = result.class_names.get(row["gt_category_id"])
            words[f"FP cls: {gt_name}" if name == "Cls" else f"FP {name.lower()}"] += 1
    gt_rows = sorted(int(g) for i, g in zip(missed.image_id.tolist(), missed.gt_index.tolist()) if i == image_id)
    return words, gt_rows


def test_sample_captions_name_each_false_positives_bin_and_each_missed_object(run: Run) -> None:
    images = wr.load_images(run.run_dir, run.row["val/detections"])
    assert len(images) == NUM_IMAGES
    seen: Counter = Counter()
    for image in images:
        image_id = int(image["caption"].split(";")[0].removeprefix("image_id "))
        boxes = image["boxes"]
        captions = [b["box_caption"] for layer in ("predictions", "below_threshold") for b in boxes[layer]["box_data"]]
        words = Counter(c.split(" ", 1)[1] for c in captions if c.split(" ")[1] == "FP")
        expected_words, expected_missed = _expected_captions(run.result, image_id)
        assert words == expected_words, image_id
        missed = [j for j, b in enumerate(boxes["ground_truth"]["box_data"]) if b["box_caption"] == "missed"]
        assert missed == expected_missed, image_id
        seen.update(w.split(":")[0] for w in words)
        seen["missed"] += len(missed)
    assert {"FP cls", "missed"} <= set(seen)  # the sample holds both kinds, so the comparison means something
