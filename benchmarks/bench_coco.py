"""Time and memory of a COCO-val-sized evaluation: ignite-det against the other exact evaluators.

Each method runs in a fresh process on the same deterministic workload (benchmarks/workload.py:
``--workload coco``, 5,000 images, ~36,800 ground truths over 80 classes, 100 detections per image;
``--workload lvis``, 10,000 images, ~123,000 ground truths over 1,203 classes, 300 detections per
image, evaluated with COCO's protocol; ``--workload small``, 300 images, to check the numbers quickly).
Every method starts from the same per-image torch tensors, fed in batches of 16 images, and its
update time is what it does per batch (conversions.py):

- ``ignite_det:<backend>``: ``CocoMetric.update()``, then ``compute()``;
- ``recipe:<tool>``: the COCO dicts (``COCO`` dataset and ``loadRes`` list) built batch by batch,
  then the tool's usual recipe (evaluators.py) for pycocotools, faster-coco-eval, hotcoco,
  ultrafast-pycocotools and vernier;
- ``arrays:<tool>``: numpy columns built a whole batch at a time, then the tool's array path:
  hotcoco's ``COCO.from_arrays`` and ``loadRes(ndarray)``, ultrafast-pycocotools' ``loadRes(ndarray)``
  (its ground truth stays dicts), vernier's ``CocoDataset.from_arrays`` and detection matrix;
- ``torchmetrics:<backend>``: ``MeanAveragePrecision.update()``, then ``compute()``.

A method whose package is not installed is skipped with a line naming the pip command.
Reported per method: update time and per image, compute time (what a training loop waits for after
the last update), total, peak extra memory (resident set above the process's size before the run)
and the largest difference of the 12 numbers from the pycocotools recipe (else faster-coco-eval's).
Medians over ``--repeats`` runs. Ratios, all to medians of the same run: ``x recipe`` to the plain
recipe of the same tool (faster-coco-eval's for the native backend); total time to the plain
pycocotools and faster-coco-eval recipes; memory to faster-coco-eval's; total, compute time and
memory to hotcoco's array path.

``--processes 2`` also runs ignite-det's native backend and the hotcoco and vernier array paths in
2 gloo processes (``ignite_det:native@2``, ``arrays:hotcoco@2``), each updating with every other
image as a ``DistributedSampler`` deals them (the array paths: rank 0 gathers the columns and
evaluates); times are from a common start, memory is the sum of both processes.

    python benchmarks/bench_coco.py --repeats 3
    python benchmarks/bench_coco.py --methods recipe:faster_coco_eval arrays:hotcoco ignite_det:native --processes 2
    python benchmarks/bench_coco.py --workload lvis --methods recipe:faster_coco_eval arrays:hotcoco ignite_det:native
    python benchmarks/bench_coco.py --workload small --repeats 1 --save runs.json
    python benchmarks/bench_coco.py --torchmetrics-python .venv-torchvision/bin/python

torchmetrics' MeanAveragePrecision needs torchvision, which installs only beside another torch build
than the one pinned here (see examples/README.md); ``--torchmetrics-python`` runs those methods with
that interpreter (which must have torchmetrics, pycocotools and faster-coco-eval installed).
The other evaluators are in the ``bench`` extra: ``pip install -e .[bench]``.
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
    "recipe:hotcoco",
    "arrays:hotcoco",
    "recipe:ultrafast",
    "arrays:ultrafast",
    "recipe:vernier",
    "arrays:vernier",
)
DISTRIBUTED = ("ignite_det:native", "arrays:hotcoco", "arrays:vernier")
NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")


def _rss_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field):
            return int(line.split()[1])
    return 0


def _reset_peak() -> None:
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM (Linux >= 4.0)


def _run_fed(workload, kind: str, tool: str) -> tuple[float, float, list[float]]:
    """A recipe (COCO dicts) or an array path (numpy columns), fed batch by batch from the tensors.

    The conversion is its update: it is what a training loop pays per batch before the evaluator runs.
    """
    from conversions import CocoDicts, Columns
    from evaluators import arrays, recipe
    from workload import HEIGHT, WIDTH

    dicts = CocoDicts(workload.num_classes, (WIDTH, HEIGHT))
    columns = Columns(workload.num_classes, (WIDTH, HEIGHT))
    start = time.perf_counter()
    for predictions, targets in _batches(workload):
        if kind == "recipe":
            dicts.add(predictions, targets)
        elif tool == "ultrafast":  # its COCO takes the ground truth as dicts only
            dicts.add_targets(targets)
            columns.add_predictions(predictions, targets)
        else:
            columns.add(predictions, targets)
    updated = time.perf_counter()
    if kind == "recipe":
        stats = recipe(tool, dicts.dataset(), dicts.results)
    else:
        stats = arrays(tool, columns, dicts.dataset())
    return updated - start, time.perf_counter() - updated, stats


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


def _rank_process(local_rank: int, workload_name: str, kind: str, backend: str, out_dir: str) -> None:
    """One process of a distributed run: its share of the updates, then compute(), timed from a common start."""
    import ignite.distributed as idist

    sys.path.insert(0, str(HERE))
    from workload import make_workload

    workload = make_workload(workload_name)
    rank, world_size = idist.get_rank(), idist.get_world_size()
    feed, finish = _native_rank(backend) if kind == "ignite_det" else _arrays_rank(backend, workload.num_classes)
    before = _rss_kib("VmRSS")
    _reset_peak()
    idist.barrier()
    start = time.time()
    for predictions, targets in _batches(workload, rank=rank, world_size=world_size):
        feed(predictions, targets)
    updated = time.time()
    stats = finish()
    done = time.time()
    record = {
        "start": start,
        "updated": updated,
        "done": done,
        "peak_mib": (_rss_kib("VmHWM") - before) / 1024,
        "stats": stats,
    }
    Path(out_dir, f"rank{rank}.json").write_text(json.dumps(record))


def _native_rank(backend: str):
    """``CocoMetric`` on one rank: ``compute()`` gathers and gives every rank the result."""
    from ignite_det import CocoMetric

    metric = CocoMetric(backend=backend)

    def finish() -> list[float]:
        result = metric.compute()
        return [result[name] for name in NAMES]

    return lambda predictions, targets: metric.update((predictions, targets)), finish


def _arrays_rank(tool: str, num_classes: int):
    """An array path on one rank, as torchvision's reference scripts distribute COCOeval: each rank converts
    its images, rank 0 gathers the columns (``gather_object``), evaluates and broadcasts the 12 numbers."""
    import torch.distributed as dist
    from conversions import Columns
    from evaluators import arrays
    from workload import HEIGHT, WIDTH

    columns = Columns(num_classes, (WIDTH, HEIGHT))

    def finish() -> list[float]:
        parts = [None] * dist.get_world_size() if dist.get_rank() == 0 else None
        dist.gather_object(columns, parts, dst=0)
        stats = [arrays(tool, Columns.merge(parts)) if parts else None]
        dist.broadcast_object_list(stats, src=0)
        return stats[0]

    return columns.add, finish


def _run_distributed(workload_name: str, kind: str, backend: str, processes: int) -> dict:
    import tempfile

    import ignite.distributed as idist

    with tempfile.TemporaryDirectory() as out_dir:
        idist.spawn("gloo", _rank_process, args=(workload_name, kind, backend, out_dir), nproc_per_node=processes)
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
    from workload import SIZES, make_workload

    kind, backend = method.split(":")
    backend, _, processes = backend.partition("@")
    if processes:
        out = _run_distributed(workload_name, kind, backend, int(processes))
        print(json.dumps({"method": method, "images": SIZES[workload_name][0], **out}))
        return
    workload = make_workload(workload_name)  # every method starts from the same per-image tensors
    before = _rss_kib("VmRSS")
    _reset_peak()
    if kind in ("recipe", "arrays"):
        update_s, compute_s, stats = _run_fed(workload, kind, backend)
    else:
        update_s, compute_s, stats = {"ignite_det": _run_ignite_det, "torchmetrics": _run_torchmetrics}[kind](
            workload, backend
        )
    peak = _rss_kib("VmHWM")
    print(
        json.dumps(
            {
                "method": method,
                "images": len(workload.targets),  # so that --table-from needs no --workload
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
    methods = [m for m in args.methods if not _skipped(m)]
    if args.processes > 1:
        methods += [f"{m}@{args.processes}" for m in methods if m in DISTRIBUTED]
    return methods


def _skipped(method: str) -> bool:
    """Print a line and skip a method whose package is not installed (torchmetrics runs are checked there)."""
    kind, tool = method.split(":")
    if kind == "torchmetrics" or tool == "native":
        return False
    sys.path.insert(0, str(HERE))
    from evaluators import missing

    install = missing(tool)
    if install:
        print(f"skipping {method}: its package is not installed ({install})", file=sys.stderr)
    return install is not None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--workload", default="coco", choices=("coco", "lvis", "small"))
    parser.add_argument("--processes", type=int, default=1, help=f"also run {', '.join(DISTRIBUTED)} in N processes")
    parser.add_argument("--torchmetrics-python", default=sys.executable, help="interpreter for torchmetrics runs")
    parser.add_argument("--save", help="also write every run's JSON record to this file")
    parser.add_argument("--table-from", help="print the tables of a file --save wrote, without running anything")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.child, args.workload)
        return 0
    if args.table_from:
        runs = json.loads(Path(args.table_from).read_text())
        _print_table(runs, args.workload)
        _print_markdown(runs, args.workload)
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
    if args.save:
        Path(args.save).write_text(json.dumps(runs, indent=1))
    _print_table(runs, args.workload)
    return 0


# Ratio columns: (header, numerator, reference method, denominator), all from medians of the same run.
RATIOS = (
    ("x pct tot", "total_s", "recipe:pycocotools", "total_s"),
    ("x fce tot", "total_s", "recipe:faster_coco_eval", "total_s"),
    ("x fce mem", "peak_mib", "recipe:faster_coco_eval", "peak_mib"),
    ("x hc tot", "total_s", "arrays:hotcoco", "total_s"),
    ("x hc cmp", "compute_s", "arrays:hotcoco", "compute_s"),
    ("x hc mem", "peak_mib", "arrays:hotcoco", "peak_mib"),
)


def _num_images(runs: dict[str, list[dict]], workload_name: str) -> int:
    """The images of the workload the runs were made on: recorded in each run (files saved before
    2026-12-06's fourth COCO-sized run did not record it: then ``--workload``'s)."""
    sys.path.insert(0, str(HERE))
    from workload import SIZES

    recorded = {r["images"] for results in runs.values() for r in results if "images" in r}
    return recorded.pop() if len(recorded) == 1 else SIZES[workload_name][0]


def _print_table(runs: dict[str, list[dict]], workload_name: str) -> None:
    num_images = _num_images(runs, workload_name)
    med, reference = _medians(runs), _reference_stats(runs)
    columns = ("update s", "us/image", "compute s", "total s", "peak MiB", "max |diff|", "x recipe")
    print(f"{'method':<30} " + " ".join(f"{c:>10}" for c in columns + tuple(r[0] for r in RATIOS)))
    for method, m in med.items():
        diff = max(abs(a - b) for a, b in zip(runs[method][0]["stats"], reference)) if reference else float("nan")
        ratios = [_ratio(m, "total_s", med.get(_recipe_of(method)), "total_s")]
        ratios += [_ratio(m, key, med.get(other), other_key) for _, key, other, other_key in RATIOS]
        print(
            f"{method:<30} {m['update_s']:>10.2f} {m['update_s'] / num_images * 1e6:>10.0f} {m['compute_s']:>10.2f} "
            f"{m['total_s']:>10.2f} {m['peak_mib']:>10.0f} {diff:>10.2e} " + " ".join(f"{r:>10.3f}" for r in ratios)
        )


def _medians(runs: dict[str, list[dict]]) -> dict[str, dict[str, float]]:
    keys = ("update_s", "compute_s", "total_s", "peak_mib")
    return {m: {k: statistics.median(r[k] for r in results) for k in keys} for m, results in runs.items()}


def _reference_stats(runs: dict[str, list[dict]]) -> list[float] | None:
    """The 12 numbers of the pycocotools recipe, else of faster-coco-eval's, that every method is compared with."""
    method = next((m for m in ("recipe:pycocotools", "recipe:faster_coco_eval") if m in runs), None)
    return runs[method][0]["stats"] if method else None


def _print_markdown(runs: dict[str, list[dict]], workload_name: str) -> None:
    """The README's table: times, memory, the largest difference and the ratios to three references."""
    num_images = _num_images(runs, workload_name)
    med, reference = _medians(runs), _reference_stats(runs)
    print(
        "| method | update s | µs/image | compute s | total s | peak extra MiB | max diff | "
        + " | ".join(r[0] for r in RATIOS)
        + " |"
    )
    print("| --- " * (7 + len(RATIOS)) + "|")
    for method, m in med.items():
        diff = max(abs(a - b) for a, b in zip(runs[method][0]["stats"], reference)) if reference else float("nan")
        ratios = [_ratio(m, key, med.get(other), other_key) for _, key, other, other_key in RATIOS]
        cells = [method, f"{m['update_s']:.2f}", f"{m['update_s'] / num_images * 1e6:.0f}"]
        cells += [f"{m['compute_s']:.2f}", f"{m['total_s']:.2f}", f"{m['peak_mib']:.0f}", f"{diff:.2g}"]
        print("| " + " | ".join(cells + [f"{r:.2f}" for r in ratios]) + " |")


def _recipe_of(method: str) -> str:
    """The plain recipe a method is compared with: its own tool's, faster-coco-eval's for the native backend."""
    tool = method.split(":")[1].partition("@")[0]
    return "recipe:" + ("faster_coco_eval" if tool == "native" else tool)


def _ratio(row: dict, key: str, other: dict | None, other_key: str) -> float:
    return row[key] / other[other_key] if other and other[other_key] else float("nan")


if __name__ == "__main__":
    raise SystemExit(main())
