"""Search dimensions as plain data: the values a hyper-parameter may take, and on which scale.

A leaf module (it imports only `polyfuse.errors`), so that models can declare their
`search_space` and the config can check `tune.space` entries without importing the tuner.
`polyfuse.tuning.space` joins a model's declared space with the shared training dimensions.
Nothing here imports optuna: `suggest` receives an optuna trial from the tuner.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from polyfuse.errors import ConfigError, did_you_mean


@dataclass(frozen=True)
class Float:
    """A real value in [low, high]; `log` samples uniformly on a log scale; `step` discretises."""

    low: float
    high: float
    log: bool = False
    step: float | None = None

    def __post_init__(self) -> None:
        _check_range(self.low, self.high, self.log, self.step)

    def __str__(self) -> str:
        return f"{'log-' if self.log else ''}uniform {self.low:g}..{self.high:g}" + (
            f" step {self.step:g}" if self.step else ""
        )


@dataclass(frozen=True)
class Int:
    """An integer in [low, high] (both included); `log` samples on a log scale."""

    low: int
    high: int
    log: bool = False
    step: int = 1

    def __post_init__(self) -> None:
        if not all(_is_int(v) for v in (self.low, self.high, self.step)):
            raise ConfigError(
                f"Int bounds and step must be integers, got {self.low!r}..{self.high!r} "
                f"step {self.step!r}"
            )
        _check_range(self.low, self.high, self.log, None if self.step == 1 else self.step)

    def __str__(self) -> str:
        return f"{'log-' if self.log else ''}int {self.low}..{self.high}" + (
            f" step {self.step}" if self.step != 1 else ""
        )


@dataclass(frozen=True)
class Categorical:
    """One of `choices`: numbers, strings, booleans, None, or lists (e.g. hidden widths)."""

    choices: tuple[Any, ...]

    def __post_init__(self) -> None:
        choices = tuple(_freeze(c) for c in self.choices)
        if not choices:
            raise ConfigError("Categorical needs at least one choice")
        object.__setattr__(self, "choices", choices)

    def __str__(self) -> str:
        return "one of " + ", ".join(json.dumps(_thaw(c)) for c in self.choices)


@dataclass(frozen=True)
class Fixed:
    """Not searched: always `value` (a config's `tune.space: {name: value}` makes one)."""

    value: Any

    def __str__(self) -> str:
        return f"fixed {json.dumps(_thaw(self.value))}"


Dimension = Float | Int | Categorical | Fixed


def _check_range(low: float, high: float, log: bool, step: float | None) -> None:
    if not (math.isfinite(low) and math.isfinite(high)) or low > high:
        raise ConfigError(f"a range needs finite low <= high, got {low!r}..{high!r}")
    if log and low <= 0:
        raise ConfigError(f"a log-scale range needs low > 0, got {low!r}")
    if log and step is not None:
        raise ConfigError("a range cannot have both log scale and a step")
    if step is not None and step <= 0:
        raise ConfigError(f"a step must be > 0, got {step!r}")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _freeze(value: Any) -> Any:
    """Lists become tuples, so that a dimension stays hashable and immutable."""
    if isinstance(value, list | tuple):
        return tuple(_freeze(v) for v in value)
    return value


def _thaw(value: Any) -> Any:
    """Tuples back to lists: what a YAML file or a model's keyword expects."""
    if isinstance(value, tuple):
        return [_thaw(v) for v in value]
    return value


OVERRIDE_KEYS = ("low", "high", "log", "step", "choices")


def check_override(name: str, value: Any) -> None:
    """The shape of one `tune.space` entry (no model needed): a value, a list, a mapping of
    `low`/`high`/`log`/`step`, a mapping with `choices`, or null."""
    if value is None or isinstance(value, bool | int | float | str | list):
        return
    if not isinstance(value, Mapping):
        raise ConfigError(
            f"tune.space.{name}: give a value, a list of choices, a mapping of "
            f"{'/'.join(OVERRIDE_KEYS)}, or null; got {value!r}"
        )
    for key in value:
        if key not in OVERRIDE_KEYS:
            raise ConfigError(
                f"tune.space.{name}: unknown key '{key}'{did_you_mean(str(key), OVERRIDE_KEYS)}; "
                f"use {', '.join(OVERRIDE_KEYS)}"
            )
    if "choices" in value and len(value) > 1:
        raise ConfigError(f"tune.space.{name}: 'choices' cannot be combined with a range")
    if "choices" in value and not isinstance(value["choices"], list):
        raise ConfigError(f"tune.space.{name}: choices must be a list")


def parse_override(name: str, value: Any, base: Dimension | None) -> Dimension | None:
    """One `tune.space` entry applied to the declared dimension `base` (None: not declared).

    null removes the parameter from the search (its configured value is used); a single value
    fixes it; a list is a categorical choice; a mapping gives a range, its missing keys taken
    from `base` (so `{high: 1e-3}` narrows a declared range), its type that of `base` or, when
    undeclared, Int for integer bounds and Float otherwise.
    """
    check_override(name, value)
    if value is None:
        return None
    if isinstance(value, list):
        return Categorical(tuple(value))
    if not isinstance(value, Mapping):
        return Fixed(value)
    if "choices" in value:
        return Categorical(tuple(value["choices"]))
    ranged = base if isinstance(base, Float | Int) else None
    fields = {k: value[k] for k in ("low", "high", "log", "step") if k in value}
    missing = [k for k in ("low", "high") if k not in fields]
    if missing and ranged is None:
        raise ConfigError(
            f"tune.space.{name}: give both low and high ('{name}' has no declared range to narrow)"
        )
    for k in ("low", "high", "log", "step"):
        if k not in fields and ranged is not None:
            fields[k] = getattr(ranged, k)
    integer = isinstance(ranged, Int) or (
        ranged is None
        and all(_is_int(fields[k]) for k in ("low", "high"))
        and _is_int(fields.get("step", 1))
    )
    try:
        if integer:
            fields["step"] = fields.get("step") or 1
            return Int(**fields)
        return Float(**fields)
    except (TypeError, ConfigError) as exc:
        raise ConfigError(f"tune.space.{name}: {exc}") from None


def _label(choice: Any) -> Any:
    """What optuna stores for a categorical choice: the value itself, or JSON for a list."""
    if choice is None or isinstance(choice, bool | int | float | str):
        return choice
    return json.dumps(_thaw(choice))


def suggest(trial: Any, space: Mapping[str, Dimension]) -> dict[str, Any]:
    """Sample one configuration from `space` with an optuna trial (values as a model takes them:
    lists, not tuples)."""
    params: dict[str, Any] = {}
    for name, dim in space.items():
        if isinstance(dim, Float):
            params[name] = trial.suggest_float(name, dim.low, dim.high, log=dim.log, step=dim.step)
        elif isinstance(dim, Int):
            params[name] = trial.suggest_int(name, dim.low, dim.high, log=dim.log, step=dim.step)
        elif isinstance(dim, Categorical):
            labels = [_label(c) for c in dim.choices]
            picked = trial.suggest_categorical(name, labels)
            params[name] = _thaw(dim.choices[labels.index(picked)])
        else:
            params[name] = _thaw(dim.value)
    return params


def corner(space: Mapping[str, Dimension], side: str) -> dict[str, Any]:
    """Every dimension at its `side` ("low" or "high"): the first or last choice of a
    categorical. Used to check that the extremes of a space build."""
    out = {}
    for name, dim in space.items():
        if isinstance(dim, Float | Int):
            out[name] = getattr(dim, side)
        elif isinstance(dim, Categorical):
            out[name] = _thaw(dim.choices[0 if side == "low" else -1])
        else:
            out[name] = _thaw(dim.value)
    return out


def describe(space: Mapping[str, Dimension]) -> dict[str, str]:
    """Readable text per dimension, e.g. {'lr': 'log-uniform 1e-05..0.01'}."""
    return {name: str(dim) for name, dim in space.items()}


__all__ = [
    "OVERRIDE_KEYS",
    "Categorical",
    "Dimension",
    "Fixed",
    "Float",
    "Int",
    "check_override",
    "corner",
    "describe",
    "parse_override",
    "suggest",
]
