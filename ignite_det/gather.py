"""Bring every process's detections together, and count each image once.

The gather uses a fixed number of collectives on flat tensors (one for the sizes, one each for
images, detections and ground truth, all float64, and with the native backend one int8 for the
detections' match outcomes), never pickled Python objects. Each rank has matched its own images,
so the native backend's matching scales with the number of processes.
"""

from __future__ import annotations

import warnings
from typing import cast

import ignite.distributed as idist
import numpy as np
import torch

from ignite_det.native_matching import MatchRecords
from ignite_det.store import Detections


def gather_detections(
    local: Detections, has_image_ids: bool | None, records: MatchRecords | None = None
) -> tuple[Detections, MatchRecords | None]:
    """All processes' detections, rank after rank, on every process (the local ones alone without
    distribution), with their match records when given (in the same row order).

    ``has_image_ids`` is None on a process that saw no image.

    Raises:
        ValueError: if some processes' targets carried ``image_id`` and others' did not.
    """
    if idist.backend() is None:  # no process group; a group of one still runs the collectives, so it is tested
        return local, records
    device = idist.device()
    flag = -1 if has_image_ids is None else int(has_image_ids)
    mine = torch.tensor([[len(local.image_ids), len(local.det_scores), len(local.gt_labels), flag]], device=device)
    sizes = cast(torch.Tensor, idist.all_gather(mine)).cpu().tolist()
    flags = {s[3] for s in sizes} - {-1}
    if len(flags) > 1:
        raise ValueError("some processes' targets carry 'image_id' and others' do not; give every target an image_id")
    has_image_ids = flags != {0}
    if not has_image_ids and len(sizes) > 1:
        warnings.warn(
            "CocoMetric under distribution without 'image_id' in the targets: images are numbered rank after "
            "rank, so an image that a DistributedSampler repeats to pad the last batch counts twice. "
            "Give every target its image_id.",
            stacklevel=3,
        )
    images, dets, gts = _pack(local, records)
    det_rows = [s[1] for s in sizes]
    parts = zip(
        _gather(images, [s[0] for s in sizes], device),
        _gather(dets, det_rows, device),
        _gather(gts, [s[2] for s in sizes], device),
    )
    unpacked = [_unpack(*part) for part in parts]
    joined = Detections.concatenate([d for d, _ in unpacked])
    if not has_image_ids:  # arrival numbers restart on every rank: renumber globally
        joined = _renumbered(joined)
    if records is None:
        return joined, None
    rows = np.concatenate(_gather(torch.from_numpy(_outcome_rows(records)), det_rows, device))
    outcome = np.ascontiguousarray(rows.T).reshape(records.outcome.shape[:2] + (-1,))
    return joined, MatchRecords(np.concatenate([rank for _, rank in unpacked]), outcome)


def deduplicate(detections: Detections, records: MatchRecords | None = None) -> tuple[Detections, MatchRecords | None]:
    """Keep the first occurrence of each ``image_id`` (and the records of its detections).

    Raises:
        ValueError: if two occurrences of one image_id carry different ground truth
            (image ids that are not unique, rather than a padded repeat).
    """
    ids = detections.image_ids
    _, first = np.unique(ids, return_index=True)
    if len(first) == len(ids):
        return detections, records
    keep = np.zeros(len(ids), dtype=bool)
    keep[first] = True
    _check_repeats_match(detections, keep)
    kept_records = None if records is None else records.select(keep[detections.det_position])
    return detections.select_images(keep), kept_records


def _check_repeats_match(detections: Detections, keep: np.ndarray) -> None:
    ids = detections.image_ids
    first_position = {int(ids[p]): p for p in np.flatnonzero(keep)}
    order = np.argsort(detections.gt_position, kind="stable")
    bounds = np.searchsorted(detections.gt_position[order], np.arange(len(ids) + 1))
    table = np.column_stack([detections.gt_boxes, detections.gt_area, detections.gt_labels, detections.gt_crowd])[order]
    for position in np.flatnonzero(~keep):
        original = first_position[int(ids[position])]
        repeat_rows = table[bounds[position] : bounds[position + 1]]
        original_rows = table[bounds[original] : bounds[original + 1]]
        if not np.array_equal(repeat_rows, original_rows):
            raise ValueError(
                f"image_id {int(ids[position])} was given more than once with different ground truth "
                f"({len(original_rows)} vs {len(repeat_rows)} boxes); image ids must be unique per image"
            )


def _pack(d: Detections, records: MatchRecords | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Images, detections and ground truth as float64 rows; a native record's rank rides with its detection."""
    images = d.image_ids.astype(np.float64).reshape(-1, 1)
    rank = [] if records is None else [records.rank]
    dets = np.column_stack([d.det_boxes, d.det_scores, d.det_labels, d.det_position, *rank]).astype(np.float64)
    gts = np.column_stack([d.gt_boxes, d.gt_area, d.gt_labels, d.gt_crowd, d.gt_position]).astype(np.float64)
    return (
        torch.from_numpy(images),
        torch.from_numpy(dets.reshape(-1, 7 + len(rank))),
        torch.from_numpy(gts.reshape(-1, 8)),
    )


def _outcome_rows(records: MatchRecords) -> np.ndarray:
    """(N, A * T) int8: one row per detection, so that ranks' parts can be gathered as rows."""
    a, t, n = records.outcome.shape
    return np.ascontiguousarray(records.outcome.reshape(a * t, n).T)


def _unpack(images: np.ndarray, dets: np.ndarray, gts: np.ndarray) -> tuple[Detections, np.ndarray]:
    """The Detections of one rank, and the ranks of the native records (empty without them)."""
    rank = dets[:, 7].astype(np.int32) if dets.shape[1] > 7 else np.zeros(0, np.int32)
    return Detections(
        image_ids=images[:, 0].astype(np.int64),
        det_boxes=dets[:, :4].copy(),
        det_scores=dets[:, 4].copy(),
        det_labels=dets[:, 5].astype(np.int64),
        det_position=dets[:, 6].astype(np.int64),
        gt_boxes=gts[:, :4].copy(),
        gt_area=gts[:, 4].copy(),
        gt_labels=gts[:, 5].astype(np.int64),
        gt_crowd=gts[:, 6].astype(np.int64),
        gt_position=gts[:, 7].astype(np.int64),
    ), rank


def _gather(tensor: torch.Tensor, rows: list[int], device: torch.device) -> list[np.ndarray]:
    width = tensor.shape[1]
    with warnings.catch_warnings():
        # Ignite 0.5 indexes with a list inside this helper, which torch 2.x deprecates; the result is right.
        warnings.filterwarnings("ignore", message="Using a non-tuple sequence for multidimensional indexing")
        gathered = idist.all_gather_tensors_with_shapes(tensor.to(device), [[n, width] for n in rows])
    return [t.cpu().numpy() for t in gathered]


def _renumbered(d: Detections) -> Detections:
    return Detections(**{**d.__dict__, "image_ids": np.arange(len(d.image_ids), dtype=np.int64)})
