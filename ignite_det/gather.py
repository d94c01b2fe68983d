"""Bring every process's detections together, and count each image once.

The gather uses a fixed number of collectives on flat tensors (one for the sizes, one each for
images, detections and ground truth in float64, and one per array of the backend's records: per
detection, such as the native backend's match ranks in int32, or for some detections, a
:class:`~ignite_det.backends.base.RowSubset` with one more for its sizes and one for its rows, such
as the outcomes of the detections matched somewhere), never pickled Python objects. Each process
has matched its own images, so the native backend's matching scales with their number.
Masks travel as their RLE bytes: two more collectives, one uint8 tensor for the detections' and
one for the ground truths' (each mask's length is in the tables), made only when some process
holds a mask.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import NamedTuple, cast

import ignite.distributed as idist
import numpy as np
import torch

from ignite_det.backends.base import Records, RowSubset
from ignite_det.repeats import warn_changed_predictions
from ignite_det.table import Detections


class _Sizes(NamedTuple):
    """What one process holds, gathered first so that every process knows every shape."""

    images: int
    detections: int
    ground_truth: int
    has_image_ids: int  # 1 or 0; -1 on a process that saw no image
    detection_rle_bytes: int
    ground_truth_rle_bytes: int


class Gathered(NamedTuple):
    """What :func:`gather_detections` returns: every process's detections and records, rank after rank,
    and how many images each process had."""

    detections: Detections
    records: dict[str, np.ndarray | RowSubset]
    images_per_rank: tuple[int, ...]

    @property
    def first_image(self) -> int:
        """Where this process's images start among the gathered ones."""
        return sum(self.images_per_rank[: idist.get_rank()])


def gather_detections(
    local: Detections, has_image_ids: bool | None, records: Records, geometry: bool = True
) -> Gathered:
    """All processes' detections, rank after rank, on every process (the local ones alone without
    distribution), with the backend's per-detection ``records`` (in the same row order).

    ``has_image_ids`` is None on a process that saw no image. With ``geometry=False`` the detections travel
    as :meth:`~ignite_det.table.Detections.scored_tensors` (scores, labels, positions: what ranking and
    counting matched detections needs), and come back without their boxes, masks and keypoints.

    Raises:
        ValueError: if some processes' targets carried ``image_id`` and others' did not.
    """
    if idist.backend() is None:  # no process group; a group of one still runs the collectives, so it is tested
        return Gathered(local, dict(records), (len(local.image_ids),))
    device = idist.device()
    det_bytes, gt_bytes = local.rle_tensors()
    if not geometry:
        det_bytes = det_bytes[:0]
    mine = _Sizes(
        len(local.image_ids),
        len(local.det_scores),
        len(local.gt_labels),
        -1 if has_image_ids is None else int(has_image_ids),
        len(det_bytes),
        len(gt_bytes),
    )
    sizes = [
        _Sizes(*row) for row in cast(torch.Tensor, idist.all_gather(torch.tensor([mine], device=device))).cpu().tolist()
    ]
    flags = {s.has_image_ids for s in sizes} - {-1}
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
    images, dets, gts = local.to_tensors() if geometry else local.scored_tensors()
    det_rows = [s.detections for s in sizes]
    tables = [
        _gather(images, [s.images for s in sizes], device),
        _gather(dets, det_rows, device),
        _gather(gts, [s.ground_truth for s in sizes], device),
    ]
    if any(s.detection_rle_bytes or s.ground_truth_rle_bytes for s in sizes):  # all make these collectives or none
        tables += [
            _gather(det_bytes, [s.detection_rle_bytes for s in sizes], device),
            _gather(gt_bytes, [s.ground_truth_rle_bytes for s in sizes], device),
        ]
    joined = _joined_ranks(tables, [s.images for s in sizes], geometry)
    if not has_image_ids:  # arrival numbers restart on every rank: renumber globally
        joined = joined.renumbered()
    gathered = _gather_records(records, det_rows, device)
    return Gathered(joined, gathered, tuple(s.images for s in sizes))


def _gather_records(records: Records, det_rows: list[int], device: torch.device) -> dict[str, np.ndarray | RowSubset]:
    """Every process's ``records`` (``det_rows[r]`` detections on process r), joined in rank order: a
    :class:`RowSubset`'s rows moved past the ranks before (its sizes exchanged first, in one collective)."""
    subsets = [name for name, record in records.items() if isinstance(record, RowSubset)]
    subset_rows: list[list[int]] = [[] for _ in subsets]
    if subsets:
        mine = torch.tensor([[len(cast(RowSubset, records[name]).rows) for name in subsets]], device=device)
        subset_rows = cast(torch.Tensor, idist.all_gather(mine)).cpu().T.tolist()
    offsets = np.cumsum([0, *det_rows[:-1]])
    gathered: dict[str, np.ndarray | RowSubset] = {}
    for name, record in records.items():
        if not isinstance(record, RowSubset):
            gathered[name] = _gather_rows(record, det_rows, device)
            continue
        counts = subset_rows[subsets.index(name)]
        rows = _gather(torch.from_numpy(np.ascontiguousarray(record.rows, dtype=np.int64)), counts, device)
        moved = np.concatenate([part.numpy() + offset for part, offset in zip(rows, offsets)])
        gathered[name] = RowSubset(moved, _gather_rows(record.values, counts, device))
    return gathered


def _joined_ranks(tables: list[list[torch.Tensor]], images: list[int], geometry: bool) -> Detections:
    """The ranks' tables (per table, one tensor per rank) as one record, rank after rank: each table joined
    first and converted once (the positions, which start at 0 on every rank, moved past the ranks before)."""
    joined_tables = [torch.cat(parts) if len(parts) > 1 else parts[0] for parts in tables]
    if geometry:
        joined = Detections.from_tensors(*joined_tables)
    else:  # the detections' RLE bytes stayed home: the ground truth's, if any, come fifth
        joined = Detections.from_scored_tensors(*joined_tables[:3], *joined_tables[4:])
    offsets = np.cumsum([0, *images[:-1]])
    det_rows = [len(part) for part in tables[1]]
    gt_rows = [len(part) for part in tables[2]]
    return Detections(
        **{
            **joined.__dict__,
            "det_position": joined.det_position + np.repeat(offsets, det_rows),
            "gt_position": joined.gt_position + np.repeat(offsets, gt_rows),
        }
    )


def _gather_rows(array: np.ndarray, rows: list[int], device: torch.device) -> np.ndarray:
    """Every process's per-detection ``array`` (``rows[r]`` rows on process r), joined in rank order.

    An array of more than one axis travels with the detections last in memory and comes back as such a
    view: no transposing copy for the native backend's outcomes, which are laid out so. The layout must not
    depend on the local array's flags: with 0 or 1 detection a transposed view is also C-contiguous, and a
    rank sending another layout than its peers read would scramble their records without an error.
    """
    if array.ndim > 1:
        inner = array.shape[1:]
        size = int(np.prod(inner))
        flat = torch.from_numpy(np.ascontiguousarray(np.moveaxis(array, 0, -1)).reshape(-1))
        parts = _gather(flat, [n * size for n in rows], device)
        joined = np.concatenate([p.numpy().reshape(size, n) for p, n in zip(parts, rows)], axis=1)
        return np.moveaxis(joined.reshape(*inner, sum(rows)), -1, 0)
    parts = _gather(torch.from_numpy(np.ascontiguousarray(array)), rows, device)
    return torch.cat(parts).numpy()


def gather_states(state: dict[str, torch.Tensor]) -> list[dict[str, torch.Tensor]]:
    """Every process's stored state (see ``DetectionStore.state``), in rank order, on every process.

    One collective for the sizes, one per array, as for the detections themselves.
    """
    if idist.backend() is None:
        return [state]
    device = idist.device()
    tables = {name: tensor for name, tensor in state.items() if tensor.ndim == 2}
    names = [*tables, "has_image_ids"]
    mine = [len(t) for t in tables.values()] + [int(state["has_image_ids"])]
    gathered_sizes = cast(torch.Tensor, idist.all_gather(torch.tensor([mine], device=device))).cpu().tolist()
    sizes = [dict(zip(names, row)) for row in gathered_sizes]  # per rank: rows of each table, and the flag
    gathered = {name: _gather(t, [s[name] for s in sizes], device) for name, t in tables.items()}
    return [
        {**{name: parts[rank] for name, parts in gathered.items()}, "has_image_ids": torch.tensor(s["has_image_ids"])}
        for rank, s in enumerate(sizes)
    ]


def first_occurrences(image_ids: np.ndarray) -> np.ndarray:
    """bool per image: the first occurrence of its ``image_id``, the one :func:`deduplicate` keeps."""
    keep = np.zeros(len(image_ids), dtype=bool)
    keep[np.unique(image_ids, return_index=True)[1]] = True
    return keep


def deduplicate(detections: Detections, records: Records) -> tuple[Detections, dict[str, np.ndarray | RowSubset]]:
    """Keep the first occurrence of each ``image_id`` (and the records of its detections); warn when a
    repeat carries other predictions than its first occurrence (a second evaluation without ``reset()``).

    Raises:
        ValueError: if two occurrences of one image_id carry different ground truth
            (image ids that are not unique, rather than a padded repeat).
    """
    keep = first_occurrences(detections.image_ids)
    if keep.all():
        return detections, dict(records)
    _check_repeats_match(detections, keep)
    warn_changed_predictions(detections, keep)
    kept_rows = keep[detections.det_position]
    kept = {name: r.select(kept_rows) if isinstance(r, RowSubset) else r[kept_rows] for name, r in records.items()}
    return detections.select_images(keep), kept


def _check_repeats_match(detections: Detections, keep: np.ndarray) -> None:
    ids = detections.image_ids
    first_position = {int(ids[p]): p for p in np.flatnonzero(keep)}
    order = np.argsort(detections.gt_position, kind="stable")
    bounds = np.searchsorted(detections.gt_position[order], np.arange(len(ids) + 1))
    columns = {
        "boxes": detections.gt_boxes[order],
        "area": detections.gt_area[order],
        "labels": detections.gt_labels[order],
        "iscrowd": detections.gt_crowd[order],
    }
    for position in np.flatnonzero(~keep):
        original = first_position[int(ids[position])]
        rows = slice(*bounds[original : original + 2]), slice(*bounds[position : position + 2])
        difference = _difference({name: (c[rows[0]], c[rows[1]]) for name, c in columns.items()})
        if difference:
            raise ValueError(
                f"image_id {int(ids[position])} was given more than once with different ground truth "
                f"({difference}); image ids must be unique per image"
            )


def _difference(columns: dict[str, tuple[np.ndarray, np.ndarray]]) -> str:
    """What differs between two images' ground truth (each column: the first's, the repeat's), in words;
    empty if nothing does."""
    first, repeat = len(columns["labels"][0]), len(columns["labels"][1])
    if first != repeat:
        return f"{first} vs {repeat} boxes"
    differing = [name for name, (a, b) in columns.items() if not np.array_equal(a, b)]
    return f"{first} boxes each, with different {' and '.join(differing)}" if differing else ""


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


def sampler_order(images_per_rank: Sequence[int], gathered_ids: np.ndarray, kept_ids: np.ndarray) -> np.ndarray:
    """The kept images' positions in the order one process would have seen them: under an unshuffled
    ``DistributedSampler`` rank r's i-th image is the data set's (i * world_size + r)-th, and a padded repeat
    stands where its first occurrence does. What depends on the order of images (tidecv's ties) then gives
    the single-process answer. Without distribution (one rank), the arrival order itself.

    ``images_per_rank`` and ``gathered_ids``: :func:`gather_detections`' counts and image ids, before
    :func:`deduplicate`; ``kept_ids``: the image ids after it.

    Example:
        >>> # 5 images dealt to 2 ranks: rank 0 saw 10, 12, 14; rank 1 saw 11, 13 and 10 again (the padding)
        >>> kept = np.array([10, 12, 14, 11, 13])  # the gathered ids, each image once
        >>> sampler_order([3, 3], np.array([10, 12, 14, 11, 13, 10]), kept).tolist()
        [0, 3, 1, 4, 2]
    """
    counts = np.asarray(images_per_rank, dtype=np.int64)
    world = len(counts)
    if world == 1:
        return np.arange(len(kept_ids))
    starts = np.cumsum(counts) - counts
    rank = np.repeat(np.arange(world), counts)
    key = (np.arange(len(gathered_ids)) - np.repeat(starts, counts)) * world + rank
    unique, inverse = np.unique(gathered_ids, return_inverse=True)
    first = np.full(len(unique), np.iinfo(np.int64).max)
    np.minimum.at(first, inverse, key)
    return np.argsort(first[np.searchsorted(unique, kept_ids)], kind="stable")
