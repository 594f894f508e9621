"""Per-modality contribution by ablation: how much predictions move without each modality.

Model-agnostic (it only needs `predict`), so every registered model gets the same chart.
For a sample that has modality m, its contribution is |score(all) − score(all but m)|, where
the score is the task's risk (survival), probabilities (classification, summed over classes or
labels) or prediction (regression); averaged over the samples that have m.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from polyfuse.data.dataset import MultimodalDataset
from polyfuse.training.fit import FittedModel

SCORE_KEYS = ("risk", "prob", "pred")


def _change(full: dict[str, np.ndarray], without: dict[str, np.ndarray]) -> np.ndarray:
    """Per-sample absolute change of the task's main score."""
    key = next(k for k in SCORE_KEYS if k in full)
    delta = np.abs(full[key] - without[key])
    return delta.reshape(len(delta), -1).sum(1)


def modality_contributions(fitted: FittedModel, dataset: MultimodalDataset) -> pd.DataFrame:
    """Rows: modalities; columns: tasks; values: mean |Δ score| when the modality is removed."""
    full = fitted.predict(dataset)
    rows = {}
    for m in dataset.specs:
        has = dataset.sources[m].present
        without = fitted.predict(dataset.drop_modalities([m]))
        rows[m] = {
            t: float(_change(full[t], without[t])[has].mean()) if has.any() else float("nan")
            for t in full
        }
    return pd.DataFrame(rows).T.rename_axis("modality")
