"""Split-conformal sets, intervals and survival bounds: hand-worked values, and coverage measured
over many random calibration/test draws from known data-generating models."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from polyfuse.tasks.conformal import (
    ConformalClassifier,
    ConformalRegressor,
    ConformalSurvival,
    conformal_quantile,
    fit_classification,
    fit_regression,
    fit_survival,
)

ALPHA = 0.1
REPS = 200
N_TEST = 200
TOL = 0.015  # about three standard errors of a mean over REPS draws at these sizes


def _band(coverage: float, n_cal: int) -> None:
    """At least 1 - alpha, and at most 1 - alpha + 1/(n + 1), up to the simulation's noise."""
    assert 1 - ALPHA - TOL <= coverage <= 1 - ALPHA + 1 / (n_cal + 1) + TOL, coverage


# --------------------------------------------------------------------------- quantile


def test_quantile_by_hand() -> None:
    scores = [5.0, 1.0, 9.0, 3.0, 7.0, 2.0, 8.0, 4.0, 6.0, 10.0]  # 1..10 shuffled
    # n = 10, alpha = 0.2: ceil(11 * 0.8) = ceil(8.8) = 9 -> the 9th smallest
    assert conformal_quantile(scores, 0.2) == 9.0
    # n = 9, alpha = 0.1: ceil(10 * 0.9) = 9 -> the 9th smallest of 9, the largest
    assert conformal_quantile(scores[:9], 0.1) == 9.0
    # n = 10, alpha = 0.5: ceil(5.5) = 6
    assert conformal_quantile(scores, 0.5) == 6.0
    # n = 19, alpha = 0.1: ceil(18) = 18, exactly an integer rank, not rounded up to 19
    assert conformal_quantile(np.arange(1.0, 20.0), 0.1) == 18.0
    # n = 29, alpha = 0.7: 30 * 0.3 is 9.000000000000002 in floating point; the rank is still 9
    assert conformal_quantile(np.arange(1.0, 30.0), 0.7) == 9.0


def test_quantile_is_infinite_when_the_rank_exceeds_n() -> None:
    # n = 9, alpha = 0.05: ceil(10 * 0.95) = 10 > 9
    assert conformal_quantile(np.arange(9.0), 0.05) == math.inf
    assert conformal_quantile([0.3], 0.4) == math.inf  # ceil(2 * 0.6) = 2 > 1


# --------------------------------------------------------------------------- data


def _softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _binary(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(imperfect model's P(y=1), y) with true P(y=1 | x) = sigmoid(2x)."""
    x = rng.normal(size=n)
    y = (rng.random(n) < 1 / (1 + np.exp(-2 * x))).astype(int)
    return 1 / (1 + np.exp(-(1.2 * x + 0.3))), y


WEIGHTS = np.array([[2.0, -1.0, 0.0, -1.0], [0.0, 1.5, -1.5, 0.0]])


def _multiclass(
    rng: np.random.Generator, n: int, noise: float = 0.0, calibrated: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """(model probabilities, y) with four classes and true P(y | x) = softmax(x W)."""
    logits = rng.normal(size=(n, 2)) @ WEIGHTS
    truth = _softmax(logits)
    y = (rng.random(n)[:, None] > np.cumsum(truth, axis=1)).sum(axis=1)
    if calibrated:
        return truth, y
    return _softmax(0.7 * logits + noise * rng.normal(size=logits.shape) + [0.3, 0, 0, 0]), y


def _regression(
    rng: np.random.Generator, n: int, noise: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """(model predictions, y) with y = 2x + N(0, 1); the model has the wrong slope."""
    x = rng.normal(size=n)
    return 1.5 * x + 0.2 + noise * rng.normal(size=n), 2 * x + rng.normal(size=n)


def _survival(
    rng: np.random.Generator, n: int, censor_rate: float = 0.7
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(predicted time, observed time, event, TRUE event time): T ~ Exp(exp(0.8x)) and an
    independent C ~ Exp(censor_rate); the model's median log(2) / exp(0.6x) is miscalibrated."""
    x = rng.normal(size=n)
    t = rng.exponential(1 / np.exp(0.8 * x))
    c = rng.exponential(1 / censor_rate, size=n)
    return np.log(2) / np.exp(0.6 * x), np.minimum(t, c), (t <= c).astype(int), t


# --------------------------------------------------------------------------- coverage


def _classification_coverage(draw, n_cal: int, method: str, seed: int) -> tuple[float, float]:
    """(mean coverage, mean set size) over REPS fresh calibration/test draws."""
    rng = np.random.default_rng(seed)
    covered, sizes = [], []
    for _ in range(REPS):
        prob, y = draw(rng, n_cal + N_TEST)
        cal = fit_classification(prob[:n_cal], y[:n_cal], ALPHA, method)
        sets = cal.sets(prob[n_cal:])
        covered.append(sets[np.arange(N_TEST), y[n_cal:]].mean())
        sizes.append(sets.sum(axis=1).mean())
    return float(np.mean(covered)), float(np.mean(sizes))


@pytest.mark.parametrize(
    ("draw", "method"), [(_binary, "lac"), (_multiclass, "lac"), (_multiclass, "aps")]
)
@pytest.mark.parametrize("n_cal", [20, 100])
def test_classification_coverage(draw, method: str, n_cal: int) -> None:
    coverage, size = _classification_coverage(draw, n_cal, method, seed=n_cal)
    _band(coverage, n_cal)
    assert size < (2 if draw is _binary else 4)  # informative, not every class


def test_regression_coverage_is_the_exact_conformal_rank() -> None:
    rng = np.random.default_rng(1)
    n_cal = 20  # continuous scores: coverage is exactly ceil(21 * 0.9) / 21 = 19 / 21
    covered = []
    for _ in range(REPS):
        pred, y = _regression(rng, n_cal + N_TEST)
        low, high = fit_regression(pred[:n_cal], y[:n_cal], ALPHA).interval(pred[n_cal:])
        assert np.all(low < high)
        covered.append(np.mean((low <= y[n_cal:]) & (y[n_cal:] <= high)))
    _band(float(np.mean(covered)), n_cal)
    assert np.mean(covered) == pytest.approx(19 / 21, abs=TOL)


def _survival_coverage(n_cal: int, censor_rate: float, seed: int) -> float:
    """Mean share of fresh patients whose TRUE event time is at least their lower bound."""
    rng = np.random.default_rng(seed)
    covered = []
    for _ in range(REPS):
        pred, time, event, _ = _survival(rng, n_cal, censor_rate)
        bound = fit_survival(pred, time, event, ALPHA)
        pred_new, _, _, t_new = _survival(rng, N_TEST, censor_rate)
        covered.append(np.mean(t_new >= bound.lower_bound(pred_new)))
    return float(np.mean(covered))


@pytest.mark.parametrize("censor_rate", [0.7, 2.0])  # about 1/3 and 2/3 of patients censored
def test_survival_coverage_of_the_true_event_time(censor_rate: float) -> None:
    coverage = _survival_coverage(n_cal=200, censor_rate=censor_rate, seed=3)
    # Kaplan–Meier weights: approximately valid, somewhat cautious under heavy censoring (0.91
    # and 0.92 here), but not the over-coverage of calibrating on the events alone, which sees
    # only the short times (0.94 and 0.97 with these draws)
    assert 1 - ALPHA - TOL <= coverage <= 1 - ALPHA + 0.03, coverage


# --------------------------------------------------------------------------- survival by hand


def test_survival_weights_by_hand() -> None:
    # times 1, 2 (censored), 3, 4; KM of censoring: G = 1 before 2, 2/3 after (3 at risk at 2).
    # Events with pred 1: scores 0 (T=1, weight 1), -log 3 and -log 4 (weight 1.5 each).
    # alpha = 0.4: a candidate t <= 2 has weight 1, target 0.6 * (4 + 1) = 3.0 -> q = -log 3;
    # t > 2 has weight 1.5, target 0.6 * 5.5 = 3.3 -> q = 0. Bound: smallest t >= pred e^-q(t).
    cal = fit_survival([1, 1, 1, 1], [1, 2, 3, 4], [1, 0, 1, 1], 0.4)
    assert cal.cut_times == (2.0,)
    assert cal.thresholds == pytest.approx((-math.log(3), 0.0))
    # pred 0.5: 1.5 <= 2 in the first segment; pred 1: 3 > 2, so the second segment, from 2;
    # pred 3: 9 > 2, then 3 in the second segment
    np.testing.assert_allclose(cal.lower_bound([0.5, 1.0, 3.0]), [1.5, 2.0, 3.0])


def test_survival_tie_between_event_and_censoring_by_hand() -> None:
    # times 1, 2 (censored), 2, 3: the event at 2 was still seen, so its weight is 1 / G(2-) = 1;
    # T = 3 has 1 / (2/3) = 1.5. Sorted scores -log 3, -log 2, 0 with cumulative weight 1.5, 2.5,
    # 3.5. alpha = 0.4: targets 0.6 * 4.5 = 2.7 and 0.6 * 5 = 3.0 both give q = 0: one segment
    cal = fit_survival([1, 1, 1, 1], [1, 2, 2, 3], [1, 0, 1, 1], 0.4)
    assert cal.cut_times == ()
    assert cal.thresholds == (0.0,)


def test_survival_without_censoring_is_plain_split_conformal() -> None:
    rng = np.random.default_rng(5)
    pred, _, _, t = _survival(rng, 50)
    cal = fit_survival(pred, t, np.ones(50), ALPHA)
    q = conformal_quantile(np.log(pred) - np.log(t), ALPHA)
    new = rng.uniform(0.1, 3.0, size=10)
    np.testing.assert_allclose(cal.lower_bound(new), new * np.exp(-q))


def _passes(t: float, pred: float, pred_cal, time, event, alpha: float) -> bool:
    """The weighted-conformal test for one candidate time, written out loop by loop."""
    time, event = np.asarray(time, float), np.asarray(event, bool)

    def g_before(s: float) -> float:  # Kaplan–Meier P(C >= s)
        g = 1.0
        for c in np.unique(time[~event & (time < s)]):
            g *= 1 - np.sum(~event & (time == c)) / np.sum(time >= c)
        return g

    scores = np.log(np.asarray(pred_cal)[event]) - np.log(time[event])
    weights = [1 / g_before(ti) for ti in time[event]]
    test_weight = 1 / g_before(t) if g_before(t) > 0 else math.inf
    total = sum(weights) + test_weight
    # the candidate's score passes the weighted quantile when the calibration mass strictly
    # below it is short of the target (1 - alpha) of the total weight
    score = math.log(pred) - math.log(t)
    below = sum(w for s, w in zip(scores, weights, strict=True) if s < score)
    return below < (1 - alpha) * total * (1 - 1e-9)


def test_survival_bound_is_the_smallest_passing_time() -> None:
    rng = np.random.default_rng(11)
    _, time, event, _ = _survival(rng, 40, censor_rate=1.0)
    time = np.round(time, 1) + 0.1  # ties: a censoring at an event's time comes after it
    pred_cal = rng.uniform(0.2, 2.0, size=40)
    cal = fit_survival(pred_cal, time, event, 0.2)
    for p in [0.05, 0.3, 1.0, 4.0]:
        (bound,) = cal.lower_bound([p])
        assert _passes(bound * (1 + 1e-9), p, pred_cal, time, event, 0.2)
        assert not _passes(bound * (1 - 1e-6), p, pred_cal, time, event, 0.2)


# --------------------------------------------------------------------------- sizes


def test_lac_sets_are_smaller_than_aps_for_a_calibrated_model() -> None:
    # LAC minimises the expected set size among sets with the coverage (Sadinle et al. 2019)
    draw = lambda rng, n: _multiclass(rng, n, calibrated=True)  # noqa: E731
    lac_coverage, lac_size = _classification_coverage(draw, 200, "lac", seed=7)
    aps_coverage, aps_size = _classification_coverage(draw, 200, "aps", seed=7)
    _band(lac_coverage, 200)
    _band(aps_coverage, 200)
    assert lac_size < aps_size - 0.1, (lac_size, aps_size)


@pytest.mark.parametrize("method", ["lac", "aps"])
def test_a_sharper_model_gives_smaller_sets(method: str) -> None:
    sharp = _classification_coverage(lambda r, n: _multiclass(r, n), 100, method, seed=8)[1]
    noisy = _classification_coverage(lambda r, n: _multiclass(r, n, 1.5), 100, method, seed=8)[1]
    assert sharp < noisy - 0.2, (sharp, noisy)


def test_a_sharper_model_gives_narrower_intervals() -> None:
    rng = np.random.default_rng(9)
    pred, y = _regression(rng, 500)
    noisy = pred + rng.normal(size=500)
    sharp_width = fit_regression(pred, y, ALPHA).half_width
    noisy_width = fit_regression(noisy, y, ALPHA).half_width
    # residual sd: sqrt(0.5^2 + 1) = 1.12 against sqrt(0.5^2 + 2) = 1.5; q ~ 1.645 sd
    assert sharp_width == pytest.approx(1.645 * 1.12, rel=0.12)
    assert noisy_width == pytest.approx(1.645 * 1.5, rel=0.12)


def test_a_sharper_survival_model_gives_higher_bounds() -> None:
    rng = np.random.default_rng(10)
    pred, time, event, _ = _survival(rng, 500)
    noisy = pred * np.exp(rng.normal(size=500))
    sharp_bounds = fit_survival(pred, time, event, ALPHA).lower_bound(pred)
    noisy_bounds = fit_survival(noisy, time, event, ALPHA).lower_bound(noisy)
    # log-scale error sd about 1.3 against 1.6: bounds about a third higher (0.097 vs 0.072)
    assert np.median(sharp_bounds) > 1.25 * np.median(noisy_bounds)


# --------------------------------------------------------------------------- saving


def _fitted():
    rng = np.random.default_rng(12)
    prob, y = _multiclass(rng, 60)
    pred, target = _regression(rng, 60)
    pred_time, time, event, _ = _survival(rng, 60)
    return [
        (fit_classification(prob, y, ALPHA, "lac"), lambda c: c.sets(prob)),
        (fit_classification(prob, y, ALPHA, "aps"), lambda c: c.sets(prob)),
        (fit_classification(prob[:5], y[:5], ALPHA), lambda c: c.sets(prob)),  # inf threshold
        (fit_regression(pred, target, ALPHA), lambda c: np.stack(c.interval(pred))),
        (fit_survival(pred_time, time, event, ALPHA), lambda c: c.lower_bound(pred_time)),
    ]


def test_round_trip_through_json_gives_identical_outputs() -> None:
    for fitted, apply in _fitted():
        text = json.dumps(fitted.to_dict(), allow_nan=False)  # strict JSON: inf is null
        again = type(fitted).from_dict(json.loads(text))
        assert again == fitted
        np.testing.assert_array_equal(apply(again), apply(fitted))


def test_an_infinite_threshold_means_every_class() -> None:
    cal = fit_classification([0.2, 0.9, 0.6], [0, 1, 1], ALPHA)
    assert cal.threshold == math.inf
    assert cal.to_dict()["threshold"] is None
    assert cal.sets([0.0, 0.5, 1.0]).all()


def test_binary_sets_by_hand() -> None:
    # LAC scores 1 - p_true: 0.1, 0.2, 0.3, 0.4 (n = 4, alpha = 0.2: rank ceil(4) = 4 -> 0.4)
    cal = fit_classification([0.9, 0.2, 0.7, 0.4], [1, 0, 1, 0], 0.2)
    assert cal.threshold == pytest.approx(0.4)
    # a class is in the set when its probability is at least 0.6; at 0.5 the set is empty
    np.testing.assert_array_equal(
        cal.sets([0.95, 0.5, 0.3]), [[False, True], [False, False], [True, False]]
    )


def test_aps_scores_by_hand() -> None:
    # probabilities 0.5, 0.3, 0.2: APS score of each class 0.5, 0.8, 1.0
    prob = [[0.5, 0.3, 0.2]] * 4
    cal = fit_classification(prob, [0, 1, 1, 2], 0.2, "aps")  # scores 0.5, 0.8, 0.8, 1.0
    assert cal.threshold == pytest.approx(1.0)
    cal = fit_classification(prob, [0, 1, 1, 2], 0.5, "aps")  # ceil(2.5) = 3 -> 0.8
    assert cal.threshold == pytest.approx(0.8)
    np.testing.assert_array_equal(cal.sets([[0.2, 0.5, 0.3]]), [[False, True, True]])


# --------------------------------------------------------------------------- input checks

PROB = np.array([[0.7, 0.3], [0.4, 0.6], [0.5, 0.5]])


@pytest.mark.parametrize(
    ("call", "name"),
    [
        (lambda: conformal_quantile([1.0, 2.0], 0.0), "alpha"),
        (lambda: conformal_quantile([1.0, 2.0], 1.0), "alpha"),
        (lambda: conformal_quantile([1.0, float("nan")], 0.1), "scores"),
        (lambda: fit_classification(PROB, [0, 1], ALPHA), "prob_cal"),
        (lambda: fit_classification(PROB, [0, 1, 2], ALPHA), "y_cal"),
        (lambda: fit_classification(PROB, [0, 1, 0.5], ALPHA), "y_cal"),
        (lambda: fit_classification(PROB, [0, 1, float("nan")], ALPHA), "y_cal"),
        (lambda: fit_classification([0.2, 1.2, 0.5], [0, 1, 1], ALPHA), "prob_cal"),
        (lambda: fit_classification([0.2, float("nan")], [0, 1], ALPHA), "prob_cal"),
        (lambda: fit_classification(PROB * 0.9, [0, 1, 1], ALPHA), "prob_cal"),
        (lambda: fit_classification(PROB, [0, 1, 1], ALPHA, "raps"), "method"),
        (lambda: fit_classification(PROB, [0, 1, 1], 1.5), "alpha"),
        (lambda: fit_regression([1.0, 2.0], [1.0], ALPHA), "y_cal"),
        (lambda: fit_regression([1.0, float("nan")], [1.0, 2.0], ALPHA), "pred_cal"),
        (lambda: fit_survival([1.0, 2.0], [1.0, 2.0], [1, 1, 0], ALPHA), "event_cal"),
        (lambda: fit_survival([1.0, -2.0], [1.0, 2.0], [1, 1], ALPHA), "pred_time_cal"),
        (lambda: fit_survival([1.0, 2.0], [1.0, float("nan")], [1, 1], ALPHA), "time_cal"),
        (lambda: fit_survival([1.0, 2.0], [1.0, 2.0], [1, 2], ALPHA), "event_cal"),
        (lambda: fit_survival([1.0] * 50, [1.0] * 50, [1] * 5 + [0] * 45, ALPHA), "event_cal"),
        (lambda: ConformalClassifier("lac", ALPHA, 0.5).sets([[0.5, 0.6]]), "prob"),
        (lambda: ConformalRegressor(ALPHA, 1.0).interval([float("nan")]), "pred"),
        (lambda: ConformalSurvival(ALPHA, (), (0.0,)).lower_bound([0.0]), "pred_time"),
    ],
)
def test_bad_input_names_the_argument(call, name: str) -> None:
    with pytest.raises(ValueError, match=rf"\b{name}\b"):
        call()


def test_too_few_events_is_refused_with_the_counts() -> None:
    # 8 events, no censoring, alpha = 0.1: rank ceil(9 * 0.9) = 9 > 8
    with pytest.raises(ValueError, match=r"too few events in event_cal \(8 of 8\)"):
        fit_survival(np.ones(8), np.arange(1.0, 9.0), np.ones(8), ALPHA)
    assert fit_survival(np.ones(9), np.arange(1.0, 10.0), np.ones(9), ALPHA).thresholds == (0.0,)


def test_a_task_calibration_refuses_too_few_samples_and_covers_its_patients():
    """The glue the fitted models use: too few calibration samples for a finite 90% set or
    interval is an error (not an infinite interval that a JSON answer cannot carry); the
    measured coverage counts what it should."""
    from polyfuse.tasks.conformal import fit_task, task_coverage, task_outputs

    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match=r"too few for coverage 0\.9"):
        fit_task("regression", {"pred": rng.normal(size=5)}, rng.normal(size=5), 0.1)
    pred = rng.normal(size=400)
    y = pred + rng.normal(size=400)
    calibration = fit_task("regression", {"pred": pred[:200]}, y[:200], 0.1)
    out = task_outputs(calibration, {"pred": pred[200:]})
    inside = (out["pred_low"] <= y[200:]) & (y[200:] <= out["pred_high"])
    assert task_coverage(out, y[200:])["coverage"] == pytest.approx(inside.mean())
    bound = np.array([5.0, 5.0, 5.0, 5.0])
    target = np.array([[6.0, 1.0], [4.0, 1.0], [7.0, 0.0], [3.0, 0.0]])  # in, out, in, unknown
    covered = task_coverage({"time_lower": bound}, target)
    assert covered == {"coverage_low": 0.5, "coverage_high": 0.75}
