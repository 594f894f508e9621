"""Cross-validation splits: repeated, stratified (survival on the event), reproducible by seed."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from polyfuse.data.dataset import MultimodalDataset
from polyfuse.errors import DataError


@dataclass(frozen=True)
class Split:
    """One fold of one repeat: row indices into the dataset."""

    repeat: int
    fold: int
    train: np.ndarray
    test: np.ndarray


def strata(dataset: MultimodalDataset, task: str | None = None) -> np.ndarray | None:
    """Labels to stratify on: the class for classification, the event for survival.

    Unknown targets join the most common stratum (a stratum of one or two samples could not be
    spread over the folds). Multilabel and regression tasks are not stratified. A dataset of
    several cohorts is stratified on the cohort too, each cohort on its own first task.
    """
    if not dataset.tasks:
        return None
    if dataset.cohort is not None and len(set(dataset.cohort.tolist())) > 1:
        return _cohort_strata(dataset, task)
    task = task or next(iter(dataset.tasks))
    spec, y = dataset.tasks[task], dataset.targets[task]
    if spec.type == "survival":
        y = y[:, 1]
    elif spec.type not in ("binary", "multiclass"):
        return None
    known = y[~np.isnan(y)].astype(np.int64)
    common = np.bincount(known).argmax() if len(known) else 0
    return np.where(np.isnan(y), common, y).astype(np.int64)


def _cohort_strata(dataset: MultimodalDataset, task: str | None) -> np.ndarray:
    """Cohort × (the stratum of the cohort's own task) as one integer label per sample."""
    assert dataset.cohort is not None
    out = np.zeros(len(dataset), dtype=np.int64)
    for k, c in enumerate(dict.fromkeys(dataset.cohort.tolist())):
        rows = np.flatnonzero(dataset.cohort == c)
        part = dataset.subset(rows).replace(cohort=None)
        known = [t for t in part.tasks if not np.isnan(part.targets[t]).all()]
        own = task if task in known else (known[0] if known else None)
        labels = strata(part, own) if own else None
        out[rows] = k * 1_000_000 + (0 if labels is None else labels)
    return out


def kfold(
    dataset: MultimodalDataset,
    folds: int = 5,
    repeats: int = 1,
    seed: int = 0,
    stratify: str | None = None,
) -> list[Split]:
    """Repeated (stratified) k-fold splits; each repeat is a different shuffle of the same seed."""
    from sklearn.model_selection import KFold, StratifiedKFold

    n = len(dataset)
    if n < folds:
        raise DataError(f"{dataset.name or 'dataset'} has {n} samples, fewer than {folds} folds")
    labels = strata(dataset, stratify)
    if labels is not None:
        _check_strata(dataset, labels, folds, stratify)
    out = []
    for r in range(repeats):
        rs = seed * 1000 + r
        if labels is None:
            splitter = KFold(folds, shuffle=True, random_state=rs).split(np.zeros(n))
        else:
            splitter = StratifiedKFold(folds, shuffle=True, random_state=rs).split(
                np.zeros(n), labels
            )
        for f, (train, test) in enumerate(splitter):
            out.append(Split(r, f, train, test))
    return out


def _check_strata(
    dataset: MultimodalDataset, labels: np.ndarray, folds: int, task: str | None
) -> None:
    if dataset.cohort is not None and len(set(dataset.cohort.tolist())) > 1:
        values, counts = np.unique(labels, return_counts=True)
        if counts.min() < folds:
            cohort = dataset.cohort[np.flatnonzero(labels == values[counts.argmin()])[0]]
            raise DataError(
                f"cohort '{cohort}': a class (or the events) of its task has {counts.min()} "
                f"samples, fewer than {folds} folds"
            )
        return
    task = task or next(iter(dataset.tasks))
    if dataset.tasks[task].type == "survival":
        events = int((labels == 1).sum())
        if events < folds:
            raise DataError(
                f"task '{task}' has {events} events, fewer than {folds} folds: use fewer folds"
            )
    values, counts = np.unique(labels, return_counts=True)
    if len(values) and counts.min() < folds:
        spec = dataset.tasks[task]
        rare = values[counts.argmin()]
        label = spec.classes[int(rare)] if spec.classes else int(rare)
        raise DataError(
            f"task '{task}': class '{label}' has {counts.min()} samples, fewer than {folds} "
            "folds: use fewer folds"
        )


def holdout(
    indices: np.ndarray, labels: np.ndarray | None, fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Carve a validation part out of training indices (stratified when it can be)."""
    if fraction <= 0:
        return indices, indices[:0]
    from sklearn.model_selection import train_test_split

    strat = None if labels is None else labels[indices]
    if strat is not None and np.unique(strat, return_counts=True)[1].min() < 2:
        strat = None
    n_val = max(1, round(fraction * len(indices)))
    if strat is not None and n_val < len(np.unique(strat)):
        strat = None
    train, val = train_test_split(indices, test_size=n_val, random_state=seed, stratify=strat)
    return np.sort(train), np.sort(val)
