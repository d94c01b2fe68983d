"""Time ``ignite-det evaluate`` against plain ``COCO`` + ``loadRes`` + ``COCOeval`` on COCO-val-sized files.

The workload (benchmarks/workload.py: 5,000 images, ~36,800 ground truths over 80 classes, 100
detections per image) is written once as a COCO instances file and a COCO results list to a temporary
directory. Each measurement is the wall time of a fresh process, so both sides pay interpreter start,
imports and JSON parsing:

- ``cli``: ``python -m ignite_det evaluate GT RESULTS --backend B --output report.json``;
- ``recipe``: ``COCO(GT)``, ``loadRes(RESULTS)``, ``COCOeval`` evaluate/accumulate/summarize with backend B
  (faster-coco-eval's ``COCO`` and ``COCOeval_faster`` for ``faster_coco_eval``).

Runs are interleaved, so drift on a shared machine hits both alike; medians over ``--repeats``. The
last column is the largest difference of the 12 numbers between the two (0 expected).

    python benchmarks/bench_cli.py --repeats 3
    python benchmarks/bench_cli.py --backends faster_coco_eval
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
BACKENDS = ("pycocotools", "faster_coco_eval")


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
    for image in workload.coco_gt["images"]:
        image["file_name"] = f"{image['id']:012d}.jpg"
    gt_file, results_file = directory / "gt.json", directory / "results.json"
    gt_file.write_text(json.dumps(workload.coco_gt))
    results_file.write_text(json.dumps(workload.coco_results))
    return gt_file, results_file


def _timed(command: list[str]) -> tuple[float, str]:
    start = time.perf_counter()
    out = subprocess.run(command, check=True, capture_output=True, text=True)
    return time.perf_counter() - start, out.stdout


def _stats_diff(recipe_stdout: str, report: Path) -> float:
    """Largest difference of the 12 numbers between the recipe's output and the command's report."""
    reference = json.loads(recipe_stdout.strip().splitlines()[-1])
    mine = json.loads(report.read_text())
    names = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")
    return max(abs(mine[name] - value) for name, value in zip(names, reference))


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
        report = Path(tmp) / "report.json"
        rows = []
        for backend in args.backends:
            cli = [
                sys.executable,
                "-m",
                "ignite_det",
                "evaluate",
                str(gt_file),
                str(results_file),
                "--backend",
                backend,
                "--output",
                str(report),
            ]
            plain = [sys.executable, __file__, "--recipe", backend, str(gt_file), str(results_file)]
            times: dict[str, list[float]] = {"cli": [], "recipe": []}
            for repeat in range(args.repeats):
                seconds, recipe_stdout = _timed(plain)
                times["recipe"].append(seconds)
                times["cli"].append(_timed(cli)[0])
                print(
                    f"{backend} repeat {repeat + 1}: recipe {times['recipe'][-1]:.2f} s, cli {times['cli'][-1]:.2f} s",
                    file=sys.stderr,
                )
            diff = _stats_diff(recipe_stdout, report)
            rows.append((backend, statistics.median(times["recipe"]), statistics.median(times["cli"]), diff))
    print(f"{'backend':<18} {'recipe s':>9} {'cli s':>9} {'cli/recipe':>11} {'max |diff|':>11}")
    for backend, plain_s, cli_s, diff in rows:
        print(f"{backend:<18} {plain_s:>9.2f} {cli_s:>9.2f} {cli_s / plain_s:>11.2f} {diff:>11.2e}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
