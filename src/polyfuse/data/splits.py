"""Cross-validation splits: repeated, stratified (survival on the event), reproducible by seed."""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from polyfuse.data.dataset import MultimodalDataset
from polyfuse.errors import DataError, FallbackWarning


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


def stratum_names(dataset: MultimodalDataset, task: str | None = None) -> dict[int, str]:
    """What each value of `strata(dataset, task)` means, for messages: "class 'high' of task
    'grade'", "events of task 'os'". Empty where strata combine cohorts (messages then say
    "stratum <value>")."""
    if not dataset.tasks or (dataset.cohort is not None and len(set(dataset.cohort.tolist())) > 1):
        return {}
    task = task or next(iter(dataset.tasks))
    spec = dataset.tasks[task]
    if spec.type == "survival":
        return {0: f"the censored samples of task '{task}'", 1: f"the events of task '{task}'"}
    return {i: f"class '{c}' of task '{task}'" for i, c in enumerate(spec.classes or ())}


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
    n = len(dataset)
    if n < folds:
        raise DataError(f"{dataset.name or 'dataset'} has {n} samples, fewer than {folds} folds")
    labels = strata(dataset, stratify)
    if labels is not None:
        _check_strata(dataset, labels, folds, stratify)
    return [
        Split(r, f, train, test)
        for r in range(repeats)
        for f, (train, test) in enumerate(_folds(n, labels, folds, seed * 1000 + r))
    ]


def _folds(
    n: int, labels: np.ndarray | None, folds: int, random_state: int
) -> list[tuple[np.ndarray, np.ndarray]]:
    from sklearn.model_selection import KFold, StratifiedKFold

    if labels is None:
        return list(KFold(folds, shuffle=True, random_state=random_state).split(np.zeros(n)))
    splitter = StratifiedKFold(folds, shuffle=True, random_state=random_state)
    return list(splitter.split(np.zeros(n), labels))


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
    indices: np.ndarray,
    labels: np.ndarray | None,
    fraction: float,
    seed: int,
    names: Mapping[int, str] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Carve a validation part of `fraction` out of training indices, stratified on `labels`
    (`names`: what each label means, as `stratum_names` gives, for the warnings).

    Any two samples can be split, so a tiny cohort still trains: when the fraction would hold
    out every sample, or the strata cannot be spread over both parts, the split takes the
    nearest valid one and says so with a FallbackWarning. One sample cannot be split at all.
    """
    if fraction <= 0:
        return indices, indices[:0]
    from sklearn.model_selection import train_test_split

    n = len(indices)
    if n < 2:
        raise DataError(
            f"{n} training sample(s) cannot be split into a training and a validation part "
            f"(training.val_fraction {fraction}); give more samples or set val_fraction to 0"
        )
    n_val = max(1, round(fraction * n))
    if n_val >= n:
        warnings.warn(
            f"training.val_fraction {fraction} of {n} training samples would hold out all of "
            f"them; held out {n - 1} and trained on 1",
            FallbackWarning,
            stacklevel=2,
        )
        n_val = n - 1
    strat = None if labels is None else labels[indices]
    reason = None if strat is None else _unstratifiable(strat, n_val, n - n_val, names or {})
    if reason is not None:
        warnings.warn(
            f"the validation part ({n_val} of {n} training samples) is drawn at random, not "
            f"stratified: {reason}",
            FallbackWarning,
            stacklevel=2,
        )
        strat = None
    train, val = train_test_split(indices, test_size=n_val, random_state=seed, stratify=strat)
    return np.sort(train), np.sort(val)


def cross_fit(
    indices: np.ndarray,
    labels: np.ndarray | None,
    folds: int,
    seed: int,
    names: Mapping[int, str] | None = None,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """`folds` (fit, validation) pairs of training indices whose validation parts partition
    them: a cross-fitted ensemble's members (`training.ensemble_validation: folds`). They are
    the folds `kfold` draws for repeat 0 of `seed`; where a stratum of `labels` has fewer
    samples than folds, they are drawn at random instead, with a FallbackWarning (as
    `holdout` does: the ensemble still trains)."""
    n = len(indices)
    if n < folds:
        raise DataError(
            f"{n} training sample(s) cannot be split into {folds} folds, one per member of a "
            f"cross-fitted ensemble (training.ensemble {folds}, ensemble_validation 'folds'): "
            "give more samples, fewer members, or set ensemble_validation to 'shared'"
        )
    strat = None if labels is None else labels[indices]
    if strat is not None:
        values, counts = np.unique(strat, return_counts=True)
        rare = int(counts.argmin())
        if counts[rare] < folds:
            what = (names or {}).get(int(values[rare]), f"stratum {values[rare]}")
            warnings.warn(
                f"the ensemble's {folds} folds are drawn at random, not stratified: {what} "
                f"has {counts[rare]} sample(s), fewer than {folds}",
                FallbackWarning,
                stacklevel=2,
            )
            strat = None
    return [(indices[a], indices[b]) for a, b in _folds(n, strat, folds, seed * 1000)]


def _unstratifiable(
    strata: np.ndarray, n_val: int, n_train: int, names: Mapping[int, str]
) -> str | None:
    """Why a stratified split of these sizes is impossible (each part needs one sample of
    every stratum: a class, or the event for survival), or None when it is possible."""
    values, counts = np.unique(strata, return_counts=True)
    rare = int(counts.argmin())
    if counts[rare] < 2:
        what = names.get(int(values[rare]), f"stratum {values[rare]}")
        return f"{what} has {counts[rare]} sample, too few for two parts"
    for part, size in (("validation", n_val), ("training", n_train)):
        if size < len(values):
            return f"the {part} part's {size} sample(s) cannot hold all {len(values)} strata"
    return None
