"""`polyfuse benchmark --executor dask` (issue #19): the folds as tasks on a Dask distributed
cluster give the local pool's results, every task runs on the cluster, a resumed run submits
only the folds it lacks, and a missing or unreachable scheduler is named before any training.

One `LocalCluster` of two single-thread worker processes serves the module. The runs are small
(40 patients, 2 models × 2 folds, 2 epochs, no classical floors, one cost-curve size)."""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
import pytest
from helpers import clean_error, run, survival_cohort
from test_startup import assert_answered_without_torch

from polyfuse.config import TrainingConfig
from polyfuse.errors import ConfigError
from polyfuse.evaluation import executors
from polyfuse.evaluation.benchmark import benchmark

distributed = pytest.importorskip("distributed")

SMALL = dict(
    models=["early", "late"],
    folds=2,
    repeats=1,
    training=TrainingConfig(epochs=2, progress=False),
    progress=False,
    classical=False,
)
KEYS = ["dataset", "model", "repeat", "fold", "condition", "task", "metric"]


@pytest.fixture(scope="module")
def cluster():
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    ) as cluster:
        yield cluster


@pytest.fixture(scope="module")
def observer(cluster):
    """The test's own client: it sees every task of the scheduler (`get_task_stream`)."""
    with distributed.Client(cluster, set_as_default=False) as client:
        yield client


@pytest.fixture(autouse=True)
def one_curve_size(monkeypatch):
    """The cost curves (computed where the benchmark runs, not a fold) at one size only."""
    monkeypatch.setattr("polyfuse.evaluation.benchmark.CURVE_MODALITIES", (2,))
    monkeypatch.setattr("polyfuse.evaluation.benchmark.CURVE_TOKENS", (16,))


def results(out: Path) -> pd.DataFrame:
    return pd.read_csv(out / "results.csv").sort_values(KEYS).reset_index(drop=True)


def fold_tasks(stream) -> list[dict]:
    return [task for task in stream.data if task["key"].startswith("_fold_job-")]


def test_folds_on_a_dask_cluster_give_the_local_pools_results_and_resume(
    cluster, observer, tmp_path
):
    cohort = survival_cohort(40)
    benchmark([cohort], out=tmp_path / "local", workers=2, **SMALL)
    address = cluster.scheduler_address
    with distributed.get_task_stream(client=observer) as stream:
        benchmark([cohort], out=tmp_path / "dask", executor="dask", address=address, **SMALL)
    tasks = fold_tasks(stream)
    assert len(tasks) == 4  # 2 models × 2 folds, each one task on the cluster
    assert {t["worker"] for t in tasks} == set(cluster.scheduler_info["workers"])
    # one thread per worker process, as in the local pool: the same numbers, to the bit
    expected = results(tmp_path / "local")
    assert len(expected) and expected["value"].notna().any()
    pd.testing.assert_frame_equal(results(tmp_path / "dask"), expected)

    # interrupted: one fold's results part is lost; a resumed run submits only that fold
    parts = tmp_path / "dask" / "parts" / "toy"
    lost = parts / "late" / "r0f1.results.csv"
    lost.unlink()
    kept = {p: p.stat().st_mtime_ns for p in parts.rglob("*.csv") if p.parent.name == "early"}
    with distributed.get_task_stream(client=observer) as stream:
        benchmark(
            [cohort], out=tmp_path / "dask", executor="dask", address=address, resume=True, **SMALL
        )
    assert len(fold_tasks(stream)) == 1 and lost.is_file()
    assert {p: p.stat().st_mtime_ns for p in kept} == kept
    pd.testing.assert_frame_equal(results(tmp_path / "dask"), expected)


def test_dask_without_an_address_is_refused_before_the_data_and_torch(tmp_path):
    args = ("benchmark", "--executor", "dask", "--out", tmp_path / "b")
    assert_answered_without_torch(args, tmp_path, 2, "error:", "--executor dask needs --address")
    assert not (tmp_path / "b").exists()


def test_an_address_that_is_not_one_is_named_before_torch(tmp_path):
    args = ("benchmark", "-m", "early", "--executor", "dask", "--address", "node01")
    args = (*args, "--out", tmp_path / "b")
    assert_answered_without_torch(args, tmp_path, 2, "cannot reach the Dask scheduler at node01")


def test_an_unreachable_scheduler_is_named_before_any_training(monkeypatch, tmp_path):
    monkeypatch.setattr(executors, "CONNECT_TIMEOUT", 1)
    address = "tcp://127.0.0.1:9"  # the discard port: nothing listens
    with pytest.raises(ConfigError, match=f"cannot reach the Dask scheduler at {address}"):
        benchmark([survival_cohort(40)], out=tmp_path / "b", executor="dask", address=address)
    assert not (tmp_path / "b").exists()


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["--executor", "dsak"], ["unknown executor 'dsak'", "did you mean 'dask'"]),
        (["--address", "tcp://node01:8786"], ["--address tcp://node01:8786", "--executor dask"]),
    ],
)
def test_executor_options_are_checked_before_any_data_are_read(no_data, tmp_path, args, fragments):
    clean_error(run("benchmark", *args, "--out", tmp_path / "b"), *fragments)


def test_dask_not_installed_names_the_extra(no_data, monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "distributed", None)  # `import distributed` fails
    args = ("--executor", "dask", "--address", "tcp://node01:8786", "--out", tmp_path / "b")
    clean_error(run("benchmark", *args), "distributed is needed", "polyfuse[cluster]")
