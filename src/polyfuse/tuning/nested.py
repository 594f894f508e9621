"""Hyper-parameter search inside nested cross-validation: the reported score is the outer folds'.

The protocol, for each outer split of `kfold(data, folds, repeats, seed)`:

1. **Search** on the outer *training* part only (`tuning/search.py`). optuna's TPE sampler proposes a configuration
   from the model's search space (`tuning/space.py`); its value is the mean, over
   `inner_folds` inner folds (`kfold` of the outer training part), of the validation metric of
   a model trained on the other inner folds. After each inner fold the running mean is reported
   to a median pruner, which stops a trial that is already worse than the median of earlier
   trials at the same inner fold.
2. **Refit** the chosen configuration (the best completed trial) on the whole outer training
   part, with the same early-stopping carve-out as every fit, and score it on the outer test
   fold. That outer score is what is reported.
3. **Untuned** (optional): the configuration as given, on the same split and seed, for
   comparison under the same protocol.

The search never sees an outer test fold. The best inner value of each outer fold is kept
(`inner_best`) for inspection but never reported as the performance: being the maximum over
trials it is biased upwards by the selection itself. With `final=True` the same search runs once
more on *all* samples; its choice is the configuration to use from now on (`best.yaml`), and the
nested-CV score estimates how well this whole procedure (search + refit) does on new patients.

Reproducibility and resume: each outer fold has its own optuna study (`r{repeat}f{fold}`, and
`all` for the final search, `tuning/study.py`), stored in one SQLite file when a run directory
is given (what else the directory holds: `tuning/files.py`). Before
each trial the sampler is re-seeded from (seed, study, number of finished trials), so the same
seed gives the same trials, and a resumed study proposes exactly what the uninterrupted one
would have: finished trials (complete, pruned, or failed with a non-finite score) are counted
and only the remainder is run; a trial cut off by an interruption is run again.
"""

from __future__ import annotations

import dataclasses
import io
import json
import logging
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from polyfuse.config import ExperimentConfig, PreprocessConfig, TrainingConfig
from polyfuse.data.dataset import MultimodalDataset
from polyfuse.data.splits import Split, kfold
from polyfuse.errors import ConfigError, require
from polyfuse.io import check_run_dir
from polyfuse.progress import Progress
from polyfuse.search_space import describe
from polyfuse.training.settings import FitSettings
from polyfuse.tuning.files import (
    differences,
    open_run,
    plain,
    read_study,
    save_tables,
    write_final_study,
    write_outer_study,
)
from polyfuse.tuning.search import Chosen, SearchPlan, check_space, configure, search_split
from polyfuse.tuning.space import apply_overrides, model_space
from polyfuse.tuning.storage import STUDY_FILE, close_storage, open_storage, sqlite_storage
from polyfuse.tuning.study import (
    best_trial,
    finished_trials,
    importances,
    open_study,
    quiet_optuna,
    trials_frame,
)
from polyfuse.tuning.target import Target, resolve_target
from polyfuse.tuning.workers import WORKER, Sharing, once, wait_once

FINAL = "all"  # the study name of the final search on all samples

log = logging.getLogger(__name__)


@dataclass
class TuneResult:
    """Outer-fold scores of the tuned (and untuned) model, the chosen configurations, trials."""

    model: str
    target: Target
    folds: pd.DataFrame  # variant, repeat, fold, task, metric, value: outer test folds only
    chosen: pd.DataFrame  # per outer fold (and "all"): trials, inner_best, params
    trials: pd.DataFrame
    predictions: pd.DataFrame
    best: dict[str, Any] | None  # the final search's choice (params, hparams, training)
    seconds: float
    out: Path | None = None
    importances: pd.DataFrame = field(default_factory=pd.DataFrame)

    def summary(self) -> pd.DataFrame:
        """Mean, sd and count of each outer-fold metric, per variant (tuned / untuned)."""
        g = self.folds.groupby(["variant", "task", "metric"], sort=False)["value"]
        out = pd.DataFrame({"mean": g.mean(), "sd": g.std(ddof=1), "n": g.count()})
        out["text"] = [f"{m:.3f} ± {s:.3f}" for m, s in zip(out["mean"], out["sd"], strict=True)]
        return out

    def score(self, variant: str = "tuned") -> tuple[float, float]:
        """Mean and sd over outer folds of the target metric."""
        s = self.summary().loc[(variant, self.target.task, self.target.metric)]
        return float(s["mean"]), float(s["sd"])


def tune(
    model: str,
    data: MultimodalDataset,
    *,
    trials: int = 20,
    timeout: float | None = None,
    folds: int = 5,
    repeats: int = 1,
    inner_folds: int = 3,
    seed: int = 0,
    training: TrainingConfig | None = None,
    preprocess: PreprocessConfig | None = None,
    task_weights: dict[str, float] | None = None,
    space: Mapping[str, Any] | None = None,
    task: str | None = None,
    metric: str | None = None,
    direction: str | None = None,
    prune: bool = True,
    final: bool = True,
    untuned: bool = True,
    splits: list[Split] | None = None,
    out: str | Path | None = None,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    template: ExperimentConfig | None = None,
    storage: str | None = None,
    study: str | None = None,
    heartbeat: float = 15.0,
    **hparams: Any,
) -> TuneResult:
    """Tune `model` on `data` by nested cross-validation (see the module docstring).

    `space` narrows or overrides the model's declared search space (`tune.space` of a config);
    `hparams` and `training` are the untuned configuration and the base of every trial.
    `timeout` (seconds) bounds the whole search, shared evenly by the outer folds still to do.
    With `out`, studies are stored in `out/study.db` and every table, figure and best
    configuration is written there; `resume=True` continues an interrupted run.

    With `storage` (a PostgreSQL URL or `journal:PATH`, `tuning/storage.py`) the studies live
    there, named `<study>/r<r>f<f>` (`study` defaults to the model's name), and every process
    calling `tune` with the same arguments joins them as a worker (`tuning/workers.py`): the
    trials are split between the workers, each outer fold is scored once, and one worker
    writes `out` at the end; every worker returns the whole result. A worker silent for four
    `heartbeat`s (seconds) is taken for dead and its trial is run again. The keywords are the
    documented API; the steps below share them as one `_NestedRun`.

    Example:
        >>> import polyfuse as pf  # doctest: +SKIP
        >>> data = pf.datasets.load("tcga-acc")  # doctest: +SKIP
        >>> result = pf.tune("early", data, trials=15, folds=5, inner_folds=3)  # doctest: +SKIP
        >>> result.summary()  # outer-fold c-index, tuned and untuned  # doctest: +SKIP
    """
    require("optuna", "tune")
    if resume and overwrite:
        raise ConfigError("give one of --resume and --overwrite, not both")
    if trials < 1:
        raise ConfigError(f"trials must be >= 1, got {trials}")
    settings = FitSettings.of(hparams, training, preprocess, task_weights, seed)
    resolved = apply_overrides(model, model_space(model), space)
    check_space(model, resolved, settings.training)
    target = resolve_target(data, task, metric, direction)
    nested = _NestedRun(
        SearchPlan(model, resolved, target, trials, inner_folds, prune),
        data,
        splits if splits is not None else kfold(data, folds, repeats, seed, target.task),
        settings,
        final=final,
        untuned=untuned,
        template=template,
        resume=resume,
        overwrite=overwrite,
        sharing=Sharing(study or model, heartbeat) if storage is not None else None,
    )
    return _tune(*_placed(nested, storage, out), timeout, progress)


@dataclass(frozen=True)
class _NestedRun:
    """What every study of one `tune` call shares."""

    plan: SearchPlan
    data: MultimodalDataset
    splits: list[Split]
    settings: FitSettings  # the untuned configuration, the base of every trial
    final: bool
    untuned: bool
    template: ExperimentConfig | None
    resume: bool
    overwrite: bool = False
    sharing: Sharing | None = None  # set: the studies are shared with other workers
    out: Path | None = None

    @property
    def studies(self) -> list[str]:
        return [f"r{s.repeat}f{s.fold}" for s in self.splits] + ([FINAL] if self.final else [])

    def study_name(self, name: str) -> str:
        """The name of study `name` in the storage (prefixed when shared)."""
        return self.sharing.name(name) if self.sharing is not None else name

    def record(self) -> dict[str, Any]:
        """What a resumed run must share with the run it continues (not trials nor timeout),
        as JSON values (as written to settings.json and compared with what it holds)."""
        plan, settings = self.plan, self.settings
        record = dict(
            model=plan.model,
            data=self.data.name,
            samples=len(self.data),
            splits=[[s.repeat, s.fold, len(s.train), len(s.test)] for s in self.splits],
            inner_folds=plan.inner_folds,
            seed=settings.seed,
            space=describe(plan.space),
            hparams=settings.hparams,
            training=settings.training.model_dump(mode="json"),
            preprocess=settings.preprocess.model_dump(mode="json"),
            task_weights=settings.task_weights,
            target=[plan.target.task, plan.target.metric, plan.target.direction],
            prune=plan.prune,
            final=self.final,
            untuned=self.untuned,
        )
        return json.loads(json.dumps(record, default=str))


Record = dict[str, Any]  # a scored study: its chosen row, and its tables or the final choice


def _placed(
    nested: _NestedRun, storage: str | None, out: str | Path | None
) -> tuple[_NestedRun, Any]:
    """The run with its directory, and the studies' storage: shared (the directory is only
    checked: one worker creates it at the end), the directory's SQLite file, or memory."""
    if storage is not None:
        checked = (
            check_run_dir(Path(out), overwrite=nested.overwrite, resume=nested.resume)
            if out is not None
            else None
        )
        return dataclasses.replace(nested, out=checked), open_storage(storage)
    if out is not None:
        run = open_run(
            Path(out),
            nested.record(),
            nested.template,
            resume=nested.resume,
            overwrite=nested.overwrite,
        )
        return dataclasses.replace(nested, out=run), sqlite_storage(run / STUDY_FILE)
    import optuna

    return nested, optuna.storages.InMemoryStorage()


def _tune(nested: _NestedRun, storage: Any, timeout: float | None, progress: bool) -> TuneResult:
    """Every study in turn, then the tables of all of them; the studies' storage is closed
    however the run ends. optuna's INFO lines stay off (the progress bar shows the trials)."""
    start = time.perf_counter()
    try:
        with quiet_optuna():
            if nested.sharing is not None:
                _join(nested, storage)
            outcome = _search_studies(nested, storage, timeout, progress)
            result = _result(nested, storage, outcome, time.perf_counter() - start)
            if nested.out is not None and nested.sharing is not None:
                _report_once(nested, storage, result, outcome)
            elif nested.out is not None:
                _save(result, nested.out)
    finally:
        close_storage(storage)
    return result


def _result(
    nested: _NestedRun, storage: Any, outcome: dict[str, Record], seconds: float
) -> TuneResult:
    """The run's result from its studies' records and the storage's trials."""
    trials, imp = _study_tables(nested, storage)
    scored = [r for r in outcome.values() if "folds" in r]
    return TuneResult(
        model=nested.plan.model,
        target=nested.plan.target,
        folds=_concat([r["folds"] for r in scored]),
        chosen=pd.DataFrame([r["row"] for r in outcome.values()]),
        trials=trials,
        predictions=_concat([r["predictions"] for r in scored]),
        best=outcome[FINAL]["best"] if FINAL in outcome else None,
        seconds=seconds,
        out=nested.out,
        importances=imp,
    )


def _join(nested: _NestedRun, storage: Any) -> None:
    """Join the shared run: its first worker records the settings, later ones must match them
    (the trial budget included: the workers split it)."""
    import optuna

    assert nested.sharing is not None
    run = optuna.create_study(
        storage=storage, study_name=nested.study_name("run"), load_if_exists=True
    )
    mine = nested.record() | {"trials": nested.plan.trials}
    theirs = run.user_attrs.get("settings")
    if theirs is None:
        run.set_user_attr("settings", mine)
    elif changed := differences(theirs, mine):
        raise ConfigError(
            f"the shared study '{nested.sharing.prefix}' was started with other settings "
            f"({', '.join(changed)}); join it with the same config and --trials, or name a new "
            "one with --study"
        )
    log.info("worker %s joined study '%s'", WORKER, nested.sharing.prefix)


def _report_once(
    nested: _NestedRun, storage: Any, result: TuneResult, outcome: dict[str, Record]
) -> None:
    """A shared run's directory, written by the first worker to get here."""
    assert nested.sharing is not None and nested.out is not None
    out = nested.out

    def write() -> dict[str, Any]:
        run = open_run(
            out, nested.record(), nested.template, resume=nested.resume, overwrite=nested.overwrite
        )
        for k, name in enumerate(nested.studies):
            _write_study(nested, k, name, outcome[name])
        _save(result, run)
        return dict(worker=WORKER, out=str(run))

    done = once(storage, nested.study_name("run"), write, nested.sharing)
    if done is not None and done["worker"] != WORKER:
        log.info("the run directory %s is written by worker %s", done["out"], done["worker"])


def _concat(frames: list[pd.DataFrame]) -> pd.DataFrame:
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def _search_studies(
    nested: _NestedRun, storage: Any, timeout: float | None, progress: bool
) -> dict[str, Record]:
    """Each outer fold's search and refit, then the final search; a study an earlier run
    finished is read back instead. `timeout` is shared evenly by the studies still to do.
    Shared, a study another worker is scoring is waited for at the end."""
    outcome: dict[str, Record] = {}
    waiting: list[tuple[int, str, Chosen]] = []
    names, trials, label = nested.studies, nested.plan.trials, f"tune {nested.plan.model}"
    t0 = time.monotonic()
    with Progress(progress, eta=True) as bar:
        bar.add(label, len(names) * trials)
        shown = _TrialProgress(bar, label, nested.plan.target, trials, timeout, t0)
        for k, name in enumerate(names):
            if (saved := _restore(nested, name)) is not None:
                outcome[name] = saved
                bar.advance(trials)
                continue
            deadline = None
            if timeout is not None:
                left = timeout - (time.monotonic() - t0)
                deadline = time.monotonic() + max(0.0, left) / (len(names) - k)
            chosen = _search(nested, storage, k, name, deadline, shown)
            if (record := _score(nested, storage, k, name, chosen)) is not None:
                outcome[name] = record
            else:
                waiting.append((k, name, chosen))
        for k, name, chosen in waiting:
            bar.describe(f"{label}: another worker scores {name}")
            outcome[name] = _score(nested, storage, k, name, chosen, wait=True)
    return {name: outcome[name] for name in names}


def _restore(nested: _NestedRun, name: str) -> Record | None:
    """Study `name` as an earlier run of this directory finished it (searched and scored)."""
    if not nested.resume or nested.out is None or nested.sharing is not None:
        return None  # a shared study's record is read back from the storage by `_score`
    return read_study(nested.out, name, nested.plan.trials)


def _search(
    nested: _NestedRun,
    storage: Any,
    k: int,
    name: str,
    deadline: float | None,
    shown: _TrialProgress,
) -> Chosen:
    """Search study `name` (the outer split `k`, or all samples)."""
    split = None if name == FINAL else nested.splits[k]
    train = nested.data if split is None else nested.data.subset(split.train)
    study = nested.study_name(name)
    shown.start(name, open_study(storage, study, nested.plan.target, nested.plan.prune))
    chosen = search_split(
        nested.plan,
        train,
        nested.settings,
        storage=storage,
        study_name=study,
        key=k,  # the final search's key is len(splits): it comes after every outer fold
        deadline=deadline,
        on_trial=shown.trial,
        sharing=nested.sharing,
    )
    shown.finish()
    return chosen


def _score(
    nested: _NestedRun, storage: Any, k: int, name: str, chosen: Chosen, wait: bool = False
) -> Record | None:
    """Study `name`'s record, scored here (and written to the run directory when alone), or
    shared: scored once by the first worker to get here and read back by the others (None
    while another worker is on it, unless `wait`)."""
    if nested.sharing is None:
        record = _scored(nested, k, name, chosen)
        if nested.out is not None:
            _write_study(nested, k, name, record)
        return record
    job = lambda: _encode(_scored(nested, k, name, chosen))  # noqa: E731
    shared = (wait_once if wait else once)(
        storage, nested.study_name(f"{name}/score"), job, nested.sharing
    )
    return _decode(shared) if shared is not None else None


def _scored(nested: _NestedRun, k: int, name: str, chosen: Chosen) -> Record:
    """The row of a searched study; for an outer fold, its choice refitted on the training part
    and scored on the test fold; for the final search, the configuration to use from now on."""
    split = None if name == FINAL else nested.splits[k]
    row = dict(
        study=name,
        repeat=split.repeat if split is not None else -1,
        fold=split.fold if split is not None else -1,
        trials=chosen.finished,
        best_trial=chosen.trial,
        inner_best=chosen.value,
        params=json.dumps(plain(chosen.params)),
    )
    if split is None:
        log.info(
            "final search done: %d trials, best inner score %.4f", chosen.finished, chosen.value
        )
        best = dict(
            params=plain(chosen.params),
            hparams=plain(dict(chosen.settings.hparams)),
            training=chosen.settings.training.model_dump(mode="json"),
            inner_best=chosen.value,
        )
        return dict(row=row, best=best)
    plan = nested.plan
    train, test = nested.data.subset(split.train), nested.data.subset(split.test)
    frame, preds = _outer_fold(nested, train, test, split, chosen, nested.settings.seed + k)
    outer = frame.query(
        "variant == 'tuned' and task == @plan.target.task and metric == @plan.target.metric"
    )["value"]
    row["outer"] = float(outer.iloc[0]) if len(outer) else math.nan
    log.info(
        "outer fold %d of repeat %d done: %d trials, outer %s %.4f",
        split.fold,
        split.repeat,
        chosen.finished,
        plan.target.metric,
        row["outer"],
    )
    return dict(row=row, folds=frame, predictions=preds)


def _write_study(nested: _NestedRun, k: int, name: str, record: Record) -> None:
    """A scored study's files: best.yaml (final) or best_<study>.yaml and its tables."""
    assert nested.out is not None
    plan, row = nested.plan, record["row"]
    params = json.loads(row["params"])
    chosen = Chosen(
        params,
        configure(plan.model, nested.settings, params),
        row["inner_best"],
        row["best_trial"],
        row["trials"],
    )
    if name == FINAL:
        write_final_study(
            nested.out, plan.model, chosen, plan.target, nested.template, row, record["best"]
        )
        return
    tables = {"folds": record["folds"], "predictions": record["predictions"]}
    write_outer_study(
        nested.out,
        plan.model,
        chosen,
        plan.target,
        nested.template,
        nested.splits[k],
        row,
        tables,
    )


def _encode(record: Record) -> Record:
    """A record as JSON-ready values (tables as CSV text: exact floats, the run's own format)."""
    return {
        k: v.to_csv(index=False) if isinstance(v, pd.DataFrame) else v for k, v in record.items()
    }


def _decode(record: Record) -> Record:
    return {
        k: pd.read_csv(io.StringIO(v)) if k in ("folds", "predictions") else v
        for k, v in record.items()
    }


def _outer_fold(
    nested: _NestedRun,
    train: MultimodalDataset,
    test: MultimodalDataset,
    split: Split,
    chosen: Chosen,
    seed: int,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Refit the chosen configuration on the outer training part; score it on the test fold
    (and the untuned configuration beside it, same split and seed)."""
    from polyfuse.training.fit import fit_model

    model = nested.plan.model
    fitted = fit_model(model, train, chosen.settings.replace(seed=seed))
    rows = _fold_rows(fitted, test, train, split, "tuned")
    preds = _predictions(fitted, test, split).assign(variant="tuned")
    if nested.untuned:
        base = fit_model(model, train, nested.settings.quiet().replace(seed=seed))
        rows += _fold_rows(base, test, train, split, "untuned")
    return pd.DataFrame(rows), preds


def _study_tables(nested: _NestedRun, storage: Any) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every trial of every study, and each outer study's parameter importances."""
    import optuna

    names, seed = nested.studies, nested.settings.seed
    studies = {
        n: optuna.load_study(study_name=nested.study_name(n), storage=storage) for n in names
    }
    trials = pd.concat(
        [trials_frame(study, study=n) for n, study in studies.items()], ignore_index=True
    )
    imp = pd.DataFrame(
        [
            dict(study=n, param=p, importance=v)
            for n, study in studies.items()
            if n != FINAL
            for p, v in importances(study, seed).items()
        ],
        columns=["study", "param", "importance"],
    )
    return trials, imp


class _TrialProgress:
    """The progress bar over every search: trials done, best inner score, time to a timeout."""

    def __init__(
        self, bar: Progress, label: str, target: Target, trials: int, timeout: float | None, t0
    ) -> None:
        self.bar, self.label, self.target = bar, label, target
        self.trials, self.timeout, self.t0 = trials, timeout, t0
        self.name, self.done = "", 0

    def start(self, name: str, study: Any) -> None:
        """A search begins (its study may hold trials of an interrupted run)."""
        self.name, self.done = name, min(finished_trials(study), self.trials)
        self.bar.advance(self.done)

    def trial(self, study: Any, trial: Any) -> None:
        done = min(finished_trials(study), self.trials)
        self.bar.advance(done - self.done)
        self.done = done
        best = best_trial(study, self.target)
        text = f"{best.value:.3f}" if best is not None else "-"
        left = ""
        if self.timeout is not None:
            left = f", timeout in {max(0, self.timeout - (time.monotonic() - self.t0)):.0f} s"
        self.bar.describe(
            f"{self.label} {self.name}: trial {done}/{self.trials}, best inner "
            f"{self.target.metric} {text}{left}"
        )

    def finish(self) -> None:
        """A search ends, possibly early (timeout): its unrun trials count as done."""
        self.bar.advance(self.trials - self.done)


def _fold_rows(
    fitted: Any, test: MultimodalDataset, train: MultimodalDataset, split: Split, variant: str
) -> list[dict[str, Any]]:
    keys = dict(variant=variant, repeat=split.repeat, fold=split.fold)
    return [
        dict(keys, task=task, metric=k, value=v)
        for task, metrics in fitted.evaluate(test, train.targets).items()
        for k, v in metrics.items()
    ]


def _predictions(fitted: Any, test: MultimodalDataset, split: Split) -> pd.DataFrame:
    from polyfuse.training.cv import prediction_frame

    frames = [
        prediction_frame(test, split, task, scores) for task, scores in fitted.predict(test).items()
    ]
    return pd.concat(frames, ignore_index=True)


def _save(result: TuneResult, run: Path) -> None:
    """Tables and figures of a finished run, each written atomically."""
    from polyfuse.tuning.plots import plot_history, plot_importances

    save_tables(
        run,
        {
            "folds.csv": (result.folds, False),
            "summary.csv": (result.summary() if len(result.folds) else pd.DataFrame(), True),
            "chosen.csv": (result.chosen, False),
            "trials.csv": (result.trials, False),
            "predictions.csv": (result.predictions, False),
            "importances.csv": (result.importances, False),
        },
    )
    plot_history(result.trials, result.target, run / "history.png")
    if len(result.importances):
        plot_importances(result.importances, run / "importances.png")


__all__ = ["FINAL", "TuneResult", "tune"]
