"""Bring every process's detections together, and count each image once.

The gather uses a fixed number of collectives on flat tensors (one for the sizes, one each for
images, detections and ground truth in float64, and with the native backend two more for the
detections' match records: ranks in int32, outcomes in int8), never pickled Python objects. Each
process has matched its own images, so the native backend's matching scales with their number.
Masks travel as their RLE bytes: two more collectives, one uint8 tensor for the detections' and
one for the ground truths' (each mask's length is in the tables), made only when some process
holds a mask.
"""

from __future__ import annotations

import warnings
from typing import cast

import ignite.distributed as idist
import numpy as np
import torch

from ignite_det.backends.native.matching import MatchRecords
from ignite_det.repeats import warn_changed_predictions
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
    det_bytes, gt_bytes = local.rle_tensors()
    counts = [len(local.image_ids), len(local.det_scores), len(local.gt_labels), flag, len(det_bytes), len(gt_bytes)]
    mine = torch.tensor([counts], device=device)
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
    images, dets, gts = local.to_tensors()
    det_rows = [s[1] for s in sizes]
    tables = [
        _gather(images, [s[0] for s in sizes], device),
        _gather(dets, det_rows, device),
        _gather(gts, [s[2] for s in sizes], device),
    ]
    if any(s[4] or s[5] for s in sizes):  # every process sees the sizes, so all make these collectives or none
        tables += [_gather(det_bytes, [s[4] for s in sizes], device), _gather(gt_bytes, [s[5] for s in sizes], device)]
    joined = Detections.concatenate([Detections.from_tensors(*part) for part in zip(*tables)])
    if not has_image_ids:  # arrival numbers restart on every rank: renumber globally
        joined = joined.renumbered()
    return joined, None if records is None else _gather_records(records, det_rows, device)


def _gather_records(records: MatchRecords, det_rows: list[int], device: torch.device) -> MatchRecords:
    """Every process's records: ranks (int32) and outcomes (int8), each as one flat array per process
    (the outcomes' (A, T, n) layout travels as is, and the parts join along n)."""
    a, t, _ = records.outcome.shape
    ranks = _gather(torch.from_numpy(records.rank), det_rows, device)
    flat = torch.from_numpy(records.outcome.reshape(-1))
    outcomes = _gather(flat, [a * t * n for n in det_rows], device)
    return MatchRecords(
        torch.cat(ranks).numpy(),
        np.concatenate([part.numpy().reshape(a, t, n) for part, n in zip(outcomes, det_rows)], axis=2),
    )


def gather_states(state: dict[str, torch.Tensor]) -> list[dict[str, torch.Tensor]]:
    """Every process's stored state (see ``DetectionStore.state``), in rank order, on every process.

    One collective for the sizes, one per array, as for the detections themselves.
    """
    if idist.backend() is None:
        return [state]
    device = idist.device()
    tables = {name: tensor for name, tensor in state.items() if tensor.ndim == 2}
    mine = [len(t) for t in tables.values()] + [int(state["has_image_ids"])]
    sizes = cast(torch.Tensor, idist.all_gather(torch.tensor([mine], device=device))).cpu().tolist()
    gathered = {name: _gather(t, [s[i] for s in sizes], device) for i, (name, t) in enumerate(tables.items())}
    return [
        {**{name: parts[rank] for name, parts in gathered.items()}, "has_image_ids": torch.tensor(s[-1])}
        for rank, s in enumerate(sizes)
    ]


def deduplicate(detections: Detections, records: MatchRecords | None = None) -> tuple[Detections, MatchRecords | None]:
    """Keep the first occurrence of each ``image_id`` (and the records of its detections); warn when a
    repeat carries other predictions than its first occurrence (a second evaluation without ``reset()``).

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
    warn_changed_predictions(detections, keep)
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
                f"({_difference(original_rows, repeat_rows)}); image ids must be unique per image"
            )


def _difference(first: np.ndarray, repeat: np.ndarray) -> str:
    """What differs between two ground-truth tables (columns: box, area, label, iscrowd), in words."""
    if len(first) != len(repeat):
        return f"{len(first)} vs {len(repeat)} boxes"
    columns = {"boxes": slice(0, 4), "area": slice(4, 5), "labels": slice(5, 6), "iscrowd": slice(6, 7)}
    differing = [name for name, cols in columns.items() if not np.array_equal(first[:, cols], repeat[:, cols])]
    return f"{len(first)} boxes each, with different {' and '.join(differing)}"


def _gather(tensor: torch.Tensor, rows: list[int], device: torch.device) -> list[torch.Tensor]:
    """Each process's ``tensor`` (``rows[r]`` rows on process r, the same trailing shape everywhere),
    on every process: padded to the longest, in one ``all_gather``."""
    longest = max(rows)
    if longest == 0:
        return [tensor[:0].clone() for _ in rows]
    padded = tensor
    if len(tensor) < longest:
        padded = tensor.new_zeros((longest, *tensor.shape[1:]))
        padded[: len(tensor)] = tensor
    gathered = cast(torch.Tensor, idist.all_gather(padded.to(device))).cpu()
    return [gathered[r * longest : r * longest + n] for r, n in enumerate(rows)]
