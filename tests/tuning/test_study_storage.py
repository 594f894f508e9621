"""The study's SQLite storage: what an interrupt inside a database call prints."""

from __future__ import annotations

import subprocess
import sys

import pytest

SCRIPT = """
import logging, sys
from polyfuse.tuning.storage import sqlite_storage
sqlite_storage(sys.argv[1])
try:
    raise KeyboardInterrupt
except KeyboardInterrupt:
    # what SQLAlchemy's pool does when an interrupt lands inside a fetch
    logging.getLogger("sqlalchemy.pool.impl.QueuePool").error("Error closing cursor", exc_info=True)
"""


def test_an_interrupted_fetch_prints_no_sqlalchemy_traceback(tmp_path):
    """With no logging configured (the `polyfuse` command without -v), Python's last-resort
    handler would print SQLAlchemy's "Error closing cursor" traceback above polyfuse's one line
    on what an interrupted `tune` kept; the storage gives SQLAlchemy's logger a NullHandler."""
    pytest.importorskip("optuna")
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path / "study.db")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
