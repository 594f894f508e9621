"""optuna's side of a search: studies in a SQLite file, the trials that count as finished, the
re-seeded sampler, the best trial, and the tables read back from a study.

Reproducibility and resume rest here: before each trial the sampler is re-seeded from (seed,
study, number of finished trials), so the same seed gives the same trials, and a resumed study
proposes exactly what the uninterrupted one would have. Finished trials (complete, pruned, or
failed with a non-finite score) are counted; a trial cut off by an interruption is not.
"""

from __future__ import annotations

import json
import logging
import math
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from polyfuse.errors import FallbackWarning, require
from polyfuse.tuning.target import Target

STUDY_FILE = "study.db"
PRUNER_STARTUP = 5  # trials completed before the median pruner may stop one


def sqlite_storage(path: Path) -> Any:
    """An optuna storage in the SQLite file `path`.

    Write-ahead logging with normal syncing: every commit survives a crash or a kill of the
    process (a power cut may lose the last ones), and costs ~0.02 ms instead of ~15 ms with
    SQLite's default full sync, which matters for many short trials.
    """
    import sqlite3

    optuna = require("optuna", "tune")
    path = Path(path).resolve()
    _no_last_resort("sqlalchemy")

    def connect() -> sqlite3.Connection:
        con = sqlite3.connect(str(path), timeout=60, check_same_thread=False)
        con.execute("PRAGMA journal_mode=WAL")
        con.execute("PRAGMA synchronous=NORMAL")
        return con

    return optuna.storages.RDBStorage(f"sqlite:///{path}", engine_kwargs={"creator": connect})


def close_storage(storage: Any) -> None:
    """Close a SQLite storage's connections (the write-ahead log is folded into the file)."""
    engine = getattr(storage, "engine", None)
    if engine is not None:
        engine.dispose()


def _no_last_resort(name: str) -> None:
    """Give logger `name` a NullHandler, so that Python's last-resort handler does not print
    its records to stderr when the user configured no logging. An interrupt (Ctrl+C, SIGTERM)
    that lands inside a database fetch makes SQLAlchemy log an "Error closing cursor"
    traceback, which would otherwise appear above polyfuse's one-line message on what was
    kept. The records still propagate to any handler the user configures (`polyfuse -v`)."""
    logger = logging.getLogger(name)
    if not any(isinstance(h, logging.NullHandler) for h in logger.handlers):
        logger.addHandler(logging.NullHandler())


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


def finished_trials(study: Any) -> int:
    """Trials that need not run again: complete, pruned, or failed on their own merit (a
    non-finite score). A trial cut off by an interruption is not counted."""
    from optuna.trial import TrialState

    finished = (TrialState.COMPLETE, TrialState.PRUNED)
    return sum(
        t.state in finished or (t.state == TrialState.FAIL and "failed" in t.user_attrs)
        for t in study.get_trials(deepcopy=False)
    )


def seeded_sampler(seed: int, key: int, done: int, trials: int) -> Any:
    """A TPE sampler seeded from (seed, study, finished trials): resumable and reproducible."""
    import optuna

    state = np.random.SeedSequence([seed, key, done]).generate_state(1)[0]
    startup = max(3, min(10, trials // 3))  # random trials before TPE models the history
    return optuna.samplers.TPESampler(
        seed=int(state), n_startup_trials=startup, constant_liar=False
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
    "STUDY_FILE",
    "best_trial",
    "close_storage",
    "finished_trials",
    "importances",
    "open_study",
    "quiet_optuna",
    "seeded_sampler",
    "sqlite_storage",
    "trials_frame",
]
