"""Which datasets a benchmark runs on: a named suite, chosen cohorts, or a user's config."""

from __future__ import annotations

from pathlib import Path

from polyfuse.config import PreprocessConfig, TrainingConfig
from polyfuse.data.dataset import MultimodalDataset
from polyfuse.errors import ConfigError, MissingDependencyError

SUITES = ("default", "full")


def suite_datasets(
    suite: str, datasets: list[str] | None, config: Path | None
) -> tuple[list[MultimodalDataset], TrainingConfig | None, PreprocessConfig | None]:
    """Datasets to benchmark, with the config's training settings when one is given.

    "default" is TCGA-ACC; "full" adds every other cohort whose extra is installed.
    """
    from polyfuse.datasets import DATASETS, load

    if config is not None:
        from polyfuse.config import load_config
        from polyfuse.datasets import from_config

        cfg = load_config(config)
        return [from_config(cfg.data)], cfg.training, cfg.preprocess
    if datasets:
        return [load(d) for d in datasets], None, None
    if suite not in SUITES:
        raise ConfigError(f"unknown suite '{suite}'; use one of {SUITES}")
    if suite == "default":
        return [load("tcga-acc")], None, None
    chosen = []
    for info in DATASETS.values():
        try:
            chosen.append(info.load())
        except MissingDependencyError:
            continue
    return chosen, None, None
