"""Checks of a model's keywords: the error names the model, the keyword and what it allows."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from polyfuse.errors import ConfigError


def check_choices(owner: str, allowed: Mapping[str, Sequence[str]], **values: str) -> None:
    """A ConfigError for the first keyword whose value is not one of `allowed[keyword]`."""
    for key, value in values.items():
        if value not in allowed[key]:
            raise ConfigError(f"{owner}: {key} must be one of {tuple(allowed[key])}, got '{value}'")


def check_at_least(owner: str, low: int, **values: int) -> None:
    """A ConfigError for the first keyword whose value is below `low`."""
    for key, value in values.items():
        if value < low:
            raise ConfigError(f"{owner}: {key} must be >= {low}, got {value}")


__all__ = ["check_at_least", "check_choices"]
