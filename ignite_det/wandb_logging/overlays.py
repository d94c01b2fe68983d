"""One captured validation image as W&B draws it, with the verdicts COCOeval gives at the operating point.

A sample is read through the metric's own input contract (:func:`~ignite_det.inputs.normalize_batch`),
so it holds exactly what the metric evaluated, and its verdicts come from the metric's matcher
(:mod:`ignite_det.backends.native.matching`) at the metric's operating IoU (``f1_iou_threshold``),
honouring ``max_detections``:

=============  ==============================================================================
verdict        meaning
=============  ==============================================================================
``TP``         matched a ground truth of its class
``FP``         matched nothing COCOeval counts
``ignored``    matched a ground truth COCOeval ignores (a crowd region, a person without a
               labelled keypoint): counted neither way
``uncounted``  ranked beyond ``max_detections[-1]`` in its (image, category): not evaluated;
               under ``protocol="lvis"`` also beyond its image's 300, or of a category neither
               in the image's ground truth nor in its ``neg_category_ids`` (lvis-api drops it)
=============  ==============================================================================

Under ``protocol="lvis"`` the verdicts follow lvis-api's rules (:mod:`ignite_det.lvis`): an unmatched
detection of a category in ``not_exhaustive_category_ids`` is ``ignored``, and a ground truth with an
area not above 0 (not loaded) is ``ignored``.

A ground truth is ``missed`` when no detection scoring at least the operating point's threshold
matched it: the objects the operating point's recall misses.

With the metric's error analysis in the ``coco`` mode (``result.errors``), the captions follow its bins
(every score, at its IoU): a false positive's caption names its bin (``0.42 FP loc``, ``0.42 FP cls: dog``,
``FP both``, ``FP dupe``, ``FP bkg``), a ground truth of the ``Miss`` bin is captioned ``missed``, and one
the operating point misses but the analysis does not (a detection below the threshold found it, or a
``Loc``/``Cls`` false positive claims it) ``unmatched at threshold``. The box classes stay the verdicts'.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ignite_det.backends.native.matching import FALSE_POSITIVE, TRUE_POSITIVE, match_images, match_one_threshold
from ignite_det.error_analysis.coco import ErrorBins
from ignite_det.inputs import normalize_batch
from ignite_det.iou.by_type import pair_iou
from ignite_det.iou.keypoints import COCO_PERSON_KEYPOINTS, COCO_PERSON_SKELETON
from ignite_det.lvis import LVIS_KEYS, LvisProtocol
from ignite_det.params import EvalParams
from ignite_det.per_image import per_image_table
from ignite_det.table import Detections, category_index
from ignite_det.wandb_logging.errors import detection_bins, fp_caption

if TYPE_CHECKING:
    from ignite_det.result import CocoResult

VERDICTS = ("TP", "FP", "ignored", "uncounted")
GT_KINDS = ("", " (crowd)", " (ignored)", " missed")
_LAST_CODE = 255  # W&B's mask values are 0-255


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


@dataclass(frozen=True)
class _Sample:
    """One captured validation image and its objects as the metric reads them, once per IoU type the
    per-image dicts can be evaluated as (``"bbox"`` with ``boxes``, ``"segm"`` with ``masks``,
    ``"keypoints"`` with ``keypoints``, each on both sides): the picture shows the evaluation's type."""

    image_id: int  # the target's image_id, or without one a key from the image's position
    image: np.ndarray  # uint8 (H, W, 3)
    tables: dict[str, Detections]  # iou_type -> the image's objects, normalised by the metric's contract
    lvis_lists: dict[str, Any] | None = None  # the target's neg / not-exhaustive category ids, where it has them

    def table(self, iou_type: str) -> tuple[str, Detections]:
        """The objects of ``iou_type``, else of another type captured (boxes first)."""
        for kind in (iou_type, "bbox", "segm", "keypoints"):
            if kind in self.tables:
                return kind, self.tables[kind]
        raise ValueError(f"image_id {self.image_id}: no objects captured")


def _make_sample(key: int, image: Any, pred: Mapping[str, Any], target: Mapping[str, Any], box_format: str) -> _Sample:
    """A sample from one image and its per-image dicts, read with :func:`~ignite_det.inputs.normalize_batch`
    for each IoU type both dicts carry (the metric has refused them already if its own type does not read)."""
    tables = {}
    for iou_type, key_name in (("bbox", "boxes"), ("segm", "masks"), ("keypoints", "keypoints")):
        if key_name not in pred or key_name not in target:
            continue
        num_keypoints = _num_keypoints(target["keypoints"]) if iou_type == "keypoints" else 0
        try:
            with warnings.catch_warnings():  # the metric has said it already, of the same batch
                warnings.simplefilter("ignore")
                tables[iou_type] = normalize_batch(([pred], [target]), box_format, iou_type, num_keypoints)
        except ValueError:
            continue  # not the type the metric evaluates: the metric refuses its own type's errors first
    lists = {k: target[k] for k in LVIS_KEYS} if all(k in target for k in LVIS_KEYS) else None
    return _Sample(image_id=key, image=_to_hwc_uint8(image), tables=tables, lvis_lists=lists)


def _num_keypoints(points: Any) -> int:
    shape = tuple(points.shape) if hasattr(points, "shape") else np.shape(points)
    return int(shape[1]) if len(shape) == 3 else 0


# ---------------------------------------------------------------------------------------------------------
# The verdicts, from the metric's matcher at its operating point
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OperatingPoint:
    """What the verdicts of a picture follow: the evaluation's parameters, the index of its operating
    IoU (``f1_iou_threshold``) and the operating point's score threshold (``-inf``: every detection)."""

    params: EvalParams
    iou_index: int
    score_threshold: float
    category_ids: tuple[int, ...] | None = None  # the evaluated categories (None: every label counts)
    lvis: LvisProtocol | None = None  # protocol="lvis": lvis-api's rules decide what is evaluated
    errors: tuple[int, float] | None = None  # the error analysis's IoU index and background threshold (coco mode)

    @staticmethod
    def of(result: CocoResult | None) -> OperatingPoint:
        """The result's operating point; without a result, COCO's box defaults at IoU 0.5, every score."""
        if result is None:
            params = EvalParams.create()
            return OperatingPoint(params, int(params.iou_index(0.5) or 0), -math.inf)
        params = result.params
        index = params.iou_index(result.f1_iou_threshold)
        threshold = float(result.best_f1.counting_threshold)
        errors = None
        if result.errors is not None and result.errors.mode == "coco":  # tidecv's bins sit on another matching
            errors_index = params.iou_index(result.errors.iou_threshold)
            if errors_index is not None:
                errors = (int(errors_index), float(result.errors.background_threshold))
        return OperatingPoint(params, int(index or 0), threshold, tuple(result.category_ids), result.lvis, errors)

    @property
    def iou_threshold(self) -> float:
        return float(self.params.iou_thresholds[self.iou_index])

    def words(self) -> str:
        """``verdicts at IoU 0.5, operating point score >= 0.343`` (or ``no operating point, every score``)."""
        if not math.isfinite(self.score_threshold):
            return f"verdicts at IoU {self.iou_threshold:g}, no operating point, every score"
        return f"verdicts at IoU {self.iou_threshold:g}, operating point score >= {self.score_threshold:.3f}"


@dataclass(frozen=True)
class Verdicts:
    """A sample's verdicts: per detection its verdict (:data:`VERDICTS`) and matched IoU (NaN: none),
    per ground truth its kind (:data:`GT_KINDS`: matched at the operating point, crowd, ignored, missed)."""

    detections: list[str]
    iou: np.ndarray
    ground_truth: list[str]


def verdicts(d: Detections, point: OperatingPoint, lvis_lists: Mapping[str, Any] | None = None) -> Verdicts:
    """COCOeval's verdicts on one image's objects at the operating point (area range "all"); under
    ``protocol="lvis"``, with the image's ``lvis_lists`` (``neg_category_ids``, ``not_exhaustive_category_ids``),
    lvis-api's: the verdicts of the objects its rules keep, ``uncounted`` and ``ignored`` for the others."""
    if point.lvis is None or lvis_lists is None:
        return _coco_verdicts(d, point)
    kept, det_rows, gt_rows = point.lvis.apply_rows(d, [lvis_lists], point.params.iou_type)
    found = _coco_verdicts(kept, point)
    detections = np.full(len(d.det_scores), "uncounted", dtype=object)
    detections[det_rows] = found.detections
    iou = np.full(len(d.det_scores), np.nan)
    iou[det_rows] = found.iou
    ground_truth = np.full(len(d.gt_labels), GT_KINDS[2], dtype=object)
    ground_truth[gt_rows] = found.ground_truth
    return Verdicts([str(v) for v in detections], iou, [str(k) for k in ground_truth])


def _coco_verdicts(d: Detections, point: OperatingPoint) -> Verdicts:
    params = point.params
    similarity = pair_iou(params)
    records = match_images(d, params, similarity)
    outcome = records.outcome_at(0)[point.iou_index]
    matches = match_one_threshold(d, params, point.iou_index, 0, similarity)
    names = np.full(len(outcome), "ignored", dtype=object)
    names[outcome == TRUE_POSITIVE] = "TP"
    names[outcome == FALSE_POSITIVE] = "FP"
    names[records.rank >= params.max_detections[-1]] = "uncounted"
    if point.category_ids is not None:  # COCOeval counts no detection of a category it does not evaluate
        names[~np.isin(d.det_labels, np.asarray(point.category_ids, dtype=np.int64))] = "uncounted"
    found = np.zeros(len(d.gt_labels), dtype=bool)
    found[matches.gt_row[(outcome == TRUE_POSITIVE) & (d.det_scores >= point.score_threshold)]] = True
    kinds = np.where(found, GT_KINDS[0], GT_KINDS[3])
    kinds = np.where(d.gt_ignored(), GT_KINDS[2], kinds)
    kinds = np.where(d.gt_crowd != 0, GT_KINDS[1], kinds)
    return Verdicts([str(v) for v in names], matches.iou, [str(k) for k in kinds])


def error_counts(
    y_pred: Sequence[Mapping[str, Any]], y: Sequence[Mapping[str, Any]], box_format: str, point: OperatingPoint
) -> np.ndarray | None:
    """The per-image rows (:data:`~ignite_det.per_image.PER_IMAGE_COLUMNS`) of a batch, in its order, as the
    metric counts them with ``point``'s parameters, categories (every label where they are not known) and
    protocol; ``None`` if the batch does not read as the evaluation's type."""
    params = point.params
    num_keypoints = _num_keypoints(y[0]["keypoints"]) if params.iou_type == "keypoints" and y else 0
    try:
        with warnings.catch_warnings():  # the metric has said it already, of the same batch
            warnings.simplefilter("ignore")
            d = normalize_batch((list(y_pred), list(y)), box_format, params.iou_type, num_keypoints)
            if point.lvis is not None:  # lvis-api's rules, as the metric applies them to each batch
                d = point.lvis.apply(d, y, params.iou_type)
    except ValueError:
        return None
    ids = point.category_ids
    category_ids = np.unique(np.r_[d.gt_labels, d.det_labels]) if ids is None else np.asarray(ids, dtype=np.int64)
    records = match_images(d, params, pair_iou(params))
    kept = records.rank < params.max_detections[-1]
    rows = per_image_table(d, records.outcome_at(0), kept, category_index(d.det_labels, category_ids), params)
    in_order = np.empty_like(rows)
    in_order[np.argsort(d.image_ids, kind="stable")] = rows  # per_image_table sorts by image id
    return in_order.astype(np.int64)


# ---------------------------------------------------------------------------------------------------------
# The layers of a wandb.Image
# ---------------------------------------------------------------------------------------------------------


def _xyxy(xywh: np.ndarray) -> np.ndarray:
    return np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1)


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


def _caption(score: float, verdict: str, iou: float) -> str:
    """Short, so that overlapping boxes stay readable: the class is in the box's class."""
    return f"{score:.2f} {verdict}" + (f" IoU {iou:.2f}" if math.isfinite(iou) else "")


def _layers(
    sample: _Sample, class_names: Mapping[int, str], score_floor: float, point: OperatingPoint
) -> dict[str, Any]:
    """What ``wandb.Image`` takes for one sample: the picture (keypoints drawn on it), ``boxes=`` with
    three layers and ``masks=`` (``None`` without masks), every class a (category, verdict) pair; and
    under ``"point"`` the operating point the verdicts follow (box IoU where the sample lacks the type).

    ``predictions`` holds the detections at or above the operating point's threshold (the view the
    confusion matrix counts), ``below_threshold`` those from ``score_floor`` up to it; each box carries
    its score, so W&B's score slider filters both. ``ground_truth`` marks missed objects.
    """
    kind, d = sample.table(point.params.iou_type)
    if kind != point.params.iou_type:  # the pictures lack the evaluation's type: verdicts by box IoU
        point = dataclasses.replace(point, params=EvalParams.create(), iou_index=0, errors=None)
    found = verdicts(d, point, sample.lvis_lists if kind == point.params.iou_type else None)
    bins = None
    if point.errors is not None:  # coco mode (protocol="lvis" refuses error analysis)
        bins = detection_bins(d, point.params, *point.errors, category_ids=point.category_ids)
    labels = {int(c): str(n) for c, n in class_names.items()}
    for c in (*d.det_labels.tolist(), *d.gt_labels.tolist()):
        labels.setdefault(int(c), str(int(c)))
    order = {label: i for i, label in enumerate(sorted(labels))}
    above = d.det_scores >= point.score_threshold
    boxes = _xyxy(d.det_boxes)
    predictions: list[dict[str, Any]] = []
    below: list[dict[str, Any]] = []
    for i, (score, label) in enumerate(zip(d.det_scores.tolist(), d.det_labels.tolist())):
        if score < score_floor:
            continue
        code = _code(order[label], VERDICTS, found.detections[i], None)
        caption = _caption(score, found.detections[i], found.iou[i])
        if bins is not None and bins.det_bin[i] >= 0:
            caption = f"{score:.2f} {_bin_words(bins, i, d, labels)}"
        box = _box(boxes[i], code, caption, score)
        (predictions if above[i] else below).append(box)
    gt_boxes = _xyxy(d.gt_boxes)
    ground_truth = [
        _box(gt_boxes[j], _code(order[label], GT_KINDS, found.ground_truth[j], None), _gt_words(found, bins, j))
        for j, label in enumerate(d.gt_labels.tolist())
    ]
    pred_names = _class_names(labels, order, VERDICTS, " ", None)
    gt_names = _class_names(labels, order, GT_KINDS, "", None)
    shown = (d.det_scores >= max(score_floor, point.score_threshold)) & np.array(
        [v != "uncounted" for v in found.detections], dtype=bool
    )
    return {
        "point": point,  # the one the verdicts follow, for the caption
        "image": _draw_keypoints(sample.image, d, found, shown),
        "boxes": {
            "predictions": {"box_data": predictions, "class_labels": pred_names},
            "below_threshold": {"box_data": below, "class_labels": pred_names},
            "ground_truth": {"box_data": ground_truth, "class_labels": gt_names},
        },
        "masks": _mask_layers(sample.image, d, labels, order, found, shown) if kind == "segm" else None,
    }


def _bin_words(bins: ErrorBins, i: int, d: Detections, labels: Mapping[int, str]) -> str:
    """A false positive's bin in words, with the class of the ground truth a ``Cls`` error sits on."""
    row = int(bins.det_gt_row[i])
    gt_name = labels[int(d.gt_labels[row])] if row >= 0 else None
    return fp_caption(int(bins.det_bin[i]), gt_name)


def _gt_words(found: Verdicts, bins: ErrorBins | None, j: int) -> str:
    """A ground truth's caption: its kind, or with the error analysis ``missed`` for the ``Miss`` bin only."""
    kind = found.ground_truth[j]
    if bins is None:
        return kind.strip()
    if bins.gt_missed[j]:
        return "missed"
    return "unmatched at threshold" if kind == GT_KINDS[3] else kind.strip()


def _mask_layers(
    image: np.ndarray,
    d: Detections,
    labels: Mapping[int, str],
    order: Mapping[int, int],
    found: Verdicts,
    shown: np.ndarray,
) -> dict[str, dict[str, Any]] | None:
    """The ``masks=`` argument of ``wandb.Image``: one class map per layer, ``predictions`` (the shown
    detections, a class per label and verdict, ``cat TP``; the best score painted last, on top) and
    ``ground_truth`` (``cat``, ``cat (crowd)``, ``cat missed``); ``None`` without masks, or when the
    masks are not of the picture's size.

    W&B keeps one set of class names per layer and key, whatever the image, so the codes depend only
    on ``labels`` (every label of the logged images): label ``i`` in increasing order is code
    ``1 + 4 i + verdict`` in predictions and ``1 + 4 i + kind`` in ground truth; beyond 255, codes
    are shared as "other classes". Boxes use the same codes, without the limit.
    """
    sizes = np.concatenate([d.det_mask_size, d.gt_mask_size])
    if not (sizes == image.shape[:2]).all():
        return None
    rows = np.flatnonzero(shown)
    rows = rows[np.argsort(d.det_scores[rows], kind="stable")]
    pred_codes = [_code(order[int(d.det_labels[i])], VERDICTS, found.detections[i]) for i in rows.tolist()]
    gt_codes = [_code(order[int(c)], GT_KINDS, k) for c, k in zip(d.gt_labels.tolist(), found.ground_truth)]
    return {
        "predictions": _class_map(d.det_masks(rows), pred_codes, _class_names(labels, order, VERDICTS, " "), image),
        "ground_truth": _class_map(d.gt_masks(), gt_codes, _class_names(labels, order, GT_KINDS, ""), image),
    }


def _code(index: int, variants: tuple[str, ...], variant: str, last: int | None = _LAST_CODE) -> int:
    code = 1 + len(variants) * index + variants.index(variant)
    return code if last is None else min(code, last)


def _class_names(
    labels: Mapping[int, str],
    order: Mapping[int, int],
    variants: tuple[str, ...],
    space: str,
    last: int | None = _LAST_CODE,
) -> dict[int, str]:
    names = {0: "background"} if last is not None else {}
    for label, index in order.items():
        for variant in variants:
            code = _code(index, variants, variant, last)
            names[code] = "other classes" if code == last else f"{labels[label]}{space}{variant}"
    return names


def _class_map(masks: Any, codes: list[int], names: dict[int, str], image: np.ndarray) -> dict[str, Any]:
    """Masks painted in order into one (H, W) uint8 map of their codes (0: no mask)."""
    data = np.zeros(image.shape[:2], dtype=np.uint8)
    for mask, code in zip(masks.decode(), codes):
        data[mask.astype(bool)] = code
    return {"mask_data": data, "class_labels": names}


_VERDICT_COLOURS = {"TP": (40, 200, 40), "FP": (235, 50, 50), "ignored": (170, 170, 170), "uncounted": (90, 90, 90)}


def _draw_keypoints(image: np.ndarray, d: Detections, found: Verdicts, shown: np.ndarray) -> np.ndarray:
    """The picture with keypoints drawn, as a pose is usually shown: the shown predictions as dots
    joined by COCO's person skeleton (for 17 points), coloured by verdict (TP green, FP red, ignored
    grey); ground truth's labelled points as white rings, filled where visible (v=2)."""
    if d.num_keypoints == 0 or not (len(d.det_keypoints) or len(d.gt_keypoints)):
        return image
    from PIL import Image, ImageDraw

    picture = Image.fromarray(image)
    draw = ImageDraw.Draw(picture)
    radius = max(2.0, min(image.shape[:2]) / 160)
    for points in d.gt_keypoints:
        for x, y, v in points.tolist():
            if v > 0:
                box = (x - radius, y - radius, x + radius, y + radius)
                draw.ellipse(box, outline=(255, 255, 255), fill=(255, 255, 255) if v == 2 else None)
    for i in np.flatnonzero(shown).tolist():
        colour = _VERDICT_COLOURS[found.detections[i]]
        xy = d.det_keypoints[i, :, :2].tolist()
        if len(xy) == len(COCO_PERSON_KEYPOINTS):
            for a, b in COCO_PERSON_SKELETON:
                draw.line([tuple(xy[a]), tuple(xy[b])], fill=colour, width=max(1, round(radius / 2)))
        for x, y in xy:
            draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=colour)
    return np.asarray(picture)
