"""An :class:`ErrorAnalysis` as float64 arrays of shapes every process knows, for ``CocoMetric``'s broadcast.

Rank 0 computes the analysis; the other ranks know the gathered detections (N), ground truths (G) and the
categories that can appear (the evaluated ones and the detections' labels), so each array is padded to
those sizes and the true lengths travel in the summary. Every id fits float64 exactly (ids are checked to be
below 2**53 at ``update()``). Every rank, rank 0 included, rebuilds the analysis from the arrays, so all ranks
hold the same object.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields

import numpy as np

from ignite_det.error_analysis.analysis import (
    MAIN_ERRORS,
    SPECIAL_ERRORS,
    ClassErrors,
    ErrorAnalysis,
    ErrorMode,
    FalsePositives,
    MissedObjects,
)

_M, _S = len(MAIN_ERRORS), len(SPECIAL_ERRORS)
_SUMMARY = 1 + _M + _S + _M + 3  # ap, main, special, counts, then the lengths of per_class, fp, missed
_CLASS = 2 + _M + _S + _M  # category_id, ap, main, special, counts
_FP = len(fields(FalsePositives))
_MISSED = len(fields(MissedObjects))


def error_shapes(num_det: int, num_gt: int, num_classes: int) -> dict[str, tuple[int, ...]]:
    """The arrays' shapes, by name, for ``num_det`` detections, ``num_gt`` ground truths, ``num_classes`` at most."""
    return {
        "errors_summary": (_SUMMARY,),
        "errors_class": (num_classes, _CLASS),
        "errors_fp": (_FP, num_det),  # a column per row: each field is written contiguously
        "errors_missed": (_MISSED, num_gt),
    }


def pack_errors(errors: ErrorAnalysis, num_det: int, num_gt: int, num_classes: int) -> dict[str, np.ndarray]:
    """The analysis as float64 arrays of :func:`error_shapes` (rows beyond the true lengths are zeros)."""
    shapes = error_shapes(num_det, num_gt, num_classes)
    arrays = {name: np.zeros(shape) for name, shape in shapes.items()}
    fp, missed = errors.false_positives, errors.missed
    lengths = [len(errors.per_class), len(fp), len(missed)]
    if lengths[0] > num_classes or lengths[1] > num_det or lengths[2] > num_gt:
        raise ValueError(f"an error analysis of {lengths} rows does not fit ({num_classes}, {num_det}, {num_gt})")
    arrays["errors_summary"][:] = [errors.ap, *_values(errors.main, errors.special, errors.counts), *lengths]
    for row, c in enumerate(errors.per_class):
        arrays["errors_class"][row] = [c.category_id, c.ap, *_values(c.main, c.special, c.counts)]
    for column, f in enumerate(fields(FalsePositives)):
        arrays["errors_fp"][column, : len(fp)] = getattr(fp, f.name)
    for column, f in enumerate(fields(MissedObjects)):
        arrays["errors_missed"][column, : len(missed)] = getattr(missed, f.name)
    return arrays


def unpack_errors(
    arrays: Mapping[str, np.ndarray],
    mode: ErrorMode,
    iou_threshold: float,
    background_threshold: float,
    class_names: Mapping[int, str],
) -> ErrorAnalysis:
    """The inverse of :func:`pack_errors`; class names come from ``class_names`` (the id where none)."""
    summary = arrays["errors_summary"]
    num_classes, num_fp, num_missed = (int(v) for v in summary[-3:])
    fp = arrays["errors_fp"][:, :num_fp]
    missed = arrays["errors_missed"][:, :num_missed]
    return ErrorAnalysis(
        mode=mode,
        iou_threshold=iou_threshold,
        background_threshold=background_threshold,
        ap=float(summary[0]),
        **_dicts(summary[1:-3]),
        per_class=tuple(_class(row, class_names) for row in arrays["errors_class"][:num_classes]),
        false_positives=FalsePositives(
            *(fp[i].astype(np.float64 if f.name == "score" else np.int64) for i, f in enumerate(fields(FalsePositives)))
        ),
        missed=MissedObjects(*(missed[i].astype(np.int64) for i in range(_MISSED))),
    )


def _values(main: Mapping[str, float], special: Mapping[str, float], counts: Mapping[str, int]) -> list[float]:
    return [*(main[n] for n in MAIN_ERRORS), *(special[n] for n in SPECIAL_ERRORS), *(counts[n] for n in MAIN_ERRORS)]


def _dicts(values: np.ndarray) -> dict[str, dict]:
    values = values.tolist()
    return {
        "main": dict(zip(MAIN_ERRORS, values[:_M])),
        "special": dict(zip(SPECIAL_ERRORS, values[_M : _M + _S])),
        "counts": {name: int(v) for name, v in zip(MAIN_ERRORS, values[_M + _S :])},
    }


def _class(row: np.ndarray, class_names: Mapping[int, str]) -> ClassErrors:
    category_id = int(row[0])
    return ClassErrors(
        category_id=category_id,
        name=class_names.get(category_id, str(category_id)),
        ap=float(row[1]),
        **_dicts(row[2:]),
    )
