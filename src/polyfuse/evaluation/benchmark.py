"""`polyfuse benchmark`: every model and the classical floors on identical splits.

For each dataset: one set of repeated stratified folds; every fusion model is trained on each
training fold and evaluated on its test fold under every robustness condition; the classical
floors run on the same folds; each model is compared with the best floor (paired over folds);
efficiency is profiled once per model. Each finished fold is written to `parts/` at once, so an
interrupted benchmark resumed with `resume=True` skips the folds it already has. The folds run
here, in local worker processes or on a Dask cluster (`executors.py`); wherever they run, they
return their tables and this process writes them.

With `tune` (`--tune-trials N`), every fusion model is tuned inside each outer fold before it
is trained there: the same number of optuna trials for every model, each trial scored by inner
cross-validation on that fold's training part only (`tuning/search.py: search_split`), then the
chosen configuration is refitted on the training part and scored on the test fold. The classical
floors tune their own penalty by inner CV already, so the comparison is between tuned models on
both sides. A time budget is not used: equal time would favour the models that train fastest.
"""

from __future__ import annotations

import json
import logging
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from polyfuse.config import STACK, PreprocessConfig, TrainingConfig, TuneConfig
from polyfuse.data.dataset import MultimodalDataset
from polyfuse.data.splits import Split, kfold
from polyfuse.errors import require
from polyfuse.evaluation.robustness import conditions
from polyfuse.io import (
    atomic_write,
    check_run_dir,
    prepare_run_dir,
    undo_on_failure,
    write_text,
)
from polyfuse.progress import Progress
from polyfuse.training.settings import FitSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Entry:
    """One model of the benchmark: display name, registered name, hyper-parameters."""

    name: str
    model: str
    hparams: dict[str, Any] = field(default_factory=dict)


def default_entries(
    data: MultimodalDataset,
    models: Sequence[str] | None = None,
    hparams: dict[str, dict[str, Any]] | None = None,
) -> list[Entry]:
    """Every registered model and `stack` (or `models`); `unimodal` once per modality, or
    once for the modality `hparams["unimodal"]` names."""
    from polyfuse.models.registry import list_models, model_class

    names = list(models) if models else [*list_models(), STACK]
    entries = []
    for name in names:
        if name == STACK:  # not a network: the stacked ensemble of training/stack.py
            entries.append(Entry(STACK, STACK))
            continue
        model_class(name)  # unknown names fail here, with a did-you-mean
        if name == "unimodal":
            chosen = (hparams or {}).get("unimodal", {}).get("modality")
            mods = [chosen] if chosen is not None else list(data.specs)
            entries += [Entry(f"unimodal[{m}]", name, {"modality": m}) for m in mods]
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
    tuning: pd.DataFrame = field(default_factory=pd.DataFrame)
    """With tuning: per model and outer fold, the trials run, best inner score, chosen params."""
    stack: pd.DataFrame = field(default_factory=pd.DataFrame)
    """With `stack`: each member's weight per fold (dataset, model, repeat, fold, task,
    member, weight; NaN where the member could not be fitted)."""
    features: pd.DataFrame = field(default_factory=pd.DataFrame)
    """Each network's feature attributions per test fold of the first repeat (dataset, model,
    repeat, fold, task, modality, feature, mean_abs, mean): integrated gradients,
    `explain/features.py`."""

    def leaderboard(self) -> pd.DataFrame:
        from polyfuse.evaluation.report import leaderboard

        return leaderboard(self.results, self.efficiency, self.comparisons)


def _part(
    out: Path, dataset: str, entry: str, split: Split, table: str, tune: TuneConfig | None = None
) -> Path:
    """A fold's table; a tuned model's folds live apart (`<entry>@tune<N>`), so a resumed run
    with another tuning budget never mixes them."""
    safe = entry.replace("/", "_") + (f"@tune{tune.trials}" if tune is not None else "")
    return out / "parts" / dataset / safe / f"r{split.repeat}f{split.fold}.{table}.csv"


def _space_overrides(model: str, tune: TuneConfig) -> dict[str, Any]:
    """The entries of `tune.space` that `model` takes (a benchmark tunes several models)."""
    from polyfuse.config import TrainingConfig
    from polyfuse.models.registry import model_hparams

    accepted = set(model_hparams(model)) | set(TrainingConfig.model_fields)
    return {k: v for k, v in tune.space.items() if k in accepted}


def _check_overrides(models: Sequence[str], tune: TuneConfig) -> None:
    from polyfuse.config import TrainingConfig
    from polyfuse.errors import ConfigError
    from polyfuse.models.registry import model_hparams

    accepted = set(TrainingConfig.model_fields).union(
        *(model_hparams(m) for m in models if m != STACK)
    )
    unused = sorted(set(tune.space) - accepted)
    if unused:
        raise ConfigError(
            f"tune.space names {unused}, which no benchmarked model takes ({sorted(set(models))})"
        )


def _tune_fold(
    entry: Entry, train: MultimodalDataset, settings: FitSettings, tune: TuneConfig, study: Path
) -> tuple[FitSettings, dict[str, Any]]:
    """Search `entry`'s space on one outer training part (inner CV, `settings` the base of every
    trial); the chosen settings and a row for the tuning table. The study is stored beside the
    fold's parts (resumable)."""
    from polyfuse.tuning.search import SearchPlan, search_split
    from polyfuse.tuning.space import apply_overrides, model_space
    from polyfuse.tuning.storage import close_storage, sqlite_storage
    from polyfuse.tuning.study import quiet_optuna
    from polyfuse.tuning.target import resolve_target

    space = apply_overrides(
        entry.model, model_space(entry.model), _space_overrides(entry.model, tune)
    )
    target = resolve_target(train, tune.task, tune.metric, tune.direction)
    plan = SearchPlan(entry.model, space, target, tune.trials, tune.inner_folds, tune.prune)
    study.parent.mkdir(parents=True, exist_ok=True)
    storage = sqlite_storage(study)
    try:
        with quiet_optuna():
            chosen = search_split(plan, train, settings, storage=storage, study_name="search")
    finally:
        close_storage(storage)
    row = dict(
        trials=chosen.finished,
        metric=target.metric,
        inner_best=chosen.value,
        params=json.dumps(chosen.params),
    )
    return chosen.settings, row


def _run_fold(
    entry: Entry,
    data: MultimodalDataset,
    split: Split,
    settings: FitSettings,
    *,
    tune: TuneConfig | None = None,
    study: Path | None = None,
) -> dict[str, pd.DataFrame]:
    """Train on one fold (tuned first, with `tune`); metrics under every condition,
    predictions, contributions, time."""
    from polyfuse.training.fit import fit_model

    if entry.model == STACK:
        return _run_stack_fold(entry, data, split, settings)
    train, test = data.subset(split.train), data.subset(split.test)
    keys = dict(model=entry.name, repeat=split.repeat, fold=split.fold)
    parts: dict[str, pd.DataFrame] = {}
    if tune is not None:
        assert study is not None
        start = time.perf_counter()
        settings, row = _tune_fold(entry, train, settings, tune, study)
        parts["tuning"] = pd.DataFrame(
            [dict(keys, **row, tune_seconds=time.perf_counter() - start)]
        )
    start = time.perf_counter()
    fitted = fit_model(entry.model, train, settings)
    seconds = time.perf_counter() - start
    rows = [
        dict(keys, family="fusion", condition=condition, task=task, metric=k, value=v)
        for condition, view in conditions(test, seed=settings.seed)
        for task, metrics in fitted.evaluate(view, train.targets).items()
        for k, v in metrics.items()
    ]
    scores = fitted.predict(test)
    return {
        "results": pd.DataFrame(rows),
        "predictions": _predictions(
            scores, test, keys, _survival_at_horizons(data, train, fitted.predict(train), scores)
        ),
        "contributions": _contributions(fitted, test, keys),
        "features": _features(fitted, test, keys),
        "timing": pd.DataFrame([dict(keys, train_seconds=seconds)]),
        **parts,
    }


def _run_stack_fold(
    entry: Entry, data: MultimodalDataset, split: Split, settings: FitSettings
) -> dict[str, pd.DataFrame]:
    """The stacked ensemble on one fold: its members (with the hyper-parameters, training
    settings and seed the benchmark gives each model on this fold), its weights, and its scores
    on the test fold (all modalities: the robustness conditions are for single networks)."""
    from polyfuse.training.stack import plan_from_options, score_stack_fold

    plan = plan_from_options(data, entry.hparams)
    scored = score_stack_fold(data, split, plan, settings)
    keys = dict(model=entry.name, repeat=split.repeat, fold=split.fold)
    rows = [
        dict(keys, family="stack", condition="all", task=plan.task, metric=k, value=v)
        for k, v in scored.metrics.items()
    ]
    weights = [dict(keys, task=plan.task, member=m, weight=w) for m, w in scored.weights.items()]
    test = data.subset(split.test)
    return {
        "results": pd.DataFrame(rows),
        "predictions": _predictions({plan.task: scored.scores}, test, keys),
        "timing": pd.DataFrame([dict(keys, train_seconds=scored.seconds)]),
        "stack": pd.DataFrame(weights),
    }


def _contributions(fitted: Any, test: MultimodalDataset, keys: dict[str, Any]) -> pd.DataFrame:
    """Each modality's contribution to each task's predictions on the test fold, long form."""
    from polyfuse.explain.attribution import modality_contributions

    contrib = (
        modality_contributions(fitted, test)
        .reset_index()
        .melt(id_vars="modality", var_name="task", value_name="value")
    )
    return contrib.assign(**keys)


FEATURE_COLUMNS = ["task", "modality", "feature", "mean_abs", "mean"]


def _features(fitted: Any, test: MultimodalDataset, keys: dict[str, Any]) -> pd.DataFrame:
    """Each feature's integrated-gradient attribution to each task's score on the test fold
    (`explain/features.py`): none without captum or a continuous modality, and none on the
    folds of repeats after the first. The first repeat attributes every patient once, by the
    fit that did not train on it; the others would attribute the same patients again
    (attributing all three repeats took an eighth of the default benchmark's CPU), and the
    report's intervals across one repeat's folds, which share no patient, count each once."""
    if keys["repeat"] > 0:
        return pd.DataFrame(columns=FEATURE_COLUMNS).assign(**keys)
    from polyfuse.errors import ConfigError, MissingDependencyError
    from polyfuse.explain.features import feature_table, integrated_gradients

    frames = []
    for task, spec in fitted.tasks.items():
        if spec.type == "multilabel":
            continue
        try:
            table = feature_table(integrated_gradients(fitted, test, task), fitted)
        except (MissingDependencyError, ConfigError):
            continue
        frames.append(table.assign(task=task))
    frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    return frame.reindex(columns=FEATURE_COLUMNS).assign(**keys)


def _survival_at_horizons(
    data: MultimodalDataset,
    train: MultimodalDataset,
    train_scores: dict[str, dict[str, np.ndarray]],
    scores: dict[str, dict[str, np.ndarray]],
) -> dict[str, tuple[float, np.ndarray]]:
    """Survival tasks: (horizon, each test patient's predicted survival past it), the horizon
    the median event time of the whole cohort (an evaluation point, the same for every fold
    and model) and the survival from the training part's risks (`survival_at_horizon`)."""
    from polyfuse.evaluation.calibration import survival_at_horizon

    out = {}
    for task, spec in data.tasks.items():
        y, ours = train.targets[task], train_scores.get(task)
        if spec.type != "survival" or ours is None:
            continue
        everyone = data.targets[task]
        events = everyone[everyone[:, 1] == 1, 0]
        known = ~np.isnan(y).any(1)
        if not len(events):
            continue
        horizon = float(np.median(events))
        try:
            at = survival_at_horizon(
                ours["risk"][known], y[known, 0], y[known, 1], scores[task]["risk"], horizon
            )
        except ValueError:  # no training event, a constant risk, a horizon past follow-up
            continue
        out[task] = (horizon, at)
    return out


def _predictions(
    scores: dict[str, dict[str, np.ndarray]],
    test: MultimodalDataset,
    keys: dict[str, Any],
    at_horizon: dict[str, tuple[float, np.ndarray]] | None = None,
) -> pd.DataFrame:
    """One row per test sample and task: the main score and the observed target; for survival
    tasks, with `at_horizon`, the predicted survival past the horizon (`surv_h`)."""
    frames = []
    for task, d in scores.items():
        spec, y = test.tasks[task], test.targets[task]
        cols: dict[str, Any] = dict(keys, id=test.ids, task=task)
        if spec.type == "survival":
            cols |= dict(score=d["risk"], time=y[:, 0], event=y[:, 1])
            if at_horizon and task in at_horizon:
                cols |= dict(horizon=at_horizon[task][0], surv_h=at_horizon[task][1])
        elif spec.type == "binary":
            cols |= dict(score=d["prob"], label=y)
        elif spec.type == "regression":
            cols |= dict(score=d["pred"], label=y)
        else:  # multiclass / multilabel: the probability of the first class is not a score
            continue
        frames.append(pd.DataFrame(cols))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


FOLD_TABLES = ("results", "predictions", "contributions", "features", "timing")


def _fold_tables(tune: TuneConfig | None, entry: Entry) -> tuple[str, ...]:
    """The tables a fold of `entry` writes: the stack is never tuned, and writes its weights."""
    if entry.model == STACK:  # no one network whose modality contributions to measure
        return ("results", "predictions", "timing", "stack")
    return FOLD_TABLES + (("tuning",) if tune is not None else ())


@dataclass(frozen=True)
class _FoldJob:
    """One entry on one fold, as sent to a worker (the dataset is sent apart, once). `study`:
    where a tuned fold keeps its optuna study (an absolute path: a worker's working directory
    may be another), so that an interrupted search resumes."""

    entry: Entry
    split: Split
    settings: FitSettings
    tune: TuneConfig | None
    study: Path | None


def _fold_job(data: MultimodalDataset, job: _FoldJob) -> dict[str, pd.DataFrame]:
    """Run one fold; its tables, returned to be written where the benchmark runs (a worker
    on another machine needs no access to the run directory)."""
    return _run_fold(job.entry, data, job.split, job.settings, tune=job.tune, study=job.study)


def _write_fold(
    out: Path, name: str, job: _FoldJob, tune: TuneConfig | None, tables: dict[str, pd.DataFrame]
) -> None:
    """A fold's tables to parts/, results last: the completion marker `resume` looks for."""
    for table in _fold_tables(tune, job.entry)[::-1]:
        _write(_part(out, name, job.entry.name, job.split, table, tune), tables[table])


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
    tune: TuneConfig | None = None,
    subgroups: Sequence[str] | None = None,
    executor: str = "local",
    address: str | None = None,
) -> BenchmarkResult:
    """Benchmark models on datasets (names of bundled cohorts or loaded datasets).

    Every fusion model and classical floor sees the same folds of a dataset. `hparams` maps a
    model name (or display name such as "unimodal[rna]") to hyper-parameters. `workers` > 1
    trains that many folds at once in separate processes of one thread each (small models gain
    nothing from a second thread, so this is the way to use several cores). With `tune`, each
    model is tuned inside each outer fold with `tune.trials` trials (inner CV over
    `tune.inner_folds` folds of the training part; `tune.space` entries apply to the models
    that take them; `tune.timeout` is not used) and `hparams` are the base of every trial.
    `subgroups` (`modality:column`, `evaluation/subgroups.py`) are reported on every dataset;
    by default a bundled cohort's own (`DatasetInfo.subgroups`), none for data of your own.
    `executor="dask"` trains the folds as tasks on the Dask distributed cluster whose scheduler
    is at `address` (`workers` is then the cluster's: unused here); its workers return each
    fold's tables and this process writes them (`evaluation/executors.py`, docs/scaling.md).
    The keywords are the documented API; the steps below share them as one `_Plan`.
    """
    from polyfuse.datasets import dataset_info, load_honest
    from polyfuse.evaluation.executors import connect
    from polyfuse.models.registry import model_class

    out = check_run_dir(Path(out), overwrite=overwrite, resume=resume)
    settings = FitSettings.of(training=training, preprocess=preprocess, seed=seed).quiet()
    # a missing or unreachable scheduler is reported first, before torch is imported
    with connect(executor, address) as client:
        for model in models or []:
            if model != STACK:
                model_class(model)  # with a did-you-mean, before any data are read
        for item in datasets:
            if isinstance(item, str):
                dataset_info(item)
        loaded = [load_honest(item) if isinstance(item, str) else item for item in datasets]
        groups = _subgroups(datasets, loaded, subgroups)  # checked before any training
        import lightning  # noqa: F401  (imported before timing, so fold 1 does not pay for it)

        with undo_on_failure(out, lambda exc: any(out.rglob("*.results.csv"))):
            plan = _Plan(
                models=models,
                hparams=hparams or {},
                folds=folds,
                repeats=repeats,
                settings=settings,
                out=prepare_run_dir(out, overwrite=overwrite, resume=resume),
                classical=classical,
                resume=resume,
                workers=workers,
                tune=tune,
                client=client,
            )
            return _benchmark(loaded, plan, progress, groups)


def _subgroups(
    items: Sequence[str | MultimodalDataset],
    loaded: list[MultimodalDataset],
    specs: Sequence[str] | None,
) -> pd.DataFrame:
    """Every patient's subgroup levels (dataset, id, subgroup, level) on every dataset: those
    asked for, or a bundled cohort's own (a dataset named like one is taken for it)."""
    from polyfuse.datasets import DATASETS
    from polyfuse.evaluation.subgroups import subgroup_frame

    frames = []
    for item, data in zip(items, loaded, strict=True):
        if specs is not None:
            chosen: Sequence[str] = specs
        else:
            name = item if isinstance(item, str) else data.name
            chosen = DATASETS[name].subgroups if name in DATASETS else ()
        frames.append(subgroup_frame(data, chosen).assign(dataset=data.name or "dataset"))
    return pd.concat(frames, ignore_index=True)


@dataclass(frozen=True)
class _Plan:
    """What every dataset of one benchmark shares. Each fold fits with `settings`, its entry's
    hyper-parameters and the seed `settings.seed + i` of its split `i`."""

    models: Sequence[str] | None
    hparams: dict[str, dict[str, Any]]
    folds: int
    repeats: int
    settings: FitSettings
    out: Path
    classical: bool
    resume: bool
    workers: int
    tune: TuneConfig | None
    client: Any = None
    """The Dask client the folds are submitted through; None: local processes."""


def _benchmark(
    datasets: list[MultimodalDataset], plan: _Plan, progress: bool, groups: pd.DataFrame
) -> BenchmarkResult:
    from polyfuse.evaluation.record import run_record

    start = time.perf_counter()
    record = run_record(
        datasets,
        models=plan.models,
        hparams=plan.hparams,
        folds=plan.folds,
        repeats=plan.repeats,
        settings=plan.settings,
        tune=plan.tune,
        resumed=plan.resume,
        subgroups={d: list(g["subgroup"].unique()) for d, g in groups.groupby("dataset")},
    )
    tables: dict[str, list[pd.DataFrame]] = {}
    with Progress(progress) as bar:
        networks: dict[str, None] = {}
        for data in datasets:
            entries = _entries(data, plan)
            for table, frames in _benchmark_dataset(data, entries, plan, bar).items():
                tables.setdefault(table, []).extend(frames)
            networks |= dict.fromkeys(e.model for e in entries if e.model != STACK)
        tables["cost_curves"] = [_cost_curves(list(networks), plan, bar)]
        bar.add("report", 1)
        bar.describe(f"comparisons, tables and report → {plan.out}")
        final = _final_tables(tables)
        for table, frame in final.items():
            _write(plan.out / f"{table}.csv", frame)
        log.info("benchmark tables written to %s", plan.out)
        bar.describe(f"writing the report → {plan.out / 'report.html'}")
        write_text(plan.out / "run_record.json", json.dumps(record, indent=1, default=str))
        _write(plan.out / "subgroups.csv", groups)
        _report(plan.out, final, record, groups)
        bar.advance()
    return BenchmarkResult(
        plan.out,
        final["results"],
        final["efficiency"],
        final["comparisons"],
        final["predictions"],
        final["contributions"],
        time.perf_counter() - start,
        final.get("tuning", pd.DataFrame()),
        final.get("stack", pd.DataFrame()),
        final["features"],
    )


def _benchmark_dataset(
    data: MultimodalDataset, entries: list[Entry], plan: _Plan, bar: Progress
) -> dict[str, list[pd.DataFrame]]:
    """One dataset: the floors, every entry on every fold (the folds done before are read
    back), the profiles; its tables, each tagged with the dataset's name."""
    name = data.name or "dataset"
    splits = kfold(data, plan.folds, plan.repeats, plan.settings.seed)
    # the work after training counts too: one step per model profiled
    floors = len(splits) if plan.classical else 0
    bar.add(name, len(entries) * len(splits) + floors + len(entries))
    tables: dict[str, list[pd.DataFrame]] = {}
    if plan.classical:
        tables["results"] = _classical(data, splits, plan, name, bar)
    _train_folds(data, name, splits, entries, plan, bar)
    for e in entries:
        for split in splits:
            for table in _fold_tables(plan.tune, e):
                frame = pd.read_csv(_part(plan.out, name, e.name, split, table, plan.tune))
                tables.setdefault(table, []).append(frame.assign(dataset=name))
    tables["efficiency"] = [_efficiency(data, entries, name, plan.settings.preprocess, bar)]
    return tables


def _entries(data: MultimodalDataset, plan: _Plan) -> list[Entry]:
    """The dataset's entries with the hyper-parameters given for their model, then for their
    display name; with tuning, checked against the search settings first."""
    entries = [
        Entry(
            e.name,
            e.model,
            {**e.hparams, **plan.hparams.get(e.model, {}), **plan.hparams.get(e.name, {})},
        )
        for e in default_entries(data, plan.models, plan.hparams)
    ]
    entries = [_stack_entry(data, e, plan) if e.model == STACK else e for e in entries]
    entries = [e for e in entries if e is not None]
    if plan.tune is not None:
        require("optuna", "tune")
        _check_overrides([e.model for e in entries], plan.tune)
    return entries


def _stack_entry(data: MultimodalDataset, entry: Entry, plan: _Plan) -> Entry | None:
    """The stack's entry, checked before any training: its members take the hyper-parameters
    given to their models. A suite's stack is left out, with a warning, where the first task is
    not one a stack combines; a stack asked for by name is an error there."""
    from polyfuse.errors import ConfigError, FallbackWarning
    from polyfuse.training.stack import plan_from_options

    given = entry.hparams.get("member_hparams", {})
    try:
        members = plan_from_options(data, entry.hparams).members  # the stack's own options
        models = {k: v for k, v in plan.hparams.items() if k in members}
        hparams = {k: models.get(k, {}) | given.get(k, {}) for k in {*models, *given}}
        options = {**entry.hparams, "member_hparams": hparams}
        plan_from_options(data, options)  # the models' hyper-parameters, as members'
    except ConfigError as exc:
        if plan.models and STACK in plan.models:
            raise
        warnings.warn(f"the benchmark leaves out {STACK}: {exc}", FallbackWarning, stacklevel=2)
        return None
    return Entry(entry.name, entry.model, options)


def _train_folds(
    data: MultimodalDataset,
    name: str,
    splits: list[Split],
    entries: list[Entry],
    plan: _Plan,
    bar: Progress,
) -> None:
    """Every entry on every fold not done yet (a resumed run skips those in parts/), in
    `plan.workers` processes or on the Dask cluster of `plan.client`; each fold's tables are
    written to parts/ here as it finishes."""
    from polyfuse.evaluation.executors import map_jobs

    tune = plan.tune
    todo = [
        (e, i, split)
        for e in entries
        for i, split in enumerate(splits)
        if not (plan.resume and _part(plan.out, name, e.name, split, "results", tune).is_file())
    ]
    bar.advance(len(entries) * len(splits) - len(todo))
    jobs = [_fold_plan(plan, name, e, i, split) for e, i, split in todo]
    verb = "tuned + trained" if tune is not None else "trained"
    for job, tables in map_jobs(_fold_job, data, jobs, workers=plan.workers, client=plan.client):
        _write_fold(plan.out, name, job, tune, tables)
        split = job.split
        done = f"{name}: {job.entry.name} {verb} (repeat {split.repeat}, fold {split.fold})"
        bar.describe(done)
        bar.advance()
        log.info(done)


def _fold_plan(plan: _Plan, name: str, entry: Entry, i: int, split: Split) -> _FoldJob:
    """Entry `entry` on split `i`: tuned first with `plan.tune` (never the stack), its study
    beside the fold's parts."""
    tune = plan.tune if entry.model != STACK else None
    study = _part(plan.out, name, entry.name, split, "study", tune).with_suffix(".db")
    settings = plan.settings.replace(hparams=entry.hparams, seed=plan.settings.seed + i)
    return _FoldJob(entry, split, settings, tune, study.absolute() if tune is not None else None)


def _final_tables(tables: dict[str, list[pd.DataFrame]]) -> dict[str, pd.DataFrame]:
    """The benchmark's tables from the datasets' frames, in the order they are written."""
    results = _with_status(pd.concat(tables["results"], ignore_index=True))
    timing = pd.concat(tables["timing"], ignore_index=True)
    final = {
        "results": results,
        "efficiency": _with_train_time(pd.concat(tables["efficiency"], ignore_index=True), timing),
        "comparisons": _comparisons(results),
        "predictions": pd.concat(tables["predictions"], ignore_index=True),
        "contributions": _mean_contributions(tables.get("contributions", [])),
        # the first repeat's attributions only (`_features`; a run resumed from parts written
        # before 2026-12-05 has the later repeats' too), without the later folds' empty tables
        "features": pd.concat(
            [f[f["repeat"] == 0] for f in tables.get("features", []) if len(f)] or [pd.DataFrame()],
            ignore_index=True,
        ),
    }
    for table in ("tuning", "stack", "cost_curves"):
        if table in tables:
            final[table] = pd.concat(tables[table], ignore_index=True)
    return final


def _mean_contributions(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """Each network's modality contributions, averaged over folds (none: only the stack ran)."""
    keys = ["dataset", "model", "modality", "task"]
    if not frames:
        return pd.DataFrame(columns=[*keys, "value"])
    return pd.concat(frames, ignore_index=True).groupby(keys, as_index=False)["value"].mean()


def _with_status(results: pd.DataFrame) -> pd.DataFrame:
    """Every row says whether its model could be fitted: "ok", or a floor's "failed: <why>"
    (fusion rows, and floors' parts of older runs, carry no status and are "ok")."""
    status = results["status"] if "status" in results else pd.Series("ok", index=results.index)
    return results.assign(status=status.fillna("ok"))


def _report(
    out: Path, final: dict[str, pd.DataFrame], record: dict[str, Any], groups: pd.DataFrame
) -> None:
    from polyfuse.evaluation.report import write_report

    write_report(
        out,
        results=final["results"],
        efficiency=final["efficiency"],
        comparisons=final["comparisons"],
        predictions=final["predictions"],
        contributions=final["contributions"],
        features=final["features"],
        stack=final.get("stack"),
        record=record,
        subgroups=groups,
        cost_curves=final.get("cost_curves"),
    )


def _classical(
    data: MultimodalDataset, splits: list[Split], plan: _Plan, name: str, bar: Progress
) -> list[pd.DataFrame]:
    """The classical floors of every task on the same folds (cached in parts/ like the fusion
    folds); a floor that cannot be fitted on a fold is marked failed there (`classical.py`)."""
    from polyfuse.evaluation.classical import classical_floors, floored_tasks

    frames = []
    for task in floored_tasks(data):
        path = plan.out / "parts" / name / f"classical.{task.replace('/', '_')}.results.csv"
        if not (plan.resume and path.is_file()):
            bar.describe(f"{name}: classical floors of {task}")
            frame = classical_floors(data, splits, task=task, seed=plan.settings.seed)
            _write(path, frame.assign(family="classical", condition="all"))
            log.info("%s: classical floors of %s done", name, task)
        frames.append(pd.read_csv(path).assign(dataset=name))
    bar.advance(len(splits))
    return frames


def _efficiency(
    data: MultimodalDataset,
    entries: list[Entry],
    name: str,
    preprocess: PreprocessConfig,
    bar: Progress,
) -> pd.DataFrame:
    """Each model's cost (parameters, FLOPs, latency, memory) on inputs preprocessed as for
    training, one progress step per model."""
    from polyfuse.evaluation.profile import profile_models

    frames = []
    for e in entries:
        if e.model == STACK:  # several fits, no one network to profile: its time only
            frames.append(pd.DataFrame([{"model": e.name, "dataset": name}]))
            bar.advance()
            continue
        bar.describe(f"{name}: profiling {e.name} (parameters, FLOPs, latency, memory)")
        row = profile_models([e.model], data, hparams={e.model: e.hparams}, preprocess=preprocess)
        frames.append(row.assign(model=e.name, dataset=name))
        bar.advance()
    return pd.concat(frames, ignore_index=True)


def _cost_curves(models: list[str], plan: _Plan, bar: Progress) -> pd.DataFrame:
    """Each network's training-step time and peak memory against modalities and tokens per
    modality on synthetic bags (`cost_curves.py`, with the hyper-parameters given to the
    model), so that a reader sees which model fits data of another size; kept in parts/ for a
    resumed run."""
    from polyfuse.evaluation.cost_curves import cost_curve, sizes

    path = plan.out / "parts" / "cost_curves.csv"
    if plan.resume and path.is_file():
        return pd.read_csv(path)
    bar.add("cost curves", len(models) * len(sizes(CURVE_MODALITIES, CURVE_TOKENS)))

    def step(model: str, m: int, t: int) -> None:
        bar.describe(f"cost curves: {model}, {m} modalities × {t} tokens")
        bar.advance()

    frame = cost_curve(models, CURVE_MODALITIES, CURVE_TOKENS, hparams=plan.hparams, on_size=step)
    _write(path, frame)
    return frame


CURVE_MODALITIES = (2, 4, 8, 16)
CURVE_TOKENS = (16, 64, 256)


def _with_train_time(efficiency: pd.DataFrame, timing: pd.DataFrame) -> pd.DataFrame:
    mean = timing.groupby(["dataset", "model"], as_index=False)["train_seconds"].mean()
    return efficiency.merge(mean, on=["dataset", "model"], how="left")


def _comparisons(results: pd.DataFrame) -> pd.DataFrame:
    """Each fusion model vs the best classical floor, paired over folds, primary metric, by the
    corrected resampled t-test (`stats.py`; n_test / n_train = 1 / (k − 1) with k folds per
    repeat) and its verdict. The best floor is chosen among those with a score: a floor that
    failed on every fold is none."""
    from polyfuse.evaluation.stats import paired_comparison, verdict
    from polyfuse.tasks.metric_facts import PRIMARY, higher_is_better

    rows = []
    base = results[results["condition"] == "all"]
    for (dataset, task), group in base.groupby(["dataset", "task"]):
        metric = next((m for m in PRIMARY.values() if m in set(group["metric"])), None)
        if metric is None:
            continue
        g = group[group["metric"] == metric]
        per_fold = g.pivot_table(index=["repeat", "fold"], columns="model", values="value")
        per_fold = per_fold.reindex(columns=g["model"].unique())  # all-NaN models too
        best = _best_floor(per_fold, g[g["family"] == "classical"]["model"].unique(), metric)
        if best is None:
            log.info("%s · %s: no classical floor was scored; no comparisons", dataset, task)
            continue
        ratio = 1.0 / max(g["fold"].nunique() - 1, 1)
        for model in g[g["family"] != "classical"]["model"].unique():
            stats = paired_comparison(
                per_fold[model].to_numpy(), per_fold[best].to_numpy(), test_train_ratio=ratio
            )
            rows.append(
                dict(
                    dataset=dataset,
                    model=model,
                    task=task,
                    metric=metric,
                    baseline=best,
                    **{k: stats[k] for k in ("n", "mean_diff", "ci_low", "ci_high", "p_value")},
                    verdict=verdict(stats, higher_is_better(metric)),
                )
            )
    return pd.DataFrame(rows)


def _best_floor(per_fold: pd.DataFrame, floors: Sequence[str], metric: str) -> str | None:
    """The floor with the best mean over folds; None when no floor has a score."""
    from polyfuse.tasks.metric_facts import higher_is_better

    means = per_fold[list(floors)].mean().dropna()
    if means.empty:
        return None
    return str(means.idxmax() if higher_is_better(metric) else means.idxmin())
