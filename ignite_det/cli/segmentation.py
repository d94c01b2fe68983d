"""Results given as masks: the box and the area that pycocotools' ``loadRes`` takes from a ``segmentation``.

``loadRes`` gives a result that has a ``segmentation`` and no ``bbox`` the mask's bounding box
(``mask.toBbox``) and the mask's pixel count as its ``area`` (``mask.area``), and COCOeval's
small/medium/large ranges then use that area, not ``w * h``. A segmentation is read as ``annToRLE``
reads one: compressed RLE (``counts`` a string) as it is, uncompressed RLE (``counts`` a list of run
lengths) and polygons (lists of ``x1, y1, x2, y2, ...``, rasterised at the image's height and width)
through ``mask.frPyObjects``. pycocotools' own RLE code does the work, so boxes and areas are its
numbers to the bit.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

_SHAPES = "an RLE {'size': [height, width], 'counts': ...} or a list of polygons [[x1, y1, x2, y2, ...], ...]"


class BadSegmentation(ValueError):
    """A segmentation that cannot be read; the message completes ``results[i]['segmentation'] ...``."""

    def __init__(self, message: str, index: int = 0) -> None:
        super().__init__(message)
        self.index = index  # position in the list given to boxes_and_areas


def to_rles(segmentations: Sequence[Any], image_sizes: Sequence[tuple[int, int] | None]) -> list[dict[str, Any]]:
    """Every segmentation as a compressed RLE, as ``annToRLE`` converts it (``counts`` as in the file).

    Raises:
        BadSegmentation: for the first malformed segmentation, or a polygon whose image size is unknown.
    """
    from pycocotools import mask  # the C code behind annToRLE

    rles = []
    for index, (segmentation, image_size) in enumerate(zip(segmentations, image_sizes)):
        try:
            rles.append(_to_rle(segmentation, image_size, mask))
        except ValueError as error:
            raise BadSegmentation(str(error), index) from None
    return rles


def boxes_and_areas(
    segmentations: Sequence[Any], image_sizes: Sequence[tuple[int, int] | None]
) -> tuple[np.ndarray, np.ndarray]:
    """xywh boxes, float64 (N, 4), and mask areas, float64 (N,), as ``loadRes`` sets them.

    Args:
        segmentations: COCO segmentations (RLE or polygons), one per result.
        image_sizes: (height, width) of each result's image, to rasterise polygons; None where unknown.

    Raises:
        BadSegmentation: for the first malformed segmentation (a compressed RLE whose ``counts``
            cover more than height * width pixels included), or a polygon whose image size is unknown.
    """
    from pycocotools import mask  # the C code behind the numbers loadRes sets

    rles = to_rles(segmentations, image_sizes)
    if not rles:
        return np.zeros((0, 4)), np.zeros(0)
    # One at a time, as loadRes calls it: pycocotools 2.0.11's area() of a list fails beyond 255 masks.
    areas = np.array([mask.area(rle) for rle in rles], dtype=np.float64)
    too_large = areas > np.array([rle["size"][0] * rle["size"][1] for rle in rles], dtype=np.float64)
    if too_large.any():
        index = int(np.flatnonzero(too_large)[0])
        raise BadSegmentation(f"is not a valid compressed RLE of a {rles[index]['size']} mask ('counts')", index)
    return mask.toBbox(rles).astype(np.float64).reshape(-1, 4), areas


def _to_rle(segmentation: Any, image_size: tuple[int, int] | None, mask: Any) -> dict[str, Any]:
    """One segmentation as compressed RLE, as ``annToRLE`` converts it."""
    if isinstance(segmentation, dict):
        return _rle(segmentation, mask)
    if isinstance(segmentation, list) and segmentation:
        _check_polygons(segmentation)
        if image_size is None:
            raise ValueError(
                "is a polygon, which is rasterised at the image's size: give the image's entry in the ground "
                "truth's 'images' an integer 'height' and 'width'"
            )
        return mask.merge(mask.frPyObjects(segmentation, *image_size))
    raise ValueError(f"must be {_SHAPES}, got {_shown(segmentation)}")


def _rle(segmentation: dict[str, Any], mask: Any) -> dict[str, Any]:
    size, counts = segmentation.get("size"), segmentation.get("counts")
    if not (type(size) is list and len(size) == 2 and all(type(v) is int and v >= 0 for v in size)):
        raise ValueError(f"is an RLE, whose 'size' must be [height, width] (two integers >= 0), got {_shown(size)}")
    if isinstance(counts, str):
        return {"size": size, "counts": counts}
    if type(counts) is list and all(type(v) is int and v >= 0 for v in counts):
        if sum(counts) != size[0] * size[1]:
            raise ValueError(
                f"is an RLE whose run lengths ('counts') add up to {sum(counts)}, not height * width = "
                f"{size[0] * size[1]}"
            )
        return mask.frPyObjects(segmentation, *size)
    raise ValueError(
        f"is an RLE, whose 'counts' must be a string (compressed) or a list of run lengths >= 0, got {_shown(counts)}"
    )


def _check_polygons(polygons: list[Any]) -> None:
    for polygon in polygons:
        if not (type(polygon) is list and all(type(v) in (int, float) and math.isfinite(v) for v in polygon)):
            raise ValueError(f"must be {_SHAPES}, got a list holding {_shown(polygon)}")
        if len(polygon) < 6 or len(polygon) % 2:
            raise ValueError(
                f"holds a polygon of {len(polygon)} coordinates; a polygon is x1, y1, x2, y2, ... with at least "
                "3 points"
            )


def _shown(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
