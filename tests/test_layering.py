"""The package's layers, read from its imports (an ``ast`` walk: nothing is imported or run).

From the bottom up; a module may import its own layer and those below it, never one above:

1. ``ignite_det.iou``: one module per IoU type, its input checks and its COCO similarity. It may use the
   core's records and parameters (``store``, ``params``), never a backend.
2. The core and the backends. The core: the flat modules of the data path (``metric``, ``params``,
   ``inputs``, ``store``, ``gather``, ``result``, ``operating_point``, ``confusion``, and any new flat
   module). ``ignite_det.backends``: the evaluators (native, pycocotools, faster-coco-eval). They use
   each other (the metric runs a backend, a backend fills the core's records) and the IoU types.
3. ``ignite_det.wandb_logging``: the optional W&B layer, on top of the metric and its result.
4. ``ignite_det.cli`` (and ``ignite_det/__main__.py``): the command line, which may use everything.

``ignite_det/__init__.py`` is the public facade, above all layers: it re-exports from each of them.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "ignite_det"
SUBPACKAGES = ("iou", "backends", "wandb_logging", "cli")
# Per layer, the layers it must never import.
FORBIDDEN = {
    "iou": {"backends", "wandb_logging", "cli"},
    "core": {"wandb_logging", "cli"},
    "backends": {"wandb_logging", "cli"},
    "wandb_logging": {"cli"},
    "cli": set(),
}


def _module_name(path: Path, package: Path = PACKAGE) -> str:
    parts = path.relative_to(package.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer_of(module: str) -> str | None:
    """The layer of a dotted ``ignite_det`` module name; ``None`` for the facade and outside modules."""
    parts = module.split(".")
    if parts[0] != "ignite_det" or len(parts) == 1:
        return None
    if parts[1] == "__main__":
        return "cli"
    return parts[1] if parts[1] in SUBPACKAGES else "core"


def imports(path: Path, package: Path = PACKAGE) -> list[list[str]]:
    """Per import statement anywhere in ``path`` (a lazy one inside a function counts), the dotted names it
    may bring in: ``from a.b import c`` gives ``["a.b", "a.b.c"]`` (``c`` may be a module)."""
    here = _module_name(path, package).split(".")
    parent = here if path.name == "__init__.py" else here[:-1]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [[alias.name] for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = parent[: len(parent) - node.level + 1] if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            found.append([module, *(f"{module}.{alias.name}" for alias in node.names)])
    return found


def violations(package: Path = PACKAGE) -> list[str]:
    """``"importer (layer) -> imported (layer)"`` for every import statement that goes up a layer."""
    found = []
    for path in sorted(package.rglob("*.py")):
        name = _module_name(path, package)
        importer = layer_of(name)
        if importer is None:
            continue
        for names in imports(path, package):
            up = [m for m in names if layer_of(m) in FORBIDDEN[importer] and _is_module(package, m)]
            if up:
                found.append(f"{name} ({importer}) -> {up[0]} ({layer_of(up[0])})")
    return found


def _is_module(package: Path, module: str) -> bool:
    """Whether a dotted name is a module or package of ignite_det (not a name imported from one)."""
    relative = Path(*module.split(".")[1:])
    target = package / relative
    return target.with_suffix(".py").is_file() or (target / "__init__.py").is_file()


def test_no_layer_imports_one_above_it():
    assert violations() == []


@pytest.mark.parametrize(
    ("module", "source", "expected"),
    [
        ("backends/leak.py", "from ignite_det.wandb_logging import report\n", "wandb_logging"),
        ("backends/native/leak.py", "from ...cli import main\n", "cli"),
        ("iou/leak.py", "def f():\n    import ignite_det.backends.cocoeval\n", "backends"),
        ("leak.py", "from ignite_det import cli\n", "cli"),
        ("leak.py", "from .wandb_logging.attach import attach_wandb_logging\n", "wandb_logging"),
        ("wandb_logging/leak.py", "from ignite_det.cli.main import main\n", "cli"),
    ],
)
def test_an_import_up_a_layer_is_caught(tmp_path, module, source, expected):
    """The walk sees absolute, relative and lazy imports: a copy of the package with one planted fails."""
    copy = tmp_path / "ignite_det"
    for path in PACKAGE.rglob("*.py"):
        (copy / path.relative_to(PACKAGE)).parent.mkdir(parents=True, exist_ok=True)
        (copy / path.relative_to(PACKAGE)).write_text(path.read_text())
    (copy / module).write_text(source)
    found = violations(copy)
    assert len(found) == 1 and found[0].endswith(f"({expected})"), found
