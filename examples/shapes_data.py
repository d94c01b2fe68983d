"""A synthetic, deterministic object-detection dataset of coloured shapes.

Every image is generated from ``(seed, split, index)`` alone, so the same seed
always gives bit-identical images and targets, and nothing is downloaded.

* 5 classes (circle, square, triangle, star, cross), each with its own colour
  family and a dark outline, on cluttered backgrounds (smooth colour gradients,
  blotches, random lines, pixel noise) in muted colours;
* objects small, medium and large in COCO's sense (area < 32**2, 32**2 - 96**2,
  > 96**2 pixels) at the chosen image size (128 px by default), sometimes
  overlapping each other (smaller shapes lie on top; none is more than 30 % hidden);
* about 10 % of the images have no object at all and some hold a crowd region:
  a cluster of tiny shapes of one class annotated as a single ``iscrowd=1`` box.

A sample is ``(image, target)``: ``image`` a float tensor (3, H, W) in [0, 1],
``target`` a torchvision-style dict with ``boxes`` float32 (M, 4) xyxy pixels,
``labels`` int64 (M,) (class ids from 1), ``iscrowd`` int64 (M,), ``area``
float32 (M,) (the shape's true pixel area, not its box area) and ``image_id``
(int, from 1). With ``shapes=True`` it also holds ``masks`` bool (M, H, W) (the crowd region's
is the union of its tiny shapes) and ``keypoints`` float32 (M, 4, 3): a square's four corners
(top-left, top-right, bottom-right, bottom-left before its rotation) with COCO's visibility (2
visible, 1 under a shape drawn on top, 0 outside the image); other shapes have none (all 0).

Export a split as a COCO-format folder (``images/*.png`` + ``instances.json``, whose annotations
carry a ``segmentation`` as compressed RLE, + ``keypoints.json``: the squares alone, with their
corners as keypoints, as COCO's person keypoints file holds the people)::

    # the validation set of train_shapes.py's defaults
    python examples/shapes_data.py --export-coco /tmp/shapes_val --num-images 192 --split val --seed 0
"""

from __future__ import annotations

import argparse
import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFilter
from torch.utils.data import Dataset

CLASS_NAMES: dict[int, str] = {1: "circle", 2: "square", 3: "triangle", 4: "star", 5: "cross"}
NUM_CLASSES = len(CLASS_NAMES)
SQUARE = 2  # the class with keypoints: its corners
CORNERS = ("top_left", "top_right", "bottom_right", "bottom_left")

# A base colour per class (RGB), jittered a little per object.
_CLASS_COLORS = {
    1: (230, 40, 40),  # red
    2: (40, 200, 60),  # green
    3: (40, 90, 240),  # blue
    4: (245, 215, 30),  # yellow
    5: (220, 50, 220),  # magenta
}
_SPLIT_IDS = {"train": 0, "val": 1, "test": 2}


def _polygon(label: int, cx: float, cy: float, w: float, h: float, angle: float) -> list[tuple[float, float]]:
    """The outline of a (non-circle) shape centred on (cx, cy), fitting roughly a w x h box."""
    if label == 2:  # square (a rectangle, slightly rotated)
        pts = [(-0.5, -0.5), (0.5, -0.5), (0.5, 0.5), (-0.5, 0.5)]
    elif label == 3:  # triangle
        pts = [(0.0, -0.5), (0.5, 0.5), (-0.5, 0.5)]
    elif label == 4:  # five-pointed star
        pts = []
        for k in range(10):
            r = 0.5 if k % 2 == 0 else 0.21
            a = -math.pi / 2 + k * math.pi / 5
            pts.append((r * math.cos(a), r * math.sin(a)))
    elif label == 5:  # cross / plus sign
        t = 0.17
        pts = [(-t, -0.5), (t, -0.5), (t, -t), (0.5, -t), (0.5, t), (t, t), (t, 0.5), (-t, 0.5), (-t, t),
               (-0.5, t), (-0.5, -t), (-t, -t)]  # fmt: skip
    else:
        raise ValueError(f"no polygon for label {label}")
    ca, sa = math.cos(angle), math.sin(angle)
    return [(cx + (x * w) * ca - (y * h) * sa, cy + (x * w) * sa + (y * h) * ca) for x, y in pts]


def _shape_mask(label: int, cx: float, cy: float, w: float, h: float, angle: float, size: int) -> np.ndarray:
    """A boolean (size, size) mask of one shape."""
    img = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(img)
    if label == 1:
        draw.ellipse([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], fill=255)
    else:
        draw.polygon(_polygon(label, cx, cy, w, h, angle), fill=255)
    return np.asarray(img) > 127


def _erode(mask: np.ndarray) -> np.ndarray:
    """3x3 binary erosion (pixels outside the image count as background)."""
    p = np.pad(mask, 1)
    out = mask.copy()
    for dy in (0, 1, 2):
        for dx in (0, 1, 2):
            out &= p[dy : dy + mask.shape[0], dx : dx + mask.shape[1]]
    return out


def _render_order(masks: list[np.ndarray]) -> list[int]:
    """Largest first (stable), so that smaller shapes are drawn on top."""
    return sorted(range(len(masks)), key=lambda i: -int(masks[i].sum()))


def _max_hidden(masks: list[np.ndarray]) -> float:
    """The largest fraction of a shape that the shapes drawn after it cover."""
    order = _render_order(masks)
    worst = 0.0
    above = np.zeros_like(masks[0])
    for i in reversed(order):
        m = masks[i]
        worst = max(worst, float((m & above).sum()) / max(int(m.sum()), 1))
        above |= m
    return worst


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A cluttered float (size, size, 3) background in [0, 255], in muted colours."""
    # smooth low-frequency colour field: upsampled random grid
    g = int(rng.integers(2, 6))
    grid = rng.uniform(60, 190, size=(g, g, 3)).astype(np.float32)
    grey = grid.mean(axis=2, keepdims=True)
    grid = grey + 0.35 * (grid - grey)  # desaturate
    field = np.asarray(
        Image.fromarray(grid.astype(np.uint8)).resize((size, size), Image.Resampling.BICUBIC), dtype=np.float32
    )
    img = Image.fromarray(field.clip(0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    # blotches and lines in muted colours
    for _ in range(int(rng.integers(3, 12))):
        c = rng.uniform(50, 200)
        col = tuple(int(np.clip(c + rng.normal(0, 20), 0, 255)) for _ in range(3))
        x, y = rng.uniform(0, size, 2)
        r = rng.uniform(2, size / 8)
        if rng.random() < 0.5:
            draw.ellipse([x - r, y - r * rng.uniform(0.3, 1), x + r, y + r], fill=col)
        else:
            x2, y2 = rng.uniform(0, size, 2)
            draw.line([x, y, x2, y2], fill=col, width=int(rng.integers(1, 4)))
    img = img.filter(ImageFilter.GaussianBlur(radius=float(rng.uniform(0.5, 1.5))))
    arr = np.asarray(img, dtype=np.float32)
    # pixel noise
    arr = arr + rng.normal(0, rng.uniform(4, 14), size=arr.shape).astype(np.float32)
    return arr


def _sample_side(rng: np.random.Generator, size: int, bucket: int) -> float:
    """A shape's box side (pixels) for a COCO size bucket; absolute sizes, capped by the image."""
    if bucket == 0:  # small: areas well below 32**2
        side = rng.uniform(10, 28)
    elif bucket == 1:  # medium
        side = rng.uniform(38, 82)
    else:  # large: box side above ~105 px, so that most shapes' areas exceed 96**2
        side = rng.uniform(108, 140)
    return float(min(side, 0.92 * size))


def generate_sample(
    seed: int, split: str, index: int, image_size: int = 128, shapes: bool = False
) -> tuple[np.ndarray, dict[str, Any]]:
    """Generate one image (uint8 H x W x 3) and its annotations (numpy), deterministically; with
    ``shapes``, also the masks and keypoints (they draw nothing from the random generator)."""
    rng = np.random.default_rng([seed, _SPLIT_IDS.get(split, 3), index])
    size = image_size
    canvas = _background(rng, size)

    u = rng.random()
    if u < 0.1:
        n_obj = 0
    else:
        n_obj = int(rng.integers(1, 6))
    has_crowd = rng.random() < 0.12
    n_large_allowed = 1

    boxes: list[list[float]] = []
    labels: list[int] = []
    areas: list[float] = []
    crowd: list[int] = []
    objects: list[tuple[np.ndarray, np.ndarray]] = []  # (mask, colour) of the annotated shapes
    corners: list[list[tuple[float, float]] | None] = []  # a square's corners, per annotated shape
    layers: list[tuple[np.ndarray, np.ndarray]] = []  # (mask, colour) of the crowd's tiny shapes

    for _ in range(n_obj):
        bucket = int(rng.choice(3, p=[0.40, 0.35, 0.25]))
        if bucket == 2:
            if n_large_allowed == 0:
                bucket = 1
            else:
                n_large_allowed -= 1
        label = int(rng.integers(1, NUM_CLASSES + 1))
        for _attempt in range(20):
            side = _sample_side(rng, size, bucket)
            aspect = math.exp(rng.uniform(-0.25, 0.25))
            w, h = side * aspect, side / aspect
            if label in (1, 4, 5):  # keep circles / stars / crosses round-ish
                h = w * math.exp(rng.uniform(-0.1, 0.1))
            cx = rng.uniform(w / 2 + 1, size - w / 2 - 1) if w + 2 < size else size / 2
            cy = rng.uniform(h / 2 + 1, size - h / 2 - 1) if h + 2 < size else size / 2
            angle = float(rng.uniform(-0.35, 0.35)) if label != 1 else 0.0
            mask = _shape_mask(label, cx, cy, w, h, angle, size)
            if mask.sum() < 16:
                continue
            # smaller shapes are drawn on top of larger ones: none may end up more than 30% hidden
            if _max_hidden([o[0] for o in objects] + [mask]) <= 0.3:
                break
        else:
            continue
        base = np.array(_CLASS_COLORS[label], dtype=np.float32)
        colour = np.clip(base + rng.normal(0, 12, 3), 0, 255)
        objects.append((mask, colour))
        corners.append(_polygon(label, cx, cy, w, h, angle) if label == SQUARE else None)
        ys, xs = np.nonzero(mask)
        boxes.append([float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)])
        labels.append(label)
        areas.append(float(mask.sum()))
        crowd.append(0)

    if has_crowd:
        label = int(rng.integers(1, NUM_CLASSES + 1))
        base = np.array(_CLASS_COLORS[label], dtype=np.float32)
        span = min(rng.uniform(24, 44), size / 2)
        for _attempt in range(10):  # a place that hides at most 15% of any shape
            x0, y0 = rng.uniform(0, size - span), rng.uniform(0, size - span)
            region = np.zeros((size, size), dtype=bool)
            region[int(y0) : int(y0 + span) + 1, int(x0) : int(x0 + span) + 1] = True
            if all((region & other).sum() <= 0.15 * other.sum() for other, _ in objects):
                break
        else:
            has_crowd = False
    crowd_mask = None
    if has_crowd:
        union = np.zeros((size, size), dtype=bool)
        for _ in range(int(rng.integers(8, 16))):
            t = rng.uniform(3, 6)
            cx, cy = x0 + rng.uniform(t / 2, span - t / 2), y0 + rng.uniform(t / 2, span - t / 2)
            m = _shape_mask(label, cx, cy, t, t, float(rng.uniform(-0.3, 0.3)), size)
            union |= m
            layers.append((m, np.clip(base + rng.normal(0, 12, 3), 0, 255)))
        if union.sum() > 0:
            ys, xs = np.nonzero(union)
            boxes.append([float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)])
            labels.append(label)
            areas.append(float(union.sum()))
            crowd.append(1)
            crowd_mask = union

    # render, largest shapes first (so that smaller ones lie on top), the crowd last:
    # fill, then a dark outline (mask minus its erosion)
    ordered = [objects[i] for i in _render_order([o[0] for o in objects])]
    for mask, colour in ordered + layers:
        canvas[mask] = colour
        edge = mask & ~_erode(mask)
        canvas[edge] = canvas[edge] * 0.25
    # a little noise on top of everything
    canvas = canvas + rng.normal(0, 3, size=canvas.shape).astype(np.float32)
    image = np.clip(np.round(canvas), 0, 255).astype(np.uint8)

    target = {
        "boxes": np.array(boxes, dtype=np.float32).reshape(-1, 4),
        "labels": np.array(labels, dtype=np.int64),
        "iscrowd": np.array(crowd, dtype=np.int64),
        "area": np.array(areas, dtype=np.float32),
        "image_id": index + 1,
    }
    if shapes:
        masks = [mask for mask, _ in objects] + ([] if crowd_mask is None else [crowd_mask])
        target["masks"] = np.array(masks, dtype=bool).reshape(-1, size, size)
        target["keypoints"] = _keypoints(corners, [m for m, _ in objects], size, len(masks))
    return image, target


def _keypoints(
    corners: list[list[tuple[float, float]] | None], masks: list[np.ndarray], size: int, count: int
) -> np.ndarray:
    """float32 (count, 4, 3): each square's corners, visible (2) unless under a shape drawn on top
    of it (1: labelled, hidden) or outside the image (0); zeros for the other shapes."""
    points = np.zeros((count, len(CORNERS), 3), dtype=np.float32)
    order = _render_order(masks)
    for k, square in enumerate(corners):
        if square is None:
            continue
        above = [masks[i] for i in order[order.index(k) + 1 :]]  # drawn after it
        for c, (x, y) in enumerate(square):
            xi, yi = int(x), int(y)
            if not (0 <= xi < size and 0 <= yi < size):
                continue
            hidden = any(m[yi, xi] for m in above)
            points[k, c] = (x, y, 1.0 if hidden else 2.0)
    return points


class ShapesDataset(Dataset):
    """``num_images`` deterministic images of ``image_size`` x ``image_size`` pixels.

    Images are generated on first access and cached (as uint8). ``hflip=True``
    randomly mirrors training samples (with ``torch``'s global RNG).
    """

    def __init__(
        self,
        num_images: int,
        image_size: int = 128,
        seed: int = 0,
        split: str = "train",
        hflip: bool = False,
        shapes: bool = False,
    ) -> None:
        self.shapes = shapes  # keep masks and keypoints in raw() (for the COCO export)
        self.num_images = int(num_images)
        self.image_size = int(image_size)
        self.seed = int(seed)
        self.split = split
        self.hflip = hflip
        self._cache: dict[int, tuple[np.ndarray, dict[str, Any]]] = {}

    def __len__(self) -> int:
        return self.num_images

    def raw(self, index: int) -> tuple[np.ndarray, dict[str, Any]]:
        if index not in self._cache:
            self._cache[index] = generate_sample(self.seed, self.split, index, self.image_size, self.shapes)
        return self._cache[index]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict[str, Any]]:
        if not 0 <= index < self.num_images:
            raise IndexError(index)
        arr, t = self.raw(index)
        image = torch.from_numpy(arr).permute(2, 0, 1).float().div_(255.0)
        boxes = torch.from_numpy(t["boxes"].copy())
        if self.hflip and torch.rand(()) < 0.5:
            image = image.flip(-1)
            boxes = torch.stack(
                [self.image_size - boxes[:, 2], boxes[:, 1], self.image_size - boxes[:, 0], boxes[:, 3]], 1
            )
        target = {
            "boxes": boxes,
            "labels": torch.from_numpy(t["labels"].copy()),
            "iscrowd": torch.from_numpy(t["iscrowd"].copy()),
            "area": torch.from_numpy(t["area"].copy()),
            "image_id": int(t["image_id"]),
        }
        return image, target

    @property
    def class_names(self) -> dict[int, str]:
        return dict(CLASS_NAMES)


def collate(batch: list[tuple[torch.Tensor, dict[str, Any]]]) -> tuple[torch.Tensor, list[dict[str, Any]]]:
    """Stack the images into one (B, 3, H, W) tensor and keep the targets as a list."""
    images = torch.stack([b[0] for b in batch])
    return images, [b[1] for b in batch]


def coco_dict(dataset: ShapesDataset, file_names: list[str] | None = None) -> dict[str, Any]:
    """The dataset's ground truth as a COCO ``instances`` dict (bbox in xywh, ids from 1)."""
    images, annotations = [], []
    ann_id = 1
    for i in range(len(dataset)):
        _, t = dataset.raw(i)
        image_id = int(t["image_id"])
        images.append(
            {
                "id": image_id,
                "file_name": file_names[i] if file_names else f"{image_id:06d}.png",
                "width": dataset.image_size,
                "height": dataset.image_size,
            }
        )
        for k, (box, label, crowd, area) in enumerate(zip(t["boxes"], t["labels"], t["iscrowd"], t["area"])):
            x1, y1, x2, y2 = (float(v) for v in box)
            annotation = {
                "id": ann_id,
                "image_id": image_id,
                "category_id": int(label),
                "bbox": [x1, y1, x2 - x1, y2 - y1],
                "area": float(area),
                "iscrowd": int(crowd),
            }
            if "masks" in t:
                annotation["segmentation"] = _rle(t["masks"][k])
                points = t["keypoints"][k]
                annotation["keypoints"] = [round(float(v), 2) for v in points.reshape(-1)]
                annotation["num_keypoints"] = int((points[:, 2] > 0).sum())
            annotations.append(annotation)
            ann_id += 1
    categories = [{"id": k, "name": v, "supercategory": "shape"} for k, v in CLASS_NAMES.items()]
    return {
        "info": {"description": f"ignite-det synthetic shapes ({dataset.split}, seed {dataset.seed})"},
        "images": images,
        "annotations": annotations,
        "categories": categories,
    }


def _rle(mask: np.ndarray) -> dict[str, Any]:
    """A mask as COCO's compressed RLE (counts as a string), as pycocotools writes it."""
    from pycocotools import mask as coco_mask  # an ignite-det dependency

    rle = coco_mask.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}


def keypoints_dict(instances: dict[str, Any]) -> dict[str, Any]:
    """The squares of an ``instances`` dict with their corners, as COCO's person keypoints file holds people:
    one category (with its keypoint names and skeleton), its annotations only."""
    category = {
        "id": SQUARE,
        "name": CLASS_NAMES[SQUARE],
        "supercategory": "shape",
        "keypoints": list(CORNERS),
        "skeleton": [[1, 2], [2, 3], [3, 4], [4, 1]],
    }
    annotations = [a for a in instances["annotations"] if a["category_id"] == SQUARE]
    return {**instances, "annotations": annotations, "categories": [category]}


def export_coco(dataset: ShapesDataset, directory: str | os.PathLike) -> Path:
    """Write ``directory/images/*.png``, ``directory/instances.json`` (with masks) and
    ``directory/keypoints.json`` (the squares and their corners); returns the instances json path."""
    root = Path(directory)
    (root / "images").mkdir(parents=True, exist_ok=True)
    shaped = ShapesDataset(dataset.num_images, dataset.image_size, dataset.seed, dataset.split, shapes=True)
    for i in range(len(shaped)):
        arr, t = shaped.raw(i)
        Image.fromarray(arr).save(root / "images" / f"{int(t['image_id']):06d}.png")
    instances = coco_dict(shaped)
    path = root / "instances.json"
    path.write_text(json.dumps(instances))
    (root / "keypoints.json").write_text(json.dumps(keypoints_dict(instances)))
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--export-coco", metavar="DIR", required=True, help="write a COCO-format folder here")
    parser.add_argument("--num-images", type=int, default=200)
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--split", default="val", choices=sorted(_SPLIT_IDS))
    args = parser.parse_args(argv)
    ds = ShapesDataset(args.num_images, args.image_size, args.seed, args.split)
    path = export_coco(ds, args.export_coco)
    n = len(json.loads(path.read_text())["annotations"])
    print(f"wrote {len(ds)} images and {n} annotations to {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
