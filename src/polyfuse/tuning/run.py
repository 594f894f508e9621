"""`polyfuse tune CONFIG`: a config-driven nested-CV search writing one run directory."""

from __future__ import annotations

import warnings
from pathlib import Path

from polyfuse.config import ExperimentConfig
from polyfuse.data.dataset import MultimodalDataset
from polyfuse.errors import ConfigError, FallbackWarning, require
from polyfuse.interrupt import Interrupted
from polyfuse.io import undo_on_failure
from polyfuse.training.settings import FitSettings
from polyfuse.tuning.nested import TuneResult, tune
from polyfuse.tuning.storage import STUDY_FILE, close_storage, open_storage


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
    storage: str | None = None,
    study: str | None = None,
) -> tuple[Path, TuneResult]:
    """Tune the configured model (or `model`) by nested CV; everything in
    `<output>/<name>/tune/` (with `model`: `<output>/<name>-<model>/tune/`).

    Outer folds come from the `cv` section, the search settings from `tune`; `trials`,
    `timeout`, `storage` and `study` override the config's. The run directory holds
    config.yaml, study.db (unless the studies are in a shared `storage`: then this process is
    one of its workers), trials.csv, folds.csv, summary.csv, chosen.csv, best.yaml,
    best_r<r>f<f>.yaml and figures. The model, its search space, the storage and the run
    directory are checked before the data are read; a run that stops before a search or a
    trial was finished leaves no directory.
    """
    require("optuna", "tune")  # the missing extra is reported before the data is loaded
    from polyfuse.datasets import from_config
    from polyfuse.training.experiment import check_experiment
    from polyfuse.tuning.search import check_space
    from polyfuse.tuning.space import apply_overrides, model_space

    if resume and overwrite:
        raise ConfigError("give one of --resume and --overwrite, not both")
    config = resolve_run(config, model)
    settings = config.tune
    given = (("trials", trials), ("timeout", timeout), ("storage", storage), ("study", study))
    updates = {k: v for k, v in given if v is not None}
    if updates:
        settings = settings.model_copy(update=updates)
        config = config.model_copy(update={"tune": settings})
    if settings.storage is not None:  # reachable, before anything heavy is imported
        close_storage(open_storage(settings.storage))
    run = check_experiment(config, "tune", overwrite=overwrite, resume=resume)
    name = config.model.name
    check_space(name, apply_overrides(name, model_space(name), settings.space), config.training)
    data = from_config(config.data)
    with undo_on_failure(run, lambda exc: _finished_work(run, exc)):
        return _run(config, data, run, resume=resume, overwrite=overwrite)


def _finished_work(run: Path, exc: BaseException) -> bool:
    """Whether a stopped tuning run holds something a resume would reuse: a finished search,
    or (interrupted) a finished trial."""
    if any((run / "parts").glob("*.chosen.json")):
        return True
    if not isinstance(exc, Interrupted | KeyboardInterrupt) or not (run / STUDY_FILE).is_file():
        return False
    import sqlite3

    try:
        con = sqlite3.connect(f"file:{run / STUDY_FILE}?mode=ro", uri=True, timeout=5)
        try:
            (done,) = con.execute(
                "SELECT COUNT(*) FROM trials WHERE state IN ('COMPLETE', 'PRUNED')"
            ).fetchone()
        finally:
            con.close()
    except sqlite3.Error as exc:
        warnings.warn(
            f"cannot count the finished trials in {run / STUDY_FILE} ({exc}); the run "
            "directory is kept rather than lose them",
            FallbackWarning,
            stacklevel=2,
        )
        return True
    return done > 0


def _run(
    config: ExperimentConfig, data: MultimodalDataset, run: Path, *, resume: bool, overwrite: bool
) -> tuple[Path, TuneResult]:
    settings, fit = config.tune, FitSettings.from_config(config)
    result = tune(
        config.model.name,
        data,
        trials=settings.trials,
        timeout=settings.timeout,
        folds=config.cv.folds,
        repeats=config.cv.repeats,
        inner_folds=settings.inner_folds,
        seed=fit.seed,
        training=fit.training,
        preprocess=fit.preprocess,
        task_weights=fit.task_weights,
        space=settings.space,
        task=settings.task,
        metric=settings.metric,
        direction=settings.direction,
        prune=settings.prune,
        final=settings.final,
        untuned=settings.untuned,
        out=run,
        resume=resume,
        overwrite=overwrite,
        progress=config.training.progress,
        template=config,
        storage=settings.storage,
        study=settings.study or config.name,
        heartbeat=settings.heartbeat,
        **fit.hparams,
    )
    assert result.out is not None
    return result.out, result
