"""COCO JSON files as arrays: an instances file (the ground truth) and a results list, validated.

Each numeric key is read in one pass over the entries; the slow, per-entry search runs only to word
an error, which names the file, the entry and the key (``GT.json: annotations[3]['area'] must be >=
0, got -1.0``). What pycocotools accepts and evaluates in its own way is kept, with a warning that
the command line prints: results whose ``category_id`` is not in the ground truth are left out, as
COCOeval leaves them out, and annotations with ``id`` 0 are counted, where pycocotools never counts a
detection matched to one as a true positive.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from ignite_det.cli.segmentation import BadSegmentation, boxes_and_areas, to_rles
from ignite_det.iou.keypoints import extent
from ignite_det.iou.segm import encode_masks
from ignite_det.plausibility import Objects, results_warnings
from ignite_det.rle import Rles
from ignite_det.rules import AREA, BOX_SIZE, CROWD, FINITE, ID_RANGE, VISIBLE, Rule, first_broken

_LISTED = 5  # offending ids named in a message


class InputError(Exception):
    """A mistake in an input file or argument: reported as one line, never as a traceback."""


@dataclass(frozen=True)
class GroundTruth:
    """A COCO instances file as arrays; ``image_index`` points into ``image_ids`` (file order)."""

    image_ids: np.ndarray  # int64 (I,)
    file_names: list[str | None]
    image_sizes: list[tuple[int, int] | None]  # (height, width) where the file gives both
    class_names: dict[int, str]
    boxes: np.ndarray  # float64 (M, 4) xywh
    labels: np.ndarray  # int64 (M,)
    area: np.ndarray  # float64 (M,) the 'area' field
    iscrowd: np.ndarray  # int64 (M,)
    image_index: np.ndarray  # int64 (M,)
    warnings: tuple[str, ...] = ()
    masks: Rles | None = None  # (M,) with iou_type "segm": the segmentations as compressed RLEs
    keypoints: np.ndarray | None = None  # float64 (M, K, 3) with iou_type "keypoints"
    lvis: LvisFields | None = None  # the LVIS fields, where the file has them


@dataclass(frozen=True)
class LvisFields:
    """An LVIS file's own fields, per image (file order) and per category; None where an entry lacks one."""

    neg_category_ids: list[list[int] | None]
    not_exhaustive_category_ids: list[list[int] | None]
    frequencies: dict[int, str | None]

    @property
    def complete(self) -> bool:
        """Every image and category has its field: the file looks like LVIS."""
        lists = (*self.neg_category_ids, *self.not_exhaustive_category_ids, *self.frequencies.values())
        return all(v is not None for v in lists)

    def missing(self) -> str | None:
        """The first entry without its LVIS field, in words; None when there is none."""
        for key in ("neg_category_ids", "not_exhaustive_category_ids"):
            for index, value in enumerate(getattr(self, key)):
                if value is None:
                    return f"images[{index}] has no list '{key}'"
        for category, frequency in self.frequencies.items():
            if frequency not in ("r", "c", "f"):
                return f"category {category} has no 'frequency' 'r', 'c' or 'f' (got {frequency!r})"
        return None


def _lvis_fields(images: list[Any], categories: list[Any], category_ids: np.ndarray) -> LvisFields | None:
    """The LVIS fields of the file, None when no image and no category has any."""

    def lists(key: str) -> list[list[int] | None]:
        return [_int_list(image.get(key)) if isinstance(image, dict) else None for image in images]

    frequencies = {int(c): entry.get("frequency") for c, entry in zip(category_ids.tolist(), categories)}
    fields = LvisFields(lists("neg_category_ids"), lists("not_exhaustive_category_ids"), frequencies)
    present = (*fields.neg_category_ids, *fields.not_exhaustive_category_ids, *frequencies.values())
    return None if all(v is None for v in present) else fields


def _int_list(value: Any) -> list[int] | None:
    if isinstance(value, list) and all(type(v) is int for v in value):
        return value
    return None


@dataclass(frozen=True)
class Predictions:
    """A COCO results list as arrays, in file order; ``image_index`` points into the ground truth's images.

    ``area`` is set when some results are masks without a box: the mask's area for those, ``w * h``
    for the others (what ``loadRes`` uses for area ranges); None when every result has a box.
    """

    boxes: np.ndarray  # float64 (N, 4) xywh
    scores: np.ndarray  # float64 (N,)
    labels: np.ndarray  # int64 (N,)
    image_index: np.ndarray  # int64 (N,)
    area: np.ndarray | None = None  # float64 (N,)
    warnings: tuple[str, ...] = ()
    masks: Rles | None = None  # (N,) with iou_type "segm"
    keypoints: np.ndarray | None = None  # float64 (N, K, 3) with iou_type "keypoints"

    def select(self, keep: np.ndarray, warnings: tuple[str, ...]) -> Predictions:
        """The results where ``keep`` (bool, (N,)) is true."""
        return Predictions(
            self.boxes[keep],
            self.scores[keep],
            self.labels[keep],
            self.image_index[keep],
            None if self.area is None else self.area[keep],
            warnings,
            None if self.masks is None else self.masks.select(keep),
            None if self.keypoints is None else self.keypoints[keep],
        )


def load_ground_truth(path: Path, iou_type: str = "bbox") -> GroundTruth:
    """Read and check a COCO instances file (``images``, ``annotations``, ``categories``).

    With ``iou_type="segm"`` every annotation's ``segmentation`` is read as ``annToRLE`` reads it
    (polygons rasterised at the image's ``height`` and ``width``), and a missing ``bbox`` is the
    mask's; with ``"keypoints"``, every annotation's ``keypoints`` (x, y, v for each of K points),
    whose ``num_keypoints``, when given, must be 0 exactly when no point is labelled (v > 0), as
    pycocotools reads it (another miscount is named in a warning). ``iscrowd`` may be a JSON boolean.

    Raises:
        InputError: naming the file, the entry and the problem.
    """
    document = _load_json(path)
    images, annotations, categories = (_entries(document, key, path) for key in ("images", "annotations", "categories"))
    if not images:
        raise InputError(f"{path}: 'images' is empty; there is nothing to evaluate")
    image_ids = _unique_ids(images, _Source(path, "images"))
    category_ids = _unique_ids(categories, _Source(path, "categories"))
    source = _Source(path, "annotations")
    labels = _field(annotations, "category_id", source, integer=True)
    area = _field(annotations, "area", source, integer=False)
    iscrowd = _iscrowd(annotations, source)
    _check_rule(AREA, area, "area", source)
    _check_rule(CROWD, iscrowd, "iscrowd", source)
    _index_of(labels, category_ids, "category ids", source, known_as="its 'categories'")
    image_index = _index_of(
        _field(annotations, "image_id", source, integer=True), image_ids, "image ids", source, known_as="its 'images'"
    )
    image_sizes = [_image_size(image) for image in images]
    masks = _masks(annotations, [image_sizes[i] for i in image_index], source) if iou_type == "segm" else None
    keypoints, notes = _ground_truth_keypoints(annotations, source) if iou_type == "keypoints" else (None, ())
    if masks is not None and any("bbox" not in a for a in annotations if isinstance(a, dict)):
        boxes = masks.boxes()  # pycocotools' segm evaluation does not read a ground truth's box
    else:
        boxes = _boxes(_column(annotations, "bbox", source), source)
    return GroundTruth(
        image_ids=image_ids,
        file_names=_column(images, "file_name", _Source(path, "images"), default=""),
        image_sizes=image_sizes,
        class_names={int(c): str(entry.get("name", c)) for c, entry in zip(category_ids.tolist(), categories)},
        boxes=boxes,
        labels=labels,
        area=area,
        iscrowd=iscrowd,
        image_index=image_index,
        warnings=_zero_id_warning(annotations, iscrowd, path) + notes,
        masks=masks,
        keypoints=keypoints,
        lvis=_lvis_fields(images, categories, category_ids),
    )


def load_predictions(
    path: Path, gt: GroundTruth, strict: bool = False, iou_type: str = "bbox", protocol: str = "coco"
) -> Predictions:
    """Read and check a COCO results list against the ground truth.

    A result needs ``image_id``, ``category_id``, ``score`` and a ``bbox`` (xywh) or, without one, a
    ``segmentation`` whose box and area are taken as pycocotools' ``loadRes`` takes them. Results whose
    ``category_id`` is not in the ground truth are left out with a warning, or refused when ``strict``.
    With ``iou_type="segm"`` every result needs a ``segmentation`` (or, when ``results[0]`` has a
    ``bbox``, a ``bbox`` to make its polygon), with ``"keypoints"`` its ``keypoints`` (K points as
    the ground truth's); a result's area, which picks its area range, is then as ``loadRes`` sets it:
    ``w * h`` of a given ``bbox`` when ``results[0]`` has one, else the mask's area or the keypoints'
    extent. The warnings include :mod:`ignite_det.plausibility`'s (xyxy, normalised, shifted ids).
    With ``protocol="lvis"`` results of unknown categories are kept (with the warning): ``LVISResults`` caps
    each image at 300 results before anything else (``results.py:39-40``), so they take places there, and the
    metric then leaves them out as ``LVISEval`` does (``eval.py:64-69``: only the ground truth's categories).

    Raises:
        InputError: naming the file, the entry and the problem.
    """
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
    image_index = _index_of(image_ids, gt.image_ids, "image ids", source)
    notes: tuple[str, ...] = ()
    if iou_type == "segm":
        found, notes = _with_box_polygons(results, source)
        masks = _masks(found, [gt.image_sizes[i] for i in image_index], source)
        boxes, area = _boxes_or(found, masks.boxes(), masks.area(), source)
        predictions = Predictions(boxes, scores, labels, image_index, area, masks=masks)
    elif iou_type == "keypoints":
        points = _keypoints(_with_key(results, "keypoints", source), "keypoints", source, gt.keypoints)
        boxes, area = _boxes_or(results, *extent(points), source)
        predictions = Predictions(boxes, scores, labels, image_index, area, keypoints=points)
    else:
        boxes, area = _result_boxes(results, image_index, gt, source)
        predictions = Predictions(boxes, scores, labels, image_index, area)
    hints = notes + _implausible(path, Objects(boxes, labels, image_index), gt)
    _, known = _lookup(labels, np.array(list(gt.class_names), dtype=np.int64))
    if known.all():
        return replace(predictions, warnings=hints)
    message = _not_known(labels, known, "category ids", source, "the ground truth")
    if strict:
        raise source.error(message)
    if protocol == "lvis":  # kept for LVISResults' cap of 300 per image, then not evaluated
        warning = (
            f"{path}: {message}; they are not evaluated but take places in the 300 per image, as in lvis-api "
            "(--strict refuses them)"
        )
        return replace(predictions, warnings=(warning, *hints))
    warning = f"{path}: {message}; they are left out, as pycocotools leaves them out (--strict refuses them)"
    return predictions.select(known, (warning, *hints))


def _implausible(path: Path, results: Objects, gt: GroundTruth) -> tuple[str, ...]:
    """The warnings of :mod:`ignite_det.plausibility` about every result (xyxy, normalised, shifted ids)."""
    return tuple(results_warnings(str(path), results, Objects(gt.boxes, gt.labels, gt.image_index), gt.image_sizes))


# ---------------------------------------------------------------------------------------------------------
# Columns
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


def _entries(document: Any, key: str, path: Path) -> list[Any]:
    if not isinstance(document, dict):
        raise InputError(f"{path}: a COCO instances file must be a JSON object, got {type(document).__name__}")
    if key not in document:
        raise InputError(f"{path}: has no '{key}' key; a COCO instances file has images, annotations, categories")
    if not isinstance(document[key], list):
        raise InputError(f"{path}: '{key}' must be a list, got {type(document[key]).__name__}")
    return document[key]


def _column(entries: list[Any], key: str, source: _Source, default: Any = None) -> list[Any]:
    try:
        if default is None:
            return [entry[key] for entry in entries]
        return [entry.get(key, default) for entry in entries]
    except (KeyError, TypeError, AttributeError):
        pass
    index, entry = next((i, e) for i, e in enumerate(entries) if not isinstance(e, dict) or key not in e)
    if not isinstance(entry, dict):
        raise source.error(f"{source.name}[{index}] must be an object, got {type(entry).__name__}")
    raise source.error(f"{source.name}[{index}] has no '{key}' key (it has {sorted(entry)})")


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
    _check_rule(ID_RANGE if integer else FINITE, array, key, source)
    return array.reshape(len(values))


def _iscrowd(annotations: list[Any], source: _Source) -> np.ndarray:
    """Every annotation's ``iscrowd`` (default 0); JSON's ``true``/``false`` are 1/0, as pycocotools reads them."""
    values = _column(annotations, "iscrowd", source, default=0)
    return _numbers([int(v) if type(v) is bool else v for v in values], "iscrowd", source, integer=True)


def _check_rule(rule: Rule, values: np.ndarray, key: str, source: _Source, requirement: str = "") -> None:
    """The first entry whose ``key`` breaks ``rule`` (:mod:`ignite_det.rules`), named in an error;
    ``requirement`` words it where the file format has its own words."""
    index = first_broken(rule, values)
    if index is not None:
        raise source.error(
            f"{source.name}[{index}]['{key}'] {requirement or rule.requirement}, got {values[index].tolist()}"
        )


def _boxes(values: list[Any], source: _Source) -> np.ndarray:
    """The ``bbox`` values of every entry, as float64 (N, 4) xywh with width, height >= 0."""
    if set(map(type, values)) <= {list} and set(map(len, values)) <= {4}:
        flat = list(itertools.chain.from_iterable(values))
        if set(map(type, flat)) <= {int, float}:
            boxes = np.array(flat, dtype=np.float64).reshape(-1, 4)
            _check_rule(FINITE, boxes, "bbox", source)
            _check_rule(BOX_SIZE, boxes, "bbox", source, "must be [x, y, width, height] with width, height >= 0")
            return boxes
    index = next(i for i, v in enumerate(values) if not _is_box(v))
    raise source.error(
        f"{source.name}[{index}]['bbox'] must be a list of 4 numbers [x, y, w, h], got {values[index]!r}"
    )


def _is_box(value: Any) -> bool:
    return type(value) is list and len(value) == 4 and all(type(v) in (int, float) for v in value)


# ---------------------------------------------------------------------------------------------------------
# Ids
# ---------------------------------------------------------------------------------------------------------


def _unique_ids(entries: list[Any], source: _Source) -> np.ndarray:
    ids = _field(entries, "id", source, integer=True)
    unique, counts = np.unique(ids, return_counts=True)
    if (counts > 1).any():
        repeated = unique[counts > 1][:_LISTED].tolist()
        raise source.error(f"{source.name} ids must be unique, got repeated ids {repeated}")
    return ids


def _lookup(ids: np.ndarray, known: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Position in ``known`` of each of ``ids`` (meaningless where not found), and whether it was found."""
    if len(known) == 0:
        return np.zeros(len(ids), dtype=np.int64), np.zeros(len(ids), dtype=bool)
    order = np.argsort(known, kind="stable")
    sorted_known = known[order]
    position = np.minimum(np.searchsorted(sorted_known, ids), len(known) - 1)
    return order[position], sorted_known[position] == ids


def _not_known(ids: np.ndarray, found: np.ndarray, what: str, source: _Source, known_as: str) -> str:
    unknown = np.unique(ids[~found])
    listed = ", ".join(map(str, unknown[:_LISTED].tolist())) + (", ..." if len(unknown) > _LISTED else "")
    return (
        f"{int((~found).sum())} of {len(ids)} {source.name} have {what} not in {known_as} "
        f"({len(unknown)} distinct: {listed})"
    )


def _index_of(
    ids: np.ndarray, known: np.ndarray, what: str, source: _Source, known_as: str = "the ground truth"
) -> np.ndarray:
    """Position in ``known`` of each of ``ids``; an error naming a few ids that are not known."""
    index, found = _lookup(ids, known)
    if not found.all():
        raise source.error(_not_known(ids, found, what, source, known_as))
    return index


def _zero_id_warning(annotations: list[dict[str, Any]], iscrowd: np.ndarray, path: Path) -> tuple[str, ...]:
    """pycocotools stores the matched annotation's id and reads 0 as "unmatched" (cocoapi#546), so a
    detection matched to annotation id 0 is a false positive there. ignite-det numbers annotations
    from 1 itself and counts it; the warning says the two will differ. (A crowd region's match is
    ignored either way.)"""
    ids = [annotation.get("id") for annotation in annotations]
    if ids.count(0) == 0:  # the common case, in one C loop
        return ()
    zero = np.array([type(i) in (int, float) and i == 0 for i in ids]) & (iscrowd == 0)
    n = int(zero.sum())
    if n == 0:
        return ()
    them = "them" if n > 1 else "it"
    return (
        f"{path}: {n} annotation{'s have' if n > 1 else ' has'} id 0; ignite-det counts a detection matched to "
        f"{them} as a true positive, pycocotools would score {them} differently: it never counts a detection "
        "matched to annotation id 0 as a true positive (cocoapi#546)",
    )


# ---------------------------------------------------------------------------------------------------------
# Boxes of results: given, or taken from a mask
# ---------------------------------------------------------------------------------------------------------


def _image_size(image: dict[str, Any]) -> tuple[int, int] | None:
    height, width = image.get("height"), image.get("width")
    return (height, width) if type(height) is int and type(width) is int and height > 0 and width > 0 else None


def _result_boxes(
    results: list[dict[str, Any]], image_index: np.ndarray, gt: GroundTruth, source: _Source
) -> tuple[np.ndarray, np.ndarray | None]:
    """Every result's xywh box; with results that have a ``segmentation`` and no ``bbox``, also every
    result's area, as ``loadRes`` sets them: when ``results[0]`` has a box, the mask's area for those
    and ``w * h`` for the others; else the mask's area of every result that has one."""
    masked = [i for i, result in enumerate(results) if "bbox" not in result]
    if not masked:
        return _boxes([result["bbox"] for result in results], source), None
    if not _box_branch(results):  # loadRes's mask branch: every result's area is its mask's
        masked = [i for i, result in enumerate(results) if "bbox" not in result or "segmentation" in result]
    missing = next((i for i in masked if "segmentation" not in results[i]), None)
    if missing is not None:
        raise source.error(
            f"results[{missing}] has no 'bbox' key, nor a 'segmentation' to take the box from "
            f"(it has {sorted(results[missing])})"
        )
    try:
        mask_boxes, mask_area = boxes_and_areas(
            [results[i]["segmentation"] for i in masked], [gt.image_sizes[image_index[i]] for i in masked]
        )
    except BadSegmentation as error:
        raise source.error(f"results[{masked[error.index]}]['segmentation'] {error}") from None
    values = [result.get("bbox") for result in results]
    for i, box in zip(masked, mask_boxes.tolist()):
        values[i] = values[i] if "bbox" in results[i] else box  # loadRes keeps a given box
    boxes = _boxes(values, source)
    area = boxes[:, 2] * boxes[:, 3]
    area[masked] = mask_area
    return boxes, area


# ---------------------------------------------------------------------------------------------------------
# Masks and keypoints (--iou-type segm, keypoints)
# ---------------------------------------------------------------------------------------------------------


def _with_key(entries: list[Any], key: str, source: _Source) -> list[Any]:
    """The entries, each checked to be an object holding ``key``."""
    _column(entries, key, source)
    return entries


def _masks(entries: list[Any], image_sizes: list[tuple[int, int] | None], source: _Source) -> Rles:
    """Every entry's ``segmentation`` as a checked compressed RLE, as ``annToRLE`` reads it."""
    try:
        rles = to_rles(_column(entries, "segmentation", source), image_sizes)
    except BadSegmentation as error:
        raise source.error(f"{source.name}[{error.index}]['segmentation'] {error}") from None
    try:  # every run length counted: a string that describes another size is refused here, not later
        return encode_masks(source.name, rles)
    except ValueError as error:
        raise source.error(str(error)) from None


def _boxes_or(
    entries: list[Any], boxes: np.ndarray, area: np.ndarray, source: _Source
) -> tuple[np.ndarray, np.ndarray | None]:
    """Given boxes where entries have a ``bbox``, else ``boxes``; the area ``loadRes`` sets: ``w * h``
    of a given box when ``entries[0]`` has a box (loadRes picks its branch for the whole file from
    it), else ``area``. The area is None when no box is given (the metric then computes the same)."""
    given = [i for i, entry in enumerate(entries) if "bbox" in entry]
    if not given:
        return boxes, None
    boxes, area = boxes.copy(), area.copy()
    boxes[given] = _boxes([entries[i]["bbox"] for i in given], source)
    if _box_branch(entries):
        area[given] = boxes[given, 2] * boxes[given, 3]
    return boxes, area


def _box_branch(results: list[Any]) -> bool:
    """Whether ``loadRes`` reads the file as boxes: it looks at ``results[0]`` only. Its box branch
    sets every result's area to ``w * h``; its mask branch every result's to the mask's area."""
    return bool(results) and isinstance(results[0], dict) and results[0].get("bbox", []) != []


def _with_box_polygons(results: list[Any], source: _Source) -> tuple[list[Any], tuple[str, ...]]:
    """The results for ``--iou-type segm``, where loadRes's box branch (``results[0]`` has a box) makes
    a result without a ``segmentation`` its box's polygon ``[[x1, y1, x1, y2, x2, y2, x2, y1]]``."""
    missing = [i for i, result in enumerate(results) if isinstance(result, dict) and "segmentation" not in result]
    if not missing or not _box_branch(results):
        return _with_key(results, "segmentation", source), ()
    boxes = _boxes(_column(results, "bbox", source), source)  # loadRes reads every result's bbox there
    entries = list(results)
    for i, (x, y, w, h) in zip(missing, boxes[missing].tolist()):
        entries[i] = {**results[i], "segmentation": [[x, y, x, y + h, x + w, y + h, x + w, y]]}
    note = (
        f"{source.path}: {len(missing)} of {len(results)} results have a 'bbox' and no 'segmentation'; "
        "they are scored as masks of their boxes, as pycocotools' loadRes scores them"
    )
    return entries, (note,)


def _keypoints(entries: list[Any], key: str, source: _Source, like: np.ndarray | None) -> np.ndarray:
    """Every entry's ``keypoints`` (x1, y1, v1, x2, ...) as float64 (N, K, 3), K as in ``like``."""
    values = _column(entries, key, source)
    lengths = {len(v) if isinstance(v, list) else -1 for v in values}
    k = like.shape[1] if like is not None else (max(lengths) // 3 if lengths else 0)
    if lengths - {3 * k} or k == 0 and values:
        index = next(i for i, v in enumerate(values) if not isinstance(v, list) or len(v) != 3 * k or not v)
        raise source.error(
            f"{source.name}[{index}]['{key}'] must be a list of 3 * {k} numbers (x, y, v for each keypoint), "
            f"got {str(values[index])[:60]}"
        )
    flat = list(itertools.chain.from_iterable(values))
    return _numbers(flat, key, source, integer=False).reshape(len(values), k, 3) if values else np.zeros((0, k, 3))


def _ground_truth_keypoints(annotations: list[Any], source: _Source) -> tuple[np.ndarray, tuple[str, ...]]:
    """The ground truth's keypoints, and a warning where ``num_keypoints`` miscounts the labelled points.

    pycocotools reads only whether ``num_keypoints`` is 0, to ignore a person without labelled points;
    ignite-det counts the points. So the two must agree about zero (refused otherwise); any other
    miscount changes no number and is only named."""
    points = _keypoints(annotations, "keypoints", source, None)
    visibility = points[:, :, 2]
    _check_rule(VISIBLE, visibility, "keypoints", source, f"{VISIBLE.requirement} at every third place")
    counted = (visibility > 0).sum(axis=1)
    given = _field(annotations, "num_keypoints", source, integer=True, default=-1)
    bad = (given >= 0) & ((given == 0) != (counted == 0))
    if bad.any():
        index = int(np.flatnonzero(bad)[0])
        raise source.error(
            f"{source.name}[{index}]['num_keypoints'] is {given[index]}, but {int(counted[index])} of its "
            "keypoints are labelled (v > 0); pycocotools ignores a person whose num_keypoints is 0, so it must be 0 "
            "exactly when no keypoint is labelled"
        )
    return points, _miscounted(given, counted, source)


def _miscounted(given: np.ndarray, counted: np.ndarray, source: _Source) -> tuple[str, ...]:
    wrong = np.flatnonzero((given >= 0) & (given != counted))
    if len(wrong) == 0:
        return ()
    first = int(wrong[0])
    return (
        f"{source.path}: {len(wrong)} of {len(given)} {source.name} have a 'num_keypoints' other than their "
        f"number of labelled keypoints (v > 0), e.g. {source.name}[{first}]: {given[first]} where {counted[first]} "
        "are labelled; this changes no number: pycocotools reads only whether num_keypoints is 0, and ignite-det "
        "counts the points",
    )
