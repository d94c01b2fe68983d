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

from collections.abc import Callable
from pathlib import Path

import numpy as np

from ignite_det.table import Detections

# Detections written at a time: their text is built column by column (one repr call per number, no
# per-line formatting), then joined and written; it also bounds the memory the text takes.
_LINES_PER_WRITE = 50_000


def write_results(path: str | Path, d: Detections, iou_type: str) -> int:
    """Write ``d``'s detections to ``path`` as a COCO results file; the number written.

    Example:
        >>> import json, tempfile, torch
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
    ids = d.image_ids[d.det_position]
    rows = np.argsort(ids, kind="stable")  # by image id, each image's detections in their order
    with open(path, "w", encoding="ascii") as file:
        file.write("[")
        for start in range(0, len(rows), _LINES_PER_WRITE):
            text = _lines(d, ids, rows[start : start + _LINES_PER_WRITE], iou_type)
            file.write(("," if start else "") + "\n" + text[: -len(_LINE_END)])
        file.write("\n]\n")
    return len(d.det_scores)


_LINE_END = ",\n"


def _lines(d: Detections, ids: np.ndarray, rows: np.ndarray, iou_type: str) -> str:
    """The JSON objects of detections ``rows`` (see the module docstring), each followed by ``_LINE_END``."""
    parts: list[str | list[str]] = ['{"image_id": ', _integers(ids[rows]), ', "category_id": ']
    parts += [_integers(d.det_labels[rows])]
    if iou_type == "bbox":
        parts += [', "bbox": [', *_separated(d.det_boxes[rows]), "]"]
    elif iou_type == "segm":
        parts += [', "segmentation": {"size": [', *_separated(d.det_mask_size[rows], _integers)]
        parts += ['], "counts": "', [_json_counts(c) for c in d.det_rle[rows].tolist()], '"}']
    else:
        parts += [', "keypoints": [', *_separated(d.det_keypoints[rows].reshape(len(rows), -1)), "]"]
    parts += [', "score": ', _floats(d.det_scores[rows]), "}" + _LINE_END]
    return _interleave(parts, len(rows))


def _interleave(parts: list[str | list[str]], n: int) -> str:
    """``n`` rows of text: each row the parts in order, a ``str`` part the same on every row, a list one per row.

    Example:
        >>> _interleave(["(", ["a", "b"], ", ", ["1", "2"], ")"], 2)
        '(a, 1)(b, 2)'
    """
    pieces = [""] * (n * len(parts))
    for j, part in enumerate(parts):
        pieces[j :: len(parts)] = [part] * n if isinstance(part, str) else part
    return "".join(pieces)


def _separated(columns: np.ndarray, text: Callable[[np.ndarray], list[str]] | None = None) -> list[str | list[str]]:
    """The parts of each row's values joined by ``", "``, column by column."""
    text = text or _floats
    parts: list[str | list[str]] = []
    for j in range(columns.shape[1]):
        parts += [", "] * bool(j) + [text(columns[:, j])]
    return parts


def _floats(values: np.ndarray) -> list[str]:
    """Python's ``repr`` of each value: the shortest text that reads back to the same float64."""
    return list(map(float.__repr__, values.astype(np.float64).tolist()))


def _integers(values: np.ndarray) -> list[str]:
    """Each integer as text, formatted once per distinct value (ids repeat on every detection)."""
    distinct, where = np.unique(values, return_inverse=True)
    return np.array([str(v) for v in distinct.tolist()], dtype=object)[where.reshape(-1)].tolist()


def _json_counts(counts: bytes) -> str:
    # COCO's RLE alphabet ('0' to 'o', checked when masks come in) holds the backslash, which JSON escapes.
    return counts.decode("ascii").replace("\\", "\\\\")
