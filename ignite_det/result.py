"""The result of one COCO evaluation: the 12 numbers as a read-only mapping, and everything behind them."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from ignite_det.error_analysis import ErrorAnalysis
from ignite_det.lvis import LvisProtocol
from ignite_det.operating_point import F1Point
from ignite_det.params import EvalParams
from ignite_det.per_image import PerImage

STAT_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")
_AREA_SUFFIX = {"small": "s", "medium": "m", "large": "l"}


@dataclass(frozen=True)
class ClassResult:
    """One category's numbers, sliced from the same arrays as the overall ones (-1.0: undefined, no ground truth).

    ``AR_max`` is the AR at the largest ``max_detections``: AR@100 by default, AR@20 for keypoints,
    AR@300 for ``max_detections=[1, 10, 300]`` (``AR100``, its former name, is a deprecated alias).
    ``num_gt`` counts non-crowd ground truths and ``num_det`` every detection of the category; ``f1`` is
    the category's best-F1 operating point.
    """

    category_id: int
    name: str
    AP: float
    AP50: float
    AP75: float
    APs: float
    APm: float
    APl: float
    AR_max: float
    num_gt: int
    num_det: int
    f1: F1Point
    frequency: str | None = None  # LVIS's group, "r", "c" or "f" (protocol="lvis"); None under COCO

    @property
    def AR100(self) -> float:  # noqa: N802 (the name it replaces)
        """Deprecated alias of :attr:`AR_max`, which is at the largest ``max_detections``, 100 or not."""
        warnings.warn(
            "ClassResult.AR100 is deprecated: use ClassResult.AR_max (the AR at the largest max_detections, "
            "which is 20 for keypoints and need not be 100)",
            DeprecationWarning,
            stacklevel=2,
        )
        return self.AR_max


class CocoResult(Mapping[str, float]):
    """A read-only ``Mapping`` of the COCO summary numbers, plus per-class results, curves and arrays.

    With the default parameters the keys are ``AP, AP50, AP75, APs, APm, APl, AR1, AR10, AR100,
    ARs, ARm, ARl`` (see :data:`STAT_NAMES`), as plain floats, -1.0 where undefined (no ground truth);
    for keypoints, pycocotools' keypoint summary ``AP, AP50, AP75, APm, APl, AR, AR50, AR75, ARm, ARl``
    (:data:`~ignite_det.iou.keypoints.KEYPOINT_STAT_NAMES`).
    Unlike pycocotools' ``summarize()``, the AP family always uses the largest ``max_detections``
    (pycocotools uses 100 whatever was asked, and gives -1 when 100 is not among them), and AR keys
    follow the ``max_detections`` given (``AR1, AR10, AR300`` for ``[1, 10, 300]``).

    Array axes, as in pycocotools' ``accumulate``:

    - ``precision``: (T, R, K, A, M) interpolated precision at each IoU threshold (T), recall
      threshold (R), category (K, order of ``category_ids``), area range (A, "all" first) and
      max detections (M); -1 where the category has no ground truth in that area range.
    - ``scores``: (T, R, K, A, M) the detection score at which each precision is reached.
    - ``recall``: (T, K, A, M) the highest recall reached.

    When there is nothing to count, every attribute is still defined: AP and AR are 0 where ground
    truth exists and nothing was detected, -1 where a category (or the whole evaluation) has no
    ground truth, as in pycocotools; ``best_f1.status`` says ``"no ground truth"`` or
    ``"no detection"`` (see :class:`~ignite_det.F1Point`); the F1 curve's recall and F1 are NaN
    without ground truth; the confusion matrix then counts every detection
    (``best_f1.counting_threshold`` is ``-inf``); the tables print ``-`` for undefined values.

    Example:
        >>> result = evaluator.state.metrics["coco"]          # doctest: +SKIP
        >>> result["AP"], result.best_f1.precision, result.per_class[0].AP50  # doctest: +SKIP
        >>> print(result)                                     # doctest: +SKIP
    """

    def __init__(
        self,
        params: EvalParams,
        category_ids: tuple[int, ...],
        class_names: Mapping[int, str],
        precision: np.ndarray,
        recall: np.ndarray,
        scores: np.ndarray,
        num_gt: np.ndarray,
        num_det: np.ndarray,
        class_f1: list[F1Point],
        best_f1: F1Point,
        f1_curve: np.ndarray,
        confusion_matrix: np.ndarray,
        f1_iou_threshold: float,
        num_images: int,
        per_image: PerImage | None = None,
        lvis: LvisProtocol | None = None,
        errors: ErrorAnalysis | None = None,
    ) -> None:
        self.params = params
        self.category_ids = category_ids
        self.class_names = {k: class_names.get(k, str(k)) for k in category_ids}
        self.precision = _read_only(precision)
        self.recall = _read_only(recall)
        self.scores = _read_only(scores)
        self.best_f1 = best_f1
        self.f1_iou_threshold = f1_iou_threshold
        self.confusion_matrix = _read_only(confusion_matrix)
        self.num_images = num_images
        # One row per image, in image-id order (see ignite_det.per_image); worst_first() sorts them.
        self.per_image = per_image if per_image is not None else PerImage.from_table(np.zeros((0, 9)))
        self._f1_curve = _read_only(f1_curve)
        self.lvis = lvis
        # TIDE's error bins (ignite_det.error_analysis), when CocoMetric(error_analysis=...) asked for them.
        self.errors = errors
        if lvis is None:
            self._stats = summarize(self.precision, self.recall, params)
        else:  # lvis-api's 13 numbers (ignite_det.lvis)
            self._stats = lvis.summarize(self.precision, self.recall, category_ids, params)
        k_count = len(category_ids)  # each number (K,), one per category (-1.0 where not evaluated)
        class_stats = {
            name: np.broadcast_to(v, (k_count,))
            for name, v in _summary(self.precision, self.recall, params, _class_means).items()
        }
        self.per_class = tuple(
            self._class_result(
                k, {name: float(v[k]) for name, v in class_stats.items()}, int(num_gt[k]), int(num_det[k]), class_f1[k]
            )
            for k in range(k_count)
        )

    @property
    def confusion_score_threshold(self) -> float:
        """Deprecated alias of ``best_f1.counting_threshold`` (:attr:`F1Point.counting_threshold`), the score
        from which detections are counted in :attr:`confusion_matrix`."""
        warnings.warn(
            "CocoResult.confusion_score_threshold is deprecated: use result.best_f1.counting_threshold "
            "(the best-F1 threshold, or -inf when every detection counts)",
            DeprecationWarning,
            stacklevel=2,
        )
        return self.best_f1.counting_threshold

    # --- Mapping ---
    def __getitem__(self, key: str) -> float:
        return self._stats[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._stats)

    def __len__(self) -> int:
        return len(self._stats)

    def __repr__(self) -> str:
        numbers = ", ".join(f"{k}={v:.4f}" for k, v in self._stats.items())
        return f"CocoResult({numbers})"

    # --- curves ---
    def pr_curve(
        self, category_id: int | None = None, iou_threshold: float = 0.5, area: str = "all"
    ) -> tuple[np.ndarray, np.ndarray]:
        """(recall thresholds (R,), precision (R,)) at one IoU threshold and the largest max_detections.

        ``category_id=None`` gives the mean over categories that have ground truth; precision is -1
        where undefined.
        """
        t = self._iou_index(iou_threshold)
        a = self._area_index(area)
        curves = self.precision[t, :, :, a, -1]  # (R, K)
        if category_id is not None:
            return self.params.rec_thresholds, curves[:, self._category_index(category_id)].copy()
        valid = curves > -1
        counts = valid.sum(axis=1)
        sums = np.where(valid, curves, 0).sum(axis=1)
        return self.params.rec_thresholds, np.where(counts > 0, sums / np.maximum(counts, 1), -1.0)

    def f1_curve(self) -> dict[str, np.ndarray]:
        """Pooled precision, recall and F1 against the confidence threshold (101 points)."""
        columns = ("threshold", "precision", "recall", "f1")
        return {name: self._f1_curve[:, i].copy() for i, name in enumerate(columns)}

    # --- presentation ---
    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready report: the numbers under their names, per-class rows, the operating point."""
        report = {
            **self._stats,
            "per_class": [{**_json_ready(asdict(row)), "f1": _f1_json(row.f1)} for row in self.per_class],
            "best_f1": _f1_json(self.best_f1),
            "f1_iou_threshold": self.f1_iou_threshold,
            "num_images": self.num_images,
            "iou_thresholds": self.params.iou_thresholds.tolist(),
            "max_detections": list(self.params.max_detections),
            "area_ranges": dict(zip(self.params.area_names, map(list, self.params.area_ranges))),
        }
        if self.errors is not None:
            report["errors"] = self.errors.to_dict()
        return report

    def summary(self) -> str:
        """The lines of pycocotools' ``summarize()`` (12, or 10 for keypoints), in its layout."""
        if self.lvis is not None:  # lvis-api's summary, one number a line under its names
            return "\n".join(f" {name:<8} = {value:0.3f}" for name, value in self._stats.items())
        return "\n".join(_summary_lines(self._stats, self.params))

    def class_table(self) -> str:
        """A fixed-width table with one row per category; ``-`` marks an undefined value (COCO's -1: no
        ground truth of the class in that range; no threshold: nothing detected)."""
        names = ("AP", "AP50", "AP75", "APs", "APm", "APl", f"AR{self.params.max_detections[-1]}")
        header = (
            f"{'class':<20} "
            + " ".join(f"{n:>6}" for n in names)
            + f" {'GT':>6} {'dets':>7} "
            + " ".join(f"{n:>6}" for n in ("thr", "P", "R", "F1"))
        )
        rows = [header, "-" * len(header)]
        for c in self.per_class:
            numbers = (c.AP, c.AP50, c.AP75, c.APs, c.APm, c.APl, c.AR_max)
            f1 = (c.f1.threshold, c.f1.precision, c.f1.recall, c.f1.f1)
            rows.append(
                f"{c.name[:20]:<20} "
                + " ".join(_cell(v, undefined=v < 0) for v in numbers)
                + f" {c.num_gt:>6d} {c.num_det:>7d} "
                + " ".join(_cell(v, undefined=math.isnan(v)) for v in f1)
            )
        return "\n".join(rows)

    def __str__(self) -> str:
        operating = f"Best F1 at IoU={self.f1_iou_threshold:.2f}: {self.best_f1.describe()}"
        return f"{self.summary()}\n{operating}\n\n{self.class_table()}"

    # --- helpers ---
    def _class_result(self, k: int, stats: dict[str, float], num_gt: int, num_det: int, f1: F1Point) -> ClassResult:
        category_id = self.category_ids[k]
        return ClassResult(
            category_id=category_id,
            name=self.class_names[category_id],
            AP=stats["AP"],
            AP50=stats.get("AP50", -1.0),
            AP75=stats.get("AP75", -1.0),
            APs=stats.get("APs", -1.0),
            APm=stats.get("APm", -1.0),
            APl=stats.get("APl", -1.0),
            AR_max=stats["AR_max"],
            num_gt=num_gt,
            num_det=num_det,
            f1=f1,
            frequency=None if self.lvis is None else self.lvis.frequencies[category_id],
        )

    def _iou_index(self, iou: float) -> int:
        t = self.params.iou_index(iou)
        if t is None:
            raise ValueError(f"IoU threshold {iou} was not evaluated; evaluated: {self.params.typed_iou_thresholds()}")
        return t

    def _area_index(self, area: str) -> int:
        if area not in self.params.area_names:
            raise ValueError(f"area must be one of {list(self.params.area_names)}, got {area!r}")
        return self.params.area_names.index(area)

    def _category_index(self, category_id: int) -> int:
        if category_id not in self.category_ids:
            raise ValueError(f"category {category_id} was not evaluated; evaluated: {list(self.category_ids)}")
        return self.category_ids.index(category_id)


def summarize(precision: np.ndarray, recall: np.ndarray, params: EvalParams) -> dict[str, float]:
    """The summary numbers, each computed as pycocotools' ``_summarize`` computes it (same slices, same mean):
    ``_summarizeDets``' for boxes and masks, ``_summarizeKps``' for keypoints."""
    stats = _summary(precision, recall, params, _mean_valid)
    del stats["AR_max"]
    return stats


_Mean = Callable[[np.ndarray], Any]  # a slice's mean: one number, or one per category


def _summary(precision: np.ndarray, recall: np.ndarray, params: EvalParams, mean: _Mean) -> dict[str, Any]:
    """:func:`summarize`'s numbers, and ``AR_max`` (recall at the largest ``max_detections``), each the
    ``mean`` of its slice; every slice keeps the category axis last (``mean`` may keep it: per class)."""
    if params.iou_type == "keypoints":
        return _summary_keypoints(precision, recall, params, mean)
    stats: dict[str, Any] = {}
    top = len(params.max_detections) - 1
    for name, t in (("AP", None), ("AP50", params.iou_index(0.5)), ("AP75", params.iou_index(0.75))):
        if name == "AP" or t is not None:
            stats[name] = mean((precision if t is None else precision[t : t + 1])[:, :, :, 0, top])
        else:
            stats[name] = -1.0
    for a, area in enumerate(params.area_names[1:], start=1):
        stats[_area_key("AP", area)] = mean(precision[:, :, :, a, top])
    for m, max_det in enumerate(params.max_detections):
        stats[f"AR{max_det}"] = mean(recall[:, :, 0, m])
    for a, area in enumerate(params.area_names[1:], start=1):
        stats[_area_key("AR", area)] = mean(recall[:, :, a, top])
    stats["AR_max"] = stats[f"AR{params.max_detections[-1]}"]
    return stats


def summarize_keypoints(precision: np.ndarray, recall: np.ndarray, params: EvalParams) -> dict[str, float]:
    """pycocotools' keypoint summary (``_summarizeKps``): ``AP, AP50, AP75, APm, APl, AR, AR50, AR75, ARm, ARl``
    with the default parameters, at the largest ``max_detections`` (pycocotools' fixed 20).

    Area keys follow ``params.area_names`` as in :func:`summarize`.
    """
    stats = _summary_keypoints(precision, recall, params, _mean_valid)
    del stats["AR_max"]
    return stats


def _summary_keypoints(precision: np.ndarray, recall: np.ndarray, params: EvalParams, mean: _Mean) -> dict[str, Any]:
    top = len(params.max_detections) - 1
    stats: dict[str, Any] = {}
    for kind, values in (("AP", precision[..., top]), ("AR", recall[..., top])):  # (T, [R,] K, A)
        stats[kind] = mean(values[..., 0])
        for suffix, iou in (("50", 0.5), ("75", 0.75)):
            t = params.iou_index(iou)
            stats[kind + suffix] = -1.0 if t is None else mean(values[t : t + 1, ..., 0])
        for a, area in enumerate(params.area_names[1:], start=1):
            stats[_area_key(kind, area)] = mean(values[..., a])
    stats["AR_max"] = mean(recall[:, :, 0, top])
    return stats


def _mean_valid(values: np.ndarray) -> float:
    valid = values[values > -1]
    return float(np.mean(valid)) if len(valid) else -1.0


def _class_means(values: np.ndarray) -> np.ndarray:
    """(K,) :func:`_mean_valid` of each category's values (the last axis), to the last bit: a category's
    values are one contiguous row, which numpy sums as it sums one array (pairwise, in the same order)."""
    k_count = values.shape[-1]
    rows = np.ascontiguousarray(np.moveaxis(values, -1, 0)).reshape(k_count, values.size // max(k_count, 1))
    valid = rows > -1
    means = np.where(valid.any(axis=1), rows.sum(axis=1) / rows.shape[1], -1.0)
    for k in np.flatnonzero(valid.any(axis=1) & ~valid.all(axis=1)):  # some values undefined: not pycocotools' arrays
        means[k] = _mean_valid(rows[k])
    return means


def _area_key(prefix: str, area: str) -> str:
    return prefix + _AREA_SUFFIX[area] if area in _AREA_SUFFIX else f"{prefix}_{area}"


def _summary_lines(stats: dict[str, float], params: EvalParams) -> list[str]:
    iou_all = f"{params.iou_thresholds[0]:0.2f}:{params.iou_thresholds[-1]:0.2f}"
    top = params.max_detections[-1]
    rows = [("AP", iou_all, "all", top, "AP"), ("AP", "0.50", "all", top, "AP50"), ("AP", "0.75", "all", top, "AP75")]
    rows += [("AP", iou_all, area, top, _area_key("AP", area)) for area in params.area_names[1:]]
    if params.iou_type == "keypoints":  # _summarizeKps: recall at the three IoU choices, not per max_detections
        rows += [("AR", iou, "all", top, key) for iou, key in ((iou_all, "AR"), ("0.50", "AR50"), ("0.75", "AR75"))]
    else:
        rows += [("AR", iou_all, "all", m, f"AR{m}") for m in params.max_detections]
    rows += [("AR", iou_all, area, top, _area_key("AR", area)) for area in params.area_names[1:]]
    title = {"AP": "Average Precision", "AR": "Average Recall"}
    return [
        f" {title[kind]:<18} ({kind}) @[ IoU={iou:<9} | area={area:>6s} | maxDets={max_det:>3d} ] = {stats[key]:0.3f}"
        for kind, iou, area, max_det, key in rows
    ]


def _cell(value: float, undefined: bool) -> str:
    """A table cell; undefined values (COCO's -1 for AP/AR, NaN for the operating point) print as ``-``."""
    return f"{'-':>6}" if undefined else f"{value:>6.3f}"


def _read_only(array: np.ndarray) -> np.ndarray:
    array = np.asarray(array)
    array.flags.writeable = False
    return array


def _f1_json(point: F1Point) -> dict[str, Any]:
    """An operating point for JSON: undefined values are None, and ``status`` says why."""
    return {**_json_ready(asdict(point)), "status": point.status}


def _json_ready(row: dict[str, Any]) -> dict[str, Any]:
    """NaN is not JSON: undefined values become None."""
    return {
        k: (_json_ready(v) if isinstance(v, dict) else None if isinstance(v, float) and math.isnan(v) else v)
        for k, v in row.items()
    }
