"""Read what an offline W&B run wrote, for tests.

An offline run keeps everything it would upload in ``wandb/offline-run-*/run-*.wandb``: a
LevelDB-style log of ``wandb.proto.wandb_internal_pb2.Record`` messages. In wandb 0.31 the log is
written by the Go ``wandb-core`` binary, so there is no Python ``DataStore`` to lean on; this is a
small reader of the format:

* a 7-byte file header: ``b":W&B"``, magic ``0xBEE1`` (uint16 LE), version (uint8);
* 32 KiB blocks (the first one includes the file header) holding chunks, each with a 7-byte header:
  CRC-32 (uint32 LE), payload length (uint16 LE), type (uint8: 1 FULL, 2 FIRST, 3 MIDDLE, 4 LAST);
* a block tail shorter than a chunk header is zero padding.

Media and tables are not in the log itself: a history value of ``{"_type": "table-file", "path":
...}`` or ``{"_type": "images/separated", "filenames": [...]}`` points at files under the run's
``files/`` directory.
"""

from __future__ import annotations

import json
import struct
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from wandb.proto import wandb_internal_pb2 as pb

__all__ = [
    "artifact_files",
    "artifacts",
    "load_artifact_table",
    "chart_table_key",
    "charts",
    "find_run_dir",
    "history_rows",
    "load_images",
    "load_json_file",
    "load_table",
    "media_files",
    "read_records",
    "summary",
]

_FILE_HEADER = struct.Struct("<4sHB")
_IDENT = b":W&B"
_MAGIC = 0xBEE1
_CHUNK_HEADER = struct.Struct("<IHB")
_BLOCK_SIZE = 32 * 1024
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4


def find_run_dir(root: str | Path) -> Path:
    """The single ``offline-run-*`` directory under ``root`` (a ``wandb.init(dir=...)`` folder)."""
    runs = sorted(Path(root).glob("**/offline-run-*"))
    if len(runs) != 1:
        raise FileNotFoundError(f"expected one offline run under {root}, found {[str(r) for r in runs]}")
    return runs[0]


def _log_file(run_dir: str | Path) -> Path:
    files = sorted(Path(run_dir).glob("run-*.wandb"))
    if len(files) != 1:
        raise FileNotFoundError(f"expected one run-*.wandb file in {run_dir}, found {files}")
    return files[0]


def _payloads(data: bytes) -> Iterator[bytes]:
    ident, magic, _version = _FILE_HEADER.unpack_from(data, 0)
    if ident != _IDENT or magic != _MAGIC:
        raise ValueError(f"not a W&B log: header {data[:7]!r}")
    pos, pending = _FILE_HEADER.size, b""
    while pos + _CHUNK_HEADER.size <= len(data):
        left_in_block = _BLOCK_SIZE - pos % _BLOCK_SIZE
        if left_in_block < _CHUNK_HEADER.size:  # padding at the end of a block
            pos += left_in_block
            continue
        _crc, length, kind = _CHUNK_HEADER.unpack_from(data, pos)
        if kind == 0 and length == 0:  # zero-filled tail of a file that was preallocated
            break
        pos += _CHUNK_HEADER.size
        if pos + length > len(data):  # a chunk still being written
            break
        chunk, pos = data[pos : pos + length], pos + length
        if kind == _FULL:
            yield chunk
        elif kind == _FIRST:
            pending = chunk
        elif kind == _MIDDLE:
            pending += chunk
        elif kind == _LAST:
            yield pending + chunk
            pending = b""
        else:
            raise ValueError(f"bad chunk type {kind} at byte {pos - length - _CHUNK_HEADER.size}")


def read_records(run_dir: str | Path, timeout: float = 30.0) -> list[Any]:
    """Every ``wandb_internal_pb2.Record`` in the run's log, in the order written.

    ``wandb.finish()`` can return before ``wandb-core`` has written the last records (the final history
    row among them), so this waits, up to ``timeout`` seconds, for the run's ``exit`` record and for the
    file to stop growing.
    """
    deadline = time.monotonic() + timeout
    size = -1
    while True:
        data = _log_file(run_dir).read_bytes()
        records = _parse(data)
        if len(data) == size and any(r.WhichOneof("record_type") == "exit" for r in records):
            return records
        if time.monotonic() > deadline:
            raise TimeoutError(f"the W&B log in {run_dir} has no exit record after {timeout} s: was the run finished?")
        size = len(data)
        time.sleep(0.05)


def _parse(data: bytes) -> list[Any]:
    records = []
    for payload in _payloads(data):
        record = pb.Record()  # type: ignore[attr-defined]  # generated protobuf code
        record.ParseFromString(payload)
        records.append(record)
    return records


def _item_path(item: Any) -> list[str]:
    """An item's key: W&B splits a media value into ``nested_key = [key, field]`` items."""
    return list(item.nested_key) if item.nested_key else [item.key]


def _put(out: dict[str, Any], path: list[str], value: Any) -> None:
    for part in path[:-1]:
        out = out.setdefault(part, {})
    out[path[-1]] = value


def _items_to_dict(items: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        _put(out, _item_path(item), json.loads(item.value_json))
    return out


def history_rows(run_dir: str | Path) -> list[dict[str, Any]]:
    """Each history record as ``{key: decoded JSON value}``, ``_step`` included, in order.

    A media value (table, images, chart table) comes back as the dict W&B wrote for it, e.g.
    ``row["val/per_class"] == {"_type": "table-file", "path": "media/table/...", "nrows": 3, ...}``.
    """
    return [
        _items_to_dict(record.history.item)
        for record in read_records(run_dir)
        if record.WhichOneof("record_type") == "history"
    ]


def summary(run_dir: str | Path) -> dict[str, Any]:
    """The run summary: every summary record's updates applied in order, removals honoured."""
    out: dict[str, Any] = {}
    for record in read_records(run_dir):
        if record.WhichOneof("record_type") == "summary":
            out.update(_items_to_dict(record.summary.update))
            for item in record.summary.remove:
                out.pop(_item_path(item)[0], None)
    return out


def charts(run_dir: str | Path) -> dict[str, Any]:
    """Custom charts (``wandb.plot_table`` and ``wandb.plot.*``) by key: the run config's
    ``_wandb/visualize`` entries, each with ``panel_config.panelDefId`` (e.g. ``wandb/lineseries/v0``) and
    the history key of its data table in the ``summaryTable`` query.
    """
    out: dict[str, Any] = {}
    for record in read_records(run_dir):
        if record.WhichOneof("record_type") == "config":
            for item in record.config.update:
                path = _item_path(item)
                if path[:2] == ["_wandb", "visualize"] and len(path) == 3:
                    out[path[2]] = json.loads(item.value_json)
    return out


def chart_table_key(chart: dict[str, Any]) -> str:
    """The history key of the table a custom chart draws."""
    query = chart["panel_config"]["userQuery"]["queryFields"][0]["fields"]
    (table_field,) = [f for f in query if f["name"] == "summaryTable"]
    return table_field["args"][0]["value"]


def media_files(run_dir: str | Path, kind: str = "") -> list[Path]:
    """Files under ``files/media/<kind>`` (``images``, ``table``, ``metadata/boxes2D``...), sorted."""
    root = Path(run_dir) / "files" / "media" / kind
    return sorted(p for p in root.rglob("*") if p.is_file())


def load_json_file(run_dir: str | Path, relative_path: str) -> Any:
    """A JSON file a history value points at (its ``path``), relative to the run's ``files/``."""
    return json.loads((Path(run_dir) / "files" / relative_path).read_text())


def load_table(run_dir: str | Path, value: dict[str, Any]) -> tuple[list[str], list[list[Any]]]:
    """``(columns, rows)`` of a logged ``wandb.Table``, from its history value."""
    if value.get("_type") != "table-file":
        raise ValueError(f"not a table value: {value}")
    table = load_json_file(run_dir, value["path"])
    return table["columns"], table["data"]


def load_images(run_dir: str | Path, value: dict[str, Any]) -> list[dict[str, Any]]:
    """The images of a logged list of ``wandb.Image``, from its history value: for each, ``path`` (the
    PNG), ``caption`` (or ``None``), ``boxes`` (layer name -> the boxes2D JSON W&B wrote) and ``masks``
    (layer name -> the path of the mask PNG).
    """
    if value.get("_type") != "images/separated":
        raise ValueError(f"not a list of images: {value}")
    captions = value.get("captions") or [None] * len(value["filenames"])
    all_boxes = value.get("all_boxes") or [{}] * len(value["filenames"])
    all_masks = value.get("all_masks") or [{}] * len(value["filenames"])
    return [
        {
            "path": Path(run_dir) / "files" / filename,
            "caption": caption,
            "boxes": {layer: load_json_file(run_dir, meta["path"]) for layer, meta in boxes.items()},
            "masks": {layer: Path(run_dir) / "files" / meta["path"] for layer, meta in masks.items()},
        }
        for filename, caption, boxes, masks in zip(value["filenames"], captions, all_boxes, all_masks)
    ]


def mask_class_labels(run_dir: str | Path) -> dict[str, dict[int, str]]:
    """The class names of mask layers, by ``"<key>_wandb_delimeter_<layer>"``: W&B keeps one set per
    layer and key in the run config (``_wandb/mask/class_labels``), the last one logged."""
    out: dict[str, dict[int, str]] = {}
    for record in read_records(run_dir):
        if record.WhichOneof("record_type") == "config":
            for item in record.config.update:
                if _item_path(item)[0] == "_wandb":
                    for key, entry in json.loads(item.value_json).get("mask/class_labels", {}).items():
                        out[key] = {int(code): name for code, name in entry["value"].items()}
    return out


def artifacts(run_dir: str | Path, kind: str) -> list[Any]:
    """The ``ArtifactRecord`` of each artifact version of type ``kind`` the run logged, in order (W&B also
    logs every table as an artifact of type ``run_table``). Each has ``name``, ``type``, ``aliases``,
    ``metadata`` (JSON text) and ``manifest.contents``."""
    return [
        record.artifact
        for record in read_records(run_dir)
        if record.WhichOneof("record_type") == "artifact" and record.artifact.type == kind
    ]


def artifact_files(artifact: Any) -> dict[str, Path]:
    """An artifact version's files by name: an offline run keeps a staged copy of each (``local_path``,
    under ``WANDB_DATA_DIR``) for ``wandb sync`` to upload."""
    return {entry.path: Path(entry.local_path) for entry in artifact.manifest.contents}


def load_artifact_table(
    run_dir: str | Path, value: dict[str, Any]
) -> tuple[list[str], list[list[Any]], dict[str, Path]]:
    """``(columns, rows, files)`` of a logged ``wandb.Table`` as W&B keeps it in the table's ``run_table``
    artifact, where media cells are whole (``{"_type": "image-file", "path": ..., "caption": ..., "boxes":
    {layer: [box, ...]}}``; the copy under ``files/media/table`` holds only the word ``"Image"``); ``files``
    maps a cell's ``path`` to the staged file."""
    client_id, _, name = value["artifact_path"].removeprefix("wandb-client-artifact://").partition("/")
    (artifact,) = [a for a in artifacts(run_dir, "run_table") if a.client_id == client_id]
    files = artifact_files(artifact)
    table = json.loads(files[name].read_text())
    return table["columns"], table["data"], files
