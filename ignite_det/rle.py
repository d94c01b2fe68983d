"""COCO's compressed RLE: the form every mask is kept in, its structure checked, its run lengths read.

:class:`Rles` holds N masks as their compressed ``counts`` strings and sizes, row by row like the other
per-object arrays; :func:`check_rle_structure` and :func:`compressed_rle` check a user's RLE dict (keys,
size, run lengths that cover the image exactly) for both the metric's input and the command line's
files; :func:`compress_runs` writes run lengths as ``counts`` strings, byte for byte as maskApi.c's
``rleToString`` does, for many masks at once. The format is pycocotools' (maskApi.c), whose ``mask``
functions do the decoding and the geometry.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from pycocotools import mask as coco_mask

# Characters of a compressed count: LEB128-like groups of 5 bits, offset by 48 (maskApi.c rleToString).
_FIRST_CHAR, _LAST_CHAR = 48, 48 + 63
_MAX_CHARS_PER_COUNT = 7  # 35 bits: any count of an image below 2**32 pixels
_MORE = 0x20  # the flag of a character that is followed by another of the same count
# pycocotools 2.0.11's area() counts a list's masks in a uint8: it fails beyond 255 masks.
_AREA_CHUNK = 255


# The one row of Rles.empty's broadcasts.
_NO_MASK = np.array([b""], dtype=object)
_NO_MASK_SIZE = np.zeros((1, 2), np.int64)


@dataclass(frozen=True)
class Rles:
    """N compressed COCO RLEs: each mask's ``counts`` string (bytes) and its image's (height, width).

    Rows line up with detections or ground truths, so the arrays are sliced, selected and joined
    like the other per-box arrays; :meth:`pack` and :meth:`unpack` turn them into one uint8 buffer
    and its lengths for tensors (the distributed gather, a checkpoint).

    Example:
        >>> rles = Rles.from_dicts([{"size": [2, 2], "counts": b"13"}])
        >>> rles.dicts()
        [{'size': [2, 2], 'counts': b'13'}]
        >>> rles.area().tolist(), rles.boxes().tolist()
        ([3.0], [[0.0, 0.0, 2.0, 2.0]])
    """

    counts: np.ndarray  # object (N,): bytes
    sizes: np.ndarray  # int64 (N, 2): (height, width)

    def __len__(self) -> int:
        return len(self.sizes)

    @staticmethod
    def empty(n: int = 0) -> Rles:
        """``n`` rows without a mask (``b""`` of size 0x0), as the rows of other IoU types hold: read-only
        broadcasts of one row, which take no memory (and the store keeps as one row,
        :class:`~ignite_det.growing.GrowingArray`)."""
        return Rles(np.broadcast_to(_NO_MASK, (n,)), np.broadcast_to(_NO_MASK_SIZE, (n, 2)))

    @staticmethod
    def from_counts(counts: Sequence[bytes], height: int, width: int) -> Rles:
        """Masks of one size from their compressed ``counts`` strings (e.g. :func:`compress_runs`'s)."""
        return Rles(_bytes_array(list(counts)), np.tile(np.array([height, width], np.int64), (len(counts), 1)))

    @staticmethod
    def from_dicts(rles: Sequence[Mapping[str, Any]]) -> Rles:
        """pycocotools' compressed RLE dicts (``counts`` as bytes or str)."""
        counts = [r["counts"].encode("ascii") if isinstance(r["counts"], str) else bytes(r["counts"]) for r in rles]
        sizes = np.array([[int(r["size"][0]), int(r["size"][1])] for r in rles], dtype=np.int64).reshape(-1, 2)
        return Rles(_bytes_array(counts), sizes)

    @staticmethod
    def concatenate(parts: Sequence[Rles]) -> Rles:
        if not parts:
            return Rles.empty()
        return Rles(np.concatenate([p.counts for p in parts]), np.concatenate([p.sizes for p in parts]))

    def select(self, rows: np.ndarray) -> Rles:
        """The masks at ``rows`` (indices or a boolean mask), in that order."""
        return Rles(self.counts[rows], self.sizes[rows])

    def pack(self) -> tuple[np.ndarray, np.ndarray]:
        """(uint8 (B,): the ``counts`` strings end to end, int64 (N,): the length of each)."""
        if not self.sizes.any():  # rows of another IoU type: no mask at all (a real mask is at least 1x1)
            return np.zeros(0, np.uint8), np.zeros(len(self), np.int64)
        lengths = np.array([len(c) for c in self.counts.tolist()], dtype=np.int64)
        return np.frombuffer(b"".join(self.counts.tolist()), dtype=np.uint8), lengths

    @staticmethod
    def unpack(data: np.ndarray, lengths: np.ndarray, sizes: np.ndarray) -> Rles:
        """The inverse of :meth:`pack`."""
        if not lengths.any():
            return Rles(_bytes_array([b""] * len(lengths)), sizes)
        raw = np.ascontiguousarray(data, dtype=np.uint8).tobytes()
        ends = np.cumsum(lengths).tolist()
        starts = [0, *ends[:-1]]
        return Rles(_bytes_array([raw[a:b] for a, b in zip(starts, ends)]), sizes)

    def dicts(self) -> list[dict[str, Any]]:
        """pycocotools' form: ``[{"size": [h, w], "counts": bytes}, ...]``."""
        return [{"size": size, "counts": c} for size, c in zip(self.sizes.tolist(), self.counts.tolist())]

    def area(self) -> np.ndarray:
        """float64 (N,): the pixels in each mask, as ``loadRes`` sets a segmentation result's ``area``."""
        dicts = self.dicts()
        parts = [coco_mask.area(dicts[i : i + _AREA_CHUNK]) for i in range(0, len(dicts), _AREA_CHUNK)]
        return np.concatenate(parts).astype(np.float64) if parts else np.zeros(0)

    def boxes(self) -> np.ndarray:
        """float64 (N, 4): each mask's bounding box in xywh, as ``loadRes`` sets a result's missing ``bbox``."""
        if len(self) == 0:
            return np.zeros((0, 4))
        return coco_mask.toBbox(self.dicts()).astype(np.float64).reshape(-1, 4)

    def decode(self) -> np.ndarray:
        """uint8 (N, H, W): the dense masks (all of one size), for drawing."""
        if len(self) == 0:
            return np.zeros((0, 0, 0), np.uint8)
        return np.ascontiguousarray(coco_mask.decode(self.dicts()).transpose(2, 0, 1))


def _bytes_array(values: list[bytes]) -> np.ndarray:
    """An object array holding the bytes themselves (np.array would make a fixed-width 'S' array)."""
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out


def check_rle_structure(where: str, rle: Any) -> None:
    if not isinstance(rle, Mapping) or "size" not in rle or "counts" not in rle:
        got = sorted(rle) if isinstance(rle, Mapping) else type(rle).__name__
        raise ValueError(f"{where} must be a COCO RLE dict with keys 'size' and 'counts', got {got}")
    size = rle["size"]
    if (
        not isinstance(size, Sequence)
        or len(size) != 2
        or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= 1 for v in size)
    ):
        raise ValueError(f"{where}['size'] must be [height, width], two positive integers, got {size!r}")
    if not isinstance(rle["counts"], (str, bytes, Sequence)):
        raise TypeError(
            f"{where}['counts'] must be a compressed string (str or bytes) or a list of run lengths, "
            f"got {type(rle['counts']).__name__}"
        )


def compressed_rle(where: str, rle: Mapping[str, Any]) -> dict[str, Any]:
    """A checked compressed RLE: its runs must be non-negative and cover ``size`` exactly."""
    h, w = (int(v) for v in rle["size"])
    counts = rle["counts"]
    if isinstance(counts, (str, bytes)):
        raw = counts.encode("ascii", errors="replace") if isinstance(counts, str) else bytes(counts)
        runs = decode_counts(where, raw)
        compressed = {"size": [h, w], "counts": raw}
    else:
        runs = np.array(counts, dtype=np.int64).reshape(-1) if len(counts) else np.zeros(0, np.int64)
        compressed = None
    if (runs < 0).any() or runs.sum() != h * w:
        raise ValueError(
            f"{where} does not describe a {h}x{w} mask: its run lengths must be non-negative and sum to "
            f"{h * w}, got {len(runs)} runs summing to {int(runs.sum())}"
        )
    if compressed is None:
        compressed = coco_mask.frPyObjects({"size": [h, w], "counts": runs.tolist()}, h, w)
    return compressed


def decode_counts(where: str, raw: bytes) -> np.ndarray:
    """The run lengths of a compressed ``counts`` string, as maskApi.c's ``rleFrString`` reads them."""
    chars = np.frombuffer(raw, dtype=np.uint8).astype(np.int64)
    if len(chars) == 0:
        return np.zeros(0, np.int64)
    bad = (chars < _FIRST_CHAR) | (chars > _LAST_CHAR)
    more = ((chars - _FIRST_CHAR) & 0x20) != 0
    if bad.any() or more[-1]:
        raise ValueError(f"{where}['counts'] is not a compressed COCO RLE string: {raw[:40]!r}")
    c = chars - _FIRST_CHAR
    ends = np.flatnonzero(~more)
    starts = np.r_[0, ends[:-1] + 1]
    widths = ends - starts + 1
    if widths.max() > _MAX_CHARS_PER_COUNT:
        raise ValueError(f"{where}['counts'] holds a run longer than any image: {raw[:40]!r}")
    k = np.arange(len(c)) - np.repeat(starts, widths)  # place of each char within its count
    values = np.add.reduceat((c & 0x1F) << (5 * k), starts)
    negative = (c[ends] & 0x10) != 0  # sign extension of the last group
    values = np.where(negative, values | (np.int64(-1) << (5 * widths)), values)
    # From the fourth count on, each is stored as the difference to the count two before it.
    runs = values.copy()
    runs[1::2] = np.cumsum(values[1::2])
    runs[2::2] = np.cumsum(values[2::2])
    return runs


def compress_runs(runs: np.ndarray, runs_per_mask: np.ndarray) -> list[bytes]:
    """The compressed ``counts`` string of each mask, as maskApi.c's ``rleToString`` writes it.

    Args:
        runs: int (R,): every mask's run lengths end to end, each mask's starting with its zeros
            (0 when its first pixel, in column-major order, is set), as ``rleEncode`` counts them.
        runs_per_mask: int (N,): how many of ``runs`` belong to each mask, in order (at least 1 each).

    Example:
        >>> from pycocotools import mask
        >>> compress_runs(np.array([1, 3, 0, 3, 1]), np.array([2, 3]))
        [b'13', b'031']
        >>> masks = np.array([[[0, 1], [1, 1]], [[1, 1], [1, 0]]], np.uint8)  # (N, H, W)
        >>> [r["counts"] for r in mask.encode(np.asfortranarray(masks.transpose(1, 2, 0)))]
        [b'13', b'031']
    """
    if len(runs_per_mask) == 0:
        return []
    runs = np.asarray(runs, dtype=np.int64)
    first_run = np.cumsum(runs_per_mask) - runs_per_mask
    within = np.arange(len(runs)) - np.repeat(first_run, runs_per_mask)
    # From the fourth count of a mask on, rleToString stores the difference to the count two before.
    values = runs.copy()
    later = np.flatnonzero(within > 2)
    values[later] -= runs[later - 2]
    chars = _chars_per_value(values)
    # Each value as 5-bit groups, lowest first (arithmetic shifts keep a negative value's sign).
    first_char = np.cumsum(chars) - chars
    shift = 5 * (np.arange(int(chars.sum())) - np.repeat(first_char, chars))
    groups = (np.repeat(values, chars) >> shift) & 0x1F
    groups[np.flatnonzero(shift != 5 * (np.repeat(chars, chars) - 1))] |= _MORE  # all but a value's last
    raw = (groups + _FIRST_CHAR).astype(np.uint8).tobytes()
    ends = np.cumsum(np.add.reduceat(chars, first_run)).tolist()
    return [raw[a:b] for a, b in zip([0, *ends[:-1]], ends)]


def _chars_per_value(values: np.ndarray) -> np.ndarray:
    """The groups of 5 bits rleToString writes for each value: the fewest that hold it in two's complement."""
    chars = np.ones(len(values), dtype=np.int64)
    for groups in range(1, _MAX_CHARS_PER_COUNT):
        half = 1 << (5 * groups - 1)
        chars += (values < -half) | (values >= half)
    return chars
