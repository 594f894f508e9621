"""Calibration and clinical usefulness of predicted probabilities and survival curves.

Discrimination (AUROC, c-index) says whether a model ranks patients well; a report for clinicians
also has to say whether the predicted risks can be taken at face value (calibration) and whether
acting on them would do more good than harm (decision curves, Vickers & Elkin 2006). This module
is the computational core for that part of the report (issue #18): plain numpy, scipy and pandas,
no torch, so it can be checked line by line against independent implementations.

Binary tasks: Brier score, calibration intercept ("calibration-in-the-large") and slope, the
reliability curve with Wilson intervals, and net benefit. Survival tasks: Kaplan–Meier with
Greenwood variance and log(−log) intervals, Breslow survival curves from a Cox linear predictor,
grouped calibration at a horizon, and the survival decision curve of Vickers et al. (2008).
scikit-survival is not needed: the Kaplan–Meier and Breslow estimators are written out here.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from scipy import optimize, stats

PROB_CLIP = 1e-6
Z_95 = float(stats.norm.ppf(0.975))


def _as_float_array(values: ArrayLike, name: str) -> np.ndarray:
    """Flat float array, refused if empty or not finite."""
    array = np.asarray(values, dtype=float).ravel()
    if array.size == 0:
        raise ValueError(f"{name}: is empty")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name}: contains NaN or infinite values")
    return array


def _as_probabilities(values: ArrayLike, name: str) -> np.ndarray:
    """Flat float array of values in [0, 1]."""
    array = _as_float_array(values, name)
    if np.any((array < 0) | (array > 1)):
        raise ValueError(f"{name}: probabilities must lie in [0, 1]")
    return array


def _as_binary(values: ArrayLike, name: str) -> np.ndarray:
    """Flat float array of 0s and 1s."""
    array = _as_float_array(values, name)
    if not np.all((array == 0) | (array == 1)):
        raise ValueError(f"{name}: must contain only 0 and 1")
    return array


def _check_same_length(**arrays: np.ndarray) -> None:
    """Refuse arrays of different lengths, naming each with its length."""
    lengths = {name: len(array) for name, array in arrays.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"lengths differ: {lengths}")


def _as_thresholds(thresholds: ArrayLike) -> np.ndarray:
    """Threshold probabilities, strictly inside (0, 1) so that their odds are finite."""
    array = _as_float_array(thresholds, "thresholds")
    if np.any((array <= 0) | (array >= 1)):
        raise ValueError("thresholds: must lie strictly between 0 and 1")
    return array


def _binary_inputs(prob: ArrayLike, y: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Validated probabilities and 0/1 outcomes of equal length."""
    prob_array, y_array = _as_probabilities(prob, "prob"), _as_binary(y, "y")
    _check_same_length(prob=prob_array, y=y_array)
    return prob_array, y_array


def _survival_inputs(time: ArrayLike, event: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Validated non-negative times and boolean event indicators of equal length."""
    time_array, event_array = _as_float_array(time, "time"), _as_binary(event, "event")
    _check_same_length(time=time_array, event=event_array)
    if np.any(time_array < 0):
        raise ValueError("time: must be non-negative")
    return time_array, event_array.astype(bool)


def _check_horizon(horizon: float, time: np.ndarray) -> None:
    """Refuse a horizon that is not positive or lies beyond the longest follow-up."""
    if not 0 < horizon <= time.max():
        raise ValueError(f"horizon: must lie in (0, {time.max()}], the follow-up, got {horizon}")


def _odds(threshold: np.ndarray) -> np.ndarray:
    """pt / (1 − pt): the harm of a false positive relative to the benefit of a true one."""
    return threshold / (1 - threshold)


def brier_score(prob: ArrayLike, y: ArrayLike) -> float:
    """Mean squared difference between the predicted probability and the 0/1 outcome."""
    prob_array, y_array = _binary_inputs(prob, y)
    return float(np.mean((prob_array - y_array) ** 2))


def _logit(prob: np.ndarray) -> np.ndarray:
    """log(p / (1 − p)) with p clipped to [PROB_CLIP, 1 − PROB_CLIP]."""
    clipped = np.clip(prob, PROB_CLIP, 1 - PROB_CLIP)
    return np.log(clipped / (1 - clipped))


def _fit_logistic(design: np.ndarray, y: np.ndarray, offset: np.ndarray) -> np.ndarray:
    """Unpenalised maximum-likelihood logistic regression of y on `design` plus a fixed offset."""

    def negative_log_likelihood(beta: np.ndarray) -> float:
        eta = offset + design @ beta
        return float(np.sum(np.logaddexp(0, eta) - y * eta))

    def gradient(beta: np.ndarray) -> np.ndarray:
        fitted = 1 / (1 + np.exp(-(offset + design @ beta)))
        return design.T @ (fitted - y)

    def hessian(beta: np.ndarray) -> np.ndarray:
        fitted = 1 / (1 + np.exp(-(offset + design @ beta)))
        return design.T @ (design * (fitted * (1 - fitted))[:, None])

    start = np.zeros(design.shape[1])
    result = optimize.minimize(
        negative_log_likelihood, start, jac=gradient, hess=hessian, method="trust-exact"
    )
    if not result.success:
        raise RuntimeError(f"logistic calibration fit did not converge: {result.message}")
    return result.x


def calibration_intercept_slope(prob: ArrayLike, y: ArrayLike) -> tuple[float, float]:
    """Calibration-in-the-large and calibration slope of predicted probabilities.

    The slope is the coefficient of logit(p) in a logistic regression of y on logit(p) with an
    intercept; the intercept is that of a logistic regression of y with logit(p) as an offset
    (slope fixed to 1). Both are unpenalised; p is clipped to [1e-6, 1 - 1e-6]. Perfect
    calibration gives (0, 1); a slope below 1 means the predictions are too extreme.
    """
    prob_array, y_array = _binary_inputs(prob, y)
    if np.all(y_array == y_array[0]):
        raise ValueError("y: needs both outcomes to estimate calibration")
    logit = _logit(prob_array)
    if np.ptp(logit) == 0:
        raise ValueError("prob: all predictions are equal, the slope is undefined")
    ones = np.ones((len(y_array), 1))
    (intercept,) = _fit_logistic(ones, y_array, offset=logit)
    _, slope = _fit_logistic(np.column_stack([ones, logit]), y_array, offset=np.zeros_like(logit))
    return float(intercept), float(slope)


def wilson_interval(
    successes: ArrayLike, n: ArrayLike, z: float = Z_95
) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval for a binomial proportion (95% by default)."""
    successes_array, n_array = np.asarray(successes, float), np.asarray(n, float)
    fraction = successes_array / n_array
    denominator = 1 + z**2 / n_array
    centre = (fraction + z**2 / (2 * n_array)) / denominator
    half_width = (z / denominator) * np.sqrt(
        fraction * (1 - fraction) / n_array + z**2 / (4 * n_array**2)
    )
    return centre - half_width, centre + half_width


def _bin_edges(prob: np.ndarray, bins: int, strategy: str) -> np.ndarray:
    """`bins + 1` bin edges: quantiles of `prob`, or equal widths on [0, 1]."""
    if strategy == "quantile":
        return np.quantile(prob, np.linspace(0, 1, bins + 1))
    if strategy == "uniform":
        return np.linspace(0, 1, bins + 1)
    raise ValueError(f"strategy: must be 'quantile' or 'uniform', got {strategy!r}")


def reliability_curve(
    prob: ArrayLike, y: ArrayLike, bins: int = 10, strategy: str = "quantile"
) -> pd.DataFrame:
    """Observed event fraction against mean predicted probability per bin, with Wilson 95% CIs.

    Bins are `bins` quantiles of `prob` ("quantile") or equal widths on [0, 1] ("uniform"); a
    probability on an inner edge goes to the lower bin (as in sklearn's `calibration_curve`) and
    empty bins are left out. Columns: bin, mean_predicted, observed, n, ci_low, ci_high.
    """
    prob_array, y_array = _binary_inputs(prob, y)
    if bins < 1:
        raise ValueError(f"bins: must be at least 1, got {bins}")
    edges = _bin_edges(prob_array, bins, strategy)
    bin_of = np.searchsorted(edges[1:-1], prob_array)
    n = np.bincount(bin_of, minlength=bins)
    events = np.bincount(bin_of, weights=y_array, minlength=bins)
    predicted = np.bincount(bin_of, weights=prob_array, minlength=bins)
    filled = n > 0
    ci_low, ci_high = wilson_interval(events[filled], n[filled])
    return pd.DataFrame(
        {
            "bin": np.flatnonzero(filled),
            "mean_predicted": predicted[filled] / n[filled],
            "observed": events[filled] / n[filled],
            "n": n[filled],
            "ci_low": ci_low,
            "ci_high": ci_high,
        }
    )


def net_benefit(prob: ArrayLike, y: ArrayLike, thresholds: ArrayLike) -> pd.DataFrame:
    """Decision curve of a binary model (Vickers & Elkin 2006).

    Treating every patient with prob >= pt: NB = TP/n − FP/n · pt/(1 − pt). Treat-all is
    prevalence − (1 − prevalence) · pt/(1 − pt); treat-none is 0.
    """
    prob_array, y_array = _binary_inputs(prob, y)
    threshold_array = _as_thresholds(thresholds)
    treated = prob_array[None, :] >= threshold_array[:, None]
    true_positive = (treated & (y_array == 1)).mean(axis=1)
    false_positive = (treated & (y_array == 0)).mean(axis=1)
    prevalence = y_array.mean()
    odds = _odds(threshold_array)
    return pd.DataFrame(
        {
            "threshold": threshold_array,
            "model": true_positive - false_positive * odds,
            "treat_all": prevalence - (1 - prevalence) * odds,
            "treat_none": np.zeros_like(threshold_array),
        }
    )


def _log_minus_log_interval(
    survival: np.ndarray, greenwood_sum: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """95% interval for S from a normal interval for log(−log S), Greenwood's variance."""
    positive = survival > 0
    log_survival = np.log(survival, where=positive, out=np.zeros_like(survival))
    scale = np.divide(
        Z_95 * np.sqrt(greenwood_sum),
        -log_survival,
        where=log_survival < 0,
        out=np.zeros_like(survival),
    )
    ci_low = np.where(positive, survival ** np.exp(scale), 0.0)
    ci_high = np.where(positive, survival ** np.exp(-scale), 0.0)
    return ci_low, ci_high


def kaplan_meier(
    time: ArrayLike, event: ArrayLike
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Kaplan–Meier survival at every distinct observed time, with a 95% log(−log) interval.

    Returns (times, survival, ci_low, ci_high); S(t) = P(T > t), so events at t count at t.
    The variance of log S is Greenwood's; the interval is the "log-log" one of lifelines and
    scikit-survival.
    """
    time_array, event_array = _survival_inputs(time, event)
    times, time_index = np.unique(time_array, return_inverse=True)
    deaths = np.bincount(time_index, weights=event_array, minlength=len(times))
    leaving = np.bincount(time_index, minlength=len(times))
    at_risk = len(time_array) - np.concatenate([[0], np.cumsum(leaving)[:-1]])
    survival = np.cumprod(1 - deaths / at_risk)
    survivors = at_risk - deaths
    greenwood_terms = np.divide(
        deaths, at_risk * survivors, where=survivors > 0, out=np.zeros_like(deaths)
    )
    ci_low, ci_high = _log_minus_log_interval(survival, np.cumsum(greenwood_terms))
    return times, survival, ci_low, ci_high


def _step_value(times: np.ndarray, values: np.ndarray, at: np.ndarray, before: float) -> np.ndarray:
    """Right-continuous step function through (times, values), `before` left of times[0]."""
    index = np.searchsorted(times, at, side="right") - 1
    return np.where(index >= 0, values[np.clip(index, 0, None)], before)


def _kaplan_meier_at(time: np.ndarray, event: np.ndarray, horizon: float) -> np.ndarray:
    """Kaplan–Meier (survival, ci_low, ci_high) at `horizon`; NaN past the last follow-up."""
    times, survival, ci_low, ci_high = kaplan_meier(time, event)
    if horizon > times[-1] and survival[-1] > 0:
        return np.full(3, np.nan)
    curves = np.vstack([survival, ci_low, ci_high])
    return np.array([_step_value(times, curve, np.asarray(horizon), 1.0) for curve in curves])


def breslow_survival(
    train_risk: ArrayLike,
    train_time: ArrayLike,
    train_event: ArrayLike,
    risk: ArrayLike,
    times: ArrayLike,
) -> np.ndarray:
    """Survival curves S(t | x) = S0(t)^exp(risk) of a Cox model, shape (len(risk), len(times)).

    `train_risk` and `risk` are Cox linear predictors. The baseline cumulative hazard is
    Breslow's from the training data: H0(t) = Σ_{event times s ≤ t} d(s) / Σ_{j at risk at s}
    exp(train_risk_j), and S0 = exp(−H0). `times` may not go beyond the last training time.
    """
    train_risk_array = _as_float_array(train_risk, "train_risk")
    train_time_array, train_event_array = _survival_inputs(train_time, train_event)
    _check_same_length(train_risk=train_risk_array, train_time=train_time_array)
    risk_array, times_array = _as_float_array(risk, "risk"), _as_float_array(times, "times")
    if times_array.max() > train_time_array.max():
        raise ValueError("times: beyond the last training time, where Breslow is undefined")
    distinct_times, time_index = np.unique(train_time_array, return_inverse=True)
    deaths = np.bincount(time_index, weights=train_event_array, minlength=len(distinct_times))
    exp_risk_per_time = np.bincount(
        time_index, weights=np.exp(train_risk_array), minlength=len(deaths)
    )
    at_risk_weight = np.cumsum(exp_risk_per_time[::-1])[::-1]
    baseline_cumulative_hazard = np.cumsum(deaths / at_risk_weight)
    at_times = _step_value(distinct_times, baseline_cumulative_hazard, times_array, 0.0)
    return np.exp(-np.outer(np.exp(risk_array), at_times))


def cox_slope(risk: ArrayLike, time: ArrayLike, event: ArrayLike) -> float:
    """The coefficient of a one-covariate Cox model of (time, event) on `risk` (Breslow ties,
    unpenalised): how much a unit of the score multiplies the hazard, log scale."""
    risk_array = _as_float_array(risk, "risk")
    time_array, event_array = _survival_inputs(time, event)
    _check_same_length(risk=risk_array, time=time_array)
    if not event_array.any() or np.ptp(risk_array) == 0:
        raise ValueError("risk: a Cox slope needs events and a risk that varies")
    order = np.argsort(time_array, kind="stable")
    z, t, d = risk_array[order], time_array[order], event_array[order]
    first = np.searchsorted(t, t, side="left")  # a risk set starts at the first of its ties

    def negative_log_likelihood(beta: np.ndarray) -> tuple[float, np.ndarray]:
        eta = beta[0] * z
        shift = eta.max()
        w = np.exp(eta - shift)
        denom = np.cumsum(w[::-1])[::-1][first]
        weighted = np.cumsum((w * z)[::-1])[::-1][first]
        value = -np.sum(eta[d] - shift - np.log(denom[d]))
        return float(value), np.array([-np.sum(z[d] - weighted[d] / denom[d])])

    result = optimize.minimize(negative_log_likelihood, np.zeros(1), jac=True, method="BFGS")
    return float(result.x[0])


def survival_at_horizon(
    train_risk: ArrayLike,
    train_time: ArrayLike,
    train_event: ArrayLike,
    risk: ArrayLike,
    horizon: float,
) -> np.ndarray:
    """Each patient's predicted probability of surviving past `horizon`, from a risk score that
    carries no time scale: a Cox model on the score (`cox_slope`) and its Breslow baseline, both
    fitted on the training part only, so the test patients' outcomes never shape their own
    absolute risks. A score that overfits its training part is too extreme here, and shows as
    miscalibrated; that is the point of looking."""
    slope = cox_slope(train_risk, train_time, train_event)
    train = slope * np.asarray(train_risk, dtype=float)
    return breslow_survival(
        train, train_time, train_event, slope * np.asarray(risk, dtype=float), [horizon]
    )[:, 0]


def survival_calibration(
    pred_survival_at_h: ArrayLike,
    time: ArrayLike,
    event: ArrayLike,
    horizon: float,
    groups: int = 3,
) -> pd.DataFrame:
    """Predicted against Kaplan–Meier observed survival at `horizon`, by risk group.

    Patients are sorted by predicted risk (1 − predicted survival) and split into `groups`
    groups of (nearly) equal size, group 0 the lowest risk. Columns: group, n, mean_predicted
    (mean predicted survival at the horizon), observed (Kaplan–Meier survival at the horizon),
    ci_low, ci_high (its log(−log) 95% interval). A group whose follow-up ends, censored, before
    the horizon gets NaN for observed and its interval.
    """
    predicted = _as_probabilities(pred_survival_at_h, "pred_survival_at_h")
    time_array, event_array = _survival_inputs(time, event)
    _check_same_length(pred_survival_at_h=predicted, time=time_array)
    _check_horizon(horizon, time_array)
    if not 1 <= groups <= len(predicted):
        raise ValueError(f"groups: must lie in [1, {len(predicted)}], got {groups}")
    by_risk = np.argsort(1 - predicted, kind="stable")
    rows = []
    for group, members in enumerate(np.array_split(by_risk, groups)):
        observed, ci_low, ci_high = _kaplan_meier_at(
            time_array[members], event_array[members], horizon
        )
        rows.append(
            {
                "group": group,
                "n": len(members),
                "mean_predicted": float(predicted[members].mean()),
                "observed": observed,
                "ci_low": ci_low,
                "ci_high": ci_high,
            }
        )
    return pd.DataFrame(rows)


def survival_net_benefit(
    pred_event_prob_at_h: ArrayLike,
    time: ArrayLike,
    event: ArrayLike,
    horizon: float,
    thresholds: ArrayLike,
) -> pd.DataFrame:
    """Decision curve for a survival model at `horizon` (Vickers et al. 2008).

    For threshold pt, the patients with predicted event probability >= pt (a proportion q) are
    treated; E is their Kaplan–Meier event probability by the horizon, and NB = E·q −
    (1 − E)·q·pt/(1 − pt) (0 when nobody is treated). Treat-all uses the whole cohort's
    Kaplan–Meier (q = 1); treat-none is 0.
    """
    predicted = _as_probabilities(pred_event_prob_at_h, "pred_event_prob_at_h")
    time_array, event_array = _survival_inputs(time, event)
    _check_same_length(pred_event_prob_at_h=predicted, time=time_array)
    _check_horizon(horizon, time_array)
    threshold_array = _as_thresholds(thresholds)

    def benefit(treated: np.ndarray, threshold: float) -> float:
        """Net benefit of treating the patients marked in `treated` at `threshold`."""
        share = treated.mean()
        if share == 0:
            return 0.0
        event_prob = 1 - _kaplan_meier_at(time_array[treated], event_array[treated], horizon)[0]
        return float(event_prob * share - (1 - event_prob) * share * _odds(threshold))

    everyone = np.ones(len(predicted), dtype=bool)
    return pd.DataFrame(
        {
            "threshold": threshold_array,
            "model": [benefit(predicted >= pt, pt) for pt in threshold_array],
            "treat_all": [benefit(everyone, pt) for pt in threshold_array],
            "treat_none": np.zeros_like(threshold_array),
        }
    )
