"""``CocoMetric(protocol="lvis")`` against lvis-api itself (``tests/lvis_reference.run_lvis``), bit for bit.

The 13 numbers and the precision and recall arrays, on seeded LVIS-style cases (boxes and masks), on 100 real
LVIS v1 val images, through an Engine with shuffled batches and tiny chunks, across a checkpoint, and on two
gloo processes; then the input contract's errors.
"""

from __future__ import annotations

import pickle
import random
from pathlib import Path

import ignite.distributed as idist
import numpy as np
import pytest
import torch
from ignite.engine import Engine
from pycocotools import mask as coco_mask

from ignite_det import CocoMetric
from ignite_det.backends.native import matching as native_matching
from tests.harness import spawn_gloo
from tests.lvis_reference import LvisReference, lvis_case, lvis_val_100, lvis_val_100_results, run_lvis


def _frequencies(gt: dict) -> dict[int, str]:
    return {c["id"]: c["frequency"] for c in gt["categories"]}


def _evaluate(samples: list, gt: dict, iou_type: str, batch_size: int = 1, **kwargs) -> object:
    metric = CocoMetric(iou_type=iou_type, protocol="lvis", category_frequencies=_frequencies(gt), **kwargs)
    metric.reset()
    for start in range(0, len(samples), batch_size):
        batch = samples[start : start + batch_size]
        metric.update(([p for p, _ in batch], [t for _, t in batch]))
    return metric.compute()


def _assert_equal(result, reference: LvisReference) -> None:
    assert dict(result) == reference.stats
    assert list(result) == list(reference.stats)  # lvis-api's names, in its order
    np.testing.assert_array_equal(result.precision[..., 0], reference.precision)
    np.testing.assert_array_equal(result.recall[..., 0], reference.recall)


@pytest.mark.parametrize("iou_type", ["bbox", "segm"])
@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_generated_cases_equal_lvis_api(seed, iou_type):
    case = lvis_case(seed, iou_type)
    reference = run_lvis(case.gt, case.results, iou_type)
    assert reference.stats["APr"] == -1  # the empty group is there
    _assert_equal(_evaluate(case.samples, case.gt, iou_type, batch_size=3), reference)


def test_a_larger_case_with_every_group_filled():
    case = lvis_case(11, "bbox", num_images=60, num_categories=24, empty_group=None, crowded_images=6)
    reference = run_lvis(case.gt, case.results, "bbox")
    assert min(reference.stats[g] for g in ("APr", "APc", "APf")) > 0
    _assert_equal(_evaluate(case.samples, case.gt, "bbox", batch_size=4), reference)


def _val_100_samples(gt: dict, results: list[dict], iou_type: str) -> list[tuple[dict, dict]]:
    """The LVIS dicts as (prediction, target) pairs: xywh boxes, or masks as RLE (polygons rasterised as
    lvis-api's ``ann_to_rle``)."""
    samples = []
    for image in gt["images"]:
        anns = [a for a in gt["annotations"] if a["image_id"] == image["id"]]
        dets = [r for r in results if r["image_id"] == image["id"]]
        target = {
            "labels": torch.tensor([a["category_id"] for a in anns], dtype=torch.int64),
            "area": torch.tensor([a["area"] for a in anns], dtype=torch.float64),
            "image_id": image["id"],
            "neg_category_ids": image["neg_category_ids"],
            "not_exhaustive_category_ids": torch.tensor(image["not_exhaustive_category_ids"], dtype=torch.int64),
        }
        prediction = {
            "scores": torch.tensor([d["score"] for d in dets], dtype=torch.float64),
            "labels": torch.tensor([d["category_id"] for d in dets], dtype=torch.int64),
        }
        if iou_type == "bbox":
            target["boxes"] = torch.tensor([a["bbox"] for a in anns], dtype=torch.float64).reshape(-1, 4)
            prediction["boxes"] = torch.tensor([d["bbox"] for d in dets], dtype=torch.float64).reshape(-1, 4)
        else:
            h, w = image["height"], image["width"]
            target["masks"] = [_polygon_rle(a["segmentation"], h, w) for a in anns]
            prediction["masks"] = [d["segmentation"] for d in dets]
        samples.append((prediction, target))
    return samples


def _polygon_rle(segmentation: list, h: int, w: int) -> dict:
    rle = coco_mask.merge(coco_mask.frPyObjects(segmentation, h, w))
    return {"size": rle["size"], "counts": rle["counts"].decode("ascii")}


@pytest.mark.parametrize(("iou_type", "seed"), [("bbox", 0), ("bbox", 1), ("segm", 0)])
def test_real_lvis_images_equal_lvis_api(iou_type, seed):
    gt = lvis_val_100()
    results = lvis_val_100_results(gt, seed, iou_type)
    reference = run_lvis(gt, results, iou_type)
    samples = _val_100_samples(gt, results, iou_type)
    _assert_equal(_evaluate(samples, gt, iou_type, batch_size=8, box_format="xywh"), reference)


@pytest.mark.parametrize("images_per_chunk", [1, 2])
def test_an_engine_with_shuffled_batches_and_tiny_chunks(monkeypatch, images_per_chunk):
    monkeypatch.setattr(native_matching, "IMAGES_PER_CHUNK", images_per_chunk)
    case = lvis_case(5, "bbox", num_images=18)
    samples = case.samples[:]
    random.Random(images_per_chunk).shuffle(samples)
    batches = [samples[i : i + 3] for i in range(0, len(samples), 3)]
    evaluator = Engine(lambda engine, batch: ([p for p, _ in batch], [t for _, t in batch]))
    CocoMetric(protocol="lvis", category_frequencies=_frequencies(case.gt)).attach(evaluator, "lvis")
    result = evaluator.run(batches).metrics["lvis"]
    reference = run_lvis(case.gt, case.results, "bbox")
    _assert_equal(result, reference)
    assert evaluator.state.metrics["APf"] == reference.stats["APf"]


def test_a_checkpoint_round_trip(tmp_path):
    case = lvis_case(6, "segm")
    frequencies = _frequencies(case.gt)
    first = CocoMetric(iou_type="segm", protocol="lvis", category_frequencies=frequencies)
    first.reset()
    half = len(case.samples) // 2
    for prediction, target in case.samples[:half]:
        first.update(([prediction], [target]))
    torch.save(first.state_dict(), tmp_path / "metric.pt")
    second = CocoMetric(iou_type="segm", protocol="lvis", category_frequencies=frequencies)
    second.reset()
    second.load_state_dict(torch.load(tmp_path / "metric.pt"))
    for prediction, target in case.samples[half:]:
        second.update(([prediction], [target]))
    _assert_equal(second.compute(), run_lvis(case.gt, case.results, "segm"))


def test_the_cap_counts_detections_the_federated_filter_drops():
    """With a cap of 4: two unverified detections score highest and take places, so a true positive is cut."""
    gt = {
        "images": [{"id": 1, "height": 100, "width": 100, "neg_category_ids": [], "not_exhaustive_category_ids": []}],
        "annotations": [
            {"id": k + 1, "image_id": 1, "category_id": 1, "bbox": [0, 20 * k, 10, 10], "area": 100.0} for k in range(3)
        ],
        "categories": [
            {"id": 1, "frequency": "f", "name": "a", "synset": "a"},
            {"id": 2, "frequency": "r", "name": "b", "synset": "b"},
        ],
    }
    dets = [(2, [50, 50, 10, 10], 0.9), (2, [60, 60, 10, 10], 0.9)] + [(1, [0, 20 * k, 10, 10], 0.5) for k in range(3)]
    results = [{"image_id": 1, "category_id": c, "bbox": b, "score": s} for c, b, s in dets]
    reference = run_lvis(gt, results, "bbox", max_dets=4)
    assert reference.stats["AR@4"] == pytest.approx(2 / 3)  # the cap cut the third true positive
    samples = [
        (
            {
                "boxes": torch.tensor([b for _, b, _ in dets], dtype=torch.float64),
                "scores": torch.tensor([s for _, _, s in dets], dtype=torch.float64),
                "labels": torch.tensor([c for c, _, _ in dets]),
            },
            {
                "boxes": torch.tensor([a["bbox"] for a in gt["annotations"]], dtype=torch.float64),
                "labels": torch.tensor([1, 1, 1]),
                "image_id": 1,
                "neg_category_ids": [],
                "not_exhaustive_category_ids": [],
            },
        )
    ]
    result = _evaluate(samples, gt, "bbox", box_format="xywh", max_detections=[4])
    _assert_equal(result, reference)
    assert [c.frequency for c in result.per_class] == ["f", "r"]


def _gloo_worker(local_rank: int, shards: list[list[int]], out_dir: str) -> None:
    native_matching.IMAGES_PER_CHUNK = 2  # a fresh process: nothing else to restore
    case = lvis_case(9, "bbox", num_images=11)
    metric = CocoMetric(protocol="lvis", category_frequencies=_frequencies(case.gt))
    mine = shards[idist.get_rank()]
    for start in range(0, len(mine), 2):
        batch = [case.samples[i] for i in mine[start : start + 2]]
        metric.update(([p for p, _ in batch], [t for _, t in batch]))
    result = metric.compute()
    summary = {"stats": dict(result), "precision": result.precision, "recall": result.recall}
    Path(out_dir, f"rank{idist.get_rank()}.pkl").write_bytes(pickle.dumps(summary))


@pytest.mark.usefixtures("gloo_on_the_cpu")
def test_two_gloo_processes_with_a_padded_repeat(tmp_path):
    # DistributedSampler(shuffle=False) on 11 images: image 0 pads rank 1, and is counted once.
    spawn_gloo(_gloo_worker, [list(range(0, 11, 2)), [*range(1, 11, 2), 0]], str(tmp_path))
    case = lvis_case(9, "bbox", num_images=11)
    reference = run_lvis(case.gt, case.results, "bbox")
    for rank in range(2):
        summary = pickle.loads(Path(tmp_path, f"rank{rank}.pkl").read_bytes())
        assert summary["stats"] == reference.stats
        np.testing.assert_array_equal(summary["precision"][..., 0], reference.precision)
        np.testing.assert_array_equal(summary["recall"][..., 0], reference.recall)


# --- the input contract ---


def _one_sample(**target_changes) -> tuple[list[dict], list[dict]]:
    prediction = {
        "boxes": torch.tensor([[0.0, 0.0, 5.0, 5.0]]),
        "scores": torch.tensor([0.5]),
        "labels": torch.tensor([1]),
    }
    target = {
        "boxes": torch.tensor([[0.0, 0.0, 5.0, 5.0]]),
        "labels": torch.tensor([1]),
        "neg_category_ids": [2],
        "not_exhaustive_category_ids": [],
    }
    target.update(target_changes)
    return [prediction], [{k: v for k, v in target.items() if v is not None}]


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"neg_category_ids": None}, ["y[0]", "neg_category_ids", "protocol='lvis'"]),
        ({"not_exhaustive_category_ids": None}, ["y[0]", "not_exhaustive_category_ids"]),
        ({"iscrowd": torch.tensor([1])}, ["y[0]['iscrowd']", "crowd", "LVIS"]),
        ({"labels": torch.tensor([7])}, ["y[0]['labels']", "7", "category_frequencies"]),
        ({"neg_category_ids": torch.tensor([1.5])}, ["y[0]['neg_category_ids']", "integer"]),
    ],
)
def test_bad_targets_are_named(change, words):
    metric = CocoMetric(protocol="lvis", category_frequencies={1: "f", 2: "c"})
    with pytest.raises((ValueError, TypeError)) as error:
        metric.update(_one_sample(**change))
    for word in words:
        assert word in str(error.value)


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({}, ["category_frequencies", "'r' | 'c' | 'f'"]),
        ({"category_frequencies": {1: "x"}}, ["'r', 'c' or 'f'", "{1: 'x'}"]),
        ({"category_frequencies": {1: "f"}, "backend": "pycocotools"}, ["backend='native' only", "pycocotools"]),
        ({"category_frequencies": {1: "f"}, "max_detections": [1, 300]}, ["one per-image cap", "[1, 300]"]),
        ({"category_frequencies": {1: "f"}, "iou_type": "keypoints"}, ["keypoints"]),
        ({"protocol": "coco", "category_frequencies": {1: "f"}}, ["protocol='lvis'"]),
        ({"protocol": "voc"}, ["protocol must be one of", "voc"]),
    ],
)
def test_bad_arguments_are_refused(kwargs, words):
    with pytest.raises(ValueError) as error:
        CocoMetric(**{"protocol": "lvis", **kwargs})
    for word in words:
        assert word in str(error.value)


def test_categories_without_ground_truth_are_evaluated():
    metric = CocoMetric(protocol="lvis", category_frequencies={1: "f", 2: "c", 3: "r"})
    metric.update(_one_sample())
    result = metric.compute()
    assert result.category_ids == (1, 2, 3)
    assert (result["APc"], result["APr"]) == (-1.0, -1.0)  # groups without ground truth, as lvis-api
    assert result["APf"] == result["AP"] > 0.99
    assert "AR@300" in result.summary()


def test_zero_area_annotations_and_detections_are_not_loaded():
    """L2: an annotation of area 0 is neither ground truth nor a positive category of its image (so a detection
    of it there is dropped); a zero-width detection is dropped too."""
    image = {"height": 100, "width": 100, "neg_category_ids": [], "not_exhaustive_category_ids": []}
    gt = {
        "images": [{"id": 1, **image}, {"id": 2, **image}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10], "area": 0.0},
            {"id": 2, "image_id": 2, "category_id": 1, "bbox": [0, 0, 10, 10], "area": 100.0},
        ],
        "categories": [{"id": 1, "frequency": "f", "name": "a", "synset": "a"}],
    }
    dets = [(1, [0, 0, 10, 10], 0.9), (2, [0, 0, 10, 10], 0.5), (2, [50, 50, 0, 10], 0.8)]
    results = [{"image_id": i, "category_id": 1, "bbox": b, "score": s} for i, b, s in dets]
    reference = run_lvis(gt, results, "bbox")
    samples = []
    for image_id, area in ((1, 0.0), (2, 100.0)):
        mine = [(b, s) for i, b, s in dets if i == image_id]
        prediction = {
            "boxes": torch.tensor([b for b, _ in mine], dtype=torch.float64),
            "scores": torch.tensor([s for _, s in mine], dtype=torch.float64),
            "labels": torch.ones(len(mine), dtype=torch.int64),
        }
        target = {
            "boxes": torch.tensor([[0.0, 0.0, 10.0, 10.0]]),
            "labels": torch.tensor([1]),
            "area": torch.tensor([area]),
            "image_id": image_id,
            "neg_category_ids": [],
            "not_exhaustive_category_ids": [],
        }
        samples.append((prediction, target))
    _assert_equal(_evaluate(samples, gt, "bbox", box_format="xywh"), reference)
    assert reference.stats["AP"] > 0.99  # neither the area-0 annotation nor the zero-width detection counted


def test_the_wandb_scalars_carry_lvis_apis_numbers():
    from ignite_det.wandb_logging.report import _scalars

    case = lvis_case(4, "bbox", empty_group=None)
    reference = run_lvis(case.gt, case.results, "bbox")
    scalars = _scalars(_evaluate(case.samples, case.gt, "bbox", batch_size=4), "val")
    assert {name: scalars[f"val/{name}"] for name in reference.stats} == reference.stats
