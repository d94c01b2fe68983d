"""A folder per run, a ``latest`` link to the last training run, and finding a run's checkpoint, shared by
both training examples (the rest of their common skeleton is in ``skeleton.py``).

Both training examples write each run into its own folder under ``--output-dir``::

    runs/shapes/
        run-1/            checkpoints/best_checkpoint_12_AP=0.6079.pt, results.json, wandb/
        run-2/            the next training run
        eval-1/           an --eval-only run: eval_results.json, wandb/
        latest -> run-2   the last training run started

so that ``--eval-only --checkpoint runs/shapes/latest`` evaluates the best checkpoint of the last
training run, and no run overwrites another's files.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

LATEST = "latest"
CHECKPOINT_GLOB = "best_*.pt"


def new_run_dir(root: str | os.PathLike, prefix: str, name: str | None = None) -> Path:
    """Create and return a fresh folder under ``root``: ``name``, or ``<prefix>-<N>`` with N one more
    than the highest N there.

    Raises:
        FileExistsError: if the folder ``name`` exists already.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    if name is not None:
        run_dir = root / name
        if run_dir.exists():
            raise FileExistsError(f"{run_dir} exists already: pick another --run-name")
        run_dir.mkdir()
        return run_dir
    pattern = re.compile(rf"{re.escape(prefix)}-(\d+)")
    taken = [int(m.group(1)) for p in root.iterdir() if (m := pattern.fullmatch(p.name))]
    number = max(taken, default=0) + 1
    while True:  # another process may take the same number between the listing and mkdir
        try:
            (root / f"{prefix}-{number}").mkdir()
            return root / f"{prefix}-{number}"
        except FileExistsError:
            number += 1


def link_latest(run_dir: Path) -> Path | None:
    """Point ``<run_dir's parent>/latest`` at ``run_dir`` (a relative symlink, replaced atomically).

    Returns the link, or None where the file system refuses symlinks (Windows without the privilege):
    the run folder itself then has to be named.
    """
    link = run_dir.parent / LATEST
    if link.exists() and not link.is_symlink():
        return None  # a real folder of that name belongs to the user (--run-name latest)
    tmp = run_dir.parent / f".{LATEST}.{os.getpid()}"
    try:
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(run_dir.name, target_is_directory=True)
        os.replace(tmp, link)
    except OSError:
        tmp.unlink(missing_ok=True)
        return None
    return link


def find_checkpoint(path: str | os.PathLike) -> Path:
    """The checkpoint file ``path`` names: the file itself, or the single ``best_*.pt`` of a run folder
    (in its ``checkpoints/``), e.g. ``runs/shapes/latest``.

    Raises:
        FileNotFoundError: with a one-line message, if there is no such file or folder, or the folder
            holds no checkpoint.
        ValueError: if the folder holds several checkpoints.
    """
    path = Path(path)
    if path.is_file():
        return path
    if path.is_symlink() and path.is_dir():  # runs/shapes/latest: name the run folder it points at
        path = path.parent / os.readlink(path)
    if not path.is_dir():
        hint = " (a training run makes it)" if path.name == LATEST else ""
        raise FileNotFoundError(f"--checkpoint {path}: no such file or run folder{hint}")
    found = sorted(path.glob(f"checkpoints/{CHECKPOINT_GLOB}")) or sorted(path.glob(CHECKPOINT_GLOB))
    if not found:
        raise FileNotFoundError(
            f"--checkpoint {path}: no checkpoints/{CHECKPOINT_GLOB} in this folder "
            "(a run saves one at the end of its first epoch)"
        )
    if len(found) > 1:
        names = ", ".join(str(p) for p in found)
        raise ValueError(f"--checkpoint {path}: {len(found)} checkpoints in this folder, name one: {names}")
    return found[0]


def make_run_dir(config: dict[str, Any]) -> Path:
    """Create this run's folder under ``--output-dir`` and print it; a training run becomes ``latest``."""
    prefix = "eval" if config["eval_only"] else "run"
    run_dir = new_run_dir(config["output_dir"], prefix, config["run_name"])
    print(f"run folder: {run_dir}", flush=True)
    if not config["eval_only"] and link_latest(run_dir) is None:
        print(f"(could not link {run_dir.parent / 'latest'} to it: name the run folder itself)", flush=True)
    return run_dir
