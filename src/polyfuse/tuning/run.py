"""`polyfuse tune CONFIG`: a config-driven nested-CV search writing one run directory."""

from __future__ import annotations

from pathlib import Path

from polyfuse.config import ExperimentConfig
from polyfuse.errors import require
from polyfuse.tuning.nested import TuneResult, tune


def resolve_run(config: ExperimentConfig, model: str | None = None) -> ExperimentConfig:
    """The config a run uses: with `model` other than the configured one, that model with its
    defaults (the configured params belong to the other model) and the name `<name>-<model>`."""
    if model is None or model == config.model.name:
        return config
    return config.model_copy(
        update={
            "name": f"{config.name}-{model}",
            "model": config.model.model_copy(update={"name": model, "params": {}}),
        }
    )


def run_tune(
    config: ExperimentConfig,
    *,
    trials: int | None = None,
    timeout: float | None = None,
    model: str | None = None,
    resume: bool = False,
    overwrite: bool = False,
) -> tuple[Path, TuneResult]:
    """Tune the configured model (or `model`) by nested CV; everything in `<output>/<name>/`.

    Outer folds come from the `cv` section, the search settings from `tune`; `trials` and
    `timeout` override the config's. The run directory holds config.yaml, study.db,
    trials.csv, folds.csv, summary.csv, chosen.csv, best.yaml, best_r<r>f<f>.yaml and figures.
    """
    require("optuna", "tune")  # the missing extra is reported before the data is loaded
    from polyfuse.datasets import from_config

    config = resolve_run(config, model)
    settings = config.tune
    updates = {k: v for k, v in (("trials", trials), ("timeout", timeout)) if v is not None}
    if updates:
        settings = settings.model_copy(update=updates)
        config = config.model_copy(update={"tune": settings})
    data = from_config(config.data)
    result = tune(
        config.model.name,
        data,
        trials=settings.trials,
        timeout=settings.timeout,
        folds=config.cv.folds,
        repeats=config.cv.repeats,
        inner_folds=settings.inner_folds,
        seed=config.seed,
        training=config.training,
        preprocess=config.preprocess,
        task_weights={t: c.weight for t, c in config.data.tasks.items()} or None,
        space=settings.space,
        task=settings.task,
        metric=settings.metric,
        direction=settings.direction,
        prune=settings.prune,
        final=settings.final,
        untuned=settings.untuned,
        out=config.output / config.name,
        resume=resume,
        overwrite=overwrite,
        progress=config.training.progress,
        template=config,
        **config.model.params,
    )
    assert result.out is not None
    return result.out, result
