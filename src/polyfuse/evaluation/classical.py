"""Classical floors on polyfuse datasets, run on exactly the splits the fusion models get.

A fusion model is only interesting if it beats what a statistician would fit in a minute, on
the same folds (`reference/datasets.md`). The floors here are deliberately untuned beyond one
documented inner choice, so that they are reproducible and cheap:

* ``coxnet[m]``: an elastic-net Cox model (sksurv ``CoxnetSurvivalAnalysis``, ``l1_ratio=0.5``,
  a path of 30 penalties down to ``alpha_min_ratio=0.01`` of the largest) whose penalty is picked
  by an inner 3-fold CV (stratified on the event) on the training fold, maximising the mean
  inner Harrell c-index; ties go to the larger penalty. With one modality, the model is fitted on
  the training samples that have it, and test samples lacking it get the training-median risk
  (they are ranked in the middle: no information, no guess). With several (``coxnet[all]``) the
  modalities are concatenated (early fusion) and absent blocks are mean-imputed like scattered
  NaNs.
* ``rsf[m]``: a random survival forest (200 trees, ``min_samples_leaf=5``, √p features per split)
  on the same early-fused inputs.
* ``late-cox``: the missing-aware late fusion of reference §1: one ``coxnet[m]`` per modality,
  each risk z-scored with the mean and sd of its training-fold risks, averaged over the
  modalities each patient has. A modality whose training risk is constant (everything shrunk to
  zero) carries no ranking and is left out of the average; a patient with no usable modality
  gets 0, the training mean.
* ``logreg[m]``: L2 logistic regression (``C=1``) on standardised, mean-imputed inputs.
* ``hgb[m]``: histogram gradient boosting (a classifier, or a regressor for regression
  tasks); it reads the raw values with NaN for both scattered and block-missing values (its
  native missing-value routing), so no imputation is needed.
* ``ridge[m]``: ridge regression (regression tasks) on standardised, mean-imputed inputs, its
  penalty chosen among 13 values from 1e-3 to 1e3 by efficient leave-one-out CV (``RidgeCV``).

Every task of a dataset gets its type's floors (`default_floors`): one linear floor per
modality and on all of them, and the non-linear one on all; multilabel tasks have none.

Every imputation and scaling statistic comes from the training fold only (polyfuse's
`Preprocessor`, mean imputation and standardisation: a standardised 0 is the training mean, which
is how absent blocks are imputed). Samples whose target is unknown are dropped before anything is
fitted and are not scored. Metrics are `TaskObjective.metrics`, so the names and computations are
those of every fusion model (survival: ``c_index``, ``uno_c_index``, ``td_auc``; no ``ibs``,
since these floors produce risks, not survival curves).

A floor that cannot be fitted on a fold (a Cox model with fewer training events than inner
folds, a forest with no event at all, a classifier with one training class) is not scored there:
its row for that fold holds the primary metric as NaN with `status` ``failed: <reason>``, and a
`FallbackWarning` names the floor, its modalities, the fold and the reason. Scored rows have
`status` ``ok``, except a fold where a floor was fitted but gives every test patient the same
score (its inner CV shrank every coefficient to 0): scored, with `status` ``null model: ...``,
which the leaderboard shows as "(null model)". Every other fallback (an inner fold dropped from the penalty choice, a shortened
penalty path, the middle penalty when no inner fold could score) warns the same way.

Floors read every numeric modality (`pooled.py`): tabular ones as they are, bags mean-pooled,
sequences as each channel's mean and last value; ``all`` means every such modality.
scikit-survival is the optional extra ``bench``; it is imported only when a survival floor runs.
"""

from __future__ import annotations

import dataclasses
import re
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from polyfuse.data.dataset import MultimodalDataset
from polyfuse.data.preprocess import Preprocessor
from polyfuse.data.specs import TaskSpec
from polyfuse.data.splits import Split
from polyfuse.errors import ConfigError, DataError, FallbackWarning, did_you_mean, require
from polyfuse.evaluation.pooled import numeric_modalities, pooled

if TYPE_CHECKING:
    from polyfuse.tasks.objective import TaskObjective

# Coxnet: elastic net half-way between ridge and lasso (stable with correlated omics, still
# sparse), a short path (30 penalties) for speed, the penalty picked by inner CV.
COXNET_L1_RATIO = 0.5
COXNET_ALPHA_MIN_RATIO = 0.01
COXNET_N_ALPHAS = 30
INNER_FOLDS = 3
RSF_TREES = 200
RSF_MIN_LEAF = 5

SURVIVAL = ("survival",)
CLASSIFICATION = ("binary", "multiclass")
REGRESSION = ("regression",)
RIDGE_ALPHAS = np.logspace(-3, 3, 13)
COLUMNS = ["model", "repeat", "fold", "task", "metric", "value", "status"]
NULL_MODEL = "null model: the same score for every test patient (every coefficient shrunk to 0)"
"""The status of a fold where a floor was fitted but ranks nobody: scored (a c-index of 0.5 is
its true worth), and marked so that the leaderboard does not pass it off as a fitted model."""


class FloorFailed(DataError):
    """A floor cannot be fitted on a fold's training samples; the message says why."""


@dataclass
class FoldData:
    """One outer fold, as the floors see it.

    Args:
        train: preprocessed training samples whose target is known.
        test: preprocessed test samples (unknown targets included; they are not scored).
        raw_train, raw_test: the same samples before imputation and scaling.
        task: the task predicted.
        seed: a seed derived from the run seed, the repeat and the fold.
        label: which fold this is, for messages ("repeat 0, fold 2").
        cache: per-fold results shared between floors (per-modality Cox fits).
    """

    train: MultimodalDataset
    test: MultimodalDataset
    raw_train: MultimodalDataset
    raw_test: MultimodalDataset
    task: str
    seed: int
    label: str = "the fold"
    cache: dict[Any, Any] = field(default_factory=dict)

    @property
    def y(self) -> np.ndarray:
        """Training targets (all known)."""
        return self.train.targets[self.task]

    def matrix(self, modalities: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Early-fused (train, test) features: imputed and standardised; absent = training mean."""
        train = np.concatenate([self.train.sources[m].values for m in modalities], axis=1)
        test = np.concatenate([self.test.sources[m].values for m in modalities], axis=1)
        return train.astype(np.float64), test.astype(np.float64)

    def raw_matrix(self, modalities: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Early-fused raw (train, test) features with NaN wherever a value or block is absent."""

        def block(data: MultimodalDataset, m: str) -> np.ndarray:
            src = data.sources[m]
            return np.where(src.present[:, None], src.values, np.nan)

        train = np.concatenate([block(self.raw_train, m) for m in modalities], axis=1)
        test = np.concatenate([block(self.raw_test, m) for m in modalities], axis=1)
        return train.astype(np.float64), test.astype(np.float64)


Predictor = Callable[[FoldData, tuple[str, ...]], np.ndarray]


@dataclass(frozen=True)
class ClassicalFloor:
    """A named floor (described in the module docstring): which task types it serves and how
    it turns a fold into test scores.

    `predict(fold, modalities)` returns a risk `(n_test,)` (higher = earlier event) for survival,
    the positive-class probability `(n_test,)` for binary, or `(n_test, K)` probabilities for
    multiclass tasks.
    """

    name: str
    task_types: tuple[str, ...]
    predict: Predictor

    def __call__(self, fold: FoldData, modalities: tuple[str, ...]) -> np.ndarray:
        return self.predict(fold, modalities)


# --------------------------------------------------------------------------------- coxnet


def _sksurv(module: str) -> Any:
    return require(f"sksurv.{module}", "bench")


def _surv(time: np.ndarray, event: np.ndarray) -> np.ndarray:
    return _sksurv("util").Surv.from_arrays(event.astype(bool), time.astype(np.float64))


def _harrell_columns(risk: np.ndarray, time: np.ndarray, event: np.ndarray) -> np.ndarray:
    """Harrell's c-index of each column of `risk (n, A)` at once (for picking the penalty)."""
    comparable = (time[:, None] < time[None, :]) & (event[:, None] == 1)
    if not comparable.any():
        return np.full(risk.shape[1], np.nan)
    diff = risk[:, None, :] - risk[None, :, :]
    score = (diff > 0) + 0.5 * (diff == 0)
    return score[comparable].sum(0) / comparable.sum()


def _coxnet(ratio: float) -> Any:
    model = _sksurv("linear_model").CoxnetSurvivalAnalysis
    return model(l1_ratio=COXNET_L1_RATIO, alpha_min_ratio=ratio, n_alphas=COXNET_N_ALPHAS)


def fit_coxnet(
    x: np.ndarray, time: np.ndarray, event: np.ndarray, seed: int, *, what: str = "Coxnet"
) -> Any:
    """A Coxnet with its penalty picked by inner CV (`what` names it in warnings).

    The model's `chosen_alpha_` attribute holds the penalty to predict with. It cannot be fitted
    (`FloorFailed`) with fewer events than inner folds, or when even the shortest penalty path
    fails numerically; a path that fails numerically (too small a penalty for p >> n) is
    retried with a 10× larger smallest penalty.
    """
    from sklearn.exceptions import ConvergenceWarning

    events = int(event.sum())
    if events < INNER_FOLDS or len(time) < 2 * INNER_FOLDS:
        raise FloorFailed(
            f"{events} events among {len(time)} training samples, fewer than the "
            f"{INNER_FOLDS} events and {2 * INNER_FOLDS} samples its inner CV needs"
        )
    with warnings.catch_warnings():
        # short paths on p >> n stop early at the smallest penalties; those are rarely chosen
        warnings.filterwarnings("ignore", category=ConvergenceWarning)
        warnings.filterwarnings("ignore", message="all coefficients are zero")
        y = _surv(time, event)
        model, ratio = _coxnet_path(x, y)
        mean = _inner_scores(x, y, (ratio, model.alphas_), seed, what)
    if ratio > COXNET_ALPHA_MIN_RATIO:
        _warn(
            f"{what}: smaller penalties failed numerically, so its path stops at {ratio:g} of "
            f"the largest penalty instead of {COXNET_ALPHA_MIN_RATIO:g}"
        )
    if np.isnan(mean).all():
        _warn(f"{what}: no inner fold could score a penalty; the middle of the path is used")
        model.chosen_alpha_ = model.alphas_[len(model.alphas_) // 2]
    else:
        model.chosen_alpha_ = model.alphas_[int(np.nanargmax(mean))]  # first = largest penalty
    return model


def _coxnet_path(x: np.ndarray, y: np.ndarray) -> tuple[Any, float]:
    """The Coxnet path on all training samples, and the smallest-penalty ratio it needed."""
    ratio = COXNET_ALPHA_MIN_RATIO
    while ratio < 1.0:
        try:
            return _coxnet(ratio).fit(x, y), ratio
        except ArithmeticError:
            ratio *= 10
    raise FloorFailed("the penalty path fails numerically even at its largest penalties")


def _inner_scores(
    x: np.ndarray, y: np.ndarray, path: tuple[float, np.ndarray], seed: int, what: str
) -> np.ndarray:
    """The mean inner Harrell c-index of each penalty of the outer `path` (its smallest-penalty
    ratio and its penalties; NaN where no inner fold scored).

    Each inner fold runs its own path (a path given the outer penalties stops early when its
    first ones already zero everything); risks at the outer penalties interpolate it. An inner
    fold whose path cannot be fitted is left out, with a warning.
    """
    from sklearn.model_selection import StratifiedKFold

    ratio, alphas = path
    time, event = y["time"], y["event"]
    inner = StratifiedKFold(INNER_FOLDS, shuffle=True, random_state=seed)
    scores = []
    for j, (tr, te) in enumerate(inner.split(x, event)):
        try:
            m = _coxnet(ratio).fit(x[tr], y[tr])
        except (ArithmeticError, ValueError) as exc:
            _warn(
                f"{what}: inner fold {j + 1} of {INNER_FOLDS} is left out of the penalty "
                f"choice ({type(exc).__name__}: {exc})"
            )
            continue
        risk = np.stack([m.predict(x[te], alpha=a) for a in alphas], axis=1)
        scores.append(_harrell_columns(risk, time[te], event[te]))
    if not scores:
        return np.full(len(alphas), np.nan)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Mean of empty slice")
        return np.nanmean(scores, axis=0)


def _warn(message: str) -> None:
    warnings.warn(message, FallbackWarning, stacklevel=3)


def _modality_risk(fold: FoldData, m: str) -> tuple[np.ndarray, np.ndarray]:
    """(training risks of the samples that have `m`, test risks of every test sample) of the
    Coxnet on modality `m`; fitted once per fold, shared by `coxnet[m]` and `late-cox` (a
    failure too: it raises `FloorFailed` for both)."""
    key = ("coxnet", m)
    if key not in fold.cache:
        present = fold.train.sources[m].present
        x, y = fold.train.sources[m].values[present], fold.y[present]
        try:
            model = fit_coxnet(
                x, y[:, 0], y[:, 1], fold.seed, what=f"the Coxnet of '{m}' on {fold.label}"
            )
        except FloorFailed as exc:
            fold.cache[key] = exc
        else:
            a = model.chosen_alpha_
            fold.cache[key] = (
                model.predict(x, alpha=a),
                model.predict(fold.test.sources[m].values, alpha=a),
            )
    if isinstance(fold.cache[key], FloorFailed):
        raise fold.cache[key]
    return fold.cache[key]


def _predict_coxnet(fold: FoldData, modalities: tuple[str, ...]) -> np.ndarray:
    if len(modalities) == 1:
        m = modalities[0]
        train, test = _modality_risk(fold, m)
        return np.where(fold.test.sources[m].present, test, np.median(train))
    x_train, x_test = fold.matrix(modalities)
    what = f"the Coxnet of {', '.join(modalities)} on {fold.label}"
    model = fit_coxnet(x_train, fold.y[:, 0], fold.y[:, 1], fold.seed, what=what)
    return model.predict(x_test, alpha=model.chosen_alpha_)


def _predict_late_cox(fold: FoldData, modalities: tuple[str, ...]) -> np.ndarray:
    """Late fusion of the modalities whose Coxnet could be fitted (each one left out warns);
    it fails when none could."""
    train, test, present, failed = [], [], [], []
    for m in modalities:
        try:
            risks = _modality_risk(fold, m)
        except FloorFailed as exc:
            failed.append(f"'{m}': {exc}")
            continue
        train.append(risks[0])
        test.append(risks[1])
        present.append(fold.test.sources[m].present)
    if not train:
        raise FloorFailed(f"no modality's Coxnet could be fitted ({'; '.join(failed)})")
    for reason in failed:
        _warn(f"late-cox on {fold.label} leaves out modality {reason}")
    return late_fusion_risk(train, test, np.stack(present, axis=1))


def late_fusion_risk(
    train_risks: Sequence[np.ndarray], test_risks: Sequence[np.ndarray], present: np.ndarray
) -> np.ndarray:
    """The late-fusion rule on its own: mean of z-scored modality risks over present modalities.

    Args:
        train_risks: per modality, the training risks used for the z-score statistics.
        test_risks: per modality, risks `(n,)` of the samples to score (ignored where absent).
        present: `(n, n_modalities)` bool.
    """
    n = present.shape[0]
    total, count = np.zeros(n), np.zeros(n)
    for j, (train, test) in enumerate(zip(train_risks, test_risks, strict=True)):
        sd = np.std(train)
        if not sd > 1e-8:
            continue
        total += np.where(present[:, j], (np.asarray(test) - np.mean(train)) / sd, 0.0)
        count += present[:, j]
    return np.where(count > 0, total / np.maximum(count, 1), 0.0)


# --------------------------------------------------------------------------------- rsf


def _predict_rsf(fold: FoldData, modalities: tuple[str, ...]) -> np.ndarray:
    if not fold.y[:, 1].any():
        raise FloorFailed("every training sample is censored")
    x_train, x_test = fold.matrix(modalities)
    forest = _sksurv("ensemble").RandomSurvivalForest(
        n_estimators=RSF_TREES,
        min_samples_leaf=RSF_MIN_LEAF,
        max_features="sqrt",
        n_jobs=1,
        random_state=fold.seed,
    )
    forest.fit(x_train, _surv(fold.y[:, 0], fold.y[:, 1]))
    return forest.predict(x_test)


# --------------------------------------------------------------------------------- classifiers


def _class_probs(model: Any, x: np.ndarray, fold: FoldData) -> np.ndarray:
    """Probabilities in the task's class order, also when a class is missing from training."""
    spec = fold.train.tasks[fold.task]
    p = model.predict_proba(x)
    if spec.type == "binary":  # both classes are in training (`_train_labels`)
        return p[:, list(model.classes_).index(1)]
    out = np.zeros((len(x), len(spec.classes)))
    out[:, model.classes_.astype(np.int64)] = p
    return out


def _train_labels(fold: FoldData) -> np.ndarray:
    y = fold.y.astype(np.int64)
    if len(np.unique(y)) < 2:
        raise FloorFailed(f"task '{fold.task}' has a single class among the training samples")
    return y


def _predict_logreg(fold: FoldData, modalities: tuple[str, ...]) -> np.ndarray:
    from sklearn.linear_model import LogisticRegression

    x_train, x_test = fold.matrix(modalities)
    model = LogisticRegression(C=1.0, max_iter=5000)
    model.fit(x_train, _train_labels(fold))
    return _class_probs(model, x_test, fold)


def _predict_hgb(fold: FoldData, modalities: tuple[str, ...]) -> np.ndarray:
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
    from threadpoolctl import threadpool_limits

    x_train, x_test = fold.raw_matrix(modalities)
    regression = fold.train.tasks[fold.task].type == "regression"
    kind = HistGradientBoostingRegressor if regression else HistGradientBoostingClassifier
    model = kind(max_iter=100, max_depth=3, min_samples_leaf=10, random_state=fold.seed)
    # one thread: on ~100 samples OpenMP start-up and spinning cost more than they save, and
    # they stall badly when the other cores are busy
    with threadpool_limits(limits=1, user_api="openmp"):
        if regression:
            return model.fit(x_train, _train_values(fold)).predict(x_test)
        model.fit(x_train, _train_labels(fold))
        return _class_probs(model, x_test, fold)


# --------------------------------------------------------------------------------- regression


def _train_values(fold: FoldData) -> np.ndarray:
    y = fold.y.astype(np.float64).reshape(-1)
    if len(y) < 3 or np.ptp(y) == 0:
        raise FloorFailed(
            f"task '{fold.task}' has {len(y)} training samples with a known target, "
            "too few or all equal to fit a regression"
        )
    return y


def _predict_ridge(fold: FoldData, modalities: tuple[str, ...]) -> np.ndarray:
    from sklearn.linear_model import RidgeCV

    x_train, x_test = fold.matrix(modalities)
    return RidgeCV(alphas=RIDGE_ALPHAS).fit(x_train, _train_values(fold)).predict(x_test)


CLASSICAL: dict[str, ClassicalFloor] = {
    f.name: f
    for f in (
        ClassicalFloor("coxnet", SURVIVAL, _predict_coxnet),
        ClassicalFloor("rsf", SURVIVAL, _predict_rsf),
        ClassicalFloor("late-cox", SURVIVAL, _predict_late_cox),
        ClassicalFloor("logreg", CLASSIFICATION, _predict_logreg),
        ClassicalFloor("hgb", CLASSIFICATION + REGRESSION, _predict_hgb),
        ClassicalFloor("ridge", REGRESSION, _predict_ridge),
    )
}


# --------------------------------------------------------------------------------- running


def resolve_floor(
    name: str, data: MultimodalDataset
) -> tuple[ClassicalFloor, tuple[str, ...], str]:
    """`"coxnet[clinical,rna]"` → (floor, modalities, display name).

    No bracket, or `[all]`, means every tabular modality; the display name says `[all]` then
    (`late-cox` is shown without a bracket when it uses all modalities).
    """
    match = re.fullmatch(r"\s*([\w-]+)\s*(?:\[([^\]]*)\])?\s*", name)
    if not match or match.group(1) not in CLASSICAL:
        base = match.group(1) if match else name
        raise ConfigError(
            f"unknown classical floor '{name}'{did_you_mean(base, CLASSICAL)}; "
            f"available: {sorted(CLASSICAL)}"
        )
    floor = CLASSICAL[match.group(1)]
    usable = numeric_modalities(data)
    if not usable:
        raise DataError(
            f"{data.name or 'dataset'} has no numeric modality (tabular, bag, sequence) for classical floors"
        )
    inside = (match.group(2) or "all").strip()
    if inside == "all":
        modalities = tuple(usable)
    else:
        modalities = tuple(m.strip() for m in inside.split(",") if m.strip())
        bad = [m for m in modalities if m not in usable]
        if bad or not modalities:
            raise ConfigError(
                f"classical floor '{name}': modalities {bad} are not tabular modalities of "
                f"{data.name or 'the dataset'}; use some of {usable} or 'all'"
            )
    if modalities == tuple(usable):
        display = floor.name if floor.name == "late-cox" else f"{floor.name}[all]"
    else:
        display = f"{floor.name}[{','.join(modalities)}]"
    return floor, modalities, display


def default_floors(data: MultimodalDataset, task: str | None = None) -> list[str]:
    """The default floor names for a task's type (the first task by default): the linear floor
    per modality (with more than one) and on all, and the non-linear one on all."""
    spec = data.tasks[_task(data, task)]
    linear = {
        "survival": "coxnet",
        "binary": "logreg",
        "multiclass": "logreg",
        "regression": "ridge",
    }
    if spec.type not in linear:
        raise ConfigError(
            f"task '{spec.name}' is {spec.type}: classical floors cover survival, binary, "
            "multiclass and regression tasks"
        )
    modalities = numeric_modalities(data)
    per = [f"{linear[spec.type]}[{m}]" for m in modalities] if len(modalities) > 1 else []
    if spec.type == "survival":
        return [*per, "coxnet[all]", "rsf[all]", "late-cox"]
    return [*per, f"{linear[spec.type]}[all]", "hgb[all]"]


FLOORED = ("survival", "binary", "multiclass", "regression")


def floored_tasks(data: MultimodalDataset) -> list[str]:
    """The tasks that get classical floors: those of a type with floors, when the data have a
    numeric modality for them to read (else none, with a warning)."""
    tasks = [t for t, spec in data.tasks.items() if spec.type in FLOORED]
    if tasks and not numeric_modalities(data):
        _warn(
            f"{data.name or 'dataset'} has no numeric modality (tabular, bag, sequence): no classical floors, "
            "and no comparison against them"
        )
        return []
    return tasks


def _task(data: MultimodalDataset, task: str | None) -> str:
    if not data.tasks:
        raise DataError(f"{data.name or 'dataset'} has no task")
    task = task or next(iter(data.tasks))
    if task not in data.tasks:
        raise ConfigError(f"unknown task '{task}'{did_you_mean(task, data.tasks)}")
    return task


def _known(target: np.ndarray) -> np.ndarray:
    return ~np.isnan(target.reshape(len(target), -1)).any(1)


def make_fold(data: MultimodalDataset, split: Split, task: str, seed: int = 0) -> FoldData:
    """One split as floors see it: known-target training samples, preprocessing fitted on them."""
    train_idx = np.asarray(split.train)[_known(data.targets[task][split.train])]
    raw_train, raw_test = pooled(data.subset(train_idx)), pooled(data.subset(split.test))
    pre = Preprocessor(impute="mean", scale=True).fit(raw_train)
    return FoldData(
        pre.transform(raw_train),
        pre.transform(raw_test),
        raw_train,
        raw_test,
        task,
        (seed * 1_000_003 + split.repeat * 1_000 + split.fold) % 2**32,
        label=f"repeat {split.repeat}, fold {split.fold}",
    )


def run_floors(
    names: Sequence[str],
    data: MultimodalDataset,
    splits: Sequence[Split],
    *,
    task: str | None = None,
    seed: int = 0,
) -> pd.DataFrame:
    """Several floors on the same splits, sharing per-fold work (per-modality Cox fits).

    Returns long rows `model, repeat, fold, task, metric, value, status`, floor by floor in
    the order given, then split by split. The same splits and seed give the same numbers. A
    floor that cannot be fitted on a fold gives one row there: the primary metric, NaN, and
    `status` "failed: <reason>" (with a `FallbackWarning`).
    """

    task = _task(data, task)
    spec = data.tasks[task]
    resolved = [resolve_floor(n, data) for n in names]
    for floor, _, display in resolved:
        if spec.type not in floor.task_types:
            raise ConfigError(
                f"classical floor '{display}' serves {list(floor.task_types)} tasks; "
                f"task '{task}' is {spec.type}"
            )
    objective = score_objective(spec)
    rows: dict[str, list[dict[str, Any]]] = {display: [] for _, _, display in resolved}
    for split in splits:
        fold = make_fold(data, split, task, seed)
        for floor, modalities, display in resolved:
            keys = dict(model=display, repeat=split.repeat, fold=split.fold, task=task)
            scored = _score(floor, modalities, display, fold, objective)
            rows[display] += [keys | r for r in scored]
    flat = [r for display in rows for r in rows[display]]
    return pd.DataFrame(flat, columns=COLUMNS)


def score_objective(spec: TaskSpec) -> TaskObjective:
    """The metrics of every fusion model for a task's scores that are a risk, not a survival
    curve (a floor's, a stack's): a survival task is scored as a Cox head (no IBS)."""
    from polyfuse.tasks.objective import TaskObjective

    return TaskObjective(
        dataclasses.replace(spec, survival_head="cox") if spec.type == "survival" else spec
    )


def _score(
    floor: ClassicalFloor,
    modalities: tuple[str, ...],
    display: str,
    fold: FoldData,
    objective: Any,
) -> list[dict[str, Any]]:
    """A floor's metrics on one fold (metric, value, status); a floor that cannot be fitted
    there gives its primary metric as NaN, marked failed, and a warning."""
    from polyfuse.tasks.metric_facts import PRIMARY

    try:
        scores = np.asarray(floor(fold, modalities), dtype=np.float64)
    except FloorFailed as exc:
        warnings.warn(
            f"classical floor '{display}' (modalities {', '.join(modalities)}) could not be "
            f"fitted on {fold.label}: {exc}; it is marked failed there, not scored",
            FallbackWarning,
            stacklevel=2,
        )
        return [dict(metric=PRIMARY[objective.spec.type], value=np.nan, status=f"failed: {exc}")]
    key = {"survival": "risk", "regression": "pred"}.get(objective.spec.type, "prob")
    targets = fold.raw_test.targets[fold.task], fold.raw_train.targets[fold.task]
    metrics = objective.metrics({key: scores}, *targets)
    constant = len(scores) > 1 and np.ptp(scores.reshape(len(scores), -1), axis=0).max() == 0
    status = NULL_MODEL if constant else "ok"
    return [dict(metric=k, value=float(v), status=status) for k, v in metrics.items()]


def run_classical(
    name: str,
    data: MultimodalDataset,
    splits: Sequence[Split],
    *,
    task: str | None = None,
    seed: int = 0,
) -> pd.DataFrame:
    """One floor, e.g. `"coxnet[clinical]"`, `"rsf"` (= `rsf[all]`) or `"late-cox"`.

    Returns the long rows of `run_floors`, with `model` the display name.
    """
    return run_floors([name], data, splits, task=task, seed=seed)


def classical_floors(
    data: MultimodalDataset,
    splits: Sequence[Split],
    *,
    task: str | None = None,
    seed: int = 0,
) -> pd.DataFrame:
    """The default floors for the task's type (first task by default), on the given splits.

    Survival: Coxnet per tabular modality and on all of them, RSF on all, late Cox fusion.
    Binary/multiclass: logistic regression and gradient boosting on all modalities.
    """
    return run_floors(default_floors(data, task), data, splits, task=task, seed=seed)
