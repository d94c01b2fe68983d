"""The accumulated predictions as a COCO results file, as pycocotools' ``loadRes`` reads it.

One object per detection, images in ascending ``image_id`` (each once; so one process or several
write the same file), each image's detections in the order they were given (COCOeval breaks score
ties by it, so the file evaluates to the same numbers): ``image_id, category_id, score`` and

==============  ==============================================================================
``bbox``        ``[x, y, w, h]`` (boxes)
``segmentation``  ``{"size": [h, w], "counts": str}``, COCO's compressed RLE (masks); no ``bbox``:
                ``loadRes`` would then take the box's area for the mask's
``keypoints``   ``[x1, y1, v1, ...]`` (keypoints); ``loadRes`` takes the box and area from their extent
==============  ==============================================================================

Floats are written as Python's ``repr``, the shortest text that reads back to the same float64.
A prediction's own ``area`` is not written: ``loadRes`` recomputes every result's area.
Without ``image_id`` in the targets, image ids are the arrival numbers the metric gave them.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from ignite_det.table import Detections

# Lines joined per write: one write per line was a quarter of the time on 500,000 detections.
_LINES_PER_WRITE = 10_000


def write_results(path: str | Path, d: Detections, iou_type: str) -> int:
    """Write ``d``'s detections to ``path`` as a COCO results file; the number written.

    Example:
        >>> import tempfile, torch
        >>> from ignite_det.inputs import normalize_batch
        >>> batch = normalize_batch(([{"boxes": torch.tensor([[1.0, 2.0, 11.0, 22.0]]), "scores": torch.tensor([0.5]),
        ...     "labels": torch.tensor([3])}], [{"boxes": torch.zeros(0, 4), "labels": torch.zeros(0), "image_id": 7}]),
        ...     "xyxy")
        >>> path = Path(tempfile.mkdtemp()) / "results.json"
        >>> write_results(path, batch, "bbox")
        1
        >>> json.loads(path.read_text())
        [{'image_id': 7, 'category_id': 3, 'bbox': [1.0, 2.0, 10.0, 20.0], 'score': 0.5}]
    """
    lines = result_lines(d, iou_type)
    with open(path, "w", encoding="ascii") as file:
        file.write("[")
        chunk = list(itertools.islice(lines, _LINES_PER_WRITE))
        while chunk:
            file.write("\n" + ",\n".join(chunk))
            chunk = list(itertools.islice(lines, _LINES_PER_WRITE))
            file.write("," if chunk else "")
        file.write("\n]\n")
    return len(d.det_scores)


def result_lines(d: Detections, iou_type: str) -> Iterator[str]:
    """One JSON object per detection, as text (see the module docstring for the fields)."""
    ids = d.image_ids[d.det_position]
    rows = np.argsort(ids, kind="stable")  # by image id, each image's detections in their order
    common = zip(ids[rows].tolist(), d.det_labels[rows].tolist(), d.det_scores[rows].tolist())
    if iou_type == "bbox":
        template = '{"image_id": %d, "category_id": %d, "bbox": [%r, %r, %r, %r], "score": %r}'
        return (template % (i, c, *box, s) for (i, c, s), box in zip(common, d.det_boxes[rows].tolist()))
    if iou_type == "segm":
        rles = zip(d.det_rle[rows].tolist(), d.det_mask_size[rows].tolist())
        return (_segm_line(i, c, s, counts, size) for (i, c, s), (counts, size) in zip(common, rles))
    points = d.det_keypoints[rows].reshape(len(rows), -1).tolist()
    template = '{"image_id": %d, "category_id": %d, "keypoints": [%s], "score": %r}'
    return (template % (i, c, ", ".join(map(repr, p)), s) for (i, c, s), p in zip(common, points))


def _segm_line(image_id: int, category_id: int, score: float, counts: bytes, size: list[int]) -> str:
    # json.dumps: COCO's RLE alphabet ('0' to 'o') holds the backslash, which JSON escapes.
    rle = f'{{"size": [{size[0]}, {size[1]}], "counts": {json.dumps(counts.decode("ascii"))}}}'
    return f'{{"image_id": {image_id}, "category_id": {category_id}, "segmentation": {rle}, "score": {score!r}}}'
