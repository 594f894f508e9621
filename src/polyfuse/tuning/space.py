"""A registered model's search space: the training dimensions every model shares, joined with
the model's own `search_space` (declared beside its definition with the dimension types of
`polyfuse.search_space`), so a newly registered model is tunable without touching the tuner.

A name in a space is either a keyword of the model's `__init__` or a field of
`TrainingConfig` (HEALNet's space tunes the training field `l1`, as its authors did). A
config's `tune.space` narrows or overrides any dimension (`apply_overrides`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from polyfuse.config import TrainingConfig
from polyfuse.errors import ConfigError, did_you_mean
from polyfuse.models.registry import model_class, model_hparams
from polyfuse.search_space import Dimension, Float, Int, parse_override

# The training settings shared by every model. `dropout` joins a model's space only when the
# model takes a `dropout` keyword; a model's own `search_space` wins over any of these.
SHARED_SPACE: dict[str, Dimension] = {
    "lr": Float(1e-5, 1e-2, log=True),
    "weight_decay": Float(1e-6, 1e-2, log=True),
    "epochs": Int(20, 100, step=20),
    "patience": Int(5, 20),
    "dropout": Float(0.0, 0.5),
}
MODEL_SHARED = ("dropout",)  # shared names that are model hyper-parameters, not training fields


def model_space(model: str) -> dict[str, Dimension]:
    """The declared space of a registered model: shared training dimensions + its own."""
    cls = model_class(model)
    keywords = set(model_hparams(model))
    space = {k: v for k, v in SHARED_SPACE.items() if k not in MODEL_SHARED or k in keywords}
    space.update(getattr(cls, "search_space", {}) or {})
    return space


def apply_overrides(
    model: str, space: Mapping[str, Dimension], overrides: Mapping[str, Any] | None
) -> dict[str, Dimension]:
    """`space` with a config's `tune.space` entries applied; each name must be a parameter of
    `model` or a training setting."""
    out = dict(space)
    allowed = set(model_hparams(model)) | set(TrainingConfig.model_fields)
    for name, value in (overrides or {}).items():
        if name not in allowed:
            raise ConfigError(
                f"tune.space.{name}: model '{model}' has no hyper-parameter '{name}' and it is "
                f"not a training setting{did_you_mean(name, allowed)}"
            )
        dim = parse_override(name, value, out.get(name))
        if dim is None:
            out.pop(name, None)
        else:
            out[name] = dim
    return out


def split_params(model: str, params: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(model hyper-parameters, training settings) of a sampled configuration."""
    keywords = set(model_hparams(model))
    training = set(TrainingConfig.model_fields)
    model_params, train_params = {}, {}
    for k, v in params.items():
        if k in keywords:
            model_params[k] = v
        elif k in training:
            train_params[k] = v
        else:
            raise ConfigError(
                f"'{k}' is neither a hyper-parameter of '{model}' nor a training field"
            )
    return model_params, train_params


__all__ = ["MODEL_SHARED", "SHARED_SPACE", "apply_overrides", "model_space", "split_params"]
