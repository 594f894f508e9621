"""One search: optuna trials over a model's space, each scored by inner cross-validation on a
training part; the best configuration found.

optuna's TPE sampler proposes a configuration from the model's search space; its value is the
mean, over `inner_folds` inner folds (`kfold` of the training part), of the validation metric
of a model trained on the other inner folds. After each inner fold the running mean is
reported to a median pruner, which stops a trial that is already worse than the median of
earlier trials at the same inner fold. The study (`tuning/study.py`) makes the search
reproducible and resumable.
"""

from __future__ import annotations

import logging
import math
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from polyfuse.config import TrainingConfig
from polyfuse.data.dataset import MultimodalDataset
from polyfuse.data.splits import Split, kfold
from polyfuse.errors import ConfigError, FallbackWarning, require
from polyfuse.search_space import Dimension, corner, suggest
from polyfuse.training.settings import FitSettings
from polyfuse.tuning.space import split_params
from polyfuse.tuning.study import best_trial, finished_trials, open_study, seeded_sampler
from polyfuse.tuning.target import Target
from polyfuse.tuning.workers import (
    Sharing,
    claim,
    fail_leftovers,
    fail_stale,
    heartbeat,
    live_running,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SearchPlan:
    """What every search of a run does alike: the model and space searched, the target, the
    trial budget, the inner folds and whether unpromising trials are pruned."""

    model: str
    space: Mapping[str, Dimension]
    target: Target
    trials: int
    inner_folds: int = 3
    prune: bool = True


@dataclass
class Chosen:
    """The outcome of one search: the best trial's values and the settings they make."""

    params: dict[str, Any]
    settings: FitSettings
    value: float  # the best mean inner score: selection-biased, never the reported score
    trial: int | None
    finished: int

    def as_dict(self) -> dict[str, Any]:
        return dict(params=self.params, value=self.value, trial=self.trial, finished=self.finished)


def configure(model: str, base: FitSettings, params: Mapping[str, Any]) -> FitSettings:
    """The settings of sampled `params` laid over `base` (sampled values win), without a
    progress bar. Training settings are validated like a config's."""
    from pydantic import ValidationError

    model_params, train_params = split_params(model, params)
    values = {**base.training.model_dump(include=base.training.model_fields_set), **train_params}
    values["progress"] = False
    try:
        training = TrainingConfig(**values)
    except ValidationError as exc:
        bad = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"a sampled training setting is invalid ({bad})") from None
    return base.replace(hparams={**base.hparams, **model_params}, training=training)


def check_space(
    model: str, space: Mapping[str, Dimension], training: TrainingConfig | None = None
) -> None:
    """Fail before any training when a range lets a training setting leave its valid values."""
    for side in ("low", "high"):
        configure(model, FitSettings.of(training=training), corner(space, side))


def inner_score(
    fitted: Any, val: MultimodalDataset, fit: MultimodalDataset, target: Target
) -> float:
    """The target metric of a model fitted on `fit`, on the inner validation fold `val`."""
    metrics = fitted.evaluate(val, fit.targets)[target.task]
    if target.metric not in metrics:
        raise ConfigError(
            f"tune.metric: task '{target.task}' reports no metric '{target.metric}'; "
            f"it reports {sorted(metrics)}"
        )
    return float(metrics[target.metric])


def search_split(
    plan: SearchPlan,
    train: MultimodalDataset,
    settings: FitSettings,
    *,
    storage: Any,
    study_name: str = "search",
    key: int = 0,
    deadline: float | None = None,
    on_trial: Callable[[Any, Any], None] | None = None,
    sharing: Sharing | None = None,
) -> Chosen:
    """Search `plan.space` by inner cross-validation on `train`; the best configuration found.

    `settings` is the base of every trial; inner fold `j` is fitted with seed
    `settings.seed + j`, and the sampler is seeded from (`settings.seed`, `key`, finished
    trials). Runs trials until `plan.trials` are finished in the study (counting those of an
    earlier, resumed run, and with `sharing` those of other workers, whose last running trials
    it waits for) or `deadline` (a `time.monotonic()` value) passes. A trial that raises (a
    sampled configuration that does not build, an interruption) is marked failed and the error
    goes on. Without `sharing` the study is this process's alone: trials an earlier, killed run
    left running are failed first.
    """
    require("optuna", "tune")
    inner = kfold(train, plan.inner_folds, 1, settings.seed, stratify=plan.target.task)
    study = open_study(storage, study_name, plan.target, plan.prune)
    grace = sharing.grace if sharing is not None else None
    if sharing is None:
        fail_leftovers(study)
    while not _past(deadline):
        if sharing is not None:
            fail_stale(study, sharing.grace)
        done = finished_trials(study)
        if done >= plan.trials:
            break
        if done + len(live_running(study, grace)) >= plan.trials:
            assert sharing is not None  # alone, nothing else runs
            time.sleep(sharing.poll)  # the budget is taken: wait for the other workers' trials
            continue
        trial = study.ask()
        rank = claim(study, trial, plan.trials, grace)
        if rank is None:
            continue
        study.sampler = seeded_sampler(settings.seed, key, done, plan.trials, rank)
        objective = lambda t=trial: _objective(t, plan, train, inner, settings)  # noqa: E731
        with heartbeat(trial, sharing.heartbeat if sharing is not None else None):
            _run_trial(study, trial, objective)
        if on_trial is not None:
            on_trial(study, trial)
    if _past(deadline) and finished_trials(study) < plan.trials:
        log.info("study '%s': the time budget ended the search", study_name)
    return _choose(plan, settings, study)


def _past(deadline: float | None) -> bool:
    return deadline is not None and time.monotonic() >= deadline


def _run_trial(study: Any, trial: Any, objective: Callable[[], float]) -> None:
    """Run one trial and tell the study how it ended: complete, pruned, or failed (unless another
    worker already declared it lost: the study has run it again then)."""
    import optuna
    from optuna.trial import TrialState

    name = study.study_name
    try:
        value = objective()
    except optuna.TrialPruned:
        study.tell(trial, state=TrialState.PRUNED, skip_if_finished=True)
        log.info("study '%s': trial %d pruned", name, trial.number)
        return
    except BaseException:
        study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
        raise
    if math.isfinite(value):
        study.tell(trial, value, skip_if_finished=True)
        log.info("study '%s': trial %d done, mean inner score %.4f", name, trial.number, value)
    else:
        trial.set_user_attr("failed", "no finite inner score")
        study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
        log.info("study '%s': trial %d failed: no finite inner score", name, trial.number)


def _objective(
    trial: Any,
    plan: SearchPlan,
    train: MultimodalDataset,
    inner: Sequence[Split],
    base: FitSettings,
) -> float:
    """A sampled configuration's mean inner score; the running mean goes to the pruner after
    each inner fold."""
    import optuna

    from polyfuse.training.fit import fit_model

    params = suggest(trial, plan.space)
    trial.set_user_attr("params", params)
    settings = configure(plan.model, base, params)
    scores: list[float] = []
    for j, split in enumerate(inner):
        fit, val = train.subset(split.train), train.subset(split.test)
        fitted = fit_model(plan.model, fit, settings.replace(seed=base.seed + j))
        scores.append(inner_score(fitted, val, fit, plan.target))
        if not math.isfinite(scores[-1]):
            _warn_unscored_fold(trial, plan.target)
        trial.set_user_attr("inner", scores)
        running = _nanmean(scores)
        if math.isfinite(running):
            trial.report(running, j)
            # after the last inner fold there is nothing left to save: the trial completes
            if j < len(inner) - 1 and trial.should_prune():
                raise optuna.TrialPruned()
    return _nanmean(scores)


def _warn_unscored_fold(trial: Any, target: Target) -> None:
    """Once per study (the message names no trial): a trial's value leaves out inner folds
    without a finite score (too few events or one class in the fold, say)."""
    warnings.warn(
        f"study '{trial.study.study_name}': an inner fold gave no finite {target.metric}; a "
        "trial's value is the mean over the inner folds that did (trials.csv lists each)",
        FallbackWarning,
        stacklevel=3,
    )


def _nanmean(values: Sequence[float]) -> float:
    finite = [v for v in values if math.isfinite(v)]
    return float(np.mean(finite)) if finite else math.nan


def _choose(plan: SearchPlan, base: FitSettings, study: Any) -> Chosen:
    """The best completed trial's configuration, or (with a warning) the base configuration
    when no trial completed with a finite score."""
    best = best_trial(study, plan.target)
    if best is None:
        warnings.warn(
            f"study '{study.study_name}' has no completed trial with a finite "
            f"{plan.target.metric}; the untuned configuration is used",
            FallbackWarning,
            stacklevel=3,
        )
    params = dict(best.user_attrs["params"]) if best is not None else {}
    return Chosen(
        params,
        configure(plan.model, base, params),
        best.value if best is not None else math.nan,
        best.number if best is not None else None,
        finished_trials(study),
    )


__all__ = [
    "Chosen",
    "SearchPlan",
    "check_space",
    "configure",
    "inner_score",
    "search_split",
]
