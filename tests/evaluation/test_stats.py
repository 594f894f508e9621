import numpy as np
import pandas as pd
import pytest
from scipy.stats import wilcoxon

from polyfuse.evaluation.stats import paired_comparison, summarise


def test_matches_scipy_wilcoxon_and_mean_difference() -> None:
    rng = np.random.default_rng(0)
    a = rng.normal(0.8, 0.05, 15)
    b = a - rng.normal(0.02, 0.03, 15)
    out = paired_comparison(a, b)
    assert out["n"] == 15
    assert out["mean_diff"] == pytest.approx(np.mean(a - b))
    assert out["mean_a"] == pytest.approx(a.mean())
    assert out["mean_b"] == pytest.approx(b.mean())
    assert out["p_value"] == pytest.approx(wilcoxon(a - b).pvalue)
    assert out["ci_low"] < out["mean_diff"] < out["ci_high"]


def test_bootstrap_of_two_folds_by_hand() -> None:
    # differences 0 and 1: bootstrap means are 0, 0.5, 1 with probabilities 1/4, 1/2, 1/4, so
    # the 2.5% and 97.5% percentiles are exactly 0 and 1
    out = paired_comparison([1.0, 2.0], [1.0, 1.0], n_boot=4000, seed=3)
    assert (out["ci_low"], out["ci_high"]) == (0.0, 1.0)
    assert out["mean_diff"] == 0.5
    assert np.isnan(out["p_value"])  # one non-zero difference: the test says nothing


def test_bootstrap_is_seeded_and_constant_differences_give_a_point() -> None:
    a, b = [0.7, 0.8, 0.9, 0.75], [0.6, 0.82, 0.8, 0.7]
    assert paired_comparison(a, b, seed=1) == paired_comparison(a, b, seed=1)
    out = paired_comparison([0.3, 0.4, 0.5], [0.1, 0.2, 0.3])
    assert out["ci_low"] == pytest.approx(0.2) and out["ci_high"] == pytest.approx(0.2)
    assert out["p_value"] == pytest.approx(wilcoxon([0.2, 0.2, 0.2]).pvalue)


def test_nan_pairs_are_dropped() -> None:
    a = [0.8, np.nan, 0.7, 0.9, 0.6, 0.85]
    b = [0.7, 0.75, np.nan, 0.8, 0.65, 0.8]
    out = paired_comparison(a, b)
    clean = paired_comparison([0.8, 0.9, 0.6, 0.85], [0.7, 0.8, 0.65, 0.8])
    assert out == clean
    assert out["n"] == 4


def test_degenerate_inputs() -> None:
    same = paired_comparison([0.5, 0.6, 0.7], [0.5, 0.6, 0.7])
    assert same["mean_diff"] == 0.0 and np.isnan(same["p_value"])
    assert same["ci_low"] == same["ci_high"] == 0.0
    empty = paired_comparison([np.nan], [0.5])
    assert empty["n"] == 0
    assert all(np.isnan(empty[k]) for k in ("mean_diff", "p_value", "ci_low", "ci_high"))
    one = paired_comparison([0.9], [0.5])
    assert one["mean_diff"] == pytest.approx(0.4) and np.isnan(one["ci_low"])
    with pytest.raises(ValueError, match="equal lengths"):
        paired_comparison([0.1, 0.2], [0.1])


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
