"""Issue #19: one 40-trial search split between 1 and 2 worker processes on PostgreSQL.

Each worker is a fresh process calling `polyfuse.tune(..., storage=URL, study=NAME)` on the
same cohort and settings, exactly what `polyfuse tune --storage` does per SLURM array task; the
search is the final one on all patients (`splits=[]`, no outer folds), so the budget is one
study of `--trials` trials, each scored by 3-fold inner CV. The rounds alternate (1 worker,
2 workers, 1, 2, ...), each on a study of its own. Printed per round: wall seconds from the
first start to the last exit, CPU seconds of the worker processes (`RUSAGE_CHILDREN`: their
imports included), the finished trials (must equal the budget), and how the trials were split.

    .venv/bin/python benchmarks/tune_workers.py --url postgresql://user:pw@localhost:5432/db

Without `--url`, POLYFUSE_POSTGRES_URL is used. Every worker runs one torch thread.
"""

from __future__ import annotations

import argparse
import collections
import multiprocessing
import os
import resource
import time


def worker(url: str, study: str, dataset: str, model: str, trials: int) -> None:
    import torch

    import polyfuse as pf

    torch.set_num_threads(1)
    data = pf.datasets.load(dataset)
    pf.tune(
        model,
        data,
        trials=trials,
        splits=[],
        untuned=False,
        progress=False,
        storage=url,
        study=study,
    )


def round_(url: str, workers: int, args: argparse.Namespace) -> dict:
    """One search with `workers` processes: wall, CPU, finished trials, trials per worker."""
    study = f"bench-{workers}w-{time.time_ns()}"
    context = multiprocessing.get_context("spawn")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    processes = [
        context.Process(target=worker, args=(url, study, args.dataset, args.model, args.trials))
        for _ in range(workers)
    ]
    for p in processes:
        p.start()
    for p in processes:
        p.join()
        assert p.exitcode == 0, f"a worker failed ({p.exitcode})"
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    import optuna

    from polyfuse.tuning.storage import open_storage
    from polyfuse.tuning.study import finished

    trials = optuna.load_study(study_name=f"{study}/all", storage=open_storage(url)).trials
    split = collections.Counter(t.user_attrs.get("worker") for t in trials if finished(t))
    return dict(
        workers=workers,
        wall=wall,
        cpu=cpu,
        finished=sum(split.values()),
        split=sorted(split.values()),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=os.environ.get("POLYFUSE_POSTGRES_URL"))
    parser.add_argument("--dataset", default="tcga-acc")
    parser.add_argument("--model", default="early")
    parser.add_argument("--trials", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=1, help="repeats of each worker count")
    args = parser.parse_args()
    if not args.url:
        parser.error("give --url postgresql://… (or set POLYFUSE_POSTGRES_URL)")
    rows = []
    for _ in range(args.rounds):
        for workers in (1, 2):
            rows.append(round_(args.url, workers, args))
            print(rows[-1], flush=True)
    print(f"\n{args.trials}-trial search, {args.model} on {args.dataset}, 3-fold inner CV\n")
    print("| workers | wall s | CPU s | finished trials | trials per worker |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['workers']} | {r['wall']:.0f} | {r['cpu']:.0f} | {r['finished']} | "
            f"{' + '.join(map(str, r['split']))} |"
        )
    one = [r["wall"] for r in rows if r["workers"] == 1]
    two = [r["wall"] for r in rows if r["workers"] == 2]
    print(f"\nspeed-up with 2 workers (mean wall 1 / mean wall 2): {sum(one) / sum(two):.2f}×")


if __name__ == "__main__":
    main()
