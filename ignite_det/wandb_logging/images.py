"""Sample validation images in W&B: the same few images every evaluation, gathered from every process."""

from __future__ import annotations

import io
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import fields
from typing import Any, cast

import ignite.distributed as idist
import numpy as np
import torch
from ignite.engine import Engine, Events
from ignite.handlers.wandb_logger import WandBLogger

from ignite_det.wandb_logging.base import StepTransform, _default_step, _WandBHandler
from ignite_det.wandb_logging.overlays import BOX_FORMATS, _layers, _make_sample, _Sample

__all__ = ["MAX_IMAGES", "DetectionImagesHandler"]

MAX_IMAGES = 50  # W&B recommends fewer than 50 images per step (and keeps at most 108 per key)
_FIELDS = tuple(f.name for f in fields(_Sample))


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
    model is not run again) and logged at ``COMPLETED`` as a list of ``wandb.Image`` under ``tag/key``,
    each with two box layers in pixel coordinates: ``predictions`` with a score at or above
    ``score_threshold`` (caption: class, score and ``TP``, ``FP``, or ``ignored`` on a crowd region, by
    COCOeval's matching at IoU 0.5) and ``ground_truth``.

    Masks (Mask R-CNN's ``masks`` in the predictions and the targets, any form the metric takes) are
    shown as two mask layers, ``predictions`` (a class per label and verdict: ``cat TP``, ``cat FP``)
    and ``ground_truth``; keypoints are drawn on the picture, predictions joined by COCO's person
    skeleton and coloured by verdict, ground truth as white rings. With ``metric_name``, the verdicts
    use the metric's IoU type (mask IoU, OKS), as its evaluation does; without, the box IoU.

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
        score_threshold: the lowest score of a drawn prediction. Default 0.3.
        metric_name: name of the :class:`~ignite_det.CocoMetric` whose ``class_names`` label the boxes,
            when ``class_names`` is not given. Default ``None``: class ids are shown.
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
        if not len(images) == len(y_pred) == len(y):
            raise ValueError(
                f"DetectionImagesHandler: the batch has {len(images)} images for {len(y_pred)} predictions and "
                f"{len(y)} targets; pass a batch_transform that returns the images in the order of y "
                "(the default takes batch[0])."
            )
        for image, pred, target in zip(images, y_pred, y):
            key = self._key(target)
            if image is not None and self._wanted(key):
                self._candidates[key] = _make_sample(key, image, pred, target, self.box_format)
                if len(self._candidates) > self.num_images:
                    del self._candidates[max(self._candidates)]

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
        local, self._candidates, self._position = self._candidates, {}, 0
        if not self.image_ids:  # the first evaluation: agree on the sample, then send only its images
            self.image_ids = sorted(set(_all_keys(list(local), self.num_images)))[: self.num_images]
        mine = [sample for key, sample in local.items() if key in self.image_ids]
        everyone = _exchange(mine, active=run is not None)
        if everyone is None or run is None or logger is None:
            return
        by_key: dict[int, _Sample] = {}
        for sample in everyone:
            by_key.setdefault(sample.image_id, sample)  # a padded repeat, on another process, shown once
        samples = [by_key[key] for key in self.image_ids if key in by_key]
        if not samples:
            return
        names = {int(c): str(n) for c, n in self._names(engine).items()}
        for sample in samples:  # every label of the images: W&B keeps one set of mask classes per key
            for c in (*sample.pred_labels.tolist(), *sample.gt_labels.tolist()):
                names.setdefault(int(c), str(int(c)))
        iou_type, sigmas = self._iou_type(engine)
        wandb = logger._wandb
        images = []
        for sample in samples:
            layers = _layers(sample, names, self.score_threshold, iou_type, sigmas)
            shapes = {"masks": layers["masks"]} if layers["masks"] is not None else {}
            caption = f"image_id {sample.image_id}"
            images.append(wandb.Image(layers["image"], caption=caption, boxes=layers["boxes"], **shapes))
        logger.log({f"{self.tag}/{self.key}": images}, step=self._step(engine, event_name, run))

    def _attach_capture(self, engine: Engine, logger: WandBLogger | None) -> None:
        warnings.warn(
            "DetectionImagesHandler captured no images: attach it with "
            "wandb_logger.attach(evaluator, handler, Events.ITERATION_COMPLETED | Events.COMPLETED). "
            "It now captures from the next evaluation on.",
            stacklevel=2,
        )
        engine.add_event_handler(Events.ITERATION_COMPLETED, self, logger, Events.ITERATION_COMPLETED)

    def _iou_type(self, engine: Engine) -> tuple[str, np.ndarray | None]:
        """The evaluation's IoU type and keypoint sigmas, from the metric's result (boxes without one)."""
        result = engine.state.metrics.get(self.metric_name) if self.metric_name else None
        params = getattr(result, "params", None)
        if params is None:
            return "bbox", None
        return params.iou_type, params.keypoint_sigmas

    def _names(self, engine: Engine) -> Mapping[int, str]:
        if self.class_names is not None:
            return self.class_names
        result = engine.state.metrics.get(self.metric_name) if self.metric_name else None
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
    """Samples as the bytes of an ``.npz`` archive (arrays only: nothing is unpickled at the other end)."""
    buffer = io.BytesIO()
    arrays = {f"{i}.{name}": np.asarray(getattr(s, name)) for i, s in enumerate(samples) for name in _FIELDS}
    np.savez(buffer, **arrays)  # type: ignore[arg-type]
    return np.frombuffer(buffer.getvalue(), dtype=np.uint8).copy()  # writable, for torch.from_numpy


def _decode(payload: np.ndarray) -> list[_Sample]:
    with np.load(io.BytesIO(payload.tobytes()), allow_pickle=False) as archive:
        count = len(archive.files) // len(_FIELDS)
        rows = [{name: archive[f"{i}.{name}"] for name in _FIELDS} for i in range(count)]
    return [_Sample(**{**row, "image_id": int(row["image_id"])}) for row in rows]
