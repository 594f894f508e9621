"""Config-driven runs: a run directory holding the resolved config, model and results.

The config, the model and its hyper-parameters, the run directory and then the data are all
checked before torch is imported (the training modules are imported once the data are read),
so that a mistake is reported at once.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from polyfuse.config import STACK, ExperimentConfig, dump_config
from polyfuse.data.splits import kfold
from polyfuse.errors import ConfigError
from polyfuse.interrupt import Interrupted
from polyfuse.io import check_run_dir, prepare_run_dir, undo_on_failure, write_text
from polyfuse.training.settings import FitSettings
from polyfuse.training.weight_history import weight_frame, write_task_weights

if TYPE_CHECKING:
    from polyfuse.training.cv import CVResult
    from polyfuse.training.fit import FittedModel
    from polyfuse.training.stack import FittedStack


def check_experiment(
    config: ExperimentConfig,
    command: str,
    *,
    overwrite: bool = False,
    resume: bool = False,
    model: str | None = None,
    network: bool = True,
) -> Path:
    """Everything that can be checked before the data are read: the model name and its
    hyper-parameters (`model` instead of the configured one: its defaults; `network=False`:
    the command also takes the stacked ensemble, whose options are checked), the
    bundled cohorts named, and the run directory (free unless `overwrite`/`resume`, writable,
    the same experiment when resumed). Nothing is created, and nothing imports torch (a
    built-in model's hyper-parameters are known without importing it; a model of the user's
    own is imported). Returns the run directory."""
    from polyfuse.datasets import check_names
    from polyfuse.models.registry import check_hparams

    name = model or config.model.name
    if name != STACK:
        check_hparams(name, config.model.params if name == config.model.name else {})
    elif network:
        raise ConfigError(
            f"model '{STACK}' (the stacked ensemble) is fitted by `polyfuse fit`, "
            f"cross-validated by `polyfuse cv` and compared by `polyfuse benchmark`; "
            f"`polyfuse {command}` takes a registered model"
        )
    else:  # the stack's options; its members are checked against the data
        from polyfuse.training.stack import check_options

        check_options(config.model.params)
    check_names(config.data)
    run = check_run_dir(config.run_dir(command), overwrite=overwrite, resume=resume)
    if command in ("fit", "cv"):
        _check_same_config(run, config, resume)
    return run


def run_fit(
    config: ExperimentConfig, *, overwrite: bool = False, resume: bool = False
) -> tuple[Path, FittedModel | FittedStack]:
    """Train on all samples (validation part carved out) and save everything to the run dir,
    `<output>/<name>/fit/`; the stacked ensemble (`model: {name: stack}`) fits its members and
    meta-learner on all samples.

    The model, the output location and the data are checked before the run directory is
    made; a fit that fails before its model is saved removes the directory it made (an
    interrupted one keeps it when a resume checkpoint was written)."""
    from polyfuse.datasets import from_config

    stack = config.model.name == STACK
    run = check_experiment(config, "fit", overwrite=overwrite, resume=resume, network=not stack)
    if stack and resume:
        raise ConfigError("a stack's fit does not resume: run it again with --overwrite")
    data = from_config(config.data)
    from polyfuse.training.fit import STACK_FILE, fit_model  # torch: after checks and data
    from polyfuse.training.stack import fit_stack, plan_from_options

    plan = plan_from_options(data, config.model.params) if stack else None

    def keep(exc: BaseException) -> bool:
        interrupted = isinstance(exc, Interrupted | KeyboardInterrupt)
        return (
            (run / "model.safetensors").is_file()
            or (run / STACK_FILE).is_file()
            or (interrupted and (run / "checkpoints" / "last.ckpt").is_file())
        )

    with undo_on_failure(run, keep):
        prepare_run_dir(run, overwrite=overwrite, resume=resume)
        write_text(run / "config.yaml", dump_config(config))
        settings = FitSettings.from_config(config)
        if plan is not None:
            fitted = fit_stack(data, plan, settings)
        else:
            fitted = fit_model(
                config.model.name,
                data,
                settings,
                log_dir=run / "logs",
                checkpoint_dir=run / "checkpoints",
                resume=resume,
            )
        fitted.contract = fitted.contract.with_source(config.data)
        fitted.save(run)
        if plan is None:
            write_task_weights(weight_frame(fitted.weight_history), run)
    return run, fitted


def run_cv(
    config: ExperimentConfig,
    *,
    overwrite: bool = False,
    resume: bool = False,
) -> tuple[Path, CVResult]:
    """Repeated k-fold CV of the configured model; per-fold metrics and summary in the run dir,
    `<output>/<name>/cv/`.

    Each finished fold is kept in `parts/`; `resume` skips those folds (a changed config is
    refused, so a resumed CV never mixes two experiments). Checked and cleaned up like
    `run_fit`: a CV that stops before its first fold is finished leaves no directory. The
    stacked ensemble is fitted on each fold's training part (`training.stack.fold_fitter`),
    its member weights in `stack_weights.csv`."""
    from polyfuse.datasets import from_config

    run = check_experiment(config, "cv", overwrite=overwrite, resume=resume, network=False)
    data = from_config(config.data)
    splits = kfold(data, config.cv.folds, config.cv.repeats, config.seed)  # too few samples?
    fit_fold = None
    if config.model.name == STACK:
        from polyfuse.training.stack import fold_fitter

        fit_fold = fold_fitter(data, config.model.params)  # checked on the data: no training
    from polyfuse.training.cv import cross_validate_splits  # torch: after the checks and data

    with undo_on_failure(run, lambda exc: any((run / "parts").glob("*_metrics.parquet"))):
        prepare_run_dir(run, overwrite=overwrite, resume=resume)
        if overwrite:  # the old folds belong to the old results
            for part in (run / "parts").glob("repeat*_fold*_*.parquet"):
                part.unlink()
        write_text(run / "config.yaml", dump_config(config))
        result = cross_validate_splits(
            config.model.name,
            data,
            splits,
            FitSettings.from_config(config),
            progress=config.training.progress,
            parts=run / "parts",
            fit_fold=fit_fold,
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
