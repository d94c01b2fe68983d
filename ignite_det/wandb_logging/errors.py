"""The error analysis (``result.errors``) in W&B: TIDE's bar charts, a per-class table, scalars, box captions.

Under ``<tag>/errors/`` each evaluation logs, when the metric analyses errors (``CocoMetric(error_analysis=...)``):

- ``main`` and ``special``: bar charts of each bin's dAP, as the TIDE paper draws them (Cls, Loc, Both, Dupe,
  Bkg, Miss; FalsePos, FalseNeg), titled with the mode, the IoU thresholds and the AP they explain;
- ``per_class``: a table, one row per class, columns :data:`ERROR_CLASS_COLUMNS` (each bin's dAP and count);
- ``AP``, ``dAP/<bin>`` for the eight bins and ``count/<bin>`` for the six main ones, scalars, so a bin's course
  over the epochs is a chart.

Every dAP is a fraction, as the AP itself (TIDE prints them in AP points, x100). The helpers return plain
Python data, so they are tested without a run.

On the sample images, a false positive's box caption names its bin (``FP loc``, ``FP cls: dog``, ``FP both``,
``FP dupe``, ``FP bkg``) and a ground truth of the ``Miss`` bin is captioned ``missed``
(:func:`detection_bins`, in the ``coco`` mode, whose bins sit on the same matching as the verdicts).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from ignite_det.error_analysis.analysis import MAIN_ERRORS, SPECIAL_ERRORS, ErrorAnalysis
from ignite_det.error_analysis.coco import ErrorBins, error_bins
from ignite_det.iou.by_type import pair_iou

if TYPE_CHECKING:
    from ignite_det.params import EvalParams
    from ignite_det.table import Detections

__all__ = ["ERROR_CLASS_COLUMNS", "detection_bins", "error_payload", "fp_caption"]

ERROR_CLASS_COLUMNS = (
    "category_id",
    "class",
    "AP",
    *(f"dAP {name}" for name in (*MAIN_ERRORS, *SPECIAL_ERRORS)),
    *(f"count {name}" for name in MAIN_ERRORS),
)


def _defined(value: float) -> float | None:
    """An AP: COCO's -1 (undefined) and NaN as ``None``, an empty cell."""
    value = float(value)
    return None if value < 0 or not math.isfinite(value) else value


def _finite(value: float) -> float | None:
    """A dAP, which may be negative: NaN (a class without AP before or after the fix) as ``None``."""
    value = float(value)
    return value if math.isfinite(value) else None


def error_bar_rows(values: Mapping[str, float], names: tuple[str, ...]) -> list[list[Any]]:
    """``[bin, dAP]`` rows of a bar chart, in TIDE's order.

    Example:
        >>> error_bar_rows({"FalseNeg": 0.25, "FalsePos": 0.5}, SPECIAL_ERRORS)
        [['FalsePos', 0.5], ['FalseNeg', 0.25]]
    """
    return [[name, float(values[name])] for name in names]


def error_class_rows(errors: ErrorAnalysis) -> list[list[Any]]:
    """One row per class in :data:`ERROR_CLASS_COLUMNS` order; an undefined AP (-1, no ground truth) or dAP (NaN)
    is ``None``, an empty cell."""
    rows = []
    for c in errors.per_class:
        dap = [_finite(c.main[name]) for name in MAIN_ERRORS] + [_finite(c.special[name]) for name in SPECIAL_ERRORS]
        counts = [int(c.counts[name]) for name in MAIN_ERRORS]
        rows.append([int(c.category_id), str(c.name), _defined(c.ap), *dap, *counts])
    return rows


def error_scalars(errors: ErrorAnalysis, tag: str) -> dict[str, float]:
    """``tag/errors/AP``, ``tag/errors/dAP/<bin>`` (main and special; left out where NaN, so the chart shows a
    gap) and ``tag/errors/count/<bin>`` (main)."""
    scalars = {f"{tag}/errors/AP": float(errors.ap)}
    for name, value in (*errors.main.items(), *errors.special.items()):
        if math.isfinite(value):
            scalars[f"{tag}/errors/dAP/{name}"] = float(value)
    for name in MAIN_ERRORS:
        scalars[f"{tag}/errors/count/{name}"] = float(errors.counts[name])
    return scalars


def error_title(errors: ErrorAnalysis, tag: str, which: str) -> str:
    """``val main errors (coco), dAP at IoU 0.5 (background 0.1), AP 0.6970``."""
    return (
        f"{tag} {which} errors ({errors.mode}), dAP at IoU {errors.iou_threshold:g} "
        f"(background {errors.background_threshold:g}), AP {errors.ap:.4f}"
    )


def error_payload(wandb: Any, errors: ErrorAnalysis, tag: str) -> dict[str, Any]:
    """What one evaluation logs of ``errors`` (see the module docstring); ``wandb`` builds the W&B objects."""
    data: dict[str, Any] = error_scalars(errors, tag)
    for which, values, names in (("main", errors.main, MAIN_ERRORS), ("special", errors.special, SPECIAL_ERRORS)):
        table = wandb.Table(columns=["error", "dAP"], data=error_bar_rows(values, names))
        data[f"{tag}/errors/{which}"] = wandb.plot.bar(table, "error", "dAP", title=error_title(errors, tag, which))
    data[f"{tag}/errors/per_class"] = wandb.Table(columns=list(ERROR_CLASS_COLUMNS), data=error_class_rows(errors))
    return data


# ---------------------------------------------------------------------------------------------------------
# The sample images: each false positive's bin, each missed ground truth
# ---------------------------------------------------------------------------------------------------------


def detection_bins(
    d: Detections,
    params: EvalParams,
    iou_index: int,
    background_threshold: float,
    category_ids: tuple[int, ...] | None = None,
) -> ErrorBins:
    """The bins of one image's objects on COCOeval's matching at ``params.iou_thresholds[iou_index]``
    (:func:`ignite_det.error_analysis.coco.error_bins`, with the evaluated ``category_ids``; default: every
    label)."""
    ids = None if category_ids is None else np.asarray(category_ids, dtype=np.int64)
    return error_bins(d, params, iou_index, background_threshold, pair_iou(params), category_ids=ids)


def fp_caption(error: int, gt_name: str | None) -> str:
    """A false positive's words by bin: ``FP loc``, ``FP cls: dog`` (the class of the ground truth it sits
    on), ``FP both``, ``FP dupe``, ``FP bkg``.

    Example:
        >>> from ignite_det.error_analysis.analysis import CLS, DUPE
        >>> fp_caption(CLS, "dog"), fp_caption(DUPE, None)
        ('FP cls: dog', 'FP dupe')
    """
    name = MAIN_ERRORS[error].lower()
    if name == "cls" and gt_name is not None:
        return f"FP cls: {gt_name}"
    return f"FP {name}"
