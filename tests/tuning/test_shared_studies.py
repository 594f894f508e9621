"""Several `polyfuse tune` workers on one shared study (issue #19): a real PostgreSQL server and
a journal file; worker processes that join, split the budget, score each outer fold once, write
the run directory once, and survive one of them being killed mid-trial."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml
from helpers import write_patients

optuna = pytest.importorskip("optuna")

from optuna.trial import TrialState  # noqa: E402

from polyfuse.errors import ConfigError  # noqa: E402
from polyfuse.tuning.storage import check_url, open_storage  # noqa: E402
from polyfuse.tuning.study import seeded_sampler, trials_frame  # noqa: E402
from polyfuse.tuning.workers import Sharing, claim, fail_stale, once  # noqa: E402

TRIALS = 4
STUDIES = ("r0f0", "r0f1", "all")


def write_config(folder: Path, *, trials: int = TRIALS, epochs: int = 10, **tune) -> Path:
    """A 40-patient tabular cohort; trials long enough (`epochs`) for a second worker to join
    while the first is still searching, or to be killed mid-trial."""
    cfg = {
        "name": "shared",
        "data": write_patients(folder),
        "model": {"name": "early", "params": {"dim": 8}},
        "training": {"epochs": 2, "progress": False},
        "cv": {"folds": 2},
        "tune": {
            "trials": trials,
            "inner_folds": 2,
            "space": {"epochs": epochs, "patience": epochs},
            "heartbeat": 0.5,
            **tune,
        },
        "output": "runs",
    }
    path = folder / "experiment.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def worker(config: Path, storage: str, study: str) -> subprocess.Popen:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    command = ["tune", str(config), "--storage", storage, "--study", study]
    return subprocess.Popen(
        [sys.executable, "-m", "polyfuse", *command],
        cwd=config.parent,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def finish(process: subprocess.Popen) -> str:
    output, _ = process.communicate(timeout=300)
    assert process.returncode == 0, output
    return output


def trials_of(storage, name: str) -> list:
    return optuna.load_study(study_name=name, storage=storage).get_trials(deepcopy=False)


def finished(trials: list) -> int:
    return sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)


def tuned_line(output: str) -> str:
    return next(line for line in output.splitlines() if "│ tuned" in line or " tuned " in line)


@pytest.fixture(params=["postgresql", "journal"])
def storage_url(request, tmp_path: Path) -> str:
    if request.param == "journal":
        return f"journal:{tmp_path / 'studies.log'}"
    return request.getfixturevalue("postgres_url")


def test_two_workers_split_the_budget_and_write_the_run_once(tmp_path: Path, storage_url: str):
    config = write_config(tmp_path)
    study = f"shared-{time.time_ns()}"
    outputs = [finish(p) for p in [worker(config, storage_url, study) for _ in range(2)]]
    storage = open_storage(storage_url)
    workers = set()
    for name in STUDIES:
        trials = trials_of(storage, f"{study}/{name}")
        assert finished(trials) == TRIALS, name  # exactly the budget, however the asks raced
        assert not [t for t in trials if t.state == TrialState.RUNNING]
        assert all("surplus" in t.user_attrs for t in trials if t.state == TrialState.FAIL)
        workers |= {t.user_attrs["worker"] for t in trials if "worker" in t.user_attrs}
        scored = trials_of(storage, f"{study}/{name}/score")
        assert [t.state for t in scored if t.state != TrialState.FAIL] == [TrialState.COMPLETE]
    assert len(workers) == 2, f"one worker ran every trial: {outputs}"
    report = [t for t in trials_of(storage, f"{study}/run") if t.state == TrialState.COMPLETE]
    assert len(report) == 1
    run_dir = tmp_path / "runs" / "shared" / "tune"
    assert report[0].user_attrs["record"].find(str(run_dir)) > 0
    assert (run_dir / "best.yaml").is_file() and (run_dir / "best_r0f1.yaml").is_file()
    written = pd.read_csv(run_dir / "trials.csv")
    assert len(written) == len(STUDIES) * TRIALS
    assert (pd.read_csv(run_dir / "chosen.csv")["trials"] == TRIALS).all()
    # every worker returns (and prints) the whole result, the same one
    assert tuned_line(outputs[0]) == tuned_line(outputs[1])
    summary = pd.read_csv(run_dir / "summary.csv")
    tuned = summary.query("variant == 'tuned' and metric == 'auroc'")["text"].iloc[0]
    assert tuned in outputs[0]


def test_a_worker_killed_mid_trial_leaves_the_study_consistent(tmp_path: Path, postgres_url):
    config = write_config(tmp_path, trials=2, epochs=40, final=False, untuned=False)
    study = f"killed-{time.time_ns()}"
    storage = open_storage(postgres_url)
    first = worker(config, postgres_url, study)
    deadline = time.monotonic() + 120
    running: list = []
    while not running and time.monotonic() < deadline:
        time.sleep(0.05)
        try:
            trials = trials_of(storage, f"{study}/r0f0")
        except KeyError:  # the study does not exist yet
            continue
        running = [t for t in trials if t.state == TrialState.RUNNING]
    assert running, "the first worker never started a trial"
    os.kill(first.pid, signal.SIGKILL)
    first.communicate(timeout=60)
    lost = running[0].number
    assert trials_of(storage, f"{study}/r0f0")[lost].state == TrialState.RUNNING  # left behind

    finish(worker(config, postgres_url, study))
    trials = trials_of(storage, f"{study}/r0f0")
    assert trials[lost].state == TrialState.FAIL  # declared lost after 4 silent heartbeats
    assert finished(trials) == 2 and finished(trials_of(storage, f"{study}/r0f1")) == 2
    run_dir = tmp_path / "runs" / "shared" / "tune"
    written = pd.read_csv(run_dir / "trials.csv").query("study == 'r0f0'")
    assert written.set_index("trial").loc[lost, "state"] == "fail"
    assert (pd.read_csv(run_dir / "chosen.csv")["trials"] == 2).all()


def test_a_trial_asked_past_the_budget_is_surplus_and_never_listed():
    study = optuna.create_study()
    asked = [study.ask() for _ in range(3)]
    assert claim(study, asked[0], 2, grace=10.0) == 0
    assert claim(study, asked[1], 2, grace=10.0) == 1  # one running before it: its own seed
    assert claim(study, asked[2], 2, grace=10.0) is None
    assert study.trials[2].state == TrialState.FAIL
    assert list(trials_frame(study)["trial"]) == [0, 1]
    # a running trial silent for longer than the grace is failed, freeing its place
    asked[0].set_user_attr("heartbeat", time.time() - 100)
    assert fail_stale(study, grace=10.0) == 1
    assert [t.state for t in study.trials[:2]] == [TrialState.FAIL, TrialState.RUNNING]
    late = study.ask()
    assert claim(study, late, 2, grace=10.0) == 1


def _first_proposal(rank: int) -> float:
    study = optuna.create_study(sampler=seeded_sampler(0, 0, 5, 20, rank))
    return study.ask().suggest_float("x", 0.0, 1.0)


def test_workers_asking_at_once_get_different_proposals():
    """Two workers asking while the same number of trials is finished must not propose the
    same configuration; alone (rank 0) the proposal is the single-process one."""
    proposals = [_first_proposal(rank) for rank in range(3)]
    assert len(set(proposals)) == 3
    assert _first_proposal(0) == proposals[0]


def test_a_one_off_job_runs_once_and_its_record_is_read_back(tmp_path: Path):
    storage = open_storage(f"sqlite:///{tmp_path / 's.db'}")
    sharing = Sharing("run", heartbeat=0.2)
    calls = []

    def job() -> dict:
        calls.append(1)
        return {"n": len(calls)}

    assert once(storage, "run/report", job, sharing) == {"n": 1}
    assert once(storage, "run/report", job, sharing) == {"n": 1}
    assert len(calls) == 1


def test_a_worker_with_other_settings_is_refused(tmp_path: Path, cohort, fake_trainer):
    from polyfuse import tune

    fake_trainer()
    url = f"sqlite:///{tmp_path / 's.db'}"
    options = dict(trials=2, folds=2, final=False, untuned=False, progress=False)
    tune("early", cohort, inner_folds=2, storage=url, study="acc", **options)
    with pytest.raises(
        ConfigError, match=r"'acc' was started with other settings \(inner_folds\).*--study"
    ):
        tune("early", cohort, inner_folds=3, storage=url, study="acc", **options)
    tune("early", cohort, inner_folds=3, storage=url, study="acc-3", **options)  # a new name


def test_storage_errors_name_the_url_and_hide_its_password():
    with pytest.raises(ConfigError, match="journal:/path"):
        check_url("ftp://host/studies")
    with pytest.raises(ConfigError, match="needs a file path"):
        check_url("journal:")
    with pytest.raises(ConfigError) as caught:
        open_storage("postgresql://me:secret@localhost:1/db")
    assert "postgresql+psycopg://me:***@localhost:1/db" in str(caught.value)
    assert "secret" not in str(caught.value)
