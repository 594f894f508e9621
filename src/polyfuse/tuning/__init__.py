"""Hyper-parameter search with optuna and nested cross-validation (`polyfuse tune`).

`space` joins a model's declared space (dimension types in `polyfuse.search_space`, which models
import) with the shared training dimensions; `search` runs one study (optuna, the optional extra
`tune`) on one training part, `study` keeps its storage and sampler, `target` says what it
optimises; `nested` is the outer loop and `files` what a run writes; `run` the config-driven
command; `plots` the figures. Attributes are imported on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "tune": "polyfuse.tuning.nested",
    "TuneResult": "polyfuse.tuning.nested",
    "search_split": "polyfuse.tuning.search",
    "run_tune": "polyfuse.tuning.run",
    "model_space": "polyfuse.tuning.space",
    "Float": "polyfuse.search_space",
    "Int": "polyfuse.search_space",
    "Categorical": "polyfuse.search_space",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'polyfuse.tuning' has no attribute '{name}'")
