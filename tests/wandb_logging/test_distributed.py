"""Sample images under distribution: 2 gloo processes log the same images as one process.

Each process evaluates its shard of ``random_case(21)``; rank 0 alone has an offline ``WandBLogger``,
rank 1 attaches with ``None``. The images W&B stored (captions, PNG pixels, box layers) are read back
and compared, evaluation by evaluation, with those of one process evaluating every image. All cases
run in one spawn and log to one W&B run, a tag per case, to keep the suite fast.
"""

from __future__ import annotations

import contextlib
import datetime
import io
import json
import warnings
from pathlib import Path
from typing import Any

import ignite.distributed as idist
import numpy as np
import pytest
import torch
from ignite.engine import Engine
from ignite.handlers.wandb_logger import WandBLogger
from PIL import Image

from ignite_det import CocoMetric, attach_wandb_logging
from tests import wandb_records as wr
from tests.coco_reference import random_case
from tests.harness import free_port, spawn_gloo

NUM_IMAGES = 4
NUM_WORST = 3  # the worst images pictured in the per-image table
H, W = 40, 60
PADDED_DATASET = list(range(10, -1, -1))  # 11 images of random_case(21), the smallest image_id first


def _distributed_sampler(dataset: list[int], world: int = 2) -> list[list[int]]:
    """The shards of ``DistributedSampler(shuffle=False)``: rank r takes r, r + world...; the first
    items pad the last ranks to equal length."""
    padded = dataset + dataset[: (-len(dataset)) % world]
    return [padded[r::world] for r in range(world)]


# Per case: the dataset (indices into random_case), whether targets carry image_id, and for each
# evaluation the indices each rank sees, in its order.
CASES: dict[str, tuple[list[int], bool, list[list[list[int]]]]] = {
    # rank 0 holds 9 images, rank 1 three; the 4 smallest ids are split 1 / 3; at the second evaluation
    # the shards trade places and run backwards
    "uneven": (
        list(range(12)),
        True,
        [[list(range(9)), list(range(9, 12))], [list(range(11, 8, -1)), list(range(8, -1, -1))]],
    ),
    # the smallest id pads rank 1: both processes capture it; it must be shown once
    "padded_duplicate": (PADDED_DATASET, True, [_distributed_sampler(PADDED_DATASET)] * 2),
    # without image_id, the k-th image of rank r is image k * 2 + r: its index under the sampler
    "without_image_ids": (list(range(12)), False, [_distributed_sampler(list(range(12)))] * 2),
}


def _image(index: int) -> torch.Tensor:
    return torch.randint(0, 256, (3, H, W), dtype=torch.uint8, generator=torch.Generator().manual_seed(index))


def _evaluator(logger: WandBLogger | None, case: str) -> Engine:
    evaluator = Engine(lambda engine, batch: (batch[1], batch[2]))
    metric = CocoMetric()
    metric.attach(evaluator, "coco")
    attach_wandb_logging(
        logger,
        evaluator,
        tag=case,
        num_images=NUM_IMAGES,
        num_worst_images=NUM_WORST,
        score_threshold=0.0,
        artifact_metric=metric if case == "uneven" else None,  # the predictions are gathered from both
    )
    return evaluator


def _log_cases(out_dir: Path, cases: dict[str, tuple[list[int], bool, list[list[list[int]]]]]) -> None:
    """Evaluate this process's shard of each case's evaluations; log to one W&B run from rank 0, a tag
    per case, evaluation e of every case at step e + 1."""
    rank = idist.get_rank()
    logger = None
    if rank == 0:
        logger = WandBLogger(project="ignite-det-tests", mode="offline", dir=str(out_dir), settings={"silent": True})
    evaluators = {case: _evaluator(logger, case) for case in cases}
    for e in range(max(len(evaluations) for _, _, evaluations in cases.values())):
        for case, (_, with_ids, evaluations) in cases.items():
            predictions, targets = random_case(21, with_image_ids=with_ids)
            mine = evaluations[e][rank]
            batches = [mine[k : k + 2] for k in range(0, len(mine), 2)]
            data = [([_image(i) for i in b], [predictions[i] for i in b], [targets[i] for i in b]) for b in batches]
            evaluators[case].run(data)
    if logger is not None:
        logger.close()


def _worker(local_rank: int, out_dir: str) -> None:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="CocoMetric under distribution without 'image_id'")
        _log_cases(Path(out_dir), CASES)


def _logged_images(run_root: Path, case: str) -> list[list[dict[str, Any]]]:
    """Per evaluation, the images logged for ``case``: caption, pixels and the box layers W&B stored."""
    run_dir = wr.find_run_dir(run_root)
    rows = [row for row in wr.history_rows(run_dir) if f"{case}/detections" in row]
    return [
        [
            {"caption": image["caption"], "pixels": np.asarray(Image.open(image["path"])), "boxes": image["boxes"]}
            for image in wr.load_images(run_dir, row[f"{case}/detections"])
        ]
        for row in rows
    ]


def _worst_pictures(run_root: Path, case: str) -> list[tuple[list[list[Any]], list[dict[str, Any]]]]:
    """Per evaluation, the per-image table's rows (image column left out) and its pictures: caption, boxes."""
    run_dir = wr.find_run_dir(run_root)
    out = []
    for row in [row for row in wr.history_rows(run_dir) if f"{case}/per_image" in row]:
        _, rows, _ = wr.load_artifact_table(run_dir, row[f"{case}/per_image"])
        pictures = [{"caption": r[-1]["caption"], "boxes": r[-1]["boxes"]} for r in rows if r[-1] is not None]
        out.append(([r[:-1] for r in rows], pictures))
    return out


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every case logged by 2 gloo processes (``root / "two"``) and by one process (``root / "one"``)."""
    root = tmp_path_factory.mktemp("wandb_distributed")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CUDA_VISIBLE_DEVICES", "")  # gloo workers stay off any GPU
        mp.setenv("WANDB_DATA_DIR", str(root / "data"))  # the artifacts' staged copies
        spawn_gloo(_worker, str(root / "two"))
    one_process = {
        case: (dataset, with_ids, [[dataset]] * len(evaluations))
        for case, (dataset, with_ids, evaluations) in CASES.items()
    }
    with contextlib.redirect_stdout(io.StringIO()), pytest.MonkeyPatch.context() as mp:
        mp.setenv("WANDB_DATA_DIR", str(root / "data"))
        _log_cases(root / "one", one_process)
    return root


@pytest.fixture(scope="module")
def runs(root: Path) -> dict[str, tuple[Any, Any]]:
    """Per case: (what the 2 gloo processes logged, what one process logged): sample images, worst pictures."""
    return {
        case: (
            (_logged_images(root / "two", case), _worst_pictures(root / "two", case)),
            (_logged_images(root / "one", case), _worst_pictures(root / "one", case)),
        )
        for case in CASES
    }


@pytest.fixture(scope="module")
def artifacts(root: Path) -> tuple[list[Any], list[Any]]:
    """The evaluation artifacts of the 2-process run and of the one-process run (the ``uneven`` case)."""
    two, one = (wr.artifacts(wr.find_run_dir(root / run), "evaluation") for run in ("two", "one"))
    return two, one


def _expected_sample(dataset: list[int], with_ids: bool) -> list[int]:
    """The rule, stated independently: the smallest keys (image_id, else dataset index), increasing."""
    if not with_ids:
        return sorted(dataset)[:NUM_IMAGES]
    _, targets = random_case(21)
    return sorted(targets[i]["image_id"] for i in dataset)[:NUM_IMAGES]


@pytest.mark.parametrize("case", list(CASES))
def test_two_processes_log_the_images_one_process_logs(runs: dict[str, Any], case: str) -> None:
    (two, _), (one, _) = runs[case]
    dataset, with_ids, evaluations = CASES[case]
    expected = [f"image_id {key}" for key in _expected_sample(dataset, with_ids)]
    assert len(two) == len(one) == len(evaluations)
    for got, reference in zip(two, one):
        assert [image["caption"] for image in got] == [image["caption"] for image in reference]
        assert [image["caption"].split(";")[0] for image in got] == expected
        for image, ref in zip(got, reference):
            np.testing.assert_array_equal(image["pixels"], ref["pixels"])
            assert image["boxes"] == ref["boxes"]


@pytest.mark.parametrize("case", list(CASES))
def test_two_processes_picture_the_worst_images_one_process_pictures(runs: dict[str, Any], case: str) -> None:
    (_, two), (_, one) = runs[case]
    assert len(two) == len(one) == len(CASES[case][2])
    for (rows, pictures), (ref_rows, ref_pictures) in zip(two, one):
        if not CASES[case][1]:  # without image_id the metric numbers images by arrival: no process knows which
            assert pictures == [] and ref_pictures
            continue
        assert rows == ref_rows
        assert len(pictures) == NUM_WORST
        assert [p["caption"].split(";")[0] for p in pictures] == [f"image_id {r[0]}" for r in rows[:NUM_WORST]]
        assert pictures == ref_pictures


def test_two_processes_log_the_artifact_one_process_logs(artifacts: tuple[list[Any], list[Any]]) -> None:
    two, one = artifacts
    assert len(two) == len(one) == len(CASES["uneven"][2])
    for got, reference in zip(two, one):
        files, ref_files = wr.artifact_files(got), wr.artifact_files(reference)
        assert set(files) == {"predictions.json", "report.json"}
        predictions = json.loads(files["predictions.json"].read_text())
        assert predictions == json.loads(ref_files["predictions.json"].read_text())
        assert len(predictions) == sum(len(p["scores"]) for p in random_case(21)[0][:12])
        assert json.loads(files["report.json"].read_text()) == json.loads(ref_files["report.json"].read_text())
        assert set(got.aliases) - {"best"} == set(reference.aliases) - {"best"}


def _nccl_worker(local_rank: int, out_dir: str) -> None:
    dataset, with_ids, evaluations = CASES["uneven"]
    _log_cases(Path(out_dir), {"uneven": (dataset, with_ids, [[dataset]] * len(evaluations))})


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_a_nccl_group_of_one_logs_the_images_one_process_logs(runs: dict[str, Any], tmp_path: Path) -> None:
    """The exchange on the GPU (NCCL refuses two ranks on one GPU, so one process)."""
    idist.spawn("nccl", _nccl_worker, args=(str(tmp_path),), nproc_per_node=1, master_port=free_port())
    got, (_, (one, _)) = _logged_images(tmp_path, "uneven"), runs["uneven"]
    assert [[image["caption"] for image in row] for row in got] == [[image["caption"] for image in row] for row in one]
    for row, reference in zip(got, one):
        for image, ref in zip(row, reference):
            np.testing.assert_array_equal(image["pixels"], ref["pixels"])
            assert image["boxes"] == ref["boxes"]


@pytest.mark.parametrize("case", list(CASES))
def test_each_logged_image_is_its_own(runs: dict[str, Any], case: str) -> None:
    """The pixels and ground truth boxes under each caption are those of that image."""
    (two, _), _ = runs[case]
    dataset, with_ids, _ = CASES[case]
    _, targets = random_case(21, with_image_ids=with_ids)
    index_of = {(targets[i]["image_id"] if with_ids else i): i for i in dataset}
    for image in two[-1]:
        index = index_of[int(image["caption"].split(";")[0].removeprefix("image_id "))]
        np.testing.assert_array_equal(image["pixels"], _image(index).permute(1, 2, 0).numpy())
        assert len(image["boxes"]["ground_truth"]["box_data"]) == len(targets[index]["labels"])


def _wrong_step_worker(local_rank: int, out_dir: str) -> None:
    """Evaluate a shard with a step transform that returns a float; write what each process raised."""
    rank = idist.get_rank()
    logger = None
    if rank == 0:
        logger = WandBLogger(project="ignite-det-tests", mode="offline", dir=out_dir, settings={"silent": True})
    evaluator = Engine(lambda engine, batch: (batch[1], batch[2]))
    metric = CocoMetric()
    metric.attach(evaluator, "coco")
    attach_wandb_logging(
        logger, evaluator, num_images=2, global_step_transform=lambda engine, event: 1.5, artifact_metric=metric
    )
    predictions, targets = random_case(21)
    mine = range(rank, 8, 2)
    try:
        evaluator.run([([_image(i)], [predictions[i]], [targets[i]]) for i in mine])
    except TypeError as error:
        Path(out_dir, f"rank{rank}.txt").write_text(str(error))
    finally:
        if logger is not None:
            logger.close()


def test_a_wrong_step_raises_on_every_process_instead_of_leaving_one_waiting(tmp_path: Path) -> None:
    """Every process checks the step. When only the logging one raised (before this was fixed), the others
    waited for it in the exchange of images and the gather of predictions: forever while it lived on, and
    once it exited they failed with gloo's "Connection closed by peer", which does not name the cause."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CUDA_VISIBLE_DEVICES", "")
        mp.setenv("WANDB_DATA_DIR", str(tmp_path / "data"))
        idist.spawn(
            "gloo",
            _wrong_step_worker,
            args=(str(tmp_path),),
            nproc_per_node=2,
            master_port=free_port(),
            timeout=datetime.timedelta(seconds=60),  # a process left waiting fails the test rather than hangs it
        )
    for rank in (0, 1):
        assert "global_step must be int, got <class 'float'>" in (tmp_path / f"rank{rank}.txt").read_text()
