"""A compact anchor-free detector in plain PyTorch (no torchvision).

The design follows TTFNet / CenterNet: a small conv backbone with a top-down
(FPN-like) path back to stride 4, then two heads on the stride-4 feature map:

* ``heatmap`` (num_classes channels): a Gaussian peak at every object centre,
  trained with CenterNet's penalty-reduced focal loss;
* ``ltrb`` (4 channels): distances from the cell centre to the box's four
  sides, trained with a GIoU loss at every cell under the object's Gaussian
  (weighted by it), which converges much faster than regressing at the centre
  cell alone.

Decoding keeps the local maxima of the heatmap (3x3 max-pool), takes the top
100 over all classes and reads the box off the ``ltrb`` map at each of them.
Crowd regions (``iscrowd=1``) are ignored: no positives, and the heatmap's
negative loss is switched off inside them.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

STRIDE = 4


def _conv(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class ShapesDetector(nn.Module):
    """Backbone down to stride 32, top-down path to stride 4, heatmap + ltrb heads."""

    def __init__(self, num_classes: int, width: int = 32) -> None:
        super().__init__()
        w = width
        self.num_classes = num_classes
        self.width = width
        self.stem = nn.Sequential(_conv(3, w // 2, 2), _conv(w // 2, w, 2), _conv(w, w))  # stride 4
        self.down8 = nn.Sequential(_conv(w, 2 * w, 2), _conv(2 * w, 2 * w))
        self.down16 = nn.Sequential(_conv(2 * w, 4 * w, 2), _conv(4 * w, 4 * w))
        self.down32 = nn.Sequential(_conv(4 * w, 4 * w, 2), _conv(4 * w, 4 * w))
        self.lat16 = nn.Conv2d(4 * w, 2 * w, 1)
        self.lat32 = nn.Conv2d(4 * w, 2 * w, 1)
        self.lat8 = nn.Conv2d(2 * w, 2 * w, 1)
        self.lat4 = nn.Conv2d(w, 2 * w, 1)
        self.smooth16 = _conv(2 * w, 2 * w)
        self.smooth8 = _conv(2 * w, 2 * w)
        self.smooth4 = _conv(2 * w, w)
        hm_mid, hm_out = nn.Conv2d(w, w, 3, 1, 1), nn.Conv2d(w, num_classes, 1)
        box_mid, box_out = nn.Conv2d(w, w, 3, 1, 1), nn.Conv2d(w, 4, 1)
        assert hm_out.bias is not None and box_out.bias is not None
        nn.init.constant_(hm_out.bias, -math.log((1 - 0.01) / 0.01))  # prior 0.01
        nn.init.normal_(box_out.weight, std=0.01)
        nn.init.constant_(box_out.bias, math.log(4.0))  # ~16 px initial distances
        self.hm_head = nn.Sequential(hm_mid, nn.ReLU(inplace=True), hm_out)
        self.box_head = nn.Sequential(box_mid, nn.ReLU(inplace=True), box_out)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns (heatmap logits (B,C,H/4,W/4), ltrb distances in pixels (B,4,H/4,W/4))."""
        x = (x - 0.5) / 0.25
        c4 = self.stem(x)
        c8 = self.down8(c4)
        c16 = self.down16(c8)
        c32 = self.down32(c16)
        p = self.lat32(c32)
        p = self.smooth16(self.lat16(c16) + F.interpolate(p, size=c16.shape[-2:], mode="nearest"))
        p = self.smooth8(self.lat8(c8) + F.interpolate(p, size=c8.shape[-2:], mode="nearest"))
        p = self.smooth4(self.lat4(c4) + F.interpolate(p, size=c4.shape[-2:], mode="nearest"))
        hm = self.hm_head(p)
        ltrb = torch.exp(self.box_head(p).clamp(max=8.0)) * STRIDE
        return hm, ltrb


# --------------------------------------------------------------------------- targets and loss


def _cell_centres(h: int, w: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    ys = (torch.arange(h, device=device, dtype=torch.float32) + 0.5) * STRIDE
    xs = (torch.arange(w, device=device, dtype=torch.float32) + 0.5) * STRIDE
    return ys[:, None].expand(h, w), xs[None, :].expand(h, w)


def build_targets(
    targets: list[dict[str, Any]], num_classes: int, out_h: int, out_w: int, alpha: float = 0.54
) -> dict[str, torch.Tensor]:
    """Heatmap, box, regression-weight and ignore maps for a batch (TTFNet-style)."""
    b = len(targets)
    hm = torch.zeros(b, num_classes, out_h, out_w)
    ignore = torch.zeros(b, 1, out_h, out_w, dtype=torch.bool)
    box_t = torch.zeros(b, 4, out_h, out_w)
    weight = torch.zeros(b, out_h, out_w)
    gy = torch.arange(out_h, dtype=torch.float32)[:, None]
    gx = torch.arange(out_w, dtype=torch.float32)[None, :]
    for i, t in enumerate(targets):
        boxes = t["boxes"].float().cpu()
        labels = t["labels"].cpu()
        crowd = t.get("iscrowd", torch.zeros(len(labels), dtype=torch.int64)).cpu()
        if len(boxes) == 0:
            continue
        areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        # large first, so that smaller objects win where regression areas overlap
        for j in torch.argsort(areas, descending=True).tolist():
            x1, y1, x2, y2 = boxes[j].tolist()
            if crowd[j]:
                ignore[
                    i,
                    0,
                    int(y1 // STRIDE) : int(math.ceil(y2 / STRIDE)),
                    int(x1 // STRIDE) : int(math.ceil(x2 / STRIDE)),
                ] = True
                continue
            cx, cy = (x1 + x2) / 2 / STRIDE, (y1 + y2) / 2 / STRIDE
            ix, iy = min(int(cx), out_w - 1), min(int(cy), out_h - 1)
            sx = max(alpha * (x2 - x1) / STRIDE / 6, 0.3)
            sy = max(alpha * (y2 - y1) / STRIDE / 6, 0.3)
            g = torch.exp(-((gx - ix) ** 2) / (2 * sx**2) - ((gy - iy) ** 2) / (2 * sy**2))
            c = int(labels[j]) - 1
            hm[i, c] = torch.maximum(hm[i, c], g)
            hm[i, c, iy, ix] = 1.0
            # regression region: cells under the Gaussian that lie inside the box
            inside = (
                ((gx + 0.5) * STRIDE > x1)
                & ((gx + 0.5) * STRIDE < x2)
                & ((gy + 0.5) * STRIDE > y1)
                & ((gy + 0.5) * STRIDE < y2)
            )
            region = g * (inside | ((gx == ix) & (gy == iy)))
            region = torch.where(region > 0.01, region, torch.zeros(()))
            mask = region > 0
            norm = region[mask].sum()
            w_obj = region / norm * math.log(max(float(areas[j]), 2.0))
            weight[i][mask] = w_obj[mask]
            box_t[i, :, mask] = torch.tensor([x1, y1, x2, y2])[:, None]
    return {"heatmap": hm, "ignore": ignore, "boxes": box_t, "weight": weight}


def focal_loss(logits: torch.Tensor, target: torch.Tensor, ignore: torch.Tensor) -> torch.Tensor:
    """CenterNet's penalty-reduced focal loss, negatives masked out where ``ignore``."""
    p = torch.sigmoid(logits).clamp(1e-4, 1 - 1e-4)
    pos = target.eq(1).float()
    neg = (1 - pos) * (~ignore).float()
    pos_loss = -torch.log(p) * (1 - p) ** 2 * pos
    neg_loss = -torch.log(1 - p) * p**2 * (1 - target) ** 4 * neg
    num_pos = pos.sum().clamp(min=1.0)
    return (pos_loss.sum() + neg_loss.sum()) / num_pos


def giou_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """1 - GIoU for (N, 4) xyxy boxes."""
    area_p = (pred[:, 2] - pred[:, 0]).clamp(min=0) * (pred[:, 3] - pred[:, 1]).clamp(min=0)
    area_t = (target[:, 2] - target[:, 0]) * (target[:, 3] - target[:, 1])
    lt = torch.maximum(pred[:, :2], target[:, :2])
    rb = torch.minimum(pred[:, 2:], target[:, 2:])
    inter = (rb - lt).clamp(min=0).prod(1)
    union = area_p + area_t - inter
    iou = inter / union.clamp(min=1e-6)
    lt_c = torch.minimum(pred[:, :2], target[:, :2])
    rb_c = torch.maximum(pred[:, 2:], target[:, 2:])
    area_c = (rb_c - lt_c).clamp(min=0).prod(1)
    return 1 - (iou - (area_c - union) / area_c.clamp(min=1e-6))


def ltrb_to_boxes(ltrb: torch.Tensor) -> torch.Tensor:
    """(B,4,H,W) distances -> (B,4,H,W) xyxy boxes in image pixels."""
    h, w = ltrb.shape[-2:]
    ys, xs = _cell_centres(h, w, ltrb.device)
    return torch.stack([xs - ltrb[:, 0], ys - ltrb[:, 1], xs + ltrb[:, 2], ys + ltrb[:, 3]], dim=1)


class DetectionLoss(nn.Module):
    """Focal heatmap loss + ``box_weight`` x Gaussian-weighted GIoU loss."""

    def __init__(self, num_classes: int, box_weight: float = 5.0) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.box_weight = box_weight

    def forward(
        self, outputs: tuple[torch.Tensor, torch.Tensor], targets: list[dict[str, Any]]
    ) -> tuple[torch.Tensor, dict[str, float]]:
        hm, ltrb = outputs
        t = build_targets(targets, self.num_classes, hm.shape[-2], hm.shape[-1])
        t = {k: v.to(hm.device) for k, v in t.items()}
        l_hm = focal_loss(hm, t["heatmap"], t["ignore"])
        mask = t["weight"] > 0
        if mask.any():
            pred_boxes = ltrb_to_boxes(ltrb).permute(0, 2, 3, 1)[mask]
            tgt_boxes = t["boxes"].permute(0, 2, 3, 1)[mask]
            w = t["weight"][mask]
            l_box = (giou_loss(pred_boxes, tgt_boxes) * w).sum() / w.sum().clamp(min=1e-6)
        else:
            l_box = ltrb.sum() * 0.0
        loss = l_hm + self.box_weight * l_box
        return loss, {"hm": float(l_hm.detach()), "box": float(l_box.detach())}


# --------------------------------------------------------------------------- decoding


@torch.no_grad()
def decode(
    outputs: tuple[torch.Tensor, torch.Tensor], image_size: tuple[int, int] | int, top_k: int = 100
) -> list[dict[str, torch.Tensor]]:
    """Per image: ``boxes`` (N,4) xyxy float, ``scores`` (N,), ``labels`` (N,) int64 (ids from 1), N <= top_k."""
    hm, ltrb = outputs
    if isinstance(image_size, int):
        image_size = (image_size, image_size)
    img_h, img_w = image_size
    heat = torch.sigmoid(hm.float())
    peaks = heat * (F.max_pool2d(heat, 3, stride=1, padding=1) == heat)
    b, c, h, w = peaks.shape
    k = min(top_k, c * h * w)
    scores, idx = peaks.reshape(b, -1).topk(k, dim=1)
    labels = idx // (h * w)
    cell = idx % (h * w)
    boxes = ltrb_to_boxes(ltrb.float()).reshape(b, 4, h * w)
    results = []
    for i in range(b):
        keep = scores[i] > 0
        bx = boxes[i][:, cell[i][keep]].t()
        bx = torch.stack(
            [bx[:, 0].clamp(0, img_w), bx[:, 1].clamp(0, img_h), bx[:, 2].clamp(0, img_w), bx[:, 3].clamp(0, img_h)], 1
        )
        results.append({"boxes": bx, "scores": scores[i][keep], "labels": labels[i][keep].to(torch.int64) + 1})
    return results
