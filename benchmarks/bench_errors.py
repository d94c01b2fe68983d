"""What ``CocoMetric(error_analysis=True)`` adds to ``compute()``, and how that compares with tidecv.

On one deterministic workload (benchmarks/workload.py, ``coco`` by default: 5,000 images, 500,000
detections), in one process and one run: the native backend's ``compute()`` without and with error analysis
(two metrics fed the same batches), and tidecv 1.0.1's ``TIDE().evaluate()`` on the same data as COCO dicts
(its own loader from dicts, tests/tide_reference.py ``run_tidecv``; the dicts' building is not timed).
Prints the seconds, the time added and its ratio to tidecv's time, and both analyses' AP.

    python benchmarks/bench_errors.py                      # COCO-val-sized, tidecv included (minutes)
    python benchmarks/bench_errors.py --workload small     # 300 images
    python benchmarks/bench_errors.py --no-tidecv          # only the time added
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]


def _compute_time(workload, **metric_args) -> tuple[float, object]:
    from ignite_det import CocoMetric

    metric = CocoMetric(**metric_args)
    for i in range(0, len(workload.targets), 16):
        metric.update((workload.predictions[i : i + 16], workload.targets[i : i + 16]))
    start = time.perf_counter()
    result = metric.compute()
    return time.perf_counter() - start, result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workload", default="coco", choices=("coco", "lvis", "small"))
    parser.add_argument("--no-tidecv", action="store_true", help="skip tidecv (it takes minutes on 500k detections)")
    parser.add_argument("--save", type=Path, help="write the figures as JSON")
    args = parser.parse_args(argv)

    from workload import make_workload

    workload = make_workload(args.workload)
    plain, _ = _compute_time(workload)
    with_errors, result = _compute_time(workload, error_analysis=True)
    errors = result.errors  # type: ignore[attr-defined]
    figures = {
        "workload": args.workload,
        "detections": sum(len(p["scores"]) for p in workload.predictions),
        "compute_s": plain,
        "compute_with_errors_s": with_errors,
        "added_s": with_errors - plain,
        "AP50": errors.ap,
        "counts": errors.counts,
    }
    print(f"compute(): {plain:.3f} s, with error_analysis=True: {with_errors:.3f} s, added {with_errors - plain:.3f} s")
    print(errors.text())
    if not args.no_tidecv:
        from tests.tide_reference import run_tidecv

        gt, results = workload.coco_gt, workload.coco_results
        start = time.perf_counter()
        tide = run_tidecv(gt, results)
        figures["tidecv_s"] = time.perf_counter() - start
        figures["tidecv_AP50"] = tide.ap
        figures["added_over_tidecv"] = figures["added_s"] / figures["tidecv_s"]
        figures["with_errors_over_tidecv"] = with_errors / figures["tidecv_s"]
        print(
            f"tidecv: {figures['tidecv_s']:.1f} s (AP50 {tide.ap:.4f}); added / tidecv = "
            f"{figures['added_over_tidecv']:.4f}, whole compute() with errors / tidecv = "
            f"{figures['with_errors_over_tidecv']:.4f}"
        )
    if args.save:
        args.save.write_text(json.dumps(figures, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
