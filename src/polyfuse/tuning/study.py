"""optuna's side of a search: the trials that count as finished, the
re-seeded sampler, the best trial, and the tables read back from a study.

Reproducibility and resume rest here: before each trial the sampler is re-seeded from (seed,
study, number of finished trials), so the same seed gives the same trials, and a resumed study
proposes exactly what the uninterrupted one would have. Finished trials (complete, pruned, or
failed with a non-finite score) are counted; a trial cut off by an interruption is not.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import pandas as pd

from polyfuse.errors import FallbackWarning
from polyfuse.tuning.target import Target

PRUNER_STARTUP = 5  # trials completed before the median pruner may stop one


@contextmanager
def quiet_optuna() -> Iterator[None]:
    """optuna's per-trial INFO lines off during a search (the progress bar shows the trials)."""
    import optuna

    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        yield
    finally:
        optuna.logging.set_verbosity(verbosity)


def open_study(storage: Any, name: str, target: Target, prune: bool) -> Any:
    """Create or load the study `name` in `storage`."""
    import optuna

    pruner = (
        optuna.pruners.MedianPruner(n_startup_trials=PRUNER_STARTUP, n_warmup_steps=0)
        if prune
        else optuna.pruners.NopPruner()
    )
    return optuna.create_study(
        storage=storage,
        study_name=name,
        direction=target.direction,
        pruner=pruner,
        load_if_exists=True,
    )


def finished(trial: Any) -> bool:
    """Whether a trial need not run again: complete, pruned, or failed on its own merit (a
    non-finite score). A trial cut off by an interruption is not finished."""
    from optuna.trial import TrialState

    return trial.state in (TrialState.COMPLETE, TrialState.PRUNED) or (
        trial.state == TrialState.FAIL and "failed" in trial.user_attrs
    )


def finished_trials(study: Any) -> int:
    """How many trials of `study` are finished (see `finished`)."""
    return sum(finished(t) for t in study.get_trials(deepcopy=False))


def seeded_sampler(seed: int, key: int, done: int, trials: int, rank: int = 0) -> Any:
    """A TPE sampler seeded from (seed, study, finished trials): resumable and reproducible.

    `rank` > 0 is a trial asked while `rank` trials of other workers were running: its own
    seed, so that workers never propose the same configuration, and the constant-liar
    heuristic, so that TPE steers away from what they are evaluating."""
    import optuna

    entropy = [seed, key, done] + ([rank] if rank else [])
    state = np.random.SeedSequence(entropy).generate_state(1)[0]
    startup = max(3, min(10, trials // 3))  # random trials before TPE models the history
    return optuna.samplers.TPESampler(
        seed=int(state), n_startup_trials=startup, constant_liar=rank > 0
    )


def best_trial(study: Any, target: Target) -> Any | None:
    """The complete trial with the best finite value; None before there is one."""
    from optuna.trial import TrialState

    best = None
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        if t.value is None or not math.isfinite(t.value):
            continue
        if best is None or target.better(t.value, best.value):
            best = t
    return best


def trials_frame(optuna_study: Any, **keys: Any) -> pd.DataFrame:
    """One row per trial: state, mean inner value, inner-fold scores, duration, parameters."""
    rows = []
    for t in optuna_study.get_trials(deepcopy=False):
        if "surplus" in t.user_attrs:  # asked past the budget by a worker, never run
            continue
        duration = t.duration.total_seconds() if t.duration is not None else math.nan
        row = dict(
            keys,
            trial=t.number,
            state=t.state.name.lower(),
            value=t.value if t.value is not None else math.nan,
            inner=json.dumps(t.user_attrs.get("inner", [])),
            seconds=duration,
        )
        row |= {
            f"param.{k}": json.dumps(v) if isinstance(v, list) else v
            for k, v in t.user_attrs.get("params", {}).items()
        }
        rows.append(row)
    return pd.DataFrame(rows)


def importances(study: Any, seed: int) -> dict[str, float]:
    """fANOVA importance of each searched parameter; empty, with a warning saying why, when
    the study cannot give them (fewer than 2 complete trials, or nothing varied)."""
    import optuna

    evaluator = optuna.importance.FanovaImportanceEvaluator(seed=seed)
    try:
        return dict(optuna.importance.get_param_importances(study, evaluator=evaluator))
    except (ValueError, RuntimeError) as exc:
        warnings.warn(
            f"study '{study.study_name}' has no parameter importances ({exc}); they are left "
            "out of importances.csv",
            FallbackWarning,
            stacklevel=2,
        )
        return {}


__all__ = [
    "best_trial",
    "finished",
    "finished_trials",
    "importances",
    "open_study",
    "quiet_optuna",
    "seeded_sampler",
    "trials_frame",
]
