"""An evaluation interrupted and resumed from a checkpoint gives the numbers of an uninterrupted one.

The metric's state holds every accumulated box as tensors, so ``torch.load``'s default
``weights_only=True`` reads it; under distribution each rank's data is kept apart.
"""

from __future__ import annotations

import re
from pathlib import Path

import ignite.distributed as idist
import numpy as np
import pytest
import torch
from ignite.engine import Engine, Events
from ignite.handlers import Checkpoint, DiskSaver

from ignite_det import CocoMetric, backends
from tests.coco_reference import random_case, run_cocoeval, stats_dict, to_coco
from tests.test_distributed import free_port

BACKENDS = list(backends.BACKENDS)


class Crash(Exception):
    """The job dies in the middle of the evaluation."""


def _batches(with_image_ids: bool, size: int = 3) -> list[tuple[list, list]]:
    predictions, targets = random_case(8, num_images=14, with_image_ids=with_image_ids)
    return [(predictions[i : i + size], targets[i : i + size]) for i in range(0, len(targets), size)]


def _evaluator(metric: CocoMetric) -> Engine:
    evaluator = Engine(lambda engine, batch: batch)
    metric.attach(evaluator, "coco")
    return evaluator


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("with_image_ids", [True, False])
def test_an_interrupted_evaluation_resumes_from_its_checkpoint(tmp_path, backend, with_image_ids):
    batches = _batches(with_image_ids)
    crash_at = 3
    evaluator = _evaluator(metric := CocoMetric(backend=backend))
    saver = Checkpoint({"metric": metric}, DiskSaver(tmp_path, require_empty=False), n_saved=1)
    evaluator.add_event_handler(Events.ITERATION_COMPLETED, saver)

    @evaluator.on(Events.ITERATION_COMPLETED(once=crash_at))
    def crash() -> None:
        raise Crash

    with pytest.raises(Crash):
        evaluator.run(batches)

    resumed = CocoMetric(backend=backend)
    (path,) = tmp_path.glob("*.pt")
    Checkpoint.load_objects({"metric": resumed}, torch.load(path, weights_only=True))
    result = _evaluator(resumed).run(batches[crash_at:]).metrics["coco"]

    uninterrupted = _evaluator(CocoMetric(backend=backend)).run(batches).metrics["coco"]
    assert dict(result) == dict(uninterrupted)
    np.testing.assert_array_equal(result.precision, uninterrupted.precision)
    np.testing.assert_array_equal(result.confusion_matrix, uninterrupted.confusion_matrix)
    assert result.best_f1 == uninterrupted.best_f1
    predictions, targets = (sum((b[i] for b in batches), []) for i in (0, 1))
    assert dict(result) == stats_dict(run_cocoeval(*to_coco(predictions, targets)))


def test_a_loaded_state_survives_one_start_only():
    """The next evaluation run resumes from a loaded state; the one after starts afresh."""
    batches = _batches(True)
    metric = CocoMetric()
    metric.update(batches[0])
    saved = metric.state_dict()
    resumed = CocoMetric()
    resumed.load_state_dict(saved)
    evaluator = _evaluator(resumed)
    first = evaluator.run(batches[1:]).metrics["coco"]
    second = evaluator.run(batches[1:]).metrics["coco"]
    assert first.num_images == 14 and second.num_images == 11


def test_a_loaded_state_once_computed_does_not_leak_into_the_next_run():
    """Load a finished evaluation, compute it, then evaluate another model: only the new one counts."""
    batches = _batches(True)
    finished = CocoMetric()
    for batch in batches:
        finished.update(batch)
    metric = CocoMetric()
    metric.load_state_dict(finished.state_dict())
    assert metric.compute()["AP"] == finished.compute()["AP"]
    nothing = [
        ([{**p, "boxes": p["boxes"][:0], "scores": p["scores"][:0], "labels": p["labels"][:0]} for p in ps], ts)
        for ps, ts in batches
    ]
    assert _evaluator(metric).run(nothing).metrics["AP"] == 0.0  # not the loaded model's AP


def test_a_wrong_state_is_refused():
    with pytest.raises(ValueError, match=re.escape("not a CocoMetric.state_dict(): expected the single key")):
        CocoMetric().load_state_dict({"model": torch.zeros(1)})
    with pytest.raises(TypeError, match="state_dict must be a dict from CocoMetric.state_dict"):
        CocoMetric().load_state_dict([1, 2])


# --- distributed: each rank's data is saved and given back to that rank ---------------------------------

SHARDS = [list(range(0, 14, 2)), list(range(1, 14, 2)) + [0]]  # a DistributedSampler's, padded


def _shard_batches(rank: int, part: int) -> tuple[list, list]:
    """Half ``part`` (0 or 1) of rank ``rank``'s images."""
    predictions, targets = random_case(8, num_images=14)
    mine = SHARDS[rank]
    half = mine[: len(mine) // 2] if part == 0 else mine[len(mine) // 2 :]
    return [predictions[i] for i in half], [targets[i] for i in half]


def _first_half(local_rank: int, path: str) -> None:
    metric = CocoMetric()
    metric.update(_shard_batches(idist.get_rank(), 0))
    state = metric.state_dict()  # a collective: every rank calls it
    if idist.get_rank() == 0:
        torch.save(state, path)


def _second_half(local_rank: int, path: str, out_dir: str) -> None:
    metric = CocoMetric()
    metric.load_state_dict(torch.load(path, weights_only=True))
    metric.update(_shard_batches(idist.get_rank(), 1))
    result = metric.compute()
    torch.save(torch.from_numpy(result.precision.copy()), Path(out_dir, f"rank{idist.get_rank()}.pt"))


def test_each_rank_resumes_its_own_data(tmp_path, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    path = str(tmp_path / "metric.pt")
    idist.spawn("gloo", _first_half, args=(path,), nproc_per_node=2, master_port=free_port())
    idist.spawn("gloo", _second_half, args=(path, str(tmp_path)), nproc_per_node=2, master_port=free_port())

    predictions, targets = random_case(8, num_images=14)
    reference = run_cocoeval(*to_coco(predictions, targets))
    for rank in range(2):
        np.testing.assert_array_equal(torch.load(tmp_path / f"rank{rank}.pt").numpy(), reference.eval["precision"])

    # Loaded by a single process, every rank's saved data goes to it.
    single = CocoMetric()
    single.load_state_dict(torch.load(path, weights_only=True))
    for rank in range(2):
        single.update(_shard_batches(rank, 1))
    np.testing.assert_array_equal(single.compute().precision, reference.eval["precision"])
