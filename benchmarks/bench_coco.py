"""Time and memory of a COCO-val-sized evaluation: ignite-det against the plain recipes and torchmetrics.

Each method runs in a fresh process on the same deterministic workload (benchmarks/workload.py:
``--workload coco``, 5,000 images, ~36,800 ground truths over 80 classes, 100 detections per image;
``--workload lvis``, 10,000 images, ~123,000 ground truths over 1,203 classes, 300 detections per
image). Reported per method: update time (all batches of 16 images) and per image, compute time
(what a training loop waits for after the last update), total, peak extra memory (resident set
above the process's size before the run) and the largest difference of the 12 numbers from the
first recipe run. Medians over ``--repeats`` runs. Ratios: ``x recipe`` to the plain recipe with the
same backend (faster-coco-eval's for the native backend), then total time, compute time and memory
to the plain faster-coco-eval recipe, all measured in the same run.

``--processes 2`` also runs the native method in 2 gloo processes (``ignite_det:native@2``),
each updating with every other image as a ``DistributedSampler`` deals them; times are from a
common start, memory is the sum of both processes.

    python benchmarks/bench_coco.py --repeats 3
    python benchmarks/bench_coco.py --methods recipe:faster_coco_eval ignite_det:native --processes 2
    python benchmarks/bench_coco.py --workload lvis --methods recipe:faster_coco_eval ignite_det:native
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
    "ignite_det:native",
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


def _run_recipe(dicts: tuple[dict, list[dict]], backend: str) -> tuple[float, float, list[float]]:
    if backend == "pycocotools":
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval
    else:
        from faster_coco_eval import COCO
        from faster_coco_eval import COCOeval_faster as COCOeval
    coco_gt, coco_results = dicts
    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = coco_gt
        gt.createIndex()
        coco_eval = COCOeval(gt, gt.loadRes(coco_results), "bbox")
        coco_eval.evaluate()
        coco_eval.accumulate()
        coco_eval.summarize()
    return 0.0, time.perf_counter() - start, [float(v) for v in coco_eval.stats[:12]]


def _batches(workload, size: int = 16, rank: int = 0, world_size: int = 1):
    """Batches of ``size`` images; with several processes, every ``world_size``-th image from ``rank``."""
    predictions, targets = workload.predictions[rank::world_size], workload.targets[rank::world_size]
    for i in range(0, len(targets), size):
        yield predictions[i : i + size], targets[i : i + size]


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


def _rank_process(local_rank: int, workload_name: str, backend: str, out_dir: str) -> None:
    """One process of a distributed run: its share of the updates, then compute(), timed from a common start."""
    import ignite.distributed as idist

    from ignite_det import CocoMetric

    sys.path.insert(0, str(HERE))
    from workload import make_workload

    workload = make_workload(workload_name)
    rank, world_size = idist.get_rank(), idist.get_world_size()
    metric = CocoMetric(backend=backend)
    before = _rss_kib("VmRSS")
    _reset_peak()
    idist.barrier()
    start = time.time()
    for batch in _batches(workload, rank=rank, world_size=world_size):
        metric.update(batch)
    updated = time.time()
    result = metric.compute()
    done = time.time()
    record = {
        "start": start,
        "updated": updated,
        "done": done,
        "peak_mib": (_rss_kib("VmHWM") - before) / 1024,
        "stats": [result[name] for name in NAMES],
    }
    Path(out_dir, f"rank{rank}.json").write_text(json.dumps(record))


def _run_distributed(workload_name: str, backend: str, processes: int) -> dict:
    import tempfile

    import ignite.distributed as idist

    with tempfile.TemporaryDirectory() as out_dir:
        idist.spawn("gloo", _rank_process, args=(workload_name, backend, out_dir), nproc_per_node=processes)
        ranks = [json.loads(Path(out_dir, f"rank{r}.json").read_text()) for r in range(processes)]
    start = min(r["start"] for r in ranks)
    updated = max(r["updated"] for r in ranks)
    done = max(r["done"] for r in ranks)
    return {
        "update_s": updated - start,
        "compute_s": done - updated,
        "total_s": done - start,
        "peak_mib": sum(r["peak_mib"] for r in ranks),
        "stats": ranks[0]["stats"],
    }


def child(method: str, workload_name: str) -> None:
    """Run one method once and print a JSON line."""
    sys.path.insert(0, str(HERE))
    from workload import make_workload

    kind, backend = method.split(":")
    backend, _, processes = backend.partition("@")
    if processes:
        out = _run_distributed(workload_name, backend, int(processes))
        print(json.dumps({"method": method, **out}))
        return
    workload = make_workload(workload_name)
    inputs = (workload.coco_gt, workload.coco_results) if kind == "recipe" else workload  # what a user has
    before = _rss_kib("VmRSS")
    _reset_peak()
    run = {"recipe": _run_recipe, "ignite_det": _run_ignite_det, "torchmetrics": _run_torchmetrics}[kind]
    update_s, compute_s, stats = run(inputs, backend)
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


def _methods(args: argparse.Namespace) -> list[str]:
    methods = list(args.methods)
    if args.processes > 1:
        methods += [f"{m}@{args.processes}" for m in args.methods if m == "ignite_det:native"]
    return methods


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--workload", default="coco", choices=("coco", "lvis"))
    parser.add_argument("--processes", type=int, default=1, help="also run the native method in N processes")
    parser.add_argument("--torchmetrics-python", default=sys.executable, help="interpreter for torchmetrics runs")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.child, args.workload)
        return 0
    methods = _methods(args)
    runs: dict[str, list[dict]] = {m: [] for m in methods}
    for repeat in range(args.repeats):
        for method in methods:  # interleaved, so drift on a shared machine hits every method alike
            command = [_python(method, args), __file__, "--child", method, "--workload", args.workload]
            out = subprocess.run(command, capture_output=True, text=True)
            if out.returncode != 0:
                raise SystemExit(f"{method} failed:\n{out.stderr[-3000:]}")
            runs[method].append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(f"repeat {repeat + 1}: {method}: {runs[method][-1]['total_s']:.2f} s", file=sys.stderr)
    _print_table(runs, args.workload)
    return 0


def _print_table(runs: dict[str, list[dict]], workload_name: str) -> None:
    sys.path.insert(0, str(HERE))
    from workload import SIZES

    num_images = SIZES[workload_name][0]
    med = {
        m: {k: statistics.median(r[k] for r in results) for k in ("update_s", "compute_s", "total_s", "peak_mib")}
        for m, results in runs.items()
    }
    reference_method = next((m for m in ("recipe:pycocotools", "recipe:faster_coco_eval") if m in runs), None)
    reference = runs[reference_method][0]["stats"] if reference_method else None
    fast = med.get("recipe:faster_coco_eval")
    columns = ("update s", "us/image", "compute s", "total s", "peak MiB", "max |diff|", "x recipe")
    columns += ("x fce tot", "x fce cmp", "x fce mem")
    print(f"{'method':<30} " + " ".join(f"{c:>10}" for c in columns))
    for method, m in med.items():
        diff = max(abs(a - b) for a, b in zip(runs[method][0]["stats"], reference)) if reference else float("nan")
        backend = method.split(":")[1].partition("@")[0]
        recipe = med.get("recipe:" + ("faster_coco_eval" if backend == "native" else backend))
        ratios = [m["total_s"] / recipe["total_s"] if recipe else float("nan")]
        ratios += (
            [m["total_s"] / fast["total_s"], m["compute_s"] / fast["total_s"], m["peak_mib"] / fast["peak_mib"]]
            if fast
            else [float("nan")] * 3
        )
        print(
            f"{method:<30} {m['update_s']:>10.2f} {m['update_s'] / num_images * 1e6:>10.0f} {m['compute_s']:>10.2f} "
            f"{m['total_s']:>10.2f} {m['peak_mib']:>10.0f} {diff:>10.2e} " + " ".join(f"{r:>10.3f}" for r in ratios)
        )


if __name__ == "__main__":
    raise SystemExit(main())
