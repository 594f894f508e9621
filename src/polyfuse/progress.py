"""Progress bars on long work (CV folds, benchmark models × folds, tuning trials)."""

from __future__ import annotations


class Progress:
    """A rich progress bar over a known amount of work (silent when disabled).

    `eta=True` adds an estimate of the time left (from the pace so far), for work whose units
    take similar times, such as tuning trials.
    """

    def __init__(self, enabled: bool, *, eta: bool = False) -> None:
        self.enabled = enabled
        self.eta = eta
        self.bar = None
        self.job = None

    def __enter__(self) -> Progress:
        if self.enabled:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )
            from rich.progress import Progress as RichProgress

            columns = [
                "[progress.description]{task.description}",
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
            ]
            if self.eta:
                columns += ["left", TimeRemainingColumn()]
            self.bar = RichProgress(*columns)
            self.bar.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.__exit__(*exc)

    def add(self, name: str, total: int) -> None:
        if self.bar is not None:
            self.job = self.bar.add_task(name, total=total)

    def describe(self, text: str) -> None:
        if self.bar is not None and self.job is not None:
            self.bar.update(self.job, description=text)

    def advance(self, n: int = 1) -> None:
        if self.bar is not None and self.job is not None:
            self.bar.advance(self.job, n)
