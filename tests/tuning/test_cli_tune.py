"""`polyfuse tune` end to end, and its errors: one short message, exit code 2."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import yaml
from helpers import run, write_patients

from polyfuse.config import load_config


@pytest.fixture
def config(tmp_path: Path) -> Path:
    """A 40-patient manifest with two tabular modalities and a binary outcome, tuned cheaply."""
    cfg = {
        "name": "tiny-tune",
        "data": write_patients(tmp_path),
        "model": {"name": "early", "params": {"dim": 8}},
        "training": {"epochs": 2, "progress": False},
        "cv": {"folds": 2},
        "tune": {"trials": 2, "inner_folds": 2, "space": {"epochs": 2, "patience": 1}},
        "output": "runs",
    }
    path = tmp_path / "experiment.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_tune_prints_outer_scores_and_writes_a_usable_best_config(config: Path):
    result = run("tune", config)
    assert result.exit_code == 0, result.output
    assert "outer-fold scores" in result.output and "auroc" in result.output
    assert "tuned" in result.output and "untuned" in result.output
    run_dir = config.parent / "runs" / "tiny-tune" / "tune"
    best = load_config(run_dir / "best.yaml")  # ready to use: `polyfuse cv best.yaml`
    assert best.name == "tiny-tune-tuned" and best.model.name == "early"
    assert best.training.epochs == 2 and best.data.table == config.parent / "patients.csv"
    trials = pd.read_csv(run_dir / "trials.csv")
    assert len(trials) == 3 * 2  # two outer folds and the final search, two trials each
    # an existing run is never overwritten silently; --resume finds nothing left to do
    again = run("tune", config)
    assert again.exit_code == 2 and "already exists" in again.output
    assert "Traceback" not in again.output
    assert run("tune", config, "--resume").exit_code == 0
    # more trials on resume extend every search
    more = run("tune", config, "--resume", "--trials", "3")
    assert more.exit_code == 0, more.output
    assert len(pd.read_csv(run_dir / "trials.csv")) == 3 * 3


def test_tune_errors_are_one_line_with_exit_code_2(config: Path):
    text = config.read_text().replace("inner_folds: 2", "inner_fold: 2")
    config.write_text(text)
    result = run("tune", config)
    assert result.exit_code == 2 and "did you mean 'inner_folds'" in result.output
    assert "Traceback" not in result.output
    config.write_text(text.replace("inner_fold: 2", "inner_folds: 2"))
    result = run("tune", config, "--model", "eraly")
    assert result.exit_code == 2 and "did you mean 'early'" in result.output
    result = run("tune", config, "--trials", "0")
    assert result.exit_code == 2


def test_benchmark_tune_trials_checks_the_space_before_training(config: Path):
    text = config.read_text().replace("patience: 1", "patiense: 1")
    config.write_text(text)
    out = config.parent / "bench"
    args = ("benchmark", "--config", config, "--models", "early", "--out", out)
    result = run(*args, "--tune-trials", "2", "--folds", "2", "--repeats", "1")
    assert result.exit_code == 2, result.output
    assert "tune.space names ['patiense']" in result.output
    assert "--tune-trials" in run("benchmark", "--help").output


def test_an_interrupted_run_whose_study_cannot_be_read_is_kept_with_a_warning(tmp_path: Path):
    from polyfuse.errors import FallbackWarning
    from polyfuse.tuning.run import _finished_work

    (tmp_path / "study.db").write_bytes(b"not a SQLite file, " * 100)
    with pytest.warns(FallbackWarning, match=r"cannot count the finished trials in .*study\.db"):
        assert _finished_work(tmp_path, KeyboardInterrupt())
    assert not _finished_work(tmp_path, ValueError("not an interruption"))
