"""Every Python snippet of README.md runs as written.

The snippets run in order in one namespace, as a reader would paste them into one session, given only
the names the README leaves to the reader: ``model``, ``val_loader``, ``trainer`` and ``batches_left``
(small stand-ins below). Anything else a snippet uses, ``torch`` included, it has to import itself.
A snippet that says ``# After a crash`` is run in two acts: the evaluation crashes after the first,
and the second runs "in a new process set up the same way" (new objects, the same files).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from ignite.engine import Engine, Events

from ignite_det import STAT_NAMES
from tests.doc_snippets import REPO, python_snippets

README = REPO / "README.md"
CRASH = "# After a crash"
SAVE_EVERY = 100  # the resume snippet checkpoints the metric every 100 iterations
Batch = tuple[torch.Tensor, list[dict[str, Any]]]


def _batches(count: int = 120) -> list[Batch]:
    """``count`` batches of one 32 px image: a cat (class 1) in each, and a dog (class 2) in every third."""
    cat = ([2.0, 2.0, 12.0, 14.0], 1)
    dog = ([16.0, 10.0, 30.0, 28.0], 2)
    batches = []
    for i in range(count):
        objects = [cat, dog] if i % 3 == 2 else [cat]
        target = {"boxes": torch.tensor([b for b, _ in objects]), "labels": torch.tensor([c for _, c in objects])}
        batches.append((torch.zeros(1, 3, 32, 32), [target]))
    return batches


class _Model(torch.nn.Module):
    """A stand-in detector: the same two boxes for every image, in torchvision's output format."""

    def forward(self, images: torch.Tensor) -> list[dict[str, torch.Tensor]]:
        boxes = torch.tensor([[2.0, 3.0, 12.0, 14.0], [15.0, 10.0, 30.0, 27.0]])
        return [{"boxes": boxes, "scores": torch.tensor([0.9, 0.6]), "labels": torch.tensor([1, 2])} for _ in images]


class _Crash(Exception):
    """The job dies in the middle of the evaluation."""


def _crash_midway(evaluator: Engine, batches: list[Batch]) -> None:
    """Run ``evaluator`` until it dies a few batches after its checkpoint at iteration SAVE_EVERY."""

    def die(engine: Engine) -> None:
        raise _Crash

    handle = evaluator.add_event_handler(Events.ITERATION_COMPLETED(once=SAVE_EVERY + 7), die)
    with pytest.raises(_Crash):
        evaluator.run(batches)
    handle.remove()


def test_readme_has_python_snippets() -> None:
    snippets = python_snippets(README.read_text())
    assert len(snippets) >= 2 and any("CocoMetric(" in s for s in snippets)


def test_readme_python_snippets_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # W&B's offline run and the checkpoints go here
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.delenv("WANDB_MODE", raising=False)
    batches = _batches()
    namespace: dict[str, Any] = {
        "__name__": "readme",
        "model": _Model().eval(),
        "val_loader": batches,
        "trainer": Engine(lambda engine, batch: None),
        "batches_left": batches[SAVE_EVERY:],
    }
    try:
        for number, snippet in enumerate(python_snippets(README.read_text()), 1):
            name = f"README.md python snippet {number}"
            before, crash, after = snippet.partition(CRASH)
            exec(compile(before, name, "exec"), namespace)
            if crash:
                uninterrupted = {k: namespace["state"].metrics[k] for k in STAT_NAMES}
                _crash_midway(namespace["evaluator"], batches)
                # "in a new process set up the same way": new objects, the same names and files
                namespace = dict(namespace)
                exec(compile(before, f"{name}, set up again", "exec"), namespace)
                exec(compile(crash + after, f"{name}, after the crash", "exec"), namespace)
                resumed = {k: namespace["state"].metrics[k] for k in STAT_NAMES}
                assert resumed == uninterrupted  # what the README says of a resumed evaluation
    finally:
        if namespace.get("wandb_logger") is not None:
            namespace["wandb_logger"].close()
    assert namespace["result"]["AP"] > 0.0  # the first snippet evaluated the stand-in model
