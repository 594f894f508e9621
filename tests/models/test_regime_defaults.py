"""The small-data regime each model trains with by default (`docs/defaults.md`): three seeds
where leave-one-cohort-out gives them to every held-out cohort, one for the baselines of the
default suite (`early`, `late`, `unimodal`), where it does not (`mm_prognosis`) and for presets,
and a setting the user gives always wins."""

from __future__ import annotations

import pytest

from polyfuse.config import TrainingConfig
from polyfuse.training.fit import with_model_defaults

THREE_SEEDS = ["healnet", "synergies", "hierarchical", "ehpal"]
THREE_SEEDS += [
    "tfn",
    "lmf",
    "gated_bilinear",
    "medfuse",
    "mult",
    "perceiver",
    "dfg",
    "multimodn",
    "mcat",
]


@pytest.mark.parametrize("model", THREE_SEEDS)
def test_models_train_three_seeds_unless_told_otherwise(model):
    assert with_model_defaults(model, {}, TrainingConfig()).ensemble == 3
    assert with_model_defaults(model, {}, TrainingConfig(ensemble=1)).ensemble == 1


@pytest.mark.parametrize("model", ["early", "late", "unimodal", "mm_prognosis"])
def test_the_baselines_train_one_seed(model):
    assert with_model_defaults(model, {}, TrainingConfig()).ensemble == 1


def test_a_preset_keeps_its_own_training_settings():
    """HEALNet's tuned presets bring the reference's schedule, not the regime."""
    training = with_model_defaults("healnet", {"preset": "blca"}, TrainingConfig())
    assert training.ensemble == 1 and training.lr_schedule == "onecycle"
