"""The report of one COCO evaluation in W&B: scalars, a per-class table, curves and a confusion matrix.

:class:`CocoReportHandler` follows Ignite's logger contract (``ignite/handlers/base_logger.py``). The
helpers turn a :class:`~ignite_det.CocoResult` into plain Python data (no W&B objects), so they are
tested without a run.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
from ignite.engine import Engine
from ignite.handlers.wandb_logger import WandBLogger

from ignite_det.wandb_logging.base import StepTransform, _default_step, _WandBHandler
from ignite_det.wandb_logging.errors import error_payload

if TYPE_CHECKING:
    from ignite_det.result import CocoResult
    from ignite_det.wandb_logging.images import DetectionImagesHandler

__all__ = ["DEFAULT_PLOT_CLASSES", "PER_CLASS_COLUMNS", "CocoReportHandler", "per_class_columns"]

BACKGROUND = "background"
OTHER_CLASSES = "other classes"
DEFAULT_PLOT_CLASSES = 10  # beyond this many classes, the curves and the heatmap show the worst ones
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
    "num_det_at_threshold",
    "best_f1_threshold",
    "precision",
    "recall",
    "F1",
)

# Under protocol="lvis": the frequency group's column (after "class") and the names of the groups' PR curves
FREQUENCY_COLUMN = "frequency"
GROUP_CURVES = (("r", "rare"), ("c", "common"), ("f", "frequent"))


def per_class_columns(result: CocoResult) -> tuple[str, ...]:
    """The per-class table's columns: :data:`PER_CLASS_COLUMNS`, with LVIS's ``frequency`` group ("r", "c",
    "f") after ``class`` under ``protocol="lvis"``, a plain column to sort and filter by in the W&B UI.

    Example:
        >>> import torch
        >>> from ignite_det import CocoMetric
        >>> metric = CocoMetric(protocol="lvis", category_frequencies={1: "r"})
        >>> metric.update(([{"boxes": torch.zeros(0, 4), "scores": torch.zeros(0), "labels": torch.zeros(0)}],
        ...     [{"boxes": torch.tensor([[0.0, 0, 5, 5]]), "labels": torch.tensor([1]), "image_id": 1,
        ...       "neg_category_ids": [], "not_exhaustive_category_ids": []}]))
        >>> per_class_columns(metric.compute())[:4]
        ('category_id', 'class', 'frequency', 'AP')
    """
    if result.lvis is None:
        return PER_CLASS_COLUMNS
    return (*PER_CLASS_COLUMNS[:2], FREQUENCY_COLUMN, *PER_CLASS_COLUMNS[2:])


# ---------------------------------------------------------------------------------------------------------
# Result -> plain Python data (no W&B objects; tested without a run)
# ---------------------------------------------------------------------------------------------------------


def _defined(value: float) -> float | None:
    """COCO marks undefined values with -1 (and F1 points may be NaN); W&B tables show ``None`` as empty."""
    value = float(value)
    return None if value < 0 or not math.isfinite(value) else value


def _scalars(result: CocoResult, tag: str, include_stats: bool = True) -> dict[str, float]:
    """``tag/<stat>`` for the COCO numbers (optional), the best-F1 operating point, and each class's
    ``tag/AP/<class>`` and ``tag/AP50/<class>``, so that per-class AP over time is a chart.

    COCO's -1 (undefined) is kept for the summary numbers, as every COCO tool prints it; a NaN
    operating point (no ground truth, or no detection) and a class's undefined AP (no ground truth) are
    left out, so the chart shows a gap rather than a point W&B cannot plot or a -1 that looks like data.
    """
    scalars = {f"{tag}/{name}": float(value) for name, value in result.items()} if include_stats else {}
    best = result.best_f1
    point = {"precision": best.precision, "recall": best.recall, "F1": best.f1, "best_f1_threshold": best.threshold}
    scalars.update({f"{tag}/{name}": float(v) for name, v in point.items() if math.isfinite(v)})
    for c in result.per_class:
        for name in ("AP", "AP50"):
            value = _defined(getattr(c, name))
            if value is not None:
                scalars[f"{tag}/{name}/{c.name}"] = value
    return scalars


def _per_class_rows(result: CocoResult) -> list[list[Any]]:
    """One row per class in :func:`per_class_columns` order; undefined values are ``None``.

    ``num_det`` counts every detection of the class, at any score; ``num_det_at_threshold`` those the
    confusion matrix counts at the operating point (its column, background row included).
    """
    at_threshold = np.asarray(result.confusion_matrix).sum(axis=0)
    rows = []
    for k, c in enumerate(result.per_class):
        stats = [_defined(getattr(c, name)) for name in ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR_max")]
        f1 = [_defined(c.f1.threshold), _defined(c.f1.precision), _defined(c.f1.recall), _defined(c.f1.f1)]
        counts = [int(c.num_gt), int(c.num_det), int(at_threshold[k])]
        group = [] if result.lvis is None else [c.frequency]
        rows.append([int(c.category_id), str(c.name), *group, *stats, *counts, *f1])
    return rows


def _plotted_classes(result: CocoResult, stat: str, most: int) -> list[int] | None:
    """Indices of the ``most`` classes of lowest ``stat`` (those with ground truth first, ties by category
    id), in category order; ``None`` (all of them) when there are no more than ``most``."""
    if len(result.per_class) <= most:
        return None
    keys = [(getattr(c, stat) < 0, getattr(c, stat), c.category_id) for c in result.per_class]
    return sorted(sorted(range(len(keys)), key=lambda k: keys[k])[:most])


def _line(xs: Iterable[float], ys: Iterable[float]) -> tuple[list[float], list[float]]:
    """The points of a curve that are defined: COCO's -1 and NaN are dropped rather than drawn."""
    points = [(float(x), float(y)) for x, y in zip(xs, ys) if math.isfinite(y) and y >= 0]
    return [x for x, _ in points], [y for _, y in points]


def _pr_lines(
    result: CocoResult, iou_threshold: float, classes: list[int] | None = None
) -> tuple[list[list[float]], list[list[float]], list[str]]:
    """Per-class precision-recall curves and the class mean, as ``(xs, ys, keys)`` for a line series;
    only the classes at indices ``classes`` when given (the mean is over all of them).

    A class without ground truth (precision all -1) has no curve. Nothing, if ``iou_threshold`` was not
    evaluated.
    """
    xs, ys, keys = [], [], []
    ids = [result.category_ids[k] for k in classes] if classes is not None else result.category_ids
    curves = [(result.class_names.get(cid, str(cid)), cid) for cid in ids]
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


def _group_pr_lines(result: CocoResult, iou_threshold: float) -> tuple[list[list[float]], list[list[float]], list[str]]:
    """Under LVIS, one precision-recall curve per frequency group, the mean over its classes that have ground
    truth (as ``pr_curve(category_id=None)`` averages all of them), and the ``mean`` over all classes: four
    readable lines where 1,203 per-class curves would not be. A group without ground truth has no curve.
    """
    assert result.lvis is not None
    t = result.params.iou_index(iou_threshold)
    if t is None:  # custom IoU thresholds without this one
        return [], [], []
    curves = result.precision[t, :, :, 0, -1]  # (R, K), area "all", the one max_detections
    groups = np.array([result.lvis.frequencies[int(c)] for c in result.category_ids])
    xs, ys, keys = [], [], []
    for key, members in [*((name, groups == g) for g, name in GROUP_CURVES), ("mean", np.ones(len(groups), bool))]:
        x, y = _line(result.params.rec_thresholds, _mean_defined(curves[:, members]))
        if x:
            xs.append(x)
            ys.append(y)
            keys.append(key)
    return xs, ys, keys


def _mean_defined(curves: np.ndarray) -> np.ndarray:
    """Each row's mean over its entries above -1; -1 where none is (COCO's undefined)."""
    valid = curves > -1
    counts = valid.sum(axis=1)
    return np.where(counts > 0, np.where(valid, curves, 0).sum(axis=1) / np.maximum(counts, 1), -1.0)


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


def _confusion_rows(result: CocoResult, classes: list[int] | None = None) -> list[list[Any]]:
    """``[actual, predicted, count]`` for every cell of the confusion matrix, background last; with
    ``classes`` (indices), only those, the others summed as ``other classes`` (so every count is kept).

    With so many classes that the full grid would pass W&B's table limit (over 446), only the non-zero
    cells are kept.
    """
    names = [result.class_names.get(cid, str(cid)) for cid in result.category_ids] + [BACKGROUND]
    matrix = np.asarray(result.confusion_matrix)
    if classes is not None:
        k = len(result.category_ids)
        group = np.full(k + 1, len(classes))  # each class's row and column in the grouped matrix
        group[classes] = np.arange(len(classes))
        group[k] = len(classes) + 1
        onehot = np.eye(len(classes) + 2, dtype=np.int64)[group]
        matrix = onehot.T @ matrix @ onehot
        names = [names[i] for i in classes] + [OTHER_CLASSES, BACKGROUND]
    rows = [[names[i], names[j], int(matrix[i, j])] for i in range(len(names)) for j in range(len(names))]
    return rows if len(rows) <= MAX_TABLE_ROWS else [row for row in rows if row[2]][:MAX_TABLE_ROWS]


def _per_image_rows(result: CocoResult, pictures: Mapping[int, Any] | None) -> tuple[list[str], list[list[Any]]]:
    """The per-image table, worst first, at most :data:`MAX_TABLE_ROWS` rows (the worst); with ``pictures``
    (image id -> picture), an ``image`` column holding them, empty for the other images."""
    ordered = result.per_image.worst_first()
    columns = list(ordered.columns)  # with error analysis, the bins' counts too
    worst = ordered.table()[:MAX_TABLE_ROWS].tolist()  # W&B's limit: the worst 200,000
    if pictures is None:
        return columns, worst
    return [*columns, "image"], [[*row, pictures.get(row[0])] for row in worst]


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
    - ``val/AP/<class>``, ``val/AP50/<class>``: each class's AP, so that its course over the epochs is
      a chart (left out while undefined: no ground truth);
    - ``val/per_class``: a table, one row per class, columns :data:`PER_CLASS_COLUMNS` (COCO's -1,
      undefined, is an empty cell), every class whatever their number; ``num_det`` counts the
      detections at any score, ``num_det_at_threshold`` those at the operating point; under
      ``protocol="lvis"`` a ``frequency`` column ("r", "c", "f") follows ``class`` (:func:`per_class_columns`);
    - ``val/per_image``: a table, one row per image, worst first (``CocoResult.per_image.worst_first()``),
      columns :data:`~ignite_det.per_image.PER_IMAGE_COLUMNS`, at most :data:`MAX_TABLE_ROWS` (the worst),
      to sort and filter in the W&B UI; with ``images`` (a :class:`~ignite_det.DetectionImagesHandler`
      with ``num_worst``), an ``image`` column with the pictures of the worst images, boxes and verdicts
      drawn (empty for the others);
    - ``val/pr_curve_iou50``, ``val/pr_curve_iou75``: line plots of precision against recall, one line per
      class with ground truth and one for their ``mean`` (not logged without ground truth); with more
      than ``max_plot_classes`` classes, only the ``max_plot_classes`` of lowest AP at that IoU (AP50,
      AP75) and the mean over all, as the title says; under ``protocol="lvis"``, whatever the number of
      classes, four lines: the mean curve of each frequency group (``rare``, ``common``, ``frequent``) and
      the ``mean`` over all classes;
    - ``val/f1_curve``: a line plot of F1, precision and recall against the confidence threshold (not
      logged without ground truth);
    - ``val/confusion_matrix``: a heatmap at the operating point; rows (``Actual``) are ground truth
      classes, columns (``Predicted``) detections; the ``background`` row counts spurious detections,
      the ``background`` column missed objects. Its title gives the score threshold, or says why
      there is none (``no score threshold (no ground truth)``, ``(no detection)``). With more than
      ``max_plot_classes`` classes, the ``max_plot_classes`` of lowest AP and the others summed as
      ``other classes``;
    - with the metric's error analysis (``result.errors``), under ``val/errors/``: bar charts of the main and
      special bins' dAP (``main``, ``special``), a per-class table of each bin's dAP and count
      (``per_class``), and the scalars ``AP``, ``dAP/<bin>``, ``count/<bin>``
      (:mod:`ignite_det.wandb_logging.errors`).

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
        max_plot_classes: the most classes the curves and the heatmap show (COCO's 80 or LVIS's 1,203
            would be unreadable): beyond it, the worst ones. Default :data:`DEFAULT_PLOT_CLASSES`, 10.
        images: the images handler whose worst images (``num_worst``) fill the per-image table's ``image``
            column; attach it to ``COMPLETED`` before this handler. Default ``None``: no image column.

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
        max_plot_classes: int = DEFAULT_PLOT_CLASSES,
        images: DetectionImagesHandler | None = None,
    ) -> None:
        if global_step_transform is not None and not callable(global_step_transform):
            raise TypeError(f"global_step_transform should be a function, got {type(global_step_transform)} instead.")
        if isinstance(max_plot_classes, bool) or not isinstance(max_plot_classes, int) or max_plot_classes < 1:
            raise ValueError(f"max_plot_classes must be a positive int, got {max_plot_classes!r}")
        self.max_plot_classes = max_plot_classes
        self.metric_name = metric_name
        self.tag = tag
        self.global_step_transform = global_step_transform or _default_step
        self.include_stats = include_stats
        self.images = images
        self.best_ap: float | None = None
        self.best_step: int | None = None

    def __call__(self, engine: Engine, logger: WandBLogger | None, event_name: Any) -> None:
        given = self._given_step(engine, event_name)  # on every process (see _given_step)
        run = self._active_run(logger)
        if run is None or logger is None:
            return
        result = self._result(engine, self.metric_name)
        if result is None:
            return
        step = self._kept_step(given, run)
        logger.log(self.payload(logger, result), step=step)
        self._update_best(run, result, step)

    def payload(self, wandb: Any, result: CocoResult, pictures: Mapping[int, Any] | None = None) -> dict[str, Any]:
        """The dict logged for ``result``; ``wandb`` builds the W&B objects: the wandb module, or a
        ``WandBLogger`` (which forwards to it). ``pictures`` (image id -> ``wandb.Image``) fill the per-image
        table's ``image`` column; default: the images handler's worst images, if it has any."""
        tag = self.tag
        data: dict[str, Any] = _scalars(result, tag, self.include_stats)
        data[f"{tag}/per_class"] = wandb.Table(columns=list(per_class_columns(result)), data=_per_class_rows(result))
        if pictures is None and self.images is not None and self.images.num_worst:
            pictures = self.images.worst
        columns, rows = _per_image_rows(result, pictures)
        data[f"{tag}/per_image"] = wandb.Table(columns=columns, data=rows)
        for iou, suffix in ((0.5, "50"), (0.75, "75")):
            if result.lvis is not None:  # LVIS: a mean curve per frequency group, whatever the number of classes
                xs, ys, keys = _group_pr_lines(result, iou)
                which = ", mean per frequency group (each class in the per_class table)"
            else:
                classes = _plotted_classes(result, f"AP{suffix}", self.max_plot_classes)
                xs, ys, keys = _pr_lines(result, iou, classes)
                which = self._which(result, classes, f"AP{suffix}")
            if keys:
                title = f"{tag} precision-recall @ IoU {iou}" + which
                data[f"{tag}/pr_curve_iou{suffix}"] = wandb.plot.line_series(
                    xs=xs, ys=ys, keys=keys, title=title, xname="recall"
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
        if result.errors is not None:
            data.update(error_payload(wandb, result.errors, tag))
        return data

    def _confusion_plot(self, wandb: Any, result: CocoResult) -> Any:
        classes = _plotted_classes(result, "AP", self.max_plot_classes)
        table = wandb.Table(columns=["Actual", "Predicted", "nPredictions"], data=_confusion_rows(result, classes))
        title = f"{self.tag} confusion matrix @ IoU {result.f1_iou_threshold}, {_threshold_words(result)}"
        return wandb.plot_table(
            "wandb/confusion_matrix/v1",
            table,
            {"Actual": "Actual", "Predicted": "Predicted", "nPredictions": "nPredictions"},
            {"title": title + self._which(result, classes, "AP")},
        )

    @staticmethod
    def _which(result: CocoResult, classes: list[int] | None, stat: str) -> str:
        """The title's note on a panel that shows only some classes."""
        if classes is None:
            return ""
        return f" ({len(classes)} of {len(result.per_class)} classes, lowest {stat}; all in the per_class table)"

    def _update_best(self, run: Any, result: CocoResult, step: int) -> None:
        ap = float(result["AP"])
        if ap < 0 or (self.best_ap is not None and ap <= self.best_ap):
            return
        self.best_ap, self.best_step = ap, step
        run.summary[f"{self.tag}/AP_best"] = ap
        run.summary[f"{self.tag}/AP_best_step"] = step
