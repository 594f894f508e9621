"""Kill `polyfuse fit` / `polyfuse cv` with SIGKILL at several points, run again with
`--resume`, and get exactly what an uninterrupted run gives; no half-written file is left."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from safetensors.torch import load_file

from polyfuse.training.checkpoint import load_checkpoint

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")


@pytest.fixture(scope="module")
def config(tmp_path_factory) -> Path:
    """A small manifest cohort and a fit/CV config that checkpoints every epoch."""
    root = tmp_path_factory.mktemp("crash")
    rng = np.random.default_rng(0)
    n = 120
    x = rng.normal(size=(n, 6))
    table = pd.DataFrame(x, columns=[f"f{i}" for i in range(6)])
    table.insert(0, "id", [f"p{i}" for i in range(n)])
    table["y"] = (x[:, 0] - x[:, 4] + rng.normal(0, 0.5, n) > 0).astype(int)
    table.to_csv(root / "cohort.csv", index=False)
    cfg = {
        "name": "run",
        "seed": 0,
        "data": {
            "table": "cohort.csv",
            "modalities": {
                "a": {"kind": "tabular", "columns": ["f0", "f1", "f2"]},
                "b": {"kind": "tabular", "columns": ["f3", "f4", "f5"]},
            },
            "tasks": {"y": {"type": "binary", "column": "y"}},
        },
        "model": {"name": "early", "params": {"dim": 16, "dropout": 0.2}},
        "training": {
            "epochs": 12,
            "batch_size": 8,
            "patience": 12,
            "checkpoint_every": 1,
            "progress": False,
        },
        "cv": {"folds": 3, "repeats": 1},
    }
    (root / "fit.yaml").write_text(yaml.safe_dump(cfg | {"output": "ref"}))
    return root


def _polyfuse(*args: str) -> list[str]:
    return [sys.executable, "-m", "polyfuse", *args]


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1"}


def _with_output(config: Path, output: str) -> Path:
    raw = yaml.safe_load((config / "fit.yaml").read_text())
    path = config / f"{output}.yaml"
    path.write_text(yaml.safe_dump(raw | {"output": output}))
    return path


def _kill_when(cmd: list[str], ready: Callable[[], bool], timeout: float = 120) -> None:
    """Start `cmd`, SIGKILL it as soon as `ready()` holds (or it ends by itself)."""
    proc = subprocess.Popen(cmd, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    start = time.monotonic()
    while proc.poll() is None and not ready():
        assert time.monotonic() - start < timeout, "the run never reached the kill point"
        time.sleep(0.02)
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait()


def _run(cmd: list[str]) -> None:
    done = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]


def _epoch(ckpt: Path) -> int:
    try:
        return int(load_checkpoint(ckpt)["epoch"])
    except Exception:  # not there yet
        return -1


def _no_partial_files(run: Path) -> None:
    leftovers = [p for p in run.rglob(".*") if p.is_file()]
    assert leftovers == [], leftovers


@pytest.fixture(scope="module")
def reference_fit(config) -> dict:
    _run(_polyfuse("fit", str(config / "fit.yaml")))
    return load_file(str(config / "ref" / "run" / "model.safetensors"))


KILL_POINTS = {
    "before any checkpoint": lambda run: (run / "config.yaml").is_file(),
    "after the first checkpoint": lambda run: _epoch(run / "checkpoints" / "last.ckpt") >= 1,
    "mid-training": lambda run: _epoch(run / "checkpoints" / "last.ckpt") >= 6,
    "while saving the model": lambda run: (run / "model.safetensors").is_file(),
}


SLOW_POINTS = ("before any checkpoint", "after the first checkpoint")  # ~25 s each


@pytest.mark.parametrize(
    "point",
    [pytest.param(p, marks=[pytest.mark.slow] if p in SLOW_POINTS else []) for p in KILL_POINTS],
)
def test_killed_fit_resumes_to_the_same_model(config, reference_fit, point):
    output = "fit_" + point.replace(" ", "_")
    cfg = _with_output(config, output)
    run = config / output / "run"
    _kill_when(_polyfuse("fit", str(cfg)), lambda: KILL_POINTS[point](run))
    _run(_polyfuse("fit", str(cfg), "--resume"))
    weights = load_file(str(run / "model.safetensors"))
    assert weights.keys() == reference_fit.keys()
    for k, v in reference_fit.items():
        assert np.array_equal(weights[k].numpy(), v.numpy()), k
    _no_partial_files(run)


def test_killed_cv_resumes_to_the_same_metrics(config):
    _run(_polyfuse("cv", str(config / "fit.yaml"), "--overwrite"))
    reference = pd.read_csv(config / "ref" / "run" / "folds.csv")
    cfg = _with_output(config, "cv_killed")
    run = config / "cv_killed" / "run"
    _kill_when(
        _polyfuse("cv", str(cfg)), lambda: len(list((run / "parts").glob("*_metrics.parquet"))) >= 1
    )
    assert not (run / "folds.csv").exists()  # killed before the end
    _run(_polyfuse("cv", str(cfg), "--resume"))
    pd.testing.assert_frame_equal(pd.read_csv(run / "folds.csv"), reference)
    pd.testing.assert_frame_equal(
        pd.read_csv(run / "predictions.csv"),
        pd.read_csv(config / "ref" / "run" / "predictions.csv"),
    )
    _no_partial_files(run)


def test_resume_with_a_changed_config_is_refused(config):
    from polyfuse.config import load_config
    from polyfuse.errors import ConfigError
    from polyfuse.training.experiment import run_cv

    experiment = load_config(_with_output(config, "changed"))
    experiment.training.epochs = 1
    run, _ = run_cv(experiment)
    assert len(list((run / "parts").glob("*.parquet"))) == 3 * 3  # 3 folds × 3 files
    changed = experiment.model_copy(deep=True)
    changed.training.lr = 0.01
    with pytest.raises(ConfigError, match="differs from this config"):
        run_cv(changed, resume=True)


def test_killed_benchmark_resumes_to_the_same_results(config):
    def bench(out: str, *extra: str) -> list[str]:
        args = ["benchmark", "--config", str(config / "fit.yaml"), "-m", "early", "-m", "late"]
        args += ["--folds", "2", "--repeats", "1", "--no-classical", "--workers", "1"]
        return _polyfuse(*args, "--out", str(config / out), *extra)

    _run(bench("bench_ref"))
    out = config / "bench_killed"
    _kill_when(bench("bench_killed"), lambda: len(list(out.rglob("*.results.csv"))) >= 1)
    assert not (out / "results.csv").exists()
    _run(bench("bench_killed", "--resume"))

    def metrics(path: Path) -> pd.DataFrame:
        frame = pd.read_csv(path / "results.csv")
        keys = ["model", "repeat", "fold", "condition", "task", "metric"]
        return frame.sort_values(keys).reset_index(drop=True)

    pd.testing.assert_frame_equal(metrics(out), metrics(config / "bench_ref"))
    _no_partial_files(out)
