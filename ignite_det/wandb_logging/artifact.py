"""Each evaluation's predictions file and JSON report as a versioned W&B artifact, ``best`` on the best one.

An evaluation logs one artifact version holding

- ``predictions.json``: the accumulated predictions as a COCO results file
  (:meth:`~ignite_det.CocoMetric.write_predictions`), for a test-dev submission or another evaluator;
- ``report.json``: :meth:`~ignite_det.CocoResult.to_dict` (the numbers, per class, ``errors`` when the
  metric analyses them) with ``per_image``, every image's row (as ``ignite-det evaluate --per-image --output``
  writes it).

Its aliases: ``latest`` (W&B's), ``step-<step>``, and ``best`` while it is the best so far by ``best_metric``
(``AP`` by default; W&B keeps an alias on one version of an artifact, so ``best`` moves to it). Its metadata:
the step, the COCO numbers and the number of predictions.

Size: a predictions file takes about 100 bytes per box (a COCO-val-sized evaluation of 500,000 boxes is
about 50 MB, masks more), and W&B stages a copy of every version on the local disk
(``WANDB_DATA_DIR``, ``~/.local/share/wandb/artifacts/staging``) until it is uploaded. So the artifact is
opt-in (``attach_wandb_logging(..., artifact_metric=metric)``), and ``with_predictions=False`` logs the
report alone.
"""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import ignite.distributed as idist
from ignite.engine import Engine
from ignite.handlers.wandb_logger import WandBLogger

from ignite_det.wandb_logging.base import StepTransform, _default_step, _WandBHandler

if TYPE_CHECKING:
    from ignite_det.metric import CocoMetric
    from ignite_det.result import CocoResult

__all__ = ["ARTIFACT_TYPE", "EvaluationArtifactHandler", "full_report"]

ARTIFACT_TYPE = "evaluation"
PREDICTIONS_FILE = "predictions.json"
REPORT_FILE = "report.json"
BEST_ALIAS = "best"


def full_report(result: CocoResult) -> dict[str, Any]:
    """The JSON report of an evaluation: :meth:`~ignite_det.CocoResult.to_dict` with ``per_image``, every
    image's row (keys :data:`~ignite_det.per_image.PER_IMAGE_COLUMNS`), as ``ignite-det evaluate --per-image
    --output`` writes it."""
    return {**result.to_dict(), "per_image": result.per_image.rows()}


class EvaluationArtifactHandler(_WandBHandler):
    """Log each evaluation's predictions file and JSON report as a version of one W&B artifact.

    Attach it to the evaluator's ``Events.COMPLETED``, after the metric, on **every** process under
    distribution (with ``None`` where there is no logger): writing the predictions gathers them from
    every process. Rank 0 writes the file, so the run must be on rank 0. See the module docstring for the
    artifact's files, aliases and size.

    Args:
        metric: the :class:`~ignite_det.CocoMetric` attached to the evaluator (its predictions are written).
        metric_name: the name it was attached under. Default ``"coco"``.
        tag: the artifact's name is ``<tag>-evaluation-<run id>`` unless ``name`` is given. Default ``"val"``.
        name: the artifact's name (letters, digits, ``-``, ``_``, ``.``). Default: see ``tag``.
        best_metric: the number of the result that makes an evaluation the best (higher is better; -1,
            undefined, never is). Default ``"AP"``.
        with_predictions: also put the predictions file in the artifact. Default ``True``.
        global_step_transform: as in :class:`~ignite_det.CocoReportHandler`; names the ``step-<step>`` alias.

    Example:
        .. code-block:: python

            wandb_logger.attach(evaluator, EvaluationArtifactHandler(metric), Events.COMPLETED)
            # later, anywhere: wandb.Api().artifact("my-project/val-evaluation-<run id>:best")
    """

    def __init__(
        self,
        metric: CocoMetric,
        metric_name: str = "coco",
        *,
        tag: str = "val",
        name: str | None = None,
        best_metric: str = "AP",
        with_predictions: bool = True,
        global_step_transform: StepTransform | None = None,
    ) -> None:
        if not hasattr(metric, "write_predictions"):
            raise TypeError(f"metric must be the CocoMetric attached to the evaluator, got {type(metric).__name__}")
        self.metric = metric
        self.metric_name = metric_name
        self.tag = tag
        self.name = name
        self.best_metric = best_metric
        self.with_predictions = with_predictions
        self.global_step_transform = global_step_transform or _default_step
        self.best: float | None = None

    def __call__(self, engine: Engine, logger: WandBLogger | None, event_name: Any) -> None:
        run = self._active_run(logger)
        if run is None and idist.backend() is None:
            return
        step = self._given_step(engine, event_name)  # before the predictions are gathered (see _given_step)
        result = self._result(engine, self.metric_name)
        if result is None:
            return
        self.log(run, result, self._kept_step(step, run) if run is not None else 0)

    def log(self, run: Any, result: CocoResult, step: int) -> Any:
        """Write the files and log them to ``run`` (``None`` on a process without a run: it only helps
        gather the predictions); the logged ``wandb.Artifact``, or ``None``."""
        with tempfile.TemporaryDirectory(prefix="ignite-det-artifact-") as folder:
            predictions = Path(folder) / PREDICTIONS_FILE
            if self.with_predictions:
                self.metric.write_predictions(predictions)  # every process: the predictions are gathered
            if run is None:
                return None
            import wandb  # only here: ignite-det does not need wandb until something is logged

            report = Path(folder) / REPORT_FILE
            report.write_text(json.dumps(full_report(result), indent=2) + "\n")
            artifact = wandb.Artifact(self.name or f"{self.tag}-evaluation-{run.id}", type=ARTIFACT_TYPE)
            artifact.metadata.update(self._metadata(result, step))
            artifact.add_file(str(report), name=REPORT_FILE)  # W&B stages a copy: the folder may go
            if self.with_predictions:
                artifact.add_file(str(predictions), name=PREDICTIONS_FILE)
            return run.log_artifact(artifact, aliases=self._aliases(result, step))

    def _aliases(self, result: CocoResult, step: int) -> list[str]:
        aliases = ["latest", f"step-{step}"]
        value = self._value(result)
        if value is not None and (self.best is None or value > self.best):
            self.best = value
            aliases.append(BEST_ALIAS)
        return aliases

    def _value(self, result: CocoResult) -> float | None:
        """``best_metric``'s value, ``None`` when undefined (-1 or NaN)."""
        if self.best_metric not in result:
            raise ValueError(f"best_metric {self.best_metric!r} is not a number of the result: {list(result)}")
        value = float(result[self.best_metric])
        return value if value >= 0 and math.isfinite(value) else None

    def _metadata(self, result: CocoResult, step: int) -> dict[str, Any]:
        numbers = {name: float(value) for name, value in result.items()}
        return {"step": step, "best_metric": self.best_metric, "num_images": result.num_images, **numbers}
