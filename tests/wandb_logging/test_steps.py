"""The W&B step of ``attach_wandb_logging``: the trainer's iteration, as Ignite's ``setup_wandb_logging`` uses.

Read back from a real offline run: training logged every iteration and validation every epoch share
one step counter that never goes backwards, so W&B drops nothing and nothing warns.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from ignite.contrib.engines.common import setup_wandb_logging
from ignite.engine import Engine, Events
from ignite.handlers.wandb_logger import WandBLogger

from ignite_det import CocoMetric, attach_wandb_logging
from tests import wandb_records as wr
from tests.coco_reference import random_case, run_cocoeval, stats_dict, to_coco

ITERATIONS_PER_EPOCH = 3
EPOCHS = 2


def test_with_a_trainer_logging_every_iteration_validation_is_logged_at_its_iteration(tmp_path: Path) -> None:
    predictions, targets = random_case(11)
    reference = stats_dict(run_cocoeval(*to_coco(predictions, targets)))
    evaluator = Engine(lambda engine, batch: batch)
    CocoMetric().attach(evaluator, "coco")
    trainer = Engine(lambda engine, batch: float(batch))
    trainer.add_event_handler(Events.EPOCH_COMPLETED, lambda: evaluator.run([(predictions, targets)]))
    logger = WandBLogger(project="ignite-det-tests", mode="offline", dir=str(tmp_path), settings={"silent": True})
    logger.attach_output_handler(trainer, Events.ITERATION_COMPLETED, tag="train", output_transform=lambda x: {"x": x})
    attach_wandb_logging(logger, evaluator, trainer=trainer, num_images=0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.run(list(range(ITERATIONS_PER_EPOCH)), max_epochs=EPOCHS)
    logger.close()
    assert not [w for w in caught if "current step" in str(w.message)]  # no step raised to the run's
    rows = wr.history_rows(wr.find_run_dir(tmp_path))
    steps = [row["_step"] for row in rows]
    assert steps == list(range(1, ITERATIONS_PER_EPOCH * EPOCHS + 1))  # one row per iteration, none dropped
    validated = {row["_step"]: row for row in rows if "val/AP" in row}
    assert sorted(validated) == [ITERATIONS_PER_EPOCH * e for e in range(1, EPOCHS + 1)]
    for row in validated.values():
        assert {name: row[f"val/{name}"] for name in reference} == reference
        assert row["train/x"] == ITERATIONS_PER_EPOCH - 1  # the epoch's last iteration, in the same row


def test_beside_ignites_setup_wandb_logging_both_share_one_run_and_its_steps(tmp_path: Path) -> None:
    predictions, targets = random_case(12)
    reference = stats_dict(run_cocoeval(*to_coco(predictions, targets)))
    evaluator = Engine(lambda engine, batch: batch)
    CocoMetric().attach(evaluator, "coco")
    weight = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([weight], lr=0.5)
    trainer = Engine(lambda engine, batch: None)
    trainer.add_event_handler(Events.EPOCH_COMPLETED, lambda: evaluator.run([(predictions, targets)]))
    logger = setup_wandb_logging(
        trainer, optimizer, log_every_iters=1, project="ignite-det-tests", mode="offline", dir=str(tmp_path)
    )
    attach_wandb_logging(logger, evaluator, trainer=trainer, num_images=0)
    trainer.run(list(range(ITERATIONS_PER_EPOCH)), max_epochs=EPOCHS)
    logger.close()
    rows = wr.history_rows(wr.find_run_dir(tmp_path))
    assert [row["_step"] for row in rows] == list(range(1, ITERATIONS_PER_EPOCH * EPOCHS + 1))
    assert all(row["lr/group_0"] == 0.5 for row in rows)  # Ignite's learning-rate log, every iteration
    validated = [row for row in rows if "val/AP" in row]
    assert [row["_step"] for row in validated] == [ITERATIONS_PER_EPOCH * e for e in range(1, EPOCHS + 1)]
    assert all({name: row[f"val/{name}"] for name in reference} == reference for row in validated)
