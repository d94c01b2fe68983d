"""The per-image table's pictures of the worst images, where the metric's rules are not COCO's box defaults.

Each batch's images are matched on the fly to find the worst; from the second evaluation on, with the metric's
own parameters and protocol. Here, under ``protocol="lvis"`` (lvis-api's cap of 300 per image, federated
categories) and with ``max_detections=[1, 2, 3]`` (a per-category cut COCO's defaults would not make), the
pictured images of the second evaluation are exactly the result's worst rows, read back from an offline run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from ignite.engine import Engine, Events
from ignite.handlers.wandb_logger import WandBLogger

from ignite_det import CocoMetric, attach_wandb_logging
from tests import wandb_records as wr
from tests.coco_reference import random_case
from tests.lvis_reference import lvis_case

NUM_WORST = 3


def _pictured(tmp_path: Path, metric: CocoMetric, samples: list[tuple[dict, dict]]) -> list[tuple[list[int], Any]]:
    """Per evaluation (two): the image ids pictured in the per-image table, in its order, and the result."""
    evaluator = Engine(lambda _engine, batch: batch)
    metric.attach(evaluator, "coco")
    results: list[Any] = []
    evaluator.add_event_handler(Events.COMPLETED, lambda e: results.append(e.state.metrics["coco"]))
    logger = WandBLogger(project="ignite-det-tests", mode="offline", dir=str(tmp_path), settings={"silent": True})
    attach_wandb_logging(
        logger,
        evaluator,
        num_images=1,
        num_worst_images=NUM_WORST,
        batch_transform=lambda batch: [torch.zeros(3, 8, 8, dtype=torch.uint8)] * len(batch[0]),
        output_transform=lambda output: output,
    )
    batches = [
        ([p for p, _ in samples[k : k + 4]], [t for _, t in samples[k : k + 4]]) for k in range(0, len(samples), 4)
    ]
    for _ in range(2):
        evaluator.run(batches)
    logger.close()
    run_dir = wr.find_run_dir(tmp_path)
    out = []
    for row, result in zip([r for r in wr.history_rows(run_dir) if "val/per_image" in r], results):
        _, rows, _ = wr.load_artifact_table(run_dir, row["val/per_image"])
        out.append(([r[0] for r in rows if r[-1] is not None], result))
    return out


def _frequencies(case: Any) -> dict[int, str]:
    return {c["id"]: c["frequency"] for c in case.gt["categories"]}


@pytest.mark.parametrize("seed", [0, 1])
def test_lvis_worst_images_follow_lvis_apis_rules(tmp_path: Path, seed: int) -> None:
    case = lvis_case(seed, num_images=16)
    metric = CocoMetric(protocol="lvis", category_frequencies=_frequencies(case))
    (_, _), (pictured, result) = _pictured(tmp_path, metric, case.samples)
    assert pictured == result.per_image.worst_first().image_id.tolist()[:NUM_WORST]


def test_custom_max_detections_worst_images(tmp_path: Path) -> None:
    predictions, targets = random_case(5)
    metric = CocoMetric(max_detections=[1, 2, 3])
    (_, _), (pictured, result) = _pictured(tmp_path, metric, list(zip(predictions, targets)))
    assert pictured == result.per_image.worst_first().image_id.tolist()[:NUM_WORST]
