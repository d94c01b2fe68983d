"""Every Python snippet of README.md runs as written.

The snippets run in order in one namespace, as a reader would paste them into one session, given only
the names the README leaves to the reader: ``model``, ``val_loader`` and ``trainer`` (small stand-ins
below). Anything else a snippet uses, ``torch`` included, it has to import itself.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from ignite.engine import Engine

from tests.doc_snippets import REPO, python_snippets

README = REPO / "README.md"


def _batches() -> list[tuple[torch.Tensor, list[dict[str, Any]]]]:
    """Two batches of two 32 px images: a cat (class 1) in each, a dog (class 2) in the second batch."""
    cat = {"boxes": torch.tensor([[2.0, 2.0, 12.0, 14.0]]), "labels": torch.tensor([1])}
    cat_and_dog = {
        "boxes": torch.tensor([[2.0, 2.0, 12.0, 14.0], [16.0, 10.0, 30.0, 28.0]]),
        "labels": torch.tensor([1, 2]),
    }
    return [(torch.zeros(2, 3, 32, 32), [cat, cat]), (torch.zeros(2, 3, 32, 32), [cat, cat_and_dog])]


class _Model(torch.nn.Module):
    """A stand-in detector: the same two boxes for every image, in torchvision's output format."""

    def forward(self, images: torch.Tensor) -> list[dict[str, torch.Tensor]]:
        boxes = torch.tensor([[2.0, 3.0, 12.0, 14.0], [15.0, 10.0, 30.0, 27.0]])
        return [{"boxes": boxes, "scores": torch.tensor([0.9, 0.6]), "labels": torch.tensor([1, 2])} for _ in images]


def test_readme_has_python_snippets() -> None:
    snippets = python_snippets(README.read_text())
    assert len(snippets) >= 2 and any("CocoMetric(" in s for s in snippets)


def test_readme_python_snippets_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # W&B writes its offline run here
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.delenv("WANDB_MODE", raising=False)
    namespace: dict[str, Any] = {
        "__name__": "readme",
        "model": _Model().eval(),
        "val_loader": _batches(),
        "trainer": Engine(lambda engine, batch: None),
    }
    try:
        for number, snippet in enumerate(python_snippets(README.read_text()), 1):
            code = compile(snippet, f"README.md python snippet {number}", "exec")
            exec(code, namespace)
    finally:
        if "wandb_logger" in namespace:
            namespace["wandb_logger"].close()
    # the first snippet evaluated the stand-in model with CocoMetric
    assert namespace["state"].metrics["AP"] == namespace["result"]["AP"] > 0.0
