"""Time of ``error_analysis="tidecv"`` (:func:`ignite_det.error_analysis.tidecv.tidecv_errors`) against tidecv
itself, on the same deterministic workload (benchmarks/workload.py), in one process, one after the other.

- ignite-det: the metric's record built as ``update()`` builds it (batches of 16 images through
  ``normalize_batch`` into a ``DetectionStore``), then ``tidecv_errors`` on it: what ``compute()`` would add.
- tidecv 1.0.1: its ``Data`` filled from the same boxes (as its COCO loaders fill it; not timed), then
  ``TIDE().evaluate(...)``, ``get_main_errors()`` and ``get_special_errors()`` (timed).

Both sets of numbers are compared (largest difference of AP and the eight dAP, as fractions, and the counts).
Medians over ``--repeats``.

    PYTHONPATH=. python benchmarks/bench_tidecv.py          # COCO-val-sized: 5,000 images, 500,000 detections
    PYTHONPATH=. python benchmarks/bench_tidecv.py --workload small --repeats 3
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
from conversions import to_xywh
from tidecv import TIDE
from tidecv.data import Data
from workload import SIZES, make_workload

from ignite_det.error_analysis import MAIN_ERRORS, SPECIAL_ERRORS
from ignite_det.error_analysis.tidecv import tidecv_errors
from ignite_det.inputs import normalize_batch
from ignite_det.params import EvalParams
from ignite_det.store import DetectionStore
from ignite_det.table import Detections


def record(predictions: list, targets: list) -> Detections:
    store = DetectionStore()
    for start in range(0, len(targets), 16):
        store.append(normalize_batch((predictions[start : start + 16], targets[start : start + 16]), "xyxy"))
    return store.collect()


def tide_data(predictions: list, targets: list) -> tuple[Data, Data]:
    """tidecv's ground truth and predictions, filled as ``tidecv.datasets.COCO`` / ``COCOResult`` fill them."""
    gt, preds = Data("gt", max_dets=100), Data("preds")
    for target in targets:
        gt.add_image(target["image_id"], str(target["image_id"]))
    for target in targets:
        rows = zip(to_xywh(target["boxes"].numpy()).tolist(), target["labels"].tolist(), target["iscrowd"].tolist())
        for box, label, crowd in rows:
            (gt.add_ignore_region if crowd else gt.add_ground_truth)(target["image_id"], label, box, None)
    for prediction, target in zip(predictions, targets):
        xywh = to_xywh(prediction["boxes"].double().numpy()).tolist()
        rows = zip(xywh, prediction["labels"].tolist(), prediction["scores"].double().tolist())
        for box, label, score in rows:
            preds.add_detection(target["image_id"], label, score, box, None)
    return gt, preds


def run_tide(gt: Data, preds: Data) -> tuple[float, dict, dict, dict]:
    tide = TIDE()
    run = tide.evaluate(gt, preds, mode=TIDE.BOX, name="run")
    main, special = tide.get_main_errors()["run"], tide.get_special_errors()["run"]
    counts = {error.short_name: n for error, n in run.count_errors().items()}
    return run.ap / 100, {k: v / 100 for k, v in main.items()}, {k: v / 100 for k, v in special.items()}, counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workload", choices=sorted(SIZES), default="coco")
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    work = make_workload(args.workload)
    d = record(work.predictions, work.targets)
    params = EvalParams.create()
    categories = np.arange(1, work.num_classes + 1)
    ours, theirs = [], []
    for _ in range(args.repeats):
        start = time.perf_counter()
        errors = tidecv_errors(d, categories, {}, params, 0.5, 0.1)
        ours.append(time.perf_counter() - start)
        gt, preds = tide_data(work.predictions, work.targets)
        start = time.perf_counter()
        ap, main_errors, special, counts = run_tide(gt, preds)
        theirs.append(time.perf_counter() - start)
    ours_s, theirs_s = statistics.median(ours), statistics.median(theirs)
    gaps = [abs(errors.ap - ap)] + [abs(errors.main[k] - main_errors[k]) for k in MAIN_ERRORS]
    gaps += [abs(errors.special[k] - special[k]) for k in SPECIAL_ERRORS]
    print(f"workload {args.workload}: {d.num_images} images, {len(d.det_scores)} detections, {len(d.gt_labels)} gt")
    print(f"tidecv_errors  {ours_s:8.3f} s")
    print(f"tidecv 1.0.1   {theirs_s:8.3f} s")
    print(f"ratio          {ours_s / theirs_s:8.4f} x tidecv")
    print(f"largest difference {max(gaps):.3g}; counts equal: {errors.counts == counts}")
    print(f"AP {errors.ap:.6f}", " ".join(f"{k} {errors.main[k]:.6f}" for k in MAIN_ERRORS))


if __name__ == "__main__":
    main()
