"""Kill `polyfuse fit` / `polyfuse cv` with SIGKILL at several points, run again with
`--resume`, and get exactly what an uninterrupted run gives; no half-written file is left.
Every kill is checked to have landed (the process died of SIGKILL), and a killed fit is
checked to continue from its checkpoint, not from scratch nor from a finished run."""

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
from helpers import polyfuse_command, polyfuse_env, write_cohort
from safetensors.torch import load_file

from polyfuse.training.checkpoint import load_checkpoint

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")

EPOCHS = 12


@pytest.fixture(scope="module")
def config(tmp_path_factory) -> Path:
    """A small manifest cohort and a fit/CV config that checkpoints every 2 epochs."""
    root = tmp_path_factory.mktemp("crash")
    cfg = {
        "name": "run",
        "seed": 0,
        "data": write_cohort(root),
        "model": {"name": "early", "params": {"dim": 16, "dropout": 0.2}},
        "training": {
            "epochs": EPOCHS,
            "batch_size": 8,
            "patience": EPOCHS,
            "checkpoint_every": 2,
            "progress": False,
        },
        "cv": {"folds": 3, "repeats": 1},
    }
    (root / "fit.yaml").write_text(yaml.safe_dump(cfg | {"output": "ref"}))
    return root


def _with_output(config: Path, output: str) -> Path:
    raw = yaml.safe_load((config / "fit.yaml").read_text())
    path = config / f"{output}.yaml"
    path.write_text(yaml.safe_dump(raw | {"output": output}))
    return path


def _kill_when(cmd: list[str], ready: Callable[[], bool], timeout: float = 120) -> None:
    """Start `cmd`, SIGKILL it as soon as `ready()` holds; fail if it ended by itself first
    (then a resume would only continue a finished run, proving nothing)."""
    proc = subprocess.Popen(
        cmd, env=polyfuse_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    start = time.monotonic()
    try:
        while proc.poll() is None and not ready():
            assert time.monotonic() - start < timeout, "the run never reached the kill point"
            time.sleep(0.005)
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        _, err = proc.communicate()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL, (
        f"the run was not killed: it ended with {proc.returncode} before the kill point\n"
        + err.decode(errors="replace")[-3000:]
    )


def _run(cmd: list[str]) -> None:
    done = subprocess.run(cmd, env=polyfuse_env(), capture_output=True, text=True, timeout=300)
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
    _run(polyfuse_command("fit", str(config / "fit.yaml")))
    return load_file(str(config / "ref" / "run" / "fit" / "model.safetensors"))


def _last(run: Path) -> Path:
    return run / "checkpoints" / "last.ckpt"


def _versions(run: Path) -> set[Path]:
    return set((run / "logs").glob("version_*"))


def _trained_epochs(versions: set[Path]) -> list[int]:
    """The epochs a fit logged (its CSV logs in `versions`), in order."""
    logs = [v / "metrics.csv" for v in versions if (v / "metrics.csv").is_file()]
    return sorted({int(e) for log in logs for e in pd.read_csv(log)["epoch"].dropna()})


# when to kill, and which epoch the checkpoint then holds: -1 none, k < EPOCHS the 0-based epoch
# just trained (written every 2 epochs: 1, 3, 5, ...), EPOCHS the finished fit
KILL_POINTS = {
    "before any checkpoint": (lambda run: (run / "config.yaml").is_file(), range(-1, 0)),
    "after the first checkpoint": (lambda run: _epoch(_last(run)) >= 1, range(1, EPOCHS - 1)),
    "mid-training": (lambda run: _epoch(_last(run)) >= 5, range(5, EPOCHS - 1)),
    "while saving the model": (
        lambda run: (run / "model.safetensors").is_file(),
        range(EPOCHS, EPOCHS + 1),
    ),
}


SLOW_POINTS = ("before any checkpoint", "after the first checkpoint")  # ~25 s each


@pytest.mark.parametrize(
    "point",
    [pytest.param(p, marks=[pytest.mark.slow] if p in SLOW_POINTS else []) for p in KILL_POINTS],
)
def test_killed_fit_resumes_to_the_same_model(config, reference_fit, point):
    output = "fit_" + point.replace(" ", "_")
    cfg = _with_output(config, output)
    run = config / output / "run" / "fit"
    ready, expected = KILL_POINTS[point]
    _kill_when(polyfuse_command("fit", str(cfg)), lambda: ready(run))
    at = _epoch(_last(run))  # -1: no checkpoint yet
    assert at in expected, f"killed with the checkpoint of epoch {at}, expected {expected}"
    before = _versions(run)
    _run(polyfuse_command("fit", str(cfg), "--resume"))
    # the resumed fit trains only the epochs after its checkpoint (none after a finished fit)
    assert _trained_epochs(_versions(run) - before) == list(range(at + 1, EPOCHS))
    weights = load_file(str(run / "model.safetensors"))
    assert weights.keys() == reference_fit.keys()
    for k, v in reference_fit.items():
        assert np.array_equal(weights[k].numpy(), v.numpy()), k
    _no_partial_files(run)


def test_killed_cv_resumes_to_the_same_metrics(config):
    _run(polyfuse_command("cv", str(config / "fit.yaml"), "--overwrite"))
    reference = pd.read_csv(config / "ref" / "run" / "cv" / "folds.csv")
    cfg = _with_output(config, "cv_killed")
    run = config / "cv_killed" / "run" / "cv"
    _kill_when(
        polyfuse_command("cv", str(cfg)),
        lambda: len(list((run / "parts").glob("*_metrics.parquet"))) >= 1,
    )
    assert not (run / "folds.csv").exists()  # killed before the end
    _run(polyfuse_command("cv", str(cfg), "--resume"))
    pd.testing.assert_frame_equal(pd.read_csv(run / "folds.csv"), reference)
    pd.testing.assert_frame_equal(
        pd.read_csv(run / "predictions.csv"),
        pd.read_csv(config / "ref" / "run" / "cv" / "predictions.csv"),
    )
    _no_partial_files(run)


def test_resume_with_a_changed_config_is_refused(config):
    from polyfuse.config import load_config
    from polyfuse.errors import ConfigError
    from polyfuse.training.experiment import run_cv

    experiment = load_config(_with_output(config, "changed"))
    experiment.training.epochs = 1
    run, _ = run_cv(experiment)
    assert len(list((run / "parts").glob("*.parquet"))) == 3 * 4  # 3 folds × 4 files
    changed = experiment.model_copy(deep=True)
    changed.training.lr = 0.01
    with pytest.raises(ConfigError, match="differs from this config"):
        run_cv(changed, resume=True)


def test_killed_benchmark_resumes_to_the_same_results(config):
    def bench(out: str, *extra: str) -> list[str]:
        args = ["benchmark", "--config", str(config / "fit.yaml"), "-m", "early", "-m", "late"]
        args += ["--folds", "2", "--repeats", "1", "--no-classical", "--workers", "1"]
        return polyfuse_command(*args, "--out", str(config / out), *extra)

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


# --- the resume checkpoint is written every `checkpoint_every` epochs, not only at the end ---

CADENCE = {"epochs": 7, "batch_size": 32, "checkpoint_every": 2, "patience": 50}


class _Crash(Exception):
    """Stands for a kill right after a checkpoint was written."""


def _spy_saves(monkeypatch, crash_after: int | None = None) -> list[tuple[int, int]]:
    """Record (epoch, global_step) of every resume checkpoint written; with `crash_after`,
    raise `_Crash` right after that many checkpoints were written."""
    from polyfuse.training import checkpoint

    saved: list[tuple[int, int]] = []
    write = checkpoint.save_checkpoint

    def spy(state, path):
        write(state, path)
        saved.append((int(state["epoch"]), int(state["global_step"])))
        if crash_after is not None and len(saved) >= crash_after:
            raise _Crash

    monkeypatch.setattr(checkpoint, "save_checkpoint", spy)
    return saved


@pytest.mark.parametrize("val_fraction", [0.2, 0.0], ids=["validation", "no-validation"])
def test_checkpoint_written_every_checkpoint_every_epochs(
    signal_data, tmp_path, monkeypatch, val_fraction
):
    from polyfuse.config import TrainingConfig
    from polyfuse.training.fit import train_model

    cfg = TrainingConfig(**CADENCE, val_fraction=val_fraction, progress=False)
    saved = _spy_saves(monkeypatch)
    train_model("early", signal_data, training=cfg, checkpoint_dir=tmp_path)
    steps = -(-round(len(signal_data) * (1 - val_fraction)) // cfg.batch_size)
    # after epochs 2, 4 and 6 (stored as the 0-based epoch just trained), then when the fit ends
    # (stored as the number of epochs completed)
    assert saved == [(1, 2 * steps), (3, 4 * steps), (5, 6 * steps), (7, 7 * steps)]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]


@pytest.mark.parametrize("val_fraction", [0.2, 0.0], ids=["validation", "no-validation"])
def test_fit_crashed_after_a_periodic_checkpoint_resumes_from_it(
    signal_data, tmp_path, monkeypatch, val_fraction
):
    from polyfuse.config import TrainingConfig
    from polyfuse.training.fit import train_model

    cfg = TrainingConfig(**CADENCE, val_fraction=val_fraction, progress=False)
    hp = {"dim": 8, "dropout": 0.3}  # dropout: the random state must continue too
    straight = train_model("early", signal_data, training=cfg, hparams=hp, seed=1)
    ckpt = tmp_path / "checkpoints"
    _spy_saves(monkeypatch, crash_after=2)
    with pytest.raises(_Crash):
        train_model("early", signal_data, training=cfg, hparams=hp, seed=1, checkpoint_dir=ckpt)
    assert load_checkpoint(ckpt / "last.ckpt")["epoch"] == 3  # 0-based: 4 epochs trained
    monkeypatch.undo()  # no more crashes
    saved = _spy_saves(monkeypatch)
    resumed = train_model(
        "early",
        signal_data,
        training=cfg,
        hparams=hp,
        seed=1,
        checkpoint_dir=ckpt,
        resume=True,
        log_dir=tmp_path / "logs",
    )
    log = pd.read_csv(tmp_path / "logs" / "version_0" / "metrics.csv")
    assert log["epoch"].min() == 4 and log["epoch"].max() == 6  # epochs 5..7 trained again
    assert [epoch for epoch, _ in saved] == [5, 7]
    for k, v in straight.model.state_dict().items():
        assert np.array_equal(resumed.model.state_dict()[k].numpy(), v.numpy()), k
    a, b = straight.predict(signal_data), resumed.predict(signal_data)
    for task in a:
        for key in a[task]:
            np.testing.assert_array_equal(b[task][key], a[task][key])
    assert resumed.weight_history == straight.weight_history
    assert resumed.best_epoch == straight.best_epoch
