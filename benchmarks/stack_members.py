"""Which members a survival `stack` should have by default, chosen by leave-one-cohort-out.

Reads the raw scores that `stack_options.py --scores FILE` pickles (each outer fold's
out-of-fold scores of every candidate member, and its test scores), stacks every subset of two
or more of the members every survival cohort has (`late`, `early`, `coxnet[all]`, `rsf[all]`,
`late-cox`) with the default meta-learner (the Cox model stratified by inner fold, penalty
0.01), and scores it on the outer test folds. No model is fitted again: seconds per cohort.

Printed: each subset's mean c-index per cohort and its gap to the best of its own members (what
issue 21 asks to be ≥ −0.005); then, for each held-out cohort, the subset whose worst gap over
the other cohorts is best, and what it gets on the held-out cohort against the default.

    .venv/bin/python benchmarks/stack_options.py --inner 5 --scores scores.pkl
    .venv/bin/python benchmarks/stack_members.py scores.pkl [more.pkl ...]
"""

from __future__ import annotations

import argparse
import functools
import itertools
import pickle
import warnings

import numpy as np
import pandas as pd

GENERIC = ("late", "early", "coxnet[all]", "rsf[all]", "late-cox")


@functools.cache
def task_of(cohort: str):
    """The cohort's task, its scoring objective and primary metric (each cohort loaded once)."""
    from polyfuse.datasets import load_honest
    from polyfuse.tasks.metric_facts import PRIMARY
    from polyfuse.training.floors import score_objective

    data = load_honest(cohort)
    spec = data.tasks[next(iter(data.tasks))]
    return spec, score_objective(spec), PRIMARY[spec.type]


def fold_rows(record: dict, subsets: list[tuple[str, ...]]) -> list[dict]:
    """One outer fold's members and stacked subsets, scored on its test fold."""
    from polyfuse.training.stack import SCORE, fit_meta_on_scores, standardise

    spec, objective, primary = task_of(record["cohort"])

    def score(values: np.ndarray) -> float:
        scores = {SCORE[spec.type]: values}
        return objective.metrics(scores, record["test_y"], record["train_y"])[primary]

    y = record["y"]
    known = ~np.isnan(y.reshape(len(y), -1)).any(1)
    out = [dict(entry=m, value=score(record["tests"][m])) for m in GENERIC]
    for subset in subsets:
        cols = [record["members"].index(m) for m in subset]
        oof, strata = record["oof"][known][:, cols], record["strata"][known]
        meta, centre, sd = fit_meta_on_scores("fit", spec.type, oof, y[known], 0.01, strata)
        test = np.stack([record["tests"][m] for m in subset], 1)
        z = standardise(test, spec.type, centre, sd)
        out.append(dict(entry="+".join(subset), value=score(meta.combine(z))))
    return [row | dict(cohort=record["cohort"], fold=record["fold"]) for row in out]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scores", nargs="+", help="pickles written by stack_options.py --scores")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    records = []
    for path in args.scores:
        with open(path, "rb") as f:
            records += pickle.load(f)
    records = [r for r in records if set(GENERIC) <= set(r["members"]) and r["y"].ndim == 2]
    subsets = [s for k in range(2, len(GENERIC) + 1) for s in itertools.combinations(GENERIC, k)]
    rows = pd.DataFrame([row for r in records for row in fold_rows(r, subsets)])
    means = rows.groupby(["entry", "cohort"])["value"].mean().unstack()
    stacks = means.loc[["+".join(s) for s in subsets]]
    gap = stacks.apply(lambda row: row - means.loc[row.name.split("+")].max(), axis=1)
    table = pd.concat({"c-index": stacks, "gap to best member": gap}, axis=1)
    table["worst gap"] = gap.min(1)
    print(table.sort_values("worst gap", ascending=False).round(3).to_string())
    default = "+".join(("late", "coxnet[all]", "rsf[all]", "late-cox"))
    print("\n## leave one cohort out: the subset with the best worst gap over the others")
    for held in means.columns:
        pick = gap.drop(columns=held).min(1).idxmax()
        print(
            f"{held}: {pick}: gap {gap.loc[pick, held]:+.3f}, c-index {stacks.loc[pick, held]:.3f}"
            f" (default: gap {gap.loc[default, held]:+.3f}, c-index {stacks.loc[default, held]:.3f})"
        )


if __name__ == "__main__":
    main()
