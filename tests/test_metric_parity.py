"""CocoMetric against pycocotools on the same inputs: every number equal, to the last bit."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ignite.engine import Engine

from ignite_det import CocoMetric
from ignite_det.backends import cocoeval
from tests.coco_reference import (
    NAMES,
    PUBLISHED_BBOX,
    random_case,
    run_cocoeval,
    stats_dict,
    to_coco,
)
from tests.harness import assert_same_arrays, evaluate_with_engine


@pytest.mark.parametrize("batch_size", [1, 7, 100])
def test_real_coco_images_reproduce_published_numbers(backend, batch_size, real_samples):
    metrics = evaluate_with_engine(real_samples, batch_size, box_format="xywh", backend=backend)
    assert {name: metrics[name] for name in NAMES} == PUBLISHED_BBOX


@pytest.mark.parametrize("cells_per_run", [None, 300], ids=["one-run", "3-categories-per-run"])
def test_real_coco_images_arrays_equal_pycocotools_on_the_files(
    backend, cells_per_run, monkeypatch, real_samples, files_cocoeval
):
    coco_eval = files_cocoeval
    if cells_per_run is not None:  # 100 images: the categories go in groups of 3, the last one shorter
        monkeypatch.setattr(cocoeval, "CELLS_PER_RUN", cells_per_run)
    samples = real_samples
    samples.reverse()  # arrival order must not matter
    result = evaluate_with_engine(samples, 16, box_format="xywh", backend=backend)["coco"]
    # The files list 80 categories; the metric evaluates those with ground truth, whose columns must match.
    kept = [i for i, c in enumerate(coco_eval.params.catIds) if c in result.category_ids]
    for name in ("precision", "scores"):
        np.testing.assert_array_equal(getattr(result, name), coco_eval.eval[name][:, :, kept])
    np.testing.assert_array_equal(result.recall, coco_eval.eval["recall"][:, kept])


@pytest.mark.parametrize("box_format", ["xyxy", "xywh", "cxcywh"])
@pytest.mark.parametrize("seed", range(6))
def test_random_edge_cases_equal_pycocotools(backend, box_format, seed):
    predictions, targets = random_case(seed, box_format=box_format)
    reference = run_cocoeval(*to_coco(predictions, targets, box_format))
    samples = list(zip(predictions, targets))
    result = evaluate_with_engine(samples, 5, box_format=box_format, backend=backend)["coco"]
    assert dict(result) == stats_dict(reference)
    assert_same_arrays(result, reference)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_any_float_dtype_is_evaluated_as_given(backend, dtype):
    predictions, targets = random_case(11, dtype=dtype)
    reference = run_cocoeval(*to_coco(predictions, targets))
    result = evaluate_with_engine(list(zip(predictions, targets)), 4, backend=backend)["coco"]
    assert dict(result) == stats_dict(reference)


def test_without_image_ids_images_are_numbered_in_arrival_order(backend):
    predictions, targets = random_case(3, with_image_ids=False)
    reference = run_cocoeval(*to_coco(predictions, targets))
    result = evaluate_with_engine(list(zip(predictions, targets)), 3, backend=backend)["coco"]
    assert dict(result) == stats_dict(reference)


def test_score_ties_are_broken_by_image_id_not_update_order(backend):
    # Two images, one detection each with the same score: one true positive, one false positive.
    # COCOeval ranks the tie by sorted image id, so feeding the images in either order gives its number.
    box = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
    tp = (
        {"boxes": box, "scores": torch.tensor([0.5]), "labels": torch.tensor([1])},
        {"boxes": box, "labels": torch.tensor([1]), "image_id": 2},
    )
    fp = (
        {"boxes": box + 50, "scores": torch.tensor([0.5]), "labels": torch.tensor([1])},
        {"boxes": box, "labels": torch.tensor([1]), "image_id": 1},
    )
    reference = stats_dict(run_cocoeval(*to_coco([tp[0], fp[0]], [tp[1], fp[1]])))
    for order in ([tp, fp], [fp, tp]):
        assert dict(evaluate_with_engine(order, 1, backend=backend)["coco"]) == reference


def test_iou_exactly_on_a_threshold_matches_as_pycocotools_does(backend):
    # A 55x100 box inside a 100x100 ground truth has IoU 0.55 exactly: float32 thresholds would miss it.
    sample = (
        {"boxes": torch.tensor([[0.0, 0.0, 55.0, 100.0]]), "scores": torch.tensor([0.9]), "labels": torch.tensor([1])},
        {"boxes": torch.tensor([[0.0, 0.0, 100.0, 100.0]]), "labels": torch.tensor([1]), "image_id": 1},
    )
    reference = stats_dict(run_cocoeval(*to_coco([sample[0]], [sample[1]])))
    result = evaluate_with_engine([sample], 1, backend=backend)["coco"]
    assert dict(result) == reference
    assert result["AP"] == pytest.approx(0.2)


def test_custom_parameters_equal_pycocotools_arrays(backend):
    predictions, targets = random_case(5)
    iou = [0.3, 0.5, 0.75]
    rec = np.linspace(0, 1, 21).tolist()
    areas = {"tiny": (0.0, 400.0), "big": (400.0, 1e10)}
    reference = run_cocoeval(
        *to_coco(predictions, targets),
        iouThrs=np.array(iou),
        recThrs=np.array(rec),
        maxDets=[1, 5, 300],
        areaRng=[[0, 1e10], [0.0, 400.0], [400.0, 1e10]],
        areaRngLbl=["all", "tiny", "big"],
    )
    result = evaluate_with_engine(
        list(zip(predictions, targets)),
        4,
        backend=backend,
        iou_thresholds=iou,
        rec_thresholds=rec,
        max_detections=[1, 5, 300],
        area_ranges=areas,
    )["coco"]
    assert_same_arrays(result, reference)
    assert set(result) == {"AP", "AP50", "AP75", "AP_tiny", "AP_big", "AR1", "AR5", "AR300", "AR_tiny", "AR_big"}
    # AP uses the largest maxDets (300); pycocotools' summarize would look for 100 and give -1.
    assert reference.stats[0] == -1
    valid = reference.eval["precision"][:, :, :, 0, 2]
    assert result["AP"] == float(np.mean(valid[valid > -1]))


def test_max_detections_without_100_uses_the_largest_for_ap(backend):
    predictions, targets = random_case(8)
    reference = run_cocoeval(*to_coco(predictions, targets), maxDets=[1, 10, 300])
    result = evaluate_with_engine(list(zip(predictions, targets)), 4, backend=backend, max_detections=[300, 1, 10])[
        "coco"
    ]
    assert_same_arrays(result, reference)
    precision = reference.eval["precision"][:, :, :, 0, -1]
    assert result["AP"] == float(np.mean(precision[precision > -1]))
    assert result["AR300"] == float(reference.stats[8])


def test_arange_built_thresholds_still_find_ap75():
    predictions, targets = random_case(2)
    thresholds = np.arange(0.5, 0.96, 0.05)  # thresholds[5] == 0.7500000000000002
    result = evaluate_with_engine(list(zip(predictions, targets)), 4, iou_thresholds=thresholds)["coco"]
    assert result["AP75"] > -1


def test_empty_batches_and_empty_images_are_valid(backend):
    predictions, targets = random_case(4)
    empty = (
        {"boxes": torch.zeros(0, 4), "scores": torch.zeros(0), "labels": torch.zeros(0, dtype=torch.int64)},
        {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64), "image_id": 5000},
    )
    reference = run_cocoeval(*to_coco(predictions + [empty[0]], targets + [empty[1]]))
    evaluator = Engine(lambda engine, batch: batch)
    CocoMetric(backend=backend).attach(evaluator, "coco")
    batches = [
        ([], []),
        (predictions[:5], targets[:5]),
        ([empty[0]], [empty[1]]),
        ([], []),
        (predictions[5:], targets[5:]),
    ]
    result = evaluator.run(batches).metrics["coco"]
    assert dict(result) == stats_dict(reference)


def test_a_repeated_image_id_counts_once():
    predictions, targets = random_case(6)
    reference = run_cocoeval(*to_coco(predictions, targets))
    samples = list(zip(predictions, targets))
    result = evaluate_with_engine(samples + samples[:3], 4)["coco"]
    assert dict(result) == stats_dict(reference)
    assert result.num_images == len(samples)


def test_no_images_is_not_computable():
    from ignite.exceptions import NotComputableError

    with pytest.raises(NotComputableError):
        CocoMetric().compute()


def test_gradients_are_not_kept():
    predictions, targets = random_case(1)
    for p in predictions:
        p["boxes"].requires_grad_(True)
    metric = CocoMetric()
    metric.update((predictions, targets))
    assert isinstance(metric._store.collect().det_boxes, np.ndarray)


def _on_gpu(tensors: dict, dtype: torch.dtype, requires_grad: bool = False) -> dict:
    moved = {}
    for key, value in tensors.items():
        if torch.is_tensor(value):
            value = value.to("cuda", dtype=dtype if value.is_floating_point() else value.dtype)
            value.requires_grad_(requires_grad and value.is_floating_point())
        moved[key] = value
    return moved


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_inputs_on_the_gpu_with_autograd_history_give_the_published_numbers(backend, real_samples):
    samples = [(_on_gpu(p, torch.float64, requires_grad=True), _on_gpu(t, torch.float64)) for p, t in real_samples]
    metrics = evaluate_with_engine(samples, 7, box_format="xywh", backend=backend)
    assert {name: metrics[name] for name in NAMES} == PUBLISHED_BBOX


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_gpu_inputs_equal_the_same_inputs_on_the_cpu(dtype, real_samples):
    samples = real_samples
    on_cpu = [
        ({k: v.to(dtype) if torch.is_tensor(v) and v.is_floating_point() else v for k, v in p.items()}, t)
        for p, t in samples
    ]
    on_gpu = [(_on_gpu(p, dtype), _on_gpu(t, t["boxes"].dtype)) for p, t in samples]
    cpu = evaluate_with_engine(on_cpu, 16, box_format="xywh")["coco"]
    gpu = evaluate_with_engine(on_gpu, 16, box_format="xywh")["coco"]
    assert dict(gpu) == dict(cpu)
    for name in ("precision", "recall", "scores"):
        np.testing.assert_array_equal(getattr(gpu, name), getattr(cpu, name))
