"""Where optuna studies live: a run directory's SQLite file, or a storage shared by workers.

A shared storage lets several `polyfuse tune` processes, on any number of machines, join one
study (`tuning/workers.py`). Two kinds are taken:

- a database URL, `postgresql://user:password@host:5432/db` (also `sqlite:///path.db`, for
  workers on one machine): optuna's RDBStorage through SQLAlchemy; a plain `postgresql://`
  goes through psycopg 3 (the `cluster` extra) when psycopg2 is not installed;
- `journal:PATH`: optuna's append-only journal file, for a shared file system without a
  database server (its lock is a symlink, which NFS and Lustre honour).

`check_url` only reads the text, so a config with a bad URL is refused before anything heavy
is imported; `open_storage` connects, and names the URL (password hidden) when it cannot.
"""

from __future__ import annotations

import logging
import random
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from polyfuse.errors import ConfigError, require

STUDY_FILE = "study.db"
DATABASES = ("postgresql", "sqlite", "mysql")
JOURNAL = "journal:"
SCHEMA_ATTEMPTS = 5


def check_url(url: str) -> None:
    """Refuse a storage URL polyfuse cannot open, saying which forms it takes (no imports)."""
    if url.startswith(JOURNAL):
        if not url[len(JOURNAL) :]:
            raise ConfigError(
                "tune.storage: 'journal:' needs a file path, e.g. journal:/shared/acc.log"
            )
        return
    scheme = urlsplit(url).scheme.split("+")[0]
    if scheme not in DATABASES:
        raise ConfigError(
            f"tune.storage: cannot use '{shown(url)}': give a database URL "
            "(postgresql://user:password@host:5432/db, or sqlite:///path.db) or a journal file "
            "on a shared file system (journal:/path/to/study.log)"
        )


def shown(url: str) -> str:
    """The URL with its password replaced by ***, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()


def open_storage(url: str) -> Any:
    """An optuna storage at `url` (see the module docstring), connected and ready."""
    check_url(url)
    optuna = require("optuna", "tune")
    if url.startswith(JOURNAL):
        from optuna.storages.journal import JournalFileBackend, JournalStorage

        path = Path(url[len(JOURNAL) :]).expanduser()
        if not path.parent.is_dir():
            raise ConfigError(f"tune.storage: the folder of the journal file {path} does not exist")
        return JournalStorage(JournalFileBackend(str(path)))
    _no_last_resort("sqlalchemy")
    if url.startswith("postgresql://"):
        url = _postgres_driver(url)
    from sqlalchemy.exc import IntegrityError, ProgrammingError

    failure: Exception | None = None
    for _ in range(SCHEMA_ATTEMPTS):
        try:
            return optuna.storages.RDBStorage(url, engine_kwargs={"pool_pre_ping": True})
        except (IntegrityError, ProgrammingError) as exc:
            # workers started together on an empty database race to create optuna's tables;
            # the losers see them half-made: look again once the winner has committed
            failure = exc
            time.sleep(random.uniform(0.2, 1.0))
        except Exception as exc:  # SQLAlchemy's and the driver's errors have no common base
            failure = exc
            break
    raise ConfigError(f"tune.storage: cannot open {shown(url)}: {_first_line(failure)}")


def _postgres_driver(url: str) -> str:
    """SQLAlchemy's default PostgreSQL driver is psycopg2; the `cluster` extra brings psycopg 3."""
    import importlib.util

    if importlib.util.find_spec("psycopg2") is not None:
        return url
    require("psycopg", "cluster")
    return "postgresql+psycopg://" + url[len("postgresql://") :]


def _first_line(exc: BaseException | None) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def sqlite_storage(path: Path) -> Any:
    """An optuna storage in the SQLite file `path`: a run directory's own studies.

    Write-ahead logging with normal syncing: every commit survives a crash or a kill of the
    process (a power cut may lose the last ones), and costs ~0.02 ms instead of ~15 ms with
    SQLite's default full sync, which matters for many short trials.
    """
    import sqlite3

    optuna = require("optuna", "tune")
    path = Path(path).resolve()
    _no_last_resort("sqlalchemy")

    def connect() -> sqlite3.Connection:
        con = sqlite3.connect(str(path), timeout=60, check_same_thread=False)
        con.execute("PRAGMA journal_mode=WAL")
        con.execute("PRAGMA synchronous=NORMAL")
        return con

    return optuna.storages.RDBStorage(f"sqlite:///{path}", engine_kwargs={"creator": connect})


def close_storage(storage: Any) -> None:
    """Close a database storage's connections (SQLite folds its write-ahead log into the file)."""
    engine = getattr(storage, "engine", None)
    if engine is not None:
        engine.dispose()


def _no_last_resort(name: str) -> None:
    """Give logger `name` a NullHandler, so that Python's last-resort handler does not print
    its records to stderr when the user configured no logging. An interrupt (Ctrl+C, SIGTERM)
    that lands inside a database fetch makes SQLAlchemy log an "Error closing cursor"
    traceback, which would otherwise appear above polyfuse's one-line message on what was
    kept. The records still propagate to any handler the user configures (`polyfuse -v`)."""
    logger = logging.getLogger(name)
    if not any(isinstance(h, logging.NullHandler) for h in logger.handlers):
        logger.addHandler(logging.NullHandler())


__all__ = ["STUDY_FILE", "check_url", "close_storage", "open_storage", "shown", "sqlite_storage"]
