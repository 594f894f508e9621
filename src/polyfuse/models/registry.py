"""Model registry (timm-style): a class registers itself; nothing else lists models by hand."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from typing import Any

from polyfuse.config import TrainingConfig
from polyfuse.data.specs import ModalitySpec, TaskSpec
from polyfuse.errors import ConfigError, did_you_mean
from polyfuse.search_space import Categorical, Fixed, Float, Int

_MODELS: dict[str, type] = {}


def register_model(name: str):
    """Class decorator: make a `MultimodalModel` subclass available as `create_model(name, ...)`.

    The class's `search_space` (dimensions from `polyfuse.search_space`) is checked here: each
    dimension must name a keyword of its `__init__` or a training setting.
    """

    def decorate(cls: type) -> type:
        if name in _MODELS and _MODELS[name] is not cls:
            raise ConfigError(f"model name '{name}' is registered twice")
        _check_declared(cls, name)  # a search space names only parameters the model takes
        _MODELS[name] = cls
        cls.registry_name = name
        return cls

    return decorate


def _keywords(cls: type) -> set[str]:
    sig = inspect.signature(cls.__init__)
    return {p.name for p in sig.parameters.values() if p.kind is inspect.Parameter.KEYWORD_ONLY}


def _check_declared(cls: type, name: str) -> None:
    """A model's `search_space` names only its own keywords or training settings."""
    allowed = _keywords(cls) | set(TrainingConfig.model_fields)
    for key, dim in (getattr(cls, "search_space", {}) or {}).items():
        if key not in allowed:
            raise ConfigError(
                f"model '{name}' declares a search dimension '{key}', which is neither one of "
                f"its hyper-parameters nor a training setting{did_you_mean(key, allowed)}"
            )
        if not isinstance(dim, Float | Int | Categorical | Fixed):
            raise ConfigError(
                f"model '{name}': search dimension '{key}' must be Float, Int or Categorical, "
                f"got {dim!r}"
            )


def _import_all() -> None:
    """Import every module below polyfuse.models so that each registers its models."""
    import polyfuse.models as pkg

    for info in pkgutil.walk_packages(pkg.__path__, prefix="polyfuse.models."):
        importlib.import_module(info.name)


def list_models() -> list[str]:
    """Registered model names, sorted."""
    _import_all()
    return sorted(_MODELS)


def model_class(name: str) -> type:
    """The class registered as `name`, or a ConfigError with a did-you-mean."""
    _import_all()
    if name not in _MODELS:
        raise ConfigError(
            f"unknown model '{name}'{did_you_mean(name, _MODELS)}; available: {sorted(_MODELS)}"
        )
    return _MODELS[name]


def model_hparams(name: str) -> dict[str, Any]:
    """The keyword-only hyper-parameters of a model with their defaults."""
    sig = inspect.signature(model_class(name).__init__)
    return {
        p.name: p.default
        for p in sig.parameters.values()
        if p.kind is inspect.Parameter.KEYWORD_ONLY
    }


def create_model(
    name: str, specs: dict[str, ModalitySpec], tasks: dict[str, TaskSpec], **hparams: Any
):
    """Build the registered model `name` for these modalities and tasks.

    Unknown hyper-parameters raise a ConfigError naming them (with a did-you-mean), before any
    module is built.
    """
    cls = model_class(name)
    check_hparams(name, hparams)
    return cls(specs, tasks, **hparams)


def check_hparams(name: str, hparams: dict[str, Any]) -> None:
    """A ConfigError (with a did-you-mean) for an unknown model or hyper-parameter name; needs
    no data, so a config is checked before its data are read."""
    known = model_hparams(name)
    for key in hparams:
        if key not in known:
            raise ConfigError(
                f"model '{name}' has no hyper-parameter '{key}'{did_you_mean(key, known)}; "
                f"it takes {sorted(known)}"
            )
