"""The small-data regime each model trains with by default (`docs/defaults.md`): members
cross-fitted on folds, or three seeds on the same samples, where leave-one-cohort-out gives
them to every held-out cohort; one fit for `early` and `unimodal` (the quick fits of the
default suite), where it does not (`mm_prognosis`) and for presets; and a setting the user
gives always wins."""

from __future__ import annotations

import pytest

from polyfuse.config import TrainingConfig
from polyfuse.training.fit import with_model_defaults

THREE_SEEDS = [
    "synergies",
    "lmf",
    "gated_bilinear",
    "mult",
    "perceiver",
]
CROSS_FITTED = {
    "tfn": 3,
    "medfuse": 3,
    "dfg": 3,
    "multimodn": 3,
    "hierarchical": 5,
    "late": 3,
    "healnet": 5,
    "ehpal": 3,
    "mcat": 3,
}


@pytest.mark.parametrize("model", THREE_SEEDS)
def test_models_train_three_seeds_unless_told_otherwise(model):
    training = with_model_defaults(model, {}, TrainingConfig())
    assert training.ensemble == 3 and training.ensemble_validation == "shared"
    assert with_model_defaults(model, {}, TrainingConfig(ensemble=1)).ensemble == 1


@pytest.mark.parametrize(("model", "members"), CROSS_FITTED.items())
def test_models_cross_fit_their_members_unless_told_otherwise(model, members):
    training = with_model_defaults(model, {}, TrainingConfig())
    assert training.ensemble == members and training.ensemble_validation == "folds"
    shared = with_model_defaults(model, {}, TrainingConfig(ensemble_validation="shared"))
    assert shared.ensemble == members and shared.ensemble_validation == "shared"
    single = with_model_defaults(model, {}, TrainingConfig(ensemble=1))  # nothing to cross-fit
    assert single.ensemble == 1 and single.ensemble_validation == "shared"


@pytest.mark.parametrize("model", ["early", "unimodal", "mm_prognosis"])
def test_the_baselines_train_one_seed(model):
    assert with_model_defaults(model, {}, TrainingConfig()).ensemble == 1


def test_a_preset_keeps_its_own_training_settings():
    """HEALNet's tuned presets bring the reference's schedule, not the regime."""
    training = with_model_defaults("healnet", {"preset": "blca"}, TrainingConfig())
    assert training.ensemble == 1 and training.lr_schedule == "onecycle"
