"""Tests of the main example: examples/shapes_data.py, shapes_model.py and train_shapes.py."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
sys.path.insert(0, str(EXAMPLES))

import shapes_data  # noqa: E402
from shapes_data import ShapesDataset, collate, export_coco  # noqa: E402

from tests.doc_snippets import REPO, documented_commands  # noqa: E402

STAT_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")


def _same_sample(a, b) -> bool:
    (ia, ta), (ib, tb) = a, b
    if not torch.equal(ia, ib) or ta["image_id"] != tb["image_id"]:
        return False
    return all(torch.equal(ta[k], tb[k]) for k in ("boxes", "labels", "iscrowd", "area"))


# ----------------------------------------------------------------------------- (a) the dataset


def test_dataset_is_deterministic_per_seed():
    a = ShapesDataset(12, 96, seed=3, split="train")
    b = ShapesDataset(12, 96, seed=3, split="train")
    c = ShapesDataset(12, 96, seed=4, split="train")
    v = ShapesDataset(12, 96, seed=3, split="val")
    assert all(_same_sample(a[i], b[i]) for i in range(len(a)))
    # a fresh dataset read in another order still gives the same samples
    assert all(_same_sample(a[i], ShapesDataset(12, 96, seed=3)[i]) for i in reversed(range(len(a))))
    assert not any(torch.equal(a[i][0], c[i][0]) for i in range(len(a)))
    assert not any(torch.equal(a[i][0], v[i][0]) for i in range(len(a)))


def test_sample_format():
    ds = ShapesDataset(16, 128, seed=0)
    assert len(ds) == 16
    for i in range(len(ds)):
        image, t = ds[i]
        assert image.shape == (3, 128, 128) and image.dtype == torch.float32
        assert 0.0 <= float(image.min()) and float(image.max()) <= 1.0
        m = len(t["labels"])
        assert t["boxes"].shape == (m, 4) and t["boxes"].dtype == torch.float32
        assert t["labels"].dtype == torch.int64 and t["iscrowd"].dtype == torch.int64
        assert t["area"].shape == (m,) and t["area"].dtype == torch.float32
        assert t["image_id"] == i + 1
        if m:
            b = t["boxes"]
            assert (b[:, 0] < b[:, 2]).all() and (b[:, 1] < b[:, 3]).all()
            assert (b >= 0).all() and (b <= 128).all()
            assert ((1 <= t["labels"]) & (t["labels"] <= shapes_data.NUM_CLASSES)).all()
            box_area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
            assert (t["area"] > 0).all() and (t["area"] <= box_area).all()  # the shape's area, not the box's
    images, targets = collate([ds[0], ds[1], ds[2]])
    assert images.shape == (3, 3, 128, 128) and len(targets) == 3 and targets[1]["image_id"] == 2


def test_size_mix():
    ds = ShapesDataset(150, 128, seed=0)
    areas, crowd, empty = [], 0, 0
    for i in range(len(ds)):
        _, t = ds.raw(i)
        empty += len(t["labels"]) == 0
        crowd += int(t["iscrowd"].sum())
        areas += [a for a, c in zip(t["area"], t["iscrowd"]) if not c]
    areas = np.array(areas)
    small, medium, large = (areas < 32**2).sum(), ((areas >= 32**2) & (areas < 96**2)).sum(), (areas >= 96**2).sum()
    assert small >= 0.25 * len(areas) and medium >= 0.25 * len(areas) and large >= 0.03 * len(areas)
    assert 3 <= empty <= 40
    assert 3 <= crowd <= 40


def test_hflip_keeps_boxes_on_the_shapes():
    torch.manual_seed(0)
    plain = ShapesDataset(8, 96, seed=1)
    flip = ShapesDataset(8, 96, seed=1, hflip=True)
    flipped = 0
    for i in range(8):
        (im, t), (imf, tf) = plain[i], flip[i]
        if not torch.equal(im, imf):
            flipped += 1
            assert torch.equal(im.flip(-1), imf)
            b = t["boxes"]
            assert torch.allclose(tf["boxes"], torch.stack([96 - b[:, 2], b[:, 1], 96 - b[:, 0], b[:, 3]], 1))
    assert flipped > 0


# ----------------------------------------------------------------------------- (b) COCO export


def test_export_coco_matches_targets(tmp_path):
    from PIL import Image
    from pycocotools.coco import COCO

    ds = ShapesDataset(30, 128, seed=5, split="val")
    path = export_coco(ds, tmp_path / "coco")
    assert path == tmp_path / "coco" / "instances.json"
    coco = COCO(str(path))
    assert sorted(coco.getImgIds()) == list(range(1, 31))
    assert sorted(coco.getCatIds()) == sorted(shapes_data.CLASS_NAMES)
    assert len(coco.getAnnIds()) == sum(len(ds.raw(i)[1]["labels"]) for i in range(len(ds)))
    assert set(a["id"] for a in coco.dataset["annotations"]) == set(range(1, len(coco.getAnnIds()) + 1))
    for i in range(len(ds)):
        image, t = ds[i]
        info = coco.loadImgs(t["image_id"])[0]
        assert (info["width"], info["height"]) == (128, 128)
        png = np.array(Image.open(tmp_path / "coco" / "images" / info["file_name"]))
        assert torch.equal(torch.from_numpy(png).permute(2, 0, 1).float() / 255, image)
        anns = coco.loadAnns(coco.getAnnIds(imgIds=[t["image_id"]]))
        assert len(anns) == len(t["labels"])
        boxes = torch.tensor([[x, y, x + w, y + h] for x, y, w, h in (a["bbox"] for a in anns)]).reshape(-1, 4)
        assert torch.allclose(boxes, t["boxes"])
        assert [a["category_id"] for a in anns] == t["labels"].tolist()
        assert [a["iscrowd"] for a in anns] == t["iscrowd"].tolist()
        assert [a["area"] for a in anns] == t["area"].tolist()


def test_export_cli(tmp_path, capsys):
    from pycocotools.coco import COCO

    assert shapes_data.main(["--export-coco", str(tmp_path), "--num-images", "4", "--image-size", "64"]) == 0
    assert len(list((tmp_path / "images").glob("*.png"))) == 4
    assert len(COCO(str(tmp_path / "instances.json")).getImgIds()) == 4
    assert "instances.json" in capsys.readouterr().out


# ----------------------------------------------------------------------------- the model


def test_model_shapes_and_decode():
    from shapes_model import DetectionLoss, ShapesDetector, decode

    torch.manual_seed(0)
    ds = ShapesDataset(4, 64, seed=2)
    images, targets = collate([ds[i] for i in range(4)])
    model = ShapesDetector(shapes_data.NUM_CLASSES, width=8)
    hm, ltrb = model(images)
    assert hm.shape == (4, shapes_data.NUM_CLASSES, 16, 16) and ltrb.shape == (4, 4, 16, 16)
    loss, parts = DetectionLoss(shapes_data.NUM_CLASSES)((hm, ltrb), targets)
    assert torch.isfinite(loss) and set(parts) == {"hm", "box"}
    loss.backward()
    model.eval()
    dets = decode(model(images), 64)
    assert len(dets) == 4
    for d in dets:
        n = len(d["scores"])
        assert 0 < n <= 100 and d["boxes"].shape == (n, 4) and d["labels"].dtype == torch.int64
        assert (d["boxes"] >= 0).all() and (d["boxes"] <= 64).all()
        assert (d["scores"][:-1] >= d["scores"][1:]).all()


# ----------------------------------------------------------------------------- (c), (d) training runs


def _tiny_config(tmp: Path, **kw) -> dict:
    cfg = dict(
        epochs=2,
        train_images=32,
        val_images=15,  # odd: the 2-process DistributedSampler pads one duplicate image
        image_size=64,
        batch_size=8,
        width=8,
        warmup_iters=2,
        output_dir=str(tmp),
        no_progress=True,
        threads=2,
        seed=1,
    )
    cfg.update(kw)
    return cfg


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    import train_shapes

    tmp = tmp_path_factory.mktemp("shapes_run")
    saved = {k: os.environ.get(k) for k in ("WANDB_DIR", "WANDB_MODE", "WANDB_SILENT")}
    os.environ["WANDB_DIR"] = str(tmp / "wandb_dir")
    os.environ["WANDB_SILENT"] = "true"
    os.environ.pop("WANDB_MODE", None)
    try:
        result = train_shapes.run(_tiny_config(tmp / "train", wandb_mode="offline"))
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return tmp, result


def _assert_twelve_finite(metrics: dict) -> None:
    assert set(metrics) == set(STAT_NAMES)
    assert all(isinstance(v, float) and math.isfinite(v) for v in metrics.values())


def test_run_end_to_end(trained):
    tmp, result = trained
    _assert_twelve_finite(result["metrics"])
    assert len(result["history"]) == result["epochs_run"] == 2
    assert result["metrics"] == result["history"][-1]
    # the run's own folder, linked as latest, holds the checkpoint and results.json
    run_dir = tmp / "train" / "run-1"
    assert Path(result["run_dir"]) == run_dir and (tmp / "train" / "latest").resolve() == run_dir.resolve()
    assert json.loads((run_dir / "results.json").read_text()) == result
    # the checkpoint: exists, loads into the model, and remembers the evaluation it was saved at
    ckpt_path = Path(result["checkpoint"])
    assert ckpt_path.is_file() and ckpt_path.parent == run_dir / "checkpoints"
    ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)
    from shapes_model import ShapesDetector

    ShapesDetector(shapes_data.NUM_CLASSES, width=8).load_state_dict(ckpt["model"])
    assert ckpt["meta"]["metrics"] == result["checkpoint_metrics"]
    assert ckpt["meta"]["metrics"] in result["history"]
    # W&B offline run under $WANDB_DIR, its id in the checkpoint
    wandb_dir = Path(result["wandb_dir"])
    assert wandb_dir.is_dir() and (tmp / "wandb_dir") in wandb_dir.parents
    assert wandb_dir.name.startswith("offline-run-") and wandb_dir.name.endswith(result["wandb_run_id"])
    assert ckpt["meta"]["wandb_run_id"] == result["wandb_run_id"]
    assert list(wandb_dir.glob("*.wandb"))


def test_eval_only_reproduces_checkpoint_metrics(trained):
    import train_shapes

    tmp, result = trained
    again = train_shapes.run(
        _tiny_config(tmp / "eval1", eval_only=True, checkpoint=result["checkpoint"], wandb_mode="disabled")
    )
    _assert_twelve_finite(again["metrics"])
    assert again["metrics"] == result["checkpoint_metrics"]
    assert again["world_size"] == 1


def test_two_process_training_evaluates_what_it_saves(tmp_path):
    """2-process training evaluates the weights and BatchNorm statistics of rank 0, which its checkpoint
    holds: --eval-only of the checkpoint in one process gives the same 12 numbers (same threads per
    process; the padded duplicate image of the DistributedSampler is counted once)."""
    import train_shapes

    # On the CPU both times: a GPU's convolutions would give other (equally right) boxes than the CPU's.
    kw = dict(wandb_mode="disabled", threads=1, device="cpu")
    two = train_shapes.run(_tiny_config(tmp_path, nproc_per_node=2, **kw))
    one = train_shapes.run(_tiny_config(tmp_path, eval_only=True, checkpoint=two["run_dir"], **kw))
    assert two["world_size"] == 2 and one["world_size"] == 1
    assert Path(one["checkpoint"]) == Path(two["checkpoint"])
    assert one["metrics"] == two["checkpoint_metrics"]


def test_main_parses_flags():
    import train_shapes

    args = train_shapes.get_args_parser().parse_args(
        ["--epochs", "3", "--backend", "faster_coco_eval", "--wandb-mode", "disabled", "--nproc-per-node", "2"]
    )
    cfg = train_shapes.get_config(args)
    assert cfg["epochs"] == 3 and cfg["backend"] == "faster_coco_eval" and cfg["nproc_per_node"] == 2
    with pytest.raises(KeyError):
        train_shapes.get_config({"no_such_option": 1})
    assert train_shapes.main(["--eval-only"]) == 2


# ----------------------------------------------------------------------------- the documented commands

DOCS = (REPO / "README.md", EXAMPLES / "README.md", EXAMPLES / "train_shapes.py")
# appended to a documented command: the same run, tiny (later flags win in argparse)
TINY_DATA = ["--val-images", "15", "--image-size", "64", "--batch-size", "8", "--threads", "2", "--no-progress"]
TINY = ["--epochs", "1", "--train-images", "32", "--width", "8", "--warmup-iters", "2", *TINY_DATA]


def test_documented_commands_parse():
    import train_shapes

    commands = documented_commands("train_shapes.py", DOCS)
    assert (
        [] in commands
        and any("--eval-only" in c for c in commands)
        and any("--nproc_per_node" not in c for c in commands)
    )
    for command in commands:
        train_shapes.get_args_parser().parse_args(command)  # exits on an unknown flag


def _run_record(run_dir: Path):
    from tests.wandb_records import read_records

    (record,) = [r.run for r in read_records(run_dir) if r.WhichOneof("record_type") == "run"][:1]
    return record


def test_documented_commands_run_as_written(tmp_path, monkeypatch, capsys):
    """Train twice and evaluate as the docs say (with tiny data): each run gets its own folder, and
    --eval-only of runs/shapes/latest reproduces the last run's best checkpoint, logged to W&B."""
    import train_shapes

    from tests.wandb_records import history_rows

    monkeypatch.chdir(tmp_path)
    for name in ("WANDB_DIR", "WANDB_MODE", "WANDB_PROJECT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("WANDB_SILENT", "true")
    commands = documented_commands("train_shapes.py", DOCS)
    evals = [c for c in commands if "--eval-only" in c]
    assert evals and all(c == evals[0] for c in evals), evals

    assert train_shapes.main([*TINY, "--wandb-mode", "disabled"]) == 0
    first = json.loads(Path("runs/shapes/run-1/results.json").read_text())
    assert train_shapes.main(TINY) == 0  # the documented command: W&B offline by default
    out = capsys.readouterr().out
    assert out.count("run folder: runs/shapes/run-2\n") == 2  # at the start and at the end
    second = json.loads(Path("runs/shapes/run-2/results.json").read_text())
    assert json.loads(Path("runs/shapes/run-1/results.json").read_text()) == first
    assert Path(first["checkpoint"]).parent == Path("runs/shapes/run-1/checkpoints")
    assert Path(second["checkpoint"]).parent == Path("runs/shapes/run-2/checkpoints")
    assert Path(first["checkpoint"]).is_file() and Path(second["checkpoint"]).is_file()
    assert Path("runs/shapes/latest").resolve() == Path("runs/shapes/run-2").resolve()
    assert Path(second["wandb_dir"]).parent == Path("runs/shapes/run-2/wandb")

    assert train_shapes.main([*evals[0], *TINY_DATA]) == 0
    out = capsys.readouterr().out
    evaluated = json.loads(Path("runs/shapes/eval-1/eval_results.json").read_text())
    assert evaluated["checkpoint"] == second["checkpoint"] and f"checkpoint: {second['checkpoint']}" in out
    assert evaluated["metrics"] == second["checkpoint_metrics"]
    # its own W&B run, tagged as an evaluation of the checkpoint, with the 12 numbers it printed
    wandb_dir = Path(evaluated["wandb_dir"])
    assert wandb_dir.parent == Path("runs/shapes/eval-1/wandb") and f"wandb sync {wandb_dir}" in out
    rows = [row for row in history_rows(wandb_dir) if "val/AP" in row]
    assert [{k: row[f"val/{k}"] for k in STAT_NAMES} for row in rows] == [evaluated["metrics"]]
    record = _run_record(wandb_dir)
    assert record.job_type == "eval" and "eval" in record.tags
    config = {item.key: json.loads(item.value_json) for item in record.config.update}
    assert config["trained_by_wandb_run"] == second["wandb_run_id"]
    assert config["checkpoint"] == second["checkpoint"]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--eval-only"], "--eval-only needs --checkpoint PATH"),
        (["--eval-only", "--checkpoint", "runs/shapes/latest"], "runs/shapes/latest: no such file or run folder"),
        (["--eval-only", "--checkpoint", "best.pt"], "best.pt: no such file or run folder"),
        (["--eval-only", "--checkpoint", "empty_run"], "empty_run: no checkpoints/best_*.pt in this folder"),
        (["--eval-only", "--checkpoint", "two_runs"], "two_runs: 2 checkpoints in this folder, name one"),
        (["--eval-only", "--checkpoint", "notes.txt"], "notes.txt: not a torch checkpoint"),
        (["--eval-only", "--checkpoint", "weights.pt"], "weights.pt: no 'model' entry"),
        (["--run-name", "taken", "--output-dir", "."], "taken exists already: pick another --run-name"),
    ],
)
def test_bad_paths_give_one_line(tmp_path, monkeypatch, capsys, argv, message):
    import train_shapes

    monkeypatch.chdir(tmp_path)
    Path("empty_run/checkpoints").mkdir(parents=True)
    Path("two_runs/checkpoints").mkdir(parents=True)
    for name in ("best_checkpoint_1_AP=0.1.pt", "best_checkpoint_2_AP=0.2.pt"):
        Path("two_runs/checkpoints", name).write_bytes(b"")
    Path("notes.txt").write_text("not a checkpoint")
    torch.save({"weight": torch.zeros(1)}, "weights.pt")
    Path("taken").mkdir()
    assert train_shapes.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("train_shapes.py: error: ") and err.count("\n") == 1 and message in err, err


@pytest.mark.skipif(sys.platform == "win32", reason="needs a pseudo-terminal")
def test_progress_bars_leave_each_epoch_line_at_column_0(tmp_path):
    """In a real terminal (a pty, rendered by pyte) every ``epoch N:`` line starts a line of its own, and
    no progress bar is left on the screen."""
    import fcntl
    import pty
    import struct
    import termios

    import pyte

    columns, rows = 150, 200
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
    flags = [f for f in TINY if f != "--no-progress"]
    cmd = [sys.executable, str(EXAMPLES / "train_shapes.py"), *flags, "--epochs", "2", "--output-dir", str(tmp_path)]
    env = dict(os.environ, TERM="xterm", COLUMNS=str(columns), LINES=str(rows), WANDB_MODE="disabled")
    proc = subprocess.Popen(cmd, stdin=slave, stdout=slave, stderr=slave, env=env, close_fds=True)
    os.close(slave)
    screen = pyte.Screen(columns, rows)
    stream = pyte.ByteStream(screen)
    try:
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not data:
                break
            stream.feed(data)
    finally:
        os.close(master)
        assert proc.wait(timeout=60) == 0
    lines = [line.rstrip() for line in screen.display]
    summaries = [(i, line.index("epoch")) for i, line in enumerate(lines) if re.search(r"epoch +\d+: AP", line)]
    assert [column for _, column in summaries] == [0, 0], "\n".join(lines)
    assert not any("%|" in line for line in lines), "\n".join(lines)  # the bars were cleared
