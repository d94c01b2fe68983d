"""Time and memory of an LVIS-sized evaluation in LVIS's federated protocol: ignite-det against lvis-api and the others.

Each method runs in a fresh process on the same deterministic workload (``workload.make_lvis_workload``:
``--images`` 10,000 by default, ~12.3 ground truths per image over 1,203 classes in LVIS v1's frequency groups,
300 detections per image, so 3 million; per image ``neg_category_ids`` and ``not_exhaustive_category_ids``).
Every method starts from the same per-image torch tensors, fed in batches of 16 images; its update time is what
it does per batch:

- ``ignite_det:native``: ``CocoMetric(protocol="lvis", category_frequencies=...).update()``, then ``compute()``;
- ``lvis_api``: the LVIS dicts (images with their lists, annotations, categories with ``frequency``; the results
  list) built batch by batch, then lvis-api 0.5.3's recipe: ``LVIS`` (its dataset set directly: ``LVIS()`` only
  reads files), ``LVISResults(gt, results)``, ``LVISEval(...).run()``, with ``np.float`` restored for the call
  (lvis-api needs it; numpy >= 1.24 removed it);
- ``hotcoco``: the same dicts, ``hotcoco.COCO(dict)``, ``hotcoco.LVISResults(gt, results)``, ``LVISEval.run()``;
- ``ultrafast``: ``ultrafast_pycocotools.COCO(dict)``, ``loadRes(list)``, ``COCOeval(..., lvis_style=True,
  lvis_protocol="official")``;
- ``faster_coco_eval``: ``COCO`` with the dataset, ``loadRes(list)``, ``COCOeval_faster(..., lvis_style=True)``
  with ``params.maxDets = [300]`` (its LVIS recipe); it caps detections per image *and category*, not per image.

Reported per method: update time, compute time (what a training loop waits for after the last update), total,
peak extra memory (resident set above the process's size before the run, ``VmHWM``), the largest difference of
the 13 numbers from lvis-api's, and ratios to lvis-api's and to the fastest other tool's medians of the same run.

    python benchmarks/bench_lvis.py                       # the LVIS-sized run (lvis-api needs ~15 GiB)
    python benchmarks/bench_lvis.py --images 2000 --save benchmarks/results/lvis-2000.json
    python benchmarks/bench_lvis.py --table-from benchmarks/results/lvis-2000.json
    python benchmarks/bench_lvis.py --images 2000 --detections 400 --methods lvis_api faster_coco_eval
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
METHODS = ("ignite_det:native", "lvis_api", "hotcoco", "ultrafast", "faster_coco_eval")
NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl", "APr", "APc", "APf", "AR@300", "ARs@300", "ARm@300", "ARl@300")
WIDTH, HEIGHT = 640, 480


def _rss_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field):
            return int(line.split()[1])
    return 0


def _reset_peak() -> None:
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM (Linux >= 4.0)


def _batches(workload, size: int = 16):
    for i in range(0, len(workload.targets), size):
        yield workload.predictions[i : i + size], workload.targets[i : i + size]


class LvisDicts:
    """The LVIS dicts of the images fed so far: ``dataset()`` for the ground truth, ``results`` for the detections."""

    def __init__(self, frequencies: dict[int, str]) -> None:
        self.frequencies = frequencies
        self.images: list[dict] = []
        self.annotations: list[dict] = []
        self.results: list[dict] = []

    def add(self, predictions: list[dict], targets: list[dict]) -> None:
        for prediction, target in zip(predictions, targets):
            image_id = target["image_id"]
            self.images.append(
                {
                    "id": image_id,
                    "width": WIDTH,
                    "height": HEIGHT,
                    "neg_category_ids": target["neg_category_ids"].tolist(),
                    "not_exhaustive_category_ids": target["not_exhaustive_category_ids"].tolist(),
                }
            )
            xywh = _xywh(target["boxes"].numpy())
            for box, label, area in zip(xywh.tolist(), target["labels"].tolist(), target["area"].tolist()):
                ann = {"id": len(self.annotations) + 1, "image_id": image_id, "category_id": label, "bbox": box}
                self.annotations.append({**ann, "area": area})
            xywh = _xywh(prediction["boxes"].double().numpy())
            rows = zip(xywh.tolist(), prediction["labels"].tolist(), prediction["scores"].double().tolist())
            self.results += [{"image_id": image_id, "category_id": c, "bbox": b, "score": s} for b, c, s in rows]

    def dataset(self) -> dict:
        categories = [{"id": k, "name": f"class_{k}", "frequency": g} for k, g in sorted(self.frequencies.items())]
        return {"images": self.images, "annotations": self.annotations, "categories": categories}


def _xywh(xyxy: np.ndarray) -> np.ndarray:
    out = xyxy.astype(np.float64).copy()
    out[:, 2:] -= out[:, :2]
    return out


# --- each tool's recipe, on the dicts ------------------------------------------------------------------------


def _lvis_api(dataset: dict, results: list[dict]) -> list[float]:
    from lvis import LVIS, LVISEval, LVISResults

    logging.getLogger("lvis").setLevel(logging.ERROR)
    gt = LVIS.__new__(LVIS)  # LVIS() reads a file only; this is its constructor minus the json.load
    gt.logger, gt.dataset = logging.getLogger("lvis.lvis"), dataset
    gt._create_index()
    evaluator = LVISEval(gt, LVISResults(gt, results, max_dets=300), "bbox")
    restored = "float" not in vars(np)
    if restored:  # np.float is gone since numpy 1.24; lvis-api calls it (eval.py:361-362): for this call only
        np.float = float  # type: ignore[attr-defined]
    try:
        evaluator.run()
    finally:
        if restored:
            del np.float  # type: ignore[attr-defined]
    return [float(evaluator.results[name]) for name in NAMES]


def _hotcoco(dataset: dict, results: list[dict]) -> list[float]:
    import hotcoco

    gt = hotcoco.COCO(dataset)
    evaluator = hotcoco.LVISEval(gt, hotcoco.LVISResults(gt, results, max_dets=300), "bbox")
    evaluator.run()
    found = evaluator.get_results()
    return [float(found[name]) for name in NAMES]


def _ultrafast(dataset: dict, results: list[dict]) -> list[float]:
    from ultrafast_pycocotools import COCO, COCOeval

    gt = COCO(dataset, verbose=False)
    evaluator = COCOeval(gt, gt.loadRes(results), "bbox", lvis_style=True, lvis_protocol="official")
    evaluator.evaluate()
    evaluator.accumulate()
    evaluator.summarize()
    return [float(v) for v in evaluator.stats[:13]]


def _faster_coco_eval(dataset: dict, results: list[dict]) -> list[float]:
    from faster_coco_eval import COCO, COCOeval_faster

    gt = COCO()
    gt.dataset = dataset
    gt.createIndex()
    evaluator = COCOeval_faster(gt, gt.loadRes(results), "bbox", lvis_style=True, print_function=lambda *_: None)
    evaluator.params.maxDets = [300]
    evaluator.evaluate()
    evaluator.accumulate()
    evaluator.summarize()
    found = evaluator.stats_as_dict
    keys = ("AP_all", "AP_50", "AP_75", "AP_small", "AP_medium", "AP_large", "APr", "APc", "APf")
    return [float(found[k]) for k in keys] + [float(found[k]) for k in ("AR_all", "AR_small", "AR_medium", "AR_large")]


RECIPES = {"lvis_api": _lvis_api, "hotcoco": _hotcoco, "ultrafast": _ultrafast, "faster_coco_eval": _faster_coco_eval}


def _run_recipe(workload, tool: str) -> tuple[float, float, list[float]]:
    dicts = LvisDicts(workload.frequencies)
    start = time.perf_counter()
    for predictions, targets in _batches(workload):
        dicts.add(predictions, targets)
    updated = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        stats = RECIPES[tool](dicts.dataset(), dicts.results)
    return updated - start, time.perf_counter() - updated, stats


def _run_ignite_det(workload) -> tuple[float, float, list[float]]:
    from ignite_det import CocoMetric

    metric = CocoMetric(protocol="lvis", category_frequencies=workload.frequencies)
    start = time.perf_counter()
    for batch in _batches(workload):
        metric.update(batch)
    updated = time.perf_counter()
    result = metric.compute()
    return updated - start, time.perf_counter() - updated, [float(result[name]) for name in NAMES]


def child(method: str, num_images: int, detections: int) -> None:
    """Run one method once and print a JSON line."""
    sys.path.insert(0, str(HERE))
    from workload import make_lvis_workload

    workload = make_lvis_workload(num_images, detections_per_image=detections)  # the same tensors for every method
    before = _rss_kib("VmRSS")
    _reset_peak()
    if method == "ignite_det:native":
        update_s, compute_s, stats = _run_ignite_det(workload)
    else:
        update_s, compute_s, stats = _run_recipe(workload, method)
    peak = _rss_kib("VmHWM")
    record = {"method": method, "update_s": update_s, "compute_s": compute_s, "total_s": update_s + compute_s}
    print(json.dumps({**record, "peak_mib": (peak - before) / 1024, "stats": stats}))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--detections", type=int, default=300, help="per image (above 300, lvis-api's cap acts)")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--save", help="also write every run's JSON record to this file")
    parser.add_argument("--table-from", help="print the table of a file --save wrote, without running anything")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.child, args.images, args.detections)
        return 0
    if args.table_from:
        _print_table(json.loads(Path(args.table_from).read_text()))
        return 0
    runs: dict[str, list[dict]] = {m: [] for m in args.methods}
    for repeat in range(args.repeats):
        for method in args.methods:  # one at a time: lvis-api alone needs most of the memory
            command = [sys.executable, __file__, "--child", method, "--images", str(args.images)]
            command += ["--detections", str(args.detections)]
            out = subprocess.run(command, capture_output=True, text=True)
            if out.returncode != 0:
                raise SystemExit(f"{method} failed:\n{out.stderr[-3000:]}")
            runs[method].append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(f"repeat {repeat + 1}: {method}: {runs[method][-1]['total_s']:.2f} s", file=sys.stderr)
            if args.save:  # after each method, so a long run that stops keeps what it measured
                saved = {"images": args.images, "detections": args.detections, "runs": runs}
                Path(args.save).write_text(json.dumps(saved, indent=1))
    _print_table({"images": args.images, "detections": args.detections, "runs": runs})
    return 0


def _print_table(saved: dict) -> None:
    """The README's table: times, memory, the largest difference from lvis-api, ratios to lvis-api and to the
    fastest other tool."""
    runs = {m: r for m, r in saved["runs"].items() if r}
    keys = ("update_s", "compute_s", "total_s", "peak_mib")
    med = {m: {k: statistics.median(r[k] for r in results) for k in keys} for m, results in runs.items()}
    reference = runs["lvis_api"][0]["stats"] if "lvis_api" in runs else None
    others = [m for m in med if m not in ("ignite_det:native", "lvis_api")]
    fastest = min(others, key=lambda m: med[m]["total_s"]) if others else None
    per_image, repeats = saved.get("detections", 300), len(next(iter(runs.values())))
    print(f"{saved['images']} images x {per_image} detections ({saved['images'] * per_image:,}); medians of {repeats}")
    print(
        "| method | update s | compute s | total s | peak extra MiB | max diff vs lvis-api "
        f"| x lvis-api total | x fastest other total ({fastest}) | x lvis-api memory |"
    )
    print("| --- " * 9 + "|")
    for method, m in med.items():
        diff = max(abs(a - b) for a, b in zip(runs[method][0]["stats"], reference)) if reference else float("nan")
        ratios = [_ratio(m, med.get("lvis_api"), "total_s"), _ratio(m, med.get(fastest), "total_s")]
        ratios.append(_ratio(m, med.get("lvis_api"), "peak_mib"))
        cells = [method, f"{m['update_s']:.2f}", f"{m['compute_s']:.2f}", f"{m['total_s']:.2f}", f"{m['peak_mib']:.0f}"]
        print("| " + " | ".join([*cells, f"{diff:.2g}", *(f"{r:.3f}" for r in ratios)]) + " |")


def _ratio(row: dict, other: dict | None, key: str) -> float:
    return row[key] / other[key] if other and other[key] else float("nan")


if __name__ == "__main__":
    raise SystemExit(main())
