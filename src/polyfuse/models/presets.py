"""Named presets of a model's hyper-parameters (and the training settings that go with them).

A model decorates its `__init__` with `with_presets(PRESETS, "name")`: the `preset` keyword fills
every hyper-parameter the caller did not pass, and explicit keywords win. `functools.wraps` keeps
the signature visible to the registry (`model_hparams`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from polyfuse.errors import ConfigError, did_you_mean


def preset_values(presets: dict[str, dict[str, Any]], name: str, model: str) -> dict[str, Any]:
    """The hyper-parameters of preset `name` (case-insensitive), or a ConfigError."""
    key = name.lower()
    if key not in presets:
        raise ConfigError(
            f"unknown {model} preset '{name}'{did_you_mean(key, presets)}; "
            f"use one of {sorted(presets)}"
        )
    return dict(presets[key])


def with_presets(presets: dict[str, dict[str, Any]], model: str) -> Callable:
    """Decorator of `__init__(self, specs, tasks, *, preset=None, **hparams)`."""

    def decorate(init: Callable[..., None]) -> Callable[..., None]:
        @functools.wraps(init)
        def wrapper(self, specs, tasks, *, preset: str | None = None, **explicit: Any) -> None:
            values = explicit
            if preset is not None:
                values = {**preset_values(presets, preset, model), **explicit}
            init(self, specs, tasks, preset=preset, **values)

        return wrapper

    return decorate


def preset_training(
    training: dict[str, dict[str, Any]], hparams: dict[str, Any], default: dict[str, Any]
) -> dict[str, Any]:
    """The training settings of the preset in `hparams`, else `default`."""
    preset = hparams.get("preset")
    if preset is not None and preset.lower() in training:
        return dict(training[preset.lower()])
    return dict(default)
