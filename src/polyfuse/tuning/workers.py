"""Several workers on one study: who runs which trial, who does a job once, who has died.

Workers (`polyfuse tune --storage URL` processes, on any machines) coordinate only through the
shared storage; nothing else is assumed to be shared.

- **Budget.** A worker asks for a trial only while the finished trials and the live running
  ones stay below the budget. Two workers may still ask at the same instant; optuna numbers
  trials in the order they were created, so the one whose lower-numbered trials already fill
  the budget marks its own trial surplus (failed, `user_attrs["surplus"]`, never run, never
  listed) and the study ends with exactly the budget of finished trials.
- **Heartbeat.** A running trial's worker writes the time to `user_attrs["heartbeat"]` every
  `heartbeat` seconds. A running trial silent for `grace` seconds (a killed worker, a lost
  node) is failed by whichever worker notices, and its place in the budget is free again.
  Workers' clocks must agree to well within `grace` (NTP does).
- **Once.** Scoring an outer fold, and writing the report, must happen exactly once: such a
  job is a study of its own with a budget of one trial, whose record (JSON) is kept in the
  storage for every worker to read. A claimant that dies is replaced like any stale trial.

optuna's own heartbeat exists only for database storages; this one is the same for a
journal file, and needs no private optuna API.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from polyfuse.tuning.study import finished

WORKER = f"{socket.gethostname()}:{os.getpid()}"


@dataclass(frozen=True)
class Sharing:
    """How this worker shares its studies: the name all of them start with, and the heartbeat
    (seconds) a running trial writes; after `grace` = 4 heartbeats without one it is lost."""

    prefix: str
    heartbeat: float = 15.0

    @property
    def grace(self) -> float:
        return 4 * self.heartbeat

    @property
    def poll(self) -> float:
        """How long a worker with nothing to do waits before looking again."""
        return min(5.0, max(0.2, self.heartbeat / 2))

    def name(self, study: str) -> str:
        return f"{self.prefix}/{study}"


def _running(study: Any) -> list[Any]:
    from optuna.trial import TrialState

    return study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))


def _last_sign(trial: Any) -> float:
    beat = trial.user_attrs.get("heartbeat")
    if beat is not None:
        return float(beat)
    return trial.datetime_start.timestamp() if trial.datetime_start is not None else time.time()


def _silent(trial: Any, grace: float | None, now: float) -> bool:
    """Whether a running trial's worker gave no sign of life for `grace` seconds (never
    without sharing: `grace` None)."""
    return grace is not None and now - _last_sign(trial) > grace


def fail_stale(study: Any, grace: float) -> int:
    """Fail the running trials silent for `grace` seconds; how many there were."""
    from optuna.trial import TrialState

    now = time.time()
    stale = [t for t in _running(study) if _silent(t, grace, now)]
    for t in stale:
        study.tell(t.number, state=TrialState.FAIL, skip_if_finished=True)
    return len(stale)


def fail_leftovers(study: Any) -> None:
    """A study only this process uses: trials a killed earlier run left running are failed
    (so a resumed search does not wait for them)."""
    fail_stale(study, grace=-1.0)


def live_running(study: Any, grace: float | None) -> list[Any]:
    """Running trials whose worker is alive (every running trial without sharing)."""
    now = time.time()
    return [t for t in _running(study) if not _silent(t, grace, now)]


def claim(study: Any, trial: Any, budget: int, grace: float | None) -> int | None:
    """The newly asked `trial`'s rank among the live running trials (0: no other runs before
    it), or None when trials numbered before it (finished, or running and alive) already fill
    `budget`: it is then told as surplus."""
    from optuna.trial import TrialState

    now = time.time()
    ahead = [
        t
        for t in study.get_trials(deepcopy=False)
        if t.number < trial.number
        and (finished(t) or (t.state == TrialState.RUNNING and not _silent(t, grace, now)))
    ]
    if len(ahead) < budget:
        trial.set_user_attr("worker", WORKER)
        return sum(t.state == TrialState.RUNNING for t in ahead)
    trial.set_user_attr("surplus", True)
    study.tell(trial, state=TrialState.FAIL)
    return None


@contextmanager
def heartbeat(trial: Any, seconds: float | None) -> Iterator[None]:
    """Write the time to the trial every `seconds` while the body runs (nothing when None)."""
    if seconds is None:
        yield
        return
    stop = threading.Event()

    def beat() -> None:
        while True:
            try:
                trial.set_user_attr("heartbeat", time.time())
            except Exception:  # the trial was declared lost and failed by another worker
                return
            if stop.wait(seconds):
                return

    thread = threading.Thread(target=beat, name="polyfuse-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def once(storage: Any, name: str, job: Callable[[], dict[str, Any]], sharing: Sharing) -> Any:
    """The record of the one-off `job` named `name`: run here when nobody has claimed it (or its
    claimant died), read back when done elsewhere; None while another worker is on it."""
    import optuna

    study = optuna.create_study(storage=storage, study_name=name, load_if_exists=True)
    fail_stale(study, sharing.grace)
    done = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if done:
        return json.loads(done[0].user_attrs["record"])
    if live_running(study, sharing.grace):
        return None
    trial = study.ask()
    if claim(study, trial, 1, sharing.grace) is None:
        return None
    try:
        with heartbeat(trial, sharing.heartbeat):
            record = job()
    except BaseException:
        study.tell(trial, state=optuna.trial.TrialState.FAIL, skip_if_finished=True)
        raise
    trial.set_user_attr("record", json.dumps(record))
    study.tell(trial, 0.0, skip_if_finished=True)
    return record


def wait_once(storage: Any, name: str, job: Callable[[], dict[str, Any]], sharing: Sharing) -> Any:
    """`once`, waiting while another worker is on the job (taking it over if that one dies)."""
    while (record := once(storage, name, job, sharing)) is None:
        time.sleep(sharing.poll)
    return record


__all__ = [
    "WORKER",
    "Sharing",
    "claim",
    "fail_leftovers",
    "fail_stale",
    "heartbeat",
    "live_running",
    "once",
    "wait_once",
]
