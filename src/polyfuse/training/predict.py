"""Predict with a fitted run directory on new samples; write a CSV without clobbering."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from polyfuse.data.dataset import MultimodalDataset
from polyfuse.errors import ConfigError, DataError
from polyfuse.io import atomic_write
from polyfuse.training.fit import FittedModel


def load_new_data(run_dir: Path, data: str) -> MultimodalDataset:
    """A dataset name, or a manifest table read the way the run's config reads its data."""
    from polyfuse.config import load_config
    from polyfuse.datasets import DATASETS, from_config

    if data in DATASETS:
        return DATASETS[data].load()
    path = Path(data).resolve()
    if not path.is_file():
        raise DataError(f"no such data file or dataset name: {data}")
    config = load_config(run_dir / "config.yaml")
    if config.data.table is None:
        raise ConfigError(
            f"run {run_dir} was trained on '{config.data.dataset or config.data.mudata}'; "
            "give a dataset name, or train on a manifest table to predict from tables"
        )
    root = config.data.root or path.parent
    return from_config(config.data.model_copy(update={"table": path, "root": root}))


def score_columns(scores: dict[str, np.ndarray], prefix: str = "") -> dict[str, np.ndarray]:
    """Flat columns of one task's scores: `<prefix><score>`, matrices as `_<j>` columns."""
    cols: dict[str, np.ndarray] = {}
    for name, value in scores.items():
        if value.ndim == 1:
            cols[f"{prefix}{name}"] = value
        else:
            for j in range(value.shape[1]):
                cols[f"{prefix}{name}_{j}"] = value[:, j]
    return cols


def prediction_frame(dataset: MultimodalDataset, scores: dict[str, dict[str, np.ndarray]]):
    """One row per sample: `<task>.<score>` columns (matrices spread over `_<j>` columns)."""
    cols: dict[str, np.ndarray] = {}
    for task, d in scores.items():
        cols |= score_columns(d, f"{task}.")
    return pd.DataFrame(cols, index=pd.Index(dataset.ids, name="id"))


def predict_run(
    run_dir: Path, data: str, *, output: Path | None = None, overwrite: bool = False
) -> Path:
    """Load the fitted model in `run_dir`, predict for `data`, write a CSV; return its path."""
    run_dir = Path(run_dir)
    fitted = FittedModel.load(run_dir)
    dataset = load_new_data(run_dir, data)
    missing = set(fitted.raw_specs) - set(dataset.specs)
    if missing:
        raise DataError(f"{data} lacks modalities the model was trained on: {sorted(missing)}")
    for m, spec in fitted.raw_specs.items():
        if dataset.specs[m].shape != spec.shape and spec.kind != "bag":
            raise DataError(
                f"modality '{m}' has shape {dataset.specs[m].shape} in {data}, "
                f"the model was trained on {spec.shape}"
            )
    dataset = dataset.replace(
        specs={m: dataset.specs[m] for m in fitted.raw_specs},
        sources={m: dataset.sources[m] for m in fitted.raw_specs},
    )
    frame = prediction_frame(dataset, fitted.predict(dataset))
    out = output or run_dir / f"predictions-{Path(data).stem}.csv"
    if out.exists() and not overwrite:
        raise ConfigError(f"{out} exists; pass --overwrite or choose another -o")
    atomic_write(out, lambda p: frame.to_csv(p))
    return out
