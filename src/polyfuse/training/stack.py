"""`stack`: a stacked ensemble ("super learner") of polyfuse models and classical floors.

On a training part, every member's out-of-fold scores are collected over inner folds
(stratified like every polyfuse split); a meta-learner with non-negative weights is fitted on
them. A new patient (an outer test fold) gets each member's mean score over its inner-fold fits
("bagged", as AutoGluon's stacks do), and those are combined with the weights: the
meta-learner reads scores from the very fits it was fitted on, and each member is an average of
several fits. `refit: true` instead refits every member on the whole training part (one fit
per member to keep and run, the scheme before 2026-12-04). Nothing of an outer test fold is
seen before it is scored.

The meta-learner reads each member's score z-scored with the mean and sd of its out-of-fold
scores (a risk for survival, the logit of the probability for a binary task, the prediction
for regression), so the weights of members on different scales compare:

* survival: a Cox model on the z-scored risks (Breslow's partial likelihood per event), the
  combined risk is Σ w_j z_j;
* binary: logistic regression on the z-scored logits with an intercept, the combined
  probability is σ(b + Σ w_j z_j);
* regression: non-negative least squares with an intercept (scikit-learn's `positive=True`).

The weights are bounded below by 0 (a member can be ignored, never turned upside down), and
survival and binary weights carry a ridge penalty `penalty · Σ w_j²` (0.01 by default, on the
per-event / per-sample loss) that keeps them finite when members agree perfectly. A floor that
cannot be fitted on an inner fold or the whole part (`FloorFailed`) leaves the stack of that part,
with a `FallbackWarning`; its weight there is NaN.

The stack runs in `polyfuse benchmark` (an entry of the default suite), in `polyfuse cv`
(`model: {name: stack, params: <options>}`), and `polyfuse fit` saves one fitted on every
sample (`fit_stack`, `FittedStack`) for `polyfuse predict` and `serve`.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from polyfuse.data.contract import InputContract
from polyfuse.data.dataset import MultimodalDataset
from polyfuse.data.pooled import numeric_modalities
from polyfuse.data.preprocess import Preprocessor
from polyfuse.data.splits import Split, kfold
from polyfuse.errors import ConfigError, DataError, FallbackWarning
from polyfuse.io import write_text
from polyfuse.training.floors import (
    CLASSICAL,
    FittedFloor,
    FloorFailed,
    FoldData,
    make_fold,
    resolve_floor,
    risk_task,
    score_objective,
)
from polyfuse.training.settings import FitSettings

if TYPE_CHECKING:
    from polyfuse.tasks.objective import TaskObjective
    from polyfuse.training.cv import FoldFitter, FoldResult
    from polyfuse.training.fit import FittedModel

DEFAULT_MEMBERS: dict[str, tuple[str, ...]] = {
    "survival": ("late", "coxnet[all]", "rsf[all]", "late-cox"),
    "binary": ("late", "logreg[all]", "hgb[all]"),
    "regression": ("late", "ridge[all]", "hgb[all]"),
}
"""Members when none are named: a fast fusion model and the task type's floors (without a
tabular modality in memory, which floors need: `late` and `early`)."""
SCORE = {"survival": "risk", "binary": "prob", "regression": "pred"}
META = ("fit", "mean")
"""fit: a weight per member; mean: one weight shared by all (the members' mean z-score)."""
EPS = 1e-6
INNER_FOLDS = 5
"""The inner folds of the members' out-of-fold scores: 5, not 3, so that each member is scored
after fitting on 80% of the training part, closer to its refit on all of it. Chosen by
leave-one-cohort-out over the four bundled cohorts (`benchmarks/stack_options.py`): each held-out
cohort's best variant on the other three had 5 inner folds, and 5 is no worse than 3 on any."""


@dataclass(frozen=True)
class StackPlan:
    """What to stack and how: member names (polyfuse models or classical floors such as
    `coxnet[all]`), the task, the inner folds, the meta-learner's ridge penalty, and each
    polyfuse member's hyper-parameters."""

    members: tuple[str, ...]
    task: str
    inner_folds: int = INNER_FOLDS
    penalty: float = 0.01
    meta: str = "fit"
    hparams: dict[str, dict[str, Any]] = field(default_factory=dict)
    stratify: bool = True
    """Survival: the Cox meta-learner's risk sets stay within an inner fold, whose members were
    fitted together, so that one fit's scale or offset is never compared with another's
    (False: one pooled Cox model, as before 2026-12-04; `benchmarks/stack_options.py`)."""
    refit: bool = False
    """False: a member scores new patients with the mean of its inner-fold fits, the fits whose
    out-of-fold scores the meta-learner was fitted on. Chosen by leave-one-cohort-out over the
    four bundled cohorts, where every held-out cohort would get it (`docs/defaults.md`); it
    also needs no further fit. True: each member refitted on all of the training part, one fit
    to keep and run per member instead of `inner_folds`."""


def stack_plan(
    data: MultimodalDataset,
    members: Sequence[str] | None = None,
    *,
    task: str | None = None,
    inner_folds: int = INNER_FOLDS,
    penalty: float = 0.01,
    meta: str = "fit",
    hparams: dict[str, dict[str, Any]] | None = None,
    stratify: bool = True,
    refit: bool = False,
) -> StackPlan:
    """A checked plan: the task is survival, binary or regression, every member is a
    registered model or a floor serving that task, there are at least two, and `hparams` name
    network members and their hyper-parameters."""
    from polyfuse.models.registry import check_hparams

    task = task or next(iter(data.tasks))
    if task not in data.tasks:
        raise ConfigError(f"stack: unknown task '{task}'; the data have {list(data.tasks)}")
    kind = data.tasks[task].type
    if kind not in DEFAULT_MEMBERS:
        raise ConfigError(
            f"stack: task '{task}' is {kind}; stacking combines survival, binary or regression "
            "scores"
        )
    names = tuple(members) if members else _default_members(data, kind)
    if len(set(names)) < 2:
        raise ConfigError(f"stack: give at least two different members, not {list(names)}")
    for name in names:
        if _floor_name(name) in CLASSICAL:
            floor, _, display = resolve_floor(name, data)
            if kind not in floor.task_types:
                raise ConfigError(f"stack member '{display}' does not serve {kind} tasks")
        else:  # a did-you-mean for a misspelt model or hyper-parameter
            check_hparams(name, (hparams or {}).get(name, {}))
    for name in hparams or {}:
        if name not in names or _floor_name(name) in CLASSICAL:
            raise ConfigError(
                f"stack: member_hparams name '{name}', which is not a network member of the "
                f"stack; its members are {list(names)}"
            )
    if inner_folds < 2:
        raise ConfigError(f"stack: inner_folds must be at least 2, not {inner_folds}")
    if meta not in META:
        raise ConfigError(f"stack: meta is 'fit' or 'mean', not {meta!r}")
    return StackPlan(names, task, inner_folds, penalty, meta, dict(hparams or {}), stratify, refit)


OPTIONS = (
    "members",
    "task",
    "inner_folds",
    "penalty",
    "meta",
    "member_hparams",
    "stratify",
    "refit",
)
"""What a stack's options (`model.params` of `cv`, `hparams["stack"]` of a benchmark) may
say; `member_hparams` maps a network member to its hyper-parameters."""


def check_options(options: dict[str, Any]) -> None:
    """Every option a stack knows, with a did-you-mean; needs no data and imports nothing."""
    from polyfuse.errors import did_you_mean

    for key in options:
        if key not in OPTIONS:
            raise ConfigError(
                f"stack: unknown option '{key}'{did_you_mean(key, OPTIONS)}; options: {OPTIONS}"
            )
    hparams = options.get("member_hparams", {})
    if not isinstance(hparams, dict) or not all(isinstance(v, dict) for v in hparams.values()):
        raise ConfigError(
            "stack: member_hparams maps each network member to its hyper-parameters, e.g. "
            f"{{late: {{dim: 32}}}}, not {hparams!r}"
        )


def plan_from_options(data: MultimodalDataset, options: dict[str, Any]) -> StackPlan:
    """`stack_plan` from a stack's options, every unknown option refused with a did-you-mean."""
    check_options(options)
    rest = {k: v for k, v in options.items() if k != "member_hparams"}
    return stack_plan(data, hparams=options.get("member_hparams"), **rest)


def _default_members(data: MultimodalDataset, kind: str) -> tuple[str, ...]:
    if numeric_modalities(data):
        return DEFAULT_MEMBERS[kind]
    return ("late", "early")


def _floor_name(name: str) -> str:
    return name.split("[", 1)[0].strip()


def fit_stack(
    data: MultimodalDataset,
    plan: StackPlan,
    settings: FitSettings,
    *,
    repeat: int = 0,
    fold: int = 0,
) -> FittedStack:
    """The stack fitted on every sample of `data`: its members' fits (`fit_members`) and the
    meta-learner on their out-of-fold scores."""
    oof, members = fit_members(data, plan, settings, repeat=repeat, fold=fold)
    kind = data.tasks[plan.task].type
    used = [j for j, m in enumerate(plan.members) if m in members]
    y = data.targets[plan.task]
    known = ~np.isnan(y.reshape(len(y), -1)).any(1)
    strata = inner_fold_ids(data, plan, settings.seed)[known] if plan.stratify else None
    scores = oof[known][:, used]
    meta, centre, scale = fit_meta_on_scores(
        plan.meta, kind, scores, y[known], plan.penalty, strata
    )
    return FittedStack(plan, kind, members, meta, centre, scale, _contract(data, plan.task))


def fit_members(
    data: MultimodalDataset,
    plan: StackPlan,
    settings: FitSettings,
    *,
    repeat: int = 0,
    fold: int = 0,
) -> tuple[np.ndarray, dict[str, list[FittedModel | FittedFloor]]]:
    """The members' out-of-fold scores of every sample on inner folds `(n, M)`, and the fits
    each member scores new patients with: its inner-fold fits, or with `plan.refit` one fit on
    all of `data` (`repeat` and `fold` name the outer split in messages and seed its floors; a
    progress bar counts the fits when `settings` asks for one). A member that cannot be fitted
    on one of them is left out of the fitted ones (its column stays NaN), with a warning."""
    from polyfuse.progress import Progress

    everything = Split(repeat, fold, np.arange(len(data)), np.arange(0))
    parts = _inner_splits(data, plan, settings.seed) + ([everything] if plan.refit else [])
    oof = np.full((len(data), len(plan.members)), np.nan)
    fits: dict[str, list[FittedModel | FittedFloor]] = {m: [] for m in plan.members}
    failed: dict[str, str] = {}
    with Progress(settings.training.progress) as bar:
        bar.add("stack", len(parts) * len(plan.members))
        for part in parts:
            # the floors of one split share its preprocessing and per-modality Cox fits
            floors = functools.cache(
                functools.partial(make_fold, data, part, plan.task, settings.seed)
            )
            for j, member in enumerate(plan.members):
                bar.advance()
                if member in failed:
                    continue
                try:
                    fitted = _fit_member(member, data, part, plan, settings.quiet(), floors)
                except FloorFailed as exc:
                    failed[member] = str(exc)
                    continue
                if part is everything or not plan.refit:
                    fits[member].append(fitted)
                if part is not everything:
                    oof[part.test, j] = _fit_scores(fitted, data.subset(part.test), plan)
    for member, why in failed.items():
        warnings.warn(
            f"stack member '{member}' could not be fitted ({why}) on repeat {repeat}, "
            f"fold {fold}; the stack of that fold goes without it",
            FallbackWarning,
            stacklevel=2,
        )
    members = {m: f for m, f in fits.items() if m not in failed}
    if not members:
        raise ConfigError(f"stack: no member could be fitted on repeat {repeat}, fold {fold}")
    return oof, members


def _inner_splits(data: MultimodalDataset, plan: StackPlan, seed: int) -> list[Split]:
    return kfold(data, plan.inner_folds, 1, seed)


def inner_fold_ids(data: MultimodalDataset, plan: StackPlan, seed: int) -> np.ndarray:
    """The inner fold (0 … inner_folds − 1) whose members scored each sample out of fold."""
    ids = np.zeros(len(data), dtype=int)
    for k, split in enumerate(_inner_splits(data, plan, seed)):
        ids[split.test] = k
    return ids


def fit_meta_as(
    meta: str,
    kind: str,
    z: np.ndarray,
    y: np.ndarray,
    penalty: float,
    strata: np.ndarray | None = None,
) -> Meta:
    """The meta-learner `meta` ("fit": a weight per member; "mean": one shared weight, so
    only the scale and intercept are fitted) on z-scored member scores `z`; `strata`: see
    `fit_meta`."""
    if meta == "mean":
        shared = fit_meta(kind, z.mean(1, keepdims=True), y, penalty, strata)
        m = z.shape[1]
        return Meta(kind, np.full(m, shared.weights[0] / m), shared.intercept)
    return fit_meta(kind, z, y, penalty, strata)


def fit_meta_on_scores(
    meta: str,
    kind: str,
    scores: np.ndarray,
    y: np.ndarray,
    penalty: float,
    strata: np.ndarray | None = None,
) -> tuple[Meta, np.ndarray, np.ndarray]:
    """`fit_meta_as` on members' raw scores (n, M), z-scored with their own centre and scale,
    which come back with the meta-learner for `standardise`."""
    features = _features(scores, kind)
    centre, scale = features.mean(0), features.std(0) + EPS
    z = (features - centre) / scale
    return fit_meta_as(meta, kind, z, y, penalty, strata), centre, scale


def standardise(scores: np.ndarray, kind: str, centre: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Members' raw scores (n, M) as the meta-learner reads them: features, z-scored."""
    return (_features(scores, kind) - centre) / scale


def _fit_member(
    member: str,
    data: MultimodalDataset,
    split: Split,
    plan: StackPlan,
    settings: FitSettings,
    floors: Callable[[], FoldData],
) -> FittedModel | FittedFloor:
    """A member fitted on `split.train` (`floors`: the split as the floors see it, made on
    first use). A member whose regime cross-fits an ensemble is fitted once: the inner folds
    already cross-fit it (a new patient gets its mean over their fits), and cross-fitting each
    inner fit again doubled the stack's cost for nothing (`docs/defaults.md`), unless the user's
    training settings name the ensemble."""
    from polyfuse.training.fit import fit_model, with_model_defaults

    if _floor_name(member) in CLASSICAL:
        return FittedFloor.fit(member, floors())
    hparams = plan.hparams.get(member, {})
    training = settings.training
    named = {"ensemble", "ensemble_validation"} & training.model_fields_set
    if not named and with_model_defaults(member, hparams, training).ensemble_validation == "folds":
        training = training.model_copy(update={"ensemble": 1})
    settings = settings.replace(hparams=hparams, training=training)
    return fit_model(member, data.subset(split.train), settings)


def _fit_scores(
    fitted: FittedModel | FittedFloor, data: MultimodalDataset, plan: StackPlan
) -> np.ndarray:
    """One fit's scores of the stack's task for every patient of `data`."""
    if isinstance(fitted, FittedFloor):
        scores = fitted.predict(data)
    else:
        kind = data.tasks[plan.task].type
        scores = fitted.predict(data)[plan.task][SCORE[kind]]
    return np.asarray(scores, dtype=np.float64).reshape(len(data))


def member_scores(
    fits: Sequence[FittedModel | FittedFloor], data: MultimodalDataset, plan: StackPlan
) -> np.ndarray:
    """A member's scores of every patient of `data`: the mean over its fits (a probability's
    mean for a binary task, as scikit-learn's bagging averages them)."""
    return np.mean([_fit_scores(f, data, plan) for f in fits], axis=0)


@dataclass
class FittedStack:
    """A fitted stack: its members (those that could be fitted; each the fits it scores with,
    see `StackPlan.refit`) and the meta-learner over their scores, z-scored with the out-of-fold
    `centre` and `scale`. It scores new patients like a `FittedModel` (`predict`), and a run
    directory holds it (`save`, `load_fitted`): `stack.json`, the input contract, and each
    member's fits under `members/` (a network's run directory, a floor's skops file)."""

    plan: StackPlan
    kind: str
    members: dict[str, list[FittedModel | FittedFloor]]
    meta: Meta
    centre: np.ndarray
    scale: np.ndarray
    contract: InputContract
    model_name: str = "stack"

    @property
    def weights(self) -> dict[str, float]:
        """Each member's weight (NaN: left out, it could not be fitted)."""
        fitted = dict(zip(self.members, self.meta.weights, strict=True))
        return {m: float(fitted.get(m, np.nan)) for m in self.plan.members}

    @property
    def objectives(self) -> dict[str, TaskObjective]:
        """The task's metrics, for a score that is a risk, not a survival curve."""
        return {self.plan.task: score_objective(self.contract.task_specs[self.plan.task])}

    def predict(self, data: MultimodalDataset) -> dict[str, dict[str, np.ndarray]]:
        """The stack's score of every patient of `data` (raw, as the training data were read),
        under the task and its type's score name (risk, prob, pred)."""
        scores = np.stack([member_scores(f, data, self.plan) for f in self.members.values()], 1)
        z = standardise(scores, self.kind, self.centre, self.scale)
        return {self.plan.task: {SCORE[self.kind]: self.meta.combine(z)}}

    def save(self, directory: Path) -> None:
        """The run directory: members first, `stack.json` (which marks it complete) last."""
        from polyfuse.training.fit import STACK_FILE

        members = []
        (directory / "members").mkdir(parents=True, exist_ok=True)
        for j, (name, fits) in enumerate(self.members.items()):
            paths = []
            for k, fitted in enumerate(fits):
                suffix = ".skops" if isinstance(fitted, FittedFloor) else ""
                path = Path("members") / f"member{j}_fit{k}{suffix}"
                fitted.save(directory / path)
                paths.append(str(path))
            members.append(dict(name=name, paths=paths))
        self.contract.save(directory)
        meta = dict(
            model=self.model_name,
            plan=dataclasses.asdict(self.plan),
            members=members,
            weights=self.meta.weights.tolist(),
            intercept=self.meta.intercept,
            centre=self.centre.tolist(),
            scale=self.scale.tolist(),
        )
        write_text(directory / STACK_FILE, json.dumps(meta, indent=2))


def load_fitted(directory: Path) -> FittedModel | FittedStack:
    """A run directory written by `polyfuse fit`: a network's (`FittedModel`) or a stack's."""
    from polyfuse.training.fit import STACK_FILE, FittedModel

    directory = Path(directory)
    if not (directory / STACK_FILE).is_file():
        return FittedModel.load(directory)
    file = directory / STACK_FILE
    try:
        meta = json.loads(file.read_text())
        plan = StackPlan(**{**meta["plan"], "members": tuple(meta["plan"]["members"])})
        paths = {e["name"]: [directory / p for p in e["paths"]] for e in meta["members"]}
        numbers = [np.asarray(meta[k], np.float64) for k in ("weights", "centre", "scale")]
        intercept = float(meta["intercept"])
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, ValueError) as exc:
        raise DataError(f"{file} is corrupt or incomplete ({type(exc).__name__}: {exc})") from None
    members: dict[str, list[FittedModel | FittedFloor]] = {}
    for name, fits in paths.items():
        for path in fits:
            if directory.resolve() not in path.resolve().parents:
                raise DataError(f"{file}: member '{name}' lies outside the run directory ({path})")
        members[name] = [
            FittedFloor.load(p) if p.suffix == ".skops" else FittedModel.load(p) for p in fits
        ]
    contract = InputContract.load(directory)
    kind = contract.task_specs[plan.task].type
    weights, centre, scale = numbers
    return FittedStack(plan, kind, members, Meta(kind, weights, intercept), centre, scale, contract)


def _contract(data: MultimodalDataset, task: str) -> InputContract:
    """The stack's input contract: every modality as read (each member preprocesses its own
    way), the task as a risk model predicts it."""
    spec = risk_task(data.tasks[task])
    return InputContract.fitted(data.specs, {task: spec}, Preprocessor(), {})


@dataclass
class ScoredStackFold:
    """The stack on one outer fold: its scores on the test part (under the task type's score
    name), their metrics, the members' weights, and the seconds it took."""

    scores: dict[str, np.ndarray]
    metrics: dict[str, float]
    weights: dict[str, float]
    seconds: float


def score_stack_fold(
    data: MultimodalDataset, split: Split, plan: StackPlan, settings: FitSettings
) -> ScoredStackFold:
    """The stack fitted on `split.train` (`fit_stack`), scored on `split.test` with the task's
    metrics."""
    import time

    start = time.perf_counter()
    train = data.subset(split.train)
    fitted = fit_stack(train, plan, settings, repeat=split.repeat, fold=split.fold)
    scores = fitted.predict(data.subset(split.test))[plan.task]
    seconds = time.perf_counter() - start
    truth = data.targets[plan.task]
    objective = fitted.objectives[plan.task]
    metrics = objective.metrics(scores, truth[split.test], truth[split.train])
    return ScoredStackFold(scores, metrics, fitted.weights, seconds)


def fold_fitter(data: MultimodalDataset, options: dict[str, Any]) -> FoldFitter:
    """What `cross_validate_splits` fits each fold with to cross-validate a stack of
    `options`, checked on `data` before any training."""
    plan = plan_from_options(data, options)

    def fit(data: MultimodalDataset, split: Split, settings: FitSettings) -> FoldResult:
        from polyfuse.training.cv import FoldResult, prediction_frame

        scored = score_stack_fold(data, split, plan, settings)
        keys = dict(repeat=split.repeat, fold=split.fold, task=plan.task)
        metrics = [dict(keys, metric=k, value=v) for k, v in scored.metrics.items()]
        weights = [dict(keys, member=m, weight=w) for m, w in scored.weights.items()]
        predictions = prediction_frame(data.subset(split.test), split, plan.task, scored.scores)
        return FoldResult(pd.DataFrame(metrics), predictions, pd.DataFrame(), pd.DataFrame(weights))

    return fit


def weight_summary(weights: pd.DataFrame) -> pd.DataFrame:
    """Each member's weight over folds: mean, sd, and the folds where it was left out; per
    dataset, model and task where `weights` has those columns."""
    keys = [k for k in ("dataset", "model", "task") if k in weights.columns] + ["member"]
    g = weights.groupby(keys, sort=False)["weight"]
    return pd.DataFrame(
        {"mean": g.mean(), "sd": g.std(ddof=1), "left_out": g.apply(lambda w: w.isna().sum())}
    ).reset_index()


def _features(scores: np.ndarray, kind: str) -> np.ndarray:
    """What the meta-learner reads: a probability's logit, a risk or prediction as it is."""
    if kind == "binary":
        p = np.clip(scores, EPS, 1 - EPS)
        return np.log(p) - np.log1p(-p)
    return scores


@dataclass
class Meta:
    """A fitted meta-learner: non-negative weights, an intercept, and the task type."""

    kind: str
    weights: np.ndarray
    intercept: float = 0.0

    def combine(self, z: np.ndarray) -> np.ndarray:
        """The stack's score from the members' z-scored scores."""
        linear = self.intercept + z @ self.weights
        return 1.0 / (1.0 + np.exp(-linear)) if self.kind == "binary" else linear


def fit_meta(
    kind: str,
    z: np.ndarray,
    y: np.ndarray,
    penalty: float = 0.01,
    strata: np.ndarray | None = None,
) -> Meta:
    """The non-negative meta-learner of a task type on z-scored member scores `z` (n, M);
    survival with `strata` (n,): a stratified Cox model, whose risk sets stay within a stratum."""
    if kind == "regression":
        from sklearn.linear_model import LinearRegression

        model = LinearRegression(positive=True).fit(z, y.reshape(-1))
        return Meta(kind, model.coef_.astype(np.float64), float(model.intercept_))
    from scipy.optimize import minimize

    m = z.shape[1]
    if kind == "survival":
        loss = _cox_loss(z, y[:, 0], y[:, 1], penalty, strata)
        start, bounds = np.full(m, 1.0 / m), [(0.0, None)] * m
    else:
        loss = _logistic_loss(z, y.reshape(-1), penalty)
        start, bounds = np.r_[np.full(m, 1.0 / m), 0.0], [(0.0, None)] * m + [(None, None)]
    result = minimize(loss, start, jac=True, method="L-BFGS-B", bounds=bounds)
    if kind == "survival":
        return Meta(kind, result.x)
    return Meta(kind, result.x[:m], float(result.x[m]))


def _cox_loss(
    z: np.ndarray,
    time: np.ndarray,
    event: np.ndarray,
    penalty: float,
    strata: np.ndarray | None = None,
):
    """Breslow's negative log partial likelihood per event, summed over `strata` (one stratum
    when None), + penalty · Σ w², and its gradient."""
    groups = [np.arange(len(z))] if strata is None else [strata == s for s in np.unique(strata)]
    parts = [_partial_likelihood(z[g], time[g], event[g]) for g in groups]
    events = max(1, int(np.sum(event)))

    def loss(w: np.ndarray) -> tuple[float, np.ndarray]:
        values = [part(w) for part in parts]
        log_lik, grad = sum(v[0] for v in values), sum(v[1] for v in values)
        return (-log_lik / events + penalty * w @ w, -grad / events + 2 * penalty * w)

    return loss


def _partial_likelihood(z: np.ndarray, time: np.ndarray, event: np.ndarray):
    """Breslow's log partial likelihood of one stratum, and its gradient, as a function of w."""
    order = np.argsort(time, kind="stable")
    z, time, event = z[order], time[order], event[order].astype(bool)
    # a sample's risk set is every sample with a time >= its own: from the first of its ties
    first = np.searchsorted(time, time, side="left")

    def value(w: np.ndarray) -> tuple[float, np.ndarray]:
        eta = z @ w
        shift = eta.max()
        e = np.exp(eta - shift)
        denom = np.cumsum(e[::-1])[::-1][first]  # Σ over the risk set
        weighted = np.cumsum((e[:, None] * z)[::-1], axis=0)[::-1][first]
        log_lik = np.sum(eta[event] - shift - np.log(denom[event]))
        return log_lik, (z[event] - weighted[event] / denom[event, None]).sum(0)

    return value


def _logistic_loss(z: np.ndarray, y: np.ndarray, penalty: float):
    """Mean log loss of σ(b + z·w) + penalty · Σ w² (not on b), and its gradient."""
    m = z.shape[1]

    def loss(params: np.ndarray) -> tuple[float, np.ndarray]:
        w, b = params[:m], params[m]
        linear = b + z @ w
        value = np.mean(np.logaddexp(0.0, linear) - y * linear) + penalty * w @ w
        residual = (1.0 / (1.0 + np.exp(-linear)) - y) / len(y)
        return value, np.r_[z.T @ residual + 2 * penalty * w, residual.sum()]

    return loss
