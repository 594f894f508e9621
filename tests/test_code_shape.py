"""Functions a reader can hold: none longer than 80 lines, none more complex than 12 branches.

The length is counted from `def` to the last line, docstring included. The complexity rule is
ruff's mccabe check (C901, `max-complexity` in pyproject.toml), run here so that the default
suite enforces it and not only `make lint`.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
MAX_LINES = 80


def long_functions(src: Path, limit: int = MAX_LINES) -> list[str]:
    found = []
    for path in sorted(src.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = node.end_lineno - node.lineno + 1
                if lines > limit:
                    found.append(f"{path.relative_to(src)}:{node.lineno} {node.name} ({lines})")
    return found


def test_no_function_is_longer_than_80_lines():
    assert long_functions(ROOT / "src") == []


def test_the_length_check_can_fail(tmp_path):
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_LINES))
    (tmp_path / "m.py").write_text(f"def short():\n    pass\n\n\ndef long():\n{body}\n")
    assert long_functions(tmp_path) == [f"m.py:5 long ({MAX_LINES + 1})"]


def test_complexity_is_at_most_the_configured_limit():
    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    if ruff is None:
        pytest.skip("ruff is not installed (pip install -e '.[dev]')")
    out = subprocess.run(
        [ruff, "check", "--select", "C901", "--output-format", "concise", "src"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stdout + out.stderr
