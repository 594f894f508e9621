"""Which members and meta-learner make `stack` no worse than its best member, on every cohort.

For each bundled cohort and each outer fold of a 5 × 3 CV, every candidate member (`late`,
`early` and the task type's default floors) is fitted once on the inner folds of the training
part (`training.stack.fit_members`; with `--refit` also on the whole part, which then scores
the test fold instead of the inner-fold fits' mean); the meta-learner variants are fitted on
the same out-of-fold scores and scored on the outer test fold. Printed: each member's (as the
stack scores it) and each variant's mean primary metric over the 15 folds, and the variant's
mean minus the best member's (what #21 asks to be ≥ -0.005). "strata": the Cox meta-learner
with its risk sets within each inner fold (the default since 2026-12-04); `--scores FILE`
pickles each fold's raw scores, to try other meta-learners without fitting again; `--extra
MODEL` adds a candidate member, tried beside the defaults ("default+MODEL").

    python benchmarks/stack_options.py                  # every cohort, 3 inner folds
    python benchmarks/stack_options.py --inner 5 --cohorts tcga-acc

One core, one thread (`taskset -c 0 env OMP_NUM_THREADS=1`): about 1-4 min per cohort.
"""

from __future__ import annotations

import argparse
import pickle
import time
import warnings

import numpy as np
import pandas as pd

COHORTS = ("tcga-acc", "gse7390", "glaucoma-mvf", "pbc")


def variants(
    members: list[str], defaults: tuple[str, ...], extra: tuple[str, ...] = ()
) -> dict[str, tuple[list[str], str, float]]:
    """name → (members, meta, penalty); `extra`: members also tried beside the defaults."""
    default = [m for m in members if m in defaults]
    subsets = [("default", default), ("all", members)]
    if extra:
        subsets.append(("default+" + "+".join(extra), default + list(extra)))
    out = {}
    for subset, chosen in subsets:
        for meta, penalty in (
            ("fit", 0.01),
            ("fit", 0.1),
            ("fit", 1.0),
            ("mean", 0.01),
            ("strata", 0.01),
        ):
            out[f"{subset}/{meta}/{penalty:g}"] = (chosen, meta, penalty)
    return out


def run(
    cohort: str,
    inner: int,
    folds: int,
    repeats: int,
    scores: list | None = None,
    extra: tuple[str, ...] = (),
    only: int | None = None,
    refit: bool = False,
) -> pd.DataFrame:
    """Every fold's members and variants; with `scores`, each fold's raw out-of-fold and test
    scores are appended to it (to try other meta-learners without fitting again)."""
    from polyfuse.data.splits import kfold
    from polyfuse.datasets import load_honest
    from polyfuse.evaluation.classical import default_floors
    from polyfuse.tasks.metric_facts import PRIMARY
    from polyfuse.training.floors import score_objective
    from polyfuse.training.settings import FitSettings
    from polyfuse.training.stack import (
        DEFAULT_MEMBERS,
        SCORE,
        fit_members,
        fit_meta_on_scores,
        inner_fold_ids,
        member_scores,
        stack_plan,
        standardise,
    )

    data = load_honest(cohort)
    task = next(iter(data.tasks))
    spec = data.tasks[task]
    candidates = ["late", "early", *default_floors(data, task), *extra]
    plan = stack_plan(data, candidates, task=task, inner_folds=inner, refit=refit)
    objective, primary = score_objective(spec), PRIMARY[spec.type]
    truth = data.targets[task]

    def score(values: np.ndarray, split) -> float:
        scores = {SCORE[spec.type]: values}
        return objective.metrics(scores, truth[split.test], truth[split.train])[primary]

    rows = []
    for i, split in enumerate(kfold(data, folds, repeats, seed=0)):
        if only is not None and split.repeat != only:
            continue  # another process takes that repeat
        start = time.process_time()
        train, test = data.subset(split.train), data.subset(split.test)
        settings = FitSettings.of(seed=i).quiet()
        oof, fitted = fit_members(train, plan, settings, repeat=split.repeat, fold=split.fold)
        strata = inner_fold_ids(train, plan, settings.seed)
        tests = {m: member_scores(f, test, plan) for m, f in fitted.items()}
        for m, values in tests.items():
            rows.append(
                dict(cohort=cohort, fold=i, entry=m, kind="member", value=score(values, split))
            )
        y = train.targets[task]
        known = ~np.isnan(y.reshape(len(y), -1)).any(1)
        if scores is not None:
            scores.append(
                dict(cohort=cohort, fold=i, members=plan.members, oof=oof, strata=strata)
                | dict(y=y, tests=tests, test_y=truth[split.test], train_y=truth[split.train])
            )
        for name, (members, meta, penalty) in variants(
            candidates, DEFAULT_MEMBERS[spec.type], extra
        ).items():
            used = [m for m in members if m in fitted]
            cols = [plan.members.index(m) for m in used]
            # "strata": the Cox model whose risk sets stay within an inner fold
            inner = strata[known] if meta == "strata" else None
            fitted_meta = "fit" if meta == "strata" else meta
            model, centre, sd = fit_meta_on_scores(
                fitted_meta, spec.type, oof[known][:, cols], y[known], penalty, inner
            )
            z = standardise(np.stack([tests[m] for m in used], 1), spec.type, centre, sd)
            rows.append(
                dict(
                    cohort=cohort,
                    fold=i,
                    entry=name,
                    kind="stack",
                    value=score(model.combine(z), split),
                )
            )
        # the discrete super learner: the member with the best out-of-fold metric
        default = [m for m in DEFAULT_MEMBERS[spec.type] if m in fitted]
        oof_metric = {
            m: objective.metrics(
                {SCORE[spec.type]: oof[known][:, plan.members.index(m)]}, y[known], y[known]
            )[primary]
            for m in default
        }
        chosen = max(oof_metric, key=oof_metric.get)
        rows.append(
            dict(
                cohort=cohort,
                fold=i,
                entry="discrete",
                kind="stack",
                value=score(tests[chosen], split),
            )
        )
        print(f"{cohort} fold {i}: {time.process_time() - start:.1f} s CPU", flush=True)
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cohorts", nargs="*", default=list(COHORTS))
    parser.add_argument("--inner", type=int, default=3)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=None, help="write every fold's rows to this CSV")
    parser.add_argument("--scores", default=None, help="pickle every fold's raw scores here")
    parser.add_argument("--extra", nargs="*", default=[], help="more candidate members")
    parser.add_argument("--only-repeat", type=int, default=None, help="run this repeat only")
    parser.add_argument(
        "--refit", action="store_true", help="members refitted on the whole part (not bagged)"
    )
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    raw: list = []
    extra = tuple(args.extra)
    frames = [
        run(c, args.inner, args.folds, args.repeats, raw, extra, args.only_repeat, args.refit)
        for c in args.cohorts
    ]
    if args.scores:
        with open(args.scores, "wb") as f:
            pickle.dump(raw, f)
    rows = pd.concat(frames, ignore_index=True)
    if args.out:
        rows.to_csv(args.out, index=False)
    for cohort, part in rows.groupby("cohort", sort=False):
        means = part.groupby(["kind", "entry"])["value"].agg(["mean", "std"])
        best = means.loc["member", "mean"].max()
        means["vs best member"] = means["mean"] - best
        print(f"\n## {cohort} (inner folds {args.inner}; best member {best:.3f})")
        print(means.sort_values("mean", ascending=False).round(3).to_string())


if __name__ == "__main__":
    main()
