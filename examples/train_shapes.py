"""Train a small anchor-free detector on synthetic shapes, with an exact COCO metric and W&B logging.

Everything is generated locally (see ``shapes_data.py``), the detector is plain
PyTorch (see ``shapes_model.py``), and the defaults (1024 training and 192
validation images of 128 px, 12 epochs) finish in 2.5 to 3 minutes on two
CPU cores with validation AP 0.608 and AP50 0.910 (see README.md). Each run gets
a folder of its own, ``runs/shapes/run-N`` (``--output-dir``/``--run-name``),
printed at the start and the end, and ``runs/shapes/latest`` links the last
training run. The 12 COCO numbers of every evaluation, the best checkpoint and
the W&B run directory end up in ``<run folder>/results.json`` (and in what
``run(config)`` returns).

Usage::

    # train with the defaults (W&B in offline mode), then print the COCO summary
    python examples/train_shapes.py

    # pick another evaluation backend (the default is the native engine), or log online
    python examples/train_shapes.py --backend faster_coco_eval --wandb-mode online

    # 2 processes on one machine (gloo on CPU, nccl on GPU) ...
    python examples/train_shapes.py --nproc-per-node 2
    # ... or launched by torchrun
    torchrun --nproc_per_node 2 examples/train_shapes.py

    # evaluate the best checkpoint of the last training run (or name a run folder or a .pt file);
    # the results go to runs/shapes/eval-N and to a W&B run of their own
    python examples/train_shapes.py --eval-only --checkpoint runs/shapes/latest

    # upload an offline run afterwards (the script prints the command)
    wandb sync runs/shapes/run-1/wandb/offline-run-...

The environment variables ``WANDB_MODE``, ``WANDB_DIR`` and ``WANDB_PROJECT``
are used when the corresponding flags are not given.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

# OpenMP threads that spin while they wait make a busy (shared) CPU several times slower; let them sleep.
# (Only effective before torch is first imported.)
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import ignite.distributed as idist  # noqa: E402
import torch
from ignite.engine import Engine, Events
from ignite.handlers import (
    CosineAnnealingScheduler,
    EarlyStopping,
    EMAHandler,
    create_lr_scheduler_with_warmup,
    global_step_from_engine,
)
from ignite.utils import manual_seed, setup_logger
from run_dirs import make_run_dir
from shapes_data import CLASS_NAMES, NUM_CLASSES, ShapesDataset, collate
from shapes_model import DetectionLoss, ShapesDetector, decode
from skeleton import (
    RunMeta,
    add_run_arguments,
    attach_coco_metric,
    attach_progress,
    best_metrics,
    check_run_config,
    close_wandb,
    coco_numbers,
    config_from,
    create_wandb_logger,
    keep_best_checkpoint,
    load_checkpoint,
    print_versions,
    print_wandb_dir,
    quiet_ignite_info,
    say,
    to_device,
    wandb_mode,
    wandb_run_id,
)

from ignite_det import attach_wandb_logging

PROJECT = "ignite-det-shapes"
SCRIPT = "train_shapes.py"
MODEL_CONFIG_KEYS = ("width", "image_size", "val_images", "train_images", "seed")


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=12, help="training epochs")
    parser.add_argument("--batch-size", type=int, default=32, help="total batch size (split over processes)")
    parser.add_argument("--lr", type=float, default=4e-3, help="peak learning rate (AdamW)")
    parser.add_argument("--weight-decay", type=float, default=1e-4)
    parser.add_argument("--warmup-iters", type=int, default=50, help="linear warm-up iterations")
    parser.add_argument("--image-size", type=int, default=128, help="square image side in pixels")
    parser.add_argument("--train-images", type=int, default=1024)
    parser.add_argument("--val-images", type=int, default=192)
    parser.add_argument("--width", type=int, default=24, help="model width (channels at stride 4)")
    parser.add_argument("--ema", type=float, default=0.02, help="EMA momentum of the evaluated weights (0: off)")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch CPU threads per process (default: cores/procs)"
    )
    parser.add_argument("--early-stopping", type=int, default=None, metavar="PATIENCE", help="stop when AP stalls")
    parser.add_argument("--nproc-per-node", type=int, default=None, help="spawn N processes (gloo on CPU)")
    add_run_arguments(parser, output_dir="runs/shapes", project=PROJECT, results="results.json")
    return parser


def get_config(config: dict[str, Any] | argparse.Namespace | None = None) -> dict[str, Any]:
    """The parser's defaults, updated with ``config`` (dashes or underscores in keys)."""
    return config_from(get_args_parser(), config)


# ----------------------------------------------------------------------------- W&B


def attach_coco_logging(wandb_logger: Any, evaluator: Engine, step: Any = None) -> None:
    """The 12 COCO numbers, the per-class report and sample images, at the step ``step`` gives (default: 1,
    2, ...). Call on every process, with ``wandb_logger`` None but on rank 0: each captures its share of the
    images."""
    attach_wandb_logging(
        wandb_logger, evaluator, metric_name="coco", tag="val", class_names=CLASS_NAMES, global_step_transform=step
    )


def setup_wandb(config: dict[str, Any], trainer: Engine, evaluator: Engine, optimizer: torch.optim.Optimizer) -> Any:
    """Create the W&B logger of a training run on rank 0 and attach it. Call on every process: each captures
    its share of the sample images. Returns the logger (None on other ranks, or when disabled)."""
    if wandb_mode(config) == "disabled":
        return None
    run_config = {k: v for k, v in config.items() if k != "checkpoint"}
    wandb_logger = create_wandb_logger(config, run_config, PROJECT, job_type="train", tags=["shapes", "ignite-det"])
    if wandb_logger is not None:
        wandb_logger.attach_output_handler(
            trainer,
            event_name=Events.ITERATION_COMPLETED(every=config["log_every"]),
            tag="train",
            output_transform=lambda loss: {"loss": loss},
        )
        wandb_logger.attach_opt_params_handler(
            trainer, event_name=Events.ITERATION_STARTED(every=config["log_every"]), optimizer=optimizer
        )
    # validation at the trainer's iteration, the step of the training loss, so that the curves line up
    attach_coco_logging(wandb_logger, evaluator, global_step_from_engine(trainer, Events.ITERATION_COMPLETED))
    return wandb_logger


def setup_eval_wandb(config: dict[str, Any], evaluator: Engine, saved: dict[str, Any]) -> Any:
    """W&B for ``--eval-only``: a run of its own (job type ``eval``) with the same report and images as
    training, whose config names the checkpoint, its epoch and numbers, and the W&B run that trained it.
    Call on every process, as :func:`setup_wandb`."""
    if wandb_mode(config) == "disabled":
        return None
    run_config = dict(
        config,
        checkpoint_epoch=saved.get("epoch"),
        checkpoint_metrics=saved.get("metrics"),
        trained_by_wandb_run=saved.get("wandb_run_id"),
    )
    wandb_logger = create_wandb_logger(
        config,
        run_config,
        PROJECT,
        job_type="eval",
        tags=["shapes", "ignite-det", "eval"],
        notes=f"--eval-only --checkpoint {config['checkpoint']}",
    )
    attach_coco_logging(wandb_logger, evaluator)
    return wandb_logger


# ----------------------------------------------------------------------------- training


def create_evaluator(model: torch.nn.Module, config: dict[str, Any], device: torch.device) -> Engine:
    image_size = config["image_size"]

    @torch.no_grad()
    def eval_step(engine: Engine, batch: tuple[torch.Tensor, list[dict[str, Any]]]) -> tuple[list, list]:
        model.eval()
        images, targets = batch
        preds = decode(model(images.to(device, non_blocking=True)), image_size, top_k=100)
        return [{k: v.cpu() for k, v in p.items()} for p in preds], targets

    evaluator = Engine(eval_step)
    evaluator.logger = setup_logger("evaluator", level=30)
    attach_coco_metric(evaluator, config, CLASS_NAMES)
    return evaluator


def _placed(model: torch.nn.Module, device: torch.device, world: int) -> torch.nn.Module:
    """DistributedDataParallel under distribution (Ignite's auto_model); otherwise the chosen device
    (auto_model alone would take the GPU even with --device cpu)."""
    return idist.auto_model(model) if world > 1 else model.to(device)


def same_on_every_rank(model: torch.nn.Module) -> None:
    """Give every process rank 0's weights and buffers. DDP keeps the weights equal but not BatchNorm's
    running statistics, which each process updates from its own batches (and so does each process's EMA
    of them); the checkpoint holds rank 0's, so that the evaluation of every process should too."""
    if idist.get_world_size() == 1:
        return
    with torch.no_grad():
        for tensor in model.state_dict().values():
            tensor.copy_(idist.broadcast(tensor, src=0))


def training(local_rank: int, config: dict[str, Any]) -> None:
    """What every process runs (under ``idist.Parallel``); rank 0 writes the results into the run folder."""
    quiet_ignite_info()
    rank, world = idist.get_rank(), idist.get_world_size()
    threads = config["threads"] or max(1, (os.cpu_count() or 1) // max(1, idist.get_nproc_per_node()))
    torch.set_num_threads(threads)
    manual_seed(config["seed"] + rank)
    if world > 1 or config["device"] is None:
        device = idist.device()
    else:
        device = torch.device(config["device"])
    if config["run_dir"] is None:  # launched by torchrun: rank 0 makes the folder, the others learn its name
        config["run_dir"] = idist.broadcast(str(make_run_dir(config)) if rank == 0 else "", src=0)

    val_ds = ShapesDataset(config["val_images"], config["image_size"], config["seed"], "val")
    val_loader = idist.auto_dataloader(
        val_ds, batch_size=config["batch_size"], shuffle=False, drop_last=False, collate_fn=collate, num_workers=0
    )
    if config["eval_only"]:
        result = evaluate_checkpoint(config, val_loader, device)
    else:
        result = train(config, val_loader, device)
    if rank == 0:
        (Path(config["run_dir"]) / _results_name(config)).write_text(json.dumps(result, indent=2))
        print_wandb_dir(config, result["wandb_dir"])
        print(f"run folder: {config['run_dir']}")
    idist.barrier()


def evaluate_checkpoint(config: dict[str, Any], val_loader: Any, device: torch.device) -> dict[str, Any]:
    """``--eval-only``: the checkpoint's model on the validation set, logged to a W&B run of its own."""
    rank, world = idist.get_rank(), idist.get_world_size()
    ckpt = load_checkpoint(config["checkpoint"], SCRIPT)
    saved = ckpt.get("meta", {})
    width = saved.get("config", {}).get("width", config["width"])  # the checkpoint knows its model's width
    model = ShapesDetector(NUM_CLASSES, width=width)
    model.load_state_dict(ckpt["model"])
    evaluator = create_evaluator(_placed(model, device, world), config, device)
    attach_progress(config, None, evaluator)
    wandb_logger = setup_eval_wandb(config, evaluator, saved)
    state = evaluator.run(val_loader)
    run_dir = close_wandb(wandb_logger)
    if rank == 0:
        print(state.metrics["coco"])
        print(f"checkpoint: {config['checkpoint']} (epoch {saved.get('epoch')})")
    return {
        "metrics": coco_numbers(state.metrics),
        "checkpoint": str(config["checkpoint"]),
        "checkpoint_metrics": saved.get("metrics"),
        "trained_by_wandb_run": saved.get("wandb_run_id"),
        "run_dir": config["run_dir"],
        "wandb_dir": run_dir,
        "world_size": world,
    }


def train(config: dict[str, Any], val_loader: Any, device: torch.device) -> dict[str, Any]:
    """Train, evaluating (and keeping the best-AP checkpoint) every epoch."""
    rank, world = idist.get_rank(), idist.get_world_size()
    train_ds = ShapesDataset(config["train_images"], config["image_size"], config["seed"], "train", hflip=True)
    train_loader = idist.auto_dataloader(
        train_ds, batch_size=config["batch_size"], shuffle=True, drop_last=True, collate_fn=collate, num_workers=0
    )
    model = _placed(ShapesDetector(NUM_CLASSES, width=config["width"]), device, world)
    optimizer = idist.auto_optim(
        torch.optim.AdamW(model.parameters(), lr=config["lr"], weight_decay=config["weight_decay"])
    )
    criterion = DetectionLoss(NUM_CLASSES)

    def train_step(engine: Engine, batch: tuple[torch.Tensor, list[dict[str, Any]]]) -> float:
        model.train()
        images, targets = batch
        outputs = model(images.to(device, non_blocking=True))
        loss, _ = criterion(outputs, to_device(targets, device))
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
        optimizer.step()
        return loss.item()

    trainer = Engine(train_step)
    trainer.logger = setup_logger("trainer", level=30)
    iters_per_epoch = len(train_loader)
    total_iters = config["epochs"] * iters_per_epoch
    warmup = max(2, min(config["warmup_iters"], total_iters // 4))
    cosine = CosineAnnealingScheduler(
        optimizer,
        "lr",
        start_value=config["lr"],
        end_value=config["lr"] * 0.02,
        cycle_size=max(2, total_iters - warmup),
    )
    scheduler = create_lr_scheduler_with_warmup(cosine, warmup_start_value=config["lr"] * 0.05, warmup_duration=warmup)
    trainer.add_event_handler(Events.ITERATION_STARTED, scheduler)

    # evaluate (and checkpoint) an exponential moving average of the weights: smoother than the raw weights
    if config["ema"]:
        ema = EMAHandler(
            model, momentum=config["ema"], momentum_warmup=0.2, warmup_iters=warmup, handle_buffers="update"
        )
        ema.attach(trainer, name="ema_momentum", event=Events.ITERATION_COMPLETED)
        eval_model = ema.ema_model
    else:
        eval_model = model
    evaluator = create_evaluator(eval_model, config, device)
    history: list[dict[str, float]] = []

    @trainer.on(Events.EPOCH_COMPLETED)
    def validate(engine: Engine) -> None:
        t0 = time.time()
        same_on_every_rank(eval_model)  # what is evaluated is what rank 0 saves
        state = evaluator.run(val_loader)
        history.append(coco_numbers(state.metrics))
        if rank == 0:
            m = history[-1]
            say(
                f"epoch {engine.state.epoch:3d}: AP {m['AP']:.4f}  AP50 {m['AP50']:.4f}  AP75 {m['AP75']:.4f}  "
                f"APs {m['APs']:.4f}  APm {m['APm']:.4f}  APl {m['APl']:.4f}  AR100 {m['AR100']:.4f}  "
                f"(eval {time.time() - t0:.1f} s, total {time.time() - start:.0f} s)"
            )

    meta = RunMeta({k: config[k] for k in MODEL_CONFIG_KEYS}, trainer, evaluator)
    best = keep_best_checkpoint(config, trainer, evaluator, {"model": eval_model, "meta": meta})
    if config["early_stopping"]:
        stopper = EarlyStopping(config["early_stopping"], lambda engine: engine.state.metrics["AP"], trainer)
        evaluator.add_event_handler(Events.COMPLETED, stopper)

    attach_progress(config, trainer, evaluator, loss=lambda loss: loss)

    wandb_logger = setup_wandb(config, trainer, evaluator, optimizer)
    meta.wandb_run_id = wandb_run_id(wandb_logger)
    start = time.time()

    trainer.run(train_loader, max_epochs=config["epochs"])
    elapsed = time.time() - start

    run_dir = close_wandb(wandb_logger)
    checkpoint = str(best.last_checkpoint) if best.last_checkpoint is not None else None
    if rank == 0:
        print(evaluator.state.metrics["coco"])
        print(f"trained {trainer.state.epoch} epochs in {elapsed:.1f} s on {world} process(es), device {device}")
        print(f"best checkpoint: {checkpoint}")
    return {
        "metrics": history[-1],
        "checkpoint": checkpoint,
        "checkpoint_metrics": best_metrics(history),
        "run_dir": config["run_dir"],
        "wandb_dir": run_dir,
        "wandb_run_id": meta.wandb_run_id,
        "history": history,
        "epochs_run": trainer.state.epoch,
        "train_seconds": elapsed,
        "world_size": world,
    }


def _results_name(config: dict[str, Any]) -> str:
    return "eval_results.json" if config["eval_only"] else "results.json"


def check_config(config: dict[str, Any]) -> dict[str, Any]:
    """The config with ``checkpoint`` resolved to a file (a run folder names its best checkpoint).

    Raises:
        ValueError, FileNotFoundError, FileExistsError: see :func:`skeleton.check_run_config`.
    """
    return check_run_config(config, SCRIPT)


def run(config: dict[str, Any] | argparse.Namespace | None = None) -> dict[str, Any]:
    """Train (or, with ``eval_only``, evaluate) and return a dict with ``metrics`` (the 12 COCO numbers of the
    last evaluation), ``checkpoint`` (best-AP checkpoint path), ``checkpoint_metrics``, ``run_dir`` (this run's
    folder) and ``wandb_dir``; the same dict is in the run folder's results.json (eval_results.json).

    Raises:
        ValueError, FileNotFoundError, FileExistsError: see :func:`check_config`.
    """
    cfg = check_config(get_config(config))
    quiet_ignite_info()
    nproc = cfg["nproc_per_node"]
    use_cuda = torch.cuda.is_available() and cfg["device"] != "cpu"
    processes = nproc or int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    if use_cuda and processes > torch.cuda.device_count():  # NCCL takes one GPU per process
        print(f"{processes} processes but {torch.cuda.device_count()} GPU(s): training on the CPU with gloo")
        if not nproc:  # started by torchrun: too late to hide the GPUs from this process
            print("(under torchrun, launch with CUDA_VISIBLE_DEVICES= so that gloo ranks stay off the GPU)")
        use_cuda, cfg["device"] = False, "cpu"
    backend = "nccl" if use_cuda else "gloo"
    torchrun = not nproc and int(os.environ.get("WORLD_SIZE", "1")) > 1
    # under torchrun every process runs this function: rank 0 makes the folder, in training()
    cfg["run_dir"] = None if torchrun else str(make_run_dir(cfg))
    if nproc and nproc > 1:
        parallel = idist.Parallel(backend=backend, nproc_per_node=nproc)
    elif torchrun:
        parallel = idist.Parallel(backend=backend)
    else:
        parallel = idist.Parallel(backend=None)
    # Ignite's gloo groups put rank r on GPU r whenever CUDA is visible: spawned CPU workers must not see it.
    with _gpus_hidden(not use_cuda and bool(nproc and nproc > 1) and torch.cuda.is_available()), parallel:
        parallel.run(training, cfg)  # in this process unless spawned, so training() may fill in cfg["run_dir"]
    return json.loads((Path(cfg["run_dir"]) / _results_name(cfg)).read_text())


@contextlib.contextmanager
def _gpus_hidden(hide: bool) -> Iterator[None]:
    """CUDA_VISIBLE_DEVICES empty for the processes started inside, when ``hide``."""
    if not hide:
        yield
        return
    saved = os.environ.get("CUDA_VISIBLE_DEVICES")
    os.environ["CUDA_VISIBLE_DEVICES"] = ""
    try:
        yield
    finally:
        if saved is None:
            del os.environ["CUDA_VISIBLE_DEVICES"]
        else:
            os.environ["CUDA_VISIBLE_DEVICES"] = saved


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    try:
        check_config(get_config(args))
    except (ValueError, FileNotFoundError, FileExistsError) as error:  # a mistyped path: one line, no traceback
        print(f"{SCRIPT}: error: {error}", file=sys.stderr)
        return 2
    print_versions()
    run(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
