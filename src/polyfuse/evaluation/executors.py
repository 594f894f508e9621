"""Where the benchmark's folds run: in this process, in local worker processes, or as tasks on
a Dask distributed cluster.

`map_jobs` is the one way to run them, whichever the executor: `fn(shared, job)` for every job,
each `(job, result)` yielded as it finishes. Jobs return their results instead of writing them,
so the caller writes every output in one place and a worker on another machine needs no access
to the run directory. Every worker process trains with one torch thread: small models gain
nothing from a second one, so the cores are used by running folds side by side.

`distributed` is imported for the Dask executor only. The executor's name, the address and the
extra are checked (`check_executor`) before any data are read, and the scheduler is reached
(`connect`) before torch is imported and anything is trained.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

from polyfuse.errors import ConfigError, did_you_mean, require

log = logging.getLogger(__name__)

EXECUTORS = ("local", "dask")
CONNECT_TIMEOUT = 10
"""Seconds to wait for a Dask scheduler before its address is reported as unreachable."""

S = TypeVar("S")
J = TypeVar("J")
R = TypeVar("R")


def check_executor(executor: str, address: str | None) -> None:
    """A known executor; with `dask`, a scheduler address and the `cluster` extra installed."""
    if executor not in EXECUTORS:
        raise ConfigError(
            f"unknown executor '{executor}'{did_you_mean(executor, EXECUTORS)}; "
            f"choose one of {', '.join(EXECUTORS)}"
        )
    if executor == "local":
        if address is not None:
            raise ConfigError(
                f"--address {address} is the scheduler of a Dask cluster; "
                "pass --executor dask with it (or leave it out to train on this machine)"
            )
        return
    if not address:
        raise ConfigError(
            "--executor dask needs --address, the scheduler of a running Dask cluster "
            "(e.g. tcp://node01:8786, printed by `dask scheduler`)"
        )
    require("distributed", "cluster")


@contextmanager
def connect(executor: str, address: str | None) -> Iterator[Any]:
    """A client of the Dask scheduler at `address` for `dask` (closed on exit), None for `local`.
    A scheduler that does not answer within `CONNECT_TIMEOUT` seconds is a ConfigError naming
    the address, raised before any work is done."""
    check_executor(executor, address)
    if executor == "local":
        yield None
        return
    distributed = require("distributed", "cluster")
    try:
        # resolved first: a Client built on a malformed address hangs the exit in its __del__
        resolved = distributed.comm.resolve_address(address)
        client = distributed.Client(resolved, timeout=CONNECT_TIMEOUT, set_as_default=False)
    except (OSError, ValueError) as exc:  # ValueError: not an address; OSError: no answer
        raise ConfigError(
            f"cannot reach the Dask scheduler at {address}: {exc}; "
            "check --address and that `dask scheduler` runs there"
        ) from None
    try:
        threads = client.nthreads()  # tasks wait in the scheduler until workers join
        log.info(
            "Dask scheduler %s: %d workers, %d threads",
            address,
            len(threads),
            sum(threads.values()),
        )
        yield client
    finally:
        client.close()


def map_jobs(
    fn: Callable[[S, J], R],
    shared: S,
    jobs: Sequence[J],
    *,
    workers: int = 1,
    client: Any = None,
) -> Iterator[tuple[J, R]]:
    """`fn(shared, job)` for every job, yielding `(job, result)` as each finishes: as tasks of
    the Dask `client` (`shared` sent to the cluster once), in `workers` local processes
    (`shared` sent with every job), or here, one after the other. `fn` must be importable by
    name (a module-level function) for worker processes to run it."""
    if client is not None:
        yield from _on_dask(client, fn, shared, jobs)
    elif workers <= 1 or len(jobs) <= 1:
        for job in jobs:
            yield job, fn(shared, job)
    else:
        yield from _in_pool(fn, shared, jobs, workers)


def _one_thread() -> None:
    """Train with one torch thread in this worker process."""
    import torch

    torch.set_num_threads(1)


def _worker_init(gpus: int) -> None:
    """A local pool's worker: one CPU thread; with GPUs, worker k sees only GPU k mod `gpus`,
    so parallel folds spread over the devices (set before the worker first touches CUDA)."""
    import multiprocessing
    import os
    import signal

    # Ctrl+C reaches the whole process group: the main process decides, and ends the workers
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _one_thread()
    if gpus:
        rank = multiprocessing.current_process()._identity[0] - 1
        os.environ["CUDA_VISIBLE_DEVICES"] = str(rank % gpus)


def _in_pool(
    fn: Callable[[S, J], R], shared: S, jobs: Sequence[J], workers: int
) -> Iterator[tuple[J, R]]:
    """The jobs in a pool of `workers` spawned processes; on a failure or an interruption the
    workers are terminated at once (a job cut short has returned nothing, so nothing is
    half-written)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    import torch

    # spawn, not fork: a forked child of a process that already ran torch can deadlock
    context = multiprocessing.get_context("spawn")
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    pool = ProcessPoolExecutor(
        workers, mp_context=context, initializer=_worker_init, initargs=(gpus,)
    )
    try:
        futures = {pool.submit(fn, shared, job): job for job in jobs}
        for future in as_completed(futures):
            yield futures[future], future.result()
    except BaseException:
        processes = list((getattr(pool, "_processes", None) or {}).values())
        pool.shutdown(wait=False, cancel_futures=True)
        for process in processes:
            process.terminate()
        for process in processes:
            process.join(timeout=10)
        raise
    pool.shutdown()


def _one_thread_call(fn: Callable[[S, J], R], shared: S, job: J) -> R:
    """`fn(shared, job)` on a Dask worker, whose process may not have set torch's threads."""
    _one_thread()
    return fn(shared, job)


def _on_dask(
    client: Any, fn: Callable[[S, J], R], shared: S, jobs: Sequence[J]
) -> Iterator[tuple[J, R]]:
    """Each job a task on the cluster; on a failure or an interruption the tasks not finished
    are cancelled (those waiting never start; a task already running cannot be stopped from
    outside its worker thread: it finishes there and its result is dropped)."""
    if not jobs:
        return
    distributed = require("distributed", "cluster")
    data = client.scatter(shared, hash=False)  # once, not inside every task
    name = getattr(fn, "__name__", "job")
    futures = {
        client.submit(_one_thread_call, fn, data, job, key=f"{name}-{uuid.uuid4().hex}"): job
        for job in jobs
    }
    try:
        for future in distributed.as_completed(futures, loop=client.loop):  # not the default
            yield futures[future], future.result()
    except BaseException:
        client.cancel([data, *futures])
        raise
