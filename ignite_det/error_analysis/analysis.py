"""What an error analysis returns: TIDE's bins, the AP each would give back, per class and per detection.

The analysis explains the AP at one IoU threshold ``t_f`` (``iou_threshold``, the operating point's, 0.5 by
default). Every false positive falls in exactly one of five bins and every missed ground truth in the sixth
(TIDE, Bolya et al., ECCV 2020):

=========  =====================================================================================
``Cls``    localised well enough (IoU >= ``t_f``) on a ground truth of another class
``Loc``    the right class, localised between ``t_b`` and ``t_f``
``Both``   the wrong class and poorly localised
``Dupe``   the right class and well localised, on a ground truth already taken by a better detection
``Bkg``    on background: IoU <= ``t_b`` with every ground truth
``Miss``   a ground truth no detection matched or was close to (no ``Loc`` or ``Cls`` claims it)
=========  =====================================================================================

Each bin's ``dAP`` is the AP gained by fixing that bin alone and evaluating again; the two special errors
fix every false positive (``FalsePos``) or every missed ground truth (``FalseNeg``). All numbers are
fractions, like the AP itself. Two definitions (``mode``) exist: ``"coco"`` puts the bins on COCOeval's own
matching (its AP is COCOeval's AP at ``t_f``), ``"tidecv"`` reproduces the ``tidecv`` package (its own
matching, 100 detections per image across classes, its own 101-point AP over every class with ground truth or
predictions). See the README's error-analysis section for the rules.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any, Literal

import numpy as np

ErrorMode = Literal["coco", "tidecv"]
ERROR_MODES: tuple[ErrorMode, ...] = ("coco", "tidecv")

MAIN_ERRORS = ("Cls", "Loc", "Both", "Dupe", "Bkg", "Miss")
SPECIAL_ERRORS = ("FalsePos", "FalseNeg")
# A false positive's bin as an int8 code: its index in MAIN_ERRORS (Miss, 5, is a ground truth's).
CLS, LOC, BOTH, DUPE, BKG, MISS = range(len(MAIN_ERRORS))


@dataclass(frozen=True)
class ClassErrors:
    """One category's share: its AP at ``t_f`` (-1.0 where undefined: no ground truth), each bin's dAP for this
    category (NaN where it has no AP before or after the fix) and how many errors fell in it (a false positive
    counts under its own, predicted category; a missed ground truth under its category)."""

    category_id: int
    name: str
    ap: float
    main: dict[str, float]
    special: dict[str, float]
    counts: dict[str, int]


@dataclass(frozen=True)
class FalsePositives:
    """One row per binned false positive (int64 columns, float64 ``score``), ordered by image id, then by its
    place among its image's predictions.

    ``detection``: its index in its image's prediction (the ``boxes``/``masks`` given for that image);
    ``error``: its bin, an index into :data:`MAIN_ERRORS` (``Cls`` .. ``Bkg``); ``gt_index``: the ground truth
    the error is attributed to, its index in the image's target (-1 for ``Bkg``), and ``gt_category_id`` that
    ground truth's class (-1 for ``Bkg``).
    """

    image_id: np.ndarray
    detection: np.ndarray
    category_id: np.ndarray
    score: np.ndarray
    error: np.ndarray
    gt_index: np.ndarray
    gt_category_id: np.ndarray

    def __len__(self) -> int:
        return len(self.image_id)

    def rows(self) -> list[dict[str, Any]]:
        """One plain dict per false positive, ``error`` by name (JSON-ready)."""
        columns = {f.name: getattr(self, f.name).tolist() for f in fields(self)}
        columns["error"] = [MAIN_ERRORS[e] for e in columns["error"]]
        return [dict(zip(columns, row)) for row in zip(*columns.values())]

    @staticmethod
    def empty() -> FalsePositives:
        return FalsePositives(
            *(np.zeros(0, np.float64 if f.name == "score" else np.int64) for f in fields(FalsePositives))
        )


@dataclass(frozen=True)
class MissedObjects:
    """One row per ground truth in the ``Miss`` bin (int64 columns), ordered by image id, then index.

    ``gt_index``: its index in its image's target; ``category_id``: its class.
    """

    image_id: np.ndarray
    gt_index: np.ndarray
    category_id: np.ndarray

    def __len__(self) -> int:
        return len(self.image_id)

    def rows(self) -> list[dict[str, int]]:
        """One plain dict per missed ground truth (JSON-ready)."""
        columns = {f.name: getattr(self, f.name).tolist() for f in fields(self)}
        return [dict(zip(columns, row)) for row in zip(*columns.values())]

    @staticmethod
    def empty() -> MissedObjects:
        return MissedObjects(*(np.zeros(0, np.int64) for _ in fields(MissedObjects)))


@dataclass(frozen=True)
class ErrorAnalysis:
    """The error analysis of one evaluation (``result.errors``); see the module docstring for the bins.

    ``ap``: the AP at ``iou_threshold`` that the bins explain; ``main``: each of :data:`MAIN_ERRORS`' dAP;
    ``special``: each of :data:`SPECIAL_ERRORS`' dAP (a dAP is NaN where the AP before or after the fix is
    undefined: no ground truth, or none left once Miss or FalseNeg is fixed); ``counts``: how many errors fell
    in each main bin;
    ``per_class``: the same per category, in the result's category order; ``false_positives`` and
    ``missed``: every error, one row each.

    Example:
        A detection of class 2 on a ground truth of class 1 (``Cls``) and a stray one of class 1 (``Bkg``): the AP
        is 0, and relabelling the first would make it 1. (Class 2 is evaluated because it is named: the classes
        are COCOeval's, those of the ground truth and of ``class_names``.)

        >>> import torch
        >>> from ignite_det import CocoMetric
        >>> metric = CocoMetric(class_names={1: "cat", 2: "dog"}, error_analysis=True)
        >>> metric.update(([{"boxes": torch.tensor([[0.0, 0, 10, 10], [50, 50, 60, 60]]),
        ...     "scores": torch.tensor([0.9, 0.8]), "labels": torch.tensor([2, 1])}],
        ...     [{"boxes": torch.tensor([[0.0, 0, 10, 10]]), "labels": torch.tensor([1])}]))
        >>> errors = metric.compute().errors
        >>> errors.ap, errors.main["Bkg"], errors.special["FalsePos"]
        (0.0, 0.0, 0.0)
        >>> errors.main["Cls"]  # precision 1 / (1 + np.spacing(1)), as pycocotools computes it
        0.9999999999999999
        >>> errors.counts
        {'Cls': 1, 'Loc': 0, 'Both': 0, 'Dupe': 0, 'Bkg': 1, 'Miss': 0}
        >>> [(row["detection"], row["error"], row["gt_category_id"]) for row in errors.false_positives.rows()]
        [(0, 'Cls', 1), (1, 'Bkg', -1)]
    """

    mode: ErrorMode
    iou_threshold: float
    background_threshold: float
    ap: float
    main: dict[str, float]
    special: dict[str, float]
    counts: dict[str, int]
    per_class: tuple[ClassErrors, ...] = ()
    false_positives: FalsePositives = field(default_factory=FalsePositives.empty)
    missed: MissedObjects = field(default_factory=MissedObjects.empty)

    def to_dict(self) -> dict[str, Any]:
        """The JSON report's ``errors``: ``AP``, ``main``, ``special`` (fractions), ``counts`` and ``per_class``
        (an undefined dAP, NaN, is ``None``: strict JSON has no NaN)."""
        return {
            "mode": self.mode,
            "iou_threshold": self.iou_threshold,
            "background_threshold": self.background_threshold,
            "AP": self.ap,
            "main": _json_numbers(self.main),
            "special": _json_numbers(self.special),
            "counts": dict(self.counts),
            "per_class": [
                {
                    "category_id": c.category_id,
                    "name": c.name,
                    "AP": c.ap,
                    "main": _json_numbers(c.main),
                    "special": _json_numbers(c.special),
                    "counts": dict(c.counts),
                }
                for c in self.per_class
            ],
        }

    def text(self) -> str:
        """TIDE's two tables, main and special errors, dAP in AP points (x100) as TIDE prints them."""
        title = f"Errors ({self.mode}) at IoU={self.iou_threshold:.2f}, background IoU={self.background_threshold:.2f}"
        lines = [f"{title}: AP {_points(self.ap, undefined=self.ap < 0)}"]
        for names, values in ((MAIN_ERRORS, self.main), (SPECIAL_ERRORS, self.special)):
            widths = [max(6, len(name)) for name in names]
            lines.append("  " + " ".join(f"{name:>{w}}" for name, w in zip(names, widths)))
            cells = (_points(values[name], undefined=math.isnan(values[name])) for name in names)
            lines.append("  " + " ".join(f"{cell:>{w}}" for cell, w in zip(cells, widths)))
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.text()


def _points(value: float, undefined: bool) -> str:
    """A fraction in AP points (x100), or ``-`` where undefined (no ground truth: COCOeval's -1, or NaN)."""
    return "-" if undefined else f"{100 * value:.2f}"


def _json_numbers(values: dict[str, float]) -> dict[str, float | None]:
    """NaN as None, for strict JSON."""
    return {name: None if value != value else value for name, value in values.items()}
