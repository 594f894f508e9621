"""Fold-level statistics: mean ± sd summaries and paired comparisons of two models.

With ~100 patients the fold-to-fold spread of a c-index (0.05–0.10) dwarfs most differences
between models, so models are compared *paired* over identical folds: the per-fold difference
removes the shared difficulty of each fold.

Caveat: folds are not independent samples (training sets overlap, and repeats reuse the same
patients), so the Wilcoxon p-value and the fold bootstrap are optimistic. They rank and flag
differences; they are not exact error rates.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

NAN = float("nan")


def paired_comparison(
    a: Sequence[float], b: Sequence[float], *, n_boot: int = 2000, seed: int = 0
) -> dict[str, float]:
    """Compare per-fold metric values `a` and `b` (same folds, same order).

    Pairs where either value is NaN (a fold where the metric was undefined) are dropped.

    Returns:
        n: pairs used; mean_a, mean_b; mean_diff: mean of a − b;
        p_value: two-sided Wilcoxon signed-rank test of the differences (scipy's defaults:
            zero differences dropped, exact distribution for small samples without ties); NaN
            when fewer than 2 differences are non-zero, where the test says nothing;
        ci_low, ci_high: percentile bootstrap 95% interval of the mean difference, resampling
            folds with replacement `n_boot` times (seeded); NaN with fewer than 2 pairs.
    """
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
    if np.count_nonzero(d) >= 2:
        from scipy.stats import wilcoxon

        out["p_value"] = float(wilcoxon(d).pvalue)
    if n >= 2:
        rng = np.random.default_rng(seed)
        means = d[rng.integers(0, n, size=(n_boot, n))].mean(axis=1)
        low, high = np.percentile(means, [2.5, 97.5])
        out["ci_low"], out["ci_high"] = float(low), float(high)
    return out


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
