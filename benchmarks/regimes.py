"""Which small-data training regime each model trains best with, chosen across cohorts.

Every (model, regime, cohort) is cross-validated 5 × 3 on the same seeded splits; a regime is a
set of training settings on top of the model's own defaults (`training_defaults`), and may
set model keywords too (any key that is not a training setting). The regime a
model's defaults should name is chosen by leave-one-cohort-out: for each held-out cohort, the
regime with the best mean metric over the other cohorts (as a gap to `none` on each), and its
gap on the held-out cohort, so that no cohort's test folds choose its own regime.

    taskset -c 0 env OMP_NUM_THREADS=1 .venv/bin/python benchmarks/regimes.py \\
        --models healnet synergies hierarchical --out regimes.csv

Rows already in `--out` are kept and not run again (the script resumes). One core, one thread.
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import pandas as pd

COHORTS = ("tcga-acc", "gse7390", "glaucoma-mvf", "pbc")
REGIMES: dict[str, dict] = {
    "none": {},
    "cosine": {"lr_schedule": "cosine", "warmup_epochs": 5},
    "onecycle": {"lr_schedule": "onecycle"},
    "ema": {"weight_averaging": "ema"},
    "swa": {"weight_averaging": "swa", "averaging_start": 5},
    "mdrop": {"modality_dropout": 0.2},
    "metric": {"monitor": "metric"},
    "ensemble3": {"ensemble": 3},
    "ensemble5": {"ensemble": 5},
    "folds3": {"ensemble": 3, "ensemble_validation": "folds"},
    "folds5": {"ensemble": 5, "ensemble_validation": "folds"},
    "wd1e-2": {"weight_decay": 1e-2},
    "bs16": {"batch_size": 16},
    "bs8": {"batch_size": 8},
    "bs16+mdrop": {"batch_size": 16, "modality_dropout": 0.2},
    "bs8+patience20": {"batch_size": 8, "patience": 20},
    "patience20": {"patience": 20},
    "lr3e-4": {"lr": 3e-4},
    "lr5e-4": {"lr": 5e-4},
    "lr1e-3": {"lr": 1e-3},
    "lr3e-3": {"lr": 3e-3},
    # model keywords (any key that is not a training setting), for the models that have them
    "dim32": {"dim": 32},
    "dim64": {"dim": 64},
    "dropout0.3": {"dropout": 0.3},
    "ffdrop0.1": {"ff_dropout": 0.1, "attn_dropout": 0.1},
    "lowrank": {"pair_op": "lowrank_bilinear"},
    "crossattn": {"pair_op": "cross_attn"},
    "order3": {"max_order": 3},
    "snn": {"tabular": "snn"},
    "hidden128": {"hidden": [128]},
    "dim128": {"dim": 128},
    "depth1": {"depth": 1},
    "depth3": {"depth": 3},
    "latents32": {"num_latents": 32},
    "latent_dim32": {"latent_dim": 32},
}


def cross_validated(model: str, regime: str, cohort: str, folds: int, repeats: int) -> dict:
    from polyfuse.config import TrainingConfig
    from polyfuse.datasets import load_honest
    from polyfuse.tasks.metric_facts import PRIMARY
    from polyfuse.training.cv import cross_validate

    data = load_honest(cohort)
    task = next(iter(data.tasks))
    primary = PRIMARY[data.tasks[task].type]
    settings = REGIMES[regime]
    fields = TrainingConfig.model_fields
    training = TrainingConfig(progress=False, **{k: v for k, v in settings.items() if k in fields})
    hparams = {k: v for k, v in settings.items() if k not in fields}
    start, cpu = time.perf_counter(), time.process_time()
    result = cross_validate(
        model,
        data,
        folds=folds,
        repeats=repeats,
        seed=0,
        training=training,
        progress=False,
        **hparams,
    )
    values = result.folds.query("task == @task and metric == @primary")["value"]
    return dict(
        model=model,
        regime=regime,
        cohort=cohort,
        metric=primary,
        mean=values.mean(),
        sd=values.std(),
        wall_s=time.perf_counter() - start,
        cpu_s=time.process_time() - cpu,
    )


def choose(rows: pd.DataFrame) -> pd.DataFrame:
    """Per model and held-out cohort: the regime best on the other cohorts, and its gap to
    `none` on the held-out one."""
    out = []
    for model, part in rows.groupby("model", sort=False):
        table = part.pivot(index="regime", columns="cohort", values="mean")
        if "none" not in table.index:
            continue
        gap = table - table.loc["none"]
        for held in gap.columns:
            others = gap.drop(columns=held).dropna(axis=0)
            if others.empty:
                continue
            pick = others.mean(axis=1).idxmax()
            out.append(dict(model=model, held_out=held, pick=pick, gap=gap.loc[pick, held]))
    return pd.DataFrame(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["healnet", "synergies", "hierarchical"])
    parser.add_argument("--regimes", nargs="+", default=list(REGIMES), choices=list(REGIMES))
    parser.add_argument("--cohorts", nargs="+", default=list(COHORTS))
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("regimes.csv"))
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    rows = pd.read_csv(args.out) if args.out.is_file() else pd.DataFrame()
    done = set() if rows.empty else set(zip(rows.model, rows.regime, rows.cohort, strict=True))
    for model in args.models:
        for regime in args.regimes:
            for cohort in args.cohorts:
                if (model, regime, cohort) in done:
                    continue
                row = cross_validated(model, regime, cohort, args.folds, args.repeats)
                print(
                    f"{model:13s} {regime:10s} {cohort:13s} {row['mean']:.3f} ± {row['sd']:.3f} "
                    f"({row['cpu_s']:.0f} s CPU)",
                    flush=True,
                )
                rows = pd.concat([rows, pd.DataFrame([row])], ignore_index=True)
                rows.to_csv(args.out, index=False)
    for model, part in rows.groupby("model", sort=False):
        print(f"\n## {model}")
        print(part.pivot(index="regime", columns="cohort", values="mean").round(3).to_string())
    print("\n## leave-one-cohort-out choice (gap to `none` on the held-out cohort)")
    print(choose(rows).round(3).to_string(index=False))


if __name__ == "__main__":
    main()
