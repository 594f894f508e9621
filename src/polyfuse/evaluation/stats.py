"""Fold-level statistics: mean ± sd summaries and paired comparisons of two models.

With ~100 patients the fold-to-fold spread of a c-index (0.05–0.10) dwarfs most differences
between models, so models are compared *paired* over identical folds: the per-fold difference
removes the shared difficulty of each fold.

The folds of a cross-validation are not independent samples: training sets overlap, and
repeats reuse the same patients, so the spread of the per-fold differences understates the
uncertainty of their mean, and a plain t-test, Wilcoxon test or fold bootstrap over them is
over-confident (its type I error lies far above the nominal level). The
comparison here is the corrected resampled t-test of Nadeau & Bengio (2003), in the form
Bouckaert & Frank (2004) give for repeated k-fold CV: the variance of the mean difference is
(1/n + n_test/n_train) · s² instead of s²/n, with n − 1 degrees of freedom. Its interval and
p-value are the ones reported; a difference is called better or worse only when that test
supports it, and never with fewer than `MIN_PAIRS` folds.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

NAN = float("nan")
MIN_PAIRS = 5
"""Fewer paired folds than this say nothing: the verdict is "too few folds"."""
ALPHA = 0.05


def paired_comparison(
    a: Sequence[float], b: Sequence[float], *, test_train_ratio: float
) -> dict[str, float]:
    """Compare per-fold metric values `a` and `b` (same folds, same order) with the corrected
    resampled t-test; `test_train_ratio` is n_test / n_train of a fold (1 / (k − 1) for k-fold
    CV; 0 gives the uncorrected paired t-test).

    Pairs where either value is NaN (a fold where the metric was undefined) are dropped.

    Returns:
        n: pairs used; mean_a, mean_b; mean_diff: mean of a − b;
        p_value: two-sided p of the corrected t statistic, n − 1 degrees of freedom (0 when
            every difference is the same non-zero value, NaN when all are 0 or n < 2);
        ci_low, ci_high: the corrected 95% t interval of the mean difference (NaN, n < 2).
    """
    if test_train_ratio < 0:
        raise ValueError(f"test_train_ratio is n_test / n_train ≥ 0, not {test_train_ratio}")
    x = np.asarray(a, dtype=np.float64).reshape(-1)
    y = np.asarray(b, dtype=np.float64).reshape(-1)
    if x.shape != y.shape:
        raise ValueError(f"paired values need equal lengths, got {len(x)} and {len(y)}")
    keep = ~(np.isnan(x) | np.isnan(y))
    x, y = x[keep], y[keep]
    d = x - y
    n = len(d)
    out = dict(
        n=n,
        mean_a=float(x.mean()) if n else NAN,
        mean_b=float(y.mean()) if n else NAN,
        mean_diff=float(d.mean()) if n else NAN,
        p_value=NAN,
        ci_low=NAN,
        ci_high=NAN,
    )
    if n < 2:
        return out
    from scipy.stats import t as student

    mean = float(d.mean())
    se = float(np.sqrt((1.0 / n + test_train_ratio) * d.var(ddof=1)))
    half = float(student.ppf(1 - ALPHA / 2, n - 1)) * se
    out["ci_low"], out["ci_high"] = mean - half, mean + half
    if se > 0:
        out["p_value"] = float(2 * student.sf(abs(mean) / se, n - 1))
    elif mean != 0:
        out["p_value"] = 0.0
    return out


def verdict(stats: dict[str, float], higher_is_better: bool) -> str:
    """What a comparison of `paired_comparison` supports: "better" or "worse" (the first model
    against the second, p < 0.05), "inconclusive", or "too few folds" (fewer than
    `MIN_PAIRS`)."""
    if stats["n"] < MIN_PAIRS:
        return "too few folds"
    if not stats["p_value"] < ALPHA:
        return "inconclusive"
    return "better" if (stats["mean_diff"] > 0) == higher_is_better else "worse"


def summarise(rows: pd.DataFrame, digits: int = 3) -> pd.DataFrame:
    """Mean, sd (ddof 1) and n of `value` per model × task × metric, plus a "mean ± sd" text.

    Groups by whichever of `model`, `task`, `metric` the rows have, in order of appearance.
    NaN values (undefined folds) are left out of the mean, sd and n.
    """
    keys = [k for k in ("model", "task", "metric") if k in rows.columns]
    if not keys:
        raise ValueError("rows need at least one of the columns model, task, metric")
    grouped = rows.groupby(keys, sort=False)["value"]
    out = grouped.agg(mean="mean", sd="std", n="count").reset_index()
    out["mean ± sd"] = [
        f"{m:.{digits}f} ± {s:.{digits}f}" if not np.isnan(s) else f"{m:.{digits}f}"
        for m, s in zip(out["mean"], out["sd"], strict=True)
    ]
    return out
