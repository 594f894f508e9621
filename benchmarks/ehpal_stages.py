"""EHPAL-Net's number of stages on TCGA-ACC (six tables): the default (`max_stages=None`, the
stages whose maps stay at least 2×2: 3 on the 8×8 grid), checked by nested CV so that no outer
test fold chooses it.

For each outer fold of a 5 × 3 CV: each candidate `max_stages` is cross-validated on 3 inner
folds of the outer training part; the one with the best inner mean c-index is refitted on the
whole part and scored on the outer test fold. Printed: (`--plain`) each candidate's plain 5 × 3 CV c-index,
the nested choice's outer c-index, and how often each candidate was chosen.

    taskset -c 1 env OMP_NUM_THREADS=1 .venv/bin/python benchmarks/ehpal_stages.py
"""

from __future__ import annotations

import argparse
import collections
import time
import warnings

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidates", nargs="+", type=int, default=[3, 4, 6])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--plain", action="store_true", help="also each candidate's plain CV")
    args = parser.parse_args()
    warnings.simplefilter("ignore")

    import polyfuse as pf
    from polyfuse.config import TrainingConfig
    from polyfuse.data.splits import kfold
    from polyfuse.training.cv import cross_validate
    from polyfuse.training.fit import fit_model
    from polyfuse.training.settings import FitSettings

    data = pf.datasets.load("tcga-acc")
    training = TrainingConfig(progress=False)
    outer = kfold(data, 5, args.repeats, seed=0)
    start = time.process_time()
    plain = {}
    for k in args.candidates if args.plain else []:
        result = cross_validate(
            "ehpal", data, splits=outer, training=training, progress=False, max_stages=k
        )
        plain[k] = result.folds.query("metric == 'c_index'")["value"].to_numpy()
        print(
            f"max_stages={k}: 5 × {args.repeats} CV c-index {plain[k].mean():.3f} ± "
            f"{plain[k].std(ddof=1):.3f}",
            flush=True,
        )
    nested, chosen = [], collections.Counter()
    for i, split in enumerate(outer):
        train = data.subset(split.train)
        inner = kfold(train, 3, 1, seed=i)
        scores = {}
        for k in args.candidates:
            r = cross_validate(
                "ehpal", train, splits=inner, training=training, progress=False, max_stages=k
            )
            scores[k] = r.folds.query("metric == 'c_index'")["value"].mean()
        best = max(scores, key=scores.get)
        chosen[best] += 1
        settings = FitSettings.of({"max_stages": best}, training, seed=i)
        fitted = fit_model("ehpal", train, settings)
        test = data.subset(split.test)
        metrics = fitted.evaluate(test, train.targets)
        nested.append(metrics["os"]["c_index"])
        print(
            f"outer fold {i}: inner {scores} → {best}, outer c-index {nested[-1]:.3f}", flush=True
        )
    print(
        f"nested choice: outer c-index {np.mean(nested):.3f} ± {np.std(nested, ddof=1):.3f}; "
        f"chosen {dict(chosen)}; {time.process_time() - start:.0f} s CPU"
    )


if __name__ == "__main__":
    main()
