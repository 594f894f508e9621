"""`polyfuse cv` of a stacked ensemble (`model: {name: stack, params: <options>}`): each fold
scored as the stack scores it in a benchmark, its weights kept, resumable; the stack refused
where it cannot go yet, and its options checked before the data are read."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from helpers import clean_error, run, write_cohort

from polyfuse.errors import ConfigError

MEMBERS = ["logreg[a]", "logreg[b]"]


def _config(root: Path, **params) -> Path:
    cfg = {
        "name": "st",
        "data": write_cohort(root),
        "model": {"name": "stack", "params": {"members": MEMBERS, **params}},
        "cv": {"folds": 3, "repeats": 1},
        "training": {"progress": False},
    }
    path = root / "exp.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_cv_of_a_stack_scores_each_fold_as_the_stack_does_and_keeps_its_weights(tmp_path):
    from polyfuse.config import load_config
    from polyfuse.data.splits import kfold
    from polyfuse.datasets import from_config
    from polyfuse.training.settings import FitSettings
    from polyfuse.training.stack import plan_from_options, score_stack_fold

    config = _config(tmp_path)
    result = run("cv", config)
    assert result.exit_code == 0, result.output
    assert "stack: cross-validation" in result.output and "member weights" in result.output
    out = tmp_path / "runs" / "st" / "cv"
    folds = pd.read_csv(out / "folds.csv").query("metric == 'auroc'").sort_values("fold")
    assert len(folds) == 3 and folds["value"].gt(0.75).all()  # y is driven by a and b

    experiment = load_config(config)
    data = from_config(experiment.data)
    plan = plan_from_options(data, experiment.model.params)
    settings = FitSettings.from_config(experiment)
    for i, split in enumerate(kfold(data, 3, 1, experiment.seed)):
        alone = score_stack_fold(data, split, plan, settings.replace(seed=settings.seed + i))
        assert folds["value"].iloc[i] == pytest.approx(alone.metrics["auroc"])

    weights = pd.read_csv(out / "stack_weights.csv")
    assert sorted(weights["member"].unique()) == sorted(MEMBERS) and len(weights) == 6
    assert weights["weight"].gt(0).all()  # each half of the signal counts
    predictions = pd.read_csv(out / "predictions.csv")
    assert len(predictions) == 120 and predictions["prob"].between(0, 1).all()

    (out / "folds.csv").unlink()  # resumed: every fold read back from parts/, same numbers
    assert run("cv", config, "--resume").exit_code == 0
    again = pd.read_csv(out / "folds.csv").query("metric == 'auroc'").sort_values("fold")
    np.testing.assert_array_equal(again["value"], folds["value"])
    pd.testing.assert_frame_equal(pd.read_csv(out / "stack_weights.csv"), weights)


def test_commands_that_cannot_take_a_stack_say_so_before_reading_the_data(tmp_path):
    config = _config(tmp_path)
    (tmp_path / "cohort.csv").unlink()  # the checks come first
    clean_error(run("tune", config), "model 'stack'", "polyfuse fit", "polyfuse cv")
    assert not (tmp_path / "runs").exists()


def test_stack_options_are_checked_before_the_data_are_read(tmp_path):
    config = _config(tmp_path, inner_fold=4)
    (tmp_path / "cohort.csv").unlink()
    clean_error(run("cv", config), "unknown option 'inner_fold'", "did you mean 'inner_folds'")
    config = _config(tmp_path, member_hparams={"late": 8})
    clean_error(run("cv", config), "member_hparams maps each network member")


def test_member_hyper_parameters_must_name_a_network_member_and_its_parameters(tmp_path):
    from polyfuse.config import load_config
    from polyfuse.datasets import from_config
    from polyfuse.training.stack import plan_from_options

    data = from_config(load_config(_config(tmp_path)).data)
    with pytest.raises(ConfigError, match="'early', which is not a network member"):
        plan_from_options(data, {"members": ["late", *MEMBERS], "member_hparams": {"early": {}}})
    with pytest.raises(ConfigError, match="'late' has no hyper-parameter 'dims'"):
        plan_from_options(
            data, {"members": ["late", *MEMBERS], "member_hparams": {"late": {"dims": 8}}}
        )
    plan = plan_from_options(
        data, {"members": ["late", *MEMBERS], "member_hparams": {"late": {"dim": 8}}}
    )
    assert plan.hparams == {"late": {"dim": 8}}


def test_a_configs_stack_is_benchmarked_alone_with_its_options(tmp_path):
    """`benchmark --config` with `model: stack`: its options reach the stack, and a benchmark of
    no network at all (no modality contributions to average) still writes its tables."""
    config = _config(tmp_path)
    args = ["--folds", "2", "--repeats", "1", "--no-classical", "--workers", "1"]
    result = run("benchmark", "--config", config, "-m", "stack", *args)
    assert result.exit_code == 0, result.output
    out = tmp_path / "runs" / "st" / "benchmark"
    weights = pd.read_csv(out / "stack_weights.csv")
    assert sorted(weights["member"].unique()) == sorted(MEMBERS)
    assert "stack" in (out / "leaderboard.md").read_text()
