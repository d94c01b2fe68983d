"""The segm type on its own: encoding, packing and mask IoU against pycocotools' COCOeval and a brute force."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch
from pycocotools import mask as coco_mask

from ignite_det.iou.segm import check_masks, check_sizes, encode_masks, mask_iou, mask_pair_iou
from ignite_det.rle import Rles


def _dense(rles: list) -> np.ndarray:
    """uint8 (N, H, W) from pycocotools RLE dicts, decoded by pycocotools."""
    return np.ascontiguousarray(coco_mask.decode(rles).transpose(2, 0, 1))


@pytest.mark.parametrize("form", ["binary", "probabilities"])
def test_real_segm_ious_equal_cocoeval_bit_for_bit(segm_files_cocoeval, form):
    """Ground-truth polygons and crowd RLEs decoded to dense masks, detections' RLEs likewise:
    encoded again at our door, every IoU matrix equals the one COCOeval computed on the files."""
    coco_eval = segm_files_cocoeval
    rng = np.random.default_rng(0)
    cells = [(key, ious) for key, ious in coco_eval.ious.items() if len(ious)]
    assert len(cells) > 100
    for (image_id, category_id), expected in cells:
        gts = coco_eval._gts[image_id, category_id]
        dts = coco_eval._dts[image_id, category_id]
        order = np.argsort([-d["score"] for d in dts], kind="mergesort")[:100]
        det_masks = torch.from_numpy(_dense([dts[i]["segmentation"] for i in order]))
        if form == "probabilities":  # Mask R-CNN's form (N, 1, H, W); exactly 0.5 is not above 0.5
            inside, outside = [(0.5001, 0.5), (0.75, 0.25), (1.0, 0.0)][int(rng.integers(0, 3))]
            det_masks = torch.where(det_masks.bool(), inside, outside).float()[:, None]
        gt_masks = torch.from_numpy(_dense([g["segmentation"] for g in gts]))
        dets = encode_masks("y_pred[0]['masks']", det_masks)
        truth = encode_masks("y[0]['masks']", gt_masks)
        crowd = np.array([g["iscrowd"] for g in gts])
        np.testing.assert_array_equal(mask_iou(dets, truth, crowd), expected)


def test_real_segm_detection_area_and_box_are_those_loadres_sets(segm_files_cocoeval):
    dts = [d for anns in segm_files_cocoeval._dts.values() for d in anns][:200]
    rles = Rles.concatenate([encode_masks("m", torch.from_numpy(_dense([d["segmentation"]]))) for d in dts])
    np.testing.assert_array_equal(rles.area(), [d["area"] for d in dts])
    np.testing.assert_array_equal(rles.boxes(), [d["bbox"] for d in dts])


def _blobs(rng: np.random.Generator, n: int, h: int, w: int) -> np.ndarray:
    """bool (n, h, w): rectangles and scattered pixels, some empty, some full."""
    masks = np.zeros((n, h, w), dtype=bool)
    for i in range(n):
        kind = rng.integers(0, 6)
        if kind == 0:
            continue  # an empty mask
        if kind == 1:
            masks[i] = True
            continue
        y0, x0 = rng.integers(0, h), rng.integers(0, w)
        masks[i, y0 : y0 + rng.integers(1, h), x0 : x0 + rng.integers(1, w)] = True
        if kind >= 4:
            masks[i] ^= rng.random((h, w)) < 0.1
    return masks


def _brute_force_iou(dets: np.ndarray, gts: np.ndarray, crowd: np.ndarray) -> np.ndarray:
    """COCO's mask IoU from dense masks: integer counts, one float64 division (0 where the union is empty)."""
    out = np.zeros((len(dets), len(gts)))
    for i, d in enumerate(dets):
        for j, g in enumerate(gts):
            inter = int(np.logical_and(d, g).sum())
            union = int(d.sum()) if crowd[j] else int(np.logical_or(d, g).sum())
            out[i, j] = inter / union if union else 0.0
    return out


@pytest.mark.parametrize("seed", range(6))
def test_random_mask_ious_equal_a_brute_force_and_the_plain_recipe(seed):
    rng = np.random.default_rng(seed)
    h, w = int(rng.integers(1, 40)), int(rng.integers(1, 40))
    dets, gts = _blobs(rng, int(rng.integers(0, 12)), h, w), _blobs(rng, int(rng.integers(0, 8)), h, w)
    crowd = (rng.random(len(gts)) < 0.3).astype(np.int64)
    ours = mask_iou(encode_masks("d", torch.from_numpy(dets)), encode_masks("g", torch.from_numpy(gts)), crowd)
    np.testing.assert_array_equal(ours, _brute_force_iou(dets, gts, crowd))
    if len(dets) and len(gts):  # torchvision's reference evaluator: one mask at a time, Fortran order
        encode_one = [coco_mask.encode(np.asfortranarray(m[:, :, None].astype(np.uint8)))[0] for m in dets]
        encode_gts = [coco_mask.encode(np.asfortranarray(m[:, :, None].astype(np.uint8)))[0] for m in gts]
        np.testing.assert_array_equal(ours, coco_mask.iou(encode_one, encode_gts, crowd.tolist()))


@pytest.mark.parametrize(
    "make",
    [
        lambda m: torch.from_numpy(m),
        lambda m: torch.from_numpy(m).to(torch.uint8),
        lambda m: torch.from_numpy(m).to(torch.int64)[:, None],
        lambda m: torch.from_numpy(m).to(torch.float16) * 0.75,
        lambda m: torch.from_numpy(m).to(torch.float64)[:, None] * 0.5 + 0.25,
        lambda m: coco_mask.encode(np.asfortranarray(m.transpose(1, 2, 0).astype(np.uint8))),
        lambda m: [
            {**r, "counts": r["counts"].decode()}
            for r in coco_mask.encode(np.asfortranarray(m.transpose(1, 2, 0).astype(np.uint8)))
        ],
    ],
    ids=["bool", "uint8", "int64-N1HW", "float16", "float64-N1HW", "rle-bytes", "rle-str"],
)
def test_every_accepted_form_gives_the_same_rles(make):
    rng = np.random.default_rng(3)
    masks = _blobs(rng, 7, 23, 17)
    expected = coco_mask.encode(np.asfortranarray(masks.transpose(1, 2, 0).astype(np.uint8)))
    assert check_masks("m", make(masks)) == 7
    assert encode_masks("m", make(masks)).dicts() == expected


def test_uncompressed_rles_are_accepted():
    rng = np.random.default_rng(4)
    masks = _blobs(rng, 5, 9, 11)
    uncompressed = [{"size": [9, 11], "counts": _runs(m)} for m in masks]
    expected = coco_mask.encode(np.asfortranarray(masks.transpose(1, 2, 0).astype(np.uint8)))
    assert encode_masks("m", uncompressed).dicts() == expected


def _runs(mask: np.ndarray) -> list[int]:
    """COCO's uncompressed RLE of a dense mask: column-major run lengths, starting with zeros."""
    flat = mask.T.reshape(-1).astype(np.int8)
    change = np.flatnonzero(np.diff(flat)) + 1
    bounds = np.r_[0, change, len(flat)]
    runs = np.diff(bounds).tolist()
    return runs if flat[0] == 0 else [0, *runs]


def test_compressed_counts_are_decoded_as_pycocotools_encodes_them():
    """Every count form: short and long runs, negative differences (the fourth count on)."""
    from ignite_det.rle import decode_counts as _decode_counts

    rng = np.random.default_rng(5)
    for masks in (_blobs(rng, 20, 31, 47), np.ones((1, 300, 400), bool), np.zeros((1, 1, 1), bool)):
        for mask, rle in zip(masks, coco_mask.encode(np.asfortranarray(masks.transpose(1, 2, 0).astype(np.uint8)))):
            assert _decode_counts("m", rle["counts"]).tolist() == _runs(mask)


def test_rows_join_select_and_pack_round_trip():
    rng = np.random.default_rng(6)
    a = encode_masks("a", torch.from_numpy(_blobs(rng, 4, 10, 12)))
    b = encode_masks("b", torch.from_numpy(_blobs(rng, 3, 5, 6)))
    joined = Rles.concatenate([a, Rles.empty(), b])
    assert joined.dicts() == a.dicts() + b.dicts()
    assert joined.select(np.array([5, 0, 5])).dicts() == [b.dicts()[1], a.dicts()[0], b.dicts()[1]]
    assert joined.select(np.zeros(7, bool)).dicts() == []
    assert Rles.from_dicts(joined.dicts()).dicts() == joined.dicts()
    np.testing.assert_array_equal(joined.decode()[:4], a.decode())
    data, lengths = joined.pack()
    assert data.dtype == np.uint8 and len(data) == lengths.sum() == sum(len(r["counts"]) for r in joined.dicts())
    assert Rles.unpack(data, lengths, joined.sizes).dicts() == joined.dicts()
    blank = Rles.empty(3)
    assert Rles.unpack(*blank.pack(), blank.sizes).counts.tolist() == [b"", b"", b""]


def test_area_of_more_than_255_masks():
    """pycocotools' area() of a list fails beyond 255 masks; ours goes by chunks."""
    masks = np.zeros((300, 4, 5), dtype=bool)
    for i in range(300):
        masks[i].flat[: i % 21] = True
    rles = encode_masks("m", torch.from_numpy(masks))
    np.testing.assert_array_equal(rles.area(), masks.sum(axis=(1, 2)))


def test_pair_ious_equal_the_matrix_entries():
    rng = np.random.default_rng(7)
    dets = encode_masks("d", torch.from_numpy(_blobs(rng, 9, 15, 15)))
    gts = encode_masks("g", torch.from_numpy(_blobs(rng, 6, 15, 15)))
    crowd = np.array([0, 1, 0, 0, 1, 0])
    matrix = mask_iou(dets, gts, crowd)
    det_rows, gt_rows = np.repeat(np.arange(9), 6), np.tile(np.arange(6), 9)
    keep = rng.random(len(det_rows)) < 0.6
    det_rows, gt_rows = det_rows[keep], gt_rows[keep]
    group = det_rows % 3  # any grouping gives the same values
    np.testing.assert_array_equal(mask_pair_iou(dets, gts, crowd, det_rows, gt_rows, group), matrix[det_rows, gt_rows])
    assert mask_pair_iou(dets, gts, crowd, det_rows[:0], gt_rows[:0], group[:0]).shape == (0,)


def test_empty_masks_of_any_shape_mean_no_masks():
    for empty in (torch.zeros(0), torch.zeros(0, 5, 5), torch.zeros(0, 1, 5, 5, dtype=torch.bool), []):
        assert check_masks("m", empty) == 0
        assert len(encode_masks("m", empty)) == 0
    assert mask_iou(Rles.empty(), encode_masks("g", torch.ones(2, 3, 3)), np.zeros(2)).shape == (0, 2)


def test_masks_of_different_sizes_in_one_image_are_refused():
    small, large = encode_masks("a", torch.ones(1, 4, 5)), encode_masks("b", torch.ones(2, 8, 10))
    check_sizes("y_pred[0]", [small, encode_masks("c", torch.ones(3, 4, 5)), Rles.empty()])
    with pytest.raises(
        ValueError,
        match=re.escape(
            "y_pred[2]/y[2]: the masks of one image must all have the image's size (H, W), got sizes 4x5, 8x10"
        ),
    ):
        check_sizes("y_pred[2]/y[2]", [small, large])


RLE = {"size": [2, 3], "counts": [1, 2, 3]}
ERRORS = [
    (
        np.zeros((1, 4, 4)),
        TypeError,
        "y[0]['masks'] must be a tensor of shape (N, H, W) or (N, 1, H, W), or a list of COCO RLE dicts, got ndarray",
    ),
    (torch.zeros(2, 4), ValueError, "y[0]['masks'] must have shape (N, H, W) or (N, 1, H, W), got (2, 4)"),
    (torch.zeros(2, 3, 4, 4), ValueError, "must have shape (N, H, W) or (N, 1, H, W), got (2, 3, 4, 4)"),
    (torch.zeros(2, 0, 4), ValueError, "y[0]['masks'] must have a height and width of at least 1, got shape (2, 0, 4)"),
    (
        torch.zeros(1, 2, 2, dtype=torch.complex64),
        TypeError,
        "must be a float (probabilities), bool or integer tensor, got dtype torch.complex64",
    ),
    (
        [RLE, {"counts": "0"}],
        ValueError,
        "y[0]['masks'][1] must be a COCO RLE dict with keys 'size' and 'counts', got ['counts']",
    ),
    ([RLE, 5], ValueError, "y[0]['masks'][1] must be a COCO RLE dict with keys 'size' and 'counts', got int"),
    (
        [{"size": [2], "counts": "0"}],
        ValueError,
        "y[0]['masks'][0]['size'] must be [height, width], two positive integers, got [2]",
    ),
    (
        [{"size": [2, 3], "counts": 5}],
        TypeError,
        "y[0]['masks'][0]['counts'] must be a compressed string (str or bytes) or a list of run lengths, got int",
    ),
]


@pytest.mark.parametrize("masks, error, message", ERRORS)
def test_malformed_masks_are_refused_at_the_door(masks, error, message):
    with pytest.raises(error, match=re.escape(message)):
        check_masks("y[0]['masks']", masks)


VALUE_ERRORS = [
    (
        torch.tensor([[[0.2, 1.5]]]),
        "y[0]['masks'] of dtype torch.float32 must hold probabilities in [0, 1], got values in [0.2, 1.5]; "
        "apply .sigmoid() to logits",
    ),
    (torch.tensor([[[0.2, float("nan")]]]), "must hold probabilities in [0, 1], got values in [nan, nan]"),
    (
        torch.tensor([[[0, 255]]], dtype=torch.uint8),
        "y[0]['masks'] of dtype torch.uint8 must hold only 0 and 1, got values in [0, 255]; pass (masks > 0)",
    ),
    (
        [{"size": [2, 3], "counts": [1, 2, 2]}],
        "y[0]['masks'][0] does not describe a 2x3 mask: its run lengths must be non-negative and sum to 6, "
        "got 3 runs summing to 5",
    ),
    ([{"size": [2, 3], "counts": [7, -1]}], "does not describe a 2x3 mask"),
    ([{"size": [4, 4], "counts": "0"}], "y[0]['masks'][0] does not describe a 4x4 mask"),
    ([{"size": [2, 3], "counts": "a b"}], "y[0]['masks'][0]['counts'] is not a compressed COCO RLE string"),
    ([{"size": [2, 3], "counts": "6P"}], "y[0]['masks'][0]['counts'] is not a compressed COCO RLE string"),
    ([{"size": [2, 3], "counts": "PPPPPPPP0"}], "y[0]['masks'][0]['counts'] holds a run longer than any image"),
]


@pytest.mark.parametrize("masks, message", VALUE_ERRORS)
def test_mask_values_that_would_give_wrong_numbers_are_refused(masks, message):
    assert check_masks("y[0]['masks']", masks) == len(masks)
    with pytest.raises(ValueError, match=re.escape(message)):
        encode_masks("y[0]['masks']", masks)


def test_the_pixel_at_exactly_one_half_is_outside_as_torchvision_thresholds():
    rles = encode_masks("m", torch.tensor([[[0.5, 0.5000001], [1.0, 0.0]]]))
    np.testing.assert_array_equal(rles.decode()[0], [[0, 1], [1, 0]])
    assert json.dumps(rles.area().tolist()) == "[2.0]"
