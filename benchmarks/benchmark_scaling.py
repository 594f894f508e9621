"""`polyfuse benchmark` on a Dask cluster against the local pool, at 1, 2 and 4 workers.

Issue #19: what submitting each fold to a Dask distributed cluster (`--executor dask`) costs
next to the local process pool (`--workers N`) on the same machine. For each worker count N
and each of `--rounds` rounds, the two sides alternate (local first in even rounds, Dask first
in odd ones, so a slow spell of a shared machine hits both alike):

* **local**: `polyfuse benchmark --workers N` in a fresh process (N spawned worker processes,
  one torch thread each);
* **dask**: a fresh cluster on this machine started as on a real one, `dask scheduler` and
  `dask worker --nworkers N --nthreads 1` as processes of their own, then `polyfuse benchmark
  --executor dask --address ...` in a fresh process; the cluster is shut down after it.

Wall time is `time.perf_counter` around the `polyfuse benchmark` process alone (for Dask the
cluster is already up, but its workers are fresh: they import torch on their first fold, as
the pool's workers do). CPU time is the user + system time of every process of the run: the
growth of `resource.getrusage(RUSAGE_CHILDREN)` of this script over the run, which counts each
child and every descendant it waited for (the pool's workers; the scheduler, the worker
nannies and their worker processes, reaped after the shutdown), so for Dask it includes
starting, idling and stopping the cluster. Both sides run the same folds with the same seeds
and write the same `results.csv` (the folds and metrics checked, the largest difference of a
value reported: none where both run a fold in one torch thread). Medians over rounds; a markdown table is printed
(and written to `--table`). The default benchmark is `polyfuse benchmark`'s own (TCGA-ACC, the
default suite, 5 folds × 3 repeats, about 30 min per run on 2 cores); a smaller one:

    .venv/bin/python benchmarks/benchmark_scaling.py --models early,late --folds 2 \\
        --repeats 1 --no-classical --workers 1 2 --rounds 1
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
from cli_startup import polyfuse_command

SIDES = ("local", "dask")
RESULT_KEYS = ["dataset", "model", "repeat", "fold", "condition", "task", "metric"]


def children_cpu() -> float:
    """User + system seconds of every child process waited for so far (their own waited-for
    descendants included)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def dask_command(*args: str) -> list[str]:
    """The `dask` script beside this interpreter (the project's venv)."""
    return [str(Path(sys.executable).parent / "dask"), *args]


def start_cluster(workers: int, folder: Path) -> tuple[list[subprocess.Popen], str]:
    """A scheduler and `workers` single-thread worker processes on this machine; (the
    processes, the scheduler's address) once every worker has joined."""
    from distributed import Client

    file = folder / "scheduler.json"
    file.unlink(missing_ok=True)
    # a session of their own: no signal meant for the cluster's processes reaches this script
    quiet = dict(stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    scheduler = subprocess.Popen(
        dask_command("scheduler", "--scheduler-file", str(file), "--port", "0", "--no-dashboard"),
        **quiet,
    )
    while not file.is_file():
        if scheduler.poll() is not None:
            raise SystemExit("`dask scheduler` ended before it wrote its address")
        time.sleep(0.1)
    worker = subprocess.Popen(
        dask_command(
            "worker", "--scheduler-file", str(file), "--nworkers", str(workers),
            "--nthreads", "1", "--no-dashboard",
        ),
        **quiet,
    )  # fmt: skip
    with Client(scheduler_file=str(file), timeout=60) as client:
        client.wait_for_workers(workers, timeout=120)
    return [worker, scheduler], json.loads(file.read_text())["address"]


def stop_cluster(processes: list[subprocess.Popen], address: str) -> None:
    """Shut the cluster down through its scheduler and reap its processes (their CPU time
    then counts in `children_cpu`)."""
    from distributed import Client

    with Client(address, timeout=60) as client:
        client.shutdown()
    for process in processes:
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def run_side(side: str, workers: int, options: list[str], folder: Path) -> dict[str, float]:
    """One benchmark run on `side` with `workers` workers: wall and CPU seconds; its results
    table is kept in `folder/<side>/results.csv`."""
    out = folder / side
    shutil.rmtree(out, ignore_errors=True)
    cpu = children_cpu()
    cluster: tuple[list[subprocess.Popen], str] | None = None
    if side == "dask":
        cluster = start_cluster(workers, folder)
        where = ["--executor", "dask", "--address", cluster[1]]
    else:
        where = ["--workers", str(workers)]
    command = [*polyfuse_command(), "benchmark", *options, *where, "--out", str(out)]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if cluster is not None:
        stop_cluster(*cluster)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} exited {done.returncode}:\n{done.stderr}")
    return {"wall": wall, "cpu": children_cpu() - cpu}


def results_difference(folder: Path) -> float:
    """The largest difference between the two sides' metric values (0 when a fold runs in one
    torch thread on both: with one local worker the folds run in the command's own process,
    with torch's default threads). Different folds or metrics are an error."""
    local, dask = (
        pd.read_csv(folder / side / "results.csv").sort_values(RESULT_KEYS).reset_index(drop=True)
        for side in SIDES
    )
    if not local[RESULT_KEYS].equals(dask[RESULT_KEYS]):
        raise SystemExit(f"the two sides scored different folds or metrics ({folder})")
    return float((local["value"] - dask["value"]).abs().max())


def table(
    times: dict[tuple[str, int], list[dict[str, float]]],
    counts: list[int],
    differences: dict[int, float],
) -> str:
    """Medians per worker count, and the largest difference of the results, as markdown."""
    rows = [
        "| workers | local wall s | dask wall s | dask / local wall | local CPU s | dask CPU s "
        "| max abs. difference of results |",
        "|---|---|---|---|---|---|---|",
    ]
    for n in counts:
        local, dask = (
            {k: statistics.median(r[k] for r in times[(side, n)]) for k in ("wall", "cpu")}
            for side in SIDES
        )
        rows.append(
            f"| {n} | {local['wall']:.1f} | {dask['wall']:.1f} | "
            f"{dask['wall'] / local['wall']:.2f}× | {local['cpu']:.1f} | {dask['cpu']:.1f} "
            f"| {differences[n]:.1e} |"
        )
    return "\n".join(rows)


def benchmark_options(args: argparse.Namespace) -> list[str]:
    """The `polyfuse benchmark` options both sides share."""
    options = ["--suite", args.suite, "--folds", str(args.folds), "--repeats", str(args.repeats)]
    for flag, value in (("--datasets", args.datasets), ("--models", args.models)):
        if value:
            options += [flag, value]
    return options + ([] if args.classical else ["--no-classical"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", default="default")
    parser.add_argument("--datasets", help="bundled cohorts, a,b (default: the suite's)")
    parser.add_argument("--models", help="models, a,b (default: the suite's)")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3, help="the benchmark's CV repeats")
    parser.add_argument("--no-classical", dest="classical", action="store_false")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--rounds", type=int, default=1, help="measurements of each side")
    parser.add_argument("--table", type=Path, help="also write the markdown table here")
    args = parser.parse_args()
    options = benchmark_options(args)
    times: dict[tuple[str, int], list[dict[str, float]]] = {}
    differences: dict[int, float] = {}
    folder = Path(tempfile.mkdtemp(prefix="polyfuse-benchmark-scaling-"))
    try:
        for r in range(args.rounds):
            for n in args.workers:
                for side in SIDES if r % 2 == 0 else SIDES[::-1]:
                    times.setdefault((side, n), []).append(run_side(side, n, options, folder))
                    print(f"round {r}, {n} workers, {side}: {times[(side, n)][-1]}", flush=True)
                difference = results_difference(folder)
                differences[n] = max(differences.get(n, 0.0), difference)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    text = table(times, args.workers, differences)
    print(f"polyfuse benchmark {' '.join(options)}; medians of {args.rounds} round(s)\n\n{text}")
    if args.table is not None:
        args.table.write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
