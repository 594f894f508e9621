"""Tiny cohorts for the tuning tests, a fake trainer for the search's bookkeeping tests, and a
real PostgreSQL server for the shared-study tests."""

from __future__ import annotations

import math
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from polyfuse.config import TrainingConfig
from polyfuse.data.dataset import ArraySource, ListSource, MultimodalDataset
from polyfuse.data.specs import ModalitySpec, TaskSpec
from polyfuse.training.settings import FitSettings

WORDS = ["mass", "node", "grade", "stage", "benign", "lesion"]
FAST = TrainingConfig(epochs=2, batch_size=32, patience=1, progress=False)
# keeps every trial to two epochs: the searched training settings are fixed small
FAST_SPACE: dict[str, Any] = {"epochs": 2, "patience": 1}


def survival_cohort(n: int = 48, seed: int = 0) -> MultimodalDataset:
    """Two tabular modalities (one 30% absent) and a survival task driven by one feature."""
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(n, 4)).astype(np.float32)
    b = rng.normal(size=(n, 3)).astype(np.float32)
    present_b = rng.uniform(size=n) < 0.7
    risk = a[:, 0] + b[:, 0] * present_b
    time = rng.exponential(np.exp(-risk)) * 50 + 1
    event = (rng.uniform(size=n) < 0.7).astype(float)
    return MultimodalDataset(
        [f"p{i:02d}" for i in range(n)],
        {"a": ModalitySpec("a", "tabular", (4,)), "b": ModalitySpec("b", "tabular", (3,))},
        {"a": ArraySource(a, np.ones(n, bool)), "b": ArraySource(b, present_b)},
        {"os": TaskSpec("os", "survival")},
        {"os": np.stack([time, event], 1)},
        name="tiny",
    )


def kinds_cohort(n: int = 12, seed: int = 0) -> MultimodalDataset:
    """One modality of each kind but 3D images (tabular, 2D image, bag, sequence, text), a
    binary and a survival task: every model's sampled configuration must build and train on it."""
    rng = np.random.default_rng(seed)
    present = rng.uniform(size=(n, 5)) < 0.75
    present[0] = True
    bags = [
        rng.normal(size=(int(rng.integers(1, 5)), 5)).astype(np.float32) if p else None
        for p in present[:, 2]
    ]
    seqs = []
    for p in present[:, 3]:
        t = int(rng.integers(1, 5))
        values = rng.normal(size=(t, 2)).astype(np.float32)
        seqs.append((values, np.sort(rng.uniform(0, 10, t)).astype(np.float32)) if p else None)
    return MultimodalDataset(
        [f"k{i:02d}" for i in range(n)],
        {
            "clinical": ModalitySpec("clinical", "tabular", (5,)),
            "xray": ModalitySpec("xray", "image", (1, 8, 8)),
            "wsi": ModalitySpec("wsi", "bag", (5,)),
            "labs": ModalitySpec("labs", "sequence", (2,)),
            "report": ModalitySpec("report", "text", (), vocab_size=32),
        },
        {
            "clinical": ArraySource(rng.normal(size=(n, 5)).astype(np.float32), present[:, 0]),
            "xray": ArraySource(rng.normal(size=(n, 1, 8, 8)).astype(np.float32), present[:, 1]),
            "wsi": ListSource(bags),
            "labs": ListSource(seqs),
            "report": ListSource(
                [" ".join(rng.choice(WORDS, 3)) if p else None for p in present[:, 4]]
            ),
        },
        {"y": TaskSpec("y", "binary"), "os": TaskSpec("os", "survival")},
        {
            "y": np.tile([0.0, 1.0], n // 2),
            "os": np.stack([rng.uniform(1, 60, n), np.tile([1.0, 0.0, 1.0], n // 3)], 1),
        },
        name="kinds",
    )


@pytest.fixture(scope="session")
def cohort() -> MultimodalDataset:
    return survival_cohort()


@pytest.fixture(scope="session")
def kinds() -> MultimodalDataset:
    return kinds_cohort()


class FakeFitted:
    """What `fit_model` returns, without training: scores follow the hyper-parameters."""

    def __init__(self, hparams: dict[str, Any], training: TrainingConfig) -> None:
        self.hparams, self.training = hparams, training

    def quality(self) -> float:
        # best at lr = 1e-3 and dim = 64; deterministic in the configuration
        q = -abs(math.log10(self.training.lr) + 3) - abs(self.hparams.get("dim", 64) - 64) / 64
        return 0.9 + 0.05 * q

    def evaluate(self, data: MultimodalDataset, train_targets: Any) -> dict:
        return {t: {"c_index": self.quality(), "ibs": 0.2} for t in data.tasks}

    def predict(self, data: MultimodalDataset) -> dict:
        return {t: {"risk": np.full(len(data), self.quality())} for t in data.tasks}


class FakeTrainer:
    """A stand-in for `polyfuse.training.fit.fit_model` that counts its calls and can be told
    to fail (an interruption) at the call numbered `fail_at`."""

    def __init__(self, fail_at: int | None = None) -> None:
        self.calls = 0
        self.fail_at = fail_at

    def __call__(self, model: str, train: MultimodalDataset, settings: FitSettings) -> FakeFitted:
        self.calls += 1
        if self.fail_at is not None and self.calls == self.fail_at:
            raise KeyboardInterrupt("simulated interruption")
        return FakeFitted(dict(settings.hparams), settings.training)


@pytest.fixture
def fake_trainer(monkeypatch: pytest.MonkeyPatch):
    """`fake_trainer(fail_at=None)` installs a FakeTrainer in place of `fit_model`."""
    import polyfuse.training.fit as fit

    def install(fail_at: int | None = None) -> FakeTrainer:
        trainer = FakeTrainer(fail_at)
        monkeypatch.setattr(fit, "fit_model", trainer)
        return trainer

    return install


# --- a real PostgreSQL server for the shared-study tests (issue #19) -----------------------
POSTGRES_HELP = (
    "PostgreSQL is not available: install the server (Debian: apt-get install postgresql) so "
    "that the tests start one of their own, or point POLYFUSE_POSTGRES_URL at a running one "
    "(postgresql://user:password@localhost:5432/db); .ci/run does both"
)


def _postgres_bin(program: str) -> str | None:
    import glob
    import shutil

    found = shutil.which(program)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{program}"))
    return candidates[-1] if candidates else None


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_postgres(folder: Path) -> tuple[str, list[str]]:
    """initdb and start a throw-away server on a free localhost port; (URL, stop command).
    As root, the server runs as the `postgres` user (PostgreSQL refuses to run as root)."""
    import os
    import pwd
    import subprocess

    initdb, pg_ctl = _postgres_bin("initdb"), _postgres_bin("pg_ctl")
    if initdb is None or pg_ctl is None:
        raise RuntimeError("initdb/pg_ctl not found")
    prefix: list[str] = []
    if os.geteuid() == 0:
        user = pwd.getpwnam("postgres")  # KeyError: no such user
        prefix = ["runuser", "-u", "postgres", "--"]
        folder.mkdir(parents=True, exist_ok=True)
        os.chown(folder, user.pw_uid, user.pw_gid)
    data, port = folder / "data", _free_port()
    run = lambda *args: subprocess.run(  # noqa: E731
        [*prefix, *args], check=True, capture_output=True, text=True, timeout=120
    )
    run(initdb, "-D", str(data), "-U", "polyfuse", "--auth=trust", "--no-sync")
    options = f"-p {port} -k {folder} -c listen_addresses=localhost -c fsync=off"
    run(pg_ctl, "-D", str(data), "-o", options, "-l", str(folder / "log"), "-w", "start")
    stop = [*prefix, pg_ctl, "-D", str(data), "-m", "immediate", "stop"]
    return f"postgresql://polyfuse@localhost:{port}/postgres", stop


@pytest.fixture(scope="session")
def postgres_url(tmp_path_factory: pytest.TempPathFactory):
    """A reachable PostgreSQL URL: POLYFUSE_POSTGRES_URL, else a server started for the session;
    skipped (failed where POLYFUSE_POSTGRES_TESTS=required, as in CI) when neither can be had."""
    import os
    import subprocess

    pytest.importorskip("psycopg")
    required = os.environ.get("POLYFUSE_POSTGRES_TESTS") == "required"
    url, stop = os.environ.get("POLYFUSE_POSTGRES_URL"), None
    try:
        if url is None:
            folder = Path(tempfile.mkdtemp(prefix="polyfuse-pg-", dir="/tmp"))  # short: socket
            url, stop = _start_postgres(folder)
        import psycopg

        psycopg.connect(url, connect_timeout=10).close()
    except Exception as exc:  # no server binaries, no postgres user, a refused connection
        message = f"{POSTGRES_HELP} ({type(exc).__name__}: {exc})"
        if required:
            pytest.fail(message)
        pytest.skip(message)
    yield url
    if stop is not None:
        subprocess.run(stop, capture_output=True, timeout=60)
