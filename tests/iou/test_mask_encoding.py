"""The batch mask encoder (iou/mask_runs.py, rle.compress_runs) against pycocotools' ``mask.encode``, byte for byte.

The reference is torchvision's recipe: each mask made binary as uint8 and given to ``mask.encode`` in
Fortran order. Every form the metric accepts, every shape corner, and both implementations of the runs
(numpy for the CPU, torch for CUDA, the latter run here on the CPU) must give its very strings.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pycocotools import mask as coco_mask

from ignite_det.iou import mask_runs, segm
from ignite_det.iou.segm import encode_masks
from ignite_det.rle import compress_runs, decode_counts


def _reference(binary: np.ndarray) -> list[bytes]:
    """pycocotools' compressed counts of (N, H, W) binary masks, one mask.encode per mask."""
    return [coco_mask.encode(np.asfortranarray(m[:, :, None].astype(np.uint8)))[0]["counts"] for m in binary]


def _masks(rng: np.random.Generator, n: int, h: int, w: int) -> np.ndarray:
    """bool (n, h, w): noise of every density, blocks, empty and full masks, masks starting with a set pixel."""
    masks = rng.random((n, h, w)) < rng.random((n, 1, 1)) ** 3
    for i in range(n):
        kind = i % 6
        if kind == 0:
            masks[i] = False
        elif kind == 1:
            masks[i] = True
        elif kind == 2:
            masks[i] = False
            y0, x0 = rng.integers(0, h), rng.integers(0, w)
            masks[i, y0 : y0 + rng.integers(1, h + 1), x0 : x0 + rng.integers(1, w + 1)] = True
        elif kind == 3:
            masks[i, 0, 0] = True
    return masks


@pytest.fixture(params=[1, 3, 1000], ids=["chunk1", "chunk3", "chunk1000"])
def masks_per_chunk(request, monkeypatch):
    monkeypatch.setitem(segm.MASKS_PER_CHUNK, "cpu", request.param)
    monkeypatch.setattr(segm, "MASKS_PER_CHUNK_ELSEWHERE", request.param)
    return request.param


SHAPES = [(1, 1), (1, 2), (2, 1), (1, 37), (29, 1), (2, 2), (3, 5), (8, 8), (17, 23), (64, 48), (480, 640)]


@pytest.mark.parametrize("h, w", SHAPES)
def test_counts_equal_mask_encode_byte_for_byte(h, w, masks_per_chunk):
    rng = np.random.default_rng(h * 1000 + w)
    masks = _masks(rng, 7 if h * w > 10_000 else 25, h, w)
    rles = encode_masks("m", torch.from_numpy(masks))
    assert rles.counts.tolist() == _reference(masks)
    assert rles.sizes.tolist() == [[h, w]] * len(masks)


@pytest.mark.parametrize("h, w", [(1, 1), (3, 4), (5, 1), (1, 6)])
def test_every_single_pixel_mask(h, w, masks_per_chunk):
    """Each pixel alone, and each pixel alone left out: the first and last runs in every position."""
    one = np.eye(h * w, dtype=bool).reshape(h * w, h, w)
    masks = np.concatenate([one, ~one, np.zeros((1, h, w), bool), np.ones((1, h, w), bool)])
    assert encode_masks("m", torch.from_numpy(masks)).counts.tolist() == _reference(masks)


def test_many_masks_of_one_image(masks_per_chunk):
    masks = _masks(np.random.default_rng(1), 300, 31, 45)
    assert encode_masks("m", torch.from_numpy(masks)).counts.tolist() == _reference(masks)


FORMS = {
    "bool": lambda m: torch.from_numpy(m),
    "bool-N1HW": lambda m: torch.from_numpy(m)[:, None],
    "bool-not-contiguous": lambda m: torch.from_numpy(np.ascontiguousarray(m.transpose(0, 2, 1))).transpose(1, 2),
    "uint8": lambda m: torch.from_numpy(m).to(torch.uint8),
    "int8": lambda m: torch.from_numpy(m).to(torch.int8),
    "int32": lambda m: torch.from_numpy(m).to(torch.int32),
    "int64-N1HW": lambda m: torch.from_numpy(m).to(torch.int64)[:, None],
    "float16": lambda m: torch.from_numpy(m).to(torch.float16) * 0.75,
    "bfloat16": lambda m: torch.from_numpy(m).to(torch.bfloat16) * 0.75 + 0.125,
    "float32-N1HW": lambda m: torch.from_numpy(m).to(torch.float32)[:, None] * 0.85 + 0.05,
    "float64": lambda m: torch.from_numpy(m).to(torch.float64) * 0.5 + 0.25,
    "float32-not-contiguous": lambda m: torch.from_numpy(m.transpose(0, 2, 1).astype(np.float32)).transpose(1, 2),
}


@pytest.mark.parametrize("form", FORMS)
def test_every_tensor_form_gives_mask_encode_strings(form, masks_per_chunk):
    masks = _masks(np.random.default_rng(2), 13, 19, 26)
    assert encode_masks("m", FORMS[form](masks)).counts.tolist() == _reference(masks)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_a_probability_of_exactly_one_half_is_outside(dtype, masks_per_chunk):
    """torchvision's ``masks > 0.5``: 0.5 is out, the next value of the dtype above it is in."""
    half = torch.tensor(0.5, dtype=dtype)
    above, below = torch.nextafter(half, torch.tensor(1.0, dtype=dtype)), torch.nextafter(half, half.new_zeros(()))
    if dtype in (torch.float16, torch.bfloat16):  # nextafter is not defined for them: one unit in the last place
        step = torch.finfo(dtype).eps * 0.5
        above, below = half + step, half - step / 2
    assert below < half < above
    rng = np.random.default_rng(3)
    choice = rng.integers(0, 5, (6, 7, 9))
    values = torch.stack([half.new_zeros(()), below, half, above, half.new_ones(())])[torch.from_numpy(choice)]
    expected = _reference((values > 0.5).numpy())
    assert encode_masks("m", values).counts.tolist() == expected
    assert encode_masks("m", values).decode().tolist() == (choice >= 3).astype(np.uint8).tolist()


@pytest.mark.parametrize("h, w", SHAPES)
def test_the_torch_runs_for_cuda_equal_the_numpy_runs(h, w):
    """The device implementation, run on the CPU: the same runs as the numpy one and as pycocotools."""
    masks = _masks(np.random.default_rng(h + w), 9, h, w)
    on_torch = mask_runs.runs_torch(torch.from_numpy(masks), torch.empty(masks.shape, dtype=torch.bool))
    on_numpy = mask_runs.runs_numpy(masks, np.empty_like(masks))
    for a, b in zip(on_torch, on_numpy):
        np.testing.assert_array_equal(a, b)
    assert compress_runs(*on_torch) == _reference(masks)


def test_run_lengths_are_those_pycocotools_decodes():
    masks = _masks(np.random.default_rng(4), 12, 11, 14)
    runs, runs_per_mask = mask_runs.column_runs(torch.from_numpy(masks), torch.empty(masks.shape, dtype=torch.bool))
    expected = [decode_counts("m", c) for c in _reference(masks)]
    assert runs_per_mask.tolist() == [len(r) for r in expected]
    np.testing.assert_array_equal(runs, np.concatenate(expected))


def test_sparse_flatnonzero_equals_numpy():
    rng = np.random.default_rng(5)
    for n in (0, 1, 7, 8, 9, 64, 1001):
        for density in (0.0, 0.01, 0.5, 1.0):
            flags = rng.random(n) < density
            np.testing.assert_array_equal(mask_runs.sparse_flatnonzero(flags), np.flatnonzero(flags))


def _compress(cases: list[list[int]]) -> list[bytes]:
    return compress_runs(np.concatenate([np.array(c, np.int64) for c in cases]), np.array([len(c) for c in cases]))


def test_compressed_counts_of_any_run_length_equal_pycocotools():
    """Long runs (up to 6 characters), zero runs, differences to the run two before of either sign."""
    rng = np.random.default_rng(6)
    cases = [[1], [0, 1], [2**29 - 1], [0, 2**28], [5, 0, 0, 0, 7], [1, 2**20, 3, 2**25, 1, 2**28, 17]]
    cases += [rng.integers(0, 2 ** rng.integers(1, 29), rng.integers(1, 40)).tolist() for _ in range(200)]
    cases = [c if sum(c) else [*c, 1] for c in cases]
    expected = [coco_mask.frPyObjects({"size": [sum(c), 1], "counts": c}, sum(c), 1)["counts"] for c in cases]
    assert _compress(cases) == expected
    assert compress_runs(np.zeros(0, np.int64), np.zeros(0, np.int64)) == []


def test_counts_beyond_pycocotools_buffer_take_seven_characters():
    """rleToString allots 6 characters per count, so pycocotools itself overflows its buffer (heap
    corruption, measured) on a count or difference beyond 2**29, which only images of over 536 million
    pixels have. The algorithm goes on to a seventh character; rleFrString's reading of it (our
    decode_counts, checked against pycocotools above) gives the runs back."""
    cases = [[2**31 - 1], [0, 2**32 - 1], [1, 2**30, 3, 1, 2**29, 5]]
    encoded = _compress(cases)
    assert [len(c) for c in encoded] == [7, 8, 1 + 7 + 1 + 7 + 6 + 1]  # 1 - 2**30 takes 7 as well
    assert [decode_counts("m", c).tolist() for c in encoded] == cases


def test_bad_values_are_still_refused_in_any_chunk(masks_per_chunk):
    masks = torch.zeros(7, 3, 4)
    masks[5, 2, 3] = 1.5
    message = r"y\[0\]\['masks'\] of dtype torch.float32 must hold probabilities in \[0, 1\]"
    with pytest.raises(ValueError, match=message):
        encode_masks("y[0]['masks']", masks)
    with pytest.raises(ValueError, match=r"must hold only 0 and 1, got values in \[0, 3\]"):
        encode_masks("y[0]['masks']", (masks * 2).to(torch.int16))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("dtype", [torch.bool, torch.uint8, torch.float16, torch.float32])
def test_cuda_masks_are_encoded_on_the_device_as_mask_encode_does(dtype, masks_per_chunk):
    masks = _masks(np.random.default_rng(7), 40, 48, 64)
    values = torch.from_numpy(masks).to(dtype)
    if dtype.is_floating_point:
        values = values * 0.5 + 0.25
        values[0, 0, 0] = 0.5  # exactly one half: outside
        masks[0, 0, 0] = False
    rles = encode_masks("m", values.cuda())
    assert rles.counts.tolist() == _reference(masks)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_the_value_check_at_the_edges_of_zero_to_one(dtype, masks_per_chunk):
    """-0.0, 0 and 1 are probabilities; the next values outside, infinities and NaN are not."""
    tiny, eps = torch.finfo(dtype).tiny, torch.finfo(dtype).eps
    for good in (-0.0, 0.0, 1.0, tiny):
        masks = torch.full((3, 2, 5), 0.25, dtype=dtype)
        masks[2, 1, 4] = good
        assert len(encode_masks("m", masks)) == 3
    for bad in (-tiny, 1.0 + eps, float("inf"), float("-inf"), float("nan")):
        masks = torch.full((3, 2, 5), 0.25, dtype=dtype)
        masks[2, 1, 4] = bad
        with pytest.raises(ValueError, match=r"must hold probabilities in \[0, 1\]"):
            encode_masks("m", masks)
