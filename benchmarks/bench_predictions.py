"""Time ``CocoMetric.write_predictions`` on the COCO-val-sized workload (5,000 images, 500,000 boxes).

The metric is filled by ``update()`` (not timed), then the file is written; this tree is compared with
the package at ``--against TREE`` (e.g. a checkout of the previous code), in fresh processes taking
turns so that the load of a shared machine hits both alike. Also timed in the same processes:
``json.dump`` of the same results as a list of dicts (the usual recipe, the dicts already built).
The files of both trees must be byte for byte the same (their SHA-256 is compared).

    python benchmarks/bench_predictions.py --against ../main --repeats 3
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def child(workload_name: str) -> dict[str, float | str]:
    """Fill a metric, write its predictions; the seconds taken and the file's hash."""
    import torch
    from workload import make_workload

    from ignite_det import CocoMetric

    torch.set_num_threads(1)
    work = make_workload(workload_name)
    metric = CocoMetric(box_format="xyxy")
    for prediction, target in zip(work.predictions, work.targets):
        metric.update(([prediction], [target]))
    path = Path(tempfile.mkdtemp()) / "results.json"
    start = time.perf_counter()
    written = metric.write_predictions(path)
    seconds = time.perf_counter() - start
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    results = json.loads(path.read_text())
    start = time.perf_counter()
    with open(path, "w") as file:
        json.dump(results, file)
    dump = time.perf_counter() - start
    return {"write_predictions_s": seconds, "json_dump_s": dump, "written": written, "sha256": digest}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--against", required=False, metavar="TREE", help="the package tree to compare with")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workload", default="coco", choices=("coco", "small"))
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.workload)))
        return 0
    trees = {"this tree": str(HERE.parent), **({"reference": args.against} if args.against else {})}
    runs: dict[str, list[dict]] = {name: [] for name in trees}
    for _ in range(args.repeats):
        for name, tree in trees.items():
            command = [sys.executable, __file__, "--child", "--workload", args.workload]
            out = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": tree})
            if out.returncode != 0:
                raise SystemExit(f"{name} failed:\n{out.stderr[-3000:]}")
            runs[name].append(json.loads(out.stdout.strip().splitlines()[-1]))
    for name, results in runs.items():
        write = statistics.median(r["write_predictions_s"] for r in results)
        relative = statistics.median(r["write_predictions_s"] / r["json_dump_s"] for r in results)
        print(
            f"{name:<10} write_predictions {write:.2f} s (median of {len(results)}), {relative:.2f}x json.dump "
            f"of the same dicts, {results[0]['written']} detections, sha256 {results[0]['sha256'][:12]}"
        )
    if "reference" in runs:
        ratio = statistics.median(a["write_predictions_s"] / b["write_predictions_s"] for a, b in zip(*runs.values()))
        same = {r["sha256"] for rs in runs.values() for r in rs}
        print(f"this tree / reference, per pair of turns: {ratio:.3f}; files identical: {len(same) == 1}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
