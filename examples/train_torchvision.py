"""Fine-tune a torchvision detector on a COCO-format folder, with an exact COCO metric and W&B logging.

The model is Faster R-CNN with a MobileNet-v3 large FPN backbone by default (``--model`` picks another
torchvision detector). It starts from scratch, or from a local state dict given with ``--weights``;
nothing is downloaded. The data is a folder of images and a COCO ``instances.json``; crowd boxes are
left out of the training targets and kept for evaluation.

``--model maskrcnn_resnet50_fpn`` trains Mask R-CNN on the annotations' ``segmentation`` and evaluates
its masks (``CocoMetric(iou_type="segm")``); ``--model keypointrcnn_resnet50_fpn`` trains Keypoint R-CNN
on their ``keypoints`` (K points, named by the category's ``keypoints``) and evaluates them
(``iou_type="keypoints"``, OKS with ``--keypoint-sigmas``). The shapes export carries both: masks in
``instances.json``, and the squares with their corners as keypoints in ``keypoints.json``.

This example needs torchvision, which on this project's machines only works as::

    pip install torch==2.14.1 torchvision==0.29.1

Usage::

    # a COCO-format folder to try it on: 200 synthetic shapes images
    python examples/shapes_data.py --export-coco /tmp/shapes --num-images 200 --split train
    python examples/shapes_data.py --export-coco /tmp/shapes_val --num-images 50 --split val

    # train (W&B in offline mode), evaluate every epoch, then print the COCO summary
    python examples/train_torchvision.py --images /tmp/shapes/images --annotations /tmp/shapes/instances.json \\
        --val-images /tmp/shapes_val/images --val-annotations /tmp/shapes_val/instances.json --image-size 160

    # fine-tune from local weights (a state dict; heads whose shape differs are left initialised)
    python examples/train_torchvision.py --images ... --annotations ... --weights fasterrcnn_mobilenet.pth

    # a smoke run: 2 epochs of 3 iterations
    python examples/train_torchvision.py --images ... --annotations ... --epochs 2 --max-iterations 3

    # Mask R-CNN (mask AP), and Keypoint R-CNN on the squares' corners (keypoint AP)
    python examples/train_torchvision.py --model maskrcnn_resnet50_fpn --images /tmp/shapes/images \
        --annotations /tmp/shapes/instances.json --val-images /tmp/shapes_val/images \
        --val-annotations /tmp/shapes_val/instances.json --image-size 160
    python examples/train_torchvision.py --model keypointrcnn_resnet50_fpn --images /tmp/shapes/images \
        --annotations /tmp/shapes/keypoints.json --val-images /tmp/shapes_val/images \
        --val-annotations /tmp/shapes_val/keypoints.json --image-size 160

    # evaluate the best checkpoint of the last training run (or name a run folder or a .pt file)
    python examples/train_torchvision.py --eval-only --checkpoint runs/torchvision/latest \\
        --val-images /tmp/shapes_val/images --val-annotations /tmp/shapes_val/instances.json --image-size 160

    # upload an offline run afterwards (the script prints the command)
    wandb sync runs/torchvision/run-1/wandb/offline-run-...

Each run gets a folder of its own under ``--output-dir``: ``runs/torchvision/run-N`` for training
(``latest`` links the last one), ``eval-N`` for ``--eval-only``, printed at the start and the end.
It holds the checkpoint, ``metrics.json`` (the final numbers) and the W&B run; ``--eval-only`` logs to
a W&B run of its own (job type ``eval``). The environment variables ``WANDB_MODE``, ``WANDB_DIR`` and
``WANDB_PROJECT`` are used when the corresponding flags are not given.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from ignite.engine import Engine, Events
from ignite.handlers import CosineAnnealingScheduler, create_lr_scheduler_with_warmup
from ignite.utils import manual_seed, setup_logger
from PIL import Image
from run_dirs import make_run_dir
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
    wandb_run_id,
)
from torch.utils.data import DataLoader, Dataset

from ignite_det import attach_wandb_logging

PROJECT = "ignite-det-torchvision"
SCRIPT = "train_torchvision.py"
TORCHVISION_MISSING = "this example needs torchvision: pip install torch==2.14.1 torchvision==0.29.1 (see README)"
# torchvision detectors whose builders take min_size/max_size (the model's own resize)
MODELS = (
    "fasterrcnn_mobilenet_v3_large_fpn",
    "fasterrcnn_mobilenet_v3_large_320_fpn",
    "fasterrcnn_resnet50_fpn",
    "fasterrcnn_resnet50_fpn_v2",
    "retinanet_resnet50_fpn",
    "retinanet_resnet50_fpn_v2",
    "fcos_resnet50_fpn",
    "maskrcnn_resnet50_fpn",
    "maskrcnn_resnet50_fpn_v2",
    "keypointrcnn_resnet50_fpn",
)
DEFAULT_CORNER_SIGMA = 0.05  # OKS constant of a keypoint without COCO's person sigmas: a sharp corner
Batch = tuple[list[torch.Tensor], list[dict[str, Any]]]


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", default=None, help="folder of the training images")
    parser.add_argument("--annotations", default=None, help="COCO instances json of the training images")
    parser.add_argument("--val-images", default=None, help="folder of the validation images (default: --images)")
    parser.add_argument("--val-annotations", default=None, help="COCO json of the validation (default: --annotations)")
    parser.add_argument("--model", default="fasterrcnn_mobilenet_v3_large_fpn", choices=MODELS)
    parser.add_argument("--weights", default=None, help="local state dict to start from (default: from scratch)")
    parser.add_argument("--epochs", type=int, default=12, help="training epochs")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--lr", type=float, default=0.005, help="peak learning rate (SGD, momentum 0.9)")
    parser.add_argument("--weight-decay", type=float, default=1e-4)
    parser.add_argument("--warmup-iters", type=int, default=100, help="linear warm-up iterations")
    parser.add_argument(
        "--image-size", type=int, default=800, help="min_size of the model's transform (max_size: 5/3 of it)"
    )
    parser.add_argument("--max-iterations", type=int, default=None, help="at most N training iterations per epoch")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--num-workers", type=int, default=2, help="DataLoader worker processes")
    parser.add_argument(
        "--keypoint-sigmas",
        type=float,
        nargs="+",
        default=None,
        help=f"keypoint models: an OKS sigma per keypoint (default: COCO's for 17 points, else {DEFAULT_CORNER_SIGMA})",
    )
    add_run_arguments(parser, output_dir="runs/torchvision", project=PROJECT, results="metrics.json")
    return parser


def get_config(config: dict[str, Any] | argparse.Namespace | None = None) -> dict[str, Any]:
    """The parser's defaults, updated with ``config`` (dashes or underscores in keys)."""
    return config_from(get_args_parser(), config)


# ----------------------------------------------------------------------------- data


class CocoDetectionDataset(Dataset):
    """Images of a COCO ``instances`` json as ``(image, target)``, in torchvision's detection convention.

    ``image`` is a float (3, H, W) tensor in [0, 1]; ``target`` has ``boxes`` (float32 (M, 4), xyxy pixels),
    ``labels`` (int64 (M,), the category ids), ``iscrowd`` (int64 (M,)), ``area`` (float32 (M,), the json's
    ``area``, box area where absent) and ``image_id`` (int); with ``task="segm"`` also ``masks`` (uint8
    (M, H, W), the ``segmentation`` rasterised as pycocotools does), with ``task="keypoints"`` also
    ``keypoints`` (float32 (M, K, 3)). With ``train=True`` crowd regions and boxes without area are dropped,
    as torchvision's detection models require; evaluation targets keep every box.
    """

    def __init__(
        self, images_dir: str | os.PathLike, annotations: str | os.PathLike, train: bool = False, task: str = "bbox"
    ) -> None:
        data = json.loads(Path(annotations).read_text())
        self.root = Path(images_dir)
        self.train = train
        self.task = task
        self.num_keypoints = max((len(c.get("keypoints", [])) for c in data["categories"]), default=0)
        if task == "keypoints" and self.num_keypoints == 0:
            raise ValueError(
                f"{annotations}: no category names keypoints (give the keypoints file, e.g. keypoints.json)"
            )
        self.images = sorted(data["images"], key=lambda image: image["id"])
        self.class_names = {int(c["id"]): str(c["name"]) for c in data["categories"]}
        if not self.class_names or min(self.class_names) < 1:
            ids = sorted(self.class_names)
            raise ValueError(f"{annotations}: category ids must be positive (0 is the background), got {ids}")
        self._annotations: dict[int, list[dict[str, Any]]] = defaultdict(list)
        for ann in sorted(data["annotations"], key=lambda a: a["id"]):
            self._annotations[ann["image_id"]].append(ann)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict[str, Any]]:
        info = self.images[index]
        with Image.open(self.root / info["file_name"]) as im:
            image = torch.from_numpy(np.array(im.convert("RGB"))).permute(2, 0, 1).float().div_(255.0)
        anns = self._annotations.get(info["id"], [])
        if self.train:
            anns = [a for a in anns if not a.get("iscrowd", 0) and a["bbox"][2] > 0 and a["bbox"][3] > 0]
        boxes = torch.tensor([a["bbox"] for a in anns], dtype=torch.float64).reshape(-1, 4)
        boxes[:, 2:] += boxes[:, :2]  # xywh -> xyxy
        target = {
            "boxes": boxes.float(),
            "labels": torch.tensor([a["category_id"] for a in anns], dtype=torch.int64),
            "iscrowd": torch.tensor([a.get("iscrowd", 0) for a in anns], dtype=torch.int64),
            "area": torch.tensor([a.get("area", a["bbox"][2] * a["bbox"][3]) for a in anns], dtype=torch.float32),
            "image_id": int(info["id"]),
        }
        if self.task == "segm":
            target["masks"] = self._masks(anns, info)
        elif self.task == "keypoints":
            points = [a.get("keypoints", [0] * 3 * self.num_keypoints) for a in anns]
            target["keypoints"] = torch.tensor(points, dtype=torch.float32).reshape(-1, self.num_keypoints, 3)
        return image, target

    @staticmethod
    def _masks(anns: list[dict[str, Any]], info: dict[str, Any]) -> torch.Tensor:
        """uint8 (M, H, W): each ``segmentation`` (RLE or polygons) as pycocotools' ``annToMask`` reads it."""
        from pycocotools import mask as coco_mask  # an ignite-det dependency

        from ignite_det.cli.segmentation import to_rles

        height, width = int(info["height"]), int(info["width"])
        if not anns:
            return torch.zeros((0, height, width), dtype=torch.uint8)
        rles = to_rles([a["segmentation"] for a in anns], [(height, width)] * len(anns))
        return torch.from_numpy(np.ascontiguousarray(coco_mask.decode(rles).transpose(2, 0, 1)))


def collate(batch: list[tuple[torch.Tensor, dict[str, Any]]]) -> Batch:
    """Lists of images and targets: torchvision's detectors take images of different sizes."""
    return [b[0] for b in batch], [b[1] for b in batch]


def make_loader(dataset: CocoDetectionDataset, config: dict[str, Any], train: bool) -> DataLoader:
    return DataLoader(
        dataset,
        batch_size=config["batch_size"],
        shuffle=train,
        drop_last=train and len(dataset) >= config["batch_size"],
        collate_fn=collate,
        num_workers=config["num_workers"],
    )


# ----------------------------------------------------------------------------- model


def detection_models() -> Any:
    """``torchvision.models.detection``, or an ImportError that says how to install it."""
    try:
        from torchvision.models import detection
    except Exception as error:  # a torchvision built for another torch fails with RuntimeError as well
        raise ImportError(TORCHVISION_MISSING) from error
    return detection


def task_of(model: str) -> str:
    """What a model predicts, as CocoMetric's ``iou_type``: masks, keypoints or boxes."""
    return "segm" if model.startswith("maskrcnn") else "keypoints" if model.startswith("keypointrcnn") else "bbox"


def build_model(name: str, num_classes: int, image_size: int, num_keypoints: int = 0) -> torch.nn.Module:
    """A torchvision detector with ``num_classes`` outputs (background included), randomly initialised."""
    builder = getattr(detection_models(), name)
    max_size = round(image_size * 1333 / 800)
    extra = {"num_keypoints": num_keypoints} if task_of(name) == "keypoints" else {}
    # weights=None and weights_backbone=None: nothing is downloaded
    return builder(
        weights=None,
        weights_backbone=None,
        num_classes=num_classes,
        min_size=image_size,
        max_size=max_size,
        **extra,
    )


def load_weights(model: torch.nn.Module, path: str) -> None:
    """Load a local state dict (or a checkpoint of this script); tensors whose shape differs are skipped."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    state = state.get("model", state)
    own = model.state_dict()
    kept = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    skipped = sorted(set(state) - set(kept))
    missing = sorted(set(own) - set(kept))
    model.load_state_dict(kept, strict=False)
    print(f"loaded {len(kept)} tensors from {path}; skipped {len(skipped)}; {len(missing)} left initialised")


# ----------------------------------------------------------------------------- engines


def create_trainer(model: torch.nn.Module, optimizer: torch.optim.Optimizer, device: torch.device) -> Engine:
    def train_step(engine: Engine, batch: Batch) -> dict[str, float]:
        model.train()
        images, targets = batch
        losses = model([image.to(device) for image in images], to_device(targets, device))
        loss = sum(losses.values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return {"loss": loss.item(), **{k: v.item() for k, v in losses.items()}}

    trainer = Engine(train_step)
    trainer.logger = setup_logger("trainer", level=30)
    return trainer


def create_evaluator(
    model: torch.nn.Module,
    config: dict[str, Any],
    class_names: dict[int, str],
    device: torch.device,
    num_keypoints: int = 0,
) -> Engine:
    @torch.no_grad()
    def eval_step(engine: Engine, batch: Batch) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        model.eval()
        images, targets = batch
        outputs = model([image.to(device) for image in images])
        return [{k: v.cpu() for k, v in o.items()} for o in outputs], targets

    evaluator = Engine(eval_step)
    evaluator.logger = setup_logger("evaluator", level=30)
    task = task_of(config["model"])
    sigmas = keypoint_sigmas(config, num_keypoints) if task == "keypoints" else None
    attach_coco_metric(evaluator, config, class_names, iou_type=task, keypoint_sigmas=sigmas)
    return evaluator


def keypoint_sigmas(config: dict[str, Any], num_keypoints: int) -> list[float] | None:
    """``--keypoint-sigmas``, else COCO's person sigmas (None) for 17 points, else a corner's for each.

    Raises:
        ValueError: if ``--keypoint-sigmas`` has another number of values than the keypoints.
    """
    given = config["keypoint_sigmas"]
    if given is not None and len(given) != num_keypoints:
        raise ValueError(f"--keypoint-sigmas has {len(given)} values for {num_keypoints} keypoints")
    if given is not None:
        return list(given)
    return None if num_keypoints == 17 else [DEFAULT_CORNER_SIGMA] * num_keypoints


def add_lr_schedule(
    trainer: Engine, optimizer: torch.optim.Optimizer, config: dict[str, Any], total_iters: int
) -> None:
    """Linear warm-up, then cosine decay to 2% of the peak, per iteration."""
    warmup = max(2, min(config["warmup_iters"], total_iters // 4))
    lr = config["lr"]
    cosine = CosineAnnealingScheduler(optimizer, "lr", lr, lr * 0.02, cycle_size=max(2, total_iters - warmup))
    scheduler = create_lr_scheduler_with_warmup(cosine, warmup_start_value=lr * 0.01, warmup_duration=warmup)
    trainer.add_event_handler(Events.ITERATION_STARTED, scheduler)


def setup_wandb(
    config: dict[str, Any],
    trainer: Engine,
    evaluator: Engine,
    optimizer: torch.optim.Optimizer,
    class_names: dict[int, str],
) -> Any:
    """Create the W&B logger of a training run and attach it. Returns the logger, or None when disabled."""
    run_config = {k: v for k, v in config.items() if k != "checkpoint"}
    wandb_logger = create_wandb_logger(
        config, run_config, PROJECT, job_type="train", tags=["torchvision", config["model"], "ignite-det"]
    )
    if wandb_logger is None:
        return None
    every = Events.ITERATION_COMPLETED(every=config["log_every"])
    wandb_logger.attach_output_handler(trainer, event_name=every, tag="train", output_transform=lambda out: out)
    wandb_logger.attach_opt_params_handler(trainer, event_name=every, optimizer=optimizer)
    # the 12 COCO numbers, the per-class table, PR/F1 curves, confusion matrix and images, at the trainer's step
    attach_wandb_logging(wandb_logger, evaluator, trainer=trainer, class_names=class_names)
    return wandb_logger


def setup_eval_wandb(
    config: dict[str, Any], evaluator: Engine, class_names: dict[int, str], saved: dict[str, Any]
) -> Any:
    """W&B for ``--eval-only``: a run of its own (job type ``eval``) with the same report and images as
    training, whose config names the checkpoint, its numbers and the W&B run that trained it."""
    run_config = dict(config, checkpoint_metrics=saved.get("metrics"), trained_by_wandb_run=saved.get("wandb_run_id"))
    model = saved.get("config", {}).get("model", config["model"])
    wandb_logger = create_wandb_logger(
        config,
        run_config,
        PROJECT,
        job_type="eval",
        tags=["torchvision", model, "ignite-det", "eval"],
        notes=f"--eval-only --checkpoint {config['checkpoint']}",
    )
    if wandb_logger is not None:
        attach_wandb_logging(wandb_logger, evaluator, class_names=class_names)
    return wandb_logger


# ----------------------------------------------------------------------------- run


def evaluate_checkpoint(config: dict[str, Any], val_ds: CocoDetectionDataset, device: torch.device) -> dict[str, Any]:
    """``--eval-only``: the checkpoint's model on the validation set, logged to a W&B run of its own."""
    ckpt = load_checkpoint(config["checkpoint"])
    saved = ckpt.get("meta", {}) if "model" in ckpt else {}
    saved_config = saved.get("config", {})
    num_classes = saved_config.get("num_classes", max(val_ds.class_names) + 1)
    num_keypoints = saved_config.get("num_keypoints", val_ds.num_keypoints)
    model = build_model(saved_config.get("model", config["model"]), num_classes, config["image_size"], num_keypoints)
    model.load_state_dict(ckpt.get("model", ckpt))
    evaluator = create_evaluator(model.to(device), config, val_ds.class_names, device, num_keypoints)
    attach_progress(config, None, evaluator)
    wandb_logger = setup_eval_wandb(config, evaluator, val_ds.class_names, saved)
    state = evaluator.run(make_loader(val_ds, config, train=False))
    run_dir = close_wandb(wandb_logger)
    print(state.metrics["coco"])
    print(f"checkpoint: {config['checkpoint']}")
    return {
        "metrics": coco_numbers(state.metrics),
        "checkpoint": str(config["checkpoint"]),
        "checkpoint_metrics": saved.get("metrics") or None,
        "trained_by_wandb_run": saved.get("wandb_run_id"),
        "run_dir": config["run_dir"],
        "wandb_dir": run_dir,
    }


def train(config: dict[str, Any], val_ds: CocoDetectionDataset, device: torch.device) -> dict[str, Any]:
    train_ds = CocoDetectionDataset(config["images"], config["annotations"], train=True, task=val_ds.task)
    class_names = val_ds.class_names
    num_classes = max(max(train_ds.class_names), max(class_names)) + 1  # K + 1 when the ids are 1..K
    num_keypoints = val_ds.num_keypoints if val_ds.task == "keypoints" else 0
    model = build_model(config["model"], num_classes, config["image_size"], num_keypoints)
    if config["weights"]:
        load_weights(model, config["weights"])
    model.to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=config["lr"], momentum=0.9, weight_decay=config["weight_decay"])

    train_loader = make_loader(train_ds, config, train=True)
    val_loader = make_loader(val_ds, config, train=False)
    epoch_length = min(len(train_loader), config["max_iterations"] or len(train_loader))
    trainer = create_trainer(model, optimizer, device)
    add_lr_schedule(trainer, optimizer, config, config["epochs"] * epoch_length)
    evaluator = create_evaluator(model, config, class_names, device, num_keypoints)
    history: list[dict[str, float]] = []

    @trainer.on(Events.EPOCH_COMPLETED)
    def validate(engine: Engine) -> None:
        t0 = time.time()
        state = evaluator.run(val_loader)
        history.append(coco_numbers(state.metrics))
        m = history[-1]
        recall = "AR100" if "AR100" in m else "AR"  # keypoints: AR at 20 detections
        summary = f"AP {m['AP']:.4f}  AP50 {m['AP50']:.4f}  {recall} {m[recall]:.4f}  (eval {time.time() - t0:.1f} s)"
        say(f"epoch {engine.state.epoch:3d}: {summary}")

    model_config = {"model": config["model"], "num_classes": num_classes, "image_size": config["image_size"]}
    meta = RunMeta({**model_config, "num_keypoints": num_keypoints}, trainer, evaluator)
    best = keep_best_checkpoint(config, trainer, evaluator, {"model": model, "meta": meta})
    attach_progress(config, trainer, evaluator, loss=lambda out: out["loss"])
    wandb_logger = setup_wandb(config, trainer, evaluator, optimizer, class_names)
    meta.wandb_run_id = wandb_run_id(wandb_logger)

    start = time.time()
    trainer.run(train_loader, max_epochs=config["epochs"], epoch_length=epoch_length)
    elapsed = time.time() - start
    run_dir = close_wandb(wandb_logger)
    print(evaluator.state.metrics["coco"])
    print(f"trained {trainer.state.epoch} epochs of {epoch_length} iterations in {elapsed:.1f} s on {device}")
    return {
        "metrics": history[-1],
        "checkpoint": str(best.last_checkpoint) if best.last_checkpoint is not None else None,
        "checkpoint_metrics": best_metrics(history),
        "run_dir": config["run_dir"],
        "wandb_dir": run_dir,
        "wandb_run_id": meta.wandb_run_id,
        "history": history,
        "train_seconds": elapsed,
    }


def check_config(cfg: dict[str, Any]) -> dict[str, Any]:
    """The config with ``checkpoint`` resolved to a file (a run folder names its best checkpoint).

    Raises:
        ValueError, FileNotFoundError, FileExistsError: with a one-line message, when the data or checkpoint
            options are missing or unusable, or ``--run-name`` exists already.
    """
    cfg = check_run_config(cfg, script=None)  # a plain state dict is a checkpoint too
    if not cfg["eval_only"] and not (cfg["images"] and cfg["annotations"]):
        raise ValueError("training needs --images DIR and --annotations JSON")
    if not ((cfg["val_images"] or cfg["images"]) and (cfg["val_annotations"] or cfg["annotations"])):
        raise ValueError("evaluation needs --val-images DIR and --val-annotations JSON (or --images/--annotations)")
    return cfg


def run(config: dict[str, Any] | argparse.Namespace | None = None) -> dict[str, Any]:
    """Train (or, with ``eval_only``, evaluate) and return a dict with ``metrics`` (the 12 COCO numbers of the
    last evaluation), ``checkpoint`` (best-AP checkpoint path), ``checkpoint_metrics``, ``run_dir`` (this run's
    folder) and ``wandb_dir``. The dict is also written to the run folder's ``metrics.json``.

    Raises:
        ImportError: if torchvision is missing or does not work with the installed torch.
        ValueError, FileNotFoundError, FileExistsError: see :func:`check_config`.
    """
    cfg = get_config(config)
    quiet_ignite_info()
    detection_models()
    cfg = check_config(cfg)
    val_images = cfg["val_images"] or cfg["images"]
    val_annotations = cfg["val_annotations"] or cfg["annotations"]
    if cfg["threads"]:
        torch.set_num_threads(cfg["threads"])
    manual_seed(cfg["seed"])
    device = torch.device(cfg["device"] or ("cuda" if torch.cuda.is_available() else "cpu"))
    model_name = cfg["model"]
    if cfg["eval_only"]:  # the checkpoint says which model it holds
        model_name = load_checkpoint(cfg["checkpoint"]).get("meta", {}).get("config", {}).get("model", model_name)
    val_ds = CocoDetectionDataset(val_images, val_annotations, train=False, task=task_of(model_name))
    if val_ds.task == "keypoints":
        keypoint_sigmas(cfg, val_ds.num_keypoints)  # a wrong count is refused before anything runs
    cfg["run_dir"] = str(make_run_dir(cfg))

    result = evaluate_checkpoint(cfg, val_ds, device) if cfg["eval_only"] else train(cfg, val_ds, device)
    (Path(cfg["run_dir"]) / "metrics.json").write_text(json.dumps(result, indent=2))
    return result


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    try:
        check_config(get_config(args))
        detection_models()
    except (ValueError, FileNotFoundError, FileExistsError, ImportError) as error:  # one line, no traceback
        print(f"{SCRIPT}: error: {error}", file=sys.stderr)
        return 2
    print_versions()
    result = run(args)
    if result["checkpoint"] and not args.eval_only:
        print(f"best checkpoint: {result['checkpoint']}")
    print_wandb_dir(vars(args), result["wandb_dir"])
    print(f"metrics: {Path(result['run_dir']) / 'metrics.json'}")
    print(f"run folder: {result['run_dir']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
