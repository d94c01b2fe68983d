"""A plain loop that forgets ``reset()``: the metric says so, and Ignite's lifecycle and resuming stay silent.

The numbers are compared with pycocotools on the same data (``tests/coco_reference.py``), so a test
fails both when a warning is missing and when a warning changed a number.
"""

from __future__ import annotations

import warnings
from typing import Any

import pytest
import torch
from ignite.engine import Engine

from ignite_det import CocoMetric

TRUTH = torch.tensor([[2.0, 2.0, 12.0, 14.0]])


def _batch(image_ids: list[int], shift: float) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """One box per image; the prediction moved by ``shift`` pixels (0: a hit, 8: a miss at IoU 0.5)."""
    y_pred = [{"boxes": TRUTH + shift, "scores": torch.tensor([0.9]), "labels": torch.tensor([1])} for _ in image_ids]
    y = [{"boxes": TRUTH, "labels": torch.tensor([1]), "image_id": i} for i in image_ids]
    return y_pred, y


def test_update_after_compute_without_reset_warns_once() -> None:
    metric = CocoMetric()
    metric.update(_batch([1, 2], shift=0.0))
    assert metric.compute()["AP"] == pytest.approx(1.0)
    with pytest.warns(UserWarning, match=r"update\(\) after compute\(\) without reset\(\)") as caught:
        metric.update(_batch([1, 2], shift=8.0))
        metric.update(_batch([3], shift=8.0))  # the same evaluation: no second warning
    assert len([w for w in caught if "without reset" in str(w.message)]) == 1
    assert caught[0].filename == __file__  # points at the user's line


def test_repeated_ids_with_other_predictions_are_counted_and_named() -> None:
    metric = CocoMetric()
    metric.update(_batch([1, 2, 3], shift=0.0))
    with pytest.warns(UserWarning, match=r"2 of 2 repeated image_ids came with other predictions .*image_id 1, 2"):
        metric.update(_batch([1, 2], shift=8.0))  # same ids, another model: no compute() in between
        result = metric.compute()
    assert result["AP"] == pytest.approx(1.0)  # the number is unchanged: only the first occurrences count


def test_forgetting_reset_between_two_models_is_said_and_reset_gives_the_second_number() -> None:
    metric = CocoMetric()
    metric.update(_batch([1, 2], shift=0.0))
    trained = metric.compute()["AP"]
    with pytest.warns(UserWarning) as caught:
        metric.update(_batch([1, 2], shift=8.0))
        frozen = metric.compute()["AP"]
    messages = " ".join(str(w.message) for w in caught)
    assert "without reset()" in messages and "2 of 2 repeated image_ids" in messages
    assert frozen == trained  # the silent mistake the warnings are about
    metric.reset()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        metric.update(_batch([1, 2], shift=8.0))
        assert metric.compute()["AP"] == 0.0


def test_a_padded_repeat_with_the_same_predictions_is_silent() -> None:
    metric = CocoMetric()
    y_pred, y = _batch([1, 2, 1], shift=0.0)
    y_pred[2] = {**y_pred[2], "boxes": y_pred[2]["boxes"] + 1e-5}  # another device's last bits
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        metric.update((y_pred, y))
        assert metric.compute()["AP"] == pytest.approx(1.0)


def test_engine_runs_and_compute_then_reset_are_silent() -> None:
    metric = CocoMetric()
    evaluator = Engine(lambda engine, batch: batch)
    metric.attach(evaluator, "coco")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        first = evaluator.run([_batch([1, 2], shift=0.0)]).metrics["AP"]
        second = evaluator.run([_batch([1, 2], shift=8.0)]).metrics["AP"]
    assert (first, second) == (pytest.approx(1.0), 0.0)


def test_resuming_from_a_state_dict_is_silent_and_complete() -> None:
    evaluator = Engine(lambda engine, batch: batch)
    metric = CocoMetric()
    metric.attach(evaluator, "coco")
    evaluator.run([_batch([1], shift=0.0)])  # a finished evaluation, computed
    saved = CocoMetric()
    saved.update(_batch([1, 2], shift=0.0))
    metric.load_state_dict(saved.state_dict())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        state = evaluator.run([_batch([3, 4], shift=8.0)])
    assert state.metrics["coco"].num_images == 4
    assert state.metrics["AP"] == pytest.approx(_reference_ap([0.0, 0.0, 8.0, 8.0]))


def _reference_ap(shifts: list[float]) -> float:
    """pycocotools' AP for one box per image, image i + 1 predicted ``shifts[i]`` pixels off."""
    import contextlib
    import io

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    box = [2.0, 2.0, 10.0, 12.0]
    gt = COCO()
    gt.dataset = {
        "images": [{"id": i + 1} for i in range(len(shifts))],
        "categories": [{"id": 1}],
        "annotations": [
            {"id": i + 1, "image_id": i + 1, "category_id": 1, "bbox": box, "area": 120.0, "iscrowd": 0}
            for i in range(len(shifts))
        ],
    }
    results = [
        {"image_id": i + 1, "category_id": 1, "bbox": [box[0] + s, box[1] + s, 10.0, 12.0], "score": 0.9}
        for i, s in enumerate(shifts)
    ]
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
        coco_eval = COCOeval(gt, gt.loadRes(results), "bbox")
        coco_eval.evaluate()
        coco_eval.accumulate()
        coco_eval.summarize()
    return float(coco_eval.stats[0])
