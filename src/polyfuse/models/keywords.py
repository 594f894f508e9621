"""Keyword groups: hyper-parameters declared once, as the fields of a frozen dataclass.

Several models share a group of keywords (the encoder keywords of every encoder-fusion model),
or hand a large group on to one part (the Perceiver memories of `synergies`). Such a model's
`__init__` takes the group as `**group` and builds the dataclass from it; `complete_signature`
writes the group's fields into the signature in place of `**group`, keyword-only and with the
model's defaults, so that the registry (`model_hparams`), `create_model`'s check of unknown
names and `help()` see every hyper-parameter as if it were written out.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import fields
from typing import Any, TypeVar

Init = TypeVar("Init", bound=Callable[..., Any])


def complete_signature(init: Callable[..., Any], defaults: Any) -> None:
    """Replace the `**group` parameter of `init` by the fields of the dataclass `defaults`."""
    signature = inspect.signature(init)
    *own, rest = signature.parameters.values()
    if rest.kind is not inspect.Parameter.VAR_KEYWORD:
        raise TypeError(f"{init.__qualname__} must end with a **group parameter")
    group = [
        inspect.Parameter(
            f.name,
            inspect.Parameter.KEYWORD_ONLY,
            default=getattr(defaults, f.name),
            annotation=f.type,
        )
        for f in fields(defaults)
    ]
    init.__signature__ = signature.replace(parameters=[*own, *group])  # type: ignore[attr-defined]


def keyword_group(defaults: Any) -> Callable[[Init], Init]:
    """Decorator of an `__init__` taking `**group`: see `complete_signature`."""

    def decorate(init: Init) -> Init:
        complete_signature(init, defaults)
        return init

    return decorate


__all__ = ["complete_signature", "keyword_group"]
