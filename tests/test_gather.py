"""Real process groups: every rank returns the single-process result, padded repeats counted once.

2-process gloo groups run everywhere; a NCCL group runs where there is a CUDA device (one process:
NCCL refuses two ranks on one GPU). A group of one runs the same collectives as a larger one.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import ignite.distributed as idist
import numpy as np
import pytest
import torch

from ignite_det import CocoMetric
from ignite_det.backends.base import RowSubset
from ignite_det.backends.native import matching as native_matching
from tests.coco_reference import empty_cases, random_case, run_cocoeval, stats_dict, to_coco
from tests.harness import free_port, spawn_gloo

SHARDS = {
    "uneven": [list(range(0, 9)), list(range(9, 12))],
    # DistributedSampler(shuffle=False) on 11 images: rank r takes r, r+2, ...; index 0 pads rank 1.
    "padded_duplicate": [list(range(0, 11, 2)), list(range(1, 11, 2)) + [0]],
    "rank_without_images": [list(range(12)), []],
    # Rank 0 (which evaluates) holding 1 or 0 detections: its transposed outcome view is C-contiguous too, and
    # it must still read its peers' records in the layout they sent (random_case(21): image 7 has 1 detection,
    # 5 and 11 none).
    "rank_0_with_one_detection": [[7], [i for i in range(12) if i != 7]],
    "rank_0_with_no_detection": [[5, 11], [i for i in range(12) if i not in (5, 11)]],
}


pytestmark = pytest.mark.usefixtures("gloo_on_the_cpu")


def _worker(local_rank: int, shards: list[list[int]], backend: str, out_dir: str, images_per_chunk: int) -> None:
    native_matching.IMAGES_PER_CHUNK = images_per_chunk  # a fresh process: nothing else to restore
    predictions, targets = random_case(21)
    device = idist.device()  # inputs on the group's device: the GPU under NCCL
    predictions = [{k: v.to(device) for k, v in p.items()} for p in predictions]
    targets = [{k: v.to(device) if torch.is_tensor(v) else v for k, v in t.items()} for t in targets]
    metric = CocoMetric(backend=backend, class_names={1: "a", 2: "b", 3: "c", 4: "d"})
    mine = shards[idist.get_rank()]
    for start in range(0, len(mine), 2):
        batch = mine[start : start + 2]
        metric.update(([predictions[i] for i in batch], [targets[i] for i in batch]))
    result = metric.compute()
    summary = {
        "stats": dict(result),
        "precision": result.precision,
        "recall": result.recall,
        "scores": result.scores,
        "per_class": result.per_class,
        "best_f1": result.best_f1,
        "confusion": result.confusion_matrix,
        "num_images": result.num_images,
    }
    Path(out_dir, f"rank{idist.get_rank()}.pkl").write_bytes(pickle.dumps(summary))


def _single_process(backend: str, images: list[int]) -> dict:
    predictions, targets = random_case(21)
    metric = CocoMetric(backend=backend, class_names={1: "a", 2: "b", 3: "c", 4: "d"})
    metric.update(([predictions[i] for i in images], [targets[i] for i in images]))
    result = metric.compute()
    return {
        "result": result,
        "reference": run_cocoeval(*to_coco([predictions[i] for i in images], [targets[i] for i in images])),
    }


@pytest.mark.parametrize("case", list(SHARDS))
def test_two_gloo_processes_equal_one(tmp_path, case, backend):
    # Native: chunks of 3 images, so each rank matches some during update() and the rest at compute().
    _check_group("gloo", SHARDS[case], backend, tmp_path, images_per_chunk=3)


def test_a_gloo_group_of_one(tmp_path, backend):
    _check_group("gloo", [list(range(12))], backend, tmp_path)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_a_nccl_group_with_inputs_on_the_gpu(tmp_path, backend):
    _check_group("nccl", [list(range(12))], backend, tmp_path)


def _check_group(
    dist_backend: str,
    shards: list[list[int]],
    backend: str,
    tmp_path: Path,
    images_per_chunk: int = native_matching.IMAGES_PER_CHUNK,
) -> None:
    idist.spawn(
        dist_backend,
        _worker,
        args=(shards, backend, str(tmp_path), images_per_chunk),
        nproc_per_node=len(shards),
        master_port=free_port(),
    )
    ranks = [pickle.loads((tmp_path / f"rank{r}.pkl").read_bytes()) for r in range(len(shards))]
    images = sorted(set().union(*shards))
    single = _single_process(backend, images)
    reference = single["reference"]
    for rank in ranks:
        assert rank["stats"] == stats_dict(reference)
        for name in ("precision", "recall", "scores"):
            np.testing.assert_array_equal(rank[name], reference.eval[name])
        assert rank["num_images"] == len(images)
        assert _rows(rank["per_class"]) == _rows(single["result"].per_class)
        np.testing.assert_array_equal(rank["confusion"], single["result"].confusion_matrix)
    for rank in ranks:
        assert _same_f1(rank["best_f1"], single["result"].best_f1)


def _rows(per_class) -> list:
    """Per-class rows comparable with == (NaN marks an undefined operating point)."""
    return [repr(row) for row in per_class]


def _same_f1(a, b) -> bool:
    return np.array_equal(a.as_array(), b.as_array(), equal_nan=True)


def _mixed_worker(local_rank: int, out_dir: str) -> None:
    predictions, targets = random_case(4, with_image_ids=idist.get_rank() == 0)
    metric = CocoMetric()
    metric.update((predictions[:3], targets[:3]))
    try:
        metric.compute()
        message = "no error"
    except ValueError as error:
        message = str(error)
    Path(out_dir, f"rank{idist.get_rank()}.txt").write_text(message)


def test_processes_disagreeing_on_image_ids_all_raise(tmp_path):
    spawn_gloo(_mixed_worker, str(tmp_path))
    for rank in range(2):
        assert (
            "some processes' targets carry 'image_id' and others' do not" in (tmp_path / f"rank{rank}.txt").read_text()
        )


def _empty_worker(local_rank: int, case: str, out_dir: str) -> None:
    samples = empty_cases()[case][idist.get_rank() :: 2]
    metric = CocoMetric()
    metric.update(([p for p, _ in samples], [t for _, t in samples]))
    result = metric.compute()
    summary = {"stats": dict(result), "status": result.best_f1.status, "confusion": result.confusion_matrix}
    Path(out_dir, f"rank{idist.get_rank()}.pkl").write_bytes(pickle.dumps(summary))


@pytest.mark.parametrize("case", ["no detection at all", "no ground truth at all"])
def test_empty_evaluations_under_two_processes(tmp_path, case):
    """Where a training run starts (nothing detected) and negative images, across two processes."""
    spawn_gloo(_empty_worker, case, str(tmp_path))
    single = CocoMetric()
    samples = empty_cases()[case]
    single.update(([p for p, _ in samples], [t for _, t in samples]))
    expected = single.compute()
    assert dict(expected) == stats_dict(run_cocoeval(*to_coco([p for p, _ in samples], [t for _, t in samples])))
    for rank in range(2):
        got = pickle.loads((tmp_path / f"rank{rank}.pkl").read_bytes())
        assert got["stats"] == dict(expected)
        assert got["status"] == expected.best_f1.status
        np.testing.assert_array_equal(got["confusion"], expected.confusion_matrix)


@pytest.mark.parametrize("seed", range(5))
def test_a_row_subset_is_deduplicated_as_the_dense_rows_it_stands_for(seed):
    """deduplicate() keeps a RowSubset's values of the kept detections, renumbered as the kept rows are."""
    rng = np.random.default_rng(seed)
    total = 40
    rows = np.flatnonzero(rng.random(total) < 0.3)
    subset = RowSubset(rows, rng.integers(-1, 2, (len(rows), 2, 3)).astype(np.int8))
    dense = np.full((total, 2, 3), 9, np.int8)  # 9: no value
    dense[rows] = subset.values
    kept = rng.random(total) < 0.6
    selected = subset.select(kept)
    again = np.full((int(kept.sum()), 2, 3), 9, np.int8)
    again[selected.rows] = selected.values
    np.testing.assert_array_equal(again, dense[kept])
    assert np.all(np.diff(selected.rows) > 0)
