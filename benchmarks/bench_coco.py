"""Time and memory of a COCO-val-sized evaluation: ignite-det against the plain recipes and torchmetrics.

Each method runs in a fresh process on the same deterministic workload (benchmarks/workload.py:
5,000 images, ~36,800 ground truths over 80 classes, 100 detections per image). Reported per
method: update time (all batches), compute time (what a training loop waits for after the last
update), total, peak extra memory (resident set above the process's size before the run) and the
largest difference of the 12 numbers from plain pycocotools. Medians over ``--repeats`` runs.

    python benchmarks/bench_coco.py --repeats 3
    python benchmarks/bench_coco.py --torchmetrics-python .venv-torchvision/bin/python

torchmetrics' MeanAveragePrecision needs torchvision, which installs only beside another torch build
than the one pinned here (see examples/README.md); ``--torchmetrics-python`` runs those methods with
that interpreter (which must have torchmetrics, pycocotools and faster-coco-eval installed).
    python benchmarks/bench_coco.py --methods ignite_det:faster_coco_eval recipe:faster_coco_eval
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
METHODS = (
    "recipe:pycocotools",
    "ignite_det:pycocotools",
    "torchmetrics:pycocotools",
    "recipe:faster_coco_eval",
    "ignite_det:faster_coco_eval",
    "torchmetrics:faster_coco_eval",
)
NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")


def _rss_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field):
            return int(line.split()[1])
    return 0


def _reset_peak() -> None:
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM (Linux >= 4.0)


def _run_recipe(workload, backend: str) -> tuple[float, float, list[float]]:
    if backend == "pycocotools":
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval
    else:
        from faster_coco_eval import COCO
        from faster_coco_eval import COCOeval_faster as COCOeval
    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = workload.coco_gt
        gt.createIndex()
        coco_eval = COCOeval(gt, gt.loadRes(workload.coco_results), "bbox")
        coco_eval.evaluate()
        coco_eval.accumulate()
        coco_eval.summarize()
    return 0.0, time.perf_counter() - start, [float(v) for v in coco_eval.stats[:12]]


def _batches(workload, size: int = 16):
    for i in range(0, len(workload.targets), size):
        yield workload.predictions[i : i + size], workload.targets[i : i + size]


def _run_ignite_det(workload, backend: str) -> tuple[float, float, list[float]]:
    from ignite_det import CocoMetric

    metric = CocoMetric(backend=backend)
    start = time.perf_counter()
    for batch in _batches(workload):
        metric.update(batch)
    updated = time.perf_counter()
    result = metric.compute()
    return updated - start, time.perf_counter() - updated, [result[name] for name in NAMES]


def _run_torchmetrics(workload, backend: str) -> tuple[float, float, list[float]]:
    from torchmetrics.detection import MeanAveragePrecision

    metric = MeanAveragePrecision(backend=backend, iou_type="bbox")
    start = time.perf_counter()
    for predictions, targets in _batches(workload):
        metric.update(predictions, [{k: v for k, v in t.items() if k != "image_id"} for t in targets])
    updated = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        out = metric.compute()
    keys = (
        "map",
        "map_50",
        "map_75",
        "map_small",
        "map_medium",
        "map_large",
        "mar_1",
        "mar_10",
        "mar_100",
        "mar_small",
        "mar_medium",
        "mar_large",
    )
    return updated - start, time.perf_counter() - updated, [float(out[k]) for k in keys]


def child(method: str) -> None:
    """Run one method once and print a JSON line."""
    sys.path.insert(0, str(HERE))
    from workload import make_workload

    kind, backend = method.split(":")
    workload = make_workload()
    before = _rss_kib("VmRSS")
    _reset_peak()
    run = {"recipe": _run_recipe, "ignite_det": _run_ignite_det, "torchmetrics": _run_torchmetrics}[kind]
    update_s, compute_s, stats = run(workload, backend)
    peak = _rss_kib("VmHWM")
    print(
        json.dumps(
            {
                "method": method,
                "update_s": update_s,
                "compute_s": compute_s,
                "total_s": update_s + compute_s,
                "peak_mib": (peak - before) / 1024,
                "stats": stats,
            }
        )
    )


def _python(method: str, args: argparse.Namespace) -> str:
    return args.torchmetrics_python if method.startswith("torchmetrics") else sys.executable


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--torchmetrics-python", default=sys.executable, help="interpreter for torchmetrics runs")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.child)
        return 0
    runs: dict[str, list[dict]] = {m: [] for m in args.methods}
    for repeat in range(args.repeats):
        for method in args.methods:  # interleaved, so drift on a shared machine hits every method alike
            out = subprocess.run([_python(method, args), __file__, "--child", method], capture_output=True, text=True)
            if out.returncode != 0:
                raise SystemExit(f"{method} failed:\n{out.stderr[-3000:]}")
            runs[method].append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(f"repeat {repeat + 1}: {method}: {runs[method][-1]['total_s']:.2f} s", file=sys.stderr)
    reference = runs.get("recipe:pycocotools", [None])[0]
    columns = ("update s", "compute s", "total s", "peak MiB", "max |diff|", "x recipe")
    print(f"{'method':<30} " + " ".join(f"{c:>10}" for c in columns))
    for method, results in runs.items():
        med = {k: statistics.median(r[k] for r in results) for k in ("update_s", "compute_s", "total_s", "peak_mib")}
        diff = max(abs(a - b) for a, b in zip(results[0]["stats"], reference["stats"])) if reference else float("nan")
        recipe = runs.get("recipe:" + method.split(":")[1])
        ratio = med["total_s"] / statistics.median(r["total_s"] for r in recipe) if recipe else float("nan")
        print(
            f"{method:<30} {med['update_s']:>10.2f} {med['compute_s']:>10.2f} {med['total_s']:>10.2f} "
            f"{med['peak_mib']:>10.0f} {diff:>10.2e} {ratio:>10.2f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
