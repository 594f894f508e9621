"""Facts about metrics that every layer needs: each task type's primary metric and which
direction is better. Plain data, no torch: the tuner, the benchmark and the report all read
them, and `metrics` computes the values."""

from __future__ import annotations

from collections.abc import Iterable

from polyfuse.errors import DataError

# Primary metric per task type; regression's is an error, so lower is better there.
PRIMARY = {
    "survival": "c_index",
    "binary": "auroc",
    "multiclass": "auroc",
    "multilabel": "auroc",
    "classification": "auroc",
    "regression": "rmse",
}
# Metrics where a smaller value is the better one; every other metric is higher-is-better.
LOWER_IS_BETTER = frozenset(
    {"ibs", "brier", "integrated_brier_score", "mae", "rmse", "mse", "loss"}
)


def higher_is_better(metric: str) -> bool:
    """Whether a larger value of `metric` means a better model (False for errors and IBS)."""
    return metric.lower() not in LOWER_IS_BETTER


def primary_metric(metrics: Iterable[str]) -> str:
    """The primary metric among those a task reports: c_index, else auroc, else rmse.

    Inferred from the metrics rather than from the task name, because tables carry user task
    names ("os", "grade"), not task types.
    """
    present = set(metrics)
    for name in dict.fromkeys(PRIMARY.values()):
        if name in present:
            return name
    raise DataError(f"no primary metric (c_index, auroc or rmse) among {sorted(present)}")
