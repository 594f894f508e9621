"""The prediction targets of a table: class labels, 0/1 label columns, numbers, (time, event).

Targets are checked here, where the column and sample are still known: an impossible value
would otherwise surface as a NaN loss many minutes into a run. NaN means "unknown" (that
sample does not supervise that task).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from polyfuse.config import TaskConfig
from polyfuse.data.cells import (
    cell_label,
    class_sort_key,
    first_few,
    label_code,
    numeric_column,
    refuse_inf,
)
from polyfuse.data.specs import TaskSpec
from polyfuse.errors import ConfigError, DataError


def task_columns(task: TaskConfig) -> list[str]:
    """The columns a task's labels are read from."""
    if task.type == "survival":
        return [task.time_column, task.event_column]
    if task.type == "multilabel":
        return list(task.columns or [])
    return [task.column]


def load_targets(
    tasks: dict[str, TaskConfig], frame: pd.DataFrame, ids: list[str], where: str
) -> tuple[dict[str, TaskSpec], dict[str, np.ndarray]]:
    """Each task's spec and float32 targets (NaN = unknown), in MultimodalDataset's layout."""
    specs: dict[str, TaskSpec] = {}
    targets: dict[str, np.ndarray] = {}
    for name, task in tasks.items():
        owner = f"task '{name}'"
        if task.type in ("binary", "multiclass"):
            y, classes = _class_target(name, task, frame[task.column], ids, where)
            specs[name] = TaskSpec(name, task.type, classes)
        elif task.type == "multilabel":
            columns = [_zero_one(frame[c], c, ids, where, owner, "label") for c in task.columns]
            y = np.stack(columns, axis=1)
            specs[name] = TaskSpec(name, "multilabel", tuple(task.columns))
        elif task.type == "regression":
            y = numeric_column(frame[task.column], task.column, ids, where, owner)
            refuse_inf(y, task.column, ids, where, owner)
            specs[name] = TaskSpec(name, "regression")
        else:
            y = _survival_target(owner, task, frame, ids, where)
            specs[name] = TaskSpec(
                name,
                "survival",
                survival_head=task.survival_head,
                n_bins=task.n_bins,
                time_unit=task.time_unit,
            )
        targets[name] = y.astype(np.float32)
    return specs, targets


def _class_target(
    name: str, task: TaskConfig, series: pd.Series, ids: list[str], where: str
) -> tuple[np.ndarray, tuple[str, ...]]:
    """Labels → class indices. Config `classes` fix the order; integer codes 0..K-1 (and
    True/False) are accepted as indices into them."""
    labels = [cell_label(v) for v in series]
    seen = sorted({v for v in labels if v is not None}, key=class_sort_key)
    classes = _classes(name, task, seen, where)
    lookup = {c: k for k, c in enumerate(classes)}
    by_code = not all(v in lookup for v in seen) and all(
        label_code(v) is not None and 0 <= label_code(v) < len(classes) for v in seen
    )
    y = np.full(len(labels), np.nan)
    for i, v in enumerate(labels):
        if v is None:
            continue
        k = label_code(v) if by_code else lookup.get(v)
        if k is None:
            raise DataError(
                f"{where}: task '{name}': sample '{ids[i]}' has class '{v}' in column "
                f"'{task.column}', not one of {list(classes)}; fix the value or add it to classes"
            )
        y[i] = k
    return y, classes


def _classes(name: str, task: TaskConfig, seen: list[str], where: str) -> tuple[str, ...]:
    """The task's classes in order: the config's, 0/1 or False/True, else the labels seen."""
    if task.classes is not None:
        if task.type == "binary" and len(task.classes) != 2:
            raise ConfigError(
                f"task '{name}': a binary task needs 2 classes, got {list(task.classes)}"
            )
        return tuple(task.classes)
    for pair in (("0", "1"), ("False", "True")):
        if task.type == "binary" and set(seen) <= set(pair):
            return pair
    classes = tuple(seen)
    if task.type == "binary" and len(classes) > 2:
        raise DataError(
            f"{where}: task '{name}': column '{task.column}' has {len(classes)} classes "
            f"({first_few(classes)}); a binary task needs 2; use type multiclass"
        )
    if len(classes) < 2:
        want = 2 if task.type == "binary" else "at least 2"
        raise DataError(
            f"{where}: task '{name}': column '{task.column}' has {len(classes)} class(es) "
            f"({first_few(classes)}), needs {want}; fix the column or set classes in the config"
        )
    return classes


_RULES = {
    "label": "a label column holds 0, 1 or an empty cell",
    "event": "events must be 1 (event) or 0 (censored)",
}


def _zero_one(
    series: pd.Series,
    column: str,
    ids: list[str],
    where: str,
    owner: str,
    what: str,
) -> np.ndarray:
    """A column of 0/1 (or True/False) holding a `what` ("label" or "event"), NaN for unknown."""
    y = np.full(len(series), np.nan)
    for i, v in enumerate(series):
        label = cell_label(v)
        if label is None:
            continue
        code = label_code(label)
        if code not in (0, 1):
            raise DataError(
                f"{where}: {owner}: sample '{ids[i]}' has {what} '{label}' in column "
                f"'{column}'; {_RULES[what]}"
            )
        y[i] = code
    return y


def _survival_target(
    owner: str, task: TaskConfig, frame: pd.DataFrame, ids: list[str], where: str
) -> np.ndarray:
    """(N, 2) = (time > 0, event in {0, 1}); NaN in either makes both unknown."""
    time = numeric_column(frame[task.time_column], task.time_column, ids, where, owner)
    refuse_inf(time, task.time_column, ids, where, owner)
    bad = np.flatnonzero(time <= 0)
    if len(bad):
        raise DataError(
            f"{where}: {owner}: {len(bad)} sample(s) have time ≤ 0 in column "
            f"'{task.time_column}': {first_few([f'{ids[i]}={time[i]:g}' for i in bad])}; "
            "survival times must be > 0 (leave the cell empty if unknown)"
        )
    event = _zero_one(frame[task.event_column], task.event_column, ids, where, owner, "event")
    unknown = np.isnan(time) | np.isnan(event)
    y = np.stack([time, event], axis=1)
    y[unknown] = np.nan
    return y
