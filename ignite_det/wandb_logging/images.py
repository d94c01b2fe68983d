"""Sample validation images in W&B: the same few images every evaluation, gathered from every process."""

from __future__ import annotations

import io
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast

import ignite.distributed as idist
import numpy as np
import torch
from ignite.engine import Engine, Events
from ignite.handlers.wandb_logger import WandBLogger

from ignite_det.params import BOX_FORMATS
from ignite_det.table import Detections
from ignite_det.wandb_logging.base import StepTransform, _default_step, _WandBHandler
from ignite_det.wandb_logging.overlays import OperatingPoint, _layers, _make_sample, _Sample, error_counts

if TYPE_CHECKING:
    from ignite_det.result import CocoResult

__all__ = ["DEFAULT_SCORE_FLOOR", "MAX_IMAGES", "DetectionImagesHandler"]

MAX_IMAGES = 50  # W&B recommends fewer than 50 images per step (and keeps at most 108 per key)
DEFAULT_SCORE_FLOOR = 0.05  # torchvision's detectors keep boxes from 0.05 (box_score_thresh)
_TABLE_PARTS = ("images", "dets", "gts", "det_rle", "gt_rle")


def _batch_images(batch: Any) -> Sequence[Any]:
    """Default ``batch_transform``: the images of an ``(images, targets)`` batch."""
    return batch[0]


def _output_pair(output: Any) -> tuple[Sequence[Mapping[str, Any]], Sequence[Mapping[str, Any]]]:
    """Default ``output_transform``: the evaluator's ``(y_pred, y)`` output as is."""
    return output[0], output[1]


class DetectionImagesHandler(_WandBHandler):
    """Log a fixed sample of validation images with predicted and ground truth boxes.

    The sample is the ``num_images`` smallest image ids of the first evaluation that sees any image (with
    a picture: see ``batch_transform``), in increasing order; later evaluations show the same images
    (those of them they see), so epochs can be compared. Being the smallest ids, the sample depends
    neither on the loader's order nor on how images are spread over processes. Images and boxes are
    captured at ``ITERATION_COMPLETED`` from ``engine.state.batch`` and ``engine.state.output`` (the
    model is not run again) and logged at ``COMPLETED`` as a list of ``wandb.Image`` under ``tag/key``.

    Each sample is read as the metric reads it (its checked input contract) and its verdicts are the
    metric's own: COCOeval's matching at the metric's operating IoU (``f1_iou_threshold``), honouring
    ``max_detections``; the caption says which (``image_id 7; verdicts at IoU 0.5, operating point
    score >= 0.343``). Every class is a (category, verdict) pair, so W&B's class toggles isolate, say,
    the false positives: ``cat TP``, ``cat FP``, ``cat ignored`` (on a crowd region), ``cat uncounted``
    (beyond ``max_detections``) for detections; ``cat``, ``cat missed`` (no detection at the operating
    point matched it), ``cat (crowd)`` for ground truth. Three box layers, in pixels:

    - ``predictions``: detections scoring at least the operating point's threshold (what the confusion
      matrix counts), captioned with score, verdict and matched IoU (``0.87 TP IoU 0.91``);
    - ``below_threshold``: detections from ``score_threshold`` (a low floor) up to it, alike;
    - ``ground_truth``.

    Each box carries its ``score``, so W&B's score slider filters them. Masks (Mask R-CNN's ``masks``
    in the predictions and the targets, any form the metric takes) are shown as two mask layers,
    ``predictions`` (those at the operating point) and ``ground_truth``, with the same classes;
    keypoints are drawn on the picture, predictions at the operating point joined by COCO's person
    skeleton and coloured by verdict, ground truth as white rings. With ``metric_name``, the verdicts
    follow the metric's result (its IoU type, thresholds, ``max_detections`` and operating point);
    without, COCO's box defaults at IoU 0.5, every score counted.

    Attach it to both events::

        wandb_logger.attach(evaluator, handler, Events.ITERATION_COMPLETED | Events.COMPLETED)

    (Attached to ``COMPLETED`` only, it attaches itself to ``ITERATION_COMPLETED`` at the first
    evaluation, which then logs no images, with a warning.)

    Under distribution every process sees a part of the images, so the handler must be attached on
    **every** process, as the metric is: with the ``WandBLogger`` where there is one and with ``None``
    elsewhere (``attach_wandb_logging(None, evaluator, ...)`` does this). At ``COMPLETED`` the processes
    agree on the sample (at the first evaluation: one collective of ``num_images`` ids per process),
    exchange its images (two collectives, whether or not a process logs) and the process with the run
    logs them; an image that a ``DistributedSampler`` repeats to pad the last batch is
    shown once.

    Args:
        tag: key prefix. Default ``"val"``.
        num_images: how many images to show, 1 to 50. Default 16.
        score_threshold: the lowest score of a logged prediction (the floor of W&B's score slider). Default
            :data:`DEFAULT_SCORE_FLOOR`, 0.05.
        metric_name: name of the :class:`~ignite_det.CocoMetric` whose result gives the verdicts, and whose
            ``class_names`` label the boxes when ``class_names`` is not given. Default ``None``: boxes by
            COCO's defaults, class ids shown.
        class_names: category id to class name. Default ``None``.
        box_format: ``"xyxy"``, ``"xywh"`` or ``"cxcywh"``, in pixels, as given to the metric. Default ``"xyxy"``.
        batch_transform: ``f(engine.state.batch)`` -> the batch's images, a sequence of ``(C, H, W)``
            tensors (float in [0, 1], or uint8) or ``(H, W, C)`` arrays, in the order of ``y``; ``None``
            for an image that is not to be shown (the sample is then chosen among the others). Default:
            ``batch[0]``. Undo any normalisation here.
        output_transform: ``f(engine.state.output)`` -> ``(y_pred, y)``, the per-image dicts given to the
            metric (``boxes``, ``scores``, ``labels``; ``boxes``, ``labels``, optional ``iscrowd``,
            ``image_id``). Default: the output as is. A sample without ``image_id`` is keyed by its position:
            the ``k``-th image of process ``r`` out of ``n`` is ``k * n + r``, its index in the dataset
            under a ``DistributedSampler(shuffle=False)``; give targets an ``image_id`` for a sample that
            does not depend on the sampler.
        global_step_transform: as in :class:`~ignite_det.CocoReportHandler`.
        key: the name under ``tag``. Default ``"detections"``.
        num_worst: also capture the pictures of the ``num_worst`` worst images (0 to 50), for the image column
            of the per-image table (``CocoReportHandler(images=handler)``): each batch's images are matched
            as the metric matches them (its parameters and categories, from its previous result; at the first
            evaluation COCO's box defaults and every label, so a detection of a category the metric does not
            evaluate may count there), and each process keeps the pictures of its worst ones by
            :meth:`~ignite_det.PerImage.worst_first`'s order; at the end the images of the result's
            ``num_worst`` first rows get a picture (with the sample's boxes and verdicts). Under distribution,
            only for targets with an ``image_id``. Default 0: none.

    Raises:
        ValueError: if ``num_images`` is not in [1, 50] or ``box_format`` is unknown; when called, if a
            batch's images, predictions and targets differ in number.
        RuntimeError: when called with a logger that is neither a ``WandBLogger`` nor ``None``.

    Example:
        .. code-block:: python

            handler = DetectionImagesHandler(num_images=8, metric_name="coco", box_format="xywh")
            wandb_logger.attach(evaluator, handler, Events.ITERATION_COMPLETED | Events.COMPLETED)
    """

    def __init__(
        self,
        tag: str = "val",
        num_images: int = 16,
        score_threshold: float = DEFAULT_SCORE_FLOOR,
        metric_name: str | None = None,
        class_names: Mapping[int, str] | None = None,
        box_format: str = "xyxy",
        batch_transform: Callable[[Any], Sequence[Any]] = _batch_images,
        output_transform: Callable[[Any], tuple[Sequence[Any], Sequence[Any]]] = _output_pair,
        global_step_transform: StepTransform | None = None,
        key: str = "detections",
        num_worst: int = 0,
    ) -> None:
        if isinstance(num_images, bool) or not isinstance(num_images, int) or not 1 <= num_images <= MAX_IMAGES:
            raise ValueError(f"num_images must be an int from 1 to {MAX_IMAGES}, got {num_images!r}")
        if isinstance(num_worst, bool) or not isinstance(num_worst, int) or not 0 <= num_worst <= MAX_IMAGES:
            raise ValueError(f"num_worst must be an int from 0 to {MAX_IMAGES}, got {num_worst!r}")
        if box_format not in BOX_FORMATS:
            raise ValueError(f"box_format must be one of {BOX_FORMATS}, got {box_format!r}")
        self.tag, self.key = tag, key
        self.num_images = num_images
        self.score_threshold = float(score_threshold)
        self.metric_name = metric_name
        self.class_names = dict(class_names) if class_names is not None else None
        self.box_format = box_format
        self.batch_transform = batch_transform
        self.output_transform = output_transform
        self.global_step_transform = global_step_transform or _default_step
        self.image_ids: list[int] = []  # the fixed sample, increasing; empty until chosen
        self._candidates: dict[int, _Sample] = {}  # this process's captures in the current evaluation
        self._position = 0
        self.num_worst = num_worst
        self._worst: dict[int, tuple[tuple[int, ...], _Sample]] = {}  # this process's worst: image id -> (rank, sample)
        self._point: OperatingPoint | None = None  # the last result's parameters, which the worst are matched by
        self.worst: dict[int, Any] = {}  # after images(): image id -> wandb.Image of the worst images

    def __call__(self, engine: Engine, logger: WandBLogger | None, event_name: Any) -> None:
        run = self._active_run(logger)
        if run is None and idist.backend() is None:
            return  # nothing to log here, and no other process to send samples to
        if event_name == Events.ITERATION_COMPLETED:
            self._capture(engine)
        elif engine.has_event_handler(self, Events.ITERATION_COMPLETED):
            self._log(engine, logger, event_name, run)
        else:
            self._attach_capture(engine, logger)

    # --- capture, on every process ---
    def _capture(self, engine: Engine) -> None:
        images = self.batch_transform(engine.state.batch)
        y_pred, y = self.output_transform(engine.state.output)
        self.add(images, y_pred, y)

    def add(self, images: Sequence[Any], y_pred: Sequence[Mapping[str, Any]], y: Sequence[Mapping[str, Any]]) -> None:
        """Capture a batch: its images (see ``batch_transform``) with the ``(y_pred, y)`` given to the metric.

        Raises:
            ValueError: if the images, predictions and targets differ in number.
        """
        if not len(images) == len(y_pred) == len(y):
            raise ValueError(
                f"DetectionImagesHandler: the batch has {len(images)} images for {len(y_pred)} predictions and "
                f"{len(y)} targets; pass a batch_transform that returns the images in the order of y "
                "(the default takes batch[0])."
            )
        keys = [self._key(target) for target in y]
        for key, image, pred, target in zip(keys, images, y_pred, y):
            if image is not None and self._wanted(key):
                self._candidates[key] = _make_sample(key, image, pred, target, self.box_format)
                if len(self._candidates) > self.num_images:
                    del self._candidates[max(self._candidates)]
        if self.num_worst:
            self._offer_worst(keys, images, y_pred, y)

    def _offer_worst(
        self,
        keys: list[int],
        images: Sequence[Any],
        y_pred: Sequence[Mapping[str, Any]],
        y: Sequence[Mapping[str, Any]],
    ) -> None:
        """Keep the pictures of this process's ``num_worst`` worst images so far (worst_first's order)."""
        if idist.get_world_size() > 1 and not all("image_id" in target for target in y):
            return  # the metric numbers such images by arrival, which no process can tell from its position
        shown = [k for k, image in enumerate(images) if image is not None]
        point = self._point or OperatingPoint.of(None)
        counts = error_counts([y_pred[k] for k in shown], [y[k] for k in shown], self.box_format, point)
        if counts is None:
            return
        for k, row in zip(shown, counts.tolist()):
            _, _, _, _, fp50, fn50, _, fp75, fn75 = row
            rank = (-(fp50 + fn50), -fn50, -(fp75 + fn75), keys[k])
            if len(self._worst) >= self.num_worst and rank >= max(r for r, _ in self._worst.values()):
                continue
            self._worst[keys[k]] = (rank, _make_sample(keys[k], images[k], y_pred[k], y[k], self.box_format))
            if len(self._worst) > self.num_worst:
                del self._worst[max(self._worst, key=lambda i: self._worst[i][0])]

    def _key(self, target: Mapping[str, Any]) -> int:
        if "image_id" in target:
            return int(target["image_id"])
        key = self._position * idist.get_world_size() + idist.get_rank()
        self._position += 1
        return key

    def _wanted(self, key: int) -> bool:
        """Once chosen, the sample's images; before, this process's ``num_images`` smallest keys so far,
        among which are all of its images in the global ``num_images`` smallest.
        """
        if self.image_ids:
            return key in self.image_ids
        if key in self._candidates or len(self._candidates) < self.num_images:
            return True
        return key < max(self._candidates)

    # --- the end of an evaluation: exchange (every process), choose, log (where the run is) ---
    def _log(self, engine: Engine, logger: WandBLogger | None, event_name: Any, run: Any) -> None:
        step = self._given_step(engine, event_name)  # before the exchange (see _given_step)
        result = engine.state.metrics.get(self.metric_name) if self.metric_name else None
        images = self.images(logger, result if hasattr(result, "params") else None, active=run is not None)
        if images and logger is not None:
            logger.log({f"{self.tag}/{self.key}": images}, step=self._kept_step(step, run))

    def images(self, wandb: Any, result: CocoResult | None, active: bool = True) -> list[Any]:
        """The ``wandb.Image`` list of the evaluation captured since the last call, which it ends; ``wandb``
        builds them (the wandb module, or a ``WandBLogger``, which forwards to it), ``result`` gives the
        verdicts. Under distribution, call it on every process: only where ``active`` does it return
        images (elsewhere an empty list). With ``num_worst``, it also sets :attr:`worst`: image id to
        ``wandb.Image`` for those of the result's ``num_worst`` worst images that were captured.
        """
        local, self._candidates, self._position = self._candidates, {}, 0
        worst, self._worst, self.worst = [sample for _, sample in self._worst.values()], {}, {}
        if not self.image_ids:  # the first evaluation: agree on the sample, then send only its images
            self.image_ids = sorted(set(_all_keys(list(local), self.num_images)))[: self.num_images]
        mine = [sample for key, sample in local.items() if key in self.image_ids]
        everyone = _exchange(mine, active=active)
        worst_everyone = _exchange(worst, active=active) if self.num_worst else None
        if result is not None and hasattr(result, "params"):
            self._point = OperatingPoint.of(result)  # the next evaluation's worst are matched by its parameters
        if everyone is None or not active:
            return []
        by_key: dict[int, _Sample] = {}
        for sample in everyone:
            by_key.setdefault(sample.image_id, sample)  # a padded repeat, on another process, shown once
        samples = [by_key[key] for key in self.image_ids if key in by_key]
        worst_by_key = {sample.image_id: sample for sample in worst_everyone or []}
        worst_ids = [] if result is None or not self.num_worst else result.per_image.worst_first().image_id.tolist()
        worst_samples = [worst_by_key[key] for key in worst_ids[: self.num_worst] if key in worst_by_key]
        names = {int(c): str(n) for c, n in self._names(result).items()}
        for sample in (*samples, *worst_samples):  # every label of the images: W&B keeps one set of classes per key
            for table in sample.tables.values():
                for c in (*table.det_labels.tolist(), *table.gt_labels.tolist()):
                    names.setdefault(int(c), str(int(c)))
        point = OperatingPoint.of(result)
        self.worst = {sample.image_id: self._picture(wandb, sample, names, point) for sample in worst_samples}
        return [self._picture(wandb, sample, names, point) for sample in samples]

    def _picture(self, wandb: Any, sample: _Sample, names: Mapping[int, str], point: OperatingPoint) -> Any:
        """One ``wandb.Image``: the picture, its box (and mask) layers, the caption naming the operating point."""
        layers = _layers(sample, names, self.score_threshold, point)
        shapes = {"masks": layers["masks"]} if layers["masks"] is not None else {}
        caption = f"image_id {sample.image_id}; {layers['point'].words()}"
        return wandb.Image(layers["image"], caption=caption, boxes=layers["boxes"], **shapes)

    def _attach_capture(self, engine: Engine, logger: WandBLogger | None) -> None:
        warnings.warn(
            "DetectionImagesHandler captured no images: attach it with "
            "wandb_logger.attach(evaluator, handler, Events.ITERATION_COMPLETED | Events.COMPLETED). "
            "It now captures from the next evaluation on.",
            stacklevel=2,
        )
        engine.add_event_handler(Events.ITERATION_COMPLETED, self, logger, Events.ITERATION_COMPLETED)

    def _names(self, result: CocoResult | None) -> Mapping[int, str]:
        if self.class_names is not None:
            return self.class_names
        return dict(getattr(result, "class_names", None) or {})


# ---------------------------------------------------------------------------------------------------------
# The exchange between processes
# ---------------------------------------------------------------------------------------------------------


def _all_keys(keys: list[int], most: int) -> list[int]:
    """Every process's keys (at most ``most`` each), on every process, in one collective."""
    if idist.backend() is None:
        return keys
    row = torch.zeros(most + 1, dtype=torch.int64)
    row[0] = len(keys)
    row[1 : 1 + len(keys)] = torch.tensor(keys, dtype=torch.int64)
    rows = cast(torch.Tensor, idist.all_gather(row.to(idist.device()))).cpu().reshape(-1, most + 1).tolist()
    return [key for count, *row_keys in rows for key in row_keys[:count]]


def _exchange(local: list[_Sample], active: bool) -> list[_Sample] | None:
    """Every process's samples, rank after rank, on every process; ``None`` when no process is ``active``.

    Two collectives (the sizes and whether each process logs, then the samples as bytes), called by every
    process. Without distribution, the local samples.
    """
    if idist.backend() is None:
        return local if active else None
    payload = _encode(local)
    device = idist.device()
    mine = torch.tensor([[len(payload), int(active)]], device=device)
    sizes = cast(torch.Tensor, idist.all_gather(mine)).cpu().tolist()
    if not any(flag for _, flag in sizes):
        return None
    with warnings.catch_warnings():
        # Ignite 0.5 indexes with a list inside this helper, which torch 2.x deprecates; the result is right.
        warnings.filterwarnings("ignore", message="Using a non-tuple sequence for multidimensional indexing")
        parts = idist.all_gather_tensors_with_shapes(torch.from_numpy(payload).to(device), [[n] for n, _ in sizes])
    return [sample for part in parts for sample in _decode(part.cpu().numpy())]


def _encode(samples: list[_Sample]) -> np.ndarray:
    """Samples as the bytes of an ``.npz`` archive (arrays only: nothing is unpickled at the other end);
    each image's tables travel in the form of the metric's own gather (``Detections.to_tensors``)."""
    buffer = io.BytesIO()
    arrays: dict[str, np.ndarray] = {}
    for i, sample in enumerate(samples):
        arrays[f"{i}.image_id"] = np.asarray(sample.image_id)
        arrays[f"{i}.image"] = sample.image
        for kind, table in sample.tables.items():
            for part, tensor in zip(_TABLE_PARTS, (*table.to_tensors(), *table.rle_tensors())):
                arrays[f"{i}.{kind}.{part}"] = tensor.numpy()
    np.savez(buffer, **arrays)  # type: ignore[arg-type]
    return np.frombuffer(buffer.getvalue(), dtype=np.uint8).copy()  # writable, for torch.from_numpy


def _decode(payload: np.ndarray) -> list[_Sample]:
    with np.load(io.BytesIO(payload.tobytes()), allow_pickle=False) as archive:
        arrays = {name: archive[name] for name in archive.files}
    count = sum(name.endswith(".image_id") for name in arrays)
    samples = []
    for i in range(count):
        kinds = sorted({name.split(".")[1] for name in arrays if name.startswith(f"{i}.") and name.count(".") == 2})
        tables = {
            kind: Detections.from_tensors(*(torch.from_numpy(arrays[f"{i}.{kind}.{part}"]) for part in _TABLE_PARTS))
            for kind in kinds
        }
        samples.append(_Sample(image_id=int(arrays[f"{i}.image_id"]), image=arrays[f"{i}.image"], tables=tables))
    return samples
