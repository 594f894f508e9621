"""Nested CV around the search: outer-fold scores only, reproducible, resumable."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest
import yaml
from conftest import FAST, FAST_SPACE

import polyfuse.tuning.search as search
from polyfuse.data.splits import kfold
from polyfuse.errors import ConfigError, FallbackWarning
from polyfuse.training.fit import train_model
from polyfuse.training.settings import FitSettings
from polyfuse.tuning.nested import tune
from polyfuse.tuning.search import SearchPlan, configure, search_split
from polyfuse.tuning.space import apply_overrides, model_space
from polyfuse.tuning.storage import sqlite_storage
from polyfuse.tuning.study import importances, trials_frame
from polyfuse.tuning.target import resolve_target

SPACE = apply_overrides("early", model_space("early"), FAST_SPACE)


def test_reported_score_comes_from_outer_folds_only(cohort, monkeypatch):
    """Inner scores are made absurdly optimistic (0.97 and up, favouring wide models): the
    search must choose by them, yet report what the chosen model scores on outer test folds."""
    real = search.inner_score

    def optimistic(fitted, val, fit, target):
        real(fitted, val, fit, target)
        return 0.97 + fitted.hparams["dim"] / 10_000

    monkeypatch.setattr(search, "inner_score", optimistic)
    kw = dict(trials=2, folds=2, inner_folds=2, seed=0, training=FAST, space=FAST_SPACE)
    result = tune("early", cohort, final=False, untuned=False, progress=False, **kw)

    outer_splits = kfold(cohort, 2, 1, 0, "os")
    chosen = result.chosen.set_index("study")
    tuned = result.folds.query("variant == 'tuned' and metric == 'c_index'").set_index("fold")
    for i, split in enumerate(outer_splits):
        row = chosen.loc[f"r0f{i}"]
        params = json.loads(row["params"])
        trials = result.trials[result.trials["study"] == f"r0f{i}"]
        assert params["dim"] == trials["param.dim"].max()  # chosen by the (inner) search
        assert row["inner_best"] >= 0.97
        # the reported value is the refit model on the outer test fold, recomputed here
        chosen_settings = configure("early", FitSettings(training=FAST), params)
        train, test = cohort.subset(split.train), cohort.subset(split.test)
        hparams, training = dict(chosen_settings.hparams), chosen_settings.training
        refit = train_model("early", train, hparams=hparams, training=training, seed=0 + i)
        outer = refit.evaluate(test, train.targets)["os"]["c_index"]
        assert tuned.loc[split.fold, "value"] == pytest.approx(outer, abs=1e-6)
        assert row["outer"] == pytest.approx(outer, abs=1e-6)
        assert abs(outer - row["inner_best"]) > 1e-3
    mean, _ = result.score("tuned")
    assert mean == pytest.approx(tuned["value"].mean()) and mean < 0.97
    assert set(result.folds["variant"]) == {"tuned"}


def test_same_seed_gives_same_trials(cohort):
    target = resolve_target(cohort)
    runs = [
        trials_frame(_search(cohort, target, trials=3, storage=None, seed=seed).study, study="s")
        for seed in (0, 0)
    ]
    cols = [c for c in runs[0].columns if c.startswith("param.")] + ["value", "state"]
    pd.testing.assert_frame_equal(runs[0][cols], runs[1][cols])


def _search(data, target, *, trials, storage, seed=0, name="s", prune=True):
    """search_split, keeping the study for inspection."""
    import optuna

    storage = storage or optuna.storages.InMemoryStorage()
    plan = SearchPlan("early", SPACE, target, trials, inner_folds=2, prune=prune)
    settings = FitSettings(training=FAST, seed=seed)
    chosen = search_split(plan, data, settings, storage=storage, study_name=name)
    chosen.study = optuna.load_study(study_name=name, storage=storage)
    return chosen


def test_another_seed_gives_other_trials(cohort, fake_trainer):
    fake_trainer()
    target = resolve_target(cohort)
    a, b = (_search(cohort, target, trials=3, storage=None, seed=s).study for s in (0, 1))
    assert [t.params for t in a.trials] != [t.params for t in b.trials]


def test_interrupted_study_resumes_without_repeating_finished_trials(
    cohort, fake_trainer, tmp_path
):
    target = resolve_target(cohort)
    fake_trainer()
    reference = _search(cohort, target, trials=8, storage=sqlite_storage(tmp_path / "a.db"))
    ref = reference.study.trials
    # interrupted inside trial 3 (trials 0-2 make 6 fits of 2 inner folds, none pruned yet)
    fake_trainer(fail_at=7)
    path = tmp_path / "b.db"
    with pytest.raises(KeyboardInterrupt):
        _search(cohort, target, trials=8, storage=sqlite_storage(path))
    trainer = fake_trainer()  # a new process would open the file afresh
    resumed = _search(cohort, target, trials=8, storage=sqlite_storage(path))
    finished = [
        t for t in resumed.study.trials if "inner" in t.user_attrs and t.state.is_finished()
    ]
    finished = [t for t in finished if t.state.name != "FAIL"]
    assert [t.state.name for t in resumed.study.trials].count("FAIL") == 1  # the interrupted one
    assert len(finished) == 8
    # only trials 3..7 ran again: exactly the fits the reference spent on them
    assert trainer.calls == sum(len(t.user_attrs["inner"]) for t in ref[3:])
    assert [t.params for t in finished] == [t.params for t in ref]
    assert [t.value for t in finished] == [t.value for t in ref]
    assert resumed.params == reference.params and resumed.value == reference.value
    # a finished study resumed again runs nothing
    trainer = fake_trainer()
    _search(cohort, target, trials=8, storage=sqlite_storage(path))
    assert trainer.calls == 0


def test_median_pruner_stops_trials_worse_than_the_median(cohort, fake_trainer):
    fake_trainer()
    study = _search(cohort, resolve_target(cohort), trials=12, storage=None).study
    states = [t.state.name for t in study.trials]
    assert "PRUNED" in states and states[:5] == ["COMPLETE"] * 5
    for t in study.trials:
        if t.state.name == "PRUNED":
            assert len(t.user_attrs["inner"]) < 2  # stopped before its last inner fold


def test_tune_run_directory_resume_and_no_clobbering(cohort, fake_trainer, tmp_path):
    kw = dict(trials=3, folds=2, inner_folds=2, space=FAST_SPACE, progress=False)
    fake_trainer()
    ref = tune("early", cohort, out=tmp_path / "ref", **kw)
    files = {p.name for p in (tmp_path / "ref").iterdir()}
    assert {
        "study.db",
        "trials.csv",
        "folds.csv",
        "summary.csv",
        "chosen.csv",
        "best.yaml",
        "best_r0f0.yaml",
        "best_r0f1.yaml",
        "history.png",
        "settings.json",
    } <= files
    best = yaml.safe_load((tmp_path / "ref" / "best.yaml").read_text())
    assert best["model"]["name"] == "early"
    assert best["model"]["params"]["dim"] == ref.best["params"]["dim"]
    assert best["training"]["lr"] == pytest.approx(ref.best["params"]["lr"])
    assert set(ref.folds["variant"]) == {"tuned", "untuned"}
    assert list(ref.chosen["study"]) == ["r0f0", "r0f1", "all"]

    # fold 0: 3 trials x 2 fits + refit + untuned = 8 calls; interrupted in fold 1's trial 1
    out = tmp_path / "run"
    fake_trainer(fail_at=11)
    with pytest.raises(KeyboardInterrupt):
        tune("early", cohort, out=out, **kw)
    with pytest.raises(ConfigError, match=r"already exists"):
        tune("early", cohort, out=out, **kw)
    with pytest.raises(ConfigError, match=r"different settings \(inner_folds\)"):
        tune("early", cohort, out=out, resume=True, **(kw | {"inner_folds": 3}))
    trainer = fake_trainer()
    again = tune("early", cohort, out=out, resume=True, **kw)
    # fold 0 is not searched again; fold 1 runs its 2 missing trials; the final search 3
    assert trainer.calls == (2 * 2 + 2) + 3 * 2
    pd.testing.assert_frame_equal(again.folds, ref.folds)
    assert list(again.chosen["params"]) == list(ref.chosen["params"])
    done = again.trials[again.trials["state"] != "fail"].reset_index(drop=True)
    params = [c for c in ref.trials.columns if c.startswith("param.")]
    pd.testing.assert_frame_equal(done[params], ref.trials[params])


def test_timeout_bounds_the_whole_run(cohort, fake_trainer, monkeypatch):
    import time

    trainer = fake_trainer()
    slow = trainer.__call__

    def sleepy(*args, **kw):
        time.sleep(0.02)
        return slow(*args, **kw)

    import polyfuse.training.fit as fit

    monkeypatch.setattr(fit, "fit_model", sleepy)
    start = time.perf_counter()
    result = tune("early", cohort, trials=200, timeout=0.6, folds=2, inner_folds=2, progress=False)
    assert time.perf_counter() - start < 5
    assert result.chosen["trials"].iloc[0] >= 1 and result.chosen["trials"].sum() < 3 * 200
    assert len(result.folds.query("variant == 'tuned' and metric == 'c_index'")) == 2


def test_bad_settings_fail_before_any_training(cohort, fake_trainer):
    trainer = fake_trainer()
    with pytest.raises(ConfigError, match=r"no task 'oss' \(did you mean 'os'"):
        tune("early", cohort, task="oss", progress=False)
    with pytest.raises(ConfigError, match=r"one of --resume and --overwrite"):
        tune("early", cohort, resume=True, overwrite=True, out="x", progress=False)
    with pytest.raises(ConfigError, match=r"training setting is invalid.*lr"):
        tune("early", cohort, space={"lr": {"low": 0.0, "high": 1.0, "log": False}})
    with pytest.raises(ConfigError, match=r"reports no metric 'auroc'.*c_index"):
        tune("early", cohort, metric="auroc", trials=1, folds=2, inner_folds=2, progress=False)
    assert trainer.calls == 1


def test_a_search_without_a_completed_trial_warns_and_keeps_the_base(
    cohort, fake_trainer, monkeypatch
):
    """Every trial scores NaN (failed, counted as finished): the base configuration stands,
    with a warning naming the study, instead of an arbitrary trial's."""
    fake_trainer()
    monkeypatch.setattr(search, "inner_score", lambda *args: float("nan"))
    with pytest.warns(FallbackWarning) as caught:
        chosen = _search(cohort, resolve_target(cohort), trials=2, storage=None)
    assert sorted({str(w.message) for w in caught}) == [
        "study 's' has no completed trial with a finite c_index; the untuned configuration is used",
        "study 's': an inner fold gave no finite c_index; a trial's value is the mean over the "
        "inner folds that did (trials.csv lists each)",
    ]
    assert [t.state.name for t in chosen.study.trials] == ["FAIL", "FAIL"]
    assert chosen.params == {} and chosen.trial is None and chosen.finished == 2
    assert math.isnan(chosen.value)
    assert chosen.settings.hparams == {} and chosen.settings.training.lr == FAST.lr


def test_a_study_too_small_for_importances_warns():
    import optuna

    study = optuna.create_study(study_name="r0f0")
    study.optimize(lambda t: t.suggest_float("lr", 0.1, 1.0) * 0, n_trials=3)  # no variance
    with pytest.warns(FallbackWarning, match=r"study 'r0f0' has no parameter importances"):
        assert importances(study, seed=0) == {}
