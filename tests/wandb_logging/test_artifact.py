"""The evaluation artifact (predictions file and JSON report, ``best`` alias), read back from real offline runs.

The cocoapi's 100 real images go through a real evaluator three times, each time with a different share
of the published fake results kept, so the best AP is not the last. The run's log holds one ``artifact``
record per evaluation; its staged files are read back and compared with pycocotools: the predictions file
evaluated by COCOeval gives the metric's AP of that evaluation, and the report is the metric's result.
"""

from __future__ import annotations

import contextlib
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import wandb
from ignite.engine import Engine, Events
from ignite.handlers.wandb_logger import WandBLogger
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from ignite_det import CocoMetric, EvaluationArtifactHandler, WandBReport, attach_wandb_logging
from ignite_det.per_image import PER_IMAGE_COLUMNS
from ignite_det.wandb_logging.artifact import full_report
from tests import wandb_records as wr
from tests.coco_reference import GT_FILE, load_real_samples

KEPT = {1: 0.4, 2: 1.0, 3: 0.7}  # the share of images whose predictions are kept, per evaluation: 2 is best


def _samples(evaluation: int) -> list[tuple[dict, dict]]:
    """The real samples with the predictions of some images emptied (the same images for a given share)."""
    samples = load_real_samples()
    dropped = np.random.default_rng(0).random(len(samples)) >= KEPT[evaluation]
    for (pred, _), drop in zip(samples, dropped):
        if drop:
            for key in ("boxes", "scores", "labels"):
                pred[key] = pred[key][:0]
    return samples


def _artifacts(run_dir: Path) -> list[Any]:
    return wr.artifacts(run_dir, "evaluation")


def _files(artifact: Any) -> dict[str, Path]:
    return wr.artifact_files(artifact)


def _cocoeval_ap(predictions: Path) -> float:
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO(str(GT_FILE))
        coco_eval = COCOeval(coco_gt, coco_gt.loadRes(str(predictions)), "bbox")
        coco_eval.evaluate()
        coco_eval.accumulate()
        coco_eval.summarize()
    return float(coco_eval.stats[0])


@dataclass
class Run:
    run_dir: Path
    results: list[Any]
    run_id: str


@pytest.fixture(scope="module")
def engine_run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    tmp_path = tmp_path_factory.mktemp("wandb_artifact")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("WANDB_DATA_DIR", str(tmp_path / "data"))  # W&B's staging copies, not in the home folder
        evaluator = Engine(lambda _engine, batch: batch)
        metric = CocoMetric(box_format="xywh")
        metric.attach(evaluator, "coco")
        results: list[Any] = []
        evaluator.add_event_handler(Events.COMPLETED, lambda e: results.append(e.state.metrics["coco"]))
        logger = WandBLogger(project="ignite-det-tests", mode="offline", dir=str(tmp_path), settings={"silent": True})
        attach_wandb_logging(logger, evaluator, num_images=0, artifact_metric=metric)
        run_id = logger.run.id
        for evaluation in KEPT:
            samples = _samples(evaluation)
            evaluator.run([list(zip(*samples[k : k + 10])) for k in range(0, len(samples), 10)])
        logger.close()
    return Run(wr.find_run_dir(tmp_path), results, run_id)


def test_one_version_per_evaluation_with_both_files(engine_run: Run) -> None:
    artifacts = _artifacts(engine_run.run_dir)
    assert len(artifacts) == len(KEPT)
    for step, (artifact, result) in enumerate(zip(artifacts, engine_run.results), start=1):
        assert (artifact.name, artifact.type) == (f"val-evaluation-{engine_run.run_id}", "evaluation")
        files = _files(artifact)
        assert set(files) == {"predictions.json", "report.json"}
        metadata = json.loads(artifact.metadata)
        assert metadata["step"] == step
        assert metadata["AP"] == result["AP"]
        assert "latest" in artifact.aliases and f"step-{step}" in artifact.aliases


def test_predictions_file_evaluates_to_the_metrics_ap(engine_run: Run) -> None:
    aps = []
    for evaluation, artifact, result in zip(KEPT, _artifacts(engine_run.run_dir), engine_run.results):
        predictions = _files(artifact)["predictions.json"]
        assert len(json.loads(predictions.read_text())) == sum(len(p["scores"]) for p, _ in _samples(evaluation))
        aps.append(_cocoeval_ap(predictions))
        assert aps[-1] == result["AP"]
    assert len(set(aps)) == len(KEPT)  # three different evaluations, not one file thrice


def test_report_is_the_results_json_report(engine_run: Run) -> None:
    for artifact, result in zip(_artifacts(engine_run.run_dir), engine_run.results):
        report = json.loads(_files(artifact)["report.json"].read_text())
        assert report == json.loads(json.dumps(full_report(result)))
        assert report["AP"] == result["AP"]
        assert [list(row) for row in report["per_image"]] == [list(PER_IMAGE_COLUMNS)] * len(report["per_image"])


def test_best_alias_follows_the_best_ap(engine_run: Run) -> None:
    aps = [result["AP"] for result in engine_run.results]
    best = int(np.argmax(aps))
    assert best not in (0, len(aps) - 1), "the data should make a middle evaluation the best"
    with_best = [k for k, artifact in enumerate(_artifacts(engine_run.run_dir)) if "best" in artifact.aliases]
    assert with_best == [0, best]  # W&B moves the alias: the last version given it holds it
    assert _cocoeval_ap(_files(_artifacts(engine_run.run_dir)[with_best[-1]])["predictions.json"]) == max(aps)


def test_plain_loop_report_only_best_by_ap50(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_DATA_DIR", str(tmp_path / "data"))
    metric = CocoMetric(box_format="xywh")
    report = WandBReport(num_images=0, artifact_metric=metric, best_metric="AP50")
    report.artifact.with_predictions = False  # type: ignore[union-attr]
    run = wandb.init(project="ignite-det-tests", mode="offline", dir=str(tmp_path), settings={"silent": True})
    results = []
    for step, evaluation in enumerate((2, 1), start=1):
        metric.reset()
        samples = _samples(evaluation)
        metric.update(([p for p, _ in samples], [t for _, t in samples]))
        results.append(metric.compute())
        report.log(results[-1], step=step)
    run.finish()
    artifacts = _artifacts(wr.find_run_dir(tmp_path))
    assert [set(_files(a)) for a in artifacts] == [{"report.json"}] * 2
    assert results[0]["AP50"] > results[1]["AP50"]
    assert [set(a.aliases) for a in artifacts] == [{"best", "latest", "step-1"}, {"latest", "step-2"}]


def test_unknown_best_metric_is_named(tmp_path: Path) -> None:
    handler = EvaluationArtifactHandler(CocoMetric(box_format="xywh"), best_metric="mAP")
    samples = load_real_samples()[:3]
    metric = CocoMetric(box_format="xywh")
    metric.update(([p for p, _ in samples], [t for _, t in samples]))
    with pytest.raises(ValueError, match="best_metric 'mAP' is not a number of the result"):
        handler._aliases(metric.compute(), 1)


def test_metric_must_be_a_coco_metric() -> None:
    with pytest.raises(TypeError, match="the CocoMetric attached to the evaluator"):
        EvaluationArtifactHandler("coco")  # type: ignore[arg-type]
