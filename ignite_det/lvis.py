"""The LVIS protocol: lvis-api's federated rules (``lvis`` 0.5.3, ``eval.py`` and ``results.py``) on the record.

LVIS differs from COCO before the matching, never inside it, so :meth:`LvisProtocol.apply` rewrites each
batch's record at ``update()`` and the native engine then runs unchanged, with one ``max_detections``
(300) that no cell reaches:

====  ==========================================================================  ======================
rule  what                                                                        lvis-api
====  ==========================================================================  ======================
L1    at most 300 detections per image across categories, the top scores in a     ``results.py:39-40,
      stable order (ties keep arrival order), before any other rule               73-84``
L2    a ground truth or detection with ``area`` not above 0 is not loaded         ``lvis.py:85-96``
L3    a detection of a category neither in the image's ground truth nor in its    ``eval.py:88-103``
      ``neg_category_ids`` is dropped
L5    no crowd regions: ``iscrowd=1`` is refused                                  ``eval.py:177``
L8    an unmatched detection of a category in ``not_exhaustive_category_ids``     ``eval.py:267-278``
      is ignored: its area is set outside every area range, which is exactly
      the test that ignores an unmatched detection
L9    a detection's area is its box's (bbox) or its mask's (segm), whatever the   ``results.py:42-62``
      prediction says
L13   the 13 numbers, means over entries above -1 (-1 when none)                  ``eval.py:416-469``
====  ==========================================================================  ======================

Matching (L7), area ranges (L14) and accumulate (L12) are COCOeval's, which the native engine implements.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields, replace
from typing import Any

import numpy as np
import torch

from ignite_det.params import EvalParams
from ignite_det.table import Detections, category_index

FREQUENCY_GROUPS = ("r", "c", "f")
LVIS_MAX_DETECTIONS = 300
LVIS_KEYS = ("neg_category_ids", "not_exhaustive_category_ids")
# An area below every range's lower bound (bounds are >= 0): an unmatched detection with it is ignored (L8).
NOT_EXHAUSTIVE_AREA = -1.0


def lvis_stat_names(max_detections: int = LVIS_MAX_DETECTIONS) -> tuple[str, ...]:
    """lvis-api's 13 names, the AR ones following ``max_detections``.

    Example:
        >>> lvis_stat_names()[6:10]
        ('APr', 'APc', 'APf', 'AR@300')
    """
    ar = tuple(f"AR{size}@{max_detections}" for size in ("", "s", "m", "l"))
    return ("AP", "AP50", "AP75", "APs", "APm", "APl", "APr", "APc", "APf", *ar)


@dataclass(frozen=True)
class LvisProtocol:
    """lvis-api's rules for :class:`~ignite_det.CocoMetric` (``protocol="lvis"``).

    ``frequencies``: each evaluated category's group, ``"r"``, ``"c"`` or ``"f"``; ``max_detections``:
    the per-image cap across categories (L1); ``given_area``: keep each detection's own area instead of L9's
    (for a caller that has set it as ``LVISResults`` does, as the command line does).

    Example:
        >>> protocol = LvisProtocol.create({1: "f", 2: "r"})
        >>> protocol.category_ids.tolist(), protocol.max_detections
        ([1, 2], 300)
    """

    frequencies: dict[int, str]
    max_detections: int = LVIS_MAX_DETECTIONS
    # L9 off: each detection keeps the area it came with. The command line sets it, having set every result's
    # area as LVISResults does (``results.py:42-62``: w * h of the bbox when results[0] has one, else the mask's).
    given_area: bool = False

    @staticmethod
    def create(
        category_frequencies: Mapping[int, str] | None, max_detections: int = LVIS_MAX_DETECTIONS
    ) -> LvisProtocol:
        """Raises ValueError when ``category_frequencies`` is missing, empty or has a group other than r/c/f."""
        if not isinstance(category_frequencies, Mapping) or not category_frequencies:
            raise ValueError(
                "protocol='lvis' needs category_frequencies={category_id: 'r' | 'c' | 'f'} naming every evaluated "
                f"category (LVIS's 'frequency' of each category), got {category_frequencies!r}"
            )
        bad = {k: v for k, v in category_frequencies.items() if v not in FREQUENCY_GROUPS}
        if bad:
            raise ValueError(f"category_frequencies must map each category id to 'r', 'c' or 'f', got {bad}")
        return LvisProtocol({int(k): str(v) for k, v in category_frequencies.items()}, int(max_detections))

    @property
    def category_ids(self) -> np.ndarray:
        return np.array(sorted(self.frequencies), dtype=np.int64)

    def apply(self, batch: Detections, y: Sequence[Mapping[str, Any]], iou_type: str) -> Detections:
        """The batch's record under lvis-api's rules (``y`` the targets it was made from).

        Raises:
            ValueError: for a target without the LVIS keys, with ``iscrowd=1``, or with a category that is
                not in ``frequencies``.
        """
        return self.apply_rows(batch, y, iou_type)[0]

    def apply_rows(
        self, batch: Detections, y: Sequence[Mapping[str, Any]], iou_type: str
    ) -> tuple[Detections, np.ndarray, np.ndarray]:
        """:meth:`apply`, with the rows of ``batch``'s detections and of its ground truth that the result keeps
        (so that a picture can name what lvis-api leaves out of the evaluation)."""
        lists = [_label_lists(i, target) for i, target in enumerate(y)]
        self._check_ground_truth(batch)
        det_rows, gt_rows = np.arange(len(batch.det_scores)), np.flatnonzero(batch.gt_area > 0)
        batch = _keep(batch, "gt_", batch.gt_area > 0)  # L2
        keep = _rank_in_image(batch) < self.max_detections  # L1, before L2 and L3
        batch, det_rows = _keep(batch, "det_", keep), det_rows[keep]
        if not self.given_area:
            batch = replace(batch, det_area=_det_area(batch, iou_type))  # L9
        keep = batch.det_area > 0  # L2
        batch, det_rows = _keep(batch, "det_", keep), det_rows[keep]
        verified, not_exhaustive = _federated(batch, lists)
        batch, det_rows = _keep(batch, "det_", verified), det_rows[verified]  # L3
        batch = replace(batch, det_area=np.where(not_exhaustive[verified], NOT_EXHAUSTIVE_AREA, batch.det_area))
        return batch, det_rows, gt_rows

    def _check_ground_truth(self, batch: Detections) -> None:
        if batch.gt_crowd.any():
            sample = int(batch.gt_position[np.argmax(batch.gt_crowd != 0)])
            raise ValueError(
                f"y[{sample}]['iscrowd'] has a crowd region (1): LVIS has none (lvis-api evaluates every ground "
                "truth as iscrowd=0); remove the key or set it to 0 under protocol='lvis'"
            )
        unknown = category_index(batch.gt_labels, self.category_ids) < 0
        if unknown.any():
            row = int(np.argmax(unknown))
            raise ValueError(
                f"y[{int(batch.gt_position[row])}]['labels'] has category {int(batch.gt_labels[row])}, which is not "
                "in category_frequencies: under protocol='lvis' every ground-truth category needs its frequency group"
            )

    def summarize(
        self, precision: np.ndarray, recall: np.ndarray, category_ids: Sequence[int], params: EvalParams
    ) -> dict[str, float]:
        """lvis-api's ``summarize`` (``eval.py:416-469``) on arrays (T, R, K, A, M) and (T, K, A, M) (M = 1)."""
        p, r = precision[..., -1], recall[..., -1]
        stats: dict[str, float] = {"AP": _mean_valid(p[:, :, :, 0])}
        for name, iou in (("AP50", 0.5), ("AP75", 0.75)):
            t = np.flatnonzero(params.iou_thresholds == iou)  # eval.py:424, exact equality as lvis-api
            stats[name] = _mean_valid(p[t][:, :, :, 0])
        areas = dict(zip(params.area_names, range(len(params.area_names))))
        for suffix, area in (("s", "small"), ("m", "medium"), ("l", "large")):
            stats[f"AP{suffix}"] = _mean_valid(p[:, :, :, areas[area]]) if area in areas else -1.0
        groups = [self.frequencies[int(c)] for c in category_ids]
        for group in FREQUENCY_GROUPS:
            members = [k for k, g in enumerate(groups) if g == group]
            stats[f"AP{group}"] = _mean_valid(p[:, :, members, 0])
        names = lvis_stat_names(params.max_detections[-1])[9:]
        for name, area in zip(names, ("all", "small", "medium", "large")):
            stats[name] = _mean_valid(r[:, :, areas[area]]) if area in areas else -1.0
        return stats


def _mean_valid(values: np.ndarray) -> float:
    """``np.mean(s[s > -1])``, -1 when nothing is defined (``eval.py:451-454``)."""
    valid = values[values > -1]
    return float(np.mean(valid)) if len(valid) else -1.0


def _label_lists(index: int, target: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """A target's ``neg_category_ids`` and ``not_exhaustive_category_ids`` as int64 arrays."""
    if not isinstance(target, Mapping):
        raise TypeError(f"y[{index}] must be a dict, got {type(target).__name__}")
    missing = [key for key in LVIS_KEYS if key not in target]
    if missing:
        raise ValueError(
            f"y[{index}] is missing {missing}: under protocol='lvis' each target names the categories verified "
            "absent from the image (neg_category_ids) and those not exhaustively annotated "
            "(not_exhaustive_category_ids), as int tensors or lists (LVIS's image fields)"
        )
    return _ids(f"y[{index}]['{LVIS_KEYS[0]}']", target[LVIS_KEYS[0]]), _ids(
        f"y[{index}]['{LVIS_KEYS[1]}']", target[LVIS_KEYS[1]]
    )


def _ids(where: str, value: Any) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        if value.is_floating_point() or value.is_complex() or value.dtype == torch.bool or value.ndim > 1:
            raise TypeError(
                f"{where} must be a 1-D integer tensor or a list of ints, got {value.dtype} {tuple(value.shape)}"
            )
        return value.detach().cpu().numpy().astype(np.int64).reshape(-1)
    if isinstance(value, (list, tuple)) and all(
        isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in value
    ):
        return np.asarray(value, dtype=np.int64).reshape(-1)
    raise TypeError(f"{where} must be a 1-D integer tensor or a list of ints, got {value!r}")


def _keep(d: Detections, prefix: str, keep: np.ndarray) -> Detections:
    """``d`` with only the detection (``"det_"``) or ground-truth (``"gt_"``) rows where ``keep``."""
    if keep.all():
        return d
    return replace(d, **{f.name: getattr(d, f.name)[keep] for f in fields(d) if f.name.startswith(prefix)})


def _rank_in_image(d: Detections) -> np.ndarray:
    """Each detection's place in its image by descending score, ties in arrival order (Python's stable
    ``sorted(..., reverse=True)``, ``results.py:81``)."""
    order = np.argsort(-d.det_scores, kind="stable")
    order = order[np.argsort(d.det_position[order], kind="stable")]
    position = d.det_position[order]
    starts = np.searchsorted(position, position, side="left")
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order)) - starts
    return rank


def _det_area(d: Detections, iou_type: str) -> np.ndarray:
    """L9: the box area ``w * h`` for bbox, the mask area for segm (a given ``area`` is not used)."""
    if iou_type == "segm":
        return d.det_masks().area().astype(np.float64)
    return d.det_boxes[:, 2] * d.det_boxes[:, 3]


def _federated(d: Detections, lists: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """Per detection: verified (its category is in the image's ground truth or negatives, L3), and not
    exhaustive (in the image's ``not_exhaustive_category_ids``, L8)."""
    verified = np.zeros(len(d.det_labels), dtype=bool)
    not_exhaustive = np.zeros(len(d.det_labels), dtype=bool)
    det_bounds = np.searchsorted(d.det_position, np.arange(len(lists) + 1))
    gt_bounds = np.searchsorted(d.gt_position, np.arange(len(lists) + 1))
    for image, (negatives, incomplete) in enumerate(lists):
        rows = slice(det_bounds[image], det_bounds[image + 1])
        positives = d.gt_labels[gt_bounds[image] : gt_bounds[image + 1]]
        labels = d.det_labels[rows]
        verified[rows] = np.isin(labels, positives) | np.isin(labels, negatives)
        not_exhaustive[rows] = np.isin(labels, incomplete)
    return verified, not_exhaustive
