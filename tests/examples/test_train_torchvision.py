"""Run ``examples/train_torchvision.py`` for real: a few iterations on a tiny exported shapes dataset.

torchvision does not import beside the torch this project pins (2.13.0), so when the test's own
interpreter lacks a working torchvision, the example runs in a side venv:

* ``$IGNITE_DET_TORCHVISION_PYTHON``, a python with torch, torchvision and ignite-det's dependencies; or
* ``<repo>/.venv-torchvision``, built on first use with ``pip install torch==2.14.1 torchvision==0.29.1``
  and ``pip install -e <repo>`` (a few minutes, several GB) and reused afterwards.

A failed build fails the test with pip's output and removes the half-built venv, so that the rest of
the suite keeps its disk; a disk with too little room fails it before pip starts.
``IGNITE_DET_SKIP_TORCHVISION=1`` skips it instead.
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
from tests.doc_snippets import REPO, documented_commands
from tests.wandb_records import find_run_dir, history_rows, read_records

EXAMPLE = REPO / "examples" / "train_torchvision.py"
DOCS = (REPO / "README.md", REPO / "examples" / "README.md", EXAMPLE)
SIDE_VENV = REPO / ".venv-torchvision"
READY_MARKER = SIDE_VENV / ".ignite-det-ready"  # written last, so a half-built venv is rebuilt
TORCHVISION_PINS = ["torch==2.14.1", "torchvision==0.29.1"]
CHECK_IMPORTS = "import torchvision.models.detection, ignite, wandb, pycocotools, PIL"
SIDE_VENV_BYTES = 7 * 2**30  # the CUDA build of torch 2.14.1 takes 5.6 GB in the venv, plus pip's unpacking
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
        # pip's "Location ... is ignored" warnings about this machine's local indexes would bury the error
        lines = [line for line in log.read_text().splitlines() if "is ignored: it is neither" not in line]
        tail = "\n".join(lines[-60:])
        shutil.rmtree(SIDE_VENV, ignore_errors=True)
        pytest.fail(f"building {SIDE_VENV} failed: pip install {' '.join(args)} exited {done.returncode}:\n{tail}")
    say(f"  done in {time.time() - t0:.0f} s")


def _build_side_venv(say: Any) -> Path:
    python = SIDE_VENV / "bin" / "python"
    if READY_MARKER.exists() and _works(python):
        return python
    say(f"building {SIDE_VENV} for torchvision (first run only, takes a few minutes)")
    shutil.rmtree(SIDE_VENV, ignore_errors=True)
    free = shutil.disk_usage(REPO).free
    if free < SIDE_VENV_BYTES:
        pytest.fail(
            f"building {SIDE_VENV} needs about {SIDE_VENV_BYTES / 2**30:.0f} GiB of disk, and only "
            f"{free / 2**30:.1f} GiB is free: free some, point IGNITE_DET_TORCHVISION_PYTHON at a python "
            "with torchvision, or set IGNITE_DET_SKIP_TORCHVISION=1"
        )
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

    # the run's own folder, printed at the start and the end, linked as out/latest
    assert done.stdout.count("run folder: out/run-1\n") == 2
    assert (tmp_path / "out" / "latest").resolve() == (tmp_path / "out" / "run-1").resolve()
    report = json.loads((tmp_path / "out" / "run-1" / "metrics.json").read_text())
    _assert_twelve_numbers(report["metrics"])
    assert len(report["history"]) == 2
    assert report["metrics"] == report["history"][-1]
    assert "Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ]" in done.stdout
    checkpoint = Path(report["checkpoint"])
    checkpoint = checkpoint if checkpoint.is_absolute() else tmp_path / checkpoint
    assert checkpoint.is_file() and checkpoint.parent == tmp_path / "out" / "run-1" / "checkpoints"
    assert f"best checkpoint: {report['checkpoint']}" in done.stdout

    # the offline W&B run: its log holds val/AP of every epoch, the last one equal to metrics.json's
    run_dir = find_run_dir(tmp_path / "wandb")
    assert (tmp_path / report["wandb_dir"]).resolve() == run_dir.resolve()
    assert list(run_dir.glob("run-*.wandb"))
    assert f"wandb sync {report['wandb_dir']}" in done.stdout
    logged = [row["val/AP"] for row in history_rows(run_dir) if "val/AP" in row]
    assert logged == [m["AP"] for m in report["history"]]
    assert any("train/loss" in row for row in history_rows(run_dir))

    # the checkpoint alone, named by its run folder, reproduces the 12 numbers it was saved with, and logs
    # them to a W&B run of its own
    eval_args = ["--eval-only", "--checkpoint", "out/latest", "--val-images", data[1], "--val-annotations", data[3]]
    done = _run_example(torchvision_python, [*eval_args, "--output-dir", "out"], tmp_path)
    again = json.loads((tmp_path / "out" / "eval-1" / "metrics.json").read_text())
    _assert_twelve_numbers(again["metrics"])
    assert (tmp_path / again["checkpoint"]).resolve() == checkpoint.resolve()
    assert again["metrics"] == report["checkpoint_metrics"]
    assert again["checkpoint_metrics"] == report["checkpoint_metrics"]
    eval_run = tmp_path / again["wandb_dir"]
    assert [{k: row[f"val/{k}"] for k in STAT_NAMES} for row in history_rows(eval_run) if "val/AP" in row] == [
        again["metrics"]
    ]
    (record,) = [r.run for r in read_records(eval_run) if r.WhichOneof("record_type") == "run"][:1]
    assert record.job_type == "eval" and "eval" in record.tags
    config = {item.key: json.loads(item.value_json) for item in record.config.update}
    assert config["trained_by_wandb_run"] == report["wandb_run_id"] == again["trained_by_wandb_run"]


@pytest.mark.parametrize(
    "model, annotations, names, iou_type",
    [
        ("maskrcnn_resnet50_fpn", "instances.json", list(STAT_NAMES), "segm"),
        (
            "keypointrcnn_resnet50_fpn",
            "keypoints.json",
            ["AP", "AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75", "ARm", "ARl"],
            "keypoints",
        ),
    ],
)
def test_mask_and_keypoint_models_train_and_evaluate_their_type(
    torchvision_python: str, shapes_coco: Path, tmp_path: Path, model: str, annotations: str, names: list, iou_type: str
) -> None:
    """Mask R-CNN on the export's masks and Keypoint R-CNN on its squares' corners: trained a step, then
    evaluated by their own IoU type (the report's keys say which), logged to W&B with its images."""
    data = ["--images", str(shapes_coco / "images"), "--annotations", str(shapes_coco / annotations)]
    args = [*data, "--model", model, "--epochs", "1", "--max-iterations", "1", "--output-dir", "out"]
    done = _run_example(torchvision_python, [*args, "--wandb-mode", "offline"], tmp_path)
    report = json.loads((tmp_path / "out" / "run-1" / "metrics.json").read_text())
    assert list(report["metrics"]) == names
    assert all(isinstance(v, float) and -1.0 <= v <= 1.0 for v in report["metrics"].values())
    assert ("maxDets= 20" in done.stdout) == (iou_type == "keypoints")
    run_dir = find_run_dir(tmp_path / "wandb")
    rows = [row for row in history_rows(run_dir) if "val/AP" in row]
    assert [{k: row[f"val/{k}"] for k in names} for row in rows] == [report["metrics"]]


def test_documented_commands_parse() -> None:
    """Every command line of the docs that runs the example has flags it knows (no torchvision needed)."""
    sys.path.insert(0, str(EXAMPLE.parent))
    import train_torchvision

    commands = documented_commands("train_torchvision.py", DOCS)
    assert any("--eval-only" in c for c in commands) and len(commands) >= 3
    for command in commands:
        train_torchvision.get_args_parser().parse_args(command)  # exits on an unknown flag


def test_bad_checkpoint_gives_one_line(tmp_path: Path) -> None:
    """A mistyped --checkpoint: status 2 and one line, before torchvision is even needed."""
    cmd = [sys.executable, str(EXAMPLE), "--eval-only", "--checkpoint", "runs/torchvision/latest", "--images", "x"]
    done = subprocess.run([*cmd, "--annotations", "y.json"], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 2
    assert done.stderr == (
        "train_torchvision.py: error: --checkpoint runs/torchvision/latest: no such file or run folder "
        "(a training run makes it)\n"
    )
