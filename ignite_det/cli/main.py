"""``ignite-det evaluate``: COCO AP of a results file, through the same metric and handlers as training.

Usage::

    ignite-det evaluate GT.json PREDICTIONS.json [--iou-type segm] [--protocol lvis] [--backend faster_coco_eval]
        [--per-class] [--per-image] [--errors [tidecv]] [--background-threshold T] [--output report.json]
        [--wandb-project NAME [--wandb-mode online] [--wandb-artifact]] [--images-dir DIR]
    python -m ignite_det evaluate ...

``GT.json`` is a COCO instances file, ``PREDICTIONS.json`` a COCO results list (``image_id``,
``category_id``, ``score`` and ``bbox`` in xywh pixels, or a ``segmentation`` to take the box from;
with ``--iou-type segm`` a ``segmentation``, with ``--iou-type keypoints`` the ``keypoints``).
:mod:`ignite_det.cli.coco_json` validates them and converts them to arrays; they are grouped by image
and fed to an Ignite ``Engine`` with :class:`~ignite_det.CocoMetric` attached (``box_format="xywh"``,
class names from the ground truth's categories). Every ground truth image is evaluated, with or
without predictions, as ``COCOeval`` does. The text of ``--help`` is :data:`DESCRIPTION`.

Exit status: 0 on success, warnings included; 2 for a usage or input mistake or a W&B failure,
reported as one line on stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from ignite.engine import Engine
from ignite.handlers import ProgressBar
from ignite.handlers.wandb_logger import WandBLogger

from ignite_det.backends import BACKENDS
from ignite_det.backends.cocoeval import gc_paused
from ignite_det.cli.coco_json import GroundTruth, InputError, Predictions, load_ground_truth, load_predictions
from ignite_det.error_analysis import ERROR_MODES
from ignite_det.metric import CocoMetric
from ignite_det.params import IOU_TYPES, PROTOCOLS, EvalParams
from ignite_det.plausibility import ImplausibleInputWarning
from ignite_det.result import CocoResult
from ignite_det.rle import Rles
from ignite_det.wandb_logging.attach import attach_wandb_logging

EXIT_USAGE = 2
BATCH_SIZE = 256  # images per update(): few Python round trips, small enough for a progress bar to move
NUM_SHOWN_IMAGES = 16
NUM_WORST_IMAGES = 10  # printed with --per-image; the JSON report holds every image
DEFAULT_BACKGROUND_THRESHOLD = 0.1  # TIDE's t_b (tidecv/quantify.py:428), CocoMetric's default

DESCRIPTION = """\
COCO AP/AR of a results file (boxes, masks or keypoints), computed as pycocotools' COCOeval
computes it, through the same Ignite metric and W&B handlers as training.

GT.json is a COCO instances file (images, annotations, categories). PREDICTIONS.json is a COCO
results list: image_id, category_id, score, and bbox as [x, y, width, height] in pixels, or, without
a bbox, a segmentation (RLE or polygons) whose box and area are taken as pycocotools' loadRes takes
them. An empty list is a model that found nothing. Every ground truth image is evaluated, with or
without predictions.

--iou-type segm compares masks: every annotation needs a segmentation (RLE, or polygons rasterised
at the image's height and width), and so does every result, unless the first result has a bbox:
then a result with only a bbox is scored as its box's mask, as loadRes scores it. --iou-type
keypoints compares keypoints (OKS): annotations need keypoints and a bbox, results keypoints; the
defaults are then pycocotools' keypoint parameters (maxDets 20, areas medium and large) and COCO's
17 person sigmas (--keypoint-sigmas for other points). As in loadRes, which reads the whole file as
its first result, a result's area is that of its bbox when the first result has one, else its
mask's area or its keypoints' extent.

Where pycocotools goes its own way, a warning says so and the evaluation goes on: results whose
category_id is not in the ground truth are left out, as pycocotools leaves them out (--strict
refuses them); annotations with id 0 are counted like any other, where pycocotools never counts a
detection matched to one as a true positive. A file that is valid but probably a mistake gets a
warning too: boxes that reach past their image (xyxy, not xywh), normalised boxes, category ids
shifted by one.

--errors adds TIDE's error analysis on COCOeval's own matching (its AP is COCOeval's AP at IoU 0.5,
else at the lowest of --iou-thresholds): each false positive's bin (Cls, Loc, Both, Dupe, Bkg), the
missed objects (Miss), and the AP each bin costs (dAP, in AP points in the printed tables, as
fractions in the --output report); --errors tidecv gives the tidecv package's own numbers instead
(its matching, its AP), for comparison with published TIDE tables. --background-threshold is TIDE's
t_b (0.1), between 0 and that IoU. With --per-image, the per-image rows count each image's errors
by bin.

W&B runs are offline unless WANDB_MODE or --wandb-mode says otherwise ("wandb sync" uploads them).
--wandb-artifact also logs the results file and the JSON report as a W&B artifact (a copy of the
results file is staged on the local disk until it is uploaded).

Exit status: 0 on success, warnings included; 2 for a usage or input mistake or a W&B failure,
reported as one line on stderr that names the file and the problem.
"""


# ---------------------------------------------------------------------------------------------------------
# Arguments
# ---------------------------------------------------------------------------------------------------------


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ignite-det", description="Exact COCO detection metrics.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    evaluate = commands.add_parser(
        "evaluate",
        help="COCO AP/AR of a results file: boxes, masks or keypoints",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    evaluate.add_argument("gt", type=Path, metavar="GT.json", help="COCO instances file (ground truth)")
    evaluate.add_argument("predictions", type=Path, metavar="PREDICTIONS.json", help="COCO results list")
    evaluate.add_argument("--iou-type", default="bbox", choices=IOU_TYPES, help="default: bbox")
    evaluate.add_argument("--backend", default="native", choices=BACKENDS)
    evaluate.add_argument(
        "--protocol", choices=PROTOCOLS, help="lvis: LVIS's federated evaluation, as lvis-api; default: coco"
    )
    evaluate.add_argument("--max-dets", type=int, nargs="+", metavar="N", help="default: 1 10 100 (keypoints: 20)")
    evaluate.add_argument(
        "--keypoint-sigmas", type=float, nargs="+", metavar="S", help="one per keypoint; default: COCO's 17"
    )
    evaluate.add_argument("--iou-thresholds", type=float, nargs="+", metavar="T", help="default: 0.50:0.05:0.95")
    evaluate.add_argument(
        "--strict", action="store_true", help="refuse results whose category_id is not in the ground truth"
    )
    evaluate.add_argument("--per-class", action="store_true", help="also print the per-class table")
    evaluate.add_argument(
        "--per-image",
        action="store_true",
        help=f"also print the {NUM_WORST_IMAGES} worst images, and put every image's counts in the --output report",
    )
    evaluate.add_argument(
        "--errors",
        nargs="?",
        const="coco",
        choices=ERROR_MODES,
        help="TIDE's error analysis on COCOeval's matching (coco, the default) or as tidecv computes it (tidecv)",
    )
    evaluate.add_argument(
        "--background-threshold",
        type=float,
        metavar="T",
        help=f"with --errors: TIDE's background IoU threshold; default: {DEFAULT_BACKGROUND_THRESHOLD}",
    )
    evaluate.add_argument("--output", type=Path, metavar="REPORT.json", help="write the full report as JSON")
    evaluate.add_argument("--wandb-project", metavar="NAME", help="log the report to this W&B project")
    evaluate.add_argument(
        "--wandb-mode", choices=("online", "offline", "disabled"), help="default: WANDB_MODE, else offline"
    )
    evaluate.add_argument(
        "--wandb-artifact",
        action="store_true",
        help="also log the results file and the JSON report as a W&B artifact (a copy is staged on disk)",
    )
    evaluate.add_argument("--images-dir", type=Path, metavar="DIR", help="images by file_name, shown in W&B")
    return parser


def _check_args(args: argparse.Namespace) -> None:
    if args.keypoint_sigmas is not None and args.iou_type != "keypoints":
        raise InputError("--keypoint-sigmas are for --iou-type keypoints")
    if args.iou_thresholds is not None and not all(0 <= t <= 1 for t in args.iou_thresholds):
        raise InputError(f"--iou-thresholds must be numbers in [0, 1], got {_typed(args.iou_thresholds)}")
    if args.max_dets is not None and not all(n >= 1 for n in args.max_dets):
        raise InputError(f"--max-dets must be integers >= 1, got {_typed(args.max_dets)}")
    if args.images_dir is not None and args.wandb_project is None:
        raise InputError("--images-dir only shows images in W&B: give --wandb-project too")
    if args.wandb_artifact and args.wandb_project is None:
        raise InputError("--wandb-artifact logs to W&B: give --wandb-project too")
    if args.background_threshold is not None and args.errors is None:
        raise InputError("--background-threshold is for the error analysis: give --errors too")
    error_iou = _error_analysis_iou(args.iou_thresholds)
    if args.background_threshold is not None and not 0 < args.background_threshold < error_iou:
        raise InputError(
            f"--background-threshold must be a number in (0, {error_iou:g}): below the IoU at which the error "
            f"analysis runs, {error_iou:g}, got {args.background_threshold}"
        )
    if args.errors is not None and args.iou_type == "keypoints":
        raise InputError("--errors is for boxes and masks: TIDE defines no keypoint errors")
    if args.output is not None and not args.output.parent.is_dir():
        raise InputError(f"--output {args.output}: the directory {args.output.parent} does not exist")
    if args.images_dir is not None and not args.images_dir.is_dir():
        raise InputError(f"--images-dir {args.images_dir}: not a directory")


def _error_analysis_iou(iou_thresholds: Sequence[float] | None) -> float:
    """The IoU the error analysis runs at (TIDE's t_f), as the metric chooses it (thresholds already checked)."""
    params = EvalParams.create(iou_thresholds=iou_thresholds)
    return float(params.iou_thresholds[params.operating_iou_index()])


def _typed(values: Sequence[float]) -> str:
    """Values as given on the command line (Python's shortest repr: 0.9 stays 0.9)."""
    return " ".join(map(str, values))


# ---------------------------------------------------------------------------------------------------------
# Arrays -> Ignite batches
# ---------------------------------------------------------------------------------------------------------


class _ByImage:
    """Columns regrouped by image (stable, so each image keeps its boxes in file order), sliced per image.

    A column of masks (:class:`~ignite_det.rle.Rles`) becomes each image's list of COCO RLE dicts.
    """

    def __init__(self, columns: dict[str, np.ndarray | Rles], image_index: np.ndarray, num_images: int) -> None:
        order = np.argsort(image_index, kind="stable")
        self._columns: dict[str, Any] = {
            key: v.select(order).dicts() if isinstance(v, Rles) else torch.from_numpy(np.ascontiguousarray(v[order]))
            for key, v in columns.items()
        }
        counts = np.bincount(image_index, minlength=num_images)
        self._offsets = np.concatenate([[0], np.cumsum(counts)]).tolist()

    def __getitem__(self, image: int) -> dict[str, Any]:
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


def _batches(gt: GroundTruth, predictions: Predictions, images_dir: Path | None, lvis: bool = False) -> list[_Batch]:
    """The images in file order, ``BATCH_SIZE`` at a time (with ``lvis``, the targets carry the LVIS lists)."""
    num_images = len(gt.image_ids)
    columns: dict[str, Any] = {"boxes": gt.boxes, "labels": gt.labels, "area": gt.area, "iscrowd": gt.iscrowd}
    columns.update(_shapes(gt.masks, gt.keypoints))
    targets = _ByImage(columns, gt.image_index, num_images)
    outputs = _ByImage(_prediction_columns(predictions), predictions.image_index, num_images)
    image_ids = gt.image_ids.tolist()
    batches = []
    for start in range(0, num_images, BATCH_SIZE):
        chunk = range(start, min(start + BATCH_SIZE, num_images))
        images = None if images_dir is None else [_image_file(images_dir, gt.file_names[i]) for i in chunk]
        y = [{**targets[i], "image_id": image_ids[i], **(_lvis_lists(gt, i) if lvis else {})} for i in chunk]
        batches.append(_Batch(images, [outputs[i] for i in chunk], y))
    return batches


def _lvis_lists(gt: GroundTruth, image: int) -> dict[str, Any]:
    assert gt.lvis is not None
    return {
        "neg_category_ids": gt.lvis.neg_category_ids[image],
        "not_exhaustive_category_ids": gt.lvis.not_exhaustive_category_ids[image],
    }


def _prediction_columns(predictions: Predictions) -> dict[str, Any]:
    columns: dict[str, Any] = {"boxes": predictions.boxes, "scores": predictions.scores, "labels": predictions.labels}
    if predictions.area is not None:  # masks without a box: their area, not w * h, picks the area range
        columns["area"] = predictions.area
    columns.update(_shapes(predictions.masks, predictions.keypoints))
    return columns


def _shapes(masks: Rles | None, keypoints: np.ndarray | None) -> dict[str, Any]:
    """The masks or keypoints columns of ``--iou-type segm`` or ``keypoints``."""
    if masks is not None:
        return {"masks": masks}
    return {} if keypoints is None else {"keypoints": keypoints}


def _image_file(images_dir: Path, name: Any) -> _LazyImage | None:
    """The image to show, or ``None`` without a file: the images handler shows the smallest ids among the others."""
    path = images_dir / str(name)
    return _LazyImage(path) if name and path.is_file() else None


def _count_image_files(gt: GroundTruth, images_dir: Path | None) -> int:
    """How many of the ground truth's images have a file in ``images_dir``."""
    if images_dir is None:
        return 0
    return sum(bool(name) and (images_dir / str(name)).is_file() for name in gt.file_names)


# ---------------------------------------------------------------------------------------------------------
# Evaluation
# ---------------------------------------------------------------------------------------------------------


def _metric(args: argparse.Namespace, gt: GroundTruth) -> CocoMetric:
    try:
        metric = CocoMetric(
            box_format="xywh",
            backend=args.backend,
            class_names=gt.class_names,
            iou_thresholds=args.iou_thresholds,
            max_detections=args.max_dets,
            iou_type=args.iou_type,
            keypoint_sigmas=args.keypoint_sigmas,
            **_protocol_arguments(args, gt),
            **_error_arguments(args),
            output_transform=lambda output: (output.y_pred, output.y),
        )
    except (ModuleNotFoundError, ValueError) as error:  # faster-coco-eval missing, bad --keypoint-sigmas
        raise InputError(str(error)) from None
    if metric._lvis is not None:  # the file reader set each result's area as LVISResults does: keep it (L9 off)
        metric._lvis = replace(metric._lvis, given_area=True)
    return metric


def _protocol_arguments(args: argparse.Namespace, gt: GroundTruth) -> dict[str, Any]:
    """``protocol`` and ``category_frequencies`` for the metric; with ``--protocol lvis`` the file must be LVIS."""
    if args.protocol != "lvis":
        return {}
    missing = "it has no LVIS fields" if gt.lvis is None else gt.lvis.missing()
    if missing is not None or gt.lvis is None:
        raise InputError(
            f"{args.gt}: --protocol lvis needs LVIS ground truth (images with 'neg_category_ids' and "
            f"'not_exhaustive_category_ids', categories with 'frequency'), but {missing}"
        )
    return {"protocol": "lvis", "category_frequencies": gt.lvis.frequencies}


def _error_arguments(args: argparse.Namespace) -> dict[str, Any]:
    """``error_analysis`` and ``background_threshold`` for the metric; nothing without ``--errors``."""
    if args.errors is None:
        return {}
    threshold = DEFAULT_BACKGROUND_THRESHOLD if args.background_threshold is None else args.background_threshold
    return {"error_analysis": args.errors, "background_threshold": threshold}


def _wandb_logger(
    args: argparse.Namespace, evaluator: Engine, gt: GroundTruth, shown: int, metric: CocoMetric
) -> WandBLogger:
    """The training path's logging: ``WandBLogger`` plus the report and (with images) the images handler."""
    config = {"gt": str(args.gt), "predictions": str(args.predictions), "backend": args.backend}
    # Offline unless told otherwise (the README's promise: no account needed); WANDB_MODE is W&B's to read.
    mode = {} if args.wandb_mode is None and os.environ.get("WANDB_MODE") else {"mode": _wandb_mode(args)}
    try:
        logger = WandBLogger(project=args.wandb_project, config=config, settings={"silent": True}, **mode)
    except Exception as error:  # only W&B's code ran: no API key, no network, a bad project name...
        raise _wandb_failure(error, _wandb_mode(args)) from None
    attach_wandb_logging(
        logger,
        evaluator,
        num_images=min(shown, NUM_SHOWN_IMAGES),
        box_format="xywh",
        class_names=gt.class_names,
        batch_transform=lambda batch: batch.images,
        output_transform=lambda output: (output.y_pred, output.y),
        artifact_metric=metric if args.wandb_artifact else None,
    )
    return logger


def _wandb_mode(args: argparse.Namespace) -> str:
    return args.wandb_mode or os.environ.get("WANDB_MODE") or "offline"


def _wandb_failure(error: Exception, mode: str) -> InputError:
    first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
    hint = " (--wandb-mode offline needs no account; 'wandb sync' uploads the run later)" if mode == "online" else ""
    return InputError(f"W&B failed in {mode} mode: {first_line}{hint}")


@contextlib.contextmanager
def _logging_to(logger: WandBLogger | None, args: argparse.Namespace) -> Iterator[None]:
    """The evaluator runs inside: the W&B run is finished after it, and a W&B error while logging or
    finishing becomes one line (exit 2) instead of a traceback."""
    if logger is None:
        yield
        return
    try:
        try:
            yield
        finally:
            _finish_wandb(logger)
    except logger.Error as error:  # wandb.Error, through WandBLogger's forwarding to the wandb module
        raise _wandb_failure(error, _wandb_mode(args)) from None


def _finish_wandb(logger: WandBLogger) -> None:
    """Finish the run, then say where it is (and how to upload it when offline)."""
    run = logger.run
    if run is None or run.disabled:
        logger.close()
        return
    run_dir, offline = Path(run.dir).parent, run.offline
    url = None if offline else run.url  # an offline run's url warns "URL not available"
    logger.close()
    if offline:
        print(f"W&B offline run saved in {run_dir}; upload it with: wandb sync {run_dir}", file=sys.stderr)
    else:
        print(f"W&B run: {url or run_dir}", file=sys.stderr)


def evaluate(args: argparse.Namespace) -> CocoResult:
    """Load, validate, run the evaluator; returns the :class:`~ignite_det.CocoResult`."""
    gt = load_ground_truth(args.gt, args.iou_type)
    predictions = load_predictions(
        args.predictions, gt, strict=args.strict, iou_type=args.iou_type, protocol=args.protocol or "coco"
    )
    _check_keypoint_count(args, gt)
    for warning in (*gt.warnings, *predictions.warnings):
        _warn(warning)
    if args.protocol is None and gt.lvis is not None and gt.lvis.complete:
        _warn(f"{args.gt} looks like LVIS (neg_category_ids, frequency): evaluated as COCO; --protocol lvis for LVIS's")
    metric = _metric(args, gt)
    with_file = _count_image_files(gt, args.images_dir)
    if args.images_dir is not None and with_file == 0:
        _warn(f"no image of {args.gt} is in {args.images_dir}; none logged")
    batches = _batches(gt, predictions, args.images_dir, lvis=args.protocol == "lvis")
    evaluator = Engine(lambda _engine, batch: batch)
    metric.attach(evaluator, "coco")
    if sys.stderr.isatty() and len(batches) > 1:
        ProgressBar(persist=False, desc="evaluate").attach(evaluator)
    logger = _wandb_logger(args, evaluator, gt, with_file, metric) if args.wandb_project else None
    with _logging_to(logger, args), warnings.catch_warnings():
        warnings.simplefilter("ignore", ImplausibleInputWarning)  # the results file's checks have said it
        evaluator.run(batches)
    return evaluator.state.metrics["coco"]


def _check_keypoint_count(args: argparse.Namespace, gt: GroundTruth) -> None:
    if gt.keypoints is None:
        return
    expected = 17 if args.keypoint_sigmas is None else len(args.keypoint_sigmas)
    if gt.keypoints.shape[1] != expected and len(gt.keypoints):
        given = "COCO's 17 person sigmas" if args.keypoint_sigmas is None else f"{expected} --keypoint-sigmas"
        raise InputError(
            f"{args.gt}: annotations have {gt.keypoints.shape[1]} keypoints each, but there are {given}; "
            "give --keypoint-sigmas with one sigma per keypoint"
        )


def _warn(message: str) -> None:
    print(f"ignite-det: warning: {message}", file=sys.stderr)


def _report(result: CocoResult, args: argparse.Namespace) -> None:
    print(str(result) if args.per_class else result.summary())
    report = result.to_dict()  # with --errors, its "errors" (CocoResult.to_dict adds them)
    if result.errors is not None:
        print(f"\n{result.errors.text()}")
    if args.per_image:
        print("\nWorst images (most errors at IoU 0.5, fp50 + fn50; then fn50; then fp75 + fn75):")
        print(result.per_image.worst_first().text(NUM_WORST_IMAGES))
        report["per_image"] = result.per_image.rows()
    if args.output is not None:
        try:
            args.output.write_text(json.dumps(report, indent=2) + "\n")
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
    except BrokenPipeError:  # `ignite-det evaluate ... | head`: the reader left, which is no error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error when Python flushes
        return 0
    return 0
