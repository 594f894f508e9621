"""`polyfuse benchmark`: every model and the classical floors on identical splits.

For each dataset: one set of repeated stratified folds; every fusion model is trained on each
training fold and evaluated on its test fold under every robustness condition; the classical
floors run on the same folds; each model is compared with the best floor (paired over folds);
efficiency is profiled once per model. Each finished fold is written to `parts/` at once, so an
interrupted benchmark resumed with `resume=True` skips the folds it already has.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from polyfuse.config import PreprocessConfig, TrainingConfig
from polyfuse.data.dataset import MultimodalDataset
from polyfuse.data.splits import Split, kfold
from polyfuse.evaluation.robustness import conditions
from polyfuse.io import atomic_write, prepare_run_dir
from polyfuse.progress import Progress


@dataclass(frozen=True)
class Entry:
    """One model of the benchmark: display name, registered name, hyper-parameters."""

    name: str
    model: str
    hparams: dict[str, Any] = field(default_factory=dict)


def default_entries(data: MultimodalDataset, models: Sequence[str] | None = None) -> list[Entry]:
    """Every registered model (or `models`); `unimodal` once per modality."""
    from polyfuse.models.registry import list_models, model_class

    names = list(models) if models else list_models()
    entries = []
    for name in names:
        model_class(name)  # unknown names fail here, with a did-you-mean
        if name == "unimodal":
            entries += [Entry(f"unimodal[{m}]", name, {"modality": m}) for m in data.specs]
        else:
            entries.append(Entry(name, name))
    return entries


@dataclass
class BenchmarkResult:
    """The benchmark's tables (see `evaluation/report.py` for their columns) and output folder."""

    out: Path
    results: pd.DataFrame
    efficiency: pd.DataFrame
    comparisons: pd.DataFrame
    predictions: pd.DataFrame
    contributions: pd.DataFrame
    seconds: float

    def leaderboard(self) -> pd.DataFrame:
        from polyfuse.evaluation.report import leaderboard

        return leaderboard(self.results, self.efficiency, self.comparisons)


def _part(out: Path, dataset: str, entry: str, split: Split, table: str) -> Path:
    safe = entry.replace("/", "_")
    return out / "parts" / dataset / safe / f"r{split.repeat}f{split.fold}.{table}.csv"


def _run_fold(
    entry: Entry,
    data: MultimodalDataset,
    split: Split,
    *,
    training: TrainingConfig,
    preprocess: PreprocessConfig,
    seed: int,
) -> dict[str, pd.DataFrame]:
    """Train on one fold; metrics under every condition, predictions, contributions, time."""
    from polyfuse.explain.attribution import modality_contributions
    from polyfuse.training.fit import train_model

    train, test = data.subset(split.train), data.subset(split.test)
    start = time.perf_counter()
    fitted = train_model(
        entry.model,
        train,
        hparams=entry.hparams,
        training=training,
        preprocess=preprocess,
        seed=seed,
    )
    seconds = time.perf_counter() - start
    keys = dict(model=entry.name, repeat=split.repeat, fold=split.fold)
    rows = []
    for condition, view in conditions(test, seed=seed):
        for task, metrics in fitted.evaluate(view, train.targets).items():
            rows += [
                dict(keys, family="fusion", condition=condition, task=task, metric=k, value=v)
                for k, v in metrics.items()
            ]
    preds = _predictions(fitted.predict(test), test, keys)
    contrib = (
        modality_contributions(fitted, test)
        .reset_index()
        .melt(id_vars="modality", var_name="task", value_name="value")
    )
    contrib = contrib.assign(**keys)
    timing = pd.DataFrame([dict(keys, train_seconds=seconds)])
    return {
        "results": pd.DataFrame(rows),
        "predictions": preds,
        "contributions": contrib,
        "timing": timing,
    }


def _predictions(
    scores: dict[str, dict[str, np.ndarray]], test: MultimodalDataset, keys: dict[str, Any]
) -> pd.DataFrame:
    """One row per test sample and task: the main score and the observed target."""
    frames = []
    for task, d in scores.items():
        spec, y = test.tasks[task], test.targets[task]
        cols: dict[str, Any] = dict(keys, id=test.ids, task=task)
        if spec.type == "survival":
            cols |= dict(score=d["risk"], time=y[:, 0], event=y[:, 1])
        elif spec.type == "binary":
            cols |= dict(score=d["prob"], label=y)
        elif spec.type == "regression":
            cols |= dict(score=d["pred"], label=y)
        else:  # multiclass / multilabel: the probability of the first class is not a score
            continue
        frames.append(pd.DataFrame(cols))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


FOLD_TABLES = ("results", "predictions", "contributions", "timing")


def _fold_job(job: tuple) -> tuple[Entry, Split]:
    """Run one fold and write its tables to parts/ (results last: the completion marker)."""
    entry, data, split, training, preprocess, seed, out, name = job
    parts = _run_fold(entry, data, split, training=training, preprocess=preprocess, seed=seed)
    for table in FOLD_TABLES[::-1]:
        _write(_part(out, name, entry.name, split, table), parts[table])
    return entry, split


def _single_thread() -> None:
    import torch

    torch.set_num_threads(1)


def _map(fn, jobs: list, workers: int):
    """`fn` over `jobs`, yielding results as they finish; in worker processes when asked."""
    if workers <= 1 or len(jobs) <= 1:
        yield from map(fn, jobs)
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    # spawn, not fork: a forked child of a process that already ran torch can deadlock
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_single_thread) as pool:
        futures = [pool.submit(fn, job) for job in jobs]
        for future in as_completed(futures):
            yield future.result()


def _write(path: Path, frame: pd.DataFrame) -> None:
    atomic_write(path, lambda p: frame.to_csv(p, index=False))


def benchmark(
    datasets: Sequence[str | MultimodalDataset] = ("tcga-acc",),
    *,
    models: Sequence[str] | None = None,
    folds: int = 5,
    repeats: int = 3,
    seed: int = 0,
    out: str | Path = "runs/benchmark",
    training: TrainingConfig | None = None,
    preprocess: PreprocessConfig | None = None,
    hparams: dict[str, dict[str, Any]] | None = None,
    classical: bool = True,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    workers: int = 1,
) -> BenchmarkResult:
    """Benchmark models on datasets (names of bundled cohorts or loaded datasets).

    Every fusion model and classical floor sees the same folds of a dataset. `hparams` maps a
    model name (or display name such as "unimodal[rna]") to hyper-parameters. `workers` > 1
    trains that many folds at once in separate processes of one thread each (small models gain
    nothing from a second thread, so this is the way to use several cores).
    """
    import lightning  # noqa: F401  (imported before timing, so fold 1 does not pay for it)

    from polyfuse.datasets import load
    from polyfuse.evaluation.report import write_report

    out = prepare_run_dir(Path(out), overwrite=overwrite, resume=resume)
    training = (training or TrainingConfig()).model_copy(update={"progress": False})
    preprocess = preprocess or PreprocessConfig()
    start = time.perf_counter()
    tables: dict[str, list[pd.DataFrame]] = {}
    bar = Progress(progress)
    with bar:
        for item in datasets:
            data = load(item) if isinstance(item, str) else item
            name = data.name or "dataset"
            splits = kfold(data, folds, repeats, seed)
            entries = default_entries(data, models)
            for e in entries:
                e.hparams.update((hparams or {}).get(e.model, {}))
                e.hparams.update((hparams or {}).get(e.name, {}))
            bar.add(name, len(entries) * len(splits) + (len(splits) if classical else 0))
            if classical:
                tables.setdefault("results", []).append(
                    _classical(data, splits, out, name, seed, resume, bar)
                )
            todo = [
                (e, i, split)
                for e in entries
                for i, split in enumerate(splits)
                if not (resume and _part(out, name, e.name, split, "results").is_file())
            ]
            bar.advance(len(entries) * len(splits) - len(todo))
            jobs = [
                (e, data, split, training, preprocess, seed + i, out, name) for e, i, split in todo
            ]
            for e, split in _map(_fold_job, jobs, workers):
                bar.describe(f"{name}: {e.name} (repeat {split.repeat}, fold {split.fold})")
                bar.advance()
            for e in entries:
                for split in splits:
                    for table in FOLD_TABLES:
                        frame = pd.read_csv(_part(out, name, e.name, split, table))
                        tables.setdefault(table, []).append(frame.assign(dataset=name))
            tables.setdefault("efficiency", []).append(_efficiency(data, entries, name))
    results = pd.concat(tables["results"], ignore_index=True)
    timing = pd.concat(tables["timing"], ignore_index=True)
    efficiency = _with_train_time(pd.concat(tables["efficiency"], ignore_index=True), timing)
    comparisons = _comparisons(results)
    predictions = pd.concat(tables["predictions"], ignore_index=True)
    contributions = (
        pd.concat(tables["contributions"], ignore_index=True)
        .groupby(["dataset", "model", "modality", "task"], as_index=False)["value"]
        .mean()
    )
    for table, frame in (
        ("results", results),
        ("efficiency", efficiency),
        ("comparisons", comparisons),
        ("predictions", predictions),
        ("contributions", contributions),
    ):
        _write(out / f"{table}.csv", frame)
    write_report(
        out,
        results=results,
        efficiency=efficiency,
        comparisons=comparisons,
        predictions=predictions,
        contributions=contributions,
    )
    return BenchmarkResult(
        out,
        results,
        efficiency,
        comparisons,
        predictions,
        contributions,
        time.perf_counter() - start,
    )


def _classical(
    data: MultimodalDataset,
    splits: list[Split],
    out: Path,
    name: str,
    seed: int,
    resume: bool,
    bar: Progress,
) -> pd.DataFrame:
    """The classical floors on the same folds (cached in parts/ like the fusion folds)."""
    from polyfuse.evaluation.classical import classical_floors

    path = out / "parts" / name / "classical.results.csv"
    if not (resume and path.is_file()):
        bar.describe(f"{name}: classical floors")
        frame = classical_floors(data, splits, seed=seed)
        frame = frame.assign(family="classical", condition="all")
        _write(path, frame)
    bar.advance(len(splits))
    return pd.read_csv(path).assign(dataset=name)


def _efficiency(data: MultimodalDataset, entries: list[Entry], name: str) -> pd.DataFrame:
    from polyfuse.evaluation.profile import profile_models

    frames = []
    for e in entries:
        row = profile_models([e.model], data, hparams={e.model: e.hparams})
        frames.append(row.assign(model=e.name, dataset=name))
    return pd.concat(frames, ignore_index=True)


def _with_train_time(efficiency: pd.DataFrame, timing: pd.DataFrame) -> pd.DataFrame:
    mean = timing.groupby(["dataset", "model"], as_index=False)["train_seconds"].mean()
    return efficiency.merge(mean, on=["dataset", "model"], how="left")


def _comparisons(results: pd.DataFrame) -> pd.DataFrame:
    """Each fusion model vs the best classical floor, paired over folds, primary metric."""
    from polyfuse.evaluation.report import PRIMARY, higher_is_better
    from polyfuse.evaluation.stats import paired_comparison

    rows = []
    base = results[results["condition"] == "all"]
    for (dataset, task), group in base.groupby(["dataset", "task"]):
        metric = next((m for m in PRIMARY.values() if m in set(group["metric"])), None)
        if metric is None:
            continue
        g = group[group["metric"] == metric]
        per_fold = g.pivot_table(index=["repeat", "fold"], columns="model", values="value")
        floors = g[g["family"] == "classical"]["model"].unique()
        if len(floors) == 0:
            continue
        means = per_fold[floors].mean()
        best = means.idxmax() if higher_is_better(metric) else means.idxmin()
        for model in g[g["family"] == "fusion"]["model"].unique():
            stats = paired_comparison(per_fold[model].to_numpy(), per_fold[best].to_numpy())
            rows.append(
                dict(
                    dataset=dataset,
                    model=model,
                    task=task,
                    metric=metric,
                    baseline=best,
                    **{k: stats[k] for k in ("mean_diff", "ci_low", "ci_high", "p_value")},
                )
            )
    return pd.DataFrame(rows)
