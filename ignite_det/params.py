"""Evaluation parameters, built in float64 exactly as pycocotools' ``Params`` builds them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, get_args

import numpy as np

from ignite_det.iou.keypoints import KEYPOINT_AREA_RANGES, KEYPOINT_MAX_DETECTIONS, check_sigmas

# cocoeval.py Params.setDetParams: np.arange "causes trouble", so linspace with a rounded count.
COCO_IOU_THRESHOLDS = np.linspace(0.5, 0.95, int(np.round((0.95 - 0.5) / 0.05)) + 1, endpoint=True)
COCO_REC_THRESHOLDS = np.linspace(0.0, 1.00, int(np.round((1.00 - 0.0) / 0.01)) + 1, endpoint=True)
COCO_MAX_DETECTIONS = (1, 10, 100)
COCO_AREA_RANGES: dict[str, tuple[float, float]] = {
    "small": (0**2, 32**2),
    "medium": (32**2, 96**2),
    "large": (96**2, 1e5**2),
}
ALL_AREAS = (0**2, 1e5**2)

# The choices of CocoMetric's string arguments, once, for type checkers and for the checks that name them.
BoxFormat = Literal["xyxy", "xywh", "cxcywh"]
BOX_FORMATS: tuple[BoxFormat, ...] = get_args(BoxFormat)
"""How boxes are written, in absolute pixels: corners, COCO's corner and size, or centre and size."""
IouType = Literal["bbox", "segm", "keypoints"]
"""What is compared, as COCOeval's ``iouType``: boxes, masks or keypoints (OKS)."""
Backend = Literal["native", "pycocotools", "faster_coco_eval"]
Protocol = Literal["coco", "lvis"]
PROTOCOLS: tuple[str, ...] = get_args(Protocol)
"""Which engine evaluates; all three give the same numbers to the last bit."""
IOU_TYPES: tuple[IouType, ...] = get_args(IouType)


@dataclass(frozen=True)
class EvalParams:
    """What COCOeval is asked to compute. Axes of the result arrays follow these orders.

    ``area_names[0]`` is always ``"all"``; ``max_detections`` is sorted ascending, as COCOeval sorts it.
    ``iou_type`` and ``keypoint_sigmas`` are COCOeval's ``iouType`` and ``kpt_oks_sigmas``; with
    ``"keypoints"`` the defaults are pycocotools' keypoint parameters (``maxDets`` 20, areas
    medium and large) and COCO's 17 person sigmas.
    """

    iou_thresholds: np.ndarray  # float64 (T,)
    rec_thresholds: np.ndarray  # float64 (R,)
    max_detections: tuple[int, ...]  # (M,)
    area_names: tuple[str, ...]  # (A,)
    area_ranges: tuple[tuple[float, float], ...]  # (A,) inclusive [lo, hi]
    iou_type: IouType = "bbox"
    keypoint_sigmas: np.ndarray = field(default_factory=lambda: np.zeros(0))  # float64 (K,); K = 0 unless keypoints

    @staticmethod
    def create(
        iou_thresholds: Sequence[float] | None = None,
        rec_thresholds: Sequence[float] | None = None,
        max_detections: Sequence[int] | None = None,
        area_ranges: Mapping[str, tuple[float, float]] | None = None,
        iou_type: IouType = "bbox",
        keypoint_sigmas: Sequence[float] | None = None,
    ) -> EvalParams:
        if iou_type not in IOU_TYPES:
            raise ValueError(f"iou_type must be one of {IOU_TYPES}, got {iou_type!r}")
        if iou_type != "keypoints" and keypoint_sigmas is not None:
            raise ValueError(f"keypoint_sigmas are for iou_type='keypoints', got iou_type={iou_type!r}")
        keypoints = iou_type == "keypoints"
        if area_ranges is None:
            area_ranges = KEYPOINT_AREA_RANGES if keypoints else COCO_AREA_RANGES
        if max_detections is None and keypoints:
            max_detections = KEYPOINT_MAX_DETECTIONS
        areas = dict(area_ranges)
        if "all" in areas:
            raise ValueError("area_ranges must not contain 'all': that range (0, 1e10) is always evaluated first")
        for name, bounds in areas.items():
            if len(bounds) != 2 or not 0 <= float(bounds[0]) <= float(bounds[1]):
                raise ValueError(f"area_ranges['{name}'] must be (low, high) with 0 <= low <= high, got {bounds}")
        return EvalParams(
            iou_thresholds=_thresholds("iou_thresholds", iou_thresholds, COCO_IOU_THRESHOLDS),
            rec_thresholds=_thresholds("rec_thresholds", rec_thresholds, COCO_REC_THRESHOLDS),
            max_detections=_max_detections(max_detections),
            area_names=("all", *areas),
            area_ranges=(ALL_AREAS, *((float(lo), float(hi)) for lo, hi in areas.values())),
            iou_type=iou_type,
            keypoint_sigmas=check_sigmas(keypoint_sigmas) if keypoints else np.zeros(0),
        )

    @property
    def num_keypoints(self) -> int:
        """K, the keypoints of each object (0 unless ``iou_type`` is ``"keypoints"``)."""
        return len(self.keypoint_sigmas)

    def typed_iou_thresholds(self) -> list[float]:
        """The IoU thresholds as a person would type them (0.9, not np.linspace's 0.8999999999999999)."""
        return [float(f"{t:.10g}") for t in self.iou_thresholds]

    def iou_index(self, iou: float) -> int | None:
        """Index of an IoU threshold, tolerant of float noise such as ``np.arange``'s 0.7500000000000002."""
        hits = np.flatnonzero(np.abs(self.iou_thresholds - iou) < 1e-9)
        return int(hits[0]) if len(hits) else None

    def operating_iou_index(self) -> int:
        """Index of the IoU the operating point (best F1, error analysis) is found at unless one is given: 0.5
        if evaluated, else the lowest threshold."""
        half = self.iou_index(0.5)
        return half if half is not None else int(np.argmin(self.iou_thresholds))


def _thresholds(name: str, given: Sequence[float] | None, default: np.ndarray) -> np.ndarray:
    if given is None:
        return default.copy()
    values = np.asarray([float(v) for v in given], dtype=np.float64)
    if values.ndim != 1 or len(values) == 0 or not np.all((values >= 0) & (values <= 1)):
        raise ValueError(f"{name} must be a non-empty list of numbers in [0, 1], got {list(given)}")
    return values


def check_max_detections_type(given: object) -> None:
    """A bare number (``max_detections=300``) is the easy mistake: say what to write instead."""
    if isinstance(given, str) or not isinstance(given, Sequence):
        raise TypeError(
            f"max_detections must be a list of positive integers such as [1, 10, 100], got {given!r} "
            f"({type(given).__name__}); for one cap write [{given!r}]"
        )


def _max_detections(given: Sequence[int] | None) -> tuple[int, ...]:
    if given is None:
        return COCO_MAX_DETECTIONS
    check_max_detections_type(given)
    values = sorted({int(v) for v in given})
    if not values or values[0] < 1 or any(int(v) != v for v in given):
        raise ValueError(f"max_detections must be a non-empty list of positive integers, got {list(given)}")
    return tuple(values)
