"""The skeleton both training examples share: their common flags and config, the W&B run, the checkpoint
of the best AP, and what they print (progress bars in a terminal, one line per epoch in a log file).

``train_shapes.py`` and ``train_torchvision.py`` differ in their data, model and training step; everything
around those is here, so that a reader finds it once. Run folders are in ``run_dirs.py``.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Any, get_args

import ignite
import ignite.distributed as idist
import torch
from ignite.engine import Engine, Events
from ignite.handlers import ModelCheckpoint, ProgressBar, global_step_from_engine
from run_dirs import find_checkpoint
from tqdm import tqdm

import ignite_det
from ignite_det import CocoMetric

# Ignite's idist.auto_* helpers log their arguments at INFO (a dict of DataLoader kwargs per loader), and
# idist.Parallel the start and end of every run.
IGNITE_INFO_LOGGERS = tuple(f"ignite.distributed.auto.auto_{name}" for name in ("dataloader", "model", "optim")) + (
    "ignite.distributed.launcher.Parallel",
)


def add_run_arguments(parser: argparse.ArgumentParser, output_dir: str, project: str, results: str) -> None:
    """The flags of a run that both examples take: where it goes, evaluation, checkpoints, W&B, progress.

    ``results`` names the file of the final numbers in the run folder (``results.json``...).
    """
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--output-dir",
        default=output_dir,
        help="where run folders go: run-N (training), eval-N (--eval-only), and latest, a link to the last run-N",
    )
    parser.add_argument(
        "--run-name",
        default=None,
        help="this run's folder under --output-dir (default: the next run-N, or eval-N with --eval-only); "
        f"it holds checkpoints/, {results} and, by default, W&B's files",
    )
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    parser.add_argument("--backend", default="native", choices=get_args(ignite_det.Backend))
    parser.add_argument("--eval-only", action="store_true", help="only evaluate --checkpoint on the validation set")
    parser.add_argument(
        "--checkpoint", default=None, help=f"with --eval-only: a .pt file, or a run folder such as {output_dir}/latest"
    )
    parser.add_argument("--wandb-mode", default=None, choices=["online", "offline", "disabled"],
                        help="default: $WANDB_MODE or offline")  # fmt: skip
    parser.add_argument("--wandb-project", default=None, help=f"default: $WANDB_PROJECT or {project}")
    parser.add_argument("--wandb-dir", default=None, help="default: $WANDB_DIR or --output-dir")
    parser.add_argument("--log-every", type=int, default=10, help="log the training loss every N iterations")
    parser.add_argument(
        "--no-progress", action="store_true", help="no progress bars (none either when stderr is not a terminal)"
    )


def config_from(
    parser: argparse.ArgumentParser, config: dict[str, Any] | argparse.Namespace | None = None
) -> dict[str, Any]:
    """The parser's defaults, updated with ``config`` (dashes or underscores in keys).

    Raises:
        KeyError: for a key that is not one of the parser's options.
    """
    cfg = vars(parser.parse_args([]))
    if isinstance(config, argparse.Namespace):
        config = vars(config)
    for key, value in (config or {}).items():
        key = key.replace("-", "_")
        if key not in cfg:
            raise KeyError(f"unknown option {key!r}")
        cfg[key] = value
    return cfg


def check_run_config(config: dict[str, Any], script: str | None) -> dict[str, Any]:
    """The config with ``checkpoint`` resolved to a file (a run folder names its best checkpoint), which
    :func:`load_checkpoint` reads as a checkpoint of ``script`` (with ``None``, a plain state dict too).

    Raises:
        ValueError, FileNotFoundError, FileExistsError: with a one-line message, for a missing or unusable
            ``--checkpoint`` or a ``--run-name`` that exists already.
    """
    config = dict(config)
    if config["eval_only"]:
        if not config["checkpoint"]:
            raise ValueError("--eval-only needs --checkpoint PATH (a .pt file or a run folder)")
        config["checkpoint"] = str(find_checkpoint(config["checkpoint"]))
        load_checkpoint(config["checkpoint"], script)
    wanted = Path(config["output_dir"]) / (config["run_name"] or "")
    if config["run_name"] and wanted.exists():
        raise FileExistsError(f"{wanted} exists already: pick another --run-name")
    return config


# ----------------------------------------------------------------------------- checkpoints


def load_checkpoint(path: str | os.PathLike, script: str | None = None) -> dict[str, Any]:
    """A checkpoint: ``{"model": state dict, "meta": RunMeta's state}``; with ``script=None`` a plain
    state dict too.

    Raises:
        ValueError: if the file is not a torch checkpoint of weights (with a ``model`` entry, unless
            ``script`` is None).
    """
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # pickle, zip and torch errors alike (torch's own message runs to 10 lines)
        kind = type(error).__name__
        raise ValueError(f"--checkpoint {path}: not a torch checkpoint of weights ({kind} from torch.load)") from error
    if not isinstance(ckpt, dict):
        raise ValueError(f"--checkpoint {path}: holds a {type(ckpt).__name__}, not a state dict or a checkpoint")
    if script is not None and "model" not in ckpt:
        raise ValueError(f"--checkpoint {path}: no 'model' entry; is it a checkpoint of {script}?")
    return ckpt


def coco_numbers(metrics: dict[str, Any]) -> dict[str, float]:
    """The COCO numbers of an evaluation: the 12 of boxes and masks, the 10 of keypoints."""
    return {k: float(v) for k, v in metrics["coco"].items()}


class RunMeta:
    """Saved next to the weights: what rebuilds the model, the numbers and step at save time, the W&B run."""

    def __init__(
        self, model_config: dict[str, Any], trainer: Engine | None = None, evaluator: Engine | None = None
    ) -> None:
        self.config = dict(model_config)
        self.trainer, self.evaluator = trainer, evaluator
        self.wandb_run_id: str | None = None

    def state_dict(self) -> dict[str, Any]:
        evaluated = self.evaluator.state.metrics if self.evaluator is not None else {}
        metrics = coco_numbers(evaluated) if "coco" in evaluated else {}
        state = self.trainer.state if self.trainer is not None else None
        return {
            "config": dict(self.config),
            "metrics": metrics,
            "epoch": state.epoch if state is not None else None,
            "iteration": state.iteration if state is not None else None,
            "wandb_run_id": self.wandb_run_id,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.config = dict(state.get("config", {}))


def keep_best_checkpoint(config: dict[str, Any], trainer: Engine, evaluator: Engine, to_save: dict[str, Any]) -> Any:
    """Save ``to_save`` into ``<run folder>/checkpoints`` whenever an evaluation reaches the best AP so far."""
    best = ModelCheckpoint(
        dirname=Path(config["run_dir"]) / "checkpoints",
        filename_prefix="best",
        n_saved=1,
        score_function=lambda engine: engine.state.metrics["AP"],
        score_name="AP",
        global_step_transform=global_step_from_engine(trainer),
        require_empty=False,
    )
    evaluator.add_event_handler(Events.COMPLETED, best, to_save)
    return best


def best_metrics(history: list[dict[str, float]]) -> dict[str, float] | None:
    """The evaluation that ModelCheckpoint kept: the first one with the highest AP."""
    best = None
    for m in history:
        if best is None or m["AP"] > best["AP"]:
            best = m
    return best


def attach_coco_metric(evaluator: Engine, config: dict[str, Any], class_names: dict[int, str], **kw: Any) -> None:
    """``CocoMetric`` on the evaluator under the name ``coco``, with the chosen ``--backend``."""
    CocoMetric(box_format="xyxy", backend=config["backend"], class_names=class_names, **kw).attach(evaluator, "coco")


def to_device(targets: list[dict[str, Any]], device: torch.device) -> list[dict[str, Any]]:
    return [{k: (v.to(device) if torch.is_tensor(v) else v) for k, v in t.items()} for t in targets]


# ----------------------------------------------------------------------------- W&B


def wandb_mode(config: dict[str, Any]) -> str:
    return config["wandb_mode"] or os.environ.get("WANDB_MODE") or "offline"


def create_wandb_logger(config: dict[str, Any], run_config: dict[str, Any], project: str, **init: Any) -> Any:
    """A ``WandBLogger`` writing under the run folder, on rank 0; None on other ranks or when disabled."""
    if wandb_mode(config) == "disabled" or idist.get_rank() != 0:
        return None
    from ignite.handlers.wandb_logger import WandBLogger

    # absolute: W&B's service process may have been started in another working directory
    wandb_dir = os.path.abspath(config["wandb_dir"] or os.environ.get("WANDB_DIR") or config["run_dir"])
    os.makedirs(wandb_dir, exist_ok=True)
    return WandBLogger(
        project=config["wandb_project"] or os.environ.get("WANDB_PROJECT") or project,
        mode=wandb_mode(config),
        dir=wandb_dir,
        config=run_config,
        **init,
    )


def wandb_run_id(wandb_logger: Any) -> str | None:
    """The W&B run's id, through ``WandBLogger``'s forwarding to ``wandb`` (``logger.run`` is ``wandb.run``)."""
    return None if wandb_logger is None or wandb_logger.run is None else wandb_logger.run.id


def wandb_run_dir(wandb_logger: Any) -> str | None:
    """The local directory of the run (what ``wandb sync`` takes), relative to the working directory if
    it is inside it."""
    run = None if wandb_logger is None else wandb_logger.run
    if run is None or not getattr(run, "dir", None):
        return None
    return shown_path(Path(run.dir).parent)


def close_wandb(wandb_logger: Any) -> str | None:
    """Finish the run; return its local directory."""
    run_dir = wandb_run_dir(wandb_logger)
    if wandb_logger is not None:
        wandb_logger.close()
    return run_dir


def print_wandb_dir(config: dict[str, Any], wandb_dir: str | None) -> None:
    """Where the W&B run is, and for an offline run the command that uploads it."""
    if wandb_dir:
        print(f"W&B run dir: {wandb_dir}")
        if wandb_mode(config) == "offline":
            print(f"upload it with: wandb sync {wandb_dir}")


# ----------------------------------------------------------------------------- console


def shown_path(path: str | os.PathLike) -> str:
    """``path`` relative to the working directory when it lies inside it (shorter to read and copy)."""
    path = Path(path).absolute()
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def say(message: str) -> None:
    """Print above the progress bars (a plain print would land on the training bar's line)."""
    tqdm.write(message)
    sys.stdout.flush()


def shows_progress(config: dict[str, Any]) -> bool:
    """Progress bars on rank 0 in a terminal; in a log file (stderr redirected) the epoch lines are enough,
    where a bar's redraws would write kilobytes of escape sequences."""
    return idist.get_rank() == 0 and not config["no_progress"] and sys.stderr.isatty()


def attach_progress(config: dict[str, Any], trainer: Engine | None, evaluator: Engine, loss: Any = None) -> None:
    """Ignite's progress bars for training (showing ``loss(output)``) and evaluation, when shown at all."""
    if not shows_progress(config):
        return
    if trainer is None:
        ProgressBar(desc="eval").attach(evaluator)
        return
    ProgressBar(persist=False).attach(trainer, output_transform=lambda output: {"loss": loss(output)})
    ProgressBar(persist=False, desc="eval").attach(evaluator)


def quiet_ignite_info() -> None:
    """Drop the INFO lines of Ignite's ``idist.auto_*`` helpers and ``idist.Parallel`` (warnings still show).
    A filter, because they reset their logger's level on every call (``ignite.utils.setup_logger``)."""
    for name in IGNITE_INFO_LOGGERS:
        logging.getLogger(name).addFilter(_above_info)


def _above_info(record: logging.LogRecord) -> bool:
    return record.levelno > logging.INFO


def print_versions() -> None:
    """``ignite X, torch Y``, once: under torchrun every process starts the script, and only rank 0 prints."""
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"ignite {ignite.__version__}, torch {torch.__version__}", flush=True)
