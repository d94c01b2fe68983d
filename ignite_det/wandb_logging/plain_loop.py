"""The whole W&B report for a plain PyTorch loop: no Ignite engine, the user's own run, the user's own step.

:class:`WandBReport` logs what :func:`~ignite_det.attach_wandb_logging` logs for an evaluator (the COCO
numbers, per-class AP scalars, the per-class table, the curves, the confusion matrix, the best AP in the
summary, and sample images with their verdicts) from a :class:`~ignite_det.CocoResult` and the images
handed over with the predictions, in one ``run.log`` call.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import ignite.distributed as idist

from ignite_det.wandb_logging.artifact import EvaluationArtifactHandler
from ignite_det.wandb_logging.base import kept_step
from ignite_det.wandb_logging.images import DEFAULT_SCORE_FLOOR, MAX_IMAGES, DetectionImagesHandler
from ignite_det.wandb_logging.report import DEFAULT_PLOT_CLASSES, CocoReportHandler

if TYPE_CHECKING:
    from ignite_det.metric import CocoMetric
    from ignite_det.result import CocoResult

__all__ = ["WandBReport"]


class WandBReport:
    """Log a COCO evaluation to the user's own ``wandb`` run, at the user's own step, without an engine.

    Call :meth:`add_images` beside ``metric.update`` for the batches whose pictures may be shown (the
    sample is the ``num_images`` smallest image ids of the first evaluation, then the same images every
    evaluation), and :meth:`log` with ``metric.compute()`` at the end of each evaluation. The keys are
    those of :class:`~ignite_det.CocoReportHandler` with ``include_stats=True`` (``val/AP`` ...,
    ``val/AP/<class>``, ``val/per_class``, ``val/pr_curve_iou50``, ``val/confusion_matrix``...) and of
    :class:`~ignite_det.DetectionImagesHandler` (``val/detections``). Under distribution, call both
    methods on every process (``log`` with ``run=None`` where there is no run): the processes exchange
    the sample images inside :meth:`log`.

    Args:
        tag: key prefix. Default ``"val"``.
        num_images: images to show, 0 (none) to 50. Default 16.
        num_worst_images: the worst images whose pictures fill the per-image table's ``image`` column, 0 to
            50, as in :func:`~ignite_det.attach_wandb_logging`. Default 16; none when ``num_images`` is 0.
        score_threshold: the lowest score of a logged prediction (the floor of W&B's score slider).
            Default 0.05.
        box_format: ``"xyxy"``, ``"xywh"`` or ``"cxcywh"``, as given to the metric. Default ``"xyxy"``.
        class_names: category id to class name for the images. Default: the result's ``class_names``.
        max_plot_classes: as in :class:`~ignite_det.CocoReportHandler`. Default 10.
        artifact_metric: the :class:`~ignite_det.CocoMetric` whose result :meth:`log` logs: with it, each
            evaluation's predictions file and JSON report are a version of the W&B artifact
            ``<tag>-evaluation-<run id>``, ``best`` on the best by ``best_metric`` (as in
            :func:`~ignite_det.attach_wandb_logging`; opt-in for its size). Default ``None``.
        best_metric: the number that picks the ``best`` artifact. Default ``"AP"``.

    Raises:
        ValueError: if ``num_images`` is not in [0, 50] or ``box_format`` is unknown.

    Example:
        .. code-block:: python

            run = wandb.init(project="my-detector")
            metric, report = CocoMetric(class_names={1: "cat"}), WandBReport(num_images=8)
            for epoch in range(1, epochs + 1):
                train_one_epoch(model)
                metric.reset()  # before each evaluation
                for images, targets in val_loader:
                    y_pred = model(images)
                    metric.update((y_pred, targets))
                    report.add_images(images, y_pred, targets)
                report.log(metric.compute(), step=epoch)
    """

    def __init__(
        self,
        tag: str = "val",
        num_images: int = 16,
        num_worst_images: int = 16,
        score_threshold: float = DEFAULT_SCORE_FLOOR,
        box_format: str = "xyxy",
        class_names: Mapping[int, str] | None = None,
        max_plot_classes: int = DEFAULT_PLOT_CLASSES,
        artifact_metric: CocoMetric | None = None,
        best_metric: str = "AP",
    ) -> None:
        if isinstance(num_images, bool) or not isinstance(num_images, int) or not 0 <= num_images <= MAX_IMAGES:
            raise ValueError(f"num_images must be an int from 0 to {MAX_IMAGES}, got {num_images!r}")
        self.tag = tag
        self.images = None
        if num_images:
            self.images = DetectionImagesHandler(
                tag=tag,
                num_images=num_images,
                score_threshold=score_threshold,
                class_names=class_names,
                box_format=box_format,
                num_worst=num_worst_images,
            )
        self.report = CocoReportHandler(
            tag=tag, include_stats=True, max_plot_classes=max_plot_classes, images=self.images
        )
        self.artifact = None
        if artifact_metric is not None:
            self.artifact = EvaluationArtifactHandler(artifact_metric, tag=tag, best_metric=best_metric)
        self._warned_step = False

    def add_images(
        self, images: Sequence[Any], y_pred: Sequence[Mapping[str, Any]], y: Sequence[Mapping[str, Any]]
    ) -> None:
        """Offer a batch's pictures for the sample: ``images`` in the order of ``y`` (``(C, H, W)`` tensors,
        float in [0, 1] or uint8, or ``(H, W, C)`` arrays; ``None`` for one not to show), with the
        ``(y_pred, y)`` given to the metric. Only the sample's images are kept.

        Raises:
            ValueError: if the images, predictions and targets differ in number.
        """
        if self.images is not None:
            self.images.add(images, y_pred, y)

    def log(self, result: CocoResult, step: int | None = None, run: Any = None) -> None:
        """Log ``result`` and the images added since the last call to ``run`` (default: ``wandb.run``).

        ``step`` is the W&B step (default: the run's current one); a step lower than the run's current
        step is raised to it, with a warning, because W&B would drop the data. With the run disabled
        (``mode="disabled"``), nothing is logged.

        Raises:
            RuntimeError: without a run (call ``wandb.init()`` first), unless under distribution.
            TypeError: if ``step`` is not an int.
        """
        if step is not None and (isinstance(step, bool) or not isinstance(step, int)):
            raise TypeError(f"step must be an int (the W&B step), got {type(step).__name__}")
        import wandb  # only here: ignite-det does not need wandb until something is logged

        run = run if run is not None else wandb.run
        if run is None and idist.backend() is None:
            raise RuntimeError("WandBReport.log: no W&B run; call wandb.init() first, or pass run=")
        active = run is not None and not getattr(run, "disabled", False)
        images = [] if self.images is None else self.images.images(wandb, result, active=active)
        if not active:
            if self.artifact is not None and idist.backend() is not None:  # every process gathers the predictions
                self.artifact.log(None, result, 0)
            return
        data = self.report.payload(wandb, result)
        if images:
            data[f"{self.tag}/{self.images.key}"] = images  # type: ignore[union-attr]
        step = self._kept_step(int(run.step) if step is None else step, run)
        run.log(data, step=step)
        self.report._update_best(run, result, step)
        if self.artifact is not None:
            self.artifact.log(run, result, step)

    def _kept_step(self, step: int, run: Any) -> int:
        step, self._warned_step = kept_step(
            step,
            run,
            "WandBReport.log",
            warned=self._warned_step,
            advice="Pass the step your training logs use (for example its iteration).",
        )
        return step
