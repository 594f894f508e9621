"""Where the default benchmark's time goes: CPU seconds of each phase, in one process.

Runs `polyfuse benchmark`'s default suite on TCGA-ACC with one worker (every fold in this
process, so that `time.process_time` sees all of it) and timers around its phases: the
classical floors, the folds (training, robustness conditions, contributions, feature
attributions), the profiling, the cost curves and the report. Run two versions side by side,
one per core, to compare them (`PYTHONPATH=<worktree>/src` for the other):

    taskset -c 0 env OMP_NUM_THREADS=1 .venv/bin/python benchmarks/benchmark_phases.py /tmp/new
    taskset -c 1 env OMP_NUM_THREADS=1 PYTHONPATH=/tmp/old/src \\
        .venv/bin/python benchmarks/benchmark_phases.py /tmp/old-run

About 10 min on one core.
"""

from __future__ import annotations

import argparse
import collections
import time
import warnings

PHASES = ("_classical", "_train_folds", "_efficiency", "_cost_curves", "_report")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", help="the benchmark's output folder (overwritten)")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    import polyfuse.evaluation.benchmark as bench
    from polyfuse.evaluation.suites import DEFAULT_MODELS

    spent: collections.Counter[str] = collections.Counter()
    for name in PHASES:
        phase = getattr(bench, name)

        def timed(*a, _phase=phase, _name=name, **k):
            start = time.process_time()
            try:
                return _phase(*a, **k)
            finally:
                spent[_name] += time.process_time() - start

        setattr(bench, name, timed)
    cpu, wall = time.process_time(), time.perf_counter()
    result = bench.benchmark(
        models=list(DEFAULT_MODELS), out=args.out, overwrite=True, progress=False, workers=1
    )
    print(f"total: {time.process_time() - cpu:.1f} s CPU, {time.perf_counter() - wall:.1f} s wall")
    for name in PHASES:
        print(f"{name.strip('_')}: {spent[name]:.1f} s CPU")
    board = result.leaderboard()
    print(board[["model", "mean", "train_seconds"]].round(3).to_string(index=False))


if __name__ == "__main__":
    main()
