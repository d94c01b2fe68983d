"""What the training examples write when their output goes to a file (a batch job, ``> train.log 2>&1``):
no progress bars, no INFO lines from Ignite, one line per epoch, and the version line once under torchrun."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
TINY = ["--epochs", "2", "--train-images", "32", "--width", "8", "--warmup-iters", "2", "--val-images", "15"]
TINY += ["--image-size", "64", "--batch-size", "8", "--threads", "1", "--wandb-mode", "disabled"]


def _run_to_files(command: list[str], tmp_path: Path) -> tuple[str, str]:
    """Run with stdout and stderr redirected to files, as a batch job's log; return both."""
    out, err = tmp_path / "out.log", tmp_path / "err.log"
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="")
    with out.open("w") as stdout, err.open("w") as stderr:
        proc = subprocess.Popen(
            command, stdout=stdout, stderr=stderr, stdin=subprocess.DEVNULL, env=env, start_new_session=True
        )
        try:
            returncode = proc.wait(timeout=300)
        finally:  # torchrun's workers too, if it hangs
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
    assert returncode == 0, err.read_text()
    return out.read_text(), err.read_text()


def test_a_run_logged_to_a_file_has_one_line_per_epoch_and_no_bars(tmp_path: Path) -> None:
    script = [sys.executable, str(EXAMPLES / "train_shapes.py")]
    out, err = _run_to_files([*script, *TINY, "--output-dir", str(tmp_path / "runs")], tmp_path)
    assert err == ""  # no bars, no escape sequences, no Ignite INFO lines
    assert len(re.findall(r"^epoch +\d+: AP ", out, re.M)) == 2
    assert len(re.findall(r"^ignite \S+, torch \S+$", out, re.M)) == 1


def test_under_torchrun_the_version_line_is_printed_once(tmp_path: Path) -> None:
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    command = [*launcher, str(EXAMPLES / "train_shapes.py"), *TINY, "--output-dir", str(tmp_path / "runs")]
    out, err = _run_to_files(command, tmp_path)
    assert len(re.findall(r"^ignite \S+, torch \S+$", out, re.M)) == 1, out
    assert len(re.findall(r"^epoch +\d+: AP ", out, re.M)) == 2, out  # rank 0's
    assert "INFO" not in err and "Use data loader kwargs" not in err, err
