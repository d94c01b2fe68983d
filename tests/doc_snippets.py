"""The code in the docs, for tests that run it: Python snippets of markdown, and command lines of bash
blocks and of a script's usage docstring."""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def python_snippets(text: str) -> list[str]:
    """The bodies of the ```python blocks of a markdown text, in order."""
    return re.findall(r"^```python\n(.*?)^```", text, re.S | re.M)


def _shell_texts(doc: Path) -> list[str]:
    """A markdown file's ```bash blocks, or a Python script's docstring (its usage lines)."""
    text = doc.read_text()
    if doc.suffix == ".py":
        return [text.split('"""')[1]]
    return re.findall(r"^```bash\n(.*?)^```", text, re.S | re.M)


def documented_commands(script: str, docs: Iterable[Path]) -> list[list[str]]:
    """The arguments of every command in ``docs`` that runs ``examples/<script>``, in order:
    ``python examples/train_shapes.py --eval-only ...`` gives ``["--eval-only", ...]``. Lines continued
    with a backslash are joined, ``#`` comments dropped, and ``a && b`` split into its commands."""
    commands = []
    for doc in docs:
        for text in _shell_texts(doc):
            for line in re.sub(r"\\{1,2}\n", " ", text).splitlines():
                if f"examples/{script}" not in line:  # prose lines of a docstring may not split
                    continue
                words = shlex.split(line, comments=True)
                while words:
                    end = words.index("&&") if "&&" in words else len(words)
                    command, words = words[:end], words[end + 1 :]
                    scripts = [i for i, word in enumerate(command) if word.endswith(f"examples/{script}")]
                    if scripts:
                        commands.append(command[scripts[0] + 1 :])
    return commands
