"""Shared fixtures. A map of this folder for a newcomer:

* The folders mirror the package: ``tests/backends/`` tests ``ignite_det/backends/``, ``tests/iou/`` the IoU
  types, ``tests/cli/`` the command line, ``tests/wandb_logging/`` the W&B layer, ``tests/examples/`` the
  scripts in ``examples/``; the flat modules (metric, inputs, gather, result, ...) are tested at the top level.
* Helper modules, imported by the tests (no test module imports another): ``harness.py`` drives the package
  (the backends, a real Ignite evaluator, array comparison, gloo groups), ``coco_reference.py`` is the trusted
  side (pycocotools on the same data, the data files, random and empty cases), ``type_cases.py`` the mask and
  keypoint cases, ``wandb_records.py`` reads offline W&B runs back, ``doc_snippets.py`` the documentation.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from pycocotools.cocoeval import COCOeval

from tests.coco_reference import GT_FILE, RESULTS_FILE, SEGM_RESULTS_FILE, cocoeval_on_the_files, load_real_samples
from tests.harness import BACKENDS


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """Every backend the package offers, by name; a test taking ``backend`` runs once per backend."""
    return request.param


@pytest.fixture
def real_samples() -> list[tuple[dict, dict]]:
    """The 100 real COCO images of ``tests/data`` as (prediction, target) pairs, fresh for each test."""
    return load_real_samples()


@pytest.fixture
def gloo_on_the_cpu(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """gloo workers see no GPU: with CUDA visible, Ignite puts gloo rank r on GPU r (none on a one-GPU machine)."""
    if "nccl" not in request.node.name:
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")


@pytest.fixture(scope="session")
def files_cocoeval() -> COCOeval:
    """pycocotools' bbox COCOeval of the real results file, evaluated, accumulated and summarized (read only)."""
    return cocoeval_on_the_files()


@pytest.fixture(scope="session")
def segm_files_cocoeval() -> COCOeval:
    """pycocotools' segm COCOeval of the real mask results file, evaluated, accumulated and summarized (read only)."""
    return cocoeval_on_the_files(SEGM_RESULTS_FILE, "segm")


@pytest.fixture(scope="module")
def gt() -> dict[str, Any]:
    """The cocoapi's 100 real images' instances file, as a dict (a fresh copy per test module)."""
    return json.loads(GT_FILE.read_text())


@pytest.fixture(scope="module")
def results() -> list[dict[str, Any]]:
    """The cocoapi's published fake bbox results for them, as a list (a fresh copy per test module)."""
    return json.loads(RESULTS_FILE.read_text())
