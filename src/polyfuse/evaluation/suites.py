"""Which datasets a benchmark runs on: a named suite, chosen cohorts, or a user's config."""

from __future__ import annotations

import warnings
from pathlib import Path

from polyfuse.config import STACK, PreprocessConfig, TrainingConfig
from polyfuse.data.dataset import MultimodalDataset
from polyfuse.errors import ConfigError, FallbackWarning, MissingDependencyError

SUITES = ("default", "full")
# The default suite's models: the baselines and the core methods that train a TCGA-ACC fold in
# seconds on one CPU thread, and the stacked ensemble of `late` and the floors (~5 s a fold).
# `ehpal` (~85 s per fold on one thread) and the catalogue join with suite "full" or `--models`.
DEFAULT_MODELS = ("unimodal", "early", "late", "healnet", "synergies", "hierarchical", STACK)


def suite_models(suite: str, models: list[str] | None) -> list[str] | None:
    """The models a suite runs (None: every registered model); `models` wins when given."""
    if models:
        return models
    if suite not in SUITES:
        raise ConfigError(f"unknown suite '{suite}'; use one of {SUITES}")
    return list(DEFAULT_MODELS) if suite == "default" else None


def suite_datasets(
    suite: str, datasets: list[str] | None, config: Path | None
) -> tuple[list[MultimodalDataset], TrainingConfig | None, PreprocessConfig | None]:
    """Datasets to benchmark, with the config's training settings when one is given.

    "default" is TCGA-ACC; "full" adds every other cohort whose extra is installed. Bundled
    cohorts come without their train-only modalities (`datasets.load_honest`). A config's
    data are named after the experiment (its `name`), which titles the leaderboard.
    """
    from polyfuse.datasets import DATASETS, load_honest

    if config is not None:
        from polyfuse.config import load_config
        from polyfuse.datasets import from_config

        cfg = load_config(config)
        return [from_config(cfg.data).replace(name=cfg.name)], cfg.training, cfg.preprocess
    if datasets:
        return [load_honest(d) for d in datasets], None, None
    if suite not in SUITES:
        raise ConfigError(f"unknown suite '{suite}'; use one of {SUITES}")
    if suite == "default":
        return [load_honest("tcga-acc")], None, None
    chosen = []
    for name in DATASETS:
        try:
            chosen.append(load_honest(name))
        except MissingDependencyError as exc:
            warnings.warn(
                f"the full suite skips cohort '{name}': {exc}", FallbackWarning, stacklevel=2
            )
    return chosen, None, None
