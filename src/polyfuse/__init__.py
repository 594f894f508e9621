"""polyfuse: multimodal fusion learning on heterogeneous medical data.

    >>> import polyfuse as pf
    >>> data = pf.datasets.load("tcga-acc")                         # doctest: +SKIP
    >>> pf.cross_validate("early", data, folds=5, repeats=3).summary()  # doctest: +SKIP

Attributes are imported on first use, so `import polyfuse` (and the CLI's --help) stay fast.
"""

from __future__ import annotations

import importlib
import logging
from importlib import metadata
from typing import Any

try:  # one copy of the version: pyproject.toml, read from the installed package's metadata
    __version__ = metadata.version("polyfuse")
except metadata.PackageNotFoundError:  # a source tree on sys.path without an install
    __version__ = "0+unknown"

# A library logs, the application decides where it goes: silent unless the user (or the CLI's
# --verbose) configures logging. Each module logs to logging.getLogger(__name__).
logging.getLogger(__name__).addHandler(logging.NullHandler())

_EXPORTS = {
    "ModalitySpec": "polyfuse.data.specs",
    "TaskSpec": "polyfuse.data.specs",
    "MultimodalDataset": "polyfuse.data.dataset",
    "ModalityBatch": "polyfuse.data.dataset",
    "Batch": "polyfuse.data.dataset",
    "Preprocessor": "polyfuse.data.preprocess",
    "kfold": "polyfuse.data.splits",
    "load_data": "polyfuse.data.manifest",
    "create_model": "polyfuse.models.registry",
    "list_models": "polyfuse.models.registry",
    "register_model": "polyfuse.models.registry",
    "MultimodalModel": "polyfuse.models.model",
    "ModelOutput": "polyfuse.models.model",
    "train_model": "polyfuse.training.fit",
    "FittedModel": "polyfuse.training.fit",
    "cross_validate": "polyfuse.training.cv",
    "CVResult": "polyfuse.training.cv",
    "tune": "polyfuse.tuning.nested",
    "TuneResult": "polyfuse.tuning.nested",
    "benchmark": "polyfuse.evaluation.benchmark",
    "BenchmarkResult": "polyfuse.evaluation.benchmark",
    "load_config": "polyfuse.config",
    "ExperimentConfig": "polyfuse.config",
    "PolyfuseError": "polyfuse.errors",
    "DataError": "polyfuse.errors",
    "ConfigError": "polyfuse.errors",
}
_SUBMODULES = {
    "datasets",
    "data",
    "models",
    "tasks",
    "training",
    "tuning",
    "config",
    "errors",
    "evaluation",
}

__all__ = sorted([*_EXPORTS, *_SUBMODULES])


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    if name in _SUBMODULES:
        return importlib.import_module(f"polyfuse.{name}")
    raise AttributeError(f"module 'polyfuse' has no attribute '{name}'")


def __dir__() -> list[str]:
    return __all__
