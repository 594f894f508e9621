"""Classical floors on polyfuse datasets, run on exactly the splits the fusion models get.

The floors themselves (what each fits, `training/floors.py`) are scored here on CV splits:
every task of a dataset gets its type's floors (`default_floors`): one linear floor per
modality and on all of them, and the non-linear one on all; multilabel tasks have none.
Samples whose target is unknown are dropped before anything is fitted and are not scored.
Metrics are `TaskObjective.metrics`, so the names and computations are those of every fusion
model (survival: ``c_index``, ``uno_c_index``, ``td_auc``; no ``ibs``, since these floors
produce risks, not survival curves).

A floor that cannot be fitted on a fold is not scored there: its row for that fold holds the
primary metric as NaN with `status` ``failed: <reason>``, and a `FallbackWarning` names the
floor, its modalities, the fold and the reason. Scored rows have `status` ``ok``, except a fold
where a floor was fitted but gives every test patient the same score (its inner CV shrank
every coefficient to 0): scored, with `status` ``null model: ...``, which the leaderboard shows
as "(null model)".
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from polyfuse.data.dataset import MultimodalDataset
from polyfuse.data.pooled import numeric_modalities
from polyfuse.data.splits import Split
from polyfuse.errors import ConfigError, DataError, FallbackWarning, did_you_mean
from polyfuse.training.floors import (
    ClassicalFloor,
    FloorFailed,
    FoldData,
    make_fold,
    resolve_floor,
    score_objective,
)

COLUMNS = ["model", "repeat", "fold", "task", "metric", "value", "status"]
NULL_MODEL = "null model: the same score for every test patient (every coefficient shrunk to 0)"
"""The status of a fold where a floor was fitted but ranks nobody: scored (a c-index of 0.5 is
its true worth), and marked so that the leaderboard does not pass it off as a fitted model."""


def default_floors(data: MultimodalDataset, task: str | None = None) -> list[str]:
    """The default floor names for a task's type (the first task by default): the linear floor
    per modality (with more than one) and on all, and the non-linear one on all."""
    spec = data.tasks[_task(data, task)]
    linear = {
        "survival": "coxnet",
        "binary": "logreg",
        "multiclass": "logreg",
        "regression": "ridge",
    }
    if spec.type not in linear:
        raise ConfigError(
            f"task '{spec.name}' is {spec.type}: classical floors cover survival, binary, "
            "multiclass and regression tasks"
        )
    modalities = numeric_modalities(data)
    per = [f"{linear[spec.type]}[{m}]" for m in modalities] if len(modalities) > 1 else []
    if spec.type == "survival":
        return [*per, "coxnet[all]", "rsf[all]", "late-cox"]
    return [*per, f"{linear[spec.type]}[all]", "hgb[all]"]


FLOORED = ("survival", "binary", "multiclass", "regression")


def floored_tasks(data: MultimodalDataset) -> list[str]:
    """The tasks that get classical floors: those of a type with floors, when the data have a
    numeric modality for them to read (else none, with a warning)."""
    tasks = [t for t, spec in data.tasks.items() if spec.type in FLOORED]
    if tasks and not numeric_modalities(data):
        warnings.warn(
            f"{data.name or 'dataset'} has no numeric modality (tabular, bag, sequence): no "
            "classical floors, and no comparison against them",
            FallbackWarning,
            stacklevel=2,
        )
        return []
    return tasks


def _task(data: MultimodalDataset, task: str | None) -> str:
    if not data.tasks:
        raise DataError(f"{data.name or 'dataset'} has no task")
    task = task or next(iter(data.tasks))
    if task not in data.tasks:
        raise ConfigError(f"unknown task '{task}'{did_you_mean(task, data.tasks)}")
    return task


def run_floors(
    names: Sequence[str],
    data: MultimodalDataset,
    splits: Sequence[Split],
    *,
    task: str | None = None,
    seed: int = 0,
) -> pd.DataFrame:
    """Several floors on the same splits, sharing per-fold work (per-modality Cox fits).

    Returns long rows `model, repeat, fold, task, metric, value, status`, floor by floor in
    the order given, then split by split. The same splits and seed give the same numbers. A
    floor that cannot be fitted on a fold gives one row there: the primary metric, NaN, and
    `status` "failed: <reason>" (with a `FallbackWarning`).
    """

    task = _task(data, task)
    spec = data.tasks[task]
    resolved = [resolve_floor(n, data) for n in names]
    for floor, _, display in resolved:
        if spec.type not in floor.task_types:
            raise ConfigError(
                f"classical floor '{display}' serves {list(floor.task_types)} tasks; "
                f"task '{task}' is {spec.type}"
            )
    objective = score_objective(spec)
    rows: dict[str, list[dict[str, Any]]] = {display: [] for _, _, display in resolved}
    for split in splits:
        fold = make_fold(data, split, task, seed)
        for floor, modalities, display in resolved:
            keys = dict(model=display, repeat=split.repeat, fold=split.fold, task=task)
            scored = _score(floor, modalities, display, fold, objective)
            rows[display] += [keys | r for r in scored]
    flat = [r for display in rows for r in rows[display]]
    return pd.DataFrame(flat, columns=COLUMNS)


def _score(
    floor: ClassicalFloor,
    modalities: tuple[str, ...],
    display: str,
    fold: FoldData,
    objective: Any,
) -> list[dict[str, Any]]:
    """A floor's metrics on one fold (metric, value, status); a floor that cannot be fitted
    there gives its primary metric as NaN, marked failed, and a warning."""
    from polyfuse.tasks.metric_facts import PRIMARY

    try:
        scores = np.asarray(floor(fold, modalities), dtype=np.float64)
    except FloorFailed as exc:
        warnings.warn(
            f"classical floor '{display}' (modalities {', '.join(modalities)}) could not be "
            f"fitted on {fold.label}: {exc}; it is marked failed there, not scored",
            FallbackWarning,
            stacklevel=2,
        )
        return [dict(metric=PRIMARY[objective.spec.type], value=np.nan, status=f"failed: {exc}")]
    key = {"survival": "risk", "regression": "pred"}.get(objective.spec.type, "prob")
    targets = fold.raw_test.targets[fold.task], fold.raw_train.targets[fold.task]
    metrics = objective.metrics({key: scores}, *targets)
    constant = len(scores) > 1 and np.ptp(scores.reshape(len(scores), -1), axis=0).max() == 0
    status = NULL_MODEL if constant else "ok"
    return [dict(metric=k, value=float(v), status=status) for k, v in metrics.items()]


def run_classical(
    name: str,
    data: MultimodalDataset,
    splits: Sequence[Split],
    *,
    task: str | None = None,
    seed: int = 0,
) -> pd.DataFrame:
    """One floor, e.g. `"coxnet[clinical]"`, `"rsf"` (= `rsf[all]`) or `"late-cox"`.

    Returns the long rows of `run_floors`, with `model` the display name.
    """
    return run_floors([name], data, splits, task=task, seed=seed)


def classical_floors(
    data: MultimodalDataset,
    splits: Sequence[Split],
    *,
    task: str | None = None,
    seed: int = 0,
) -> pd.DataFrame:
    """The default floors for the task's type (first task by default), on the given splits.

    Survival: Coxnet per tabular modality and on all of them, RSF on all, late Cox fusion.
    Binary/multiclass: logistic regression and gradient boosting on all modalities.
    """
    return run_floors(default_floors(data, task), data, splits, task=task, seed=seed)
