"""Per-modality contribution by ablation: how much predictions move without each modality.

Model-agnostic (it only needs `predict`), so every registered model gets the same chart.
For a sample that has modality m, its contribution is |score(all) − score(all but m)|, where
the score is the task's risk (survival), probabilities (classification, summed over classes or
labels) or prediction (regression); averaged over the samples that have m, with a 95%
bootstrap interval over those samples.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from polyfuse.data.dataset import MultimodalDataset
from polyfuse.training.fit import FittedModel

SCORE_KEYS = ("risk", "prob", "pred")
N_BOOT = 1000


def _change(full: dict[str, np.ndarray], without: dict[str, np.ndarray]) -> np.ndarray:
    """Per-sample absolute change of the task's main score."""
    key = next(k for k in SCORE_KEYS if k in full)
    delta = np.abs(full[key] - without[key])
    return delta.reshape(len(delta), -1).sum(1)


def modality_changes(fitted: FittedModel, dataset: MultimodalDataset) -> pd.DataFrame:
    """Per patient, modality and task: |Δ score| when the modality is removed (only for the
    patients who have it): long rows id, modality, task, change."""
    full = fitted.predict(dataset, calibrated=False)
    frames = []
    for m in dataset.specs:
        has = dataset.sources[m].present
        without = fitted.predict(dataset.drop_modalities([m]), calibrated=False)
        for t in full:
            change = _change(full[t], without[t])[has]
            ids = np.asarray(dataset.ids)[has]
            frames.append(pd.DataFrame({"id": ids, "modality": m, "task": t, "change": change}))
    return pd.concat(frames, ignore_index=True)


def modality_contributions(fitted: FittedModel, dataset: MultimodalDataset) -> pd.DataFrame:
    """Rows: modalities; columns: tasks; values: mean |Δ score| when the modality is removed."""
    changes = modality_changes(fitted, dataset)
    table = changes.pivot_table(index="modality", columns="task", values="change", aggfunc="mean")
    table = table.reindex(index=list(dataset.specs), columns=list(fitted.tasks))
    return table.rename_axis("modality").rename_axis(None, axis=1)


def contribution_intervals(changes: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """Per modality and task: the mean change, its 95% percentile bootstrap interval over the
    patients, and how many patients have the modality."""
    rng = np.random.default_rng(seed)
    rows = []
    for (m, t), part in changes.groupby(["modality", "task"], sort=False):
        x = part["change"].to_numpy(dtype=float)
        means = x[rng.integers(0, len(x), size=(N_BOOT, len(x)))].mean(1)
        low, high = np.percentile(means, [2.5, 97.5])
        rows.append(dict(modality=m, task=t, n=len(x), mean=x.mean(), ci_low=low, ci_high=high))
    return pd.DataFrame(rows, columns=["modality", "task", "n", "mean", "ci_low", "ci_high"])
