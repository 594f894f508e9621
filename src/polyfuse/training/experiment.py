"""Config-driven runs: a run directory holding the resolved config, model and results."""

from __future__ import annotations

from pathlib import Path

from polyfuse.config import ExperimentConfig, dump_config
from polyfuse.errors import ConfigError
from polyfuse.evaluation.plots import weight_frame, write_task_weights
from polyfuse.io import prepare_run_dir, write_text
from polyfuse.training.cv import CVResult, cross_validate
from polyfuse.training.fit import FittedModel, train_model


def _task_weights(config: ExperimentConfig) -> dict[str, float]:
    return {t: c.weight for t, c in config.data.tasks.items()}


def run_fit(
    config: ExperimentConfig, *, overwrite: bool = False, resume: bool = False
) -> tuple[Path, FittedModel]:
    """Train on all samples (validation part carved out) and save everything to the run dir."""
    from polyfuse.datasets import from_config

    data = from_config(config.data)
    run = prepare_run_dir(config.output / config.name, overwrite=overwrite, resume=resume)
    _check_same_config(run, config, resume)
    write_text(run / "config.yaml", dump_config(config))
    fitted = train_model(
        config.model.name,
        data,
        hparams=config.model.params,
        training=config.training,
        preprocess=config.preprocess,
        task_weights=_task_weights(config),
        seed=config.seed,
        log_dir=run / "logs",
        checkpoint_dir=run / "checkpoints",
        resume=resume,
    )
    fitted.save(run)
    write_task_weights(weight_frame(fitted.weight_history), run)
    return run, fitted


def run_cv(
    config: ExperimentConfig, *, overwrite: bool = False, resume: bool = False
) -> tuple[Path, CVResult]:
    """Repeated k-fold CV of the configured model; per-fold metrics and summary in the run dir.

    Each finished fold is kept in `parts/`; `resume` skips those folds (a changed config is
    refused, so a resumed CV never mixes two experiments)."""
    from polyfuse.datasets import from_config

    data = from_config(config.data)
    run = prepare_run_dir(config.output / config.name, overwrite=overwrite, resume=resume)
    _check_same_config(run, config, resume)
    if overwrite:  # the old folds belong to the old results
        for part in (run / "parts").glob("repeat*_fold*_*.parquet"):
            part.unlink()
    write_text(run / "config.yaml", dump_config(config))
    result = cross_validate(
        config.model.name,
        data,
        folds=config.cv.folds,
        repeats=config.cv.repeats,
        seed=config.seed,
        training=config.training,
        preprocess=config.preprocess,
        task_weights=_task_weights(config),
        progress=config.training.progress,
        parts=run / "parts",
        **config.model.params,
    )
    result.save(run)
    return run, result


def _check_same_config(run: Path, config: ExperimentConfig, resume: bool) -> None:
    saved = run / "config.yaml"
    if resume and saved.is_file() and saved.read_text() != dump_config(config):
        raise ConfigError(
            f"{saved} differs from this config: resume continues the same experiment only; "
            "use --overwrite to start again, or another name"
        )
