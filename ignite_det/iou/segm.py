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

Every mask is encoded once, in ``update()``, and only the compressed ``counts`` strings are kept
(:class:`~ignite_det.rle.Rles`, :mod:`ignite_det.rle`): a few hundred bytes for a 640x480 mask instead
of 300 KB. The encoding is pycocotools' ``mask.encode``'s byte for byte, done for a chunk of masks at
once (:mod:`~ignite_det.iou.mask_runs` finds the runs without the transposing copy ``mask.encode``
needs, on the masks' own device; :func:`~ignite_det.rle.compress_runs` writes the strings). The IoU is
pycocotools' ``mask.iou`` on those very strings, so it is the plain recipe's to the last bit, the crowd
rule included (for a crowd region, the intersection over the detection's own area). The RLE format is
pycocotools': this module uses its ``mask`` functions directly, as the COCO file format itself, not as
an evaluation backend.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from pycocotools import mask as coco_mask

from ignite_det.iou.mask_runs import column_runs
from ignite_det.rle import Rles, check_rle_structure, compress_runs, compressed_rle

# Masks checked, made binary and run-length encoded at a time in update(). On the CPU, 4 masks of
# 640x480 (5 MB of float32) stay in the cache between the check and the threshold (measured faster than
# 16 at a time); on a GPU, larger chunks make fewer launches and synchronisations. Either way the
# buffers stay small. Tests set them to 1.
MASKS_PER_CHUNK = {"cpu": 4}
MASKS_PER_CHUNK_ELSEWHERE = 32
_BUFFERS = threading.local()


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
            check_rle_structure(f"{where}[{i}]", rle)
        return len(masks)
    raise TypeError(
        f"{where} must be a tensor of shape (N, H, W) or (N, 1, H, W), or a list of COCO RLE dicts, "
        f"got {type(masks).__name__}"
    )


def encode_masks(where: str, masks: Any) -> Rles:
    """One sample's masks (checked by :func:`check_masks`) as compressed RLEs.

    Probabilities are thresholded (above 0.5) and run-length encoded on the tensor's own device;
    only the run lengths cross to the CPU. The strings are ``mask.encode``'s, byte for byte.

    Raises:
        ValueError: float masks with a value outside [0, 1] (logits rather than probabilities,
            or NaN), integer masks with a value other than 0 and 1, or an RLE whose counts do not
            describe its ``size``.
    """
    if isinstance(masks, torch.Tensor):
        return _encode_tensor(where, masks)
    return Rles.from_dicts([compressed_rle(f"{where}[{i}]", rle) for i, rle in enumerate(masks)])


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
    step = min(n, MASKS_PER_CHUNK.get(masks.device.type, MASKS_PER_CHUNK_ELSEWHERE))
    binary, changes = _buffers(masks.device, step, height, width)
    runs, runs_per_mask = [], []
    for start in range(0, n, step):
        chunk = masks[start : start + step]
        _check_values(where, chunk)
        chunk_runs, chunk_runs_per_mask = column_runs(_binary(chunk, binary[: len(chunk)]), changes[: len(chunk)])
        runs.append(chunk_runs)
        runs_per_mask.append(chunk_runs_per_mask)
    return Rles.from_counts(compress_runs(np.concatenate(runs), np.concatenate(runs_per_mask)), height, width)


def _binary(masks: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """bool (k, H, W), C-contiguous: pixels above 0.5, or not 0 (values already checked by :func:`_check_values`).

    On the CPU numpy thresholds (2 to 3 times faster than torch there, measured); 0/1 bytes are read
    as they are, without a pass.
    """
    if masks.dtype == torch.bool:
        return masks.contiguous()
    if masks.dtype in (torch.uint8, torch.int8):
        return masks.contiguous().view(torch.bool)
    if _numpy_can_read(masks):
        compare = np.greater if masks.is_floating_point() else np.not_equal
        compare(masks.numpy(), 0.5 if masks.is_floating_point() else 0, out=out.numpy())
    elif masks.is_floating_point():
        torch.gt(masks, 0.5, out=out)
    else:
        torch.ne(masks, 0, out=out)
    return out


def _buffers(device: torch.device, step: int, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """This thread's buffers for ``step`` masks of ``height`` x ``width`` (binary masks, their changes).

    Kept from call to call: fresh buffers at every ``update()`` cost a page fault per 4 KB, and left
    the C heap fragmented between the stored RLEs: the resident set grew by 0.75 MB per image of 100
    masks (measured; glibc kept the holes), where reused ones keep it flat.
    """
    cache = _BUFFERS.__dict__.setdefault("by_shape", {})
    key = (str(device), height, width)
    if key not in cache or len(cache[key][0]) < step:
        if len(cache) >= 4:  # images of many sizes: keep the memory bounded
            cache.clear()
        cache[key] = tuple(torch.empty((step, height, width), dtype=torch.bool, device=device) for _ in range(2))
    return cache[key]


def _check_values(where: str, masks: torch.Tensor) -> None:
    """Probabilities in [0, 1], integers 0 or 1 (bool needs no check)."""
    if masks.dtype == torch.bool or _probabilities_by_their_bits(masks):
        return
    low, high = _low_high(masks)
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


def _probabilities_by_their_bits(masks: torch.Tensor) -> bool:
    """True if every value of a float tensor on the CPU is in [+0, 1]: one pass, not two (min and max).

    Read as unsigned integers, the floats from +0 to 1 are exactly the bit patterns up to 1's; negative
    values (their sign bit set), values above 1, infinities and NaN all lie above it. False sends
    the tensor to the exact check, which also accepts -0.0 and words the error.
    """
    if not (masks.is_floating_point() and _numpy_can_read(masks)):
        return False
    values = masks.numpy()
    bits = np.dtype(f"u{values.dtype.itemsize}")
    return bool(values.view(bits).max() <= np.array(1.0, values.dtype).view(bits))


def _low_high(masks: torch.Tensor) -> tuple[float, float]:
    """The least and the greatest value (NaN if there is one).

    On the CPU numpy's single-threaded min and max: torch's aminmax is faster on an idle machine, but
    its threads wait for each other at every call when the cores are shared (training loaders, other
    processes): 25 calls per 100 masks cost 60x more at a load of 2 per core (measured).
    """
    if _numpy_can_read(masks):
        values = masks.numpy()
        return float(values.min()), float(values.max())
    low, high = torch.aminmax(masks)
    return float(low), float(high)


def _numpy_can_read(masks: torch.Tensor) -> bool:
    return masks.device.type == "cpu" and masks.dtype != torch.bfloat16  # numpy has no bfloat16
