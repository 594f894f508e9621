"""Stopping a long run with SIGINT (Ctrl+C) or SIGTERM (`kill`, a scheduler's time limit).

Python's own SIGINT exception, KeyboardInterrupt, is caught by Lightning's `trainer.fit`, which
then shuts down "gracefully" and returns or exits 1; SIGTERM makes Lightning finish the batch
and raise a `SystemExit` whose exit code is 0. Neither tells the caller what happened. Inside
`interruptible()` both signals raise `Interrupted` instead: not a KeyboardInterrupt (Lightning
lets it through, after its own clean-up) nor an `Exception` (no `except Exception` swallows
it). A library's clean-up can bury the interrupt under an error of its own (Lightning's
teardown, reached while a fit was still being set up, fails on a data loader never iterated);
`interruptible()` digs it out, so the run still ends as interrupted. The finished parts of a
run are written atomically as they finish, so whatever was done is kept, and `--resume`
continues from there.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(BaseException):
    """SIGINT or SIGTERM arrived during a run."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name

    @property
    def exit_code(self) -> int:
        """The shell's convention for a process ended by a signal: 128 + its number (130 for
        SIGINT, 143 for SIGTERM)."""
        return 128 + self.signum


def _raise(signum: int, frame: FrameType | None) -> None:
    for sig in SIGNALS:  # a second signal while the first unwinds would cut the clean-up short
        signal.signal(sig, signal.SIG_IGN)
    raise Interrupted(signum)


@contextmanager
def interruptible() -> Iterator[None]:
    """SIGINT and SIGTERM raise `Interrupted` in the body (main thread only; elsewhere the
    body runs unchanged); an error raised while an `Interrupted` unwound is replaced by that
    `Interrupted`. The previous handlers are restored afterwards."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.getsignal(sig) for sig in SIGNALS}
    for sig in SIGNALS:
        signal.signal(sig, _raise)
    try:
        yield
    except Exception as exc:
        buried = _buried_interrupt(exc)
        if buried is None:
            raise
        raise buried from None
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)


def _buried_interrupt(exc: BaseException) -> Interrupted | None:
    """The `Interrupted` during whose handling `exc` was raised, if any."""
    seen: set[int] = set()
    cause = exc.__context__
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, Interrupted):
            return cause
        seen.add(id(cause))
        cause = cause.__context__
    return None


def kept(run: Path) -> str | None:
    """What an interrupted run left in `run` for `--resume` to continue from, in words; None
    when nothing was finished."""
    run = Path(run)
    if not run.is_dir():
        return None
    parts = run / "parts"
    cv_folds = len(list(parts.glob("*_metrics.parquet"))) if parts.is_dir() else 0
    if cv_folds:
        return f"{_n(cv_folds, 'finished fold')} in {parts}"
    searches = len(list(parts.glob("*.chosen.json"))) if parts.is_dir() else 0
    if searches:
        return f"{_n(searches, 'finished search')} in {parts} and the trials in {run / 'study.db'}"
    bench = len(list(parts.rglob("*.results.csv"))) if parts.is_dir() else 0
    if bench:
        return f"{_n(bench, 'finished fold')} in {parts}"
    if (run / "study.db").is_file():
        return f"the finished trials in {run / 'study.db'}"
    if (run / "checkpoints" / "last.ckpt").is_file():
        return f"the last checkpoint in {run / 'checkpoints'}"
    return None


def _n(count: int, what: str) -> str:
    return f"{count} {what}{'' if count == 1 else 's'}"


def message(exc: Interrupted, run: Path, command: str) -> str:
    """The one line printed when a run is interrupted."""
    what = kept(run)
    if what is None:
        return f"interrupted by {exc.name} before anything was finished; nothing was kept"
    return (
        f"interrupted by {exc.name}: kept {what}; run `polyfuse {command} ... --resume` "
        "with the same arguments to continue it"
    )
