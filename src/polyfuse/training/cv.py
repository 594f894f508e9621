"""Repeated k-fold cross-validation: per-fold metrics, out-of-fold predictions, mean ± sd."""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from polyfuse.config import PreprocessConfig, TrainingConfig
from polyfuse.data.dataset import MultimodalDataset
from polyfuse.data.splits import Split, kfold
from polyfuse.io import atomic_write
from polyfuse.progress import Progress
from polyfuse.training.fit import fit_model
from polyfuse.training.settings import FitSettings
from polyfuse.training.weight_history import weight_frame, write_task_weights

log = logging.getLogger(__name__)


@dataclass
class CVResult:
    """Per-fold metrics (`folds`: repeat, fold, task, metric, value) and test-fold predictions."""

    model: str
    folds: pd.DataFrame
    predictions: pd.DataFrame
    seconds: float
    hparams: dict[str, Any] = field(default_factory=dict)
    weights: pd.DataFrame = field(default_factory=pd.DataFrame)
    """Loss-balancing weights per fit and epoch: repeat, fold, epoch, term, weight."""
    members: pd.DataFrame = field(default_factory=pd.DataFrame)
    """A stacked ensemble's member weights per fold: repeat, fold, task, member, weight."""

    def summary(self) -> pd.DataFrame:
        """Mean, standard deviation and count of each metric over all folds and repeats."""
        g = self.folds.groupby(["task", "metric"], sort=False)["value"]
        out = pd.DataFrame({"mean": g.mean(), "sd": g.std(ddof=1), "n": g.count()})
        out["text"] = [f"{m:.3f} ± {s:.3f}" for m, s in zip(out["mean"], out["sd"], strict=True)]
        return out

    def save(self, directory: Path) -> None:
        """folds.csv, summary.csv, predictions.csv, the balancing weights (balancing.csv,
        balancing.png with several tasks) and a stack's member weights (stack_weights.csv),
        each written atomically."""
        for name, frame in (
            ("folds.csv", self.folds),
            ("summary.csv", self.summary()),
            ("predictions.csv", self.predictions),
        ):
            atomic_write(directory / name, lambda p, f=frame: f.to_csv(p))
        write_task_weights(self.weights, directory)
        if not self.members.empty:
            path = directory / "stack_weights.csv"
            atomic_write(path, lambda p: self.members.to_csv(p, index=False))


def cross_validate(
    model: str,
    data: MultimodalDataset,
    *,
    folds: int = 5,
    repeats: int = 1,
    seed: int = 0,
    training: TrainingConfig | None = None,
    preprocess: PreprocessConfig | None = None,
    task_weights: dict[str, float] | None = None,
    stratify: str | None = None,
    splits: list[Split] | None = None,
    progress: bool = True,
    parts: Path | None = None,
    **hparams: Any,
) -> CVResult:
    """Cross-validate a registered model on identical, seeded splits.

    Each training fold is preprocessed and split into train/validation on its own; the test
    fold is touched only for the final metrics. Pass `splits` to reuse exactly the same folds
    across models (paired comparisons). With `parts`, each finished fold's metrics,
    predictions and weights are written there (Parquet, atomically) and folds already there
    are read back instead of trained again: an interrupted CV resumes where it stopped, with
    the same results (each fold's seed depends on its position only). The keywords are the
    documented API; code holding a `FitSettings` calls `cross_validate_splits`.

    Example:
        >>> import polyfuse as pf  # doctest: +SKIP
        >>> data = pf.datasets.load("tcga-acc")  # doctest: +SKIP
        >>> pf.cross_validate("early", data, folds=5, repeats=3).summary()  # doctest: +SKIP
    """
    splits = splits if splits is not None else kfold(data, folds, repeats, seed, stratify)
    settings = FitSettings.of(hparams, training, preprocess, task_weights, seed)
    return cross_validate_splits(model, data, splits, settings, progress=progress, parts=parts)


@dataclass
class FoldResult:
    """One fold's results: metrics (repeat, fold, task, metric, value), test-fold predictions,
    balancing weights, and a stacked ensemble's member weights."""

    metrics: pd.DataFrame
    predictions: pd.DataFrame
    weights: pd.DataFrame
    members: pd.DataFrame = field(default_factory=pd.DataFrame)


FoldFitter = Callable[[MultimodalDataset, Split, FitSettings], FoldResult]
"""Fits one split and scores its test part: a registered network by default, the stacked
ensemble of `training/stack.py`) when given."""


def cross_validate_splits(
    model: str,
    data: MultimodalDataset,
    splits: list[Split],
    settings: FitSettings,
    *,
    progress: bool = True,
    parts: Path | None = None,
    fit_fold: FoldFitter | None = None,
) -> CVResult:
    """`cross_validate` on given splits; split `i` is fitted with seed `settings.seed + i`, by
    `fit_fold` when given (named `model` in the results), else by training the registered
    network `model`."""
    settings = settings.quiet()
    fit_fold = fit_fold or functools.partial(_fit_fold, model)
    folds: list[FoldResult] = []
    start = time.perf_counter()
    with Progress(progress) as bar:
        bar.add(f"cv {model}", len(splits))
        for i, split in enumerate(splits):
            fold = _read_part(parts, split)
            if fold is None:
                fold = fit_fold(data, split, settings.replace(seed=settings.seed + i))
                if parts is not None:
                    _write_part(parts, split, fold)
            else:
                log.info(
                    "cv %s: fold %d of repeat %d read back from %s",
                    model,
                    split.fold,
                    split.repeat,
                    parts,
                )
            folds.append(fold)
            bar.advance()
    return CVResult(
        model,
        _concat([f.metrics for f in folds]),
        _concat([f.predictions for f in folds]),
        time.perf_counter() - start,
        dict(settings.hparams),
        _concat([f.weights for f in folds]),
        _concat([f.members for f in folds]),
    )


def _fit_fold(
    model: str, data: MultimodalDataset, split: Split, settings: FitSettings
) -> FoldResult:
    """Train on the split's training part; score and predict its test part."""
    train, test = data.subset(split.train), data.subset(split.test)
    fitted = fit_model(model, train, settings)
    scores = fitted.predict(test)
    rows, preds = [], []
    for task, metrics in fitted.metrics(scores, test.targets, train.targets).items():
        rows += [
            dict(repeat=split.repeat, fold=split.fold, task=task, metric=k, value=v)
            for k, v in metrics.items()
        ]
        preds.append(prediction_frame(test, split, task, scores[task]))
    log.info("cv %s: fold %d of repeat %d done", model, split.fold, split.repeat)
    return FoldResult(
        pd.DataFrame(rows),
        _concat(preds),
        weight_frame(fitted.weight_history, repeat=split.repeat, fold=split.fold),
    )


def _concat(frames: list[pd.DataFrame]) -> pd.DataFrame:
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


PART_FILES = ("metrics", "predictions", "weights", "members")


def _part_paths(parts: Path, split: Split) -> list[Path]:
    stem = f"repeat{split.repeat}_fold{split.fold}"
    return [parts / f"{stem}_{kind}.parquet" for kind in PART_FILES]


def _write_part(parts: Path, split: Split, fold: FoldResult) -> None:
    """One fold's results; the metrics file is written last, so it marks the fold as done."""
    frames = [fold.metrics, fold.predictions, fold.weights, fold.members]
    paths = _part_paths(parts, split)
    for path, frame in list(zip(paths, frames, strict=True))[::-1]:
        atomic_write(path, lambda p, f=frame: f.to_parquet(p, index=False))
    log.debug("cv fold %d of repeat %d written to %s", split.fold, split.repeat, parts)


def _read_part(parts: Path | None, split: Split) -> FoldResult | None:
    if parts is None:
        return None
    paths = _part_paths(parts, split)
    if not all(p.is_file() for p in paths):
        return None
    return FoldResult(*(pd.read_parquet(p) for p in paths))


def prediction_frame(
    test: MultimodalDataset, split: Split, task: str, scores: dict[str, np.ndarray]
) -> pd.DataFrame:
    """One task's test-fold scores in long form: id, repeat, fold, task, `<score>` columns
    (matrices as `<score>_<j>`)."""
    keys = {"id": test.ids, "repeat": split.repeat, "fold": split.fold, "task": task}
    cols: dict[str, np.ndarray] = {}
    for name, value in scores.items():
        if value.ndim == 1:
            cols[name] = value
        else:
            cols |= {f"{name}_{j}": value[:, j] for j in range(value.shape[1])}
    return pd.DataFrame(keys | cols)
