"""The classical floors as models: fitted on a training part, then scoring any patients.

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

Every imputation and scaling statistic comes from the training part only (polyfuse's
`Preprocessor`, mean imputation and standardisation: a standardised 0 is the training mean,
which is how absent blocks are imputed). Samples whose target is unknown are not fitted on.
Floors read every numeric modality (`data/pooled.py`): tabular ones as they are, bags
mean-pooled, sequences as each channel's mean and last value; ``all`` means every such modality.

Each floor is a pair: `fit` (a training part → the fitted estimators and numbers) and `score`
(those → scores of any patients). `FittedFloor` keeps a fit with its preprocessing, to score
new patients later (a stacked ensemble's members); it is saved with skops, whose format
rebuilds scikit-learn objects without unpickling, and loads only scikit-learn and
scikit-survival types.

A floor that cannot be fitted (a Cox model with fewer training events than inner folds, a
forest with no event at all, a classifier with one training class) raises `FloorFailed`; every
other fallback (an inner fold dropped from the penalty choice, a shortened penalty path, the
middle penalty when no inner fold could score) warns with a `FallbackWarning`.
scikit-survival and skops are the optional extra ``bench``; scikit-survival is imported only
when a survival floor runs.
"""

from __future__ import annotations

import dataclasses
import re
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from polyfuse.data.dataset import MultimodalDataset
from polyfuse.data.pooled import numeric_modalities, pooled
from polyfuse.data.preprocess import Preprocessor
from polyfuse.data.specs import TaskSpec
from polyfuse.data.splits import Split
from polyfuse.errors import ConfigError, DataError, FallbackWarning, did_you_mean, require

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


class FloorFailed(DataError):
    """A floor cannot be fitted on a fold's training samples; the message says why."""


@dataclass
class FoldData:
    """One split, as the floors see it.

    Args:
        train: preprocessed training samples whose target is known.
        test: preprocessed test samples (unknown targets included; they are not scored).
        raw_train, raw_test: the same samples before imputation and scaling.
        task: the task predicted.
        seed: a seed derived from the run seed, the repeat and the fold.
        preprocessor: the imputation and scaling, fitted on `raw_train`.
        label: which fold this is, for messages ("repeat 0, fold 2").
        cache: per-fold results shared between floors (per-modality Cox fits).
    """

    train: MultimodalDataset
    test: MultimodalDataset
    raw_train: MultimodalDataset
    raw_test: MultimodalDataset
    task: str
    seed: int
    preprocessor: Preprocessor
    label: str = "the fold"
    cache: dict[Any, Any] = field(default_factory=dict)

    @property
    def y(self) -> np.ndarray:
        """Training targets (all known)."""
        return self.train.targets[self.task]

    def matrix(self, modalities: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Early-fused (train, test) features: imputed and standardised; absent = training mean."""
        return _matrix(self.train, modalities), _matrix(self.test, modalities)

    def raw_matrix(self, modalities: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Early-fused raw (train, test) features with NaN wherever a value or block is absent."""
        return _raw_matrix(self.raw_train, modalities), _raw_matrix(self.raw_test, modalities)


def _matrix(data: MultimodalDataset, modalities: Sequence[str]) -> np.ndarray:
    return np.concatenate([data.sources[m].values for m in modalities], axis=1).astype(np.float64)


def _raw_matrix(data: MultimodalDataset, modalities: Sequence[str]) -> np.ndarray:
    blocks = [
        np.where(data.sources[m].present[:, None], data.sources[m].values, np.nan)
        for m in modalities
    ]
    return np.concatenate(blocks, axis=1).astype(np.float64)


def _known(target: np.ndarray) -> np.ndarray:
    return ~np.isnan(target.reshape(len(target), -1)).any(1)


def make_fold(data: MultimodalDataset, split: Split, task: str, seed: int = 0) -> FoldData:
    """One split as floors see it: known-target training samples, preprocessing fitted on them
    (`split.test` may be empty: a fit for patients to come)."""
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
        pre,
        label=f"repeat {split.repeat}, fold {split.fold}",
    )


State = dict[str, Any]
"""A fitted floor's estimators and numbers (scikit-learn objects, arrays, floats, strings)."""


@dataclass(frozen=True)
class Patients:
    """Patients a fitted floor scores: preprocessed as its training part was, and raw."""

    data: MultimodalDataset
    raw: MultimodalDataset

    def matrix(self, modalities: Sequence[str]) -> np.ndarray:
        return _matrix(self.data, modalities)

    def raw_matrix(self, modalities: Sequence[str]) -> np.ndarray:
        return _raw_matrix(self.raw, modalities)


@dataclass(frozen=True)
class ClassicalFloor:
    """A named floor (described in the module docstring): the task types it serves, `fit` (a
    fold's training part → its `State`) and `score` (a state → scores of `Patients`).

    Scores are a risk `(n,)` (higher = earlier event) for survival, the positive-class
    probability `(n,)` for binary, `(n, K)` probabilities for multiclass tasks, a prediction
    `(n,)` for regression. Calling a floor on a fold fits it and scores the fold's test part.
    """

    name: str
    task_types: tuple[str, ...]
    fit: Callable[[FoldData, tuple[str, ...]], State]
    score: Callable[[State, Patients, tuple[str, ...]], np.ndarray]

    def __call__(self, fold: FoldData, modalities: tuple[str, ...]) -> np.ndarray:
        state = self.fit(fold, modalities)
        return self.score(state, Patients(fold.test, fold.raw_test), modalities)


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


def _modality_coxnet(fold: FoldData, m: str) -> tuple[Any, np.ndarray]:
    """The Coxnet on modality `m` and its risks of the training samples that have `m`; fitted
    once per fold, shared by `coxnet[m]` and `late-cox` (a failure too: it raises
    `FloorFailed` for both)."""
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
            fold.cache[key] = (model, model.predict(x, alpha=model.chosen_alpha_))
    if isinstance(fold.cache[key], FloorFailed):
        raise fold.cache[key]
    return fold.cache[key]


def _fit_coxnet(fold: FoldData, modalities: tuple[str, ...]) -> State:
    if len(modalities) == 1:
        model, train = _modality_coxnet(fold, modalities[0])
        return dict(model=model, alpha=model.chosen_alpha_, absent=float(np.median(train)))
    what = f"the Coxnet of {', '.join(modalities)} on {fold.label}"
    model = fit_coxnet(
        _matrix(fold.train, modalities), fold.y[:, 0], fold.y[:, 1], fold.seed, what=what
    )
    return dict(model=model, alpha=model.chosen_alpha_)


def _score_coxnet(state: State, patients: Patients, modalities: tuple[str, ...]) -> np.ndarray:
    risk = state["model"].predict(patients.matrix(modalities), alpha=state["alpha"])
    if len(modalities) == 1:  # one modality: its absent patients get the training median
        return np.where(patients.data.sources[modalities[0]].present, risk, state["absent"])
    return risk


def _fit_late_cox(fold: FoldData, modalities: tuple[str, ...]) -> State:
    """Late fusion of the modalities whose Coxnet could be fitted (each one left out warns);
    it fails when none could."""
    used, models, stats, failed = [], [], [], []
    for m in modalities:
        try:
            model, train = _modality_coxnet(fold, m)
        except FloorFailed as exc:
            failed.append(f"'{m}': {exc}")
            continue
        used.append(m)
        models.append(dict(model=model, alpha=model.chosen_alpha_))
        stats.append((float(np.mean(train)), float(np.std(train))))
    if not used:
        raise FloorFailed(f"no modality's Coxnet could be fitted ({'; '.join(failed)})")
    for reason in failed:
        _warn(f"late-cox on {fold.label} leaves out modality {reason}")
    return dict(modalities=used, models=models, stats=stats)


def _score_late_cox(state: State, patients: Patients, _: tuple[str, ...]) -> np.ndarray:
    risks, present = [], []
    for m, fit in zip(state["modalities"], state["models"], strict=True):
        risks.append(fit["model"].predict(patients.matrix((m,)), alpha=fit["alpha"]))
        present.append(patients.data.sources[m].present)
    return late_fusion_risk(state["stats"], risks, np.stack(present, axis=1))


def late_fusion_risk(
    stats: Sequence[tuple[float, float]], risks: Sequence[np.ndarray], present: np.ndarray
) -> np.ndarray:
    """The late-fusion rule on its own: mean of z-scored modality risks over present modalities.

    Args:
        stats: per modality, the (mean, sd) of its training risks.
        risks: per modality, risks `(n,)` of the samples to score (ignored where absent).
        present: `(n, n_modalities)` bool.
    """
    n = present.shape[0]
    total, count = np.zeros(n), np.zeros(n)
    for j, ((mean, sd), risk) in enumerate(zip(stats, risks, strict=True)):
        if not sd > 1e-8:
            continue
        total += np.where(present[:, j], (np.asarray(risk) - mean) / sd, 0.0)
        count += present[:, j]
    return np.where(count > 0, total / np.maximum(count, 1), 0.0)


# --------------------------------------------------------------------------------- rsf


def _fit_rsf(fold: FoldData, modalities: tuple[str, ...]) -> State:
    if not fold.y[:, 1].any():
        raise FloorFailed("every training sample is censored")
    forest = _sksurv("ensemble").RandomSurvivalForest(
        n_estimators=RSF_TREES,
        min_samples_leaf=RSF_MIN_LEAF,
        max_features="sqrt",
        n_jobs=1,
        random_state=fold.seed,
    )
    forest.fit(_matrix(fold.train, modalities), _surv(fold.y[:, 0], fold.y[:, 1]))
    return dict(model=forest)


def _score_rsf(state: State, patients: Patients, modalities: tuple[str, ...]) -> np.ndarray:
    return state["model"].predict(patients.matrix(modalities))


# --------------------------------------------------------------------------------- classifiers


def _class_probs(state: State, x: np.ndarray) -> np.ndarray:
    """Probabilities in the task's class order, also when a class is missing from training."""
    model = state["model"]
    p = model.predict_proba(x)
    if state["classes"] == 0:  # binary: both classes are in training (`_train_labels`)
        return p[:, list(model.classes_).index(1)]
    out = np.zeros((len(x), state["classes"]))
    out[:, model.classes_.astype(np.int64)] = p
    return out


def _classes(fold: FoldData) -> int:
    """The task's number of classes to score (0: binary, the positive class's probability)."""
    spec = fold.train.tasks[fold.task]
    return 0 if spec.type == "binary" else len(spec.classes)


def _train_labels(fold: FoldData) -> np.ndarray:
    y = fold.y.astype(np.int64)
    if len(np.unique(y)) < 2:
        raise FloorFailed(f"task '{fold.task}' has a single class among the training samples")
    return y


def _fit_logreg(fold: FoldData, modalities: tuple[str, ...]) -> State:
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(C=1.0, max_iter=5000)
    model.fit(_matrix(fold.train, modalities), _train_labels(fold))
    return dict(model=model, classes=_classes(fold))


def _score_logreg(state: State, patients: Patients, modalities: tuple[str, ...]) -> np.ndarray:
    return _class_probs(state, patients.matrix(modalities))


def _fit_hgb(fold: FoldData, modalities: tuple[str, ...]) -> State:
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
    from threadpoolctl import threadpool_limits

    x = _raw_matrix(fold.raw_train, modalities)
    regression = fold.train.tasks[fold.task].type == "regression"
    kind = HistGradientBoostingRegressor if regression else HistGradientBoostingClassifier
    model = kind(max_iter=100, max_depth=3, min_samples_leaf=10, random_state=fold.seed)
    # one thread: on ~100 samples OpenMP start-up and spinning cost more than they save, and
    # they stall badly when the other cores are busy
    with threadpool_limits(limits=1, user_api="openmp"):
        if regression:
            return dict(model=model.fit(x, _train_values(fold)), classes=None)
        return dict(model=model.fit(x, _train_labels(fold)), classes=_classes(fold))


def _score_hgb(state: State, patients: Patients, modalities: tuple[str, ...]) -> np.ndarray:
    from threadpoolctl import threadpool_limits

    x = patients.raw_matrix(modalities)
    with threadpool_limits(limits=1, user_api="openmp"):
        if state["classes"] is None:
            return state["model"].predict(x)
        return _class_probs(state, x)


# --------------------------------------------------------------------------------- regression


def _train_values(fold: FoldData) -> np.ndarray:
    y = fold.y.astype(np.float64).reshape(-1)
    if len(y) < 3 or np.ptp(y) == 0:
        raise FloorFailed(
            f"task '{fold.task}' has {len(y)} training samples with a known target, "
            "too few or all equal to fit a regression"
        )
    return y


def _fit_ridge(fold: FoldData, modalities: tuple[str, ...]) -> State:
    from sklearn.linear_model import RidgeCV

    model = RidgeCV(alphas=RIDGE_ALPHAS).fit(_matrix(fold.train, modalities), _train_values(fold))
    return dict(model=model)


def _score_ridge(state: State, patients: Patients, modalities: tuple[str, ...]) -> np.ndarray:
    return state["model"].predict(patients.matrix(modalities))


CLASSICAL: dict[str, ClassicalFloor] = {
    f.name: f
    for f in (
        ClassicalFloor("coxnet", SURVIVAL, _fit_coxnet, _score_coxnet),
        ClassicalFloor("rsf", SURVIVAL, _fit_rsf, _score_rsf),
        ClassicalFloor("late-cox", SURVIVAL, _fit_late_cox, _score_late_cox),
        ClassicalFloor("logreg", CLASSIFICATION, _fit_logreg, _score_logreg),
        ClassicalFloor("hgb", CLASSIFICATION + REGRESSION, _fit_hgb, _score_hgb),
        ClassicalFloor("ridge", REGRESSION, _fit_ridge, _score_ridge),
    )
}


def resolve_floor(
    name: str, data: MultimodalDataset
) -> tuple[ClassicalFloor, tuple[str, ...], str]:
    """`"coxnet[clinical,rna]"` → (floor, modalities, display name).

    No bracket, or `[all]`, means every numeric modality; the display name says `[all]` then
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
            f"{data.name or 'dataset'} has no numeric modality (tabular, bag, sequence) for "
            "classical floors"
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


def score_objective(spec: TaskSpec) -> TaskObjective:
    """The metrics of every fusion model for a task's scores that are a risk, not a survival
    curve (a floor's, a stack's): a survival task is scored as a Cox head (no IBS)."""
    from polyfuse.tasks.objective import TaskObjective

    return TaskObjective(risk_task(spec))


def risk_task(spec: TaskSpec) -> TaskSpec:
    """`spec` as a model that gives a risk, not a survival curve, predicts it (a Cox head)."""
    return dataclasses.replace(spec, survival_head="cox") if spec.type == "survival" else spec


# --------------------------------------------------------------------------------- saved


TRUSTED_PACKAGES = ("sklearn.", "sksurv.")
"""The only packages whose types a saved floor may hold (skops rebuilds them without pickle)."""


@dataclass
class FittedFloor:
    """A floor fitted on a training part, with the preprocessing it was fitted with: scores
    any patients read as the training data were (`predict`)."""

    floor: str
    modalities: tuple[str, ...]
    preprocessor: Preprocessor
    state: State

    @classmethod
    def fit(cls, name: str, fold: FoldData) -> FittedFloor:
        """The floor `name` (e.g. `coxnet[clinical]`) fitted on `fold`'s training part."""
        floor, modalities, _ = resolve_floor(name, fold.raw_train)
        return cls(floor.name, modalities, fold.preprocessor, floor.fit(fold, modalities))

    def predict(self, data: MultimodalDataset) -> np.ndarray:
        """The floor's scores of every patient of `data` (raw, as the training data were)."""
        raw = pooled(data)
        patients = Patients(self.preprocessor.transform(raw), raw)
        scores = CLASSICAL[self.floor].score(self.state, patients, self.modalities)
        return np.asarray(scores, dtype=np.float64)

    def save(self, path: Path) -> None:
        """One skops file (no pickle): the floor, its modalities, preprocessing and state."""
        from polyfuse.io import atomic_write

        sio = require("skops.io", "bench")
        content = dict(
            floor=self.floor,
            modalities=list(self.modalities),
            preprocessor=self.preprocessor.state_dict(),
            state=self.state,
        )
        atomic_write(path, lambda p: sio.dump(content, p))

    @classmethod
    def load(cls, path: Path) -> FittedFloor:
        """A floor saved by `save`; a file holding any type but scikit-learn's and
        scikit-survival's is refused, naming the type."""
        sio = require("skops.io", "bench")
        try:
            types = sio.get_untrusted_types(file=path)
        except Exception as exc:  # skops raises many kinds on a bad file
            raise DataError(f"{path} is not a readable skops file ({exc})") from None
        foreign = [t for t in types if not t.startswith(TRUSTED_PACKAGES)]
        if foreign:
            raise DataError(
                f"{path} holds types polyfuse does not load ({', '.join(foreign)}); only "
                "scikit-learn and scikit-survival models are read"
            )
        content = sio.load(path, trusted=types)
        return cls(
            content["floor"],
            tuple(content["modalities"]),
            Preprocessor.from_state_dict(content["preprocessor"]),
            content["state"],
        )
