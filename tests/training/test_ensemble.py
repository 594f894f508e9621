"""`training.ensemble: N`: N members trained with different seeds on the same samples, their
scores averaged; saved in one run directory and used by predict, CV and export (#21 item 2)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from polyfuse.config import TrainingConfig
from polyfuse.training.fit import FittedModel, train_model

CFG = TrainingConfig(epochs=3, batch_size=32, progress=False, lr=2e-2, ensemble=3)
HP = {"dim": 8, "dropout": 0.2}


@pytest.fixture(scope="module")
def ensemble(signal_data) -> FittedModel:
    return train_model("early", signal_data, training=CFG, hparams=HP, seed=4)


def _alone(fitted: FittedModel, k: int) -> FittedModel:
    return FittedModel(
        fitted.model_name, fitted.hparams, [fitted.members[k]], fitted.objectives, fitted.contract
    )


def test_members_differ_and_the_first_is_the_single_fit(signal_data, ensemble):
    assert len(ensemble.members) == 3 and len(ensemble.best_epochs) == 3
    single = train_model(
        "early", signal_data, training=CFG.model_copy(update={"ensemble": 1}), hparams=HP, seed=4
    )
    for a, b in zip(single.model.parameters(), ensemble.members[0].parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    first = [p.detach() for p in ensemble.members[0].parameters()]
    for member in ensemble.members[1:]:
        assert any(
            not torch.equal(a, b.detach()) for a, b in zip(first, member.parameters(), strict=True)
        )


def test_predictions_are_the_mean_of_the_members_scores(signal_data, ensemble):
    scores = ensemble.predict(signal_data, calibrated=False)  # the members' scores, averaged
    alone = [_alone(ensemble, k).predict(signal_data, calibrated=False) for k in range(3)]
    for task, keys in scores.items():
        for key, value in keys.items():
            mean = np.mean([a[task][key] for a in alone], axis=0)
            np.testing.assert_allclose(value, mean, rtol=1e-6, atol=1e-7, err_msg=f"{task}.{key}")
    # the mean of probabilities, not the probability of the mean logit
    assert not np.allclose(scores["y"]["prob"], alone[0]["y"]["prob"])


def test_save_and_load_keep_every_member(signal_data, ensemble, tmp_path):
    ensemble.save(tmp_path)
    meta = json.loads((tmp_path / "model.json").read_text())
    assert meta["members"] == 3 and meta["best_epochs"] == ensemble.best_epochs
    loaded = FittedModel.load(tmp_path)
    assert len(loaded.members) == 3
    want, got = ensemble.predict(signal_data), loaded.predict(signal_data)
    for task in want:
        for key in want[task]:
            np.testing.assert_array_equal(got[task][key], want[task][key])


def test_cv_predict_and_export_use_the_ensemble(tmp_path):
    """A whole run: `polyfuse fit` with an ensemble, predicted on new patients and exported
    (the export checks its graph against `FittedModel.predict`, the members' mean)."""
    from polyfuse.config import parse_config
    from polyfuse.inference.export import export_run
    from polyfuse.inference.predictor import Predictor
    from polyfuse.training.experiment import run_cv, run_fit

    config = parse_config(
        {
            "name": "ens",
            "data": {"dataset": "tcga-acc"},
            "model": {"name": "late", "params": {"dim": 8}},
            "training": {"epochs": 2, "ensemble": 2, "progress": False},
            "cv": {"folds": 2},
            "output": str(tmp_path),
        }
    )
    run, _ = run_fit(config)
    predictor = Predictor.load(run)
    assert len(predictor.fitted.members) == 2
    from polyfuse.datasets import load

    frame = predictor.predict(load("tcga-acc"))
    assert frame.filter(like="risk").notna().all().all()
    out = export_run(run, "torchscript", tmp_path / "ens.pt")
    assert out.is_file()
    _, result = run_cv(config)
    assert len(result.folds.query("metric == 'c_index'")) == 2


FOLDS = CFG.model_copy(update={"ensemble_validation": "folds", "conformal": 0.2})


@pytest.fixture(scope="module")
def cross_fitted(signal_data) -> FittedModel:
    return train_model("early", signal_data, training=FOLDS, hparams=HP, seed=4)


def test_cross_fitted_members_early_stop_on_disjoint_folds_that_cover_every_sample(signal_data):
    from polyfuse.config import PreprocessConfig
    from polyfuse.training.fit import _prepare

    splits = _prepare(signal_data, FOLDS, PreprocessConfig(), seed=4).splits
    assert len(splits) == 3
    held = np.concatenate([val for _, val in splits])
    assert sorted(held.tolist()) == list(range(len(signal_data)))  # each sample in one fold
    for fit, val in splits:
        assert sorted(np.concatenate([fit, val]).tolist()) == list(range(len(signal_data)))
        assert 50 <= len(val) <= 54  # a third each
    shared = _prepare(signal_data, CFG, PreprocessConfig(), seed=4).splits
    assert all(np.array_equal(val, shared[0][1]) for _, val in shared)


def test_cross_fitted_conformal_outputs_are_calibrated_on_out_of_fold_scores(
    signal_data, cross_fitted
):
    """Each sample's calibration score comes from the one member that did not train on it;
    no sample is 'validation' for the whole ensemble, so `explain` gets none."""
    from polyfuse.config import PreprocessConfig
    from polyfuse.tasks.conformal import fit_task
    from polyfuse.training.fit import _prepare

    splits = _prepare(signal_data, FOLDS, PreprocessConfig(), seed=4).splits
    prob = np.zeros(len(signal_data))
    for k, (_, val) in enumerate(splits):
        prob[val] = _alone(cross_fitted, k).predict(signal_data.subset(val))["y"]["prob"]
    want = fit_task("binary", {"prob": prob}, signal_data.targets["y"], 0.2)
    assert cross_fitted.conformal["y"].threshold == pytest.approx(want.threshold, abs=1e-6)
    in_sample = cross_fitted.predict(signal_data, calibrated=False)["y"]["prob"]
    ensemble_mean = fit_task("binary", {"prob": in_sample}, signal_data.targets["y"], 0.2)
    assert cross_fitted.conformal["y"].threshold != pytest.approx(ensemble_mean.threshold)
    assert cross_fitted.validation_ids == []
    assert set(cross_fitted.conformal) == {"y", "os"}


def test_a_cross_fitted_ensemble_learns_the_signal(signal_data, cross_fitted):
    from sklearn.metrics import roc_auc_score

    train, test = signal_data.subset(np.arange(120)), signal_data.subset(np.arange(120, 160))
    fitted = train_model("early", train, training=FOLDS, hparams=HP, seed=4)
    prob = fitted.predict(test)["y"]["prob"]
    assert roc_auc_score(test.targets["y"], prob) > 0.8


def test_cross_fitting_needs_two_members_or_more(signal_data):
    from polyfuse.errors import ConfigError

    one = FOLDS.model_copy(update={"ensemble": 1})
    with pytest.raises(ConfigError, match=r"ensemble_validation 'folds'.*training.ensemble is 1"):
        train_model("early", signal_data, training=one, hparams=HP, seed=4)


def test_too_few_samples_to_cross_fit_share_one_validation_part(signal_data):
    from polyfuse.errors import FallbackWarning

    tiny = signal_data.subset(np.arange(4))
    five = FOLDS.model_copy(update={"ensemble": 5})
    with pytest.warns(FallbackWarning, match="4 training sample.* too few to cross-fit 5"):
        fitted = train_model("early", tiny, training=five, hparams=HP, seed=4)
    assert len(fitted.members) == 5 and len(fitted.validation_ids) == 1
