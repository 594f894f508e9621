"""Helpers shared by the command-line tests: run `polyfuse` in this process or as a
subprocess, check a usage error, and write the small cohorts their configs read (or build
them in memory)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from click.testing import Result
from typer.testing import CliRunner

from polyfuse.cli import app
from polyfuse.data.dataset import ArraySource, MultimodalDataset
from polyfuse.data.specs import ModalitySpec, TaskSpec

runner = CliRunner()


def run(*args: object) -> Result:
    """`polyfuse ARGS` in this process, every argument passed as a string."""
    return runner.invoke(app, [str(a) for a in args])


def clean_error(result: Result, *fragments: str) -> None:
    """A usage error: exit code 2, no traceback, and every fragment in the message."""
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in result.output, result.output


def polyfuse_command(*args: object) -> list[str]:
    """The command line of `python -m polyfuse ARGS`, for a subprocess."""
    return [sys.executable, "-m", "polyfuse", *map(str, args)]


def polyfuse_env(**extra: str) -> dict[str, str]:
    """This environment, one OpenMP thread, and `extra`: for a `polyfuse` subprocess."""
    return {**os.environ, "OMP_NUM_THREADS": "1", **extra}


def write_cohort(folder: Path) -> dict[str, Any]:
    """Write `folder/cohort.csv`, 120 patients with features f0..f5 and a binary `y` driven by
    f0 and f4; return a config's `data` section reading it as modalities a (f0..f2) and b."""
    rng = np.random.default_rng(0)
    n = 120
    x = rng.normal(size=(n, 6))
    table = pd.DataFrame(x, columns=[f"f{i}" for i in range(6)])
    table.insert(0, "id", [f"p{i}" for i in range(n)])
    table["y"] = (x[:, 0] - x[:, 4] + rng.normal(0, 0.5, n) > 0).astype(int)
    table.to_csv(folder / "cohort.csv", index=False)
    return {
        "table": "cohort.csv",
        "modalities": {
            "a": {"kind": "tabular", "columns": ["f0", "f1", "f2"]},
            "b": {"kind": "tabular", "columns": ["f3", "f4", "f5"]},
        },
        "tasks": {"y": {"type": "binary", "column": "y"}},
    }


def write_patients(folder: Path) -> dict[str, Any]:
    """Write `folder/patients.csv`, 40 patients with age, crp, g1, g2 and a binary `y` driven by
    age; return a config's `data` section reading it as modalities clinical and genes."""
    rng = np.random.default_rng(0)
    n = 40
    x = rng.normal(size=(n, 4))
    frame = pd.DataFrame({"id": [f"P{i:02d}" for i in range(n)]})
    frame[["age", "crp", "g1", "g2"]] = x
    frame["y"] = (x[:, 0] + rng.normal(0, 0.5, n) > 0).astype(int)
    frame.to_csv(folder / "patients.csv", index=False)
    return {
        "table": "patients.csv",
        "modalities": {
            "clinical": {"kind": "tabular", "columns": ["age", "crp"]},
            "genes": {"kind": "tabular", "prefix": "g"},
        },
        "tasks": {"y": {"type": "binary", "column": "y"}},
    }


# Words of the toy text reports (hashed tokens need no vocabulary).
WORDS = [
    "tumour",
    "margin",
    "benign",
    "necrosis",
    "grade",
    "stage",
    "node",
    "lymph",
    "mass",
    "biopsy",
    "stable",
    "lesion",
]


def survival_cohort(n: int = 90, *, task: str = "os", without_b: float = 0.0) -> MultimodalDataset:
    """`n` patients with tabular modalities a (4 features) and b (3), a survival `task` whose
    log-hazard is 1.5·a0 + b0, censored at random; a fraction `without_b` lacks b."""
    rng = np.random.default_rng(3)
    a = rng.normal(size=(n, 4)).astype(np.float32)
    b = rng.normal(size=(n, 3)).astype(np.float32)
    eta = 1.5 * a[:, 0] + 1.0 * b[:, 0]
    time = rng.exponential(np.exp(-eta)) * 100 + 1
    censor = rng.exponential(200, n) + 1
    y = np.stack([np.minimum(time, censor), (time <= censor).astype(float)], 1)
    has_b = rng.random(n) >= without_b
    return MultimodalDataset(
        [f"p{i}" for i in range(n)],
        {"a": ModalitySpec("a", "tabular", (4,)), "b": ModalitySpec("b", "tabular", (3,))},
        {"a": ArraySource(a, np.ones(n, bool)), "b": ArraySource(b, has_b)},
        {task: TaskSpec(task, "survival")},
        {task: y},
        name="toy",
    )
