"""``ignite-det evaluate``: COCO box AP of a results file, through the same metric and handlers as training.

Usage::

    ignite-det evaluate GT.json PREDICTIONS.json [--backend faster_coco_eval] [--per-class]
        [--output report.json] [--wandb-project NAME --wandb-mode offline] [--images-dir DIR]
    python -m ignite_det evaluate ...

``GT.json`` is a COCO instances file, ``PREDICTIONS.json`` a COCO results list (``image_id``,
``category_id``, ``bbox`` in xywh pixels, ``score``). Both are validated, converted to arrays in one
pass each, grouped by image and fed to an Ignite ``Engine`` with :class:`~ignite_det.CocoMetric`
attached (``box_format="xywh"``, class names from the ground truth's categories). Every ground truth
image is evaluated, with or without predictions, as ``COCOeval`` does.

Exit status: 0 on success; 2 for a usage or input mistake, reported as one line on stderr that names
the file and the problem.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from ignite.engine import Engine
from ignite.handlers import ProgressBar
from ignite.handlers.wandb_logger import WandBLogger

from ignite_det.coco_backend import gc_paused
from ignite_det.metric import CocoMetric
from ignite_det.result import CocoResult
from ignite_det.wandb_handlers import attach_wandb_logging

EXIT_USAGE = 2
BATCH_SIZE = 256  # images per update(): few Python round trips, small enough for a progress bar to move
NUM_SHOWN_IMAGES = 16
_LISTED = 5  # offending ids named in a message
_MAX_ID = 2**53  # CocoMetric's limit on ids


class InputError(Exception):
    """A mistake in an input file or argument: reported as one line, never as a traceback."""


# ---------------------------------------------------------------------------------------------------------
# Arguments
# ---------------------------------------------------------------------------------------------------------


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ignite-det", description="Exact COCO detection metrics.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    evaluate = commands.add_parser(
        "evaluate",
        help="COCO box AP/AR of a results file",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    evaluate.add_argument("gt", type=Path, metavar="GT.json", help="COCO instances file (ground truth)")
    evaluate.add_argument("predictions", type=Path, metavar="PREDICTIONS.json", help="COCO results list")
    evaluate.add_argument("--iou-type", default="bbox", help="only 'bbox' is supported (default: bbox)")
    evaluate.add_argument("--backend", default="native", choices=("native", "pycocotools", "faster_coco_eval"))
    evaluate.add_argument("--max-dets", type=int, nargs="+", metavar="N", help="default: 1 10 100")
    evaluate.add_argument("--iou-thresholds", type=float, nargs="+", metavar="T", help="default: 0.50:0.05:0.95")
    evaluate.add_argument("--per-class", action="store_true", help="also print the per-class table")
    evaluate.add_argument("--output", type=Path, metavar="REPORT.json", help="write the full report as JSON")
    evaluate.add_argument("--wandb-project", metavar="NAME", help="log the report to this W&B project")
    evaluate.add_argument(
        "--wandb-mode", choices=("online", "offline", "disabled"), help="default: WANDB_MODE, else online"
    )
    evaluate.add_argument("--images-dir", type=Path, metavar="DIR", help="images by file_name, shown in W&B")
    return parser


def _check_args(args: argparse.Namespace) -> None:
    if args.iou_type != "bbox":
        raise InputError(
            f"--iou-type {args.iou_type} is not supported: ignite-det evaluates boxes only (--iou-type bbox); "
            "segm and keypoints need pycocotools' COCOeval directly"
        )
    if args.images_dir is not None and args.wandb_project is None:
        raise InputError("--images-dir only shows images in W&B: give --wandb-project too")
    if args.output is not None and not args.output.parent.is_dir():
        raise InputError(f"--output {args.output}: the directory {args.output.parent} does not exist")
    if args.images_dir is not None and not args.images_dir.is_dir():
        raise InputError(f"--images-dir {args.images_dir}: not a directory")


# ---------------------------------------------------------------------------------------------------------
# JSON -> arrays (one pass per column; the slow, per-entry search runs only to word an error)
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Source:
    """Where a list of entries came from, to name it in messages: ``GT.json: annotations[3] ...``."""

    path: Path
    name: str

    def error(self, message: str) -> InputError:
        return InputError(f"{self.path}: {message}")


def _load_json(path: Path) -> Any:
    try:
        with open(path, "rb") as file:
            return json.load(file)
    except OSError as error:
        raise InputError(f"{path}: cannot read the file ({error.strerror or error})") from None
    except (ValueError, RecursionError) as error:  # JSONDecodeError and bad UTF-8 are ValueErrors
        raise InputError(f"{path}: not valid JSON ({error})") from None


def _column(entries: list[Any], key: str, source: _Source, default: Any = None) -> list[Any]:
    try:
        if default is None:
            return [entry[key] for entry in entries]
        return [entry.get(key, default) for entry in entries]
    except (KeyError, TypeError, AttributeError):
        pass
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise source.error(f"{source.name}[{index}] must be an object, got {type(entry).__name__}")
        if key not in entry:
            raise source.error(f"{source.name}[{index}] has no '{key}' key (it has {sorted(entry)})")
    raise AssertionError("unreachable")  # pragma: no cover


def _field(entries: list[Any], key: str, source: _Source, integer: bool, default: Any = None) -> np.ndarray:
    """One numeric key of every entry as an int64 or (finite) float64 array."""
    return _numbers(_column(entries, key, source, default), key, source, integer)


def _numbers(values: list[Any], key: str, source: _Source, integer: bool) -> np.ndarray:
    allowed = (int,) if integer else (int, float)
    if not set(map(type, values)) <= set(allowed):  # exact types: bool and str are not numbers here
        index = next(i for i, v in enumerate(values) if type(v) not in allowed)
        kind = "an integer" if integer else "a number"
        raise source.error(f"{source.name}[{index}]['{key}'] must be {kind}, got {values[index]!r}")
    try:
        array = np.array(values, dtype=np.int64 if integer else np.float64)
    except OverflowError:
        raise source.error(f"'{key}' values must fit in 64 bits") from None
    if integer and len(array) and int(np.abs(array).max()) >= _MAX_ID:
        raise source.error(f"'{key}' values must be smaller than 2**53 in magnitude (ids travel as float64)")
    if not integer:
        _check_finite(array, key, source)
    return array.reshape(len(values))


def _check_finite(array: np.ndarray, key: str, source: _Source) -> None:
    bad = ~np.isfinite(array)
    if bad.any():
        index = int(np.flatnonzero(bad.reshape(len(array), -1).any(axis=1))[0])
        raise source.error(f"{source.name}[{index}]['{key}'] must be finite, got {array[index].tolist()}")


def _boxes(entries: list[Any], source: _Source) -> np.ndarray:
    values = _column(entries, "bbox", source)
    if set(map(type, values)) <= {list} and set(map(len, values)) <= {4}:
        flat = list(itertools.chain.from_iterable(values))
        if set(map(type, flat)) <= {int, float}:
            boxes = np.array(flat, dtype=np.float64).reshape(-1, 4)
            _check_finite(boxes, "bbox", source)
            negative = (boxes[:, 2] < 0) | (boxes[:, 3] < 0)
            if negative.any():
                index = int(np.flatnonzero(negative)[0])
                raise source.error(
                    f"{source.name}[{index}]['bbox'] must be [x, y, width, height] with width, height >= 0, "
                    f"got {values[index]}"
                )
            return boxes
    index = next(i for i, v in enumerate(values) if not _is_box(v))
    raise source.error(
        f"{source.name}[{index}]['bbox'] must be a list of 4 numbers [x, y, w, h], got {values[index]!r}"
    )


def _is_box(value: Any) -> bool:
    return type(value) is list and len(value) == 4 and all(type(v) in (int, float) for v in value)


def _entries(document: Any, key: str, path: Path) -> list[Any]:
    if not isinstance(document, dict):
        raise InputError(f"{path}: a COCO instances file must be a JSON object, got {type(document).__name__}")
    if key not in document:
        raise InputError(f"{path}: has no '{key}' key; a COCO instances file has images, annotations, categories")
    if not isinstance(document[key], list):
        raise InputError(f"{path}: '{key}' must be a list, got {type(document[key]).__name__}")
    return document[key]


def _index_of(
    ids: np.ndarray, known: np.ndarray, what: str, source: _Source, known_as: str = "the ground truth"
) -> np.ndarray:
    """Position in ``known`` of each of ``ids``; an error naming a few ids that are not known."""
    order = np.argsort(known, kind="stable")
    sorted_known = known[order]
    position = np.minimum(np.searchsorted(sorted_known, ids), max(len(known) - 1, 0))
    found = sorted_known[position] == ids if len(known) else np.zeros(len(ids), dtype=bool)
    if not found.all():
        unknown = np.unique(ids[~found])
        listed = ", ".join(map(str, unknown[:_LISTED].tolist())) + (", ..." if len(unknown) > _LISTED else "")
        raise source.error(
            f"{int((~found).sum())} of {len(ids)} {source.name} have {what} not in {known_as} "
            f"({len(unknown)} distinct: {listed})"
        )
    return order[position]


# ---------------------------------------------------------------------------------------------------------
# The two files
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GroundTruth:
    """A COCO instances file as arrays; ``image_index`` points into ``image_ids`` (file order)."""

    image_ids: np.ndarray  # int64 (I,)
    file_names: list[str | None]
    class_names: dict[int, str]
    boxes: np.ndarray  # float64 (M, 4) xywh
    labels: np.ndarray  # int64 (M,)
    area: np.ndarray  # float64 (M,) the 'area' field
    iscrowd: np.ndarray  # int64 (M,)
    image_index: np.ndarray  # int64 (M,)


@dataclass(frozen=True)
class Predictions:
    """A COCO results list as arrays, in file order; ``image_index`` points into the ground truth's images."""

    boxes: np.ndarray  # float64 (N, 4) xywh
    scores: np.ndarray  # float64 (N,)
    labels: np.ndarray  # int64 (N,)
    image_index: np.ndarray  # int64 (N,)


def load_ground_truth(path: Path) -> GroundTruth:
    document = _load_json(path)
    images, annotations, categories = (_entries(document, key, path) for key in ("images", "annotations", "categories"))
    if not images:
        raise InputError(f"{path}: 'images' is empty; there is nothing to evaluate")
    image_ids = _unique_ids(images, _Source(path, "images"))
    category_ids = _unique_ids(categories, _Source(path, "categories"))
    source = _Source(path, "annotations")
    labels = _field(annotations, "category_id", source, integer=True)
    area = _field(annotations, "area", source, integer=False)
    iscrowd = _field(annotations, "iscrowd", source, integer=True, default=0)
    _check_values(area >= 0, "area", "must be >= 0", area, source)
    _check_values((iscrowd == 0) | (iscrowd == 1), "iscrowd", "must be 0 or 1", iscrowd, source)
    _index_of(labels, category_ids, "category ids", source, known_as="its 'categories'")
    image_index = _index_of(
        _field(annotations, "image_id", source, integer=True), image_ids, "image ids", source, known_as="its 'images'"
    )
    return GroundTruth(
        image_ids=image_ids,
        file_names=_column(images, "file_name", _Source(path, "images"), default=""),
        class_names={int(c): str(entry.get("name", c)) for c, entry in zip(category_ids.tolist(), categories)},
        boxes=_boxes(annotations, source),
        labels=labels,
        area=area,
        iscrowd=iscrowd,
        image_index=image_index,
    )


def _unique_ids(entries: list[Any], source: _Source) -> np.ndarray:
    ids = _field(entries, "id", source, integer=True)
    unique, counts = np.unique(ids, return_counts=True)
    if (counts > 1).any():
        repeated = unique[counts > 1][:_LISTED].tolist()
        raise source.error(f"{source.name} ids must be unique, got repeated ids {repeated}")
    return ids


def _check_values(ok: np.ndarray, key: str, rule: str, values: np.ndarray, source: _Source) -> None:
    if not ok.all():
        index = int(np.flatnonzero(~ok)[0])
        raise source.error(f"{source.name}[{index}]['{key}'] {rule}, got {values[index].tolist()}")


def load_predictions(path: Path, gt: GroundTruth) -> Predictions:
    results = _load_json(path)
    if not isinstance(results, list):
        raise InputError(
            f"{path}: a COCO results file must be a JSON list of "
            f"{{image_id, category_id, bbox, score}} objects, got a JSON {type(results).__name__}"
        )
    source = _Source(path, "results")
    image_ids = _field(results, "image_id", source, integer=True)
    labels = _field(results, "category_id", source, integer=True)
    scores = _field(results, "score", source, integer=False)
    boxes = _boxes(results, source)
    _index_of(labels, np.array(list(gt.class_names), dtype=np.int64), "category ids", source)
    return Predictions(boxes, scores, labels, _index_of(image_ids, gt.image_ids, "image ids", source))


# ---------------------------------------------------------------------------------------------------------
# Arrays -> Ignite batches
# ---------------------------------------------------------------------------------------------------------


class _ByImage:
    """Columns regrouped by image (stable, so each image keeps its boxes in file order), sliced per image."""

    def __init__(self, columns: dict[str, np.ndarray], image_index: np.ndarray, num_images: int) -> None:
        order = np.argsort(image_index, kind="stable")
        self._columns = {key: torch.from_numpy(np.ascontiguousarray(v[order])) for key, v in columns.items()}
        counts = np.bincount(image_index, minlength=num_images)
        self._offsets = np.concatenate([[0], np.cumsum(counts)]).tolist()

    def __getitem__(self, image: int) -> dict[str, torch.Tensor]:
        start, stop = self._offsets[image], self._offsets[image + 1]
        return {key: column[start:stop] for key, column in self._columns.items()}


class _Batch(NamedTuple):
    images: list[Any] | None
    y_pred: list[dict[str, Any]]
    y: list[dict[str, Any]]


class _LazyImage:
    """An image file read only when the images handler converts it (``np.asarray``)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        from PIL import Image

        with Image.open(self.path) as image:
            return np.asarray(image.convert("RGB"), dtype=dtype)


def _batches(gt: GroundTruth, predictions: Predictions, order: Sequence[int], images_dir: Path | None) -> list[_Batch]:
    num_images = len(gt.image_ids)
    targets = _ByImage(
        {"boxes": gt.boxes, "labels": gt.labels, "area": gt.area, "iscrowd": gt.iscrowd}, gt.image_index, num_images
    )
    outputs = _ByImage(
        {"boxes": predictions.boxes, "scores": predictions.scores, "labels": predictions.labels},
        predictions.image_index,
        num_images,
    )
    image_ids = gt.image_ids.tolist()
    batches = []
    for start in range(0, len(order), BATCH_SIZE):
        chunk = order[start : start + BATCH_SIZE]
        images = None if images_dir is None else [_LazyImage(images_dir / str(gt.file_names[i])) for i in chunk]
        y = [{**targets[i], "image_id": image_ids[i]} for i in chunk]
        batches.append(_Batch(images, [outputs[i] for i in chunk], y))
    return batches


def _image_order(gt: GroundTruth, images_dir: Path | None) -> tuple[list[int], int]:
    """Images in file order, those with a file in ``images_dir`` first (the images handler shows the first
    ones it sees); and how many have a file."""
    if images_dir is None:
        return list(range(len(gt.image_ids))), 0
    found = [bool(name) and (images_dir / str(name)).is_file() for name in gt.file_names]
    with_file = [i for i, ok in enumerate(found) if ok]
    return with_file + [i for i, ok in enumerate(found) if not ok], len(with_file)


# ---------------------------------------------------------------------------------------------------------
# Evaluation
# ---------------------------------------------------------------------------------------------------------


def _metric(args: argparse.Namespace, gt: GroundTruth) -> CocoMetric:
    thresholds = args.iou_thresholds
    f1_iou = 0.5 if thresholds is None or any(abs(t - 0.5) < 1e-12 for t in thresholds) else thresholds[0]
    try:
        return CocoMetric(
            box_format="xywh",
            backend=args.backend,
            class_names=gt.class_names,
            iou_thresholds=thresholds,
            max_detections=args.max_dets,
            f1_iou_threshold=f1_iou,
            output_transform=lambda output: (output.y_pred, output.y),
        )
    except (ValueError, ModuleNotFoundError) as error:  # thresholds out of range; faster-coco-eval missing
        raise InputError(str(error)) from None


def _wandb_logger(args: argparse.Namespace, evaluator: Engine, gt: GroundTruth, shown: int) -> WandBLogger:
    """The training path's logging: ``WandBLogger`` plus the report and (with images) the images handler."""
    config = {"gt": str(args.gt), "predictions": str(args.predictions), "backend": args.backend}
    mode = {"mode": args.wandb_mode} if args.wandb_mode else {}  # else W&B's own settings (WANDB_MODE)
    logger = WandBLogger(project=args.wandb_project, config=config, settings={"silent": True}, **mode)
    attach_wandb_logging(
        logger,
        evaluator,
        num_images=min(shown, NUM_SHOWN_IMAGES),
        box_format="xywh",
        class_names=gt.class_names,
        batch_transform=lambda batch: batch.images,
        output_transform=lambda output: (output.y_pred, output.y),
    )
    return logger


def _finish_wandb(logger: WandBLogger) -> None:
    """Finish the run, then say where it is (and how to upload it when offline)."""
    run = logger._wandb.run
    if run is None or run.disabled:
        logger.close()
        return
    run_dir, offline, url = Path(run.dir).parent, run.offline, run.url
    logger.close()
    if offline:
        print(f"W&B offline run saved in {run_dir}; upload it with: wandb sync {run_dir}", file=sys.stderr)
    else:
        print(f"W&B run: {url or run_dir}", file=sys.stderr)


def evaluate(args: argparse.Namespace) -> CocoResult:
    """Load, validate, run the evaluator; returns the :class:`~ignite_det.CocoResult`."""
    gt = load_ground_truth(args.gt)
    predictions = load_predictions(args.predictions, gt)
    metric = _metric(args, gt)
    order, with_file = _image_order(gt, args.images_dir)
    if args.images_dir is not None and with_file == 0:
        print(f"ignite-det: warning: no image of {args.gt} is in {args.images_dir}; none logged", file=sys.stderr)
    batches = _batches(gt, predictions, order, args.images_dir)
    evaluator = Engine(lambda _engine, batch: batch)
    metric.attach(evaluator, "coco")
    if sys.stderr.isatty() and len(batches) > 1:
        ProgressBar(persist=False, desc="evaluate").attach(evaluator)
    logger = _wandb_logger(args, evaluator, gt, with_file) if args.wandb_project else None
    try:
        evaluator.run(batches)
    finally:
        if logger is not None:
            _finish_wandb(logger)
    return evaluator.state.metrics["coco"]


def _report(result: CocoResult, args: argparse.Namespace) -> None:
    print(str(result) if args.per_class else result.summary())
    if args.output is not None:
        try:
            args.output.write_text(json.dumps(result.to_dict(), indent=2) + "\n")
        except OSError as error:
            raise InputError(f"{args.output}: cannot write the report ({error.strerror or error})") from None
        print(f"report written to {args.output}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    try:
        _check_args(args)
        with gc_paused():
            result = evaluate(args)
        _report(result, args)
    except InputError as error:
        print(f"ignite-det: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    return 0
