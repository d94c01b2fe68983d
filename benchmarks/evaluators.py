"""The other exact evaluators, each through its documented entry points: its COCO-dicts recipe and its array path.

Every function takes what :mod:`conversions` built from the tensors and returns COCOeval's 12 numbers.
Each package is imported only when its method runs, so a missing one fails only its own methods
(:func:`missing` names them first, for a clear skip line).

- pycocotools, faster-coco-eval: ``COCO()`` from dicts, ``loadRes(list)``, ``COCOeval`` (no array path
  for the ground truth).
- hotcoco 1.3: ``COCO(dict)`` and ``loadRes(list)``; array path ``COCO.from_arrays`` and
  ``loadRes(ndarray)`` (the (N, 7) matrix).
- ultrafast-pycocotools 0.1: ``COCO(dict)`` and ``loadRes(list)``; array path ``loadRes(ndarray)``, which
  it reads straight into Rust (its ``COCO`` stays dict-based on purpose: no array path for the ground truth).
- vernier 0.5: the drop-in ``vernier.COCOeval`` over pycocotools' ``COCO``; array path
  ``CocoDataset.from_arrays`` and ``Evaluator(parity_mode="strict").evaluate(dataset, matrix)``.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io

import numpy as np
from conversions import Columns, categories

PACKAGES = {
    "pycocotools": "pycocotools",
    "faster_coco_eval": "faster_coco_eval",
    "hotcoco": "hotcoco",
    "ultrafast": "ultrafast_pycocotools",
    "vernier": "vernier",
}
ARRAY_PATHS = ("hotcoco", "ultrafast", "vernier")


def missing(tool: str) -> str | None:
    """The pip command that installs ``tool``'s package when it is not installed, else ``None``."""
    if importlib.util.find_spec(PACKAGES[tool]) is not None:
        return None
    return f"pip install {PACKAGES[tool].replace('_', '-')}"


def recipe(tool: str, coco_gt: dict, results: list[dict]) -> list[float]:
    """The usual recipe: a ``COCO`` from the dataset dict, ``loadRes`` of the results list, ``COCOeval``."""
    with contextlib.redirect_stdout(io.StringIO()):
        if tool == "vernier":
            return _vernier_drop_in(coco_gt, results)
        coco, cocoeval = _recipe_classes(tool)
        if tool in ("pycocotools", "faster_coco_eval"):  # their COCO() takes a file name, not a dict
            gt = coco()
            gt.dataset = coco_gt
            gt.createIndex()
        else:
            gt = coco(coco_gt)
        return _run_cocoeval(cocoeval(gt, gt.loadRes(results), "bbox"))


def _recipe_classes(tool: str):
    if tool == "pycocotools":
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval
    elif tool == "faster_coco_eval":
        from faster_coco_eval import COCO
        from faster_coco_eval import COCOeval_faster as COCOeval
    elif tool == "hotcoco":
        from hotcoco import COCO, COCOeval
    else:
        from ultrafast_pycocotools import COCO, COCOeval
    return COCO, COCOeval


def _run_cocoeval(coco_eval) -> list[float]:
    coco_eval.evaluate()
    coco_eval.accumulate()
    coco_eval.summarize()
    return [float(v) for v in coco_eval.stats[:12]]


def _vernier_drop_in(coco_gt: dict, results: list[dict]) -> list[float]:
    """vernier's quickstart: pycocotools' ``COCO`` and ``loadRes``, ``vernier.COCOeval`` (strict by default)."""
    from pycocotools.coco import COCO
    from vernier import COCOeval

    gt = COCO()
    gt.dataset = coco_gt
    gt.createIndex()
    return _run_cocoeval(COCOeval(gt, gt.loadRes(results), "bbox"))


def arrays(tool: str, columns: Columns, coco_gt: dict | None = None) -> list[float]:
    """The array path from numpy columns; ultrafast-pycocotools also takes the ground truth's ``coco_gt`` dict."""
    with contextlib.redirect_stdout(io.StringIO()):
        if tool == "hotcoco":
            return _hotcoco_arrays(columns)
        if tool == "ultrafast":
            return _ultrafast_arrays(columns, coco_gt)
        return _vernier_arrays(columns)


def _hotcoco_arrays(columns: Columns) -> list[float]:
    from hotcoco import COCO, COCOeval

    gt_columns = columns.ground_truth()
    gt = COCO.from_arrays(
        columns.images(),
        categories(columns.num_classes),
        gt_columns["image_id"],
        gt_columns["category_id"],
        gt_columns["bbox"],
        ids=gt_columns["id"],
        area=gt_columns["area"],
        iscrowd=gt_columns["iscrowd"],
    )
    return _run_cocoeval(COCOeval(gt, gt.loadRes(columns.detections()), "bbox"))


def _ultrafast_arrays(columns: Columns, coco_gt: dict) -> list[float]:
    from ultrafast_pycocotools import COCO, COCOeval

    gt = COCO(coco_gt, verbose=False)
    return _run_cocoeval(COCOeval(gt, gt.loadRes(columns.detections()), "bbox"))


def _vernier_arrays(columns: Columns) -> list[float]:
    from vernier.instance import CocoDataset, Evaluator

    image_ids = columns.image_ids()
    images = {
        "id": image_ids,
        "width": np.full(len(image_ids), columns.width, np.int64),
        "height": np.full(len(image_ids), columns.height, np.int64),
    }
    dataset = CocoDataset.from_arrays(images, columns.ground_truth(), categories(columns.num_classes))
    summary = Evaluator(parity_mode="strict").evaluate(dataset, columns.detections())
    return [float(v) for v in summary.stats[:12]]
