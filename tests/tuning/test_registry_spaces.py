"""Every registered model's search space: sampled configurations build and train one step.

Parametrised over the registry, so a newly registered model is checked without a new test.
"""

from __future__ import annotations

import math

import numpy as np
import optuna
import pytest
import torch

from polyfuse.config import TrainingConfig
from polyfuse.models.registry import list_models, model_hparams
from polyfuse.search_space import corner, suggest
from polyfuse.training.fit import train_model
from polyfuse.tuning.space import model_space, split_params

MODELS = list_models()


def sampled(model: str) -> list[dict]:
    """The low and high corners of the space and a random sample (seeded)."""
    space = model_space(model)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    samples = [corner(space, "low"), corner(space, "high")]
    samples.append(suggest(study.ask(), space))
    return samples


@pytest.mark.parametrize("model", MODELS)
def test_every_sampled_configuration_builds_and_trains_one_step(model, kinds):
    for params in sampled(model):
        hparams, training = split_params(model, params)
        # one epoch of one batch, whatever the sampled schedule
        config = TrainingConfig(
            **{**training, "epochs": 1, "batch_size": len(kinds), "val_fraction": 0.0},
            progress=False,
        )
        fitted = train_model(model, kinds, hparams=hparams, training=config, seed=0)
        scores = fitted.predict(kinds)
        assert set(scores) == {"y", "os"}, params
        for task, parts in scores.items():  # a score per sample, every one finite
            for name, values in parts.items():
                assert len(values) == len(kinds), (task, name, params)
                assert np.isfinite(values).all(), (task, name, params)
        for task, loss in trained_losses(fitted, kinds).items():
            assert math.isfinite(loss), (task, loss, params)


def trained_losses(fitted, data) -> dict[str, float]:
    """Each task's loss of the trained model on all of `data`, in one batch."""
    batch = fitted.preprocessor.transform(data).batch(np.arange(len(data)))
    with torch.no_grad():
        logits = fitted.model(batch.inputs).logits
        return {
            t: float(objective.loss(logits[t], batch.targets[t]))
            for t, objective in fitted.objectives.items()
        }


@pytest.mark.parametrize("model", MODELS)
def test_space_names_only_parameters_the_model_takes(model):
    keywords = set(model_hparams(model))
    space = model_space(model)
    for name in space:
        assert name in keywords or name in TrainingConfig.model_fields, name
    assert ("dropout" in space) == ("dropout" in keywords)  # shared dropout only if taken
    assert {"lr", "weight_decay", "epochs", "patience"} <= set(space)
