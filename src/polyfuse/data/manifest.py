"""The user's data → a `MultimodalDataset`, with every input problem found before training.

Two kinds of source are read:

* a manifest table (CSV, TSV or Parquet; one row per sample) whose modalities are declared in
  the config: feature columns (listed or by prefix), a column of file paths relative to a data
  root (images, patch-feature bags, text reports, ``.npy`` vectors), a column of inline text, or
  a separate long-format table of a time series;
* a MuData ``.h5mu`` file or an AnnData ``.h5ad`` file (`polyfuse.data.omics`).

This module reads the tables and assembles the dataset; the steps live beside it, each
reporting a bad cell once, with the file, column, sample id and modality at fault, instead of
as a shape error deep inside a model: `columns` (the config against the table's columns),
`modalities` (each modality's cells and files), `targets` (the labels) and `checks` (what
every dataset must pass).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from polyfuse.config import DataConfig, ModalityConfig, TaskConfig
from polyfuse.data.cells import cell_label, first_few
from polyfuse.data.checks import check_dataset
from polyfuse.data.columns import resolve_columns
from polyfuse.data.dataset import MultimodalDataset, Source
from polyfuse.data.embedded import (
    check_encoders,
    embed_modality,
    embed_slides,
    slide_paths,
    with_backbone,
)
from polyfuse.data.modalities import (
    file_modality,
    sequence_modality,
    tabular_modality,
    text_modality,
)
from polyfuse.data.omics import load_omics
from polyfuse.data.specs import ModalitySpec
from polyfuse.data.targets import load_targets
from polyfuse.errors import ConfigError, DataError, did_you_mean

__all__ = ["TABLE_SUFFIXES", "load_data", "load_frame", "read_table"]

TABLE_SUFFIXES: tuple[str, ...] = (".csv", ".tsv", ".parquet", ".pq")
"""Extensions of manifest and sequence tables."""


def load_data(config: DataConfig) -> MultimodalDataset:
    """Read and validate the user's data (a manifest table or a MuData/AnnData file).

    Paths in `config` must already be absolute (`polyfuse.config.load_config` does that).
    Raises `ConfigError` for a config that does not fit the data (unknown column, wrong kind for
    a source) and `DataError` for bad data; both name what is at fault.
    """
    if config.dataset is not None:
        raise ConfigError(
            f"data.dataset '{config.dataset}' is a bundled cohort; load it with "
            "polyfuse.datasets.load, not load_data"
        )
    if config.table is not None:
        dataset = _load_manifest(config, config.table)
        source = config.table.name
    elif config.mudata is not None:
        dataset = load_omics(config, config.mudata)
        source = config.mudata.name
    else:  # the config validator forbids this; kept for configs built with model_construct
        raise ConfigError("data: give one of dataset, table, mudata")
    check_dataset(dataset, source)
    return dataset


def read_table(path: Path, *, id_column: str | None = None, what: str = "table") -> pd.DataFrame:
    """Read a CSV/TSV/Parquet table with string column names; `id_column` is read as text.

    Ids are read as text so that '007' stays '007' instead of becoming the number 7.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in TABLE_SUFFIXES:
        raise ConfigError(
            f"{what} {path}: unknown table format '{suffix or '(none)'}'; "
            f"use one of {', '.join(TABLE_SUFFIXES)}"
        )
    if not path.is_file():
        raise DataError(f"{what} not found: {path}; check the path in the config")
    dtype = {id_column: str} if id_column else None
    try:
        header = _raw_header(path, suffix)
    except Exception as exc:  # pandas/pyarrow raise many types for corrupt files
        raise _unreadable(path, what, exc) from exc
    _refuse_duplicate_columns(header, path.name)  # before pyarrow fails on them obscurely
    try:
        if suffix in (".csv", ".tsv"):
            frame = pd.read_csv(path, sep="\t" if suffix == ".tsv" else ",", dtype=dtype)
        else:
            frame = pd.read_parquet(path)
    except Exception as exc:
        raise _unreadable(path, what, exc) from exc
    frame.columns = [str(c) for c in frame.columns]
    return frame.reset_index(drop=True)


def _unreadable(path: Path, what: str, exc: Exception) -> DataError:
    return DataError(
        f"{path}: cannot read the {what} ({type(exc).__name__}: {exc}); "
        f"is it a valid {path.suffix.lower().lstrip('.')} file?"
    )


def _raw_header(path: Path, suffix: str) -> list[str]:
    """The column names as written in the file: pandas renames a repeated CSV name ('a' →
    'a.1'), which would silently make two columns of one."""
    if suffix in (".csv", ".tsv"):
        sep = "\t" if suffix == ".tsv" else ","
        first = pd.read_csv(path, sep=sep, header=None, nrows=1, dtype=str, keep_default_na=False)
        return ["" if pd.isna(v) else str(v) for v in first.iloc[0]] if len(first) else []
    import pyarrow.parquet as pq

    return [str(c) for c in pq.read_schema(path).names if not c.startswith("__index_level_")]


def _refuse_duplicate_columns(columns: Iterable[str], where: str) -> None:
    dups = sorted({c for c, n in Counter(str(c) for c in columns).items() if n > 1 and c})
    if dups:
        raise DataError(
            f"{where}: duplicate column name(s) {first_few(dups)}; every column needs its own "
            "name (rename or remove the copies)"
        )


def _load_manifest(config: DataConfig, path: Path) -> MultimodalDataset:
    """Manifest table + declared modalities and tasks → dataset."""
    frame = read_table(path, id_column=config.id_column, what="manifest table")
    if frame.empty:
        raise DataError(f"{path}: the manifest table has no rows")
    root = config.root if config.root is not None else path.parent
    return load_frame(
        frame,
        config.modalities,
        config.tasks,
        id_column=config.id_column,
        root=root,
        where=path.name,
        name=path.stem,
    )


def load_frame(
    frame: pd.DataFrame,
    modalities: dict[str, ModalityConfig],
    tasks: dict[str, TaskConfig],
    *,
    id_column: str,
    root: Path,
    where: str,
    name: str = "",
    levels: dict[str, dict[str, list[str]]] | None = None,
    tables: dict[str, Path | pd.DataFrame] | None = None,
) -> MultimodalDataset:
    """A manifest already in memory (one row per sample) → dataset, with every check.

    Bundled cohorts use this too, so they pass exactly the validation users' tables pass.
    `levels` fixes the categories of categorical columns (modality → column → levels, as a
    fitted model saw them) instead of taking them from `frame`; `tables` gives sequence
    modalities' long tables (files, or frames already in memory) instead of the configured
    ones.
    """
    _refuse_duplicate_columns(frame.columns, where)
    ids = _sample_ids(frame, id_column, where)
    columns = resolve_columns(modalities, tasks, id_column, frame, where)  # before any data
    check_encoders(modalities)
    task_specs, targets = load_targets(tasks, frame, ids, where)
    specs: dict[str, ModalitySpec] = {}
    sources: dict[str, Source] = {}
    slides: dict[str, list[Path | None]] = {}  # whole slides: checked now, embedded last
    # Cheap modalities first, so a typo in a cell is reported before thousands of files are read.
    for m in sorted(modalities, key=lambda m: modalities[m].path_column is not None):
        mod = modalities[m]
        if mod.kind == "bag" and mod.encoder is not None:
            slides[m] = slide_paths(m, mod, frame, ids, root)
        elif mod.path_column is not None:
            specs[m], sources[m] = file_modality(m, mod, frame, ids, root, where)
        elif mod.text_column is not None:
            specs[m], sources[m] = text_modality(m, mod, frame)
        elif mod.table is not None:
            given = (tables or {}).get(m, mod.table)
            if isinstance(given, pd.DataFrame):  # a bundled cohort's table, already in memory
                _refuse_duplicate_columns(given.columns, f"{where}: long table of '{m}'")
                table, label = given, f"{where}: long table of '{m}'"
            else:
                path = Path(given)
                what = f"sequence table of modality '{m}'"
                table, label = read_table(path, id_column=id_column, what=what), path.name
            specs[m], sources[m] = sequence_modality(m, mod, table, ids, id_column, label)
        else:
            fixed = (levels or {}).get(m)
            specs[m], sources[m] = tabular_modality(m, mod, frame, columns[m], ids, where, fixed)
    for m, mod in modalities.items():  # encoders run once every cell and file was checked
        if mod.encoder is None:
            continue
        if m in slides:
            specs[m], sources[m] = embed_slides(m, mod.encoder, slides[m], ids)
        elif mod.encoder.trainable:
            specs[m] = with_backbone(specs[m], mod.encoder)
        else:
            specs[m], sources[m] = embed_modality(m, mod.encoder, specs[m], sources[m], ids, where)
    specs = {m: specs[m] for m in modalities}  # the config's order
    sources = {m: sources[m] for m in modalities}
    return MultimodalDataset(ids, specs, sources, task_specs, targets, name=name)


def _sample_ids(frame: pd.DataFrame, id_column: str, where: str) -> list[str]:
    """Ids as strings; missing or duplicate ids are errors (a sample must be one row)."""
    if id_column not in frame.columns:
        raise ConfigError(
            f"{where}: id column '{id_column}' not found{did_you_mean(id_column, frame.columns)}; "
            f"set data.id_column to the column of sample ids (columns: {first_few(frame.columns)})"
        )
    ids = [cell_label(v) for v in frame[id_column]]
    missing = [i for i, v in enumerate(ids) if v is None]
    if missing:
        rows = first_few([str(i + 1) for i in missing], quote=False)
        raise DataError(
            f"{where}: {len(missing)} row(s) have no id in column '{id_column}' (data rows "
            f"{rows}); give every sample an id"
        )
    counts = Counter(ids)
    dups = [f"'{i}' ×{n}" for i, n in counts.items() if n > 1]
    if dups:
        raise DataError(
            f"{where}: {len(dups)} duplicate sample id(s) in column '{id_column}': "
            f"{first_few(dups, quote=False)}; each sample must be exactly one row"
        )
    return [str(v) for v in ids]
