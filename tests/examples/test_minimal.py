"""examples/minimal.py runs as a reader runs it, and what it logs to W&B is what the metric computed.

The run is tiny (CPU, seconds) and offline; the W&B run is read back from ``run-*.wandb``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests import wandb_records as wr

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
sys.path.insert(0, str(EXAMPLES))

TINY = ["--epochs", "2", "--train-images", "32", "--val-images", "12", "--image-size", "64", "--width", "8"]
TINY += ["--batch-size", "8", "--log-interval", "2"]
ITERATIONS_PER_EPOCH = 32 // 8


def test_it_is_a_short_linear_script():
    lines = (EXAMPLES / "minimal.py").read_text().splitlines()
    assert 60 <= len(lines) <= 100, len(lines)


def test_a_tiny_run_logs_the_metric_and_the_loss_at_the_trainers_iteration(tmp_path: Path, monkeypatch) -> None:
    import minimal

    monkeypatch.setenv("WANDB_SILENT", "true")
    config = minimal.get_args_parser().parse_args([*TINY, "--wandb-dir", str(tmp_path)])
    result = minimal.run(config)
    rows = wr.history_rows(wr.find_run_dir(tmp_path))
    validated = [row for row in rows if "val/AP" in row]
    assert [row["_step"] for row in validated] == [ITERATIONS_PER_EPOCH, 2 * ITERATIONS_PER_EPOCH]
    assert {name: validated[-1][f"val/{name}"] for name in result} == dict(result)
    assert all("val/per_class" in row and "val/detections" in row for row in validated)
    losses = [row["_step"] for row in rows if "train/loss" in row]
    assert losses == list(range(2, 2 * ITERATIONS_PER_EPOCH + 1, 2))


def test_the_documented_usage_parses():
    import minimal

    from tests.doc_snippets import documented_commands

    commands = documented_commands("minimal.py", [EXAMPLES / "minimal.py"])
    assert len(commands) == 2
    for command in commands:
        minimal.get_args_parser().parse_args(command)
    with pytest.raises(SystemExit):
        minimal.get_args_parser().parse_args(["--wandb-mode", "on"])
