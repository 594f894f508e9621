"""The settings every fit of a run shares: hyper-parameters, training, preprocessing, task
weights and the seed, as one value that cross-validation, the tuner and the benchmark hand down
instead of five keywords each."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from polyfuse.config import ExperimentConfig, PreprocessConfig, TrainingConfig


@dataclass(frozen=True)
class FitSettings:
    """How to fit a model, apart from what to fit it on.

    Frozen, so a fold or a trial derives its own settings (`replace`) without changing the
    run's. The public functions (`train_model`, `cross_validate`, `tune`, `benchmark`) keep
    their documented keywords and build one with `of`.
    """

    hparams: Mapping[str, Any] = field(default_factory=dict)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    task_weights: dict[str, float] | None = None
    seed: int = 0

    @classmethod
    def of(
        cls,
        hparams: Mapping[str, Any] | None = None,
        training: TrainingConfig | None = None,
        preprocess: PreprocessConfig | None = None,
        task_weights: dict[str, float] | None = None,
        seed: int = 0,
    ) -> FitSettings:
        """From the public keywords, where None means the default."""
        return cls(
            dict(hparams or {}),
            training or TrainingConfig(),
            preprocess or PreprocessConfig(),
            task_weights,
            seed,
        )

    @classmethod
    def from_config(cls, config: ExperimentConfig) -> FitSettings:
        """The fit an experiment config describes (task weights from its tasks)."""
        return cls(
            dict(config.model.params),
            config.training,
            config.preprocess,
            {t: c.weight for t, c in config.data.tasks.items()} or None,
            config.seed,
        )

    def replace(self, **changes: Any) -> FitSettings:
        return dataclasses.replace(self, **changes)

    def quiet(self) -> FitSettings:
        """Without a progress bar per fit: for the fits inside a CV, a search or a benchmark,
        whose own bar counts them."""
        return self.replace(training=self.training.model_copy(update={"progress": False}))


__all__ = ["FitSettings"]
