"""Every W&B handler attached in one call, and the public names of the W&B presentation.

* :class:`~ignite_det.wandb_logging.report.CocoReportHandler` logs the report of each evaluation: scalars, a
  per-class table, precision-recall and F1 curves, a confusion matrix, and the best AP in the summary.
* :class:`~ignite_det.wandb_logging.images.DetectionImagesHandler` logs a fixed sample of validation images with
  predicted and ground truth boxes, captured from the evaluator's own iterations, and pictures the worst images
  for the report's per-image table.
* :class:`~ignite_det.wandb_logging.artifact.EvaluationArtifactHandler` (opt-in) logs each evaluation's predictions
  file and JSON report as a version of a W&B artifact, ``best`` on the best one.

They follow Ignite's logger contract (``ignite/handlers/base_logger.py``): each is called as
``handler(engine, logger, event_name)``, takes its step from ``global_step_transform`` and makes at most
one ``logger.log(..., step=...)`` call per event. W&B objects are built through the logger
(``logger.Table``..., which ``WandBLogger`` forwards to the wandb module), so importing them does not
import ``wandb``. With ``WandBLogger(mode="disabled")``, or after ``logger.close()``, they log nothing.

Example:
    .. code-block:: python

        from ignite.engine import Events
        from ignite.handlers.wandb_logger import WandBLogger
        from ignite_det import CocoMetric, attach_wandb_logging

        CocoMetric(class_names={1: "cat", 2: "dog"}).attach(evaluator, "coco")
        wandb_logger = WandBLogger(project="my-detector", mode="offline")
        attach_wandb_logging(wandb_logger, evaluator, trainer=trainer)
        trainer.add_event_handler(Events.EPOCH_COMPLETED, lambda: evaluator.run(val_loader))
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ignite.engine import Engine, Events, EventsList
from ignite.handlers.base_logger import BaseHandler
from ignite.handlers.utils import global_step_from_engine
from ignite.handlers.wandb_logger import WandBLogger

from ignite_det.params import BoxFormat
from ignite_det.wandb_logging.artifact import EvaluationArtifactHandler
from ignite_det.wandb_logging.base import StepTransform, _EvaluationCounter
from ignite_det.wandb_logging.images import DEFAULT_SCORE_FLOOR, DetectionImagesHandler, _batch_images, _output_pair
from ignite_det.wandb_logging.report import DEFAULT_PLOT_CLASSES, CocoReportHandler

if TYPE_CHECKING:
    from ignite_det.metric import CocoMetric

__all__ = ["CocoReportHandler", "DetectionImagesHandler", "EvaluationArtifactHandler", "attach_wandb_logging"]


def attach_wandb_logging(
    logger: WandBLogger | None,
    evaluator: Engine,
    *,
    trainer: Engine | None = None,
    metric_name: str = "coco",
    tag: str = "val",
    num_images: int = 16,
    num_worst_images: int = 16,
    score_threshold: float = DEFAULT_SCORE_FLOOR,
    box_format: BoxFormat = "xyxy",
    class_names: Mapping[int, str] | None = None,
    batch_transform: Callable[[Any], Sequence[Any]] = _batch_images,
    output_transform: Callable[[Any], tuple[Sequence[Any], Sequence[Any]]] = _output_pair,
    global_step_transform: StepTransform | None = None,
    max_plot_classes: int = DEFAULT_PLOT_CLASSES,
    artifact_metric: CocoMetric | None = None,
    best_metric: str = "AP",
) -> tuple[CocoReportHandler, DetectionImagesHandler | None]:
    """Log every evaluation of ``evaluator`` to W&B: the 12 COCO numbers, the report and sample images.

    The 12 numbers are logged by the report handler itself, once each: do not also attach an
    ``OutputHandler`` with ``metric_names="all"`` (Ignite spreads a Mapping result into
    ``engine.state.metrics`` and keeps it under its name, so every number would be logged twice).

    Under distribution, call it on **every** process, with ``None`` where there is no ``WandBLogger``
    (typically every rank but 0): each process captures its share of the sample images, and the
    processes exchange them at the end of each evaluation.

    Args:
        logger: the ``WandBLogger``, or ``None`` on a process without one.
        evaluator: the engine the :class:`~ignite_det.CocoMetric` is attached to (attach the metric first).
        trainer: when given, everything is logged at the trainer's iteration, as Ignite's own
            ``setup_wandb_logging`` logs evaluators: that step never goes backwards when the trainer also
            logs every iteration, and validation shares the row of the epoch's last iteration. Otherwise
            at 1, 2, ... for each evaluation.
        metric_name: name the metric was attached under. Default ``"coco"``.
        tag: key prefix. Default ``"val"``.
        num_images: images to show, 0 (none) to 50. Default 16.
        num_worst_images: the worst images (``result.per_image.worst_first()``) whose pictures, with boxes and
            verdicts, fill the ``image`` column of the per-image table, 0 to 50 (W&B shows at most 108
            images per key). Each batch is matched once more to find them. Default 16; none when
            ``num_images`` is 0.
        score_threshold: the lowest score of a logged prediction (the floor of W&B's score slider; the
            verdicts and the first box layer follow the metric's operating point). Default 0.05.
        box_format, class_names, batch_transform, output_transform: as in :class:`DetectionImagesHandler`.
        global_step_transform: the step to log at, in place of ``trainer``'s iteration. When training is
            logged only once per epoch at the trainer's epoch (W&B's step is then the epoch), pass
            ``global_step_from_engine(trainer)``: the trainer's epoch. Its signature is Ignite's:
            ``f(engine, event_name) -> int``, called with the evaluator.
        max_plot_classes: the most classes the curves and the heatmap show, as in
            :class:`CocoReportHandler`. Default 10.
        artifact_metric: the :class:`~ignite_det.CocoMetric` attached to ``evaluator``: with it, each
            evaluation's predictions file and JSON report are logged as a version of the W&B artifact
            ``<tag>-evaluation-<run id>``, with the alias ``best`` on the best evaluation
            (:class:`~ignite_det.wandb_logging.artifact.EvaluationArtifactHandler`; about 100 bytes per
            predicted box, so opt-in). Default ``None``: no artifact.
        best_metric: the number that picks the ``best`` artifact (higher is better). Default ``"AP"``.

    Returns:
        The report handler and the images handler (``None`` when ``num_images`` is 0).

    Raises:
        ValueError: if ``num_images`` is not in [0, 50] or ``box_format`` is unknown.

    Example:
        .. code-block:: python

            wandb_logger = WandBLogger(project="my-detector") if idist.get_rank() == 0 else None
            attach_wandb_logging(wandb_logger, evaluator, trainer=trainer)  # on every process
    """
    if global_step_transform is not None:
        step = global_step_transform
    elif trainer is not None:
        step = global_step_from_engine(trainer, Events.ITERATION_COMPLETED)
    else:
        step = _EvaluationCounter(evaluator)
    images = None
    if num_images != 0:
        images = DetectionImagesHandler(
            tag=tag,
            num_images=num_images,
            score_threshold=score_threshold,
            metric_name=metric_name,
            class_names=class_names,
            box_format=box_format,
            batch_transform=batch_transform,
            output_transform=output_transform,
            global_step_transform=step,
            num_worst=num_worst_images,
        )
    report = CocoReportHandler(
        metric_name,
        tag=tag,
        global_step_transform=step,
        include_stats=True,
        max_plot_classes=max_plot_classes,
        images=images,
    )
    if images is not None:  # first: at COMPLETED it picks the worst images the report's per-image table shows
        _attach(evaluator, logger, images, Events.ITERATION_COMPLETED | Events.COMPLETED)
    _attach(evaluator, logger, report, Events.COMPLETED)
    if artifact_metric is not None:
        artifact = EvaluationArtifactHandler(
            artifact_metric, metric_name, tag=tag, best_metric=best_metric, global_step_transform=step
        )
        _attach(evaluator, logger, artifact, Events.COMPLETED)
    return report, images


def _attach(engine: Engine, logger: WandBLogger | None, handler: BaseHandler, events: Any) -> None:
    """``logger.attach``, or with no logger the same handlers called with ``logger=None``."""
    if logger is not None:
        logger.attach(engine, handler, events)
        return
    for event in events if isinstance(events, EventsList) else [events]:
        engine.add_event_handler(event, handler, None, event)
