"""The smallest complete use of ignite-det: train a detector with an Ignite ``Engine``, evaluate it every
epoch with ``CocoMetric`` and log the COCO report (numbers, per-class table, curves, images) to W&B.
Data and model are the shapes example's; ``train_shapes.py`` adds checkpoints, EMA and distribution.

Usage::

    python examples/minimal.py                        # W&B in offline mode: no account needed
    python examples/minimal.py --epochs 10 --wandb-mode online
"""

from __future__ import annotations

import sys
from argparse import ArgumentParser, Namespace

import torch
from ignite.engine import Engine, Events
from ignite.handlers import ProgressBar
from ignite.handlers.wandb_logger import WandBLogger
from shapes_data import CLASS_NAMES, NUM_CLASSES, ShapesDataset, collate
from shapes_model import DetectionLoss, ShapesDetector, decode
from torch.utils.data import DataLoader

from ignite_det import CocoMetric, CocoResult, attach_wandb_logging


def get_data_loaders(config: Namespace) -> tuple[DataLoader, DataLoader]:
    train = ShapesDataset(config.train_images, config.image_size, split="train", hflip=True)
    val = ShapesDataset(config.val_images, config.image_size, split="val")
    train_loader = DataLoader(train, batch_size=config.batch_size, shuffle=True, drop_last=True, collate_fn=collate)
    return train_loader, DataLoader(val, batch_size=config.batch_size, collate_fn=collate)


def run(config: Namespace) -> CocoResult:
    torch.manual_seed(config.seed)
    train_loader, val_loader = get_data_loaders(config)
    model = ShapesDetector(NUM_CLASSES, width=config.width)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr)
    criterion = DetectionLoss(NUM_CLASSES)

    def train_step(engine: Engine, batch: tuple) -> float:
        model.train()
        images, targets = batch
        loss, _ = criterion(model(images), targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return loss.item()

    @torch.no_grad()
    def eval_step(engine: Engine, batch: tuple) -> tuple[list, list]:
        model.eval()
        images, targets = batch
        return decode(model(images), config.image_size), targets  # (y_pred, y): one dict per image each

    trainer, evaluator = Engine(train_step), Engine(eval_step)
    CocoMetric(box_format="xyxy", class_names=CLASS_NAMES).attach(evaluator, "coco")
    trainer.add_event_handler(Events.EPOCH_COMPLETED, lambda: evaluator.run(val_loader))

    wandb_logger = WandBLogger(project="ignite-det-minimal", mode=config.wandb_mode, dir=config.wandb_dir)
    every = Events.ITERATION_COMPLETED(every=config.log_interval)
    wandb_logger.attach_output_handler(trainer, every, tag="train", output_transform=lambda loss: {"loss": loss})
    # the COCO numbers, per-class table, curves, confusion matrix and sample images, at the trainer's iteration
    attach_wandb_logging(wandb_logger, evaluator, trainer=trainer, class_names=CLASS_NAMES)

    @evaluator.on(Events.COMPLETED)
    def print_numbers(engine: Engine) -> None:
        m = engine.state.metrics
        print(f"epoch {trainer.state.epoch}: AP {m['AP']:.4f}  AP50 {m['AP50']:.4f}  AR100 {m['AR100']:.4f}")

    if sys.stderr.isatty():  # in a log file, the epoch lines are enough
        ProgressBar(persist=False).attach(trainer, output_transform=lambda loss: {"loss": loss})
    trainer.run(train_loader, max_epochs=config.epochs)
    wandb_logger.close()
    return evaluator.state.metrics["coco"]


def get_args_parser() -> ArgumentParser:
    parser = ArgumentParser(description="Train a small detector, with COCO metrics logged to W&B")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--train-images", type=int, default=512)
    parser.add_argument("--val-images", type=int, default=128)
    parser.add_argument("--image-size", type=int, default=96)
    parser.add_argument("--width", type=int, default=16, help="model width (channels at stride 4)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--log-interval", type=int, default=10, help="log the training loss every N iterations")
    parser.add_argument("--wandb-mode", default="offline", choices=["online", "offline", "disabled"])
    parser.add_argument("--wandb-dir", default=None, help="where W&B writes its run (default: ./wandb)")
    return parser


if __name__ == "__main__":
    print(run(get_args_parser().parse_args()))
