"""Split-conformal uncertainty for a fitted model's predictions: sets, intervals, survival bounds.

A clinician reading "predicted class: stage II" or "predicted survival: 31 months" also needs to
know how sure that prediction is. Conformal prediction turns any fitted model into one that
answers with a set of classes, an interval or a lower bound that contains the truth for at least
a chosen share ``1 - alpha`` of patients. The guarantee is distribution-free: it needs no model
to be right, only a held-out calibration set exchangeable with the patients predicted later
(split conformal; Vovk et al. 2005, Lei et al. 2018, "Distribution-free predictive inference
for regression"). The coverage is marginal (on average over patients), not per patient.

Methods used:

* ``conformal_quantile``: the ``ceil((n + 1)(1 - alpha))``-th smallest of ``n`` calibration
  scores, the finite-sample correction that makes coverage at least ``1 - alpha`` and, for
  continuous scores, at most ``1 - alpha + 1 / (n + 1)``.
* classification, ``"lac"``: score ``1 - p_true`` (least ambiguous set-valued classifiers,
  Sadinle, Lei & Wasserman 2019, JASA), which gives the smallest sets on average when the
  probabilities are calibrated.
* classification, ``"aps"``: adaptive prediction sets (Romano, Sesia & Candès 2020, NeurIPS):
  the probability mass of every class ranked at or above the true one. This is the deterministic
  (non-randomised) version; its coverage is still at least ``1 - alpha``, and it is slightly
  conservative: its sets are somewhat larger than the randomised version's.
* regression: absolute-residual split conformal (Lei et al. 2018), ``pred +- q``.
* survival: a lower bound on the event time from right-censored data, by weighted split
  conformal (Tibshirani, Barber, Candès & Ramdas 2019, "Conformal prediction under covariate
  shift", Theorem 2, which allows weights that depend on the outcome) with inverse-probability-
  of-censoring weights, in the spirit of Candès, Lei & Ren (2023, "Conformalized survival
  analysis", JRSS-B); see ``fit_survival`` for what is assumed and what is guaranteed.

Only numpy is imported, so the inference layer can import this module cheaply. Each fitted
object is a small frozen dataclass whose ``to_dict`` is plain JSON (infinity is written as
``null``) and can be saved next to a model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

METHODS = ("lac", "aps")
# A rank target such as (n + 1)(1 - alpha) = 9.000000000000002 must not round up to 10.
_ROUNDING = 1e-9


# --------------------------------------------------------------------------- checks


def _check_alpha(alpha: float) -> float:
    if not isinstance(alpha, int | float) or not 0.0 < float(alpha) < 1.0:
        raise ValueError(f"alpha must be a number in (0, 1), got {alpha!r}")
    return float(alpha)


def _vector(values: Any, name: str) -> np.ndarray:
    array = np.asarray(values, dtype=float)
    if array.ndim != 1 or array.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D array, got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return array


def _same_length(**arrays: np.ndarray) -> None:
    lengths = {name: len(array) for name, array in arrays.items()}
    if len(set(lengths.values())) > 1:
        described = ", ".join(f"{name} has {n}" for name, n in lengths.items())
        raise ValueError(f"lengths differ: {described}")


def _positive(values: Any, name: str) -> np.ndarray:
    array = _vector(values, name)
    if np.any(array <= 0):
        raise ValueError(f"{name} must be positive (times), got minimum {array.min()}")
    return array


def _probabilities(prob: Any, name: str) -> np.ndarray:
    """An (n, K) probability matrix; a 1-D ``prob`` is binary P(y = 1) and becomes (n, 2)."""
    array = np.asarray(prob, dtype=float)
    if array.ndim == 1:
        array = np.stack([1.0 - array, array], axis=1)
    if array.ndim != 2 or array.shape[0] == 0 or array.shape[1] < 2:
        raise ValueError(f"{name} must be a P(y=1) vector or an (n, K>=2) matrix")
    if np.any(np.isnan(array)):
        raise ValueError(f"{name} contains NaN values")
    if np.any((array < 0.0) | (array > 1.0)):
        raise ValueError(f"{name} has probabilities outside [0, 1]")
    if not np.allclose(array.sum(axis=1), 1.0, atol=1e-4):
        raise ValueError(f"{name} rows must sum to 1")
    return array


def _labels(y: Any, n_classes: int) -> np.ndarray:
    array = _vector(y, "y_cal")
    if np.any(array != np.round(array)) or array.min() < 0 or array.max() >= n_classes:
        raise ValueError(f"y_cal must hold class indices 0..{n_classes - 1}")
    return array.astype(int)


def _events(event: Any) -> np.ndarray:
    array = _vector(event, "event_cal")
    if not np.all((array == 0) | (array == 1)):
        raise ValueError("event_cal must be 0 (censored) or 1 (event)")
    return array.astype(bool)


def _encode(value: float) -> float | None:
    return None if math.isinf(value) else float(value)


def _decode(value: float | None) -> float:
    return math.inf if value is None else float(value)


# --------------------------------------------------------------------------- quantile


def _weighted_quantile(sorted_scores: np.ndarray, cum_weights: np.ndarray, targets: Any) -> Any:
    """Smallest sorted score whose cumulative weight reaches each target (inf if none does)."""
    targets = np.asarray(targets, dtype=float)
    index = np.searchsorted(cum_weights, targets * (1.0 - _ROUNDING), side="left")
    padded = np.append(sorted_scores, np.inf)
    return padded[np.minimum(index, len(sorted_scores))]


def conformal_quantile(scores: Any, alpha: float) -> float:
    """The ``ceil((n + 1)(1 - alpha))``-th smallest of the ``n`` calibration scores.

    When that rank exceeds ``n`` (fewer than ``1 / alpha - 1`` scores) no finite threshold keeps
    the guarantee, and the answer is ``inf``: the set is every class, the interval unbounded.
    """
    alpha = _check_alpha(alpha)
    ordered = np.sort(_vector(scores, "scores"))
    n = len(ordered)
    cum = np.arange(1, n + 1, dtype=float)
    return float(_weighted_quantile(ordered, cum, (n + 1) * (1.0 - alpha)))


# --------------------------------------------------------------------------- classification


def _class_scores(prob: np.ndarray, method: str) -> np.ndarray:
    """Nonconformity score of every candidate class, (n, K): large means an unlikely label."""
    if method == "lac":
        return 1.0 - prob
    # APS: mass of the classes ranked above class k, plus k's own (ties do not count as above)
    above = prob[:, None, :] > prob[:, :, None]
    return (prob[:, None, :] * above).sum(axis=2) + prob


@dataclass(frozen=True)
class ConformalClassifier:
    """Prediction sets: every class whose score is at most ``threshold``."""

    method: str
    alpha: float
    threshold: float

    def sets(self, prob: Any) -> np.ndarray:
        """Boolean (n, K) membership of each class in each patient's prediction set."""
        return _class_scores(_probabilities(prob, "prob"), self.method) <= self.threshold

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON (an infinite threshold is ``None``)."""
        return {"method": self.method, "alpha": self.alpha, "threshold": _encode(self.threshold)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ConformalClassifier:
        """The inverse of ``to_dict``."""
        return cls(data["method"], float(data["alpha"]), _decode(data["threshold"]))


def fit_classification(
    prob_cal: Any, y_cal: Any, alpha: float, method: str = "lac"
) -> ConformalClassifier:
    """Calibrate prediction sets on held-out probabilities ``prob_cal`` and labels ``y_cal``.

    ``prob_cal`` is P(y = 1) for a binary task or an (n, K) matrix; ``method`` is ``"lac"``
    (smallest sets) or ``"aps"`` (sets that adapt to how spread out the probabilities are).
    """
    alpha = _check_alpha(alpha)
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    prob = _probabilities(prob_cal, "prob_cal")
    y = _labels(y_cal, prob.shape[1])
    _same_length(prob_cal=prob, y_cal=y)
    true_scores = _class_scores(prob, method)[np.arange(len(y)), y]
    return ConformalClassifier(method, alpha, conformal_quantile(true_scores, alpha))


# --------------------------------------------------------------------------- regression


@dataclass(frozen=True)
class ConformalRegressor:
    """Intervals ``pred - half_width .. pred + half_width``."""

    alpha: float
    half_width: float

    def interval(self, pred: Any) -> tuple[np.ndarray, np.ndarray]:
        """(low, high) arrays around the point predictions ``pred``."""
        pred = _vector(pred, "pred")
        return pred - self.half_width, pred + self.half_width

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON (an infinite half-width is ``None``)."""
        return {"alpha": self.alpha, "half_width": _encode(self.half_width)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ConformalRegressor:
        """The inverse of ``to_dict``."""
        return cls(float(data["alpha"]), _decode(data["half_width"]))


def fit_regression(pred_cal: Any, y_cal: Any, alpha: float) -> ConformalRegressor:
    """Calibrate intervals from held-out predictions and outcomes (absolute residuals)."""
    alpha = _check_alpha(alpha)
    pred, y = _vector(pred_cal, "pred_cal"), _vector(y_cal, "y_cal")
    _same_length(pred_cal=pred, y_cal=y)
    return ConformalRegressor(alpha, conformal_quantile(np.abs(y - pred), alpha))


# --------------------------------------------------------------------------- survival


def _censoring_survival(time: np.ndarray, event: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Kaplan–Meier of the censoring time: its distinct times c_j and G(c_j) = P(C > c_j).

    Censoring is the "event" here; a patient is at risk at c if their time is at least c.
    """
    cut_times, censored = np.unique(time[~event], return_counts=True)
    at_risk = len(time) - np.searchsorted(np.sort(time), cut_times, side="left")
    return cut_times, np.cumprod(1.0 - censored / at_risk)


@dataclass(frozen=True)
class ConformalSurvival:
    """Lower bounds ``L = pred_time * exp(-q)`` where ``q`` depends on which censoring-time
    segment ``L`` falls in: ``thresholds[j]`` holds on ``(cut_times[j-1], cut_times[j]]``, from
    0 before the first cut and to infinity after the last."""

    alpha: float
    cut_times: tuple[float, ...]
    thresholds: tuple[float, ...]

    def lower_bound(self, pred_time: Any) -> np.ndarray:
        """Per-patient lower bound ``L`` with P(T >= L) >= 1 - alpha (see ``fit_survival``)."""
        pred = _positive(pred_time, "pred_time")
        starts = np.concatenate([[0.0], self.cut_times])
        ends = np.concatenate([self.cut_times, [np.inf]])
        bounds = pred[:, None] * np.exp(-np.asarray(self.thresholds))[None, :]
        # the bound is the first segment that holds a time at or above its own segment's bound
        first = np.argmax(bounds <= ends[None, :], axis=1)
        return np.maximum(bounds[np.arange(len(pred)), first], starts[first])

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON (infinite thresholds are ``None``)."""
        return {
            "alpha": self.alpha,
            "cut_times": [float(c) for c in self.cut_times],
            "thresholds": [_encode(q) for q in self.thresholds],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ConformalSurvival:
        """The inverse of ``to_dict``."""
        return cls(
            float(data["alpha"]),
            tuple(float(c) for c in data["cut_times"]),
            tuple(_decode(q) for q in data["thresholds"]),
        )


def fit_survival(
    pred_time_cal: Any, time_cal: Any, event_cal: Any, alpha: float
) -> ConformalSurvival:
    """Calibrate a lower bound ``L(x)`` on the event time from right-censored held-out data.

    ``pred_time_cal`` is any positive per-patient predicted time (a predicted median, say);
    ``time_cal`` the observed time min(T, C) and ``event_cal`` 1 for an event, 0 if censored.

    Method: the score is ``log(pred_time) - log(T)``, known for the patients with an event.
    Given the event indicators, these patients are an i.i.d. sample of (X, T) tilted by the
    chance G(T) = P(C >= T) of being seen, so each is weighted by ``1 / G(T)`` and the new
    patient's candidate time ``t`` by ``1 / G(t)`` (Tibshirani et al. 2019, Theorem 2; that
    weight depends on ``t``, so the bound is the smallest ``t`` whose score passes the weighted
    quantile with the weight at ``t``). G is the Kaplan–Meier estimate of the censoring
    distribution on the calibration set.

    Assumed: censoring independent of both T and the covariates X (random censoring, as from
    administrative end of follow-up), G > 0 wherever T can fall, calibration and new patients
    exchangeable. Guaranteed: with G known, P(T >= L(X)) >= 1 - alpha in finite samples,
    marginally; with G estimated by Kaplan–Meier the guarantee is approximate, its error
    shrinking as the calibration set grows. Under heavy censoring the bound is cautious: where
    few patients remain uncensored the weights are large and it stops near that time.
    Raises ValueError when the events are too few for any finite bound at 1 - alpha.
    """
    alpha = _check_alpha(alpha)
    pred = _positive(pred_time_cal, "pred_time_cal")
    time, event = _positive(time_cal, "time_cal"), _events(event_cal)
    _same_length(pred_time_cal=pred, time_cal=time, event_cal=event)
    cut_times, g_after = _censoring_survival(time, event)
    g_before = np.concatenate([[1.0], g_after])  # G(t-) on (0, c_1], (c_1, c_2], ...
    segment = np.searchsorted(cut_times, time[event], side="left")
    scores = np.log(pred[event]) - np.log(time[event])
    order = np.argsort(scores)
    scores = scores[order]
    weights = (1.0 / g_before[segment])[order]
    with np.errstate(divide="ignore"):
        test_weights = 1.0 / g_before
    targets = (1.0 - alpha) * (weights.sum() + test_weights)
    thresholds = _weighted_quantile(scores, np.cumsum(weights), targets)
    if math.isinf(thresholds[0]):
        raise ValueError(
            f"too few events in event_cal ({int(event.sum())} of {len(event)}) to reach "
            f"coverage 1 - alpha = {1 - alpha:g}; use a larger calibration set or a larger alpha"
        )
    keep = np.concatenate([thresholds[1:] != thresholds[:-1], [True]])  # merge equal segments
    return ConformalSurvival(
        alpha, tuple(cut_times[keep[:-1]].tolist()), tuple(thresholds[keep].tolist())
    )


# --------------------------------------------------------------------------- tasks

Conformal = ConformalClassifier | ConformalRegressor | ConformalSurvival


def _time_scale(risk: np.ndarray) -> np.ndarray:
    """A positive predicted time from a risk (higher risk, earlier event): exp(-risk). Its
    scale is immaterial, since the conformal quantile absorbs it; only the order matters."""
    return np.exp(-np.clip(np.asarray(risk, dtype=float), -700.0, 700.0))


def _known(target: np.ndarray) -> np.ndarray:
    return ~np.isnan(np.asarray(target, dtype=float).reshape(len(target), -1)).any(1)


def fit_task(kind: str, scores: dict[str, np.ndarray], target: np.ndarray, alpha: float):
    """The conformal calibration of a task of type `kind` from held-out `scores` (a model's:
    `risk`, `prob` or `pred`) and targets (unknown ones left out); None for multilabel tasks.
    Raises ValueError where the samples are too few for a finite set, interval or bound."""
    known = _known(target)
    y = np.asarray(target)[known]
    if kind == "survival":
        return fit_survival(_time_scale(scores["risk"][known]), y[:, 0], y[:, 1], alpha)
    if kind in ("binary", "multiclass"):
        calibration: Conformal = fit_classification(scores["prob"][known], y, alpha)
        width = calibration.threshold
    elif kind == "regression":
        calibration = fit_regression(scores["pred"][known], y.reshape(-1), alpha)
        width = calibration.half_width
    else:
        return None
    if math.isinf(width):  # every class, an infinite interval: nothing a reader can use
        raise ValueError(
            f"{int(known.sum())} calibration samples are too few for coverage {1 - alpha:g} "
            f"(at least {math.ceil(1 / alpha) - 1} are needed)"
        )
    return calibration


def task_outputs(conformal: Conformal, scores: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """What a calibration adds to a task's scores: `set` (n, K) for classification,
    `pred_low`/`pred_high` for regression, `time_lower` (the event time's lower bound) for
    survival, in the training data's time unit."""
    if isinstance(conformal, ConformalClassifier):
        return {"set": conformal.sets(scores["prob"])}
    if isinstance(conformal, ConformalRegressor):
        low, high = conformal.interval(scores["pred"])
        return {"pred_low": low, "pred_high": high}
    return {"time_lower": conformal.lower_bound(_time_scale(scores["risk"]))}


def task_coverage(scores: dict[str, np.ndarray], target: np.ndarray) -> dict[str, float]:
    """The measured coverage of `task_outputs` on patients with a known target: `coverage`
    and the mean set size or interval width; for survival, `coverage_low` and
    `coverage_high`, the bounds that censoring leaves (a patient censored before their bound
    may or may not have reached it)."""
    known = _known(target)
    y = np.asarray(target, dtype=float)[known]
    if not known.any():
        return {}
    if "set" in scores:
        sets = scores["set"][known]
        covered = sets[np.arange(len(y)), y.reshape(-1).astype(int)]
        return {"coverage": float(covered.mean()), "set_size": float(sets.sum(1).mean())}
    if "pred_low" in scores:
        low, high, value = scores["pred_low"][known], scores["pred_high"][known], y.reshape(-1)
        inside = (low <= value) & (value <= high)
        return {"coverage": float(inside.mean()), "interval_width": float((high - low).mean())}
    if "time_lower" in scores:
        bound, time, event = scores["time_lower"][known], y[:, 0], y[:, 1].astype(bool)
        reached = time >= bound  # an event then, or censored after the bound: T >= L
        unknown = ~event & ~reached
        return {
            "coverage_low": float(reached.mean()),
            "coverage_high": float((reached | unknown).mean()),
        }
    return {}


def from_dict(data: dict[str, Any]) -> Conformal:
    """A saved calibration (`to_dict` of any of the three), by the fields it has."""
    if "method" in data:
        return ConformalClassifier.from_dict(data)
    if "half_width" in data:
        return ConformalRegressor.from_dict(data)
    return ConformalSurvival.from_dict(data)
