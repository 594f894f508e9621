"""Calibration and decision curves, each value checked against an independent computation."""

import numpy as np
import pytest
from scipy.optimize import brentq
from scipy.special import expit, logit
from sklearn.calibration import calibration_curve
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import brier_score_loss

from polyfuse.evaluation.calibration import (
    breslow_survival,
    brier_score,
    calibration_intercept_slope,
    kaplan_meier,
    net_benefit,
    reliability_curve,
    survival_calibration,
    survival_net_benefit,
    wilson_interval,
)

# ten patients for the hand-worked decision curves: sorted by prediction, outcomes 1 1 0 1 0 1 0 ...
TEN_PROB = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.05])
TEN_Y = np.array([1, 1, 0, 1, 0, 1, 0, 0, 0, 0])


def calibrated_cohort(n: int = 20000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    prob = expit(rng.normal(-0.5, 1.2, n))
    return prob, rng.binomial(1, prob)


def censored_cohort(n: int = 300, seed: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Covariates, exponential event times with a Cox hazard, random censoring, tied times."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3))
    event_time = rng.exponential(1 / np.exp(x @ np.array([0.8, -0.5, 0.3])))
    censor_time = rng.exponential(1.5, n)
    time = np.round(np.minimum(event_time, censor_time), 1) + 0.1  # ties, and no zero times
    return x, time, event_time <= censor_time


def test_brier_score_matches_sklearn() -> None:
    prob, y = calibrated_cohort(500)
    assert brier_score(prob, y) == pytest.approx(brier_score_loss(y, prob), rel=1e-12)


def test_slope_matches_unpenalised_sklearn_and_intercept_solves_its_score_equation() -> None:
    prob, y = calibrated_cohort(2000, seed=3)
    prob = expit(1.4 * logit(prob) - 0.3)  # miscalibrated: neither value is trivially 0 or 1
    intercept, slope = calibration_intercept_slope(prob, y)
    logit_p = logit(np.clip(prob, 1e-6, 1 - 1e-6))
    # unpenalised: C=inf is sklearn>=1.8's spelling of the deprecated penalty=None
    reference = LogisticRegression(C=np.inf, tol=1e-10, max_iter=10_000)
    reference.fit(logit_p[:, None], y)
    assert slope == pytest.approx(reference.coef_[0, 0], abs=1e-5)

    # with logit(p) as an offset, the MLE intercept makes expected events equal observed ones
    def expected_minus_observed(offset_intercept: float) -> float:
        return expit(offset_intercept + logit_p).sum() - y.sum()

    assert intercept == pytest.approx(brentq(expected_minus_observed, -5, 5, xtol=1e-12), abs=1e-6)
    assert abs(intercept) > 0.05 and abs(slope - 1) > 0.05


def test_perfect_calibration_gives_zero_and_one_and_overconfidence_halves_the_slope() -> None:
    prob, y = calibrated_cohort()
    intercept, slope = calibration_intercept_slope(prob, y)
    assert intercept == pytest.approx(0, abs=0.05)
    assert slope == pytest.approx(1, abs=0.05)
    _, overconfident_slope = calibration_intercept_slope(expit(2 * logit(prob)), y)
    assert overconfident_slope == pytest.approx(0.5, abs=0.05)


def test_wilson_interval_by_hand() -> None:
    # 3 of 10, z = 1.959964: centre (0.3 + z²/20) / (1 + z²/10) = 0.3555066,
    # half-width z / (1 + z²/10) · sqrt(0.021 + z²/400) = 0.2477153
    low, high = wilson_interval(3, 10)
    assert (low, high) == pytest.approx((0.1077913, 0.6032219), abs=1e-7)
    # 0 of 5 still gives a non-degenerate upper bound z² / (n + z²)
    low, high = wilson_interval(0, 5)
    assert (low, high) == pytest.approx((0.0, 1.959964**2 / (5 + 1.959964**2)), abs=1e-6)


@pytest.mark.parametrize("strategy", ["quantile", "uniform"])
def test_reliability_curve_matches_sklearn_calibration_curve(strategy: str) -> None:
    prob, y = calibrated_cohort(3000, seed=5)
    curve = reliability_curve(prob, y, bins=8, strategy=strategy)
    observed, predicted = calibration_curve(y, prob, n_bins=8, strategy=strategy)
    np.testing.assert_allclose(curve["observed"], observed, rtol=1e-12)
    np.testing.assert_allclose(curve["mean_predicted"], predicted, rtol=1e-12)
    assert curve["n"].sum() == len(y)
    low, high = wilson_interval(curve["observed"] * curve["n"], curve["n"])
    np.testing.assert_allclose(curve["ci_low"], low)
    np.testing.assert_allclose(curve["ci_high"], high)
    assert list(curve.columns) == ["bin", "mean_predicted", "observed", "n", "ci_low", "ci_high"]


def test_reliability_curve_bins_by_hand() -> None:
    # 0.5 lies on the inner edge and goes to the lower bin, as in sklearn's calibration_curve
    prob = [0.05, 0.15, 0.5, 0.8, 0.95, 0.85]
    y = [0, 0, 1, 1, 1, 0]
    curve = reliability_curve(prob, y, bins=2, strategy="uniform")
    assert curve["bin"].tolist() == [0, 1]
    assert curve["n"].tolist() == [3, 3]
    np.testing.assert_allclose(curve["observed"], [1 / 3, 2 / 3])
    np.testing.assert_allclose(curve["mean_predicted"], [0.7 / 3, 2.6 / 3])
    # four bins: (0.25, 0.5] holds only 0.5, (0.5, 0.75] is empty and left out
    assert reliability_curve(prob, y, bins=4, strategy="uniform")["bin"].tolist() == [0, 1, 3]


def test_net_benefit_of_ten_patients_by_hand() -> None:
    out = net_benefit(TEN_PROB, TEN_Y, [0.25, 0.5, 0.95])
    # pt 0.25: the top 7 are treated, TP 4 FP 3, odds 1/3: 0.4 - 0.3/3 = 0.3
    # pt 0.5: the top 5, TP 3 FP 2, odds 1: 0.3 - 0.2 = 0.1; pt 0.95: nobody is treated
    np.testing.assert_allclose(out["model"], [0.3, 0.1, 0.0], atol=1e-12)
    # prevalence 0.4: treat-all 0.4 - 0.6·odds
    np.testing.assert_allclose(out["treat_all"], [0.4 - 0.6 / 3, -0.2, 0.4 - 0.6 * 19])
    np.testing.assert_allclose(out["treat_none"], 0.0)
    np.testing.assert_allclose(out["threshold"], [0.25, 0.5, 0.95])


def test_kaplan_meier_by_hand() -> None:
    times, survival, _, _ = kaplan_meier([1, 2, 2, 3, 4], [1, 1, 0, 1, 0])
    # at risk 5, 4, 2, 1; deaths 1, 1, 1, 0
    np.testing.assert_allclose(times, [1, 2, 3, 4])
    np.testing.assert_allclose(survival, [0.8, 0.8 * 0.75, 0.8 * 0.75 * 0.5, 0.3])


def test_kaplan_meier_matches_sksurv_log_log_interval() -> None:
    nonparametric = pytest.importorskip("sksurv.nonparametric")
    _, time, event = censored_cohort()
    times, survival, ci_low, ci_high = kaplan_meier(time, event)
    ref_times, ref_survival, ref_ci = nonparametric.kaplan_meier_estimator(
        event, time, conf_type="log-log"
    )
    np.testing.assert_allclose(times, ref_times)
    np.testing.assert_allclose(survival, ref_survival, rtol=1e-12)
    np.testing.assert_allclose(ci_low, ref_ci[0], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(ci_high, ref_ci[1], rtol=1e-10, atol=1e-12)
    assert np.all((ci_low <= survival) & (survival <= ci_high))


def test_breslow_survival_matches_sksurv_cox_model() -> None:
    pytest.importorskip("sksurv")
    from sksurv.linear_model import CoxPHSurvivalAnalysis
    from sksurv.util import Surv

    x, time, event = censored_cohort()
    train, test = slice(0, 200), slice(200, None)
    model = CoxPHSurvivalAnalysis().fit(x[train], Surv.from_arrays(event[train], time[train]))
    times = model.unique_times_
    got = breslow_survival(
        x[train] @ model.coef_, time[train], event[train], x[test] @ model.coef_, times
    )
    expected = model.predict_survival_function(x[test], return_array=True)
    assert got.shape == (100, len(times))
    np.testing.assert_allclose(got, expected, atol=1e-6)


def test_breslow_survival_by_hand() -> None:
    # risks 0, log 2, log 3; times 1, 2, 3 all events: H0(1) = 1/6, H0(2) = 1/6 + 1/5
    risk = np.log([1.0, 2.0, 3.0])
    got = breslow_survival(risk, [1, 2, 3], [1, 1, 1], [0.0, np.log(2)], [0.5, 1.5, 2])
    hazard = np.array([0, 1 / 6, 1 / 6 + 1 / 5])
    np.testing.assert_allclose(got, [np.exp(-hazard), np.exp(-2 * hazard)])


def test_survival_calibration_without_censoring_is_plain_fractions() -> None:
    time = np.arange(1.0, 9.0)
    event = np.ones(8)
    predicted = np.array([0.9, 0.2, 0.8, 0.3, 0.7, 0.4, 0.6, 0.1])
    out = survival_calibration(predicted, time, event, horizon=4.5, groups=2)
    # low-risk group (highest predicted survival): patients at times 1, 3, 5, 7
    assert out["n"].tolist() == [4, 4]
    np.testing.assert_allclose(out["mean_predicted"], [0.75, 0.25])
    np.testing.assert_allclose(out["observed"], [2 / 4, 2 / 4])


def test_survival_calibration_matches_sksurv_per_group() -> None:
    nonparametric = pytest.importorskip("sksurv.nonparametric")
    x, time, event = censored_cohort()
    predicted = expit(-x[:, 0])
    horizon = 0.5
    out = survival_calibration(predicted, time, event, horizon=horizon, groups=3)
    order = np.argsort(1 - predicted, kind="stable")
    for row, members in zip(out.itertuples(), np.array_split(order, 3), strict=True):
        ref_times, ref_survival, ref_ci = nonparametric.kaplan_meier_estimator(
            event[members], time[members], conf_type="log-log"
        )
        at = np.searchsorted(ref_times, horizon, side="right") - 1
        assert row.observed == pytest.approx(ref_survival[at])
        assert (row.ci_low, row.ci_high) == pytest.approx((ref_ci[0, at], ref_ci[1, at]))
        assert row.mean_predicted == pytest.approx(predicted[members].mean())
    assert out["observed"].iloc[0] > out["observed"].iloc[-1]  # the risk ordering is kept


def test_survival_calibration_is_nan_where_a_group_is_lost_before_the_horizon() -> None:
    out = survival_calibration([0.9, 0.8, 0.2, 0.1], [1, 2, 5, 6], [0, 0, 1, 0], 4, groups=2)
    assert np.isnan(out["observed"].iloc[0]) and np.isnan(out["ci_low"].iloc[0])
    assert out["observed"].iloc[1] == 1.0


def test_survival_net_benefit_without_censoring_by_hand() -> None:
    time = np.arange(1.0, 11.0)
    event = np.ones(10)
    predicted = np.array([0.9, 0.3, 0.8, 0.2, 0.6, 0.7, 0.1, 0.4, 0.5, 0.05])
    out = survival_net_benefit(predicted, time, event, horizon=5, thresholds=[0.25, 0.5])
    # events by 5: the first five. pt 0.5: q = 5/10 treated, 3 of them events:
    # 0.6·0.5 − 0.4·0.5·1 = 0.1; pt 0.25: q = 7/10, 4 events: 4/10 − 3/10 · 1/3 = 0.3
    np.testing.assert_allclose(out["model"], [0.3, 0.1])
    # everyone: E = 0.5, so 0.5 − 0.5/3 and 0.5 − 0.5
    np.testing.assert_allclose(out["treat_all"], [1 / 3, 0.0], atol=1e-12)
    binary = net_benefit(predicted, (time <= 5).astype(int), [0.25, 0.5])
    np.testing.assert_allclose(out[["model", "treat_all"]], binary[["model", "treat_all"]])


def test_survival_net_benefit_uses_kaplan_meier_of_the_treated_under_censoring() -> None:
    nonparametric = pytest.importorskip("sksurv.nonparametric")
    x, time, event = censored_cohort()
    predicted = expit(x[:, 0])
    horizon, threshold = 0.5, 0.6
    out = survival_net_benefit(predicted, time, event, horizon, [threshold])
    treated = predicted >= threshold
    ref_times, ref_survival = nonparametric.kaplan_meier_estimator(event[treated], time[treated])
    event_prob = 1 - ref_survival[np.searchsorted(ref_times, horizon, side="right") - 1]
    share = treated.mean()
    expected = event_prob * share - (1 - event_prob) * share * threshold / (1 - threshold)
    assert out["model"].iloc[0] == pytest.approx(expected)


def test_nobody_treated_gives_zero_survival_net_benefit() -> None:
    out = survival_net_benefit([0.1, 0.2], [1, 2], [1, 0], 1.5, [0.5])
    assert out["model"].iloc[0] == 0.0


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: brier_score([0.1, 0.2], [1]), "lengths differ"),
        (lambda: brier_score([0.1, 1.2], [1, 0]), "prob"),
        (lambda: brier_score([0.1, 0.2], [1, 2]), "y"),
        (lambda: net_benefit([0.1, 0.2], [1, 0], [0.0, 0.5]), "thresholds"),
        (lambda: reliability_curve([0.1, 0.2], [1, 0], strategy="kmeans"), "strategy"),
        (lambda: calibration_intercept_slope([0.1, 0.2], [1, 1]), "y"),
        (lambda: kaplan_meier([1, -2], [1, 0]), "time"),
        (lambda: survival_calibration([0.5, 0.6], [1, 2], [1, 0], 3), "horizon"),
        (lambda: survival_net_benefit([0.5, -0.1], [1, 2], [1, 0], 1, [0.5]), "pred_event"),
        (lambda: breslow_survival([0.0], [1], [1], [0.0], [2]), "times"),
        (lambda: breslow_survival([0.0, 1.0], [1], [1], [0.0], [1]), "lengths differ"),
    ],
)
def test_invalid_inputs_name_the_argument(call, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()


def test_cox_slope_and_survival_at_horizon_match_scikit_survival() -> None:
    """A score that is half the true linear predictor gets slope ≈ 2 × sksurv's coefficient of
    the score, and the survival at the horizon is sksurv's Cox model on the score."""
    sksurv = pytest.importorskip("sksurv.linear_model")
    from sksurv.util import Surv

    from polyfuse.evaluation.calibration import cox_slope, survival_at_horizon

    x, time, event = censored_cohort(400, seed=5)
    score = x @ np.array([0.8, -0.5, 0.3]) / 2
    train, test = slice(0, 300), slice(300, 400)
    reference = sksurv.CoxPHSurvivalAnalysis(ties="breslow")
    reference.fit(score[train, None], Surv.from_arrays(event[train], time[train]))
    assert cox_slope(score[train], time[train], event[train]) == pytest.approx(
        reference.coef_[0], abs=1e-4
    )
    horizon = float(np.median(time[train][event[train]]))
    ours = survival_at_horizon(score[train], time[train], event[train], score[test], horizon)
    theirs = [f(horizon) for f in reference.predict_survival_function(score[test, None])]
    np.testing.assert_allclose(ours, theirs, atol=1e-4)
    assert 1.5 < reference.coef_[0] < 2.6  # the score is the truth halved
