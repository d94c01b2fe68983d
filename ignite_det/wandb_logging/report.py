"""The report of one COCO evaluation in W&B: scalars, a per-class table, curves and a confusion matrix.

:class:`CocoReportHandler` follows Ignite's logger contract (``ignite/handlers/base_logger.py``). The
helpers turn a :class:`~ignite_det.CocoResult` into plain Python data (no W&B objects), so they are
tested without a run.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import numpy as np
from ignite.engine import Engine
from ignite.handlers.wandb_logger import WandBLogger

from ignite_det.wandb_logging.base import StepTransform, _default_step, _WandBHandler

if TYPE_CHECKING:
    from ignite_det.result import CocoResult

__all__ = ["PER_CLASS_COLUMNS", "CocoReportHandler"]

BACKGROUND = "background"
MAX_TABLE_ROWS = 200_000  # wandb.Table's limit (MAX_ARTIFACT_ROWS)
PER_CLASS_COLUMNS = (
    "category_id",
    "class",
    "AP",
    "AP50",
    "AP75",
    "APs",
    "APm",
    "APl",
    "AR_max",
    "num_gt",
    "num_det",
    "best_f1_threshold",
    "precision",
    "recall",
    "F1",
)

# ---------------------------------------------------------------------------------------------------------
# Result -> plain Python data (no W&B objects; tested without a run)
# ---------------------------------------------------------------------------------------------------------


def _defined(value: float) -> float | None:
    """COCO marks undefined values with -1 (and F1 points may be NaN); W&B tables show ``None`` as empty."""
    value = float(value)
    return None if value < 0 or not math.isfinite(value) else value


def _scalars(result: CocoResult, tag: str, include_stats: bool = True) -> dict[str, float]:
    """``tag/<stat>`` for the COCO numbers (optional) and the best-F1 operating point.

    COCO's -1 (undefined) is kept, as every COCO tool prints it; a NaN operating point (no ground truth,
    or no detection) is left out, so the chart shows a gap rather than a point W&B cannot plot.
    """
    scalars = {f"{tag}/{name}": float(value) for name, value in result.items()} if include_stats else {}
    best = result.best_f1
    point = {"precision": best.precision, "recall": best.recall, "F1": best.f1, "best_f1_threshold": best.threshold}
    scalars.update({f"{tag}/{name}": float(v) for name, v in point.items() if math.isfinite(v)})
    return scalars


def _per_class_rows(result: CocoResult) -> list[list[Any]]:
    """One row per class in :data:`PER_CLASS_COLUMNS` order; undefined values are ``None``."""
    rows = []
    for c in result.per_class:
        stats = [_defined(getattr(c, name)) for name in ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR_max")]
        f1 = [_defined(c.f1.threshold), _defined(c.f1.precision), _defined(c.f1.recall), _defined(c.f1.f1)]
        rows.append([int(c.category_id), str(c.name), *stats, int(c.num_gt), int(c.num_det), *f1])
    return rows


def _line(xs: Iterable[float], ys: Iterable[float]) -> tuple[list[float], list[float]]:
    """The points of a curve that are defined: COCO's -1 and NaN are dropped rather than drawn."""
    points = [(float(x), float(y)) for x, y in zip(xs, ys) if math.isfinite(y) and y >= 0]
    return [x for x, _ in points], [y for _, y in points]


def _pr_lines(result: CocoResult, iou_threshold: float) -> tuple[list[list[float]], list[list[float]], list[str]]:
    """Per-class precision-recall curves and the class mean, as ``(xs, ys, keys)`` for a line series.

    A class without ground truth (precision all -1) has no curve. Nothing, if ``iou_threshold`` was not
    evaluated.
    """
    xs, ys, keys = [], [], []
    curves = [(result.class_names.get(cid, str(cid)), cid) for cid in result.category_ids]
    for key, category_id in [*curves, ("mean", None)]:
        try:
            recall, precision = result.pr_curve(category_id=category_id, iou_threshold=iou_threshold)
        except ValueError:  # custom IoU thresholds without this one
            return [], [], []
        x, y = _line(recall, precision)
        if x:
            xs.append(x)
            ys.append(y)
            keys.append(key)
    return xs, ys, keys


def _f1_lines(result: CocoResult) -> tuple[list[list[float]], list[list[float]], list[str]]:
    """F1, precision and recall against the confidence threshold, as ``(xs, ys, keys)``.

    Nothing without ground truth: F1 and recall are undefined, and precision is 0 at every threshold.
    """
    curve = result.f1_curve()
    xs, ys, keys = [], [], []
    for name, key in (("f1", "F1"), ("precision", "precision"), ("recall", "recall")):
        x, y = _line(curve["threshold"], curve[name])
        if x:
            xs.append(x)
            ys.append(y)
            keys.append(key)
    return (xs, ys, keys) if "F1" in keys else ([], [], [])


def _confusion_rows(result: CocoResult) -> list[list[Any]]:
    """``[actual, predicted, count]`` for every cell of the confusion matrix, background last.

    With so many classes that the full grid would pass W&B's table limit (over 446), only the non-zero
    cells are kept.
    """
    names = [result.class_names.get(cid, str(cid)) for cid in result.category_ids] + [BACKGROUND]
    matrix = np.asarray(result.confusion_matrix)
    rows = [[names[i], names[j], int(matrix[i, j])] for i in range(len(names)) for j in range(len(names))]
    return rows if len(rows) <= MAX_TABLE_ROWS else [row for row in rows if row[2]][:MAX_TABLE_ROWS]


def _threshold_words(result: CocoResult) -> str:
    """The confusion matrix's score threshold, ``score >= 0.412``, or why there is none (every
    detection is then counted): ``no score threshold (no ground truth)`` or ``(no detection)``.
    """
    best = result.best_f1
    return f"score >= {best.threshold:.3f}" if best.status == "ok" else f"no score threshold ({best.status})"


# ---------------------------------------------------------------------------------------------------------
# The evaluation report
# ---------------------------------------------------------------------------------------------------------


class CocoReportHandler(_WandBHandler):
    """Log a :class:`~ignite_det.CocoResult` to W&B: scalars, per-class table, curves, confusion matrix.

    Attach it to the evaluator's ``Events.COMPLETED``, after the metric. Everything goes out in one
    ``logger.log`` call, under these keys (``tag="val"``):

    - ``val/AP`` ... ``val/ARl``: the 12 COCO numbers (only with ``include_stats=True``);
    - ``val/precision``, ``val/recall``, ``val/F1``, ``val/best_f1_threshold``: the best-F1 operating
      point, pooled over classes (each left out when undefined: all four without ground truth, the
      threshold when no detection is counted);
    - ``val/per_class``: a table, one row per class, columns :data:`PER_CLASS_COLUMNS` (COCO's -1,
      undefined, is an empty cell);
    - ``val/pr_curve_iou50``, ``val/pr_curve_iou75``: line plots of precision against recall, one line per
      class with ground truth and one for their ``mean`` (not logged without ground truth);
    - ``val/f1_curve``: a line plot of F1, precision and recall against the confidence threshold (not
      logged without ground truth);
    - ``val/confusion_matrix``: a heatmap at the operating point; rows (``Actual``) are ground truth
      classes, columns (``Predicted``) detections; the ``background`` row counts spurious detections,
      the ``background`` column missed objects. Its title gives the score threshold, or says why
      there is none (``no score threshold (no ground truth)``, ``(no detection)``).

    The run summary keeps ``val/AP_best`` and ``val/AP_best_step``, the best AP so far and its step
    (not set while AP is undefined, -1).

    An evaluation with nothing to count (no detections, no ground truth, only crowd regions) logs the
    same keys (the curves only with ground truth) and no NaN: an undefined number is left out, or an
    empty cell.

    Args:
        metric_name: name the :class:`~ignite_det.CocoMetric` was attached under. Default ``"coco"``.
        tag: prefix of every key. Default ``"val"``.
        global_step_transform: ``f(engine, event_name) -> int`` giving the W&B step; use
            ``global_step_from_engine(trainer)`` so validation lines up with training. Default: the
            evaluator's own event counter, as in Ignite's handlers. A step lower than the run's current
            step is raised to it, with a warning, because W&B would drop it.
        include_stats: also log the 12 COCO numbers. Leave it ``False`` when an ``OutputHandler`` already
            logs them, so each number is logged once. Default ``False``.

    Raises:
        TypeError: if ``global_step_transform`` is not callable, or (when called) returns no int.
        RuntimeError: when called with a logger that is neither a ``WandBLogger`` nor ``None``.

    Example:
        .. code-block:: python

            wandb_logger.attach(
                evaluator,
                CocoReportHandler("coco", tag="val", global_step_transform=global_step_from_engine(trainer)),
                Events.COMPLETED,
            )
    """

    def __init__(
        self,
        metric_name: str = "coco",
        *,
        tag: str = "val",
        global_step_transform: StepTransform | None = None,
        include_stats: bool = False,
    ) -> None:
        if global_step_transform is not None and not callable(global_step_transform):
            raise TypeError(f"global_step_transform should be a function, got {type(global_step_transform)} instead.")
        self.metric_name = metric_name
        self.tag = tag
        self.global_step_transform = global_step_transform or _default_step
        self.include_stats = include_stats
        self.best_ap: float | None = None
        self.best_step: int | None = None

    def __call__(self, engine: Engine, logger: WandBLogger | None, event_name: Any) -> None:
        run = self._active_run(logger)
        if run is None or logger is None:
            return
        result = engine.state.metrics.get(self.metric_name)
        if result is None:
            warnings.warn(
                f"CocoReportHandler: metric '{self.metric_name}' is missing in engine's state metrics: "
                f"{list(engine.state.metrics)}; attach the CocoMetric before this handler.",
                stacklevel=2,
            )
            return
        step = self._step(engine, event_name, run)
        logger.log(self.payload(logger._wandb, result), step=step)
        self._update_best(run, result, step)

    def payload(self, wandb: Any, result: CocoResult) -> dict[str, Any]:
        """The dict logged for ``result``; ``wandb`` is the wandb module (``logger._wandb``)."""
        tag = self.tag
        data: dict[str, Any] = _scalars(result, tag, self.include_stats)
        data[f"{tag}/per_class"] = wandb.Table(columns=list(PER_CLASS_COLUMNS), data=_per_class_rows(result))
        for iou, suffix in ((0.5, "50"), (0.75, "75")):
            xs, ys, keys = _pr_lines(result, iou)
            if keys:
                data[f"{tag}/pr_curve_iou{suffix}"] = wandb.plot.line_series(
                    xs=xs, ys=ys, keys=keys, title=f"{tag} precision-recall @ IoU {iou}", xname="recall"
                )
        xs, ys, keys = _f1_lines(result)
        if keys:
            data[f"{tag}/f1_curve"] = wandb.plot.line_series(
                xs=xs,
                ys=ys,
                keys=keys,
                title=f"{tag} F1 vs confidence @ IoU {result.f1_iou_threshold}",
                xname="confidence",
            )
        data[f"{tag}/confusion_matrix"] = self._confusion_plot(wandb, result)
        return data

    def _confusion_plot(self, wandb: Any, result: CocoResult) -> Any:
        table = wandb.Table(columns=["Actual", "Predicted", "nPredictions"], data=_confusion_rows(result))
        return wandb.plot_table(
            "wandb/confusion_matrix/v1",
            table,
            {"Actual": "Actual", "Predicted": "Predicted", "nPredictions": "nPredictions"},
            {"title": f"{self.tag} confusion matrix @ IoU {result.f1_iou_threshold}, {_threshold_words(result)}"},
        )

    def _update_best(self, run: Any, result: CocoResult, step: int) -> None:
        ap = float(result["AP"])
        if ap < 0 or (self.best_ap is not None and ap <= self.best_ap):
            return
        self.best_ap, self.best_step = ap, step
        run.summary[f"{self.tag}/AP_best"] = ap
        run.summary[f"{self.tag}/AP_best_step"] = step
