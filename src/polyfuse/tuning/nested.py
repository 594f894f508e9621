"""Hyper-parameter search inside nested cross-validation: the reported score is the outer folds'.

The protocol, for each outer split of `kfold(data, folds, repeats, seed)`:

1. **Search** on the outer *training* part only. optuna's TPE sampler proposes a configuration
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
`all` for the final search), stored in one SQLite file when a run directory is given. Before
each trial the sampler is re-seeded from (seed, study, number of finished trials), so the same
seed gives the same trials, and a resumed study proposes exactly what the uninterrupted one
would have: finished trials (complete, pruned, or failed with a non-finite score) are counted
and only the remainder is run; a trial cut off by an interruption is run again.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from polyfuse.config import ExperimentConfig, PreprocessConfig, TrainingConfig
from polyfuse.data.dataset import MultimodalDataset
from polyfuse.data.splits import Split, kfold
from polyfuse.errors import ConfigError, DataError, require
from polyfuse.io import atomic_write, prepare_run_dir, write_text
from polyfuse.progress import Progress
from polyfuse.search_space import Dimension, corner, describe, suggest
from polyfuse.tuning.space import apply_overrides, model_space, split_params

STUDY_FILE = "study.db"
FINAL = "all"  # the study name of the final search on all samples
PRUNER_STARTUP = 5  # trials completed before the median pruner may stop one


@dataclass(frozen=True)
class Target:
    """What the search optimises: one metric of one task, and in which direction."""

    task: str
    metric: str
    direction: str  # "maximize" or "minimize"

    def better(self, a: float, b: float) -> bool:
        return a > b if self.direction == "maximize" else a < b


def resolve_target(
    data: MultimodalDataset,
    task: str | None = None,
    metric: str | None = None,
    direction: str | None = None,
) -> Target:
    """The task (default: the first), its primary metric (c_index, auroc or rmse) unless given,
    and the direction that metric is better in unless given."""
    from polyfuse.errors import did_you_mean
    from polyfuse.tasks.metric_facts import PRIMARY, higher_is_better

    if not data.tasks:
        raise DataError("tuning needs a dataset with at least one task")
    task = task or next(iter(data.tasks))
    if task not in data.tasks:
        raise ConfigError(
            f"tune.task: no task '{task}'{did_you_mean(task, data.tasks)}; "
            f"the tasks are {list(data.tasks)}"
        )
    metric = metric or PRIMARY[data.tasks[task].type]
    if direction is None:
        direction = "maximize" if higher_is_better(metric) else "minimize"
    if direction not in ("maximize", "minimize"):
        raise ConfigError(f"tune.direction must be maximize or minimize, got '{direction}'")
    return Target(task, metric, direction)


@dataclass
class Chosen:
    """The outcome of one search: the best trial's values and the configuration they make."""

    params: dict[str, Any]
    hparams: dict[str, Any]
    training: TrainingConfig
    value: float  # the best mean inner score: selection-biased, never the reported score
    trial: int | None
    finished: int

    def as_dict(self) -> dict[str, Any]:
        return dict(params=self.params, value=self.value, trial=self.trial, finished=self.finished)


def configure(
    model: str,
    base_hparams: Mapping[str, Any],
    base_training: TrainingConfig,
    params: Mapping[str, Any],
) -> tuple[dict[str, Any], TrainingConfig]:
    """The model hyper-parameters and training settings of sampled `params` laid over the base
    configuration (sampled values win). Training settings are validated like a config's."""
    from pydantic import ValidationError

    model_params, train_params = split_params(model, params)
    values = {**base_training.model_dump(include=base_training.model_fields_set), **train_params}
    values["progress"] = False
    try:
        training = TrainingConfig(**values)
    except ValidationError as exc:
        bad = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"a sampled training setting is invalid ({bad})") from None
    return {**dict(base_hparams), **model_params}, training


def check_space(
    model: str, space: Mapping[str, Dimension], training: TrainingConfig | None = None
) -> None:
    """Fail before any training when a range lets a training setting leave its valid values."""
    for side in ("low", "high"):
        configure(model, {}, training or TrainingConfig(), corner(space, side))


def inner_score(
    fitted: Any, val: MultimodalDataset, fit: MultimodalDataset, target: Target
) -> float:
    """The target metric of a model fitted on `fit`, on the inner validation fold `val`."""
    metrics = fitted.evaluate(val, fit.targets)[target.task]
    if target.metric not in metrics:
        raise ConfigError(
            f"tune.metric: task '{target.task}' reports no metric '{target.metric}'; "
            f"it reports {sorted(metrics)}"
        )
    return float(metrics[target.metric])


def _nanmean(values: Sequence[float]) -> float:
    finite = [v for v in values if math.isfinite(v)]
    return float(np.mean(finite)) if finite else math.nan


def _finished(study: Any) -> int:
    """Trials that need not run again: complete, pruned, or failed on their own merit (a
    non-finite score). A trial cut off by an interruption is not counted."""
    from optuna.trial import TrialState

    finished = (TrialState.COMPLETE, TrialState.PRUNED)
    return sum(
        t.state in finished or (t.state == TrialState.FAIL and "failed" in t.user_attrs)
        for t in study.get_trials(deepcopy=False)
    )


def _sampler(seed: int, key: int, done: int, trials: int) -> Any:
    """A TPE sampler seeded from (seed, study, finished trials): resumable and reproducible."""
    import optuna

    state = np.random.SeedSequence([seed, key, done]).generate_state(1)[0]
    startup = max(3, min(10, trials // 3))  # random trials before TPE models the history
    return optuna.samplers.TPESampler(
        seed=int(state), n_startup_trials=startup, constant_liar=False
    )


def _best(study: Any, target: Target) -> Any | None:
    from optuna.trial import TrialState

    best = None
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        if t.value is None or not math.isfinite(t.value):
            continue
        if best is None or target.better(t.value, best.value):
            best = t
    return best


def sqlite_storage(path: Path) -> Any:
    """An optuna storage in the SQLite file `path`.

    Write-ahead logging with normal syncing: every commit survives a crash or a kill of the
    process (a power cut may lose the last ones), and costs ~0.02 ms instead of ~15 ms with
    SQLite's default full sync, which matters for many short trials.
    """
    import sqlite3

    optuna = require("optuna", "tune")
    path = Path(path).resolve()

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


def search_split(
    model: str,
    train: MultimodalDataset,
    *,
    space: Mapping[str, Dimension],
    target: Target,
    trials: int,
    base_hparams: Mapping[str, Any] | None = None,
    training: TrainingConfig | None = None,
    preprocess: PreprocessConfig | None = None,
    task_weights: dict[str, float] | None = None,
    inner_folds: int = 3,
    seed: int = 0,
    key: int = 0,
    storage: Any = None,
    study_name: str = "search",
    prune: bool = True,
    deadline: float | None = None,
    on_trial: Callable[[Any, Any], None] | None = None,
) -> Chosen:
    """Search `space` by inner cross-validation on `train`; the best configuration found.

    Runs trials until `trials` are finished in the study (counting those of an earlier, resumed
    run) or `deadline` (a `time.monotonic()` value) passes. A trial that raises (a sampled
    configuration that does not build, an interruption) is marked failed and the error goes on.
    """
    optuna = require("optuna", "tune")
    from optuna.trial import TrialState

    from polyfuse.training.fit import train_model

    training = training or TrainingConfig()
    base_hparams = dict(base_hparams or {})
    inner = kfold(train, inner_folds, 1, seed, stratify=target.task)
    study = open_study(storage, study_name, target, prune)

    def objective(trial: Any) -> float:
        params = suggest(trial, space)
        trial.set_user_attr("params", params)
        hparams, config = configure(model, base_hparams, training, params)
        scores: list[float] = []
        for j, split in enumerate(inner):
            fit, val = train.subset(split.train), train.subset(split.test)
            fitted = train_model(
                model,
                fit,
                hparams=hparams,
                training=config,
                preprocess=preprocess,
                task_weights=task_weights,
                seed=seed + j,
            )
            scores.append(inner_score(fitted, val, fit, target))
            trial.set_user_attr("inner", scores)
            running = _nanmean(scores)
            if math.isfinite(running):
                trial.report(running, j)
                # after the last inner fold there is nothing left to save: the trial completes
                if j < len(inner) - 1 and trial.should_prune():
                    raise optuna.TrialPruned()
        return _nanmean(scores)

    while True:
        done = _finished(study)
        if done >= trials or (deadline is not None and time.monotonic() >= deadline):
            break
        study.sampler = _sampler(seed, key, done, trials)
        trial = study.ask()
        try:
            value = objective(trial)
        except optuna.TrialPruned:
            study.tell(trial, state=TrialState.PRUNED)
        except BaseException:
            study.tell(trial, state=TrialState.FAIL)
            raise
        else:
            if math.isfinite(value):
                study.tell(trial, value)
            else:
                trial.set_user_attr("failed", "no finite inner score")
                study.tell(trial, state=TrialState.FAIL)
        if on_trial is not None:
            on_trial(study, trial)

    best = _best(study, target)
    params = dict(best.user_attrs["params"]) if best is not None else {}
    hparams, config = configure(model, base_hparams, training, params)
    return Chosen(
        params,
        hparams,
        config,
        best.value if best is not None else math.nan,
        best.number if best is not None else None,
        _finished(study),
    )


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
    """fANOVA importance of each searched parameter (empty when the study is too small)."""
    import optuna

    evaluator = optuna.importance.FanovaImportanceEvaluator(seed=seed)
    try:
        return dict(optuna.importance.get_param_importances(study, evaluator=evaluator))
    except (ValueError, RuntimeError):  # fewer than 2 complete trials, or nothing varied
        return {}


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


def config_yaml(model: str, chosen: Chosen, template: ExperimentConfig | None, header: str) -> str:
    """A ready-to-use experiment YAML of a chosen configuration (model + full training).

    Training is written as the search used it, the model's recommended settings included
    (`training_defaults`), so loading the file trains exactly that configuration. Without a
    template config only the model and training sections are written.
    """
    import yaml

    from polyfuse.training.fit import with_model_defaults

    training = with_model_defaults(model, chosen.hparams, chosen.training)
    progress = template.training.progress if template is not None else True
    training_dict = training.model_dump(mode="json") | {"progress": progress}
    model_dict = {"name": model, "params": _plain(chosen.hparams)}
    if template is None:
        raw: dict[str, Any] = {"model": model_dict, "training": training_dict}
    else:
        raw = template.model_dump(mode="json")
        raw["name"] = f"{template.name}-tuned"
        raw["model"] = model_dict
        raw["training"] = training_dict
    lines = "".join(f"# {line}\n" if line else "#\n" for line in header.splitlines())
    return lines + yaml.safe_dump(raw, sort_keys=False)


def _plain(value: Any) -> Any:
    """YAML-safe: tuples to lists, numpy scalars to Python numbers."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def _settings(**kw: Any) -> dict[str, Any]:
    """What a resumed run must share with the run it continues (not trials nor timeout)."""
    return json.loads(json.dumps(kw, default=str))


def _check_resume(out: Path, settings: dict[str, Any]) -> None:
    path = out / "settings.json"
    if not path.is_file():
        return
    old = json.loads(path.read_text())
    changed = sorted(k for k in set(old) | set(settings) if old.get(k) != settings.get(k))
    if changed:
        raise ConfigError(
            f"{out} holds a search with different settings ({', '.join(changed)}); resume it "
            "with the same settings (only --trials and --timeout may change), or pass "
            "--overwrite to start again"
        )


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
    configuration is written there; `resume=True` continues an interrupted run.

    Example:
        >>> import polyfuse as pf  # doctest: +SKIP
        >>> data = pf.datasets.load("tcga-acc")  # doctest: +SKIP
        >>> result = pf.tune("early", data, trials=15, folds=5, inner_folds=3)  # doctest: +SKIP
        >>> result.summary()  # outer-fold c-index, tuned and untuned  # doctest: +SKIP
    """
    optuna = require("optuna", "tune")
    if resume and overwrite:
        raise ConfigError("give one of --resume and --overwrite, not both")
    if trials < 1:
        raise ConfigError(f"trials must be >= 1, got {trials}")
    training = training or TrainingConfig()
    preprocess = preprocess or PreprocessConfig()
    resolved = apply_overrides(model, model_space(model), space)
    check_space(model, resolved, training)
    target = resolve_target(data, task, metric, direction)
    splits = splits if splits is not None else kfold(data, folds, repeats, seed, target.task)

    storage: Any
    run: Path | None = None
    if out is not None:
        run = prepare_run_dir(Path(out), overwrite=overwrite, resume=resume)
        settings = _settings(
            model=model,
            data=data.name,
            samples=len(data),
            splits=[[s.repeat, s.fold, len(s.train), len(s.test)] for s in splits],
            inner_folds=inner_folds,
            seed=seed,
            space=describe(resolved),
            hparams=hparams,
            training=training.model_dump(mode="json"),
            preprocess=preprocess.model_dump(mode="json"),
            task_weights=task_weights,
            target=[target.task, target.metric, target.direction],
            prune=prune,
            final=final,
            untuned=untuned,
        )
        if resume:
            _check_resume(run, settings)
        else:
            for suffix in ("", "-wal", "-shm"):  # --overwrite: a fresh study
                (run / f"{STUDY_FILE}{suffix}").unlink(missing_ok=True)
            for old in (run / "parts").glob("*") if (run / "parts").is_dir() else []:
                old.unlink()
        write_text(run / "settings.json", json.dumps(settings, indent=2))
        if template is not None:
            from polyfuse.config import dump_config

            write_text(run / "config.yaml", dump_config(template))
        storage = sqlite_storage(run / STUDY_FILE)
    else:
        storage = optuna.storages.InMemoryStorage()

    names = [f"r{s.repeat}f{s.fold}" for s in splits] + ([FINAL] if final else [])
    start = time.perf_counter()
    t0 = time.monotonic()
    rows: list[pd.DataFrame] = []
    preds: list[pd.DataFrame] = []
    chosen_rows: list[dict[str, Any]] = []
    best: dict[str, Any] | None = None
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    bar = Progress(progress, eta=True)
    try:
        with bar:
            bar.add(f"tune {model}", len(names) * trials)
            shown = _TrialProgress(bar, f"tune {model}", target, trials, timeout, t0)
            for k, name in enumerate(names):
                deadline = None
                if timeout is not None:
                    left = timeout - (time.monotonic() - t0)
                    deadline = time.monotonic() + max(0.0, left) / (len(names) - k)
                part = run / "parts" / f"{name}.chosen.json" if run is not None else None
                saved = json.loads(part.read_text()) if resume and part and part.is_file() else {}
                if saved.get("row", {}).get("trials", 0) >= trials:  # searched and scored
                    chosen_rows.append(saved["row"])
                    if name == FINAL:
                        best = saved["best"]
                    else:
                        rows.append(pd.read_csv(run / "parts" / f"{name}.folds.csv"))
                        preds.append(pd.read_csv(run / "parts" / f"{name}.predictions.csv"))
                    bar.advance(trials)
                    continue

                if name == FINAL:
                    train, test, split, i = data, None, None, len(splits)
                else:
                    i = k
                    split = splits[i]
                    train, test = data.subset(split.train), data.subset(split.test)
                shown.start(name, open_study(storage, name, target, prune))
                chosen = search_split(
                    model,
                    train,
                    space=resolved,
                    target=target,
                    trials=trials,
                    base_hparams=hparams,
                    training=training,
                    preprocess=preprocess,
                    task_weights=task_weights,
                    inner_folds=inner_folds,
                    seed=seed,
                    key=i,
                    storage=storage,
                    study_name=name,
                    prune=prune,
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
                    params=json.dumps(_plain(chosen.params)),
                )
                if split is None:  # the final search on all samples
                    best = dict(
                        params=_plain(chosen.params),
                        hparams=_plain(chosen.hparams),
                        training=chosen.training.model_dump(mode="json"),
                        inner_best=chosen.value,
                    )
                    if run is not None:
                        text = config_yaml(model, chosen, template, _final_header(chosen, target))
                        write_text(run / "best.yaml", text)
                        write_text(part, json.dumps(dict(row=row, best=best), indent=2))
                    chosen_rows.append(row)
                    continue
                fold_rows, fold_preds = _outer_fold(
                    model,
                    train,
                    test,
                    split,
                    chosen,
                    hparams=hparams,
                    training=training,
                    preprocess=preprocess,
                    task_weights=task_weights,
                    seed=seed + i,
                    untuned=untuned,
                )
                frame = pd.DataFrame(fold_rows)
                outer = frame.query(
                    "variant == 'tuned' and task == @target.task and metric == @target.metric"
                )["value"]
                row["outer"] = float(outer.iloc[0]) if len(outer) else math.nan
                rows.append(frame)
                preds.append(fold_preds)
                chosen_rows.append(row)
                if run is not None:
                    header = _fold_header(chosen, target, split, row["outer"])
                    write_text(
                        run / f"best_{name}.yaml", config_yaml(model, chosen, template, header)
                    )
                    for table, f in (("folds", frame), ("predictions", fold_preds)):
                        path = run / "parts" / f"{name}.{table}.csv"
                        atomic_write(path, lambda p, f=f: f.to_csv(p, index=False))
                    write_text(part, json.dumps(dict(row=row), indent=2))  # the marker, last
    except BaseException:
        close_storage(storage)
        raise
    finally:
        optuna.logging.set_verbosity(verbosity)

    trials_table = pd.concat(
        [trials_frame(optuna.load_study(study_name=n, storage=storage), study=n) for n in names],
        ignore_index=True,
    )
    imp = pd.DataFrame(
        [
            dict(study=n, param=p, importance=v)
            for n in names
            if n != FINAL
            for p, v in importances(optuna.load_study(study_name=n, storage=storage), seed).items()
        ],
        columns=["study", "param", "importance"],
    )
    close_storage(storage)
    result = TuneResult(
        model=model,
        target=target,
        folds=pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(),
        chosen=pd.DataFrame(chosen_rows),
        trials=trials_table,
        predictions=pd.concat(preds, ignore_index=True) if preds else pd.DataFrame(),
        best=best,
        seconds=time.perf_counter() - start,
        out=run,
        importances=imp,
    )
    if run is not None:
        _save(result, run)
    return result


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
        self.name, self.done = name, min(_finished(study), self.trials)
        self.bar.advance(self.done)

    def trial(self, study: Any, trial: Any) -> None:
        done = min(_finished(study), self.trials)
        self.bar.advance(done - self.done)
        self.done = done
        best = _best(study, self.target)
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


def _outer_fold(
    model: str,
    train: MultimodalDataset,
    test: MultimodalDataset,
    split: Split,
    chosen: Chosen,
    *,
    hparams: dict[str, Any],
    training: TrainingConfig,
    preprocess: PreprocessConfig,
    task_weights: dict[str, float] | None,
    seed: int,
    untuned: bool,
) -> tuple[list[dict[str, Any]], pd.DataFrame]:
    """Refit the chosen configuration on the outer training part; score it on the test fold
    (and the untuned configuration beside it, same split and seed)."""
    from polyfuse.training.fit import train_model

    fitted = train_model(
        model,
        train,
        hparams=chosen.hparams,
        training=chosen.training,
        preprocess=preprocess,
        task_weights=task_weights,
        seed=seed,
    )
    rows = _fold_rows(fitted, test, train, split, "tuned")
    preds = _predictions(fitted, test, split).assign(variant="tuned")
    if untuned:
        base = train_model(
            model,
            train,
            hparams=hparams,
            training=training.model_copy(update={"progress": False}),
            preprocess=preprocess,
            task_weights=task_weights,
            seed=seed,
        )
        rows += _fold_rows(base, test, train, split, "untuned")
    return rows, preds


def _fold_header(chosen: Chosen, target: Target, split: Split, outer: float) -> str:
    return (
        f"chosen by `polyfuse tune` inside outer fold {split.fold} of repeat {split.repeat}\n"
        f"({chosen.finished} trials on its {len(split.train)} training samples).\n"
        f"outer-fold {target.metric} of this configuration: {outer:.4f}\n"
        f"best inner {target.metric}: {chosen.value:.4f} (selection-biased; not a performance)"
    )


def _final_header(chosen: Chosen, target: Target) -> str:
    return (
        "chosen by `polyfuse tune` on all samples "
        f"({chosen.finished} trials, inner cross-validation).\n"
        "Its expected performance is the nested-CV estimate in summary.csv (outer folds),\n"
        f"not the search's own best inner {target.metric} ({chosen.value:.4f}), which the\n"
        "selection biases upwards."
    )


def _save(result: TuneResult, run: Path) -> None:
    """Tables and figures of a finished run, each written atomically."""
    from polyfuse.tuning.plots import plot_history, plot_importances

    tables = {
        "folds.csv": (result.folds, False),
        "summary.csv": (result.summary() if len(result.folds) else pd.DataFrame(), True),
        "chosen.csv": (result.chosen, False),
        "trials.csv": (result.trials, False),
        "predictions.csv": (result.predictions, False),
        "importances.csv": (result.importances, False),
    }
    for name, (frame, index) in tables.items():
        atomic_write(run / name, lambda p, f=frame, i=index: f.to_csv(p, index=i))
    plot_history(result.trials, result.target, run / "history.png")
    if len(result.importances):
        plot_importances(result.importances, run / "importances.png")


__all__ = [
    "Chosen",
    "Target",
    "TuneResult",
    "configure",
    "inner_score",
    "resolve_target",
    "search_split",
    "trials_frame",
    "tune",
]
