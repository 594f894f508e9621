"""A fitted run applied to new patients: read their data through the run's input contract,
predict, and (where labels are given) score.

    >>> from polyfuse.inference.predictor import Predictor
    >>> predictor = Predictor.load("runs/own-data/fit")              # doctest: +SKIP
    >>> predictor.predict("new_site/patients.csv")                   # doctest: +SKIP

Paths in a new table resolve against that table's folder (or `root`), never the training
data's; labels are optional; a long-table modality is given per call (`tables`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from polyfuse.data.contract import InputContract
from polyfuse.data.dataset import MultimodalDataset
from polyfuse.errors import ConfigError, DataError
from polyfuse.training.fit import FittedModel
from polyfuse.training.stack import FittedStack, load_fitted

DataLike = str | Path | pd.DataFrame | MultimodalDataset
"""New patients: a manifest table (CSV/TSV/Parquet path or a DataFrame), a MuData/AnnData
file, a bundled cohort's name, or a dataset already read."""


class Predictor:
    """A fitted model (or stacked ensemble) and its input contract; loaded once, then applied
    to any new patients."""

    def __init__(self, fitted: FittedModel | FittedStack) -> None:
        self.fitted = fitted

    @classmethod
    def load(cls, run_dir: str | Path) -> Predictor:
        """Load a run directory written by `polyfuse fit` (safetensors, JSON, and a stack's
        floors as skops files: nothing is unpickled)."""
        return cls(load_fitted(Path(run_dir)))

    @property
    def contract(self) -> InputContract:
        return self.fitted.contract

    def read(
        self,
        data: DataLike,
        *,
        root: str | Path | None = None,
        tables: dict[str, str | Path] | None = None,
    ) -> MultimodalDataset:
        """New patients as a dataset conforming to the contract (see `DataLike`).

        `root`: the folder a table's file paths are relative to (default: the table's own
        folder; required for a DataFrame with file columns). `tables`: the long table of each
        sequence modality, e.g. `{"labs": "new_site/labs.csv"}`.
        """
        from polyfuse.data.manifest import TABLE_SUFFIXES, load_data, read_table
        from polyfuse.datasets import DATASETS

        contract = self.contract
        given = {m: Path(p).resolve() for m, p in (tables or {}).items()}
        if isinstance(data, MultimodalDataset):
            return contract.conform(data, data.name or "the dataset")
        if isinstance(data, pd.DataFrame):
            contract.require_table()
            if root is None and contract.layout().files:
                raise ConfigError(
                    "the model reads files (paths in a column); give root= (the folder the "
                    "table's paths are relative to)"
                )
            base = Path(root or ".").resolve()
            return contract.read_new(data, root=base, where="the table", tables=given)
        if isinstance(data, str) and data in DATASETS:
            return contract.conform(DATASETS[data].load(), data)
        path = Path(data).resolve()
        if not path.is_file():
            raise DataError(f"no such data file or dataset name: {data}")
        if path.suffix.lower() in (".h5mu", ".h5ad"):
            return contract.conform(load_data(contract.mudata_config(path)), path.name)
        if path.suffix.lower() not in TABLE_SUFFIXES:
            raise ConfigError(
                f"{path.name}: give a manifest table ({', '.join(TABLE_SUFFIXES)}), a .h5mu/.h5ad "
                f"file or a dataset name ({', '.join(DATASETS)})"
            )
        contract.require_table()
        frame = read_table(path, id_column=contract.source["id_column"], what="table")
        base = Path(root).resolve() if root is not None else path.parent
        return contract.read_new(frame, root=base, where=path.name, tables=given)

    def predict(self, data: DataLike, **read_options) -> pd.DataFrame:
        """One row per patient, indexed by id in input order: `<task>.<score>` columns
        (`InputContract.score_columns`: probabilities, risk, survival at named times)."""
        dataset = data if isinstance(data, MultimodalDataset) else self.read(data, **read_options)
        scores = self.fitted.predict(dataset)
        cols: dict[str, np.ndarray] = {}
        for task, d in scores.items():
            cols |= self.contract.score_columns(task, d)
        index = pd.Index(dataset.ids, name=self.contract.source.get("id_column", "id"))
        return pd.DataFrame(cols, index=index)

    def score(self, data: DataLike, **read_options) -> pd.DataFrame:
        """Metrics of every task with labels among the new patients (`task`, `metric`, `value`,
        `n`); censoring weights (Uno's c, IBS) come from the new patients themselves."""
        dataset = data if isinstance(data, MultimodalDataset) else self.read(data, **read_options)
        scores = self.fitted.predict(dataset)
        rows = []
        for task, obj in self.fitted.objectives.items():
            y = dataset.targets[task]
            n = int((~np.isnan(y.reshape(len(y), -1)).any(1)).sum())
            if n == 0:
                continue
            for metric, value in obj.metrics(scores[task], y, y).items():
                rows.append(dict(task=task, metric=metric, value=value, n=n))
        return pd.DataFrame(rows, columns=["task", "metric", "value", "n"])


def predict_run(
    run_dir: Path,
    data: str,
    *,
    output: Path | None = None,
    overwrite: bool = False,
    root: Path | None = None,
    tables: dict[str, Path] | None = None,
) -> tuple[Path, pd.DataFrame]:
    """`polyfuse predict`: predictions for `data` as a CSV (default in `run_dir`); returns its
    path and the metrics of the tasks whose labels `data` holds (empty when none)."""
    from polyfuse.io import atomic_write

    out = output or Path(run_dir) / f"predictions-{Path(data).stem}.csv"
    if out.exists() and not overwrite:
        raise ConfigError(f"{out} exists; pass --overwrite or choose another -o")
    predictor = Predictor.load(run_dir)
    dataset = predictor.read(data, root=root, tables=tables)
    frame = predictor.predict(dataset)
    atomic_write(out, lambda p: frame.to_csv(p))
    return out, predictor.score(dataset)
