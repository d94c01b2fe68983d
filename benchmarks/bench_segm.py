"""Time and memory of a mask evaluation: ignite-det against the plain segm recipes and torchmetrics.

The workload (deterministic, generated image by image): 500 images of 640x480, each with 1 to 15
ground-truth masks of 80 classes (1 % crowd) and 100 detected masks, 60 % of them near a ground
truth, as Mask R-CNN returns them: (100, 1, 480, 640) float32 probabilities. Every method gets the
same tensors, one image per call (100 such masks are 123 MB):

- ``recipe``: torchvision's reference evaluator: ``masks > 0.5``, one ``mask.encode`` per mask
  (Fortran order), results with ``counts`` as str, then ``COCO()``, ``loadRes``, ``COCOeval(segm)``;
  its ground truth is given as RLEs, as an annotation file holds it (not timed);
- ``ignite_det``: ``CocoMetric(iou_type="segm")`` with each backend (``native``: images matched
  during the updates), ground truth given as the dense (M, H, W) uint8 masks of torchvision's
  datasets (encoded in ``update()``, timed);
- ``torchmetrics``: ``MeanAveragePrecision(iou_type="segm")``, bool masks (thresholding timed).

Update time is the sum over the calls (the generation of the inputs is not timed); compute time is
what a training loop waits for after the last update. Peak memory is the resident set above the
process's size before the run; ``inputs`` (generation alone) shows what the inputs take of it.
``--encode-against TREE`` times only ``update()`` per mask, for each mask form, against the package at
TREE (e.g. a checkout of the previous code) in fresh processes taking turns, and against
``mask.encode`` alone and torchvision's recipe.

    python benchmarks/bench_segm.py --repeats 3
    python benchmarks/bench_segm.py --encode-against ../main --images 10 --repeats 5
    python benchmarks/bench_segm.py --torchmetrics-python .venv-torchvision/bin/python

torchmetrics' MeanAveragePrecision needs torchvision: ``--torchmetrics-python`` runs those methods
with another interpreter (with torchmetrics, pycocotools and faster-coco-eval importable).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")
METHODS = (
    "inputs:-",
    "ignite_det:native",
    "recipe:pycocotools",
    "ignite_det:pycocotools",
    "torchmetrics:pycocotools",
    "recipe:faster_coco_eval",
    "ignite_det:faster_coco_eval",
    "torchmetrics:faster_coco_eval",
)
HEIGHT, WIDTH, NUM_IMAGES, DETECTIONS, CLASSES = 480, 640, 500, 100, 80


def _stamps() -> list[np.ndarray]:
    """Ellipses from 6x6 to 300x400 pixels, to be placed by slicing (fast to generate)."""
    stamps = []
    for h, w in [(6, 6), (12, 20), (24, 30), (40, 40), (60, 90), (100, 80), (150, 200), (300, 400)]:
        y, x = np.ogrid[:h, :w]
        stamps.append(((y - (h - 1) / 2) / (h / 2)) ** 2 + ((x - (w - 1) / 2) / (w / 2)) ** 2 <= 1)
    return stamps


STAMPS = _stamps()


def _place(rng: np.random.Generator, n: int, near: list[tuple[int, int, int]] | None = None) -> tuple:
    """``n`` masks (bool (n, H, W)) and where each was put: (stamp, y, x)."""
    masks = np.zeros((n, HEIGHT, WIDTH), dtype=bool)
    where = []
    for i in range(n):
        if near:
            s, y, x = near[int(rng.integers(0, len(near)))]
            y, x = y + int(rng.integers(-8, 9)), x + int(rng.integers(-8, 9))
        else:
            s = int(rng.integers(0, len(STAMPS)))
            y, x = int(rng.integers(-20, HEIGHT - 10)), int(rng.integers(-20, WIDTH - 10))
        stamp = STAMPS[s]
        y0, x0 = max(y, 0), max(x, 0)
        y1, x1 = min(y + stamp.shape[0], HEIGHT), min(x + stamp.shape[1], WIDTH)
        if y1 > y0 and x1 > x0:
            masks[i, y0:y1, x0:x1] = stamp[y0 - y : y1 - y, x0 - x : x1 - x]
        where.append((s, y, x))
    return masks, where


def image(index: int) -> tuple[dict, dict]:
    """One image's prediction (Mask R-CNN's form) and target (torchvision's dataset form)."""
    rng = np.random.default_rng(index)
    m = int(rng.integers(1, 16))
    gt_masks, where = _place(rng, m)
    gt_labels = rng.integers(1, CLASSES + 1, m)
    near, _ = _place(rng, int(DETECTIONS * 0.6), where)
    far, _ = _place(rng, DETECTIONS - len(near))
    det = np.concatenate([near, far])
    source = rng.integers(0, m, DETECTIONS)
    labels = np.where(rng.random(DETECTIONS) < 0.8, gt_labels[source], rng.integers(1, CLASSES + 1, DETECTIONS))
    probabilities = torch.from_numpy(det).to(torch.float32).mul_(0.85).add_(0.05)[:, None]  # (N, 1, H, W)
    prediction = {
        "masks": probabilities,
        "scores": torch.from_numpy(rng.random(DETECTIONS).astype(np.float32)),
        "labels": torch.from_numpy(labels),
    }
    target = {
        "masks": torch.from_numpy(gt_masks.astype(np.uint8)),
        "labels": torch.from_numpy(gt_labels),
        "iscrowd": torch.from_numpy((rng.random(m) < 0.01).astype(np.int64)),
        "image_id": index + 1,
    }
    return prediction, target


def _gt_annotations(mask_api) -> dict:
    """The ground truth as an annotation file holds it (RLE), for the recipes (not timed)."""
    images, annotations = [], []
    for index in range(NUM_IMAGES):
        _, target = image(index)
        images.append({"id": index + 1, "height": HEIGHT, "width": WIDTH})
        rles = mask_api.encode(np.asfortranarray(target["masks"].numpy().transpose(1, 2, 0)))
        for rle, label, crowd in zip(rles, target["labels"].tolist(), target["iscrowd"].tolist()):
            area = float(mask_api.area(rle))
            rle["counts"] = rle["counts"].decode("utf-8")
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": index + 1,
                    "category_id": label,
                    "segmentation": rle,
                    "area": area,
                    "iscrowd": crowd,
                    "bbox": [float(v) for v in mask_api.toBbox(rle)],
                }
            )
    return {"images": images, "annotations": annotations, "categories": [{"id": c} for c in range(1, CLASSES + 1)]}


def _images():
    for index in range(NUM_IMAGES):
        yield image(index)


def _run_inputs(_backend: str) -> tuple[float, float, list[float]]:
    for _ in _images():
        pass
    return 0.0, 0.0, [float("nan")] * 12


def _run_recipe(backend: str) -> tuple[float, float, list[float]]:
    if backend == "pycocotools":
        from pycocotools import mask as mask_api
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval
    else:
        from faster_coco_eval import COCO
        from faster_coco_eval import COCOeval_faster as COCOeval
        from faster_coco_eval.core import mask as mask_api
    gt_dataset = _gt_annotations(mask_api)
    results, update = [], 0.0
    for prediction, target in _images():
        start = time.perf_counter()
        masks = (prediction["masks"] > 0.5).numpy()
        for mask, label, score in zip(masks, prediction["labels"].tolist(), prediction["scores"].tolist()):
            rle = mask_api.encode(np.array(mask[0, :, :, np.newaxis], dtype=np.uint8, order="F"))[0]
            rle["counts"] = rle["counts"].decode("utf-8")
            results.append({"image_id": target["image_id"], "category_id": label, "segmentation": rle, "score": score})
        update += time.perf_counter() - start
    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = gt_dataset
        gt.createIndex()
        coco_eval = COCOeval(gt, gt.loadRes(results), "segm")
        coco_eval.evaluate()
        coco_eval.accumulate()
        coco_eval.summarize()
    return update, time.perf_counter() - start, [float(v) for v in coco_eval.stats[:12]]


def _run_ignite_det(backend: str) -> tuple[float, float, list[float]]:
    from ignite_det import CocoMetric

    metric = CocoMetric(iou_type="segm", backend=backend)
    update = 0.0
    for prediction, target in _images():
        start = time.perf_counter()
        metric.update(([prediction], [target]))
        update += time.perf_counter() - start
    start = time.perf_counter()
    result = metric.compute()
    compute = time.perf_counter() - start
    stored = metric._store.collect()
    print(
        json.dumps({"stored_bytes_per_mask": sum(map(len, stored.det_rle.tolist())) / len(stored.det_rle)}),
        file=sys.stderr,
    )
    return update, compute, [result[name] for name in NAMES]


def _run_torchmetrics(backend: str) -> tuple[float, float, list[float]]:
    from torchmetrics.detection import MeanAveragePrecision

    metric = MeanAveragePrecision(iou_type="segm", backend=backend)
    update = 0.0
    for prediction, target in _images():
        start = time.perf_counter()
        pred = {**prediction, "masks": prediction["masks"][:, 0] > 0.5}
        truth = {k: v.bool() if k == "masks" else v for k, v in target.items() if k != "image_id"}
        metric.update([pred], [truth])
        update += time.perf_counter() - start
    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        out = metric.compute()
    keys = ("map", "map_50", "map_75", "map_small", "map_medium", "map_large")
    keys += ("mar_1", "mar_10", "mar_100", "mar_small", "mar_medium", "mar_large")
    return update, time.perf_counter() - start, [float(out[k]) for k in keys]


def _rss_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field):
            return int(line.split()[1])
    return 0


def child(method: str) -> None:
    """Run one method once and print a JSON line."""
    kind, backend = method.split(":")
    run = {"inputs": _run_inputs, "recipe": _run_recipe, "ignite_det": _run_ignite_det}
    run["torchmetrics"] = _run_torchmetrics
    before = _rss_kib("VmRSS")
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM
    update_s, compute_s, stats = run[kind](backend)
    peak = _rss_kib("VmHWM")
    line = {"method": method, "update_s": update_s, "compute_s": compute_s, "total_s": update_s + compute_s}
    print(json.dumps({**line, "peak_mib": (peak - before) / 1024, "stats": stats}))


FORMS = ("float32 (N,1,H,W)", "bool", "uint8")


def _as_form(prediction: dict, target: dict, form: str) -> tuple[dict, dict]:
    if form == "bool":
        return {**prediction, "masks": prediction["masks"][:, 0] > 0.5}, {**target, "masks": target["masks"].bool()}
    if form == "uint8":
        return {**prediction, "masks": (prediction["masks"][:, 0] > 0.5).to(torch.uint8)}, target
    return prediction, target


def encode_cost(images: int, repeats: int) -> dict[str, float]:
    """Microseconds per mask: ``update()`` of one image at a time (its 100 detected masks and its ground
    truth) for each mask form, against ``mask.encode`` alone and the plain recipe (median of ``repeats``).

    ``mask.encode alone`` gets the binary masks ready in the Fortran-ordered uint8 array it needs (that
    copy not timed); ``recipe`` is torchvision's (``masks > 0.5``, then per mask a Fortran copy and
    ``mask.encode``). Only the detections count for those two; ``update()`` counts the ground truth too.
    """
    from pycocotools import mask as mask_api

    from ignite_det import CocoMetric

    samples = [image(i) for i in range(images)]
    masks = sum(len(p["scores"]) + len(t["labels"]) for p, t in samples)
    detections = sum(len(p["scores"]) for p, _ in samples)
    binary = [(p["masks"][:, 0] > 0.5).numpy() for p, _ in samples]
    fortran = [np.asfortranarray(b.transpose(1, 2, 0).astype(np.uint8)) for b in binary]

    def update(form: str) -> float:
        inputs = [_as_form(p, t, form) for p, t in samples]
        metric = CocoMetric(iou_type="segm")
        start = time.perf_counter()
        for prediction, target in inputs:
            metric.update(([prediction], [target]))
        return (time.perf_counter() - start) / masks

    def encode_alone() -> float:
        start = time.perf_counter()
        for f in fortran:
            mask_api.encode(f)
        return (time.perf_counter() - start) / detections

    def recipe() -> float:
        start = time.perf_counter()
        for prediction, _ in samples:
            for mask in (prediction["masks"] > 0.5).numpy():
                mask_api.encode(np.array(mask[0, :, :, np.newaxis], dtype=np.uint8, order="F"))
        return (time.perf_counter() - start) / detections

    timers = {f"update {form}": (lambda form=form: update(form)) for form in FORMS}
    timers |= {"mask.encode alone": encode_alone, "recipe": recipe}
    times: dict[str, list[float]] = {name: [] for name in timers}
    for _ in range(repeats):
        for name, timer in timers.items():
            times[name].append(timer())
    return {name: statistics.median(t) * 1e6 for name, t in times.items()}


def compare_encoding(reference: str, images: int, repeats: int) -> None:
    """``encode_cost`` of this tree and of the tree at ``reference`` (e.g. the code before a change),
    in fresh processes taking turns, so that a shared machine's load hits both alike; prints ratios."""
    trees = {"this tree": str(HERE.parent), "reference": reference}
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in trees}
    for _ in range(repeats):
        for name, tree in trees.items():
            command = [sys.executable, __file__, "--child", "encode", "--images", str(images), "--repeats", "1"]
            command += ["--torch-threads", str(torch.get_num_threads())]
            env = {**os.environ, "PYTHONPATH": tree}
            out = subprocess.run(command, capture_output=True, text=True, env=env, cwd=tree)
            if out.returncode != 0:
                raise SystemExit(f"{name} failed:\n{out.stderr[-3000:]}")
            runs[name].append(json.loads(out.stdout.strip().splitlines()[-1]))
    # Load on shared cores changes from one process to the next: each time is also taken relative to
    # mask.encode alone in its own process, and the trees are compared by those relative costs.
    relative = {
        name: {k: statistics.median(r[k] / r["mask.encode alone"] for r in rs) for k in rs[0]}
        for name, rs in runs.items()
    }
    median = {name: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for name, rs in runs.items()}
    header = ("this tree", "reference", "x encode", "ref x enc", "after/before")
    print(f"{'us per mask (medians)':<26} " + " ".join(f"{h:>12}" for h in header))
    for key in median["this tree"]:
        ours, before = relative["this tree"][key], relative["reference"][key]
        values = (median["this tree"][key], median["reference"][key], ours, before, ours / before)
        print(f"{key:<26} " + " ".join(f"{v:>12.3f}" for v in values))


def main(argv: list[str] | None = None) -> int:
    global NUM_IMAGES
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--torchmetrics-python", default=sys.executable, help="interpreter for torchmetrics runs")
    parser.add_argument("--images", type=int, default=500, help="images (default 500; fewer for a quick look)")
    parser.add_argument(
        "--encode-against",
        metavar="TREE",
        help="only time update() per mask, this tree against the package at TREE (e.g. a checkout of main)",
    )
    parser.add_argument(
        "--torch-threads",
        type=int,
        default=1,
        help="torch's threads (default 1: on shared cores, torch's threads wait for each other at every call)",
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    NUM_IMAGES = args.images
    torch.set_num_threads(args.torch_threads)
    if args.child == "encode":
        print(json.dumps(encode_cost(args.images, args.repeats)))
        return 0
    if args.child:
        child(args.child)
        return 0
    if args.encode_against:
        compare_encoding(args.encode_against, args.images, args.repeats)
        return 0
    runs: dict[str, list[dict]] = {m: [] for m in args.methods}
    for repeat in range(args.repeats):
        for method in args.methods:  # interleaved, so drift on a shared machine hits every method alike
            python = args.torchmetrics_python if method.startswith("torchmetrics") else sys.executable
            command = [python, __file__, "--child", method, "--images", str(args.images)]
            out = subprocess.run(command, capture_output=True, text=True)
            if out.returncode != 0:
                raise SystemExit(f"{method} failed:\n{out.stderr[-3000:]}")
            runs[method].append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(f"repeat {repeat + 1}: {method}: {runs[method][-1]['total_s']:.2f} s", file=sys.stderr)
    reference = runs.get("recipe:pycocotools", [None])[0]
    columns = ("update s", "compute s", "total s", "peak MiB", "max |diff|")
    print(f"{'method':<30} " + " ".join(f"{c:>10}" for c in columns))
    for method, results in runs.items():
        med = {k: statistics.median(r[k] for r in results) for k in ("update_s", "compute_s", "total_s", "peak_mib")}
        diff = max(abs(a - b) for a, b in zip(results[0]["stats"], reference["stats"])) if reference else float("nan")
        print(
            f"{method:<30} {med['update_s']:>10.2f} {med['compute_s']:>10.2f} {med['total_s']:>10.2f} "
            f"{med['peak_mib']:>10.0f} {diff:>10.2e}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
