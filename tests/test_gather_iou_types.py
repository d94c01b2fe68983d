"""Masks and keypoints under a real 2-process gloo group: every rank gets the single-process numbers.

The masks travel as RLE bytes (one uint8 tensor per side); shards are uneven, one is padded with a
repeat as ``DistributedSampler`` pads, and one rank may have no image at all. torchmetrics' segm
lost masks (#1144, #1743) and then raised on mismatched ranks (#1777) exactly here.
"""

from __future__ import annotations

import itertools
import pickle
from pathlib import Path

import ignite.distributed as idist
import numpy as np
import pytest

from ignite_det import CocoMetric
from tests.harness import spawn_gloo
from tests.type_cases import keypoint_samples, random_keypoint_case, random_mask_case, run_typed_cocoeval

# 10 images: uneven shards; DistributedSampler(shuffle=False) padding rank 1 with image 0; an idle rank.
SHARDS = {
    "uneven": [list(range(0, 7)), list(range(7, 10))],
    "padded_duplicate": [list(range(0, 10, 2)), list(range(1, 10, 2)) + [0]],
    "rank_without_images": [list(range(10)), []],
}


pytestmark = pytest.mark.usefixtures("gloo_on_the_cpu")


def _samples(iou_type: str) -> list[tuple[dict, dict]]:
    if iou_type == "segm":
        _, _, predictions, targets = random_mask_case(7)
        return list(zip(predictions, targets))
    return keypoint_samples(*random_keypoint_case(7, num_images=10))


ONE_OF_EACH_KIND = ("native", "pycocotools")  # the native backend matches on each rank; COCOeval on rank 0


def _metric(iou_type: str, backend: str = "native") -> CocoMetric:
    return CocoMetric(iou_type=iou_type, box_format="xywh", backend=backend)


def _worker(local_rank: int, out_dir: str) -> None:
    found = {}
    for iou_type in ("segm", "keypoints"):
        samples = _samples(iou_type)
        for (case, shards), backend in itertools.product(SHARDS.items(), ONE_OF_EACH_KIND):
            metric = _metric(iou_type, backend)
            mine = shards[idist.get_rank()]
            for start in range(0, len(mine), 3):
                batch = [samples[i] for i in mine[start : start + 3]]
                metric.update(([p for p, _ in batch], [t for _, t in batch]))
            result = metric.compute()
            found[iou_type, case, backend] = {
                "stats": dict(result),
                "arrays": (result.precision, result.recall, result.scores),
                "confusion": result.confusion_matrix,
                "num_images": result.num_images,
            }
    Path(out_dir, f"rank{idist.get_rank()}.pkl").write_bytes(pickle.dumps(found))


def test_two_gloo_processes_equal_one_for_masks_and_keypoints(tmp_path):
    spawn_gloo(_worker, str(tmp_path))
    ranks = [pickle.loads((tmp_path / f"rank{r}.pkl").read_bytes()) for r in range(2)]
    for iou_type in ("segm", "keypoints"):
        samples = _samples(iou_type)
        single = _metric(iou_type)
        single.update(([p for p, _ in samples], [t for _, t in samples]))
        expected = single.compute()
        if iou_type == "segm":
            reference = run_typed_cocoeval(*random_mask_case(7)[:2], "segm")
        else:
            reference = run_typed_cocoeval(*random_keypoint_case(7, num_images=10), "keypoints")
        assert list(expected.values()) == reference.stats.tolist()
        for case, backend in itertools.product(SHARDS, ONE_OF_EACH_KIND):
            for rank in ranks:
                got = rank[iou_type, case, backend]
                assert got["stats"] == dict(expected), (iou_type, case, backend)
                for ours, name in zip(got["arrays"], ("precision", "recall", "scores")):
                    np.testing.assert_array_equal(ours, reference.eval[name])
                np.testing.assert_array_equal(got["confusion"], expected.confusion_matrix)
                assert got["num_images"] == 10
