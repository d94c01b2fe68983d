"""Run ``examples/train_torchvision.py`` for real: a few iterations on a tiny exported shapes dataset.

torchvision does not import beside the torch this project pins (2.13.0), so when the test's own
interpreter lacks a working torchvision, the example runs in a side venv:

* ``$IGNITE_DET_TORCHVISION_PYTHON``, a python with torch, torchvision and ignite-det's dependencies; or
* ``<repo>/.venv-torchvision``, built on first use with ``pip install torch==2.14.1 torchvision==0.29.1``
  and ``pip install -e <repo>`` (a few minutes, several GB) and reused afterwards.

A failed build fails the test with pip's output. ``IGNITE_DET_SKIP_TORCHVISION=1`` skips it instead.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ignite_det import STAT_NAMES
from tests.wandb_records import find_run_dir, history_rows

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "train_torchvision.py"
SIDE_VENV = REPO / ".venv-torchvision"
READY_MARKER = SIDE_VENV / ".ignite-det-ready"  # written last, so a half-built venv is rebuilt
TORCHVISION_PINS = ["torch==2.14.1", "torchvision==0.29.1"]
CHECK_IMPORTS = "import torchvision.models.detection, ignite, wandb, pycocotools, PIL"
RUN_TIMEOUT = 600


def _works(python: str | Path) -> bool:
    """Whether ``python`` imports torchvision's detection models and the example's other dependencies."""
    done = subprocess.run([str(python), "-c", CHECK_IMPORTS], capture_output=True, text=True, timeout=300)
    return done.returncode == 0


@pytest.fixture(scope="module")
def progress(request: pytest.FixtureRequest) -> Iterator[Any]:
    """Print through pytest's capture: building the side venv takes minutes and should say so."""
    capman = request.config.pluginmanager.getplugin("capturemanager")

    def say(message: str) -> None:
        with capman.global_and_fixture_disabled():
            print(f"\n[test_example_torchvision] {message}", flush=True)

    yield say


def _pip(python: Path, args: list[str], log: Path, say: Any) -> None:
    say(f"pip install {' '.join(args)} (log: {log})")
    t0 = time.time()
    with log.open("a") as out:
        done = subprocess.run([str(python), "-m", "pip", "install", *args], stdout=out, stderr=subprocess.STDOUT)
    if done.returncode != 0:
        tail = "\n".join(log.read_text().splitlines()[-60:])
        pytest.fail(f"building {SIDE_VENV} failed: pip install {' '.join(args)} exited {done.returncode}:\n{tail}")
    say(f"  done in {time.time() - t0:.0f} s")


def _build_side_venv(say: Any) -> Path:
    python = SIDE_VENV / "bin" / "python"
    if READY_MARKER.exists() and _works(python):
        return python
    say(f"building {SIDE_VENV} for torchvision (first run only, takes a few minutes)")
    shutil.rmtree(SIDE_VENV, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", str(SIDE_VENV)], check=True)
    log = SIDE_VENV / "pip.log"
    _pip(python, TORCHVISION_PINS, log, say)
    _pip(python, ["-e", str(REPO)], log, say)
    if not _works(python):
        done = subprocess.run([str(python), "-c", CHECK_IMPORTS], capture_output=True, text=True)
        pytest.fail(f"{SIDE_VENV} was built but does not import torchvision:\n{done.stderr}")
    READY_MARKER.write_text(" ".join(TORCHVISION_PINS) + "\n")
    return python


@pytest.fixture(scope="module")
def torchvision_python(progress: Any) -> str:
    """A python interpreter that can run the example."""
    if os.environ.get("IGNITE_DET_SKIP_TORCHVISION") == "1":
        pytest.skip("IGNITE_DET_SKIP_TORCHVISION=1")
    given = os.environ.get("IGNITE_DET_TORCHVISION_PYTHON")
    if given:
        if not _works(given):
            pytest.fail(f"IGNITE_DET_TORCHVISION_PYTHON={given} cannot run: {CHECK_IMPORTS}")
        return given
    if _works(sys.executable):
        return sys.executable
    return str(_build_side_venv(progress))


@pytest.fixture(scope="module")
def shapes_coco(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """8 synthetic images, exported as a COCO folder by the shapes example."""
    root = tmp_path_factory.mktemp("shapes_coco")
    cmd = [sys.executable, str(REPO / "examples" / "shapes_data.py"), "--export-coco", str(root)]
    subprocess.run([*cmd, "--num-images", "8", "--image-size", "96", "--split", "train"], check=True)
    return root


def _run_example(python: str, args: list[str], tmp_path: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, WANDB_DIR=str(tmp_path / "wandb"), WANDB_SILENT="true", OMP_NUM_THREADS="1")
    env.pop("WANDB_PROJECT", None)
    common = ["--image-size", "96", "--batch-size", "2", "--threads", "1", "--num-workers", "0", "--device", "cpu"]
    cmd = [python, str(EXAMPLE), *args, *common, "--no-progress"]
    done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT)
    assert done.returncode == 0, f"{' '.join(cmd)} exited {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done


def _assert_twelve_numbers(metrics: dict[str, float]) -> None:
    assert list(metrics) == list(STAT_NAMES)
    assert all(isinstance(v, float) and -1.0 <= v <= 1.0 for v in metrics.values()), metrics


def test_train_then_eval_only(torchvision_python: str, shapes_coco: Path, tmp_path: Path) -> None:
    data = ["--images", str(shapes_coco / "images"), "--annotations", str(shapes_coco / "instances.json")]
    schedule = ["--epochs", "2", "--max-iterations", "2", "--log-every", "1"]
    train_args = [*data, *schedule, "--output-dir", "out", "--wandb-mode", "offline"]
    done = _run_example(torchvision_python, train_args, tmp_path)

    report = json.loads((tmp_path / "out" / "metrics.json").read_text())
    _assert_twelve_numbers(report["metrics"])
    assert len(report["history"]) == 2
    assert report["metrics"] == report["history"][-1]
    assert "Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ]" in done.stdout
    checkpoint = Path(report["checkpoint"])
    checkpoint = checkpoint if checkpoint.is_absolute() else tmp_path / checkpoint
    assert checkpoint.is_file()
    assert f"best checkpoint: {report['checkpoint']}" in done.stdout

    # the offline W&B run: its log holds val/AP of every epoch, the last one equal to metrics.json's
    run_dir = find_run_dir(tmp_path / "wandb")
    assert Path(report["wandb_dir"]).resolve() == run_dir.resolve()
    assert list(run_dir.glob("run-*.wandb"))
    assert f"wandb sync {report['wandb_dir']}" in done.stdout
    logged = [row["val/AP"] for row in history_rows(run_dir) if "val/AP" in row]
    assert logged == [m["AP"] for m in report["history"]]
    assert any("train/loss" in row for row in history_rows(run_dir))

    # the checkpoint alone reproduces the 12 numbers it was saved with
    eval_args = ["--eval-only", "--checkpoint", str(checkpoint), "--val-images", data[1], "--val-annotations", data[3]]
    _run_example(torchvision_python, [*eval_args, "--output-dir", "out_eval"], tmp_path)
    again = json.loads((tmp_path / "out_eval" / "metrics.json").read_text())
    _assert_twelve_numbers(again["metrics"])
    assert again["metrics"] == report["checkpoint_metrics"]
    assert again["checkpoint_metrics"] == report["checkpoint_metrics"]
