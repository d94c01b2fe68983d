"""The ``segm`` IoU type: masks in, compressed COCO RLEs kept, pycocotools' mask IoU.

A sample's ``masks`` may be given as

=====================  ======================  ==================================================
form                   dtype                   meaning
=====================  ======================  ==================================================
tensor (N, 1, H, W)    float                   probabilities (Mask R-CNN's output); a pixel is in
or (N, H, W)                                   the mask above 0.5, as torchvision's evaluator says
tensor (N, H, W)       bool, or integer 0/1    binary masks (torchvision's datasets)
or (N, 1, H, W)
list of N dicts        ``{"size": [H, W],      COCO RLEs, compressed (``counts`` a str or bytes)
                       "counts": ...}``        or not (a list of run lengths)
=====================  ======================  ==================================================

Every mask is encoded once, in ``update()``, with pycocotools' ``mask.encode``, and only the
compressed ``counts`` strings are kept (:class:`Rles`): a few hundred bytes for a 640x480 mask
instead of 300 KB. The IoU is pycocotools' ``mask.iou`` on those very strings, so it is the
plain recipe's to the last bit, the crowd rule included (for a crowd region, the intersection over
the detection's own area). The RLE codec is pycocotools' format: this module uses its ``mask``
functions directly, as the COCO file format itself, not as an evaluation backend.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from pycocotools import mask as coco_mask

# Characters of a compressed count: LEB128-like groups of 5 bits, offset by 48 (maskApi.c rleToString).
_FIRST_CHAR, _LAST_CHAR = 48, 48 + 63
_MAX_CHARS_PER_COUNT = 7  # 35 bits: any count of an image below 2**32 pixels


# Masks checked and made binary at a time in update(). On the CPU, 4 masks of 640x480 (5 MB of float32)
# stay in the cache between the check and the threshold (measured faster than 16 at a time); on a GPU,
# larger chunks make fewer launches and synchronisations. Either way the buffers stay small.
_MASKS_PER_CHUNK = {"cpu": 4}
_MASKS_PER_CHUNK_ELSEWHERE = 32
_BUFFERS = threading.local()
# pycocotools 2.0.11's area() counts a list's masks in a uint8: it fails beyond 255 masks.
_AREA_CHUNK = 255


@dataclass(frozen=True)
class Rles:
    """N compressed COCO RLEs: each mask's ``counts`` string (bytes) and its image's (height, width).

    Rows line up with detections or ground truths, so the arrays are sliced, selected and joined
    like the other per-box arrays; :meth:`pack` and :meth:`unpack` turn them into one uint8 buffer
    and its lengths for tensors (the distributed gather, a checkpoint).

    Example:
        >>> rles = encode_masks("y_pred[0]['masks']", torch.tensor([[[0, 1], [1, 1]]], dtype=torch.uint8))
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
        """``n`` rows without a mask (``b""`` of size 0x0), as the rows of other IoU types hold."""
        return Rles(_bytes_array([b""] * n), np.zeros((n, 2), np.int64))

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


def mask_iou(dets: Rles, gts: Rles, gt_crowd: np.ndarray) -> np.ndarray:
    """float64 (D, G): pycocotools' ``mask.iou`` of every detection with every ground truth.

    For a crowd region (``gt_crowd`` 1) it is the intersection over the detection's area.
    :func:`check_sizes` makes sure, at ``update()``, that the masks of an image share one size
    (pycocotools gives -1 for masks of different sizes).

    Example:
        >>> square = torch.zeros(1, 4, 4, dtype=torch.bool)
        >>> square[0, :2, :2] = True
        >>> left = torch.zeros(1, 4, 4, dtype=torch.bool)
        >>> left[0, :, :1] = True
        >>> d, g = encode_masks("d", square), encode_masks("g", left)
        >>> mask_iou(d, g, np.array([0])).tolist(), mask_iou(d, g, np.array([1])).tolist()
        ([[0.3333333333333333]], [[0.5]])
    """
    if len(dets) == 0 or len(gts) == 0:
        return np.zeros((len(dets), len(gts)))
    return np.asarray(coco_mask.iou(dets.dicts(), gts.dicts(), [int(c) for c in gt_crowd]), dtype=np.float64)


def mask_pair_iou(
    dets: Rles, gts: Rles, gt_crowd: np.ndarray, det_rows: np.ndarray, gt_rows: np.ndarray, group: np.ndarray
) -> np.ndarray:
    """float64 (P,): the IoU of each pair ``(dets[det_rows[p]], gts[gt_rows[p]])``.

    Pairs with the same ``group`` id (e.g. their (image, category) cell) are computed as one
    ``mask.iou`` matrix of their distinct detections and ground truths, so that each RLE string
    is parsed once per group rather than once per pair. ``gt_crowd`` is indexed by ground-truth row.
    """
    out = np.zeros(len(det_rows))
    order = np.argsort(group, kind="stable")
    keys = group[order]
    bounds = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1], True]) if len(keys) else np.zeros(1, np.int64)
    for lo, hi in zip(bounds[:-1].tolist(), bounds[1:].tolist()):
        pairs = order[lo:hi]
        d, inverse_d = np.unique(det_rows[pairs], return_inverse=True)
        g, inverse_g = np.unique(gt_rows[pairs], return_inverse=True)
        out[pairs] = mask_iou(dets.select(d), gts.select(g), gt_crowd[g])[inverse_d, inverse_g]
    return out


# --- the input contract --------------------------------------------------------------------------


def check_masks(where: str, masks: Any) -> int:
    """Check the structure of one sample's ``masks`` (see the module's table); return their number.

    Raises:
        TypeError: for a value that is neither a tensor nor a list of RLE dicts, or a tensor of
            another dtype (complex).
        ValueError: for a tensor of another shape, or an RLE dict without ``size`` and ``counts``.
    """
    if isinstance(masks, torch.Tensor):
        return _check_mask_tensor(where, masks)
    if isinstance(masks, Sequence) and not isinstance(masks, (str, bytes)):
        for i, rle in enumerate(masks):
            _check_rle_structure(f"{where}[{i}]", rle)
        return len(masks)
    raise TypeError(
        f"{where} must be a tensor of shape (N, H, W) or (N, 1, H, W), or a list of COCO RLE dicts, "
        f"got {type(masks).__name__}"
    )


def encode_masks(where: str, masks: Any) -> Rles:
    """One sample's masks (checked by :func:`check_masks`) as compressed RLEs.

    Probabilities are thresholded (above 0.5) on the tensor's own device, and only the binary
    masks cross to the CPU, laid out as ``mask.encode`` reads them.

    Raises:
        ValueError: float masks with a value outside [0, 1] (logits rather than probabilities,
            or NaN), integer masks with a value other than 0 and 1, or an RLE whose counts do not
            describe its ``size``.
    """
    if isinstance(masks, torch.Tensor):
        return _encode_tensor(where, masks)
    return Rles.from_dicts([_compressed_rle(f"{where}[{i}]", rle) for i, rle in enumerate(masks)])


def check_sizes(where: str, rles: Sequence[Rles]) -> None:
    """The masks of one image (its predictions and its ground truth) must share one (H, W).

    Raises:
        ValueError: naming the two sizes found; pycocotools would give -1 for such pairs, and
            predictions at the network's resolution would then silently never match.
    """
    sizes = np.unique(np.concatenate([r.sizes for r in rles]), axis=0)
    if len(sizes) > 1:
        found = ", ".join(f"{h}x{w}" for h, w in sizes.tolist())
        raise ValueError(
            f"{where}: the masks of one image must all have the image's size (H, W), got sizes {found}; "
            "resize predicted masks to the image's original size (as torchvision's Mask R-CNN does)"
        )


def _check_mask_tensor(where: str, masks: torch.Tensor) -> int:
    if masks.numel() == 0 and masks.ndim not in (3, 4):  # an empty tensor of any shape means "no masks"
        return 0
    if masks.ndim not in (3, 4) or (masks.ndim == 4 and masks.shape[1] != 1):
        raise ValueError(f"{where} must have shape (N, H, W) or (N, 1, H, W), got {tuple(masks.shape)}")
    if masks.is_complex():
        raise TypeError(f"{where} must be a float (probabilities), bool or integer tensor, got dtype {masks.dtype}")
    if masks.shape[0] and (masks.shape[-1] == 0 or masks.shape[-2] == 0):
        raise ValueError(f"{where} must have a height and width of at least 1, got shape {tuple(masks.shape)}")
    return masks.shape[0]


def _encode_tensor(where: str, masks: torch.Tensor) -> Rles:
    if masks.numel() == 0:
        return Rles.empty()
    masks = masks.detach().reshape(masks.shape[0], masks.shape[-2], masks.shape[-1])
    n, height, width = masks.shape
    step = min(n, _MASKS_PER_CHUNK.get(masks.device.type, _MASKS_PER_CHUNK_ELSEWHERE))
    binary, columns = _buffers(masks.device, step, height, width)
    rles: list[dict[str, Any]] = []
    for start in range(0, n, step):
        chunk = masks[start : start + step]
        _check_values(where, chunk)
        k = len(chunk)
        if chunk.dtype == torch.bool:
            made = chunk
        elif chunk.is_floating_point():
            made = torch.gt(chunk, 0.5, out=binary[:k])
        else:
            made = torch.ne(chunk, 0, out=binary[:k])
        # mask.encode reads (H, W, k) in Fortran order, which is (k, W, H) in C order: one transposing
        # copy of the binary masks (threshold first: the comparison reads the floats in their order).
        np.copyto(columns[:k], made.cpu().view(torch.uint8).numpy().transpose(0, 2, 1))
        rles += coco_mask.encode(columns[:k].transpose(2, 1, 0))
    return Rles.from_dicts(rles)


def _buffers(device: torch.device, step: int, height: int, width: int) -> tuple[torch.Tensor, np.ndarray]:
    """This thread's buffers for ``step`` masks of ``height`` x ``width``, kept from call to call.

    Fresh buffers at every ``update()`` cost a page fault per 4 KB, and left the C heap fragmented
    between the stored RLEs: the resident set grew by 0.75 MB per image of 100 masks (measured;
    glibc kept the holes), where reused ones keep it flat.
    """
    cache = _BUFFERS.__dict__.setdefault("by_shape", {})
    key = (str(device), height, width)
    if key not in cache or len(cache[key][1]) < step:
        if len(cache) >= 4:  # images of many sizes: keep the memory bounded
            cache.clear()
        cache[key] = (
            torch.empty((step, height, width), dtype=torch.bool, device=device),
            np.empty((step, width, height), dtype=np.uint8),
        )
    return cache[key]


def _check_values(where: str, masks: torch.Tensor) -> None:
    """Probabilities in [0, 1], integers 0 or 1 (one aminmax pass; bool needs none)."""
    if masks.dtype == torch.bool:
        return
    low, high = (float(v) for v in torch.aminmax(masks))
    if masks.is_floating_point():
        if not (low >= 0.0 and high <= 1.0):  # NaN fails both
            raise ValueError(
                f"{where} of dtype {masks.dtype} must hold probabilities in [0, 1], "
                f"got values in [{low:.6g}, {high:.6g}]; apply .sigmoid() to logits, or pass binary masks as bool"
            )
    elif low < 0 or high > 1:
        raise ValueError(
            f"{where} of dtype {masks.dtype} must hold only 0 and 1, got values in [{int(low)}, {int(high)}]; "
            "pass (masks > 0) for masks stored as 0/255"
        )


def _check_rle_structure(where: str, rle: Any) -> None:
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


def _compressed_rle(where: str, rle: Mapping[str, Any]) -> dict[str, Any]:
    """A checked compressed RLE: its runs must be non-negative and cover ``size`` exactly."""
    h, w = (int(v) for v in rle["size"])
    counts = rle["counts"]
    if isinstance(counts, (str, bytes)):
        raw = counts.encode("ascii", errors="replace") if isinstance(counts, str) else bytes(counts)
        runs = _decode_counts(where, raw)
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


def _decode_counts(where: str, raw: bytes) -> np.ndarray:
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
