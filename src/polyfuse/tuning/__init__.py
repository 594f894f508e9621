"""Hyper-parameter search with optuna and nested cross-validation (`polyfuse tune`).

`space` is plain data and imports nothing heavy (models import it to declare their spaces);
`nested` holds the search (optuna, the optional extra `tune`); `run` the config-driven command;
`plots` the figures. Attributes are imported on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "tune": "polyfuse.tuning.nested",
    "TuneResult": "polyfuse.tuning.nested",
    "search_split": "polyfuse.tuning.nested",
    "run_tune": "polyfuse.tuning.run",
    "model_space": "polyfuse.tuning.space",
    "Float": "polyfuse.tuning.space",
    "Int": "polyfuse.tuning.space",
    "Categorical": "polyfuse.tuning.space",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'polyfuse.tuning' has no attribute '{name}'")
