"""What ``CocoMetric.update()`` costs inside a real evaluator loop: the shapes example's.

The evaluator of ``examples/train_shapes.py`` (its model at the default width, 128 px images, top 100
detections per image, batches of 32, on the CPU with one thread, so that a shared machine gives
repeatable loop times) runs over ``--images`` validation images; each
batch's ``update()`` is timed apart from the rest of the iteration (data, model, decoding). The
images are generated before timing. Reported per backend: ``update()`` per image in µs, its share of
the evaluator loop, and ``compute()`` at the end. Medians over ``--repeats`` runs in one process
(the same data and model each time).

    python benchmarks/bench_update.py --images 512 --repeats 3
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def run_once(backend: str, batches: list, model: torch.nn.Module) -> dict[str, float]:
    """One evaluator run: seconds in update(), in compute(), and in the rest of the loop."""
    from train_shapes import create_evaluator

    from ignite_det import CocoMetric

    spent = {"update": 0.0, "compute": 0.0}
    update, compute = CocoMetric.update, CocoMetric.compute

    def timed_update(self: CocoMetric, output) -> None:
        start = time.perf_counter()
        update(self, output)
        spent["update"] += time.perf_counter() - start

    def timed_compute(self: CocoMetric):
        start = time.perf_counter()
        result = compute(self)
        spent["compute"] += time.perf_counter() - start
        return result

    CocoMetric.update, CocoMetric.compute = timed_update, timed_compute  # type: ignore[method-assign]
    try:
        evaluator = create_evaluator(model, {"image_size": 128, "backend": backend}, torch.device("cpu"))
        start = time.perf_counter()
        evaluator.run(batches)
        total = time.perf_counter() - start
    finally:
        CocoMetric.update, CocoMetric.compute = update, compute  # type: ignore[method-assign]
    return {"update": spent["update"], "compute": spent["compute"], "loop": total - spent["compute"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--backends", nargs="+", default=["native", "pycocotools", "faster_coco_eval"])
    args = parser.parse_args(argv)
    sys.path.insert(0, str(EXAMPLES))
    from shapes_data import NUM_CLASSES, ShapesDataset, collate
    from shapes_model import ShapesDetector

    torch.manual_seed(0)
    torch.set_num_threads(1)
    dataset = ShapesDataset(args.images, 128, seed=0, split="val")
    batches = [collate([dataset[i] for i in range(s, min(s + 32, args.images))]) for s in range(0, args.images, 32)]
    model = ShapesDetector(NUM_CLASSES, width=24).eval()
    runs: dict[str, list[dict[str, float]]] = {b: [] for b in args.backends}
    for _ in range(args.repeats):
        for backend in args.backends:  # interleaved, so drift on a shared machine hits every backend alike
            runs[backend].append(run_once(backend, batches, model))
    print(f"{'backend':<18} {'update us/image':>16} {'share of loop':>14} {'loop s':>8} {'compute s':>10}")
    for backend, results in runs.items():
        update = statistics.median(r["update"] for r in results)
        loop = statistics.median(r["loop"] for r in results)
        compute = statistics.median(r["compute"] for r in results)
        print(f"{backend:<18} {update / args.images * 1e6:>16.0f} {update / loop:>14.1%} {loop:>8.2f} {compute:>10.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
