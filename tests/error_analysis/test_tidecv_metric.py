"""``CocoMetric(error_analysis="tidecv")`` end to end: through a real Ignite engine and under 2 gloo processes,
equal to tidecv 1.0.1 itself (``tests/tide_reference.run_tidecv``) to 1e-9.

The real mask results have equal scores on different images, so the order in which images are visited
changes tidecv's AP in the last digits: the distributed test checks that 2 processes visit them in the order
one process does (``ignite_det.gather.sampler_order``), and give its numbers exactly.
"""

from __future__ import annotations

import json
from pathlib import Path

import ignite.distributed as idist
import pytest

from ignite_det import CocoMetric
from ignite_det.error_analysis import MAIN_ERRORS, SPECIAL_ERRORS
from tests.coco_reference import GT_FILE, SEGM_RESULTS_FILE
from tests.harness import evaluate_with_engine, spawn_gloo
from tests.tide_reference import coco_samples, run_tidecv, tide_case
from tests.type_cases import load_real_segm_samples

TOLERANCE = 1e-9


def assert_equal_to_tidecv(errors, expected) -> None:
    assert errors.mode == "tidecv"
    assert abs(errors.ap - expected.ap) <= TOLERANCE
    for name in MAIN_ERRORS:
        assert abs(errors.main[name] - expected.main[name]) <= TOLERANCE, name
    for name in SPECIAL_ERRORS:
        assert abs(errors.special[name] - expected.special[name]) <= TOLERANCE, name
    assert {name: n for name, n in errors.counts.items() if n} == {name: n for name, n in expected.counts.items() if n}


@pytest.mark.parametrize("seed", range(3))
def test_generated_boxes_through_an_engine(seed, backend):
    gt, results = tide_case(seed)
    samples, _ = coco_samples(gt, results)
    names = {c["id"]: c["name"] for c in gt["categories"]}
    result = evaluate_with_engine(
        samples, 3, box_format="xywh", backend=backend, class_names=names, error_analysis="tidecv"
    )["coco"]
    assert_equal_to_tidecv(result.errors, run_tidecv(gt, results))
    assert result.per_image.columns[-len(MAIN_ERRORS) :] == MAIN_ERRORS


def _segm_metric() -> CocoMetric:
    gt = json.loads(GT_FILE.read_text())
    names = {c["id"]: c["name"] for c in gt["categories"]}
    return CocoMetric(iou_type="segm", class_names=names, error_analysis="tidecv")


def _worker(local_rank: int, out_dir: str) -> None:
    samples = load_real_segm_samples()
    rank = idist.get_rank()
    mine = [samples[i] for i in range(rank, len(samples), 2)] + ([samples[0]] if rank else [])  # 100 + 1 padded
    metric = _segm_metric()
    for start in range(0, len(mine), 7):
        batch = mine[start : start + 7]
        metric.update(([p for p, _ in batch], [t for _, t in batch]))
    errors = metric.compute().errors
    Path(out_dir, f"rank{rank}.json").write_text(json.dumps(errors.to_dict()))


@pytest.mark.usefixtures("gloo_on_the_cpu")
def test_real_masks_under_two_gloo_processes_equal_one_process_and_tidecv(tmp_path):
    samples = load_real_segm_samples()
    metric = _segm_metric()
    for start in range(0, len(samples), 7):
        batch = samples[start : start + 7]
        metric.update(([p for p, _ in batch], [t for _, t in batch]))
    one = metric.compute().errors
    gt, results = json.loads(GT_FILE.read_text()), json.loads(SEGM_RESULTS_FILE.read_text())
    assert_equal_to_tidecv(one, run_tidecv(gt, results, "segm"))
    spawn_gloo(_worker, str(tmp_path))
    expected = json.loads(json.dumps(one.to_dict()))
    for rank in range(2):
        assert json.loads((tmp_path / f"rank{rank}.json").read_text()) == expected
