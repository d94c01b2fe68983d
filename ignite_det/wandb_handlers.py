"""Weights & Biases presentation of a COCO evaluation, as Ignite logging handlers.

Two handlers follow Ignite's logger contract (``ignite/handlers/base_logger.py``): each is called as
``handler(engine, logger, event_name)``, takes its step from ``global_step_transform`` and makes at most
one ``logger.log(..., step=...)`` call per event.

* :class:`CocoReportHandler` logs, for the :class:`~ignite_det.CocoResult` stored under ``metric_name``:
  the precision, recall and F1 at the best-F1 confidence threshold and that threshold (and, optionally,
  the 12 COCO numbers) as scalars under ``tag/``; a per-class table; precision-recall curves per class at
  IoU 0.5 and 0.75 with the class mean; an F1-versus-confidence curve; and a detection confusion matrix.
  It also keeps the best AP so far, and the step it came from, in the run summary.
* :class:`DetectionImagesHandler` logs a fixed sample of validation images with predicted and ground
  truth boxes, captured from the evaluator's own iterations (the model is not run a second time).

:func:`attach_wandb_logging` attaches both with sensible defaults.

W&B objects are built through the logger (``logger._wandb.Table``...), so importing this module does not
import ``wandb``. With ``WandBLogger(mode="disabled")``, or after ``logger.close()``, the handlers do nothing.

Example:
    .. code-block:: python

        from ignite.engine import Events
        from ignite.handlers.wandb_logger import WandBLogger
        from ignite_det import CocoMetric
        from ignite_det.wandb_handlers import attach_wandb_logging

        CocoMetric(class_names={1: "cat", 2: "dog"}).attach(evaluator, "coco")
        wandb_logger = WandBLogger(project="my-detector", mode="offline")
        attach_wandb_logging(wandb_logger, evaluator, trainer=trainer)
        trainer.add_event_handler(Events.EPOCH_COMPLETED, lambda: evaluator.run(val_loader))
"""

from __future__ import annotations

import math
import numbers
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from ignite.engine import Engine, Events
from ignite.handlers.base_logger import BaseHandler
from ignite.handlers.utils import global_step_from_engine
from ignite.handlers.wandb_logger import WandBLogger

from ignite_det.coco_backend import box_iou
from ignite_det.matching import greedy_match

if TYPE_CHECKING:
    from ignite_det.result import CocoResult

__all__ = ["CocoReportHandler", "DetectionImagesHandler", "attach_wandb_logging"]

StepTransform = Callable[[Engine, Any], int]

BACKGROUND = "background"
MAX_IMAGES = 50  # W&B recommends fewer than 50 images per step (and keeps at most 108 per key)
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
    "AR100",
    "num_gt",
    "num_det",
    "best_f1_threshold",
    "precision",
    "recall",
    "F1",
)
_BOX_FORMATS = ("xyxy", "xywh", "cxcywh")


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
        stats = [_defined(getattr(c, name)) for name in ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR100")]
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
    """F1, precision and recall against the confidence threshold, as ``(xs, ys, keys)``."""
    curve = result.f1_curve()
    xs, ys, keys = [], [], []
    for name, key in (("f1", "F1"), ("precision", "precision"), ("recall", "recall")):
        x, y = _line(curve["threshold"], curve[name])
        if x:
            xs.append(x)
            ys.append(y)
            keys.append(key)
    return xs, ys, keys


def _confusion_rows(result: CocoResult) -> list[list[Any]]:
    """``[actual, predicted, count]`` for every cell of the confusion matrix, background last.

    With so many classes that the full grid would pass W&B's table limit (over 446), only the non-zero
    cells are kept.
    """
    names = [result.class_names.get(cid, str(cid)) for cid in result.category_ids] + [BACKGROUND]
    matrix = np.asarray(result.confusion_matrix)
    rows = [[names[i], names[j], int(matrix[i, j])] for i in range(len(names)) for j in range(len(names))]
    return rows if len(rows) <= MAX_TABLE_ROWS else [row for row in rows if row[2]][:MAX_TABLE_ROWS]


# ---------------------------------------------------------------------------------------------------------
# Logger plumbing
# ---------------------------------------------------------------------------------------------------------


def _default_step(engine: Engine, event_name: Any) -> int:
    return engine.state.get_event_attrib_value(event_name)


class _WandBHandler(BaseHandler):
    """What both handlers share: finding the run, and a step W&B will not drop."""

    global_step_transform: StepTransform
    _warned_step = False

    def _active_run(self, logger: Any) -> Any:
        """The W&B run to log to, or ``None`` when logging is disabled or the run is finished."""
        if not isinstance(logger, WandBLogger):  # RuntimeError, as Ignite's own WandB handlers raise
            raise RuntimeError(  # noqa: TRY004
                f"Handler '{type(self).__name__}' works only with WandBLogger, got {type(logger)}."
            )
        run = logger._wandb.run
        if run is None or getattr(run, "disabled", False):
            return None
        return run

    def _step(self, engine: Engine, event_name: Any, run: Any) -> int:
        """The handler's step, raised to the run's current step when lower (W&B would drop the data)."""
        step = self.global_step_transform(engine, event_name)
        if not isinstance(step, numbers.Integral):
            raise TypeError(
                f"global_step must be int, got {type(step)}. Please check the output of global_step_transform."
            )
        current = int(run.step)
        if step >= current:
            return int(step)
        if not self._warned_step:  # once: an evaluation every epoch would repeat it every epoch
            self._warned_step = True
            warnings.warn(
                f"{type(self).__name__}: step {step} is lower than the W&B run's current step {current}; logging at "
                f"{current} instead (and so on for later steps), because W&B drops data logged at a lower step. "
                "Pass global_step_transform=global_step_from_engine(trainer) with the event your training logs "
                "use (e.g. Events.ITERATION_COMPLETED) so validation lines up with training.",
                stacklevel=3,
            )
        return current


class _EvaluationCounter:
    """A step for an evaluator with no trainer: 1 for its first run, 2 for its second...

    The evaluator's own epoch restarts at 1 every ``run()``, so it cannot be the step.
    """

    def __init__(self, evaluator: Engine) -> None:
        self.count = 0
        evaluator.add_event_handler(Events.STARTED, self._increment)

    def _increment(self, _engine: Engine) -> None:
        self.count += 1

    def __call__(self, _engine: Engine, _event_name: Any) -> int:
        return self.count


# ---------------------------------------------------------------------------------------------------------
# The evaluation report
# ---------------------------------------------------------------------------------------------------------


class CocoReportHandler(_WandBHandler):
    """Log a :class:`~ignite_det.CocoResult` to W&B: scalars, per-class table, curves, confusion matrix.

    Attach it to the evaluator's ``Events.COMPLETED``, after the metric. Everything goes out in one
    ``logger.log`` call, under these keys (``tag="val"``):

    - ``val/AP`` ... ``val/ARl``: the 12 COCO numbers (only with ``include_stats=True``);
    - ``val/precision``, ``val/recall``, ``val/F1``, ``val/best_f1_threshold``: the best-F1 operating
      point, pooled over classes (left out when undefined: no ground truth or no detection);
    - ``val/per_class``: a table, one row per class, columns :data:`PER_CLASS_COLUMNS` (COCO's -1,
      undefined, is an empty cell);
    - ``val/pr_curve_iou50``, ``val/pr_curve_iou75``: line plots of precision against recall, one line per
      class with ground truth and one for their ``mean``;
    - ``val/f1_curve``: a line plot of F1, precision and recall against the confidence threshold;
    - ``val/confusion_matrix``: a heatmap at the operating point; rows (``Actual``) are ground truth
      classes, columns (``Predicted``) detections; the ``background`` row counts spurious detections,
      the ``background`` column missed objects.

    The run summary keeps ``val/AP_best`` and ``val/AP_best_step``, the best AP so far and its step.

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
        RuntimeError: when called with a logger that is not a ``WandBLogger``.

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

    def __call__(self, engine: Engine, logger: WandBLogger, event_name: Any) -> None:
        run = self._active_run(logger)
        if run is None:
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
        threshold = float(result.best_f1.threshold)
        return wandb.plot_table(
            "wandb/confusion_matrix/v1",
            table,
            {"Actual": "Actual", "Predicted": "Predicted", "nPredictions": "nPredictions"},
            {"title": f"{self.tag} confusion matrix @ IoU {result.f1_iou_threshold}, score >= {threshold:.3f}"},
        )

    def _update_best(self, run: Any, result: CocoResult, step: int) -> None:
        ap = float(result["AP"])
        if ap < 0 or (self.best_ap is not None and ap <= self.best_ap):
            return
        self.best_ap, self.best_step = ap, step
        run.summary[f"{self.tag}/AP_best"] = ap
        run.summary[f"{self.tag}/AP_best_step"] = step


# ---------------------------------------------------------------------------------------------------------
# Images with boxes
# ---------------------------------------------------------------------------------------------------------


def _as_numpy(value: Any, dtype: Any) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    return np.asarray(value, dtype=dtype)


def _to_hwc_uint8(image: Any) -> np.ndarray:
    """An image as an ``(H, W, 3)`` uint8 array (``(H, W, 4)`` for RGBA).

    A ``torch.Tensor`` is read as ``(C, H, W)`` or ``(H, W)`` (torchvision's layout), anything else
    (numpy array, PIL image) as ``(H, W, C)`` or ``(H, W)``. Float values are taken to be in [0, 1].
    """
    is_tensor = isinstance(image, torch.Tensor)
    if is_tensor and image.is_floating_point():
        image = image.float()  # numpy has no bfloat16
    array = image.detach().cpu().numpy() if is_tensor else np.asarray(image)
    if array.ndim == 2:
        array = array[..., None] if not is_tensor else array[None]
    if array.ndim != 3:
        raise ValueError(f"image must have 2 or 3 dimensions, got shape {tuple(array.shape)}")
    if is_tensor:
        array = array.transpose(1, 2, 0)
    if array.shape[-1] not in (1, 3, 4):
        raise ValueError(f"image must have 1, 3 or 4 channels, got shape {tuple(array.shape)} (HWC)")
    if array.dtype != np.uint8:
        array = np.round(np.clip(array.astype(np.float64), 0.0, 1.0) * 255.0).astype(np.uint8)
    if array.shape[-1] == 1:
        array = np.repeat(array, 3, axis=-1)
    return np.ascontiguousarray(array)


def _to_xywh(xyxy: np.ndarray) -> np.ndarray:
    return np.concatenate([xyxy[:, :2], xyxy[:, 2:] - xyxy[:, :2]], axis=1)


def _to_xyxy(boxes: np.ndarray, box_format: str) -> np.ndarray:
    boxes = boxes.reshape(-1, 4)
    if box_format == "xywh":
        return np.concatenate([boxes[:, :2], boxes[:, :2] + boxes[:, 2:]], axis=1)
    if box_format == "cxcywh":
        return np.concatenate([boxes[:, :2] - boxes[:, 2:] / 2, boxes[:, :2] + boxes[:, 2:] / 2], axis=1)
    return boxes


def _box(xyxy: np.ndarray, class_id: int, caption: str, score: float | None = None) -> dict[str, Any]:
    """One W&B box: plain Python numbers only, pixel coordinates."""
    x0, y0, x1, y1 = (float(v) for v in xyxy)
    box: dict[str, Any] = {
        "position": {"minX": x0, "maxX": x1, "minY": y0, "maxY": y1},
        "domain": "pixel",
        "class_id": int(class_id),
        "box_caption": caption,
    }
    if score is not None:
        box["scores"] = {"score": float(score)}
    return box


@dataclass(frozen=True)
class _Sample:
    """One captured validation image, already on the CPU, boxes in xyxy pixels."""

    image_id: int
    image: np.ndarray
    pred_boxes: np.ndarray
    pred_scores: np.ndarray
    pred_labels: np.ndarray
    gt_boxes: np.ndarray
    gt_labels: np.ndarray
    gt_iscrowd: np.ndarray


def _outcomes(sample: _Sample, iou_threshold: float) -> list[str]:
    """COCOeval's verdict on each prediction at one IoU threshold (area "all"): ``"TP"``, ``"FP"``, or
    ``"ignored"`` where it matches a crowd region, which COCO counts neither way.

    Per class, predictions go by descending score (ties in input order) through
    :func:`~ignite_det.matching.greedy_match`, the matcher behind the metric's operating point, on
    COCO's own box IoU.
    """
    outcomes = ["FP"] * len(sample.pred_boxes)
    crowd = sample.gt_iscrowd.astype(bool)
    for label in np.unique(sample.pred_labels):
        preds = np.flatnonzero(sample.pred_labels == label)
        preds = preds[np.argsort(-sample.pred_scores[preds], kind="stable")]
        gts = np.flatnonzero(sample.gt_labels == label)
        ious = box_iou(_to_xywh(sample.pred_boxes[preds]), _to_xywh(sample.gt_boxes[gts]), crowd[gts])
        for pred, match in zip(preds.tolist(), greedy_match(ious, crowd[gts], crowd[gts], iou_threshold)):
            if match >= 0:
                outcomes[pred] = "ignored" if crowd[gts[match]] else "TP"
    return outcomes


def _box_layers(
    sample: _Sample, class_names: Mapping[int, str], score_threshold: float, iou_threshold: float = 0.5
) -> dict[str, dict[str, Any]]:
    """The ``boxes=`` argument of ``wandb.Image``: ``predictions`` (tagged TP/FP/ignored) and ``ground_truth``."""
    outcomes = _outcomes(sample, iou_threshold)
    labels = {int(c): str(n) for c, n in class_names.items()}
    for c in (*sample.pred_labels.tolist(), *sample.gt_labels.tolist()):
        labels.setdefault(int(c), str(int(c)))
    predictions = [
        _box(box, label, f"{labels[int(label)]} {score:.2f} {outcome}", score)
        for box, label, score, outcome in zip(sample.pred_boxes, sample.pred_labels, sample.pred_scores, outcomes)
        if score >= score_threshold
    ]
    ground_truth = [
        _box(box, label, labels[int(label)] + (" (crowd)" if crowd else ""))
        for box, label, crowd in zip(sample.gt_boxes, sample.gt_labels, sample.gt_iscrowd)
    ]
    return {
        "predictions": {"box_data": predictions, "class_labels": labels},
        "ground_truth": {"box_data": ground_truth, "class_labels": labels},
    }


def _batch_images(batch: Any) -> Sequence[Any]:
    """Default ``batch_transform``: the images of an ``(images, targets)`` batch."""
    return batch[0]


def _output_pair(output: Any) -> tuple[Sequence[Mapping[str, Any]], Sequence[Mapping[str, Any]]]:
    """Default ``output_transform``: the evaluator's ``(y_pred, y)`` output as is."""
    return output[0], output[1]


class DetectionImagesHandler(_WandBHandler):
    """Log a fixed sample of validation images with predicted and ground truth boxes.

    The sample is the first ``num_images`` image ids the evaluator sees in its first run; later runs show
    the same images, so epochs can be compared. Images and boxes are captured at ``ITERATION_COMPLETED``
    from ``engine.state.batch`` and ``engine.state.output`` (the model is not run again) and logged at
    ``COMPLETED`` as a list of ``wandb.Image`` under ``tag/key``, each with two box layers in pixel
    coordinates: ``predictions`` with a score at or above ``score_threshold`` (caption: class, score and
    ``TP``, ``FP``, or ``ignored`` on a crowd region, by COCOeval's matching at IoU 0.5) and
    ``ground_truth``.

    Attach it to both events::

        wandb_logger.attach(evaluator, handler, Events.ITERATION_COMPLETED | Events.COMPLETED)

    (Attached to ``COMPLETED`` only, it attaches itself to ``ITERATION_COMPLETED`` at the first
    evaluation, which then logs no images, with a warning.)

    Args:
        tag: key prefix. Default ``"val"``.
        num_images: how many images to show, 1 to 50. Default 16.
        score_threshold: the lowest score of a drawn prediction. Default 0.3.
        metric_name: name of the :class:`~ignite_det.CocoMetric` whose ``class_names`` label the boxes,
            when ``class_names`` is not given. Default ``None``: class ids are shown.
        class_names: category id to class name. Default ``None``.
        box_format: ``"xyxy"``, ``"xywh"`` or ``"cxcywh"``, in pixels, as given to the metric. Default ``"xyxy"``.
        batch_transform: ``f(engine.state.batch)`` -> the batch's images, a sequence of ``(C, H, W)``
            tensors (float in [0, 1], or uint8) or ``(H, W, C)`` arrays, in the order of ``y``. Default:
            ``batch[0]``. Undo any normalisation here.
        output_transform: ``f(engine.state.output)`` -> ``(y_pred, y)``, the per-image dicts given to the
            metric (``boxes``, ``scores``, ``labels``; ``boxes``, ``labels``, optional ``iscrowd``,
            ``image_id``). Default: the output as is. Samples without ``image_id`` are keyed by position.
        global_step_transform: as in :class:`CocoReportHandler`.
        key: the name under ``tag``. Default ``"detections"``.

    Raises:
        ValueError: if ``num_images`` is not in [1, 50] or ``box_format`` is unknown; when called, if a
            batch's images, predictions and targets differ in number.
        RuntimeError: when called with a logger that is not a ``WandBLogger``.
    """

    def __init__(
        self,
        tag: str = "val",
        num_images: int = 16,
        score_threshold: float = 0.3,
        metric_name: str | None = None,
        class_names: Mapping[int, str] | None = None,
        box_format: str = "xyxy",
        batch_transform: Callable[[Any], Sequence[Any]] = _batch_images,
        output_transform: Callable[[Any], tuple[Sequence[Any], Sequence[Any]]] = _output_pair,
        global_step_transform: StepTransform | None = None,
        key: str = "detections",
    ) -> None:
        if isinstance(num_images, bool) or not isinstance(num_images, int) or not 1 <= num_images <= MAX_IMAGES:
            raise ValueError(f"num_images must be an int from 1 to {MAX_IMAGES}, got {num_images!r}")
        if box_format not in _BOX_FORMATS:
            raise ValueError(f"box_format must be one of {_BOX_FORMATS}, got {box_format!r}")
        self.tag, self.key = tag, key
        self.num_images = num_images
        self.score_threshold = float(score_threshold)
        self.metric_name = metric_name
        self.class_names = dict(class_names) if class_names is not None else None
        self.box_format = box_format
        self.batch_transform = batch_transform
        self.output_transform = output_transform
        self.global_step_transform = global_step_transform or _default_step
        self.image_ids: list[int] = []  # the fixed sample, in the order first seen
        self._frozen = False
        self._samples: dict[int, _Sample] = {}
        self._position = 0

    def __call__(self, engine: Engine, logger: WandBLogger, event_name: Any) -> None:
        run = self._active_run(logger)
        if run is None:
            return
        if event_name == Events.ITERATION_COMPLETED:
            self._capture(engine)
        else:
            self._log(engine, logger, event_name, run)

    def _capture(self, engine: Engine) -> None:
        images = self.batch_transform(engine.state.batch)
        y_pred, y = self.output_transform(engine.state.output)
        if not len(images) == len(y_pred) == len(y):
            raise ValueError(
                f"DetectionImagesHandler: the batch has {len(images)} images for {len(y_pred)} predictions and "
                f"{len(y)} targets; pass a batch_transform that returns the images in the order of y "
                "(the default takes batch[0])."
            )
        for image, pred, target in zip(images, y_pred, y):
            image_id = int(target["image_id"]) if "image_id" in target else self._position
            self._position += 1
            if self._wanted(image_id):
                self._samples[image_id] = self._sample(image_id, image, pred, target)

    def _wanted(self, image_id: int) -> bool:
        if image_id in self.image_ids:
            return True
        if self._frozen or len(self.image_ids) >= self.num_images:
            return False
        self.image_ids.append(image_id)
        return True

    def _sample(self, image_id: int, image: Any, pred: Mapping[str, Any], target: Mapping[str, Any]) -> _Sample:
        gt_labels = _as_numpy(target["labels"], np.int64).reshape(-1)
        iscrowd = target.get("iscrowd")
        gt_iscrowd = np.zeros(len(gt_labels), dtype=bool) if iscrowd is None else _as_numpy(iscrowd, bool).reshape(-1)
        return _Sample(
            image_id=image_id,
            image=_to_hwc_uint8(image),
            pred_boxes=_to_xyxy(_as_numpy(pred["boxes"], np.float64), self.box_format),
            pred_scores=_as_numpy(pred["scores"], np.float64).reshape(-1),
            pred_labels=_as_numpy(pred["labels"], np.int64).reshape(-1),
            gt_boxes=_to_xyxy(_as_numpy(target["boxes"], np.float64), self.box_format),
            gt_labels=gt_labels,
            gt_iscrowd=gt_iscrowd,
        )

    def _log(self, engine: Engine, logger: WandBLogger, event_name: Any, run: Any) -> None:
        self._frozen = True
        self._position = 0
        samples, self._samples = self._samples, {}
        if not samples:
            self._attach_capture(engine, logger)
            return
        names = self._names(engine)
        wandb = logger._wandb
        images = [
            wandb.Image(s.image, caption=f"image_id {s.image_id}", boxes=_box_layers(s, names, self.score_threshold))
            for s in (samples[i] for i in self.image_ids if i in samples)
        ]
        logger.log({f"{self.tag}/{self.key}": images}, step=self._step(engine, event_name, run))

    def _attach_capture(self, engine: Engine, logger: WandBLogger) -> None:
        if engine.has_event_handler(self, Events.ITERATION_COMPLETED):
            return
        warnings.warn(
            "DetectionImagesHandler captured no images: attach it with "
            "wandb_logger.attach(evaluator, handler, Events.ITERATION_COMPLETED | Events.COMPLETED). "
            "It now captures from the next evaluation on.",
            stacklevel=2,
        )
        self._frozen = False
        engine.add_event_handler(Events.ITERATION_COMPLETED, self, logger, Events.ITERATION_COMPLETED)

    def _names(self, engine: Engine) -> Mapping[int, str]:
        if self.class_names is not None:
            return self.class_names
        result = engine.state.metrics.get(self.metric_name) if self.metric_name else None
        return dict(getattr(result, "class_names", None) or {})


# ---------------------------------------------------------------------------------------------------------
# One call
# ---------------------------------------------------------------------------------------------------------


def attach_wandb_logging(
    logger: WandBLogger,
    evaluator: Engine,
    trainer: Engine | None = None,
    metric_name: str = "coco",
    tag: str = "val",
    num_images: int = 16,
    score_threshold: float = 0.3,
    box_format: str = "xyxy",
    class_names: Mapping[int, str] | None = None,
    batch_transform: Callable[[Any], Sequence[Any]] = _batch_images,
    output_transform: Callable[[Any], tuple[Sequence[Any], Sequence[Any]]] = _output_pair,
    global_step_transform: StepTransform | None = None,
) -> tuple[CocoReportHandler, DetectionImagesHandler | None]:
    """Log every evaluation of ``evaluator`` to W&B: the 12 COCO numbers, the report and sample images.

    The 12 numbers are logged by the report handler itself, once each: do not also attach an
    ``OutputHandler`` with ``metric_names="all"`` (Ignite spreads a Mapping result into
    ``engine.state.metrics`` and keeps it under its name, so every number would be logged twice).

    Args:
        logger: the ``WandBLogger``.
        evaluator: the engine the :class:`~ignite_det.CocoMetric` is attached to (attach the metric first).
        trainer: when given, everything is logged at the trainer's epoch (``global_step_from_engine``),
            so validation lines up with training logged every epoch; otherwise at 1, 2, ... for each
            evaluation.
        metric_name: name the metric was attached under. Default ``"coco"``.
        tag: key prefix. Default ``"val"``.
        num_images: images to show, 0 (none) to 50. Default 16.
        score_threshold: the lowest score of a drawn prediction. Default 0.3.
        box_format, class_names, batch_transform, output_transform: as in :class:`DetectionImagesHandler`.
        global_step_transform: the step to log at, in place of ``trainer``'s epoch. When training is
            logged every iteration (W&B's step is then the iteration), pass
            ``global_step_from_engine(trainer, Events.ITERATION_COMPLETED)``: the trainer's iteration.

    Returns:
        The report handler and the images handler (``None`` when ``num_images`` is 0).

    Raises:
        ValueError: if ``num_images`` is not in [0, 50] or ``box_format`` is unknown.
    """
    if global_step_transform is not None:
        step = global_step_transform
    elif trainer is not None:
        step = global_step_from_engine(trainer)
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
        )
    report = CocoReportHandler(metric_name, tag=tag, global_step_transform=step, include_stats=True)
    logger.attach(evaluator, report, Events.COMPLETED)
    if images is not None:
        logger.attach(evaluator, images, Events.ITERATION_COMPLETED | Events.COMPLETED)
    return report, images
