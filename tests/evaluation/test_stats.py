"""Paired comparisons by the corrected resampled t-test, checked against scipy's paired t-test
(no correction) and the correction worked by hand; what they may claim; the summaries."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sp

from polyfuse.evaluation.stats import paired_comparison, summarise, verdict

RNG = np.random.default_rng(0)


def test_without_correction_it_is_scipys_paired_t_test() -> None:
    a = RNG.normal(0.8, 0.05, 15)
    b = a - RNG.normal(0.02, 0.03, 15)
    out = paired_comparison(a, b, test_train_ratio=0.0)
    assert out["n"] == 15
    assert out["mean_diff"] == pytest.approx(np.mean(a - b))
    assert (out["mean_a"], out["mean_b"]) == (pytest.approx(a.mean()), pytest.approx(b.mean()))
    assert out["p_value"] == pytest.approx(sp.ttest_rel(a, b).pvalue)
    low, high = sp.ttest_rel(a, b).confidence_interval()
    assert (out["ci_low"], out["ci_high"]) == (pytest.approx(low), pytest.approx(high))


def test_the_correction_by_hand_for_five_folds_three_repeats() -> None:
    """5 × 3 folds: n_test / n_train = 1/4, so the variance of the mean difference is
    (1/15 + 1/4) s², 4.75 times the plain s²/15."""
    d = np.array([0.05, 0.02, 0.04, -0.01, 0.03, 0.06, 0.00, 0.02, 0.05, 0.01] + [0.03] * 5)
    b = np.full(15, 0.7)
    out = paired_comparison(b + d, b, test_train_ratio=0.25)
    se = np.sqrt((1 / 15 + 0.25) * d.var(ddof=1))
    assert out["p_value"] == pytest.approx(2 * sp.t.sf(d.mean() / se, 14))
    half = sp.t.ppf(0.975, 14) * se
    assert out["ci_low"] == pytest.approx(d.mean() - half)
    assert out["ci_high"] == pytest.approx(d.mean() + half)
    plain = paired_comparison(b + d, b, test_train_ratio=0.0)
    assert plain["p_value"] < 1e-4 < 0.01 < out["p_value"]  # the overlap costs confidence
    width = out["ci_high"] - out["ci_low"]
    assert width == pytest.approx(np.sqrt(4.75) * (plain["ci_high"] - plain["ci_low"]))


def test_what_a_comparison_may_claim() -> None:
    """The issue's case: two folds, +0.129, once called supported; now too few folds."""
    two = paired_comparison([0.85, 0.80], [0.70, 0.69], test_train_ratio=1.0)
    assert verdict(two, higher_is_better=True) == "too few folds"
    d = np.array([0.05, 0.02, 0.04, -0.01, 0.03, 0.06, 0.00, 0.02, 0.05, 0.01] + [0.03] * 5)
    clear = paired_comparison(0.7 + 4 * d, np.full(15, 0.7), test_train_ratio=0.25)
    assert clear["p_value"] < 0.05
    assert verdict(clear, higher_is_better=True) == "better"
    assert verdict(clear, higher_is_better=False) == "worse"  # e.g. an integrated Brier score
    noisy = paired_comparison(0.7 + d - 0.03, np.full(15, 0.7), test_train_ratio=0.25)
    assert verdict(noisy, higher_is_better=True) == "inconclusive"


def test_nan_pairs_are_dropped() -> None:
    a = [0.8, np.nan, 0.7, 0.9, 0.6, 0.85]
    b = [0.7, 0.75, np.nan, 0.8, 0.65, 0.8]
    out = paired_comparison(a, b, test_train_ratio=0.25)
    clean = paired_comparison([0.8, 0.9, 0.6, 0.85], [0.7, 0.8, 0.65, 0.8], test_train_ratio=0.25)
    assert out == clean
    assert out["n"] == 4


def test_degenerate_inputs() -> None:
    same = paired_comparison([0.5, 0.6, 0.7], [0.5, 0.6, 0.7], test_train_ratio=0.25)
    assert same["mean_diff"] == 0.0 and np.isnan(same["p_value"])
    assert same["ci_low"] == same["ci_high"] == 0.0
    shifted = paired_comparison([0.5, 0.75, 1.0], [0.25, 0.5, 0.75], test_train_ratio=0.25)
    assert shifted["p_value"] == 0.0 and shifted["ci_low"] == shifted["ci_high"] == 0.25
    empty = paired_comparison([np.nan], [0.5], test_train_ratio=0.25)
    assert empty["n"] == 0
    assert all(np.isnan(empty[k]) for k in ("mean_diff", "p_value", "ci_low", "ci_high"))
    one = paired_comparison([0.9], [0.5], test_train_ratio=0.25)
    assert one["mean_diff"] == pytest.approx(0.4) and np.isnan(one["ci_low"])
    with pytest.raises(ValueError, match="equal lengths"):
        paired_comparison([0.1, 0.2], [0.1], test_train_ratio=0.25)
    with pytest.raises(ValueError, match="test_train_ratio"):
        paired_comparison([0.1, 0.2], [0.1, 0.3], test_train_ratio=-1)


def test_summarise() -> None:
    rows = pd.DataFrame(
        dict(
            model=["x", "x", "x", "y", "y"],
            repeat=0,
            fold=[0, 1, 2, 0, 1],
            task="os",
            metric="c_index",
            value=[0.7, 0.8, np.nan, 0.6, 0.6],
        )
    )
    out = summarise(rows)
    assert list(out.columns) == ["model", "task", "metric", "mean", "sd", "n", "mean ± sd"]
    x = out.iloc[0]
    assert x["model"] == "x" and x["n"] == 2
    assert x["mean"] == pytest.approx(0.75)
    assert x["sd"] == pytest.approx(np.std([0.7, 0.8], ddof=1))
    assert x["mean ± sd"] == "0.750 ± 0.071"
    assert out.iloc[1]["mean ± sd"] == "0.600 ± 0.000"
    single = summarise(rows.iloc[:1])
    assert single.iloc[0]["mean ± sd"] == "0.700"
