"""Time ``ignite-det evaluate`` against plain ``COCO`` + ``loadRes`` + ``COCOeval`` on COCO-val-sized files.

The workload (benchmarks/workload.py: 5,000 images, ~36,800 ground truths over 80 classes, 100
detections per image) is written once as a COCO instances file and a COCO results list to a temporary
directory. Each measurement is the wall time of a fresh process, so both sides pay interpreter start,
imports and JSON parsing:

- ``cli``: ``python -m ignite_det evaluate GT RESULTS --backend B --output report.json`` for each
  backend B of ``--backends`` (native, pycocotools, faster_coco_eval);
- ``recipe``: ``COCO(GT)``, ``loadRes(RESULTS)``, ``COCOeval`` evaluate/accumulate/summarize with
  pycocotools, and with faster-coco-eval (its ``COCO`` and ``COCOeval_faster``).

Runs are interleaved, so drift on a shared machine hits all alike; medians over ``--repeats``. Each
command line run is compared with the recipe of its own backend (the native one with both), and the
last column is the largest difference of its 12 numbers from plain pycocotools' (0 expected).

    python benchmarks/bench_cli.py --repeats 3
    python benchmarks/bench_cli.py --backends native
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
BACKENDS = ("native", "pycocotools", "faster_coco_eval")
RECIPES = ("pycocotools", "faster_coco_eval")


def recipe(backend: str, gt_file: str, results_file: str) -> None:
    """The plain recipe, as a user would write it; prints the 12 numbers as JSON."""
    if backend == "pycocotools":
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval
    else:
        from faster_coco_eval import COCO
        from faster_coco_eval import COCOeval_faster as COCOeval
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(gt_file)
        coco_eval = COCOeval(gt, gt.loadRes(results_file), "bbox")
        coco_eval.evaluate()
        coco_eval.accumulate()
        coco_eval.summarize()
    print(json.dumps([float(v) for v in coco_eval.stats[:12]]))


def write_files(directory: Path) -> tuple[Path, Path]:
    sys.path.insert(0, str(HERE))
    from workload import make_workload

    workload = make_workload()
    coco_gt = workload.coco_gt
    for image in coco_gt["images"]:
        image["file_name"] = f"{image['id']:012d}.jpg"
    gt_file, results_file = directory / "gt.json", directory / "results.json"
    gt_file.write_text(json.dumps(coco_gt))
    results_file.write_text(json.dumps(workload.coco_results))
    return gt_file, results_file


def _timed(command: list[str]) -> tuple[float, str]:
    start = time.perf_counter()
    out = subprocess.run(command, check=True, capture_output=True, text=True)
    return time.perf_counter() - start, out.stdout


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--backends", nargs="+", default=list(BACKENDS), choices=BACKENDS)
    parser.add_argument("--recipe", nargs=3, metavar=("BACKEND", "GT", "RESULTS"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.recipe:
        recipe(*args.recipe)
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        gt_file, results_file = write_files(Path(tmp))
        sizes = f"{gt_file.stat().st_size / 2**20:.0f} MiB + {results_file.stat().st_size / 2**20:.0f} MiB"
        print(f"files: {sizes}", file=sys.stderr)
        recipes = [b for b in RECIPES if b in args.backends or "native" in args.backends]
        times: dict[str, list[float]] = {f"recipe:{b}": [] for b in recipes} | {f"cli:{b}": [] for b in args.backends}
        stats: dict[str, list[float]] = {}
        for repeat in range(args.repeats):  # interleaved, so drift on a shared machine hits every command alike
            for name in times:
                kind, backend = name.split(":")
                report = Path(tmp) / f"{backend}.json"
                seconds, stdout = _timed(_command(kind, backend, gt_file, results_file, report))
                times[name].append(seconds)
                stats[name] = json.loads(stdout.strip().splitlines()[-1]) if kind == "recipe" else _report(report)
                print(f"repeat {repeat + 1}: {name} {seconds:.2f} s", file=sys.stderr)
    reference = stats.get("recipe:pycocotools")
    median = {name: statistics.median(values) for name, values in times.items()}
    print(f"{'command':<28} {'s':>7} {'x recipe pycocotools':>21} {'x recipe faster-coco-eval':>26} {'max |diff|':>11}")
    for name in times:
        ratios = [median[name] / median[r] if r in median else float("nan") for r in _RECIPE_NAMES]
        diff = max(abs(a - b) for a, b in zip(stats[name], reference)) if reference else float("nan")
        print(f"{name:<28} {median[name]:>7.2f} {ratios[0]:>21.2f} {ratios[1]:>26.2f} {diff:>11.2e}")
    return 0


_RECIPE_NAMES = ("recipe:pycocotools", "recipe:faster_coco_eval")


def _command(kind: str, backend: str, gt_file: Path, results_file: Path, report: Path) -> list[str]:
    if kind == "recipe":
        return [sys.executable, __file__, "--recipe", backend, str(gt_file), str(results_file)]
    evaluate = ["evaluate", str(gt_file), str(results_file), "--backend", backend, "--output", str(report)]
    return [sys.executable, "-m", "ignite_det", *evaluate]


def _report(report: Path) -> list[float]:
    """The 12 numbers of the command's JSON report."""
    mine = json.loads(report.read_text())
    names = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")
    return [mine[name] for name in names]


if __name__ == "__main__":
    raise SystemExit(main())
