"""How often the benchmark's paired comparison calls two equally good models different.

Issue #18 item 4. Two logistic regressions that are equally good by construction (y depends on
x0 + x1; model A reads x0 and the noise features x2..x5, model B x1 and the same noise) are
compared over repeated k-fold CV of a fresh cohort each time, exactly as the benchmark does it
(AUROC per fold, `stats.paired_comparison`), once without the correction (n_test / n_train =
0: a plain paired t-test over folds) and once with it (1 / (k − 1)), beside the Wilcoxon
signed-rank test over folds that the benchmark used before. The share of cohorts where p < 0.05
is the test's type I error; a test that holds its level gives about 0.05.

    taskset -c 0 env OMP_NUM_THREADS=1 python benchmarks/comparison_error_rate.py --cohorts 400
"""

from __future__ import annotations

import argparse

import numpy as np
from scipy.stats import wilcoxon
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import RepeatedStratifiedKFold

from polyfuse.evaluation.stats import paired_comparison


def _fold_scores(seed: int, n: int, folds: int, repeats: int) -> tuple[np.ndarray, np.ndarray]:
    """AUROC per fold of the two equally good models on one fresh cohort."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 6))
    y = (x[:, 0] + x[:, 1] + rng.normal(0, 1.5, n) > 0).astype(int)
    views = ([0, 2, 3, 4, 5], [1, 2, 3, 4, 5])
    cv = RepeatedStratifiedKFold(n_splits=folds, n_repeats=repeats, random_state=seed)
    scores = np.empty((2, folds * repeats))
    for i, (train, test) in enumerate(cv.split(x, y)):
        for m, cols in enumerate(views):
            model = LogisticRegression().fit(x[train][:, cols], y[train])
            scores[m, i] = roc_auc_score(y[test], model.predict_proba(x[test][:, cols])[:, 1])
    return scores[0], scores[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cohorts", type=int, default=400)
    parser.add_argument("--patients", type=int, default=150)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    ratios = {"plain paired t-test": 0.0, "corrected (Nadeau-Bengio)": 1 / (args.folds - 1)}
    rejected = dict.fromkeys([*ratios, "Wilcoxon (before)"], 0)
    for seed in range(args.cohorts):
        a, b = _fold_scores(seed, args.patients, args.folds, args.repeats)
        for name, ratio in ratios.items():
            rejected[name] += paired_comparison(a, b, test_train_ratio=ratio)["p_value"] < 0.05
        rejected["Wilcoxon (before)"] += wilcoxon(a - b).pvalue < 0.05
    print(
        f"{args.cohorts} cohorts of {args.patients} patients, {args.folds} folds × "
        f"{args.repeats} repeats, two equally good models; share with p < 0.05:"
    )
    for name, count in rejected.items():
        share = count / args.cohorts
        se = np.sqrt(share * (1 - share) / args.cohorts)
        print(f"  {name:28s} {share:.3f} ± {se:.3f}")


if __name__ == "__main__":
    main()
