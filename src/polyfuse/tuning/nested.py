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
from polyfuse.progress import Progress
from polyfuse.search_space import describe
from polyfuse.training.settings import FitSettings
from polyfuse.tuning.files import (
    open_run,
    plain,
    read_study,
    save_tables,
    write_final_study,
    write_outer_study,
)
from polyfuse.tuning.search import Chosen, SearchPlan, check_space, search_split
from polyfuse.tuning.space import apply_overrides, model_space
from polyfuse.tuning.study import (
    STUDY_FILE,
    best_trial,
    close_storage,
    finished_trials,
    importances,
    open_study,
    quiet_optuna,
    sqlite_storage,
    trials_frame,
)
from polyfuse.tuning.target import Target, resolve_target

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
    **hparams: Any,
) -> TuneResult:
    """Tune `model` on `data` by nested cross-validation (see the module docstring).

    `space` narrows or overrides the model's declared search space (`tune.space` of a config);
    `hparams` and `training` are the untuned configuration and the base of every trial.
    `timeout` (seconds) bounds the whole search, shared evenly by the outer folds still to do.
    With `out`, studies are stored in `out/study.db` and every table, figure and best
    configuration is written there; `resume=True` continues an interrupted run. The keywords
    are the documented API; the steps below share them as one `_NestedRun`.

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
    )
    if out is not None:
        run = open_run(Path(out), nested.record(), template, resume=resume, overwrite=overwrite)
        nested = dataclasses.replace(nested, out=run)
    return _tune(nested, timeout, progress)


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
    out: Path | None = None

    @property
    def studies(self) -> list[str]:
        return [f"r{s.repeat}f{s.fold}" for s in self.splits] + ([FINAL] if self.final else [])

    def record(self) -> dict[str, Any]:
        """What a resumed run must share with the run it continues (not trials nor timeout)."""
        plan, settings = self.plan, self.settings
        return dict(
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


@dataclass
class _Outcome:
    """What the studies gave so far: outer-fold tables, chosen rows, the final choice."""

    folds: list[pd.DataFrame] = field(default_factory=list)
    predictions: list[pd.DataFrame] = field(default_factory=list)
    chosen: list[dict[str, Any]] = field(default_factory=list)
    best: dict[str, Any] | None = None


def _tune(nested: _NestedRun, timeout: float | None, progress: bool) -> TuneResult:
    """Every study in turn, then the tables of all of them; the studies' storage is closed
    however the run ends."""
    import optuna

    if nested.out is not None:
        storage = sqlite_storage(nested.out / STUDY_FILE)
    else:
        storage = optuna.storages.InMemoryStorage()
    start = time.perf_counter()
    try:
        with quiet_optuna():
            outcome = _search_studies(nested, storage, timeout, progress)
        trials, imp = _study_tables(nested, storage)
    finally:
        close_storage(storage)
    result = TuneResult(
        model=nested.plan.model,
        target=nested.plan.target,
        folds=_concat(outcome.folds),
        chosen=pd.DataFrame(outcome.chosen),
        trials=trials,
        predictions=_concat(outcome.predictions),
        best=outcome.best,
        seconds=time.perf_counter() - start,
        out=nested.out,
        importances=imp,
    )
    if nested.out is not None:
        _save(result, nested.out)
    return result


def _concat(frames: list[pd.DataFrame]) -> pd.DataFrame:
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def _search_studies(
    nested: _NestedRun, storage: Any, timeout: float | None, progress: bool
) -> _Outcome:
    """Each outer fold's search and refit, then the final search; a study an earlier run
    finished is read back instead. `timeout` is shared evenly by the studies still to do."""
    outcome = _Outcome()
    names, trials, label = nested.studies, nested.plan.trials, f"tune {nested.plan.model}"
    t0 = time.monotonic()
    with Progress(progress, eta=True) as bar:
        bar.add(label, len(names) * trials)
        shown = _TrialProgress(bar, label, nested.plan.target, trials, timeout, t0)
        for k, name in enumerate(names):
            if _restore(nested, name, outcome):
                bar.advance(trials)
                continue
            deadline = None
            if timeout is not None:
                left = timeout - (time.monotonic() - t0)
                deadline = time.monotonic() + max(0.0, left) / (len(names) - k)
            _run_study(nested, storage, k, name, deadline, shown, outcome)
    return outcome


def _restore(nested: _NestedRun, name: str, outcome: _Outcome) -> bool:
    """Whether an earlier run finished study `name` (searched and scored); its results are
    added to `outcome` then."""
    if not nested.resume or nested.out is None:
        return False
    saved = read_study(nested.out, name, nested.plan.trials)
    if saved is None:
        return False
    outcome.chosen.append(saved["row"])
    if name == FINAL:
        outcome.best = saved["best"]
    else:
        outcome.folds.append(saved["folds"])
        outcome.predictions.append(saved["predictions"])
    return True


def _run_study(
    nested: _NestedRun,
    storage: Any,
    k: int,
    name: str,
    deadline: float | None,
    shown: _TrialProgress,
    outcome: _Outcome,
) -> None:
    """Search study `name` (the outer split `k`, or all samples), then score its choice."""
    split = None if name == FINAL else nested.splits[k]
    train = nested.data if split is None else nested.data.subset(split.train)
    shown.start(name, open_study(storage, name, nested.plan.target, nested.plan.prune))
    chosen = search_split(
        nested.plan,
        train,
        nested.settings,
        storage=storage,
        study_name=name,
        key=k,  # the final search's key is len(splits): it comes after every outer fold
        deadline=deadline,
        on_trial=shown.trial,
    )
    shown.finish()
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
        _final_choice(nested, chosen, row, outcome)
    else:
        _outer_choice(nested, split, k, train, chosen, row, outcome)


def _final_choice(
    nested: _NestedRun, chosen: Chosen, row: dict[str, Any], outcome: _Outcome
) -> None:
    """The final search's choice: the configuration to use from now on (`best.yaml`)."""
    outcome.best = dict(
        params=plain(chosen.params),
        hparams=plain(dict(chosen.settings.hparams)),
        training=chosen.settings.training.model_dump(mode="json"),
        inner_best=chosen.value,
    )
    outcome.chosen.append(row)
    if nested.out is not None:
        plan = nested.plan
        write_final_study(
            nested.out, plan.model, chosen, plan.target, nested.template, row, outcome.best
        )
    log.info("final search done: %d trials, best inner score %.4f", chosen.finished, chosen.value)


def _outer_choice(
    nested: _NestedRun,
    split: Split,
    i: int,
    train: MultimodalDataset,
    chosen: Chosen,
    row: dict[str, Any],
    outcome: _Outcome,
) -> None:
    """Refit an outer fold's choice on its training part and score it on its test fold."""
    plan = nested.plan
    test = nested.data.subset(split.test)
    frame, preds = _outer_fold(nested, train, test, split, chosen, nested.settings.seed + i)
    outer = frame.query(
        "variant == 'tuned' and task == @plan.target.task and metric == @plan.target.metric"
    )["value"]
    row["outer"] = float(outer.iloc[0]) if len(outer) else math.nan
    outcome.folds.append(frame)
    outcome.predictions.append(preds)
    outcome.chosen.append(row)
    if nested.out is not None:
        tables = {"folds": frame, "predictions": preds}
        write_outer_study(
            nested.out, plan.model, chosen, plan.target, nested.template, split, row, tables
        )
    log.info(
        "outer fold %d of repeat %d done: %d trials, outer %s %.4f",
        split.fold,
        split.repeat,
        chosen.finished,
        plan.target.metric,
        row["outer"],
    )


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
    studies = {n: optuna.load_study(study_name=n, storage=storage) for n in names}
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
