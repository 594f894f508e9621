"""SIGTERM and SIGINT stop `fit`, `cv`, `tune` and `benchmark` (issue #15, finding 11): a
non-zero exit (143, 130), one line saying what was kept, the finished parts kept, and
`--resume` finishes the run. Real processes, real signals."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
import yaml
from helpers import polyfuse_command, polyfuse_env, write_cohort

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    """A 120-patient manifest and a config whose folds take a second or two each."""
    root = tmp_path_factory.mktemp("signals")
    cfg = {
        "name": "sig",
        "data": write_cohort(root),
        "model": {"name": "early", "params": {"dim": 8}},
        "training": {
            "epochs": 4,
            "batch_size": 16,
            "patience": 4,
            "checkpoint_every": 1,
            "progress": False,
        },
        "cv": {"folds": 3, "repeats": 1},
    }
    (root / "exp.yaml").write_text(yaml.safe_dump(cfg))
    return root


def _signal_when(
    cmd: list[str], ready: Callable[[], bool], sig: int, timeout: float = 120
) -> subprocess.CompletedProcess:
    """Start `cmd`, send `sig` as soon as `ready()` holds; the finished process."""
    proc = subprocess.Popen(
        cmd,
        env=polyfuse_env(COLUMNS="200"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    start = time.monotonic()
    try:
        while proc.poll() is None and not ready():
            assert time.monotonic() - start < timeout, "the run never reached the signal point"
            time.sleep(0.01)
        assert proc.poll() is None, "the run ended before the signal:\n" + proc.stderr.read()
        os.kill(proc.pid, sig)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def _ok(cmd: list[str]) -> str:
    """Run a polyfuse command in this process (the resumes: no second start-up of torch)."""
    from typer.testing import CliRunner

    from polyfuse.cli import app

    result = CliRunner().invoke(app, cmd[3:])
    assert result.exit_code == 0, result.output[-3000:]
    return result.output


def _one_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.startswith("interrupted by")]
    assert len(lines) == 1, stderr[-3000:]
    assert "Traceback" not in stderr, stderr[-3000:]
    return lines[0]


def test_sigterm_stops_cv_keeps_its_finished_folds_and_resume_finishes(root):
    run = root / "runs" / "sig" / "cv"
    config = root / "exp.yaml"
    done = _signal_when(
        polyfuse_command("cv", config),
        lambda: any((run / "parts").glob("*_metrics.parquet")),
        signal.SIGTERM,
    )
    assert done.returncode == 143, done.stderr[-3000:]
    line = _one_line(done.stderr)
    assert "SIGTERM" in line and "finished fold" in line and "--resume" in line
    assert not (run / "folds.csv").exists()
    assert any((run / "parts").glob("*_metrics.parquet"))
    _ok(polyfuse_command("cv", config, "--resume"))
    assert len(pd.read_csv(run / "folds.csv").query("metric == 'auroc'")) == 3


def test_sigint_stops_fit_keeps_its_checkpoint_and_resume_finishes(root):
    run = root / "runs" / "sig" / "fit"
    config = root / "exp.yaml"
    done = _signal_when(
        polyfuse_command("fit", config),
        lambda: (run / "checkpoints" / "last.ckpt").is_file(),
        signal.SIGINT,
    )
    assert done.returncode == 130, done.stderr[-3000:]
    line = _one_line(done.stderr)
    assert "SIGINT" in line and "checkpoint" in line and "--resume" in line
    assert not (run / "model.safetensors").exists()
    _ok(polyfuse_command("fit", config, "--resume"))
    assert (run / "model.safetensors").is_file()


def test_a_run_stopped_before_anything_finished_leaves_nothing(root, tmp_path):
    raw = yaml.safe_load((root / "exp.yaml").read_text())
    raw["training"] |= {"checkpoint_every": 1000, "epochs": 200, "patience": 200}
    raw["data"]["table"] = str(root / "cohort.csv")
    config = tmp_path / "slow.yaml"
    config.write_text(yaml.safe_dump(raw))
    run = tmp_path / "runs" / "sig" / "fit"
    done = _signal_when(
        polyfuse_command("fit", config), lambda: (run / "config.yaml").is_file(), signal.SIGTERM
    )
    assert done.returncode == 143, done.stderr[-3000:]
    assert "nothing was kept" in _one_line(done.stderr)
    assert not (tmp_path / "runs").exists()  # a plain retry is not blocked


def test_sigterm_stops_benchmark_keeps_its_finished_folds_and_resume_finishes(root):
    out = root / "bench"
    args = ["benchmark", "--config", root / "exp.yaml", "-m", "early,late", "--folds", "2"]
    args += ["--repeats", "1", "--no-classical", "--workers", "1", "--out", out]
    done = _signal_when(
        polyfuse_command(*args), lambda: any(out.rglob("*.results.csv")), signal.SIGTERM
    )
    assert done.returncode == 143, done.stderr[-3000:]
    line = _one_line(done.stderr)
    assert "finished fold" in line and "--resume" in line
    assert not (out / "results.csv").exists()
    _ok(polyfuse_command(*args, "--resume"))
    results = pd.read_csv(out / "results.csv")
    assert set(results["model"]) == {"early", "late"}


def test_sigterm_stops_tune_keeps_its_trials_and_resume_finishes(root, tmp_path):
    pytest.importorskip("optuna")
    raw = yaml.safe_load((root / "exp.yaml").read_text())
    raw["data"]["table"] = str(root / "cohort.csv")
    raw["cv"] = {"folds": 2}
    raw["tune"] = {
        "trials": 2,
        "inner_folds": 2,
        "final": False,
        "untuned": False,
        "space": {"epochs": 3, "patience": 3},
    }
    config = tmp_path / "tune.yaml"
    config.write_text(yaml.safe_dump(raw))
    run = tmp_path / "runs" / "sig" / "tune"

    def trials_done() -> bool:
        import sqlite3

        if not (run / "study.db").is_file():
            return False
        try:
            with sqlite3.connect(f"file:{run / 'study.db'}?mode=ro", uri=True) as con:
                sql = "SELECT COUNT(*) FROM trials WHERE state = 'COMPLETE'"
                return con.execute(sql).fetchone()[0] >= 1
        except sqlite3.Error:
            return False

    done = _signal_when(polyfuse_command("tune", config), trials_done, signal.SIGTERM)
    assert done.returncode == 143, done.stderr[-3000:]
    line = _one_line(done.stderr)
    assert "study.db" in line and "--resume" in line
    _ok(polyfuse_command("tune", config, "--resume"))
    assert len(pd.read_csv(run / "chosen.csv")) == 2  # both outer folds searched


def test_an_interrupt_buried_under_lightnings_teardown_error_still_ends_the_run_as_one():
    """A signal while Lightning sets up the fit loop (CI caught one, in `cv`'s second fold):
    its teardown fails on the loader never iterated, and that RuntimeError would end the run
    with exit 1 and a traceback instead of 143 and the one line."""
    import lightning as L
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    from polyfuse.interrupt import Interrupted, interruptible

    class Linear(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.layer = torch.nn.Linear(2, 1)

        def training_step(self, batch, index):
            return self.layer(batch[0]).sum()

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), 0.1)

    class SignalledWhileStarting(DataLoader):
        def __iter__(self):
            raise Interrupted(signal.SIGTERM)

    trainer = L.Trainer(
        max_epochs=1, logger=False, enable_progress_bar=False, enable_checkpointing=False
    )
    loader = SignalledWhileStarting(TensorDataset(torch.randn(8, 2)), batch_size=4)
    with pytest.raises(Interrupted) as caught, interruptible():
        trainer.fit(Linear(), loader)
    assert caught.value.exit_code == 143
    with pytest.raises(ValueError, match="its own"), interruptible():  # other errors pass
        raise ValueError("its own")
