"""How the tests drive the package: the backends to run, a real Ignite evaluator, real process groups.

Plain functions, imported by test modules and by ``conftest.py`` (which wraps some of them as fixtures).
The reference side (pycocotools, the data files, the cases) lives in ``coco_reference.py``.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any, Callable

import ignite.distributed as idist
import numpy as np
from ignite.engine import Engine

from ignite_det import CocoMetric, backends

BACKENDS: tuple[str, ...] = tuple(backends.BACKENDS)  # from the package: a new backend is tested everywhere


def evaluate_with_engine(samples: list, batch_size: int, **metric_args: Any) -> dict[str, Any]:
    """Feed (prediction, target) pairs through a real Ignite evaluator in batches; its ``state.metrics``."""
    batches = [samples[i : i + batch_size] for i in range(0, len(samples), batch_size)]
    evaluator = Engine(lambda engine, batch: ([p for p, _ in batch], [t for _, t in batch]))
    CocoMetric(**metric_args).attach(evaluator, "coco")
    return evaluator.run(batches).metrics


def assert_same_arrays(result: Any, coco_eval: Any) -> None:
    """precision, recall and scores equal COCOeval's ``eval`` arrays, bit for bit."""
    for name in ("precision", "recall", "scores"):
        np.testing.assert_array_equal(getattr(result, name), coco_eval.eval[name], err_msg=name)


def free_port() -> int:
    """A port no other process group on this machine is using (parallel test runs must not collide)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def spawn_gloo(worker: Callable[..., None], *args: Any, nproc: int = 2) -> None:
    """Run ``worker(local_rank, *args)`` in a real gloo group of ``nproc`` processes on a free port."""
    idist.spawn("gloo", worker, args=args, nproc_per_node=nproc, master_port=free_port())


def assert_one_line_error(code: int, capsys: Any, path: Any, words: list[str]) -> str:
    """The CLI failed with exit code 2 and one ``ignite-det: error:`` line (naming ``path``) holding ``words``."""
    captured = capsys.readouterr()
    assert code == 2
    assert captured.out == ""
    line = captured.err.strip()
    assert "\n" not in line and "Traceback" not in line, captured.err
    assert line.startswith("ignite-det: error: " + (f"{path}: " if path else ""))
    for word in words:
        assert word in line
    return line


def write_json(tmp_path: Path, name: str, content: Any) -> Path:
    """``content`` as the JSON file ``tmp_path / name``; its path."""
    path = tmp_path / name
    path.write_text(json.dumps(content))
    return path
