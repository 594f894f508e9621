"""What a search optimises: one metric of one task, in the direction that metric is better."""

from __future__ import annotations

from dataclasses import dataclass

from polyfuse.data.dataset import MultimodalDataset
from polyfuse.errors import ConfigError, DataError, did_you_mean
from polyfuse.tasks.metric_facts import PRIMARY, higher_is_better


@dataclass(frozen=True)
class Target:
    """What the search optimises: one metric of one task, and in which direction."""

    task: str
    metric: str
    direction: str  # "maximize" or "minimize"

    def better(self, a: float, b: float) -> bool:
        return a > b if self.direction == "maximize" else a < b


def resolve_target(
    data: MultimodalDataset,
    task: str | None = None,
    metric: str | None = None,
    direction: str | None = None,
) -> Target:
    """The task (default: the first), its primary metric (c_index, auroc or rmse) unless given,
    and the direction that metric is better in unless given."""
    if not data.tasks:
        raise DataError("tuning needs a dataset with at least one task")
    task = task or next(iter(data.tasks))
    if task not in data.tasks:
        raise ConfigError(
            f"tune.task: no task '{task}'{did_you_mean(task, data.tasks)}; "
            f"the tasks are {list(data.tasks)}"
        )
    metric = metric or PRIMARY[data.tasks[task].type]
    if direction is None:
        direction = "maximize" if higher_is_better(metric) else "minimize"
    if direction not in ("maximize", "minimize"):
        raise ConfigError(f"tune.direction must be maximize or minimize, got '{direction}'")
    return Target(task, metric, direction)


__all__ = ["Target", "resolve_target"]
