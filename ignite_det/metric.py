"""CocoMetric: COCO AP/AR (boxes, masks or keypoints) for an Ignite evaluator, exactly as pycocotools computes it."""

from __future__ import annotations

import inspect
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, cast

import ignite.distributed as idist
import numpy as np
import numpy.ma  # noqa: F401  np.unique imports it at its first call (about 10 ms): here, not in compute()
import torch
from ignite.engine import Engine
from ignite.exceptions import NotComputableError
from ignite.metrics import Metric
from ignite.metrics.metric import reinit__is_reduced

from ignite_det.backends import backend_class
from ignite_det.backends.base import Records
from ignite_det.confusion import confusion_matrix
from ignite_det.error_analysis.analysis import ERROR_MODES, ErrorAnalysis, ErrorMode
from ignite_det.error_analysis.coco import coco_error_analysis
from ignite_det.error_analysis.transport import error_shapes, pack_errors, unpack_errors
from ignite_det.gather import deduplicate, first_occurrences, gather_detections, gather_states, sampler_order
from ignite_det.inputs import normalize_batch
from ignite_det.iou.by_type import pair_iou
from ignite_det.lvis import LVIS_MAX_DETECTIONS, LvisProtocol
from ignite_det.operating_point import CURVE_POINTS, F1Point, best_f1_points, f1_curve
from ignite_det.params import (
    BOX_FORMATS,
    PROTOCOLS,
    Backend,
    BoxFormat,
    EvalParams,
    IouType,
    Protocol,
    check_max_detections_type,
)
from ignite_det.per_image import PER_IMAGE_COLUMNS, PerImage, per_image_table
from ignite_det.plausibility import warn_implausible
from ignite_det.predictions import write_results
from ignite_det.repeats import warn_update_after_compute
from ignite_det.result import CocoResult
from ignite_det.store import DetectionStore
from ignite_det.table import Detections, category_index


class CocoMetric(Metric):
    """COCO evaluation as an Ignite metric, equal to pycocotools' ``COCOeval`` to the last bit.

    ``update((y_pred, y))`` takes one dict per image in torchvision's detection convention
    (see :mod:`ignite_det.inputs` for the full table):

    ==============  =====================================================================
    ``y_pred[i]``   ``boxes`` float (N, 4), ``scores`` float (N,), ``labels`` int (N,)
    ``y[i]``        ``boxes`` float (M, 4), ``labels`` int (M,), optional ``iscrowd`` (M,),
                    optional ``area`` (M,), optional ``image_id`` (int or 0-d tensor)
    ==============  =====================================================================

    With ``iou_type="segm"`` (Mask R-CNN), predictions and targets carry ``masks`` in place of
    ``boxes``: (N, 1, H, W) probabilities, (N, H, W) binary masks or COCO RLEs. With
    ``iou_type="keypoints"`` (Keypoint R-CNN), predictions carry ``keypoints`` (N, K, 3) in place of
    ``boxes``, and targets ``keypoints`` (M, K, 3) with COCO's visibility flags besides their ``boxes``.

    ``compute()`` returns a :class:`~ignite_det.CocoResult`: a read-only mapping of the 12 COCO
    numbers (``AP, AP50, AP75, APs, APm, APl, AR1, AR10, AR100, ARs, ARm, ARl``; for keypoints the 10
    of pycocotools' keypoint summary, ``AP, AP50, AP75, APm, APl, AR, AR50, AR75, ARm, ARl``) that
    Ignite spreads into ``engine.state.metrics``, carrying per-class results, PR curves, the best-F1
    operating point and a confusion matrix.

    Exactness: images are evaluated in sorted ``image_id`` order and boxes in arrival order, as
    COCOeval breaks score ties; the ``area`` field drives small/medium/large; crowd regions follow
    COCO's rules; annotation ids start at 1; thresholds are pycocotools' float64 ``np.linspace``.
    Each ``image_id`` counts once (a repeat, such as a ``DistributedSampler``'s padding, is dropped;
    a repeat with different ground truth is an error, and one with other predictions a warning). Outside an
    Ignite engine, call ``reset()`` before each evaluation: an ``update()`` after ``compute()`` without
    ``reset()`` adds to the evaluation already computed, and warns. Under ``ignite.distributed``, ``compute()``
    gathers all processes' boxes (and, with the native backend, the match records of the images each
    process has matched) with a fixed number of collectives, evaluates on rank 0 and broadcasts, so
    every rank returns the same result.

    Args:
        box_format: ``"xyxy"`` (default), ``"xywh"`` or ``"cxcywh"``, in absolute pixels.
        iou_type: ``"bbox"`` (default), ``"segm"`` or ``"keypoints"``, as COCOeval's ``iouType``.
        backend: ``"native"`` (default: images are matched as they arrive, in chunks, and
            accumulated in a few vectorised passes), ``"pycocotools"`` (the reference, COCOeval
            itself) or ``"faster_coco_eval"`` (COCOeval in C++; ``pip install 'ignite-det[fast]'``).
            All three give the same numbers to the last bit.
        class_names: names for the category ids, as a list indexed by label or a mapping from label
            to name. Named categories are evaluated even when no ground truth has them (their AP is -1).
        iou_thresholds: IoU thresholds; default ``np.linspace(0.5, 0.95, 10)``.
        rec_thresholds: recall thresholds; default ``np.linspace(0, 1, 101)``.
        max_detections: detections kept per image *and category*; default ``(1, 10, 100)``, and
            ``(20,)`` for keypoints.
        area_ranges: ``{name: (low, high)}`` in pixels², replacing small/medium/large (medium/large
            for keypoints); the "all" range is always evaluated.
        keypoint_sigmas: with ``iou_type="keypoints"``, one OKS constant per keypoint; default COCO's
            17 person sigmas.
        protocol: ``"coco"`` (default) or ``"lvis"``: lvis-api's federated evaluation (see
            :mod:`ignite_det.lvis`), native backend only, boxes or masks. Targets then carry
            ``neg_category_ids`` and ``not_exhaustive_category_ids`` (int tensors or lists), ``iscrowd=1`` is
            refused, ``max_detections`` is one per-image cap across categories (default 300), and the result
            holds lvis-api's 13 numbers (``AP, AP50, AP75, APs, APm, APl, APr, APc, APf, AR@300, ARs@300,
            ARm@300, ARl@300``).
        category_frequencies: with ``protocol="lvis"``, ``{category_id: "r" | "c" | "f"}`` naming every
            evaluated category (required there).
        f1_iou_threshold: IoU threshold of the best-F1 operating point, the confusion matrix and the error
            analysis; it must be one of ``iou_thresholds``. Default: 0.5 when it is among ``iou_thresholds``,
            else the lowest of them.
        error_analysis: ``False`` (default), ``True`` or ``"coco"``: TIDE's error bins on COCOeval's own
            matching at ``f1_iou_threshold`` (``result.errors``, an :class:`~ignite_det.ErrorAnalysis` whose
            ``ap`` is the AP at that IoU to the last bit, and six bin columns in ``result.per_image``);
            ``"tidecv"``: the ``tidecv`` package's own numbers. Boxes and masks, ``protocol="coco"`` only.
            See :mod:`ignite_det.error_analysis` and the README's "Why is my AP low".
        background_threshold: TIDE's background IoU ``t_b`` (default 0.1): a false positive whose best IoU with
            every ground truth is at most this is background; it must be in ``(0, f1_iou_threshold)``.
        output_transform: turns the engine's ``state.output`` into ``(y_pred, y)``.
        device: where collectives run under distribution; inputs may be on any device.
        metric_kwargs: passed on to Ignite's ``Metric``, for example ``metrics_result_mode="named"``
            (Ignite >= 0.5.4) to keep only ``state.metrics["coco"]`` and not spread the 12 numbers beside it.

    Every argument after ``box_format`` is keyword-only.

    Raises:
        ValueError: for an unknown ``box_format``, ``iou_type``, ``backend``, ``protocol`` or ``error_analysis``,
            ``error_analysis`` with keypoints or ``protocol="lvis"``, ``background_threshold`` outside
            ``(0, f1_iou_threshold)``, thresholds out of range, ``keypoint_sigmas`` that are not positive numbers
            (or given for another ``iou_type``), or
            ``protocol="lvis"`` without ``category_frequencies`` or with a backend other than ``"native"``.
        ModuleNotFoundError: ``backend="faster_coco_eval"`` without faster-coco-eval installed.
        TypeError: for a keyword argument that Ignite's ``Metric`` does not take, or ``skip_unrolling``
            (a batch is a list of images, never unrolled).

    Example:
        .. code-block:: python

            from ignite.engine import Engine
            from ignite_det import CocoMetric

            evaluator = Engine(lambda engine, batch: (model(batch[0]), batch[1]))
            CocoMetric(box_format="xyxy").attach(evaluator, "coco")
            state = evaluator.run(val_loader)
            print(state.metrics["AP"], state.metrics["AP50"])
            print(state.metrics["coco"])        # the COCO summary and a per-class table
    """

    def __init__(
        self,
        box_format: BoxFormat = "xyxy",
        *,
        iou_type: IouType = "bbox",
        backend: Backend = "native",
        class_names: Sequence[str] | Mapping[int, str] | None = None,
        iou_thresholds: Sequence[float] | None = None,
        rec_thresholds: Sequence[float] | None = None,
        max_detections: Sequence[int] | None = None,
        area_ranges: Mapping[str, tuple[float, float]] | None = None,
        f1_iou_threshold: float | None = None,
        keypoint_sigmas: Sequence[float] | None = None,
        protocol: Protocol = "coco",
        category_frequencies: Mapping[int, str] | None = None,
        error_analysis: bool | Literal["coco", "tidecv"] = False,
        background_threshold: float = 0.1,
        output_transform: Callable[[Any], Any] = lambda x: x,
        device: str | torch.device = "cpu",
        **metric_kwargs: Any,
    ) -> None:
        if box_format not in BOX_FORMATS:
            raise ValueError(f"box_format must be one of {BOX_FORMATS}, got {box_format!r}")
        self._backend_class = backend_class(backend)
        self.box_format = box_format
        self.backend = backend
        self.protocol = protocol
        self._lvis = _lvis_protocol(protocol, category_frequencies, backend, iou_type, max_detections)
        if self._lvis is not None:
            max_detections = (self._lvis.max_detections,)
        self.class_names = _names(class_names)
        if self._lvis is not None:  # exactly the named categories are evaluated (eval.py:52)
            self.class_names = {k: self.class_names.get(k, str(k)) for k in self._lvis.frequencies}
        self.params = EvalParams.create(
            iou_thresholds, rec_thresholds, max_detections, area_ranges, iou_type, keypoint_sigmas
        )
        self._f1_index = _f1_index(self.params, f1_iou_threshold)
        self.error_analysis = _error_mode(error_analysis, background_threshold, self.params, self._f1_index, protocol)
        self.background_threshold = float(background_threshold)
        self._tidecv_order = np.zeros(0, dtype=np.int64)  # set by compute() (ignite_det.gather.sampler_order)
        _check_metric_kwargs(metric_kwargs)
        super().__init__(output_transform=output_transform, device=device, skip_unrolling=True, **metric_kwargs)

    @reinit__is_reduced
    def reset(self) -> None:
        self._store = DetectionStore(self.params.num_keypoints)
        self._evaluation_backend = self._backend_class(self.params, self._f1_index)
        self._resuming = False
        self._computed = False  # update() after compute() without reset() warns: see ignite_det.repeats

    def started(self, engine: Engine) -> None:
        """Start of an evaluation (Ignite's ``EPOCH_STARTED``): reset, unless a state was just loaded.

        So ``metric.load_state_dict(saved)`` (or ``Checkpoint.load_objects``) followed by
        ``evaluator.run(rest)`` resumes an interrupted evaluation instead of wiping it.
        """
        if self._resuming:
            self._resuming = False
            return
        self.reset()

    @reinit__is_reduced
    def update(self, output: Sequence[Sequence[Mapping[str, Any]]]) -> None:
        if self._computed:
            self._computed = False  # once per computed evaluation
            warn_update_after_compute()
        batch = normalize_batch(output, self.box_format, self.params.iou_type, self.params.num_keypoints)
        if self._lvis is not None:
            batch = self._lvis.apply(batch, output[1], self.params.iou_type)
        self._store.append(batch)
        self._evaluation_backend.update(self._store)

    def state_dict(self) -> OrderedDict:
        """Everything accumulated so far, as tensors, so that ``Checkpoint(to_save={"metric": metric})``
        can resume an interrupted evaluation (``torch.load``'s default ``weights_only=True`` reads it).

        Under distribution it holds every process's data, one entry per rank (gathered with a fixed
        number of collectives: call it on every process), as Ignite's own metrics do.
        """
        return OrderedDict([(_STATE_KEY, gather_states(self._store.state()))])

    def load_state_dict(self, state_dict: Mapping) -> None:
        """Replace what was accumulated with a :meth:`state_dict`; later ``update()`` calls add to it,
        and the next evaluation run resumes from it (see :meth:`started`).

        Each process takes its own rank's entry. Saved with another number of processes, rank 0
        takes every entry and the other ranks start empty: ``compute()`` gathers them all the same.

        Raises:
            TypeError: if ``state_dict`` is not a mapping.
            ValueError: if it is not a ``CocoMetric.state_dict()``.
        """
        if not isinstance(state_dict, Mapping):
            raise TypeError(f"state_dict must be a dict from CocoMetric.state_dict(), got {type(state_dict).__name__}")
        states = state_dict.get(_STATE_KEY)
        if set(state_dict) != {_STATE_KEY} or not isinstance(states, Sequence) or not states:
            raise ValueError(
                f"not a CocoMetric.state_dict(): expected the single key {_STATE_KEY!r} holding one state per "
                f"process, got keys {sorted(state_dict)}"
            )
        rank, world_size = idist.get_rank(), idist.get_world_size()
        if len(states) == world_size:
            mine = [states[rank]]
        else:
            mine = list(states) if rank == 0 else []
        self._store = DetectionStore.from_states(mine, self.params.num_keypoints)
        self._resuming = True
        self._computed = False

    def write_predictions(self, path: str | Path) -> int:
        """Write every prediction accumulated so far as a COCO results file (see :mod:`ignite_det.predictions`),
        ready for a test-dev submission or for any other evaluator; returns the number of detections.

        Ground truth is not needed: a test-dev run gives targets with an ``image_id`` and no boxes.
        Under distribution, call it on every process: the predictions are gathered (each ``image_id``
        once, as ``compute()`` counts it), rank 0 writes the file, and every process returns once it is written.

        Example:
            >>> metric = CocoMetric()
            >>> metric.update(([{"boxes": torch.tensor([[0.0, 0.0, 5.0, 5.0]]), "scores": torch.tensor([0.9]),
            ...     "labels": torch.tensor([1])}], [{"boxes": torch.zeros(0, 4), "labels": torch.zeros(0),
            ...     "image_id": 3}]))
            >>> import tempfile; metric.write_predictions(Path(tempfile.mkdtemp()) / "results.json")
            1
        """
        gathered = gather_detections(self._store.collect(), self._store.has_image_ids, {})
        detections, _ = deduplicate(gathered.detections, {})
        if idist.get_rank() == 0:
            write_results(path, detections, self.params.iou_type)
        if idist.backend() is not None:
            idist.barrier()  # the file is complete before any process reads it
        return len(detections.det_scores)

    def compute(self) -> CocoResult:
        self._resuming = False  # a computed state is a finished evaluation: the next run starts afresh
        records = self._evaluation_backend.records(self._store)
        local = self._store.collect()
        gathered = gather_detections(local, self._store.has_image_ids, records, geometry=self._geometry_gathered)
        detections, records = deduplicate(gathered.detections, gathered.records)
        if self.error_analysis == "tidecv":  # tidecv visits images in order: the order one process saw
            seen = gathered.detections.image_ids
            self._tidecv_order = sampler_order(gathered.images_per_rank, seen, detections.image_ids)
        if len(detections.image_ids) == 0:
            raise NotComputableError("CocoMetric must have at least one image before it can be computed")
        warn_implausible(local)  # once per evaluation, on rank 0's boxes: in [0, 1], category ids shifted by one
        category_ids = np.unique(np.r_[detections.gt_labels, list(self.class_names)].astype(np.int64))
        det_k = category_index(detections.det_labels, category_ids)
        num_gt = np.bincount(
            category_index(detections.gt_labels, category_ids)[~detections.gt_ignored()], minlength=len(category_ids)
        )
        num_det = np.bincount(det_k[det_k >= 0], minlength=len(category_ids))
        kept = first_occurrences(gathered.detections.image_ids)[gathered.first_image :][: len(local.image_ids)]

        def confusion(best: F1Point) -> np.ndarray:
            return self._confusion(local.select_images(kept), category_ids, best)

        # One process counts its confusion matrix while the accumulation runs; several, after the broadcast.
        alone = idist.backend() is None
        arrays, errors = (
            self._evaluate(detections, records, category_ids, det_k, num_gt, confusion if alone else None)
            if idist.get_rank() == 0
            else (None, None)
        )
        arrays = _broadcast(arrays, self._shapes(category_ids, detections))
        if not alone:  # every rank rebuilds the analysis from the broadcast arrays
            errors = self._errors(arrays)
        matrix = arrays["confusion"] if alone else confusion(F1Point(*arrays["best_f1"]))
        per_image = PerImage.from_table(arrays["per_image"])
        self._computed = True
        return CocoResult(
            params=self.params,
            category_ids=tuple(int(c) for c in category_ids),
            class_names=self.class_names,
            precision=arrays["precision"],
            recall=arrays["recall"],
            scores=arrays["scores"],
            num_gt=num_gt,
            num_det=num_det,
            class_f1=[F1Point(*map(float, row)) for row in arrays["class_f1"]],
            best_f1=F1Point(*map(float, arrays["best_f1"])),
            f1_curve=arrays["f1_curve"],
            confusion_matrix=matrix,
            f1_iou_threshold=float(self.params.iou_thresholds[self._f1_index]),
            num_images=len(detections.image_ids),
            per_image=per_image if errors is None else per_image.with_errors(errors),
            lvis=self._lvis,
            errors=errors,
        )

    def _evaluate(
        self,
        detections: Detections,
        records: Records,
        category_ids: np.ndarray,
        det_k: np.ndarray,
        num_gt: np.ndarray,
        confusion: Callable[[F1Point], np.ndarray] | None = None,
    ) -> tuple[dict[str, np.ndarray], ErrorAnalysis | None]:
        """Rank 0's arrays (the error analysis packed among them under distribution) and its error analysis;
        with ``confusion``, also its matrix at the operating point (under ``"confusion"``)."""
        evaluation = self._evaluation_backend.evaluate(detections, records, category_ids, det_k)
        outcome, by_score = evaluation.outcome, evaluation.by_score
        class_f1, best = best_f1_points(detections.det_scores, det_k, outcome, num_gt, by_score, evaluation.by_class)
        arrays = {
            "class_f1": np.array([p.as_array() for p in class_f1]).reshape(-1, 4),
            "best_f1": best.as_array(),
            "f1_curve": f1_curve(detections.det_scores, outcome, int(num_gt.sum()), by_score),
            "per_image": per_image_table(detections, evaluation.outcomes, evaluation.kept, det_k, self.params),
        }
        errors = None
        if self.error_analysis is not None:
            errors = self._analyse(detections, evaluation.outcomes[self._f1_index], category_ids, det_k)
            if idist.backend() is not None:
                arrays.update(pack_errors(errors, *self._error_sizes(category_ids, detections)))
        if confusion is not None:
            arrays["confusion"] = confusion(best)
        coco = evaluation.arrays  # the backend may still be computing them
        return {"precision": coco.precision, "recall": coco.recall, "scores": coco.scores, **arrays}, errors

    def _confusion(self, local: Detections, category_ids: np.ndarray, best: F1Point) -> np.ndarray:
        """The confusion matrix at the operating point, summed over the processes: each pairs its own images
        (those the gather kept), so no box travels for it."""
        iou = float(self.params.iou_thresholds[self._f1_index])
        matrix = confusion_matrix(local, category_ids, best.counting_threshold, iou, pair_iou=pair_iou(self.params))
        if idist.backend() is None:
            return matrix
        return cast(torch.Tensor, idist.all_reduce(torch.from_numpy(matrix).to(idist.device()))).cpu().numpy()

    @property
    def _geometry_gathered(self) -> bool:
        """Whether rank 0 needs every detection's box (or mask, or keypoints): for COCOeval and for the error
        analysis; the native engine has matched each process's images where they are."""
        return self._evaluation_backend.needs_geometry or self.error_analysis is not None

    def _analyse(
        self, detections: Detections, outcome: np.ndarray, category_ids: np.ndarray, det_k: np.ndarray
    ) -> ErrorAnalysis:
        """The error analysis on rank 0, from the evaluation's verdicts at the operating IoU ("coco") or by
        tidecv's rules ("tidecv")."""
        iou = float(self.params.iou_thresholds[self._f1_index])
        if self.error_analysis == "tidecv":  # its own matching and AP (ignite_det.error_analysis.tidecv)
            from ignite_det.error_analysis.tidecv import tidecv_errors

            return tidecv_errors(
                detections.reorder_images(self._tidecv_order),
                category_ids,
                self.class_names,
                self.params,
                iou,
                self.background_threshold,
            )
        errors, _ = coco_error_analysis(
            detections,
            outcome,
            det_k,
            category_ids,
            self.class_names,
            self.params,
            self._f1_index,
            self.background_threshold,
            pair_iou(self.params),
        )
        return errors

    def _errors(self, arrays: dict[str, np.ndarray]) -> ErrorAnalysis | None:
        """The analysis every rank returns under distribution, rebuilt from the broadcast arrays (rank 0's too,
        so that every rank holds the same object)."""
        if self.error_analysis is None:
            return None
        iou = float(self.params.iou_thresholds[self._f1_index])
        return unpack_errors(arrays, self.error_analysis, iou, self.background_threshold, self.class_names)

    @staticmethod
    def _error_sizes(category_ids: np.ndarray, detections: Detections) -> tuple[int, int, int]:
        """Upper bounds every rank knows: detections, ground truths, and the categories an analysis can name
        (the evaluated ones and the detections' labels: tidecv counts classes with predictions only)."""
        classes = len(np.union1d(category_ids, detections.det_labels))
        return len(detections.det_scores), len(detections.gt_labels), classes

    def _shapes(self, category_ids: np.ndarray, detections: Detections) -> dict[str, tuple[int, ...]]:
        t, r = len(self.params.iou_thresholds), len(self.params.rec_thresholds)
        a, m = len(self.params.area_ranges), len(self.params.max_detections)
        k, images = len(category_ids), len(detections.image_ids)
        errors = {} if self.error_analysis is None else error_shapes(*self._error_sizes(category_ids, detections))
        return {
            "precision": (t, r, k, a, m),
            "recall": (t, k, a, m),
            "scores": (t, r, k, a, m),
            "class_f1": (k, 4),
            "best_f1": (4,),
            "f1_curve": (CURVE_POINTS, 4),
            "per_image": (images, len(PER_IMAGE_COLUMNS)),
            **errors,
        }


_STATE_KEY = "per_rank"


def _broadcast(arrays: dict[str, np.ndarray] | None, shapes: dict[str, tuple[int, ...]]) -> dict[str, np.ndarray]:
    """Rank 0's arrays on every rank, in one float64 broadcast (shapes are known everywhere)."""
    if idist.backend() is None:
        assert arrays is not None
        return arrays
    sizes = [int(np.prod(shape)) for shape in shapes.values()]
    if arrays is None:
        flat = torch.zeros(sum(sizes), dtype=torch.float64)
    else:
        flat = torch.from_numpy(np.concatenate([arrays[name].astype(np.float64).ravel() for name in shapes]))
    received = cast(torch.Tensor, idist.broadcast(flat.to(idist.device()), src=0)).cpu().numpy()
    parts = np.split(received, np.cumsum(sizes)[:-1])
    return {name: part.reshape(shape) for (name, shape), part in zip(shapes.items(), parts)}


def _f1_index(params: EvalParams, f1_iou_threshold: float | None) -> int:
    """Index of the operating point's IoU threshold: the one given, else 0.5 if evaluated, else the lowest."""
    if f1_iou_threshold is None:
        return params.operating_iou_index()
    index = params.iou_index(f1_iou_threshold)
    if index is None:
        raise ValueError(
            f"f1_iou_threshold={f1_iou_threshold} must be one of iou_thresholds {params.typed_iou_thresholds()}"
        )
    return index


def _error_mode(
    error_analysis: bool | str, background_threshold: float, params: EvalParams, f1_index: int, protocol: str
) -> ErrorMode | None:
    """The error analysis asked for (None: off), the arguments checked."""
    if error_analysis is False:
        return None
    mode: ErrorMode = "coco" if error_analysis is True else error_analysis  # type: ignore[assignment]
    if mode not in ERROR_MODES:
        raise ValueError(f"error_analysis must be True, False or one of {ERROR_MODES}, got {error_analysis!r}")
    if params.iou_type == "keypoints":
        raise ValueError(
            "error_analysis is for iou_type 'bbox' or 'segm': TIDE defines its error bins by box or mask IoU "
            "(localisation between t_b and t_f, background below t_b) and defines none for keypoints (OKS)"
        )
    if protocol != "coco":
        raise ValueError(
            "error_analysis runs under protocol='coco' only: under LVIS's federated rules a detection of a class "
            "not verified on its image is not a false positive, and TIDE's bins (wrong class, background) are "
            "undefined there"
        )
    t_f = float(params.iou_thresholds[f1_index])
    if not 0 < float(background_threshold) < t_f:
        raise ValueError(
            f"background_threshold must be in (0, {t_f:g}) (0 < t_b < the error analysis' IoU f1_iou_threshold), "
            f"got {background_threshold}"
        )
    return mode


def _check_metric_kwargs(metric_kwargs: Mapping[str, Any]) -> None:
    """Name a wrong keyword here, rather than let ``Metric.__init__`` fail with its own parameter list."""
    accepted = set(inspect.signature(Metric.__init__).parameters) - {"self", "output_transform", "device"}
    accepted.discard("skip_unrolling")
    unknown = sorted(set(metric_kwargs) - accepted)
    if unknown:
        raise TypeError(
            f"CocoMetric got unexpected keyword argument(s) {unknown}; besides its own, it passes on to Ignite's "
            f"Metric only {sorted(accepted)}"
        )


def _lvis_protocol(
    protocol: str,
    category_frequencies: Mapping[int, str] | None,
    backend: str,
    iou_type: str,
    max_detections: Sequence[int] | None,
) -> LvisProtocol | None:
    """The LVIS rules for ``protocol="lvis"`` (None for COCO), the arguments checked."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
    if protocol == "coco":
        if category_frequencies is not None:
            raise ValueError("category_frequencies is for protocol='lvis'")
        return None
    if backend != "native":  # COCOeval has no federated rules and caps per (image, category)
        raise ValueError(f"protocol='lvis' runs on backend='native' only, got backend={backend!r}")
    if iou_type == "keypoints":
        raise ValueError("protocol='lvis' evaluates iou_type 'bbox' or 'segm', got 'keypoints'")
    if max_detections is not None:
        check_max_detections_type(max_detections)
    if max_detections is not None and len(set(max_detections)) != 1:
        raise ValueError(
            "under protocol='lvis' max_detections is one per-image cap across categories (default 300), "
            f"got {list(max_detections)}"
        )
    cap = LVIS_MAX_DETECTIONS if max_detections is None else int(next(iter(max_detections)))
    if cap < 1:
        raise ValueError(f"max_detections must be a positive integer, got {cap}")
    return LvisProtocol.create(category_frequencies, cap)


def _names(class_names: Sequence[str] | Mapping[int, str] | None) -> dict[int, str]:
    if class_names is None:
        return {}
    if isinstance(class_names, Mapping):
        return {int(k): str(v) for k, v in class_names.items()}
    if isinstance(class_names, str) or not isinstance(class_names, Sequence):
        raise TypeError(
            f"class_names must be a list indexed by label or a dict label -> name, got {type(class_names).__name__}"
        )
    return {i: str(name) for i, name in enumerate(class_names)}
