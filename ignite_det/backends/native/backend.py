"""The native backend: images matched as they arrive (:mod:`.matching`), accumulated from the records
(:mod:`.accumulate`). Everything runs on numpy; no COCOeval, no COCO objects."""

from __future__ import annotations

import numpy as np

from ignite_det.backends.base import CocoArrays, Evaluation, Records
from ignite_det.backends.native.accumulate import Accumulation, Ranking
from ignite_det.backends.native.matching import ChunkedMatcher, MatchRecords
from ignite_det.iou.by_type import pair_iou
from ignite_det.parallel import Background
from ignite_det.params import EvalParams
from ignite_det.store import DetectionStore
from ignite_det.table import Detections


class NativeBackend:
    """COCOeval's numbers from per-detection match records, which each process makes for its own images
    and the gather carries to rank 0 (see :class:`~ignite_det.backends.base.EvaluationBackend`)."""

    needs_geometry = False  # the records say all that the boxes would

    def __init__(self, params: EvalParams, operating_iou: int) -> None:
        self.params = params
        self.operating_iou = operating_iou
        self._matcher = ChunkedMatcher(params, pair_iou(params))

    @staticmethod
    def check_installed() -> None:
        """Nothing to check: the native engine needs only numpy."""

    def update(self, store: DetectionStore) -> None:
        self._matcher.update(store)

    def records(self, store: DetectionStore) -> Records:
        return self._matcher.records(store).as_columns()

    def evaluate(self, d: Detections, records: Records, category_ids: np.ndarray, det_k: np.ndarray) -> Evaluation:
        """Everything from the records: no second matching pass."""
        matched = MatchRecords.from_columns(records)
        ranking = Ranking.create(d, matched.rank, det_k, self.params.max_detections[-1])
        # accumulated on a helper thread while the caller finds the operating point from the rest (and then helps)
        accumulation = Accumulation(d, matched, det_k, category_ids, self.params, ranking)
        filling = Background(accumulation.fill, range(accumulation.area_count))

        def arrays() -> CocoArrays:
            filling.result()
            return accumulation.arrays

        outcomes = matched.evaluated_outcomes(det_k)
        kept = matched.rank < self.params.max_detections[-1]
        return Evaluation(arrays, outcomes[self.operating_iou], ranking.by_score, outcomes, kept, ranking.by_class)
