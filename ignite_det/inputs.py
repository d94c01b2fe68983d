"""The input contract of :class:`~ignite_det.CocoMetric`: validate a batch, then normalise it.

``update((y_pred, y))`` takes two equal-length lists with one entry per image, in
torchvision's detection convention:

============  ==========  =====  ==================================================
key           dtype       shape  meaning
============  ==========  =====  ==================================================
y_pred[i]
``boxes``     float       (N,4)  predicted boxes in ``box_format``, absolute pixels
``scores``    float       (N,)   confidence of each box
``labels``    int         (N,)   category id of each box
``area``      float       (N,)   optional; the detection's area for small/medium/
                                 large (e.g. its mask area); box area when absent
y[i]
``boxes``     float       (M,4)  ground-truth boxes in ``box_format``
``labels``    int         (M,)   category id of each box
``iscrowd``   int / bool  (M,)   optional; 1 marks a crowd region (COCO's rules);
                                 a float tensor of 0.0/1.0 is accepted too
``area``      float       (M,)   optional; COCO's ``area`` (e.g. mask area) that
                                 drives small/medium/large; box area when absent
``image_id``  int         ()     optional; the image's id, used for tie-breaking and
                                 to count an image only once; arrival order when absent
============  ==========  =====  ==================================================

With ``iou_type="segm"``, predictions and targets carry ``masks`` instead of ``boxes`` (see
:mod:`ignite_det.iou.segm` for the accepted forms: Mask R-CNN's (N, 1, H, W) probabilities, binary
masks, COCO RLEs); a detection's box and area are its mask's, and a target's ``area`` defaults to
the mask area. With ``iou_type="keypoints"``, predictions carry ``keypoints`` (N, K, 3) instead of
``boxes``, and targets carry ``keypoints`` (M, K, 3) with COCO's visibility flags besides their
``boxes`` (see :mod:`ignite_det.iou.keypoints`); a detection's box and area are the extent of its points.
Keys of another IoU type (Mask R-CNN's ``boxes``, say) are not read.

Every check runs before anything is stored, and every message names the sample,
the key, what was expected and what was given. Boxes may be floating point or
integer tensors. They are converted to COCO's ``xywh`` in float64: values are
first widened exactly to float64 (integers up to 2**53 in magnitude), then
``w = x2 - x1`` (or ``x = cx - w / 2``) is computed in float64.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import torch

from ignite_det.iou import keypoints, segm
from ignite_det.plausibility import check_not_swapped
from ignite_det.rle import Rles
from ignite_det.rules import AREA, BOX_SIZE, CROWD, FINITE, ID_RANGE, MAX_ID, Rule
from ignite_det.table import Detections

# The key whose length says how many objects a sample holds, and what they are called, per IoU type.
_OBJECTS = {"bbox": ("boxes", "boxes"), "segm": ("masks", "masks"), "keypoints": ("keypoints", "objects")}


@dataclass(frozen=True)
class _Geometry:
    """One side's objects: boxes (xywh), the area they have unless ``area`` is given, and the
    type's own shapes (masks, keypoints)."""

    boxes: np.ndarray
    area: np.ndarray
    rles: Rles
    keypoints: np.ndarray


@dataclass(frozen=True)
class _Columns:
    """A batch's per-object values joined across samples: objects per sample, and float64 / int64 columns.

    ``None`` marks what is read later by the slower reader of its kind: ``det_boxes``/``gt_boxes`` by the
    IoU type's geometry, ``gt_crowd`` and (unless ``areas_read``) the areas sample by sample.
    With ``areas_read``, an area of ``None`` means that no sample gave one.
    """

    det_counts: list[int]
    gt_counts: list[int]
    det_scores: np.ndarray
    det_labels: np.ndarray
    gt_labels: np.ndarray
    det_boxes: np.ndarray | None = None
    gt_boxes: np.ndarray | None = None
    gt_crowd: np.ndarray | None = None
    det_area: np.ndarray | None = None
    gt_area: np.ndarray | None = None
    areas_read: bool = False

    @staticmethod
    def sample_by_sample(y_pred: Sequence[Mapping], y: Sequence[Mapping]) -> _Columns:
        """Any accepted batch (structure already checked), each sample's tensors converted on its own."""
        return _Columns(
            det_counts=[len(p["labels"]) for p in y_pred],
            gt_counts=[len(t["labels"]) for t in y],
            det_scores=_concat_float([p["scores"] for p in y_pred]),
            det_labels=_concat_int([p["labels"] for p in y_pred]),
            gt_labels=_concat_int([t["labels"] for t in y]),
        )


def _box_columns(y_pred: Sequence[Any], y: Sequence[Any]) -> _Columns | None:
    """The columns of a batch of boxes in one concatenation per key, with no Python work per object, when
    every sample has the common form; ``None`` for anything else (then the samples are checked one by one,
    which accepts more forms and names what it refuses).

    The common form: dicts whose tensors of one key share one dtype and one device, boxes of shape (N, 4)
    in floating point, ``scores`` floating and ``labels`` integer of shape (N,), and each optional key
    (``area``, ``iscrowd``) given by every sample or by none. It is a subset of what the checks accept,
    and the values are those of the sample-by-sample reader: widening to float64 (or int64) is exact, and
    it commutes with the concatenation when the dtypes agree.
    """
    if not y_pred or not all(isinstance(p, dict) and p.keys() >= _PREDICTION_KEYS for p in y_pred):
        return None
    if not all(isinstance(t, dict) and t.keys() >= _TARGET_KEYS for t in y):
        return None
    det_counts = _box_rows([p["boxes"] for p in y_pred])
    gt_counts = _box_rows([t["boxes"] for t in y])
    if det_counts is None or gt_counts is None:
        return None
    det_boxes, gt_boxes = [p["boxes"] for p in y_pred], [t["boxes"] for t in y]
    vectors = [
        _vector_column([p["scores"] for p in y_pred], det_counts, torch.float64, _floating),
        _vector_column([p["labels"] for p in y_pred], det_counts, torch.int64, _integer),
        _vector_column([t["labels"] for t in y], gt_counts, torch.int64, _integer),
    ]
    optional = [
        _optional_column([p.get("area") for p in y_pred], det_counts),
        _optional_column([t.get("iscrowd") for t in y], gt_counts),
        _optional_column([t.get("area") for t in y], gt_counts),
    ]
    if any(v is None for v in vectors) or any(o is False for o in optional):
        return None
    det_area, gt_crowd, gt_area = (o if isinstance(o, np.ndarray) else None for o in optional)
    if gt_crowd is None:  # no sample marks a crowd region
        gt_crowd = np.zeros(sum(gt_counts))
    with torch.no_grad():
        return _Columns(
            det_counts=det_counts,
            gt_counts=gt_counts,
            det_scores=cast(np.ndarray, vectors[0]),
            det_labels=cast(np.ndarray, vectors[1]),
            gt_labels=cast(np.ndarray, vectors[2]),
            det_boxes=_joined(det_boxes, torch.float64),
            gt_boxes=_joined(gt_boxes, torch.float64),
            gt_crowd=gt_crowd,
            det_area=det_area,
            gt_area=gt_area,
            areas_read=True,
        )


_PREDICTION_KEYS = frozenset(("boxes", "scores", "labels"))
_TARGET_KEYS = frozenset(("boxes", "labels"))


def _floating(dtype: torch.dtype) -> bool:
    return dtype.is_floating_point


def _integer(dtype: torch.dtype) -> bool:
    return not (dtype.is_floating_point or dtype.is_complex)


def _any_real(dtype: torch.dtype) -> bool:
    return not dtype.is_complex


def _one_kind(tensors: list[Any], accepts: Callable[[torch.dtype], bool]) -> bool:
    """Plain tensors, all of one dtype that ``accepts`` takes and on one device (so that one ``torch.cat``
    joins them without promoting any value)."""
    if not all(type(t) is torch.Tensor for t in tensors):
        return False
    dtypes = {t.dtype for t in tensors}
    return len(dtypes) == 1 and accepts(dtypes.pop()) and len({t.device for t in tensors}) == 1


def _box_rows(boxes: list[Any]) -> list[int] | None:
    """The number of boxes of each sample, when all are floating point tensors of shape (N, 4) of one kind."""
    if not _one_kind(boxes, _floating):
        return None
    shapes = [b.shape for b in boxes]
    if not all(len(shape) == 2 and shape[1] == 4 for shape in shapes):
        return None
    return [shape[0] for shape in shapes]


def _vector_column(
    tensors: list[Any], counts: list[int], dtype: torch.dtype, accepts: Callable[[torch.dtype], bool]
) -> np.ndarray | None:
    """The tensors joined and converted to ``dtype``, when each is of shape (count,) and all of one kind."""
    if not _one_kind(tensors, accepts) or not all(t.shape == (n,) for t, n in zip(tensors, counts)):
        return None
    with torch.no_grad():
        return _joined(tensors, dtype)


def _optional_column(tensors: list[Any], counts: list[int]) -> np.ndarray | bool | None:
    """An optional key's float64 column: ``None`` when no sample gives it, ``False`` when the common form
    does not hold (some give it and some not, or not a vector of one kind)."""
    given = sum(t is not None for t in tensors)
    if given == 0:
        return None
    if given < len(tensors):
        return False
    column = _vector_column(tensors, counts, torch.float64, _any_real)
    return False if column is None else column


def _joined(tensors: list[torch.Tensor], dtype: torch.dtype) -> np.ndarray:
    return torch.cat(tensors).to("cpu", dtype).numpy()


def normalize_batch(output: Any, box_format: str, iou_type: str = "bbox", num_keypoints: int = 0) -> Detections:
    """Validate ``(y_pred, y)`` as documented above and return its canonical form, one
    :class:`~ignite_det.table.Detections` (images without an ``image_id`` numbered 0..B-1, ``numbered``).

    Structure (keys, types, shapes, lengths): a batch of boxes in the common form (see :func:`_box_columns`)
    is checked and joined key by key, for the whole batch at once; any other batch, and any that the checks
    refuse, sample by sample, so that an error names the sample. Values (finite, in range) are checked on
    the whole batch at once, going back to the sample only to name it in an error. ``num_keypoints`` is K,
    the number of keypoints per object with ``iou_type="keypoints"``.
    """
    y_pred, y = _split_output(output)
    columns = _box_columns(y_pred, y) if iou_type == "bbox" else None
    if columns is None:  # not the common form, or something to refuse: check sample by sample, to name it
        for index, (prediction, target) in enumerate(zip(y_pred, y)):
            check_not_swapped(index, prediction, target)
            _check_prediction(index, prediction, iou_type, num_keypoints)
            _check_target(index, target, iou_type, num_keypoints)
        columns = _Columns.sample_by_sample(y_pred, y)
    image_ids = _image_ids(y)
    det_image, gt_image = _image_index(columns.det_counts), _image_index(columns.gt_counts)
    if columns.det_boxes is not None and columns.gt_boxes is not None:
        det = _box_geometry(_xywh("y_pred", columns.det_boxes, det_image, box_format))
        gt = _box_geometry(_xywh("y", columns.gt_boxes, gt_image, box_format))
    else:
        det, gt = _geometry(y_pred, y, det_image, gt_image, box_format, iou_type, num_keypoints)
    det_scores, det_labels, gt_labels = columns.det_scores, columns.det_labels, columns.gt_labels
    gt_crowd = _crowd(y) if columns.gt_crowd is None else columns.gt_crowd
    _refuse("y", "iscrowd", CROWD, gt_crowd, gt_image)
    gt_crowd = gt_crowd.astype(np.int64)
    det_xywh, gt_xywh = det.boxes, gt.boxes
    if columns.areas_read:
        det_area = det.area if columns.det_area is None else columns.det_area
        gt_area = gt.area if columns.gt_area is None else columns.gt_area
    else:
        det_area, gt_area = _area(y_pred, det.area), _area(y, gt.area)
    _refuse("y_pred", "scores", FINITE, det_scores, det_image)
    _refuse("y_pred", "labels", ID_RANGE, det_labels, det_image)
    _refuse("y", "labels", ID_RANGE, gt_labels, gt_image)
    for name, area, image in (("y_pred", det_area, det_image), ("y", gt_area, gt_image)):
        _refuse(name, "area", FINITE, area, image)
        _refuse(name, "area", AREA, area, image)
    return Detections(
        image_ids=np.arange(len(y), dtype=np.int64) if image_ids is None else image_ids,
        det_boxes=det_xywh,
        det_scores=det_scores,
        det_labels=det_labels,
        det_area=det_area,
        det_position=det_image,
        gt_boxes=gt_xywh,
        gt_labels=gt_labels,
        gt_crowd=gt_crowd,
        gt_area=gt_area,
        gt_position=gt_image,
        det_rle=det.rles.counts,
        det_mask_size=det.rles.sizes,
        det_keypoints=det.keypoints,
        gt_rle=gt.rles.counts,
        gt_mask_size=gt.rles.sizes,
        gt_keypoints=gt.keypoints,
        numbered=image_ids is None,
    )


def _geometry(
    y_pred: Sequence[Mapping],
    y: Sequence[Mapping],
    det_image: np.ndarray,
    gt_image: np.ndarray,
    box_format: str,
    iou_type: str,
    num_keypoints: int,
) -> tuple[_Geometry, _Geometry]:
    """Both sides' objects in canonical form, the values checked."""
    if iou_type == "segm":
        det_rles = [segm.encode_masks(f"y_pred[{i}]['masks']", p["masks"]) for i, p in enumerate(y_pred)]
        gt_rles = [segm.encode_masks(f"y[{i}]['masks']", t["masks"]) for i, t in enumerate(y)]
        for i, pair in enumerate(zip(det_rles, gt_rles)):
            segm.check_sizes(f"y_pred[{i}] and y[{i}]", pair)
        return _mask_geometry(Rles.concatenate(det_rles)), _mask_geometry(Rles.concatenate(gt_rles))
    if iou_type == "keypoints":
        det_points = _concat_keypoints("y_pred", y_pred, num_keypoints, target=False)
        gt_points = _concat_keypoints("y", y, num_keypoints, target=True)
        det_boxes, det_area = keypoints.extent(det_points)  # as loadRes sets a keypoint result's
        gt_boxes = _boxes("y", y, gt_image, box_format)
        return (
            _Geometry(det_boxes, det_area, Rles.empty(len(det_points)), det_points),
            _Geometry(gt_boxes, gt_boxes[:, 2] * gt_boxes[:, 3], Rles.empty(len(gt_points)), gt_points),
        )
    det_boxes, gt_boxes = _boxes("y_pred", y_pred, det_image, box_format), _boxes("y", y, gt_image, box_format)
    return _box_geometry(det_boxes), _box_geometry(gt_boxes)


def _boxes(name: str, samples: Sequence[Mapping], image: np.ndarray, box_format: str) -> np.ndarray:
    return _xywh(name, _concat_boxes([s["boxes"] for s in samples]), image, box_format)


def _xywh(name: str, boxes: np.ndarray, image: np.ndarray, box_format: str) -> np.ndarray:
    """float64 boxes as given, in xywh, their values checked."""
    with np.errstate(invalid="ignore", over="ignore"):  # reported by the checks, in words
        xywh = _to_xywh(boxes, box_format)
    _check_box_values(name, boxes, xywh, image, box_format)
    return xywh


def _box_geometry(xywh: np.ndarray) -> _Geometry:
    return _Geometry(xywh, xywh[:, 2] * xywh[:, 3], Rles.empty(len(xywh)), np.zeros((len(xywh), 0, 3)))


def _mask_geometry(rles: Rles) -> _Geometry:
    """A mask's box and area, as ``loadRes`` sets them for a segmentation result without a box."""
    return _Geometry(rles.boxes(), rles.area(), rles, np.zeros((len(rles), 0, 3)))


def _concat_keypoints(name: str, samples: Sequence[Mapping], k: int, target: bool) -> np.ndarray:
    parts = [
        keypoints.keypoints_array(f"{name}[{i}]['keypoints']", s["keypoints"], k, target) for i, s in enumerate(samples)
    ]
    return np.concatenate(parts) if parts else np.zeros((0, k, 3))


def _refuse(name: str, key: str, rule: Rule, values: np.ndarray, image: np.ndarray) -> None:
    """Raise for the first sample holding a value that breaks ``rule``, naming it and showing its bad values."""
    bad = rule.broken(values)
    if not bad.any():
        return
    index = int(image[np.argmax(bad)])
    shown = torch.from_numpy(values[bad & (image == index)])
    raise ValueError(f"{name}[{index}]['{key}'] {rule.requirement}, got {_sample(shown)}")


def _split_output(output: Any) -> tuple[Sequence[Mapping], Sequence[Mapping]]:
    if not isinstance(output, Sequence) or len(output) != 2:
        raise TypeError(
            f"update() expects a pair (y_pred, y) of two lists with one dict per image, got {type(output).__name__}"
        )
    y_pred, y = output
    for name, value in (("y_pred", y_pred), ("y", y)):
        if not isinstance(value, Sequence) or isinstance(value, (str, bytes, torch.Tensor)):
            raise TypeError(f"{name} must be a list with one dict per image, got {type(value).__name__}")
    if len(y_pred) != len(y):
        raise ValueError(
            f"y_pred and y must have one entry per image each, got {len(y_pred)} predictions and {len(y)} targets"
        )
    return y_pred, y


def _check_prediction(index: int, prediction: Any, iou_type: str, num_keypoints: int) -> None:
    where = f"y_pred[{index}]"
    key, _ = _OBJECTS[iou_type]
    _check_mapping(where, prediction, (key, "scores", "labels"))
    n = _check_objects(where, prediction, iou_type, num_keypoints, target=False)
    _check_vector(where, "scores", prediction["scores"], n, floating=True, iou_type=iou_type)
    _check_vector(where, "labels", prediction["labels"], n, floating=False, iou_type=iou_type)
    if prediction.get("area") is not None:
        _check_vector(where, "area", prediction["area"], n, floating=None, iou_type=iou_type)


def _check_target(index: int, target: Any, iou_type: str, num_keypoints: int) -> None:
    where = f"y[{index}]"
    key, _ = _OBJECTS[iou_type]
    _check_mapping(where, target, (key, "boxes", "labels") if iou_type == "keypoints" else (key, "labels"))
    m = _check_objects(where, target, iou_type, num_keypoints, target=True)
    _check_vector(where, "labels", target["labels"], m, floating=False, iou_type=iou_type)
    if target.get("iscrowd") is not None:
        _check_vector(where, "iscrowd", target["iscrowd"], m, floating=None, iou_type=iou_type)
    if target.get("area") is not None:
        _check_vector(where, "area", target["area"], m, floating=None, iou_type=iou_type)
    if target.get("image_id") is not None:
        _image_id(where, target["image_id"])


def _check_objects(where: str, sample: Mapping, iou_type: str, num_keypoints: int, target: bool) -> int:
    """The structure of a sample's boxes, masks or keypoints; returns how many objects it holds."""
    if iou_type == "segm":
        return segm.check_masks(f"{where}['masks']", sample["masks"])
    if iou_type == "bbox":
        return _check_boxes_shape(where, sample["boxes"])
    m = keypoints.check_keypoints(f"{where}['keypoints']", sample["keypoints"], num_keypoints, target)
    if target:  # COCOeval measures a person without a labelled point against its box
        boxes = _check_boxes_shape(where, sample["boxes"])
        if boxes != m:
            raise ValueError(
                f"{where}['boxes'] has {boxes} boxes but {where}['keypoints'] has {m} objects; "
                "they must have the same length"
            )
    return m


def _check_mapping(where: str, value: Any, keys: tuple[str, ...]) -> None:
    if not isinstance(value, Mapping):
        raise TypeError(f"{where} must be a dict with keys {list(keys)}, got {type(value).__name__}")
    missing = [key for key in keys if key not in value]
    if missing:
        raise ValueError(f"{where} is missing key(s) {missing}; expected keys {list(keys)}, got {sorted(value)}")


def _check_boxes_shape(where: str, boxes: Any) -> int:
    if not isinstance(boxes, torch.Tensor):
        raise TypeError(f"{where}['boxes'] must be a torch.Tensor of shape (N, 4), got {type(boxes).__name__}")
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        if boxes.numel() == 0:  # an empty tensor of any shape means "no boxes"
            return 0
        raise ValueError(f"{where}['boxes'] must have shape (N, 4), got {tuple(boxes.shape)}")
    if boxes.dtype == torch.bool or boxes.is_complex():
        raise TypeError(f"{where}['boxes'] must be a floating point or integer tensor, got dtype {boxes.dtype}")
    if not boxes.is_floating_point() and len(boxes) and int(boxes.abs().max()) >= MAX_ID:
        # float64 holds every integer below 2**53 exactly; beyond, widening would round silently
        largest = int(boxes.abs().max())
        raise ValueError(f"{where}['boxes'] integer coordinates must be smaller than 2**53 in magnitude, got {largest}")
    return boxes.shape[0]


def _check_vector(where: str, key: str, value: Any, length: int, floating: bool | None, iou_type: str = "bbox") -> None:
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{where}['{key}'] must be a torch.Tensor of shape ({length},), got {type(value).__name__}")
    if value.ndim != 1 and not (value.numel() == 0 and length == 0):
        raise ValueError(f"{where}['{key}'] must be 1-D with shape ({length},), got shape {tuple(value.shape)}")
    if value.numel() != length:
        raise ValueError(
            f"{where}['{key}'] has {value.numel()} entries but {where}['{_OBJECTS[iou_type][0]}'] has {length} "
            f"{_OBJECTS[iou_type][1]}; "
            "they must have the same length"
        )
    if length == 0:  # an empty tensor of any dtype means "none", as for boxes (torch.tensor([]) is float32)
        return
    if floating is True and not value.is_floating_point():
        raise TypeError(f"{where}['{key}'] must be a floating point tensor, got dtype {value.dtype}")
    if floating is False and (value.is_floating_point() or value.is_complex()):
        raise TypeError(
            f"{where}['{key}'] must be an integer tensor, got dtype {value.dtype}; "
            f"convert it with .long() if the values are whole numbers"
        )


def _check_box_values(name: str, boxes: np.ndarray, xywh: np.ndarray, image: np.ndarray, box_format: str) -> None:
    """Coordinates of the whole batch at once (as given, and in xywh); the first sample with a bad box is named."""
    with np.errstate(invalid="ignore"):
        if np.isfinite(boxes).all() and not BOX_SIZE.broken(xywh).any():  # the common case, in two passes
            return
    not_finite = FINITE.broken(boxes).any(axis=1)
    with np.errstate(invalid="ignore"):
        negative = BOX_SIZE.broken(xywh)  # x2 - x1 < 0 exactly when x2 < x1
    bad = not_finite | negative
    if not bad.any():
        return
    index = int(image[np.argmax(bad)])
    where = f"{name}[{index}]['boxes']"
    mine = image == index
    if (not_finite & mine).any():  # within a sample, non-finite coordinates are reported first
        raise ValueError(
            f"{where} must hold finite coordinates, got {_sample(torch.from_numpy(boxes[not_finite & mine]))}"
        )
    rule = "x2 >= x1 and y2 >= y1" if box_format == "xyxy" else "width >= 0 and height >= 0"
    raise ValueError(
        f"{where} in format '{box_format}' must satisfy {rule}, got box {boxes[negative & mine][0].tolist()}; "
        "check the box_format argument"
    )


def _image_id(where: str, value: Any) -> int:
    if isinstance(value, torch.Tensor):
        if value.numel() != 1 or value.is_floating_point():
            raise TypeError(
                f"{where}['image_id'] must be an int or a one-element integer tensor, "
                f"got a {value.dtype} tensor of shape {tuple(value.shape)}"
            )
        value = value.item()
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{where}['image_id'] must be an int, got {type(value).__name__} {value!r}")
    if abs(int(value)) >= MAX_ID:  # a Python int: no int64 overflow on the way
        raise ValueError(f"{where}['image_id'] {ID_RANGE.requirement}, got {value}")
    return int(value)


def _image_ids(y: Sequence[Mapping]) -> np.ndarray | None:
    """The batch's image ids; ``None`` when no target has one. Each given id is checked (in sample order)
    before a missing one is reported."""
    values: list[Any] = [t.get("image_id") for t in y]
    if all(type(v) is int for v in values) and max(map(abs, values), default=0) < MAX_ID:  # the common form
        return np.array(values, dtype=np.int64) if values else None
    ids = [None if v is None else _image_id(f"y[{i}]", v) for i, v in enumerate(values)]
    if all(v is None for v in ids):
        return None
    if any(v is None for v in ids):
        raise ValueError(
            f"y[{ids.index(None)}] has no 'image_id' while other targets in the batch have one; "
            "give every target an image_id or none of them"
        )
    return np.array(ids, dtype=np.int64)


def _concat_boxes(boxes: list[torch.Tensor]) -> np.ndarray:
    parts = [b.detach().reshape(-1, 4).to("cpu", torch.float64) for b in boxes]
    return torch.cat(parts).numpy() if parts else np.zeros((0, 4))


def _concat_float(values: list[torch.Tensor]) -> np.ndarray:
    parts = [v.detach().reshape(-1).to("cpu", torch.float64) for v in values]
    return torch.cat(parts).numpy() if parts else np.zeros(0)


def _concat_int(values: list[torch.Tensor]) -> np.ndarray:
    parts = [v.detach().reshape(-1).to("cpu", torch.int64) for v in values]
    return torch.cat(parts).numpy() if parts else np.zeros(0, dtype=np.int64)


def _image_index(counts: list[int]) -> np.ndarray:
    return np.repeat(np.arange(len(counts), dtype=np.int64), counts)


def _crowd(y: Sequence[Mapping]) -> np.ndarray:
    """``iscrowd`` in float64 (0 where not given), to be checked for 0/1 before any rounding could hide
    other values (0.5, 2, -1)."""
    parts = [
        torch.zeros(len(t["labels"]), dtype=torch.float64)
        if t.get("iscrowd") is None
        else t["iscrowd"].detach().reshape(-1).to("cpu", torch.float64)
        for t in y
    ]
    return torch.cat(parts).numpy() if parts else np.zeros(0)


def _area(samples: Sequence[Mapping], default: np.ndarray) -> np.ndarray:
    """The ``area`` key when given, else ``default``: what ``loadRes`` sets for results, the box
    area ``w * h`` for boxes, the mask area for masks, the points' extent for keypoints.

    For ground truth it is COCO's ``area`` field (the mask area on COCO); for a detection, e.g. the
    mask area that ``loadRes`` gives a segmentation result without a box.
    """
    if all(t.get("area") is None for t in samples):
        return default
    parts, start = [], 0
    for t in samples:
        m = len(t["labels"])
        given = t.get("area")
        parts.append(
            default[start : start + m] if given is None else given.detach().reshape(-1).to("cpu", torch.float64).numpy()
        )
        start += m
    return np.concatenate(parts)


def _to_xywh(boxes: np.ndarray, box_format: str) -> np.ndarray:
    if box_format == "xywh":
        return boxes
    out = boxes.copy()
    if box_format == "xyxy":
        np.subtract(boxes[:, 2:], boxes[:, :2], out=out[:, 2:])
    else:  # cxcywh
        out[:, :2] = boxes[:, :2] - boxes[:, 2:] / 2
    return out


def _sample(values: torch.Tensor, limit: int = 4) -> str:
    flat = values.reshape(-1).tolist()
    return str(flat[:limit])[:-1] + (", ...]" if len(flat) > limit else "]")
