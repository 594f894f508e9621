"""The user's data → a `MultimodalDataset`, with every input problem found before training.

Two kinds of source are read:

* a manifest table (CSV, TSV or Parquet; one row per sample) whose modalities are declared in
  the config: feature columns (listed or by prefix), a column of file paths relative to a data
  root (images, patch-feature bags, text reports, ``.npy`` vectors), a column of inline text, or
  a separate long-format table of a time series;
* a MuData ``.h5mu`` file (each mod a tabular modality, targets in ``obs``) or an AnnData
  ``.h5ad`` file (one tabular modality named after the file).

All validation of user data lives here, so that a bad cell is reported once, with the file,
column, sample id and modality at fault, instead of as a shape error deep inside a model.
Rules worth knowing:

* NaN in a tabular feature is allowed (imputed later, fitted on training folds only), but a
  sample whose features of one modality are *all* NaN is marked absent for that modality: it
  carries no information, and "absent" is what every model knows how to handle.
* An empty cell in a path or text column marks that modality absent for the sample.
* Files are checked eagerly (each is read once, which also warms the readers' cache) and then
  read lazily again when a batch needs them.
* NaN in a target means "unknown" (that sample does not supervise that task).
"""

from __future__ import annotations

import contextlib
import warnings
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from polyfuse.config import DataConfig, ModalityConfig, TaskConfig
from polyfuse.data.dataset import ArraySource, FileSource, ListSource, MultimodalDataset, Source
from polyfuse.data.readers import read_file, resolve_path
from polyfuse.data.specs import ModalitySpec, TaskSpec
from polyfuse.errors import ConfigError, DataError, DataWarning, did_you_mean, require

__all__ = ["TABLE_SUFFIXES", "check_dataset", "load_data", "load_frame", "read_table"]

TABLE_SUFFIXES: tuple[str, ...] = (".csv", ".tsv", ".parquet", ".pq")
"""Extensions of manifest and sequence tables."""

_SHOWN = 5  # how many example ids or values a message lists


# ------------------------------------------------------------------------------ public API


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
        dataset = _load_omics(config, config.mudata)
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
            f"{where}: duplicate column name(s) {_few(dups)}; every column needs its own name "
            "(rename or remove the copies)"
        )


def check_dataset(dataset: MultimodalDataset, source: str, *, new_samples: bool = False) -> None:
    """Checks every dataset must pass before training, whichever loader built it.

    Used by `load_data` and by the bundled cohorts: a modality nobody has, a sample with no
    modality, ±inf features and impossible survival or class targets would otherwise surface
    as NaN losses or silent garbage many minutes into a run. `new_samples` (patients to
    predict for) allows a modality nobody has: one patient may well lack one.
    """
    ids = dataset.ids
    if len(dataset) == 0:
        raise DataError(f"{source}: no samples")
    if not dataset.specs:
        raise DataError(f"{source}: no modalities; declare at least one")
    for m, src in dataset.sources.items():
        if not src.present.any() and not new_samples:
            raise DataError(
                f"{source}: modality '{m}' is absent in every sample; check its columns or "
                "files, or remove it from the config"
            )
    presence = np.stack([src.present for src in dataset.sources.values()], axis=1)
    empty = np.flatnonzero(~presence.any(axis=1))
    if len(empty):
        raise DataError(
            f"{source}: {len(empty)} sample(s) have no modality at all: "
            f"{_few([ids[i] for i in empty])}; give them data or drop them"
        )
    for m, src in dataset.sources.items():
        if isinstance(src, ArraySource):
            _check_finite(m, dataset.specs[m], src, ids, source)
    for t, spec in dataset.tasks.items():
        _check_target(t, spec, dataset.targets[t], ids, source)


# ------------------------------------------------------------------------------ manifest


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
    tables: dict[str, Path] | None = None,
) -> MultimodalDataset:
    """A manifest already in memory (one row per sample) → dataset, with every check.

    Bundled cohorts use this too, so they pass exactly the validation users' tables pass.
    `levels` fixes the categories of categorical columns (modality → column → levels, as a
    fitted model saw them) instead of taking them from `frame`; `tables` gives sequence
    modalities' long tables instead of the configured ones.
    """
    _refuse_duplicate_columns(frame.columns, where)
    ids = _sample_ids(frame, id_column, where)
    columns = _resolve_columns(
        modalities, tasks, id_column, frame, where
    )  # all ConfigErrors before reading data

    task_specs, targets = _load_tasks(tasks, frame, ids, where)
    specs: dict[str, ModalitySpec] = {}
    sources: dict[str, Source] = {}
    # Cheap modalities first, so a typo in a cell is reported before thousands of files are read.
    order = sorted(modalities, key=lambda m: modalities[m].path_column is not None)
    for m in order:
        mod = modalities[m]
        if mod.path_column is not None:
            specs[m], sources[m] = _file_modality(m, mod, frame, ids, root, where)
        elif mod.text_column is not None:
            specs[m], sources[m] = _text_modality(m, mod, frame)
        elif mod.table is not None:
            table = (tables or {}).get(m, mod.table)
            specs[m], sources[m] = _sequence_modality(m, mod, Path(table), ids, id_column)
        else:
            fixed = (levels or {}).get(m)
            specs[m], sources[m] = _tabular_modality(m, mod, frame, columns[m], ids, where, fixed)
    specs = {m: specs[m] for m in modalities}  # the config's order
    sources = {m: sources[m] for m in modalities}
    return MultimodalDataset(ids, specs, sources, task_specs, targets, name=name)


def _sample_ids(frame: pd.DataFrame, id_column: str, where: str) -> list[str]:
    """Ids as strings; missing or duplicate ids are errors (a sample must be one row)."""
    if id_column not in frame.columns:
        raise ConfigError(
            f"{where}: id column '{id_column}' not found{did_you_mean(id_column, frame.columns)}; "
            f"set data.id_column to the column of sample ids (columns: {_few(frame.columns)})"
        )
    ids = [_label(v) for v in frame[id_column]]
    missing = [i for i, v in enumerate(ids) if v is None]
    if missing:
        rows = _few([str(i + 1) for i in missing], quote=False)
        raise DataError(
            f"{where}: {len(missing)} row(s) have no id in column '{id_column}' (data rows "
            f"{rows}); give every sample an id"
        )
    counts = Counter(ids)
    dups = [f"'{i}' ×{n}" for i, n in counts.items() if n > 1]
    if dups:
        raise DataError(
            f"{where}: {len(dups)} duplicate sample id(s) in column '{id_column}': "
            f"{_few(dups, quote=False)}; each sample must be exactly one row"
        )
    return [str(v) for v in ids]


def _resolve_columns(
    modalities: dict[str, ModalityConfig],
    tasks: dict[str, TaskConfig],
    id_column: str,
    frame: pd.DataFrame,
    where: str,
) -> dict[str, list[str]]:
    """Check every column the config names exists and suits its modality kind.

    Returns the feature columns of each tabular modality (prefixes expanded, categorical
    columns included).
    """
    have = list(frame.columns)
    out: dict[str, list[str]] = {}
    for name, mod in modalities.items():
        owner = f"modality '{name}'"
        _check_source_kind(name, mod)
        if mod.table is not None:  # its columns are channels of its own table, checked there
            out[name] = []
            continue
        if mod.categorical and mod.kind != "tabular":
            raise ConfigError(f"{owner}: categorical applies to tabular modalities only")
        if mod.columns is not None:
            cols = list(mod.columns)
        elif mod.prefix is not None:
            cols = [c for c in have if c.startswith(mod.prefix) and c != id_column]
            if not cols:
                raise ConfigError(
                    f"{owner}: no column of {where} starts with prefix '{mod.prefix}'; fix "
                    f"data.modalities.{name}.prefix (columns: {_few(have)})"
                )
        elif mod.path_column is not None:
            cols = [mod.path_column]
        elif mod.text_column is not None:
            cols = [mod.text_column]
        else:
            cols = []
        cols += [c for c in mod.categorical if c not in cols]  # categorical belong to it
        for c in mod.categorical:
            clash = [o for o in cols if o != c and o.startswith(f"{c}=")]
            if clash:
                raise ConfigError(
                    f"{owner}: column '{clash[0]}' looks like a one-hot column of categorical "
                    f"column '{c}' ('{c}=<level>'); rename one of them"
                )
        if not cols:
            raise ConfigError(
                f"{owner}: no feature columns; list at least one in data.modalities.{name}.columns"
            )
        _require_columns(cols, have, owner, where)
        out[name] = cols
    for name, task in tasks.items():
        _require_columns(_task_columns(task), have, f"task '{name}'", where)
    return out


def _check_source_kind(name: str, mod: ModalityConfig) -> None:
    """Which sources can hold which kind (e.g. an image cannot come from feature columns)."""
    allowed = {
        "columns": ("tabular",),
        "prefix": ("tabular",),
        "path_column": ("image", "bag", "text", "tabular"),
        "text_column": ("text",),
        "table": ("sequence",),
    }
    if mod.kind == "sequence" and mod.table is None:
        raise ConfigError(
            f"modality '{name}': a sequence needs table (a long table of id, time, channels)"
        )
    for key, kinds in allowed.items():
        if key == "columns" and mod.table is not None:
            continue  # channels of the sequence table
        if getattr(mod, key) is not None and mod.kind not in kinds:
            raise ConfigError(
                f"modality '{name}': kind '{mod.kind}' cannot come from {key}; "
                f"{key} gives kind {' or '.join(kinds)}"
            )


def _require_columns(cols: Iterable[str], have: Sequence[str], owner: str, where: str) -> None:
    for col in cols:
        if col not in have:
            raise ConfigError(
                f"{owner}: column '{col}' is not in {where}{did_you_mean(col, have)}; "
                "fix the column name in the config"
            )


def _tabular_modality(
    name: str,
    mod: ModalityConfig,
    frame: pd.DataFrame,
    cols: list[str],
    ids: list[str],
    where: str,
    levels: dict[str, list[str]] | None = None,
) -> tuple[ModalitySpec, ArraySource]:
    """Feature columns → (N, F) float32; categorical columns one-hot, NaN kept."""
    owner = f"modality '{name}'"
    blocks: list[np.ndarray] = []
    names: list[str] = []
    for col in cols:
        if col in mod.categorical:
            fixed = None if levels is None else levels.get(col, [])
            block, block_names = _one_hot(frame[col], col, fixed, mod.unknown_category, ids, where)
            blocks.append(block)
            names += block_names
        else:
            values = _numeric(frame[col], col, ids, where, owner, tabular=True)
            _refuse_inf(values, col, ids, where, owner)
            blocks.append(values[:, None])
            names.append(col)
    values = np.concatenate(blocks, axis=1)
    return _array_modality(name, values, names, ids, where)


def _array_modality(
    name: str, values: np.ndarray, names: Sequence[str], ids: list[str], where: str
) -> tuple[ModalitySpec, ArraySource]:
    """(N, F) float64 with NaN → spec and source; an all-NaN row counts as absent."""
    with np.errstate(over="ignore"):
        values32 = values.astype(np.float32)
    overflow = np.isinf(values32) & ~np.isinf(values)
    if overflow.any():
        i, j = np.argwhere(overflow)[0]
        raise DataError(
            f"{where}: modality '{name}', sample '{ids[i]}', feature '{names[j]}': "
            f"{values[i, j]:g} is beyond float32 range; rescale the feature"
        )
    present = ~np.isnan(values32).all(axis=1)
    spec = ModalitySpec(name, "tabular", (values32.shape[1],), feature_names=tuple(names))
    return spec, ArraySource(values32, present)


def _one_hot(
    series: pd.Series,
    column: str,
    levels: list[str] | None = None,
    unknown: str = "error",
    ids: Sequence[str] = (),
    where: str = "",
) -> tuple[np.ndarray, list[str]]:
    """One column per category, named 'column=value'; a missing value is NaN in all of them.

    `levels` fixes the categories (a fitted model's): a value outside them is an error naming
    the sample, or with `unknown="missing"` a missing value and a warning naming it.
    """
    labels = pd.Series([_label(v) for v in series], dtype=object)
    if levels is None:
        categories = sorted({v for v in labels if v is not None}, key=_class_key)
    else:
        categories = list(levels)
        known = set(categories)
        unseen = [i for i, v in enumerate(labels) if v is not None and v not in known]
        if unseen:
            shown = _few([f"{ids[i]}={labels[i]}" for i in unseen])
            message = (
                f"{where}: column '{column}' has level(s) the model was not trained on, for "
                f"{len(unseen)} sample(s): {shown}; trained levels: {_few(categories)}"
            )
            if unknown != "missing":
                raise DataError(
                    message + "; fix the values, or set unknown_category: missing for the "
                    "modality to impute them"
                )
            warnings.warn(message + "; imputed as missing", DataWarning, stacklevel=2)
            labels[unseen] = None
    dummies = pd.get_dummies(pd.Categorical(labels, categories=categories), dtype=float)
    block = dummies.to_numpy(dtype=np.float64)
    block[labels.isna().to_numpy()] = np.nan
    return block, [f"{column}={c}" for c in categories]


def _text_modality(
    name: str, mod: ModalityConfig, frame: pd.DataFrame
) -> tuple[ModalitySpec, ListSource]:
    """Inline text; an empty cell marks the report absent."""
    texts = [None if _label(v) is None else str(v) for v in frame[mod.text_column]]
    spec = ModalitySpec(name, "text", (), vocab_size=mod.vocab_size)
    return spec, ListSource(texts)


def _file_modality(
    name: str, mod: ModalityConfig, frame: pd.DataFrame, ids: list[str], root: Path, where: str
) -> tuple[ModalitySpec, Source]:
    """A column of file paths: every file resolved and read once now, then read lazily."""
    column = mod.path_column
    if not Path(root).is_dir():
        raise ConfigError(f"data root {root} is not a folder; fix data.root")
    paths: list[Path | None] = []
    shapes: dict[int, tuple[int, ...]] = {}  # only shapes are kept: volumes may be large
    vectors: dict[int, np.ndarray] = {}
    for i, cell in enumerate(frame[column]):
        if _label(cell) is None:
            paths.append(None)
            continue
        try:
            path = resolve_path(root, str(cell).strip(), sample_id=ids[i], column=column)
            value = read_file(path, mod.kind)
        except DataError as exc:
            raise DataError(f"modality '{name}', {_with_sample(str(exc), ids[i])}") from exc
        paths.append(path)
        if isinstance(value, np.ndarray):
            # images share their whole shape; bags only their width (their length varies)
            shapes[i] = value.shape[1:] if mod.kind == "bag" else value.shape
            if mod.kind == "tabular":
                vectors[i] = value
    if mod.kind == "text" or not shapes:  # no file at all: check_dataset names the modality
        shape = {"image": (1, 1, 1), "bag": (1,), "tabular": (1,), "text": ()}[mod.kind]
        spec = ModalitySpec(name, mod.kind, shape, vocab_size=mod.vocab_size)
        return spec, FileSource(paths, mod.kind)
    shape = _common_shape(name, mod.kind, shapes, ids, paths)
    if mod.kind == "tabular":  # small vectors: keep them in memory like tabular columns
        matrix = np.full((len(ids), shape[0]), np.nan)
        for i, v in vectors.items():
            matrix[i] = v
        names = [f"{column}[{j}]" for j in range(shape[0])]
        return _array_modality(name, matrix, names, ids, where)
    return ModalitySpec(name, mod.kind, tuple(shape)), FileSource(paths, mod.kind)


def _with_sample(message: str, sample: str) -> str:
    """Prefix a reader's message with the sample unless it already names it."""
    return message if message.startswith(f"sample '{sample}'") else f"sample '{sample}': {message}"


def _common_shape(
    name: str,
    kind: str,
    shapes: dict[int, tuple[int, ...]],
    ids: list[str],
    paths: list[Path | None],
) -> tuple[int, ...]:
    """The majority shape; a sample that differs is named with its file, shape and the majority."""
    counts = Counter(shapes.values())
    majority, n = counts.most_common(1)[0]
    for i, shape in shapes.items():
        if shape != majority:
            what = {
                "image": "an image of shape",
                "bag": "a bag of instance width",
                "tabular": "a vector of length",
            }[kind]
            raise DataError(
                f"modality '{name}': sample '{ids[i]}' ({paths[i]}) has {what} "
                f"{shape}, but {n} of {len(shapes)} have {majority}; all {kind}s of a modality "
                "must agree (resample, re-extract or convert the odd ones)"
            )
    return majority


def _sequence_modality(
    name: str, mod: ModalityConfig, path: Path, ids: list[str], id_column: str
) -> tuple[ModalitySpec, ListSource]:
    """A long table (id, time, channels...) → per sample ((T_i, C) values, (T_i,) times).

    Rows of patients the manifest does not list are skipped (a lab export usually holds more
    patients than one study), with a warning that counts them.
    """
    where = path.name
    owner = f"modality '{name}'"
    table = read_table(path, id_column=id_column, what=f"sequence table of modality '{name}'")
    have = list(table.columns)
    for col, key in ((id_column, "data.id_column"), (mod.time_column, "time_column")):
        if col not in have:
            raise ConfigError(
                f"{owner}: column '{col}' is not in {where}{did_you_mean(col, have)}; "
                f"set {key} (columns: {_few(have)})"
            )
    if mod.columns:
        channels = list(mod.columns)
        _require_columns(channels, have, owner, where)
    else:
        channels = [
            c for c in have if c not in (id_column, mod.time_column) and _holds_numbers(table[c])
        ]
        if not channels:
            raise ConfigError(f"{owner}: {where} has no numeric channel columns")
    row_ids = [_label(v) for v in table[id_column]]
    no_id = [i for i, v in enumerate(row_ids) if v is None]
    if no_id:
        raise DataError(
            f"{where}: {len(no_id)} row(s) have no id in column '{id_column}' (data rows "
            f"{_few([str(i + 1) for i in no_id], quote=False)}); give every row a sample id"
        )
    position = {s: i for i, s in enumerate(ids)}
    unknown = sorted({s for s in row_ids if s not in position})
    if unknown:
        warnings.warn(
            f"{where}: skipped the rows of {len(unknown)} patient(s) the manifest does not "
            f"list ({_few(unknown)})",
            DataWarning,
            stacklevel=2,
        )
        keep = np.array([s in position for s in row_ids])
        table = table[keep].reset_index(drop=True)
        row_ids = [s for s in row_ids if s in position]
    row_str = [str(s) for s in row_ids]
    times = _numeric(table[mod.time_column], mod.time_column, row_str, where, owner)
    _refuse_inf(times, mod.time_column, row_str, where, owner)
    no_time = np.flatnonzero(np.isnan(times))
    if len(no_time):
        raise DataError(
            f"{where}: {len(no_time)} row(s) have no time in column '{mod.time_column}' "
            f"(samples {_few(sorted({row_str[i] for i in no_time}))}); give every row a time"
        )
    values = np.stack([_numeric(table[c], c, row_str, where, owner) for c in channels], axis=1)
    for j, c in enumerate(channels):
        _refuse_inf(values[:, j], c, row_str, where, owner)
    sample = np.array([position[s] for s in row_str], dtype=np.int64)
    order = np.lexsort((times, sample))  # by sample, then time; stable for equal times
    items: list[Any] = [None] * len(ids)
    bounds = np.flatnonzero(np.diff(sample[order])) + 1
    for rows in np.split(order, bounds):
        if len(rows):
            items[sample[rows[0]]] = (
                values[rows].astype(np.float32),
                times[rows].astype(np.float32),
            )
    spec = ModalitySpec(name, "sequence", (len(channels),), feature_names=tuple(channels))
    return spec, ListSource(items)


# ------------------------------------------------------------------------------ MuData / AnnData


def _load_omics(config: DataConfig, path: Path) -> MultimodalDataset:
    """MuData (.h5mu: each mod a modality) or AnnData (.h5ad: one modality) → dataset."""
    suffix = path.suffix.lower()
    if suffix not in (".h5mu", ".h5ad"):
        raise ConfigError(
            f"data.mudata {path}: unknown format '{suffix or '(none)'}'; use .h5mu or .h5ad"
        )
    if not path.is_file():
        raise DataError(f"omics file not found: {path}; check data.mudata in the config")
    reader = ("mudata", "read_h5mu") if suffix == ".h5mu" else ("anndata", "read_h5ad")
    module = require(reader[0], "omics")
    try:
        with _mudata_options(module):
            data = getattr(module, reader[1])(path)
    except Exception as exc:  # h5py/anndata raise many types for corrupt files
        raise DataError(
            f"{path}: cannot read the {suffix} file ({type(exc).__name__}: {exc})"
        ) from exc
    where = path.name
    if suffix == ".h5mu":
        available = {str(k): v for k, v in data.mod.items()}
        selected = dict(config.modalities) or dict.fromkeys(available)
        for name in selected:
            if name not in available:
                raise ConfigError(
                    f"modality '{name}' is not a mod of {where}{did_you_mean(name, available)}; "
                    f"it has {_few(available)}"
                )
        mods = {name: (available[name], selected[name]) for name in selected}
    else:
        if len(config.modalities) > 1:
            raise ConfigError(
                f"{where} is an AnnData file with one modality, but the config declares "
                f"{len(config.modalities)}; use a .h5mu file for several"
            )
        name, mod = next(iter(config.modalities.items()), (path.stem, None))
        mods = {name: (data, mod)}

    ids = [str(v) for v in data.obs_names]
    counts = Counter(ids)
    dups = [f"'{i}' ×{n}" for i, n in counts.items() if n > 1]
    if dups:
        raise DataError(
            f"{where}: {len(dups)} duplicate sample id(s) in obs_names: "
            f"{_few(dups, quote=False)}; each sample must appear once"
        )
    obs = data.obs.reset_index(drop=True)
    obs.columns = [str(c) for c in obs.columns]
    for tname, task in config.tasks.items():
        _require_columns(_task_columns(task), list(obs.columns), f"task '{tname}'", f"{where} obs")
    tasks, targets = _load_tasks(config.tasks, obs, ids, where)

    specs: dict[str, ModalitySpec] = {}
    sources: dict[str, Source] = {}
    for name, (adata, mod) in mods.items():
        specs[name], sources[name] = _omics_modality(name, adata, mod, ids, where)
    return MultimodalDataset(ids, specs, sources, tasks, targets, name=path.stem)


def _mudata_options(module: Any) -> contextlib.AbstractContextManager[Any]:
    """Read the file's own obs, without pulling mod columns (mudata's future default; the old
    one warns on every read)."""
    try:
        return module.set_options(pull_on_update=False)
    except (AttributeError, KeyError, TypeError, ValueError):  # anndata, or another mudata
        return contextlib.nullcontext()


def _omics_modality(
    name: str, adata: Any, mod: ModalityConfig | None, ids: list[str], where: str
) -> tuple[ModalitySpec, ArraySource]:
    """One AnnData (a MuData mod) → (N, F) float32 over the dataset's samples."""
    owner = f"modality '{name}'"
    features = [str(v) for v in adata.var_names]
    columns = list(range(len(features)))
    if mod is not None:
        if mod.kind != "tabular":
            raise ConfigError(f"{owner}: a mod of {where} is tabular, not '{mod.kind}'")
        if mod.path_column or mod.text_column or mod.table or mod.categorical:
            raise ConfigError(
                f"{owner}: for a {Path(where).suffix} file give only kind and optionally "
                "columns or prefix (features to keep)"
            )
        if mod.columns:
            _require_columns(mod.columns, features, owner, f"{where} var_names")
            lookup = {f: j for j, f in enumerate(features)}
            columns = [lookup[c] for c in mod.columns]
        elif mod.prefix:
            columns = [j for j, f in enumerate(features) if f.startswith(mod.prefix)]
            if not columns:
                raise ConfigError(f"{owner}: no feature of {where} starts with '{mod.prefix}'")
    obs_names = [str(v) for v in adata.obs_names]
    position = {s: i for i, s in enumerate(ids)}
    unknown = [s for s in obs_names if s not in position]
    if unknown:
        raise DataError(
            f"{where}: {len(unknown)} sample(s) of mod '{name}' are not in the MuData obs: "
            f"{_few(unknown)}; update the MuData (mdata.update()) before saving"
        )
    dups = sorted({s for s, n in Counter(obs_names).items() if n > 1})
    if dups:
        raise DataError(f"{where}: mod '{name}' has duplicate obs names {_few(dups)}")
    matrix = adata.X
    if matrix is None:
        raise DataError(f"{where}: mod '{name}' has no X matrix")
    if hasattr(matrix, "toarray"):  # scipy sparse
        matrix = matrix.toarray()
    matrix = np.asarray(matrix)
    if matrix.dtype.kind not in "biuf":
        raise DataError(f"{where}: mod '{name}' X has dtype {matrix.dtype}; numbers expected")
    values = np.full((len(ids), len(columns)), np.nan)
    rows = np.array([position[s] for s in obs_names], dtype=np.int64)
    values[rows] = matrix[:, columns]
    return _array_modality(name, values, [features[j] for j in columns], ids, where)


# ------------------------------------------------------------------------------ tasks


def _task_columns(task: TaskConfig) -> list[str]:
    if task.type == "survival":
        return [task.time_column, task.event_column]
    if task.type == "multilabel":
        return list(task.columns or [])
    return [task.column]


def _load_tasks(
    tasks: dict[str, TaskConfig], frame: pd.DataFrame, ids: list[str], where: str
) -> tuple[dict[str, TaskSpec], dict[str, np.ndarray]]:
    """Each task's spec and float32 targets (NaN = unknown), in MultimodalDataset's layout."""
    specs: dict[str, TaskSpec] = {}
    targets: dict[str, np.ndarray] = {}
    for name, task in tasks.items():
        owner = f"task '{name}'"
        if task.type in ("binary", "multiclass"):
            y, classes = _class_target(name, task, frame[task.column], ids, where)
            specs[name] = TaskSpec(name, task.type, classes)
        elif task.type == "multilabel":
            y = np.stack([_binary_column(owner, frame[c], c, ids, where) for c in task.columns], 1)
            specs[name] = TaskSpec(name, "multilabel", tuple(task.columns))
        elif task.type == "regression":
            y = _numeric(frame[task.column], task.column, ids, where, owner)
            _refuse_inf(y, task.column, ids, where, owner)
            specs[name] = TaskSpec(name, "regression")
        else:
            y = _survival_target(owner, task, frame, ids, where)
            specs[name] = TaskSpec(
                name,
                "survival",
                survival_head=task.survival_head,
                n_bins=task.n_bins,
                time_unit=task.time_unit,
            )
        targets[name] = y.astype(np.float32)
    return specs, targets


def _class_target(
    name: str, task: TaskConfig, series: pd.Series, ids: list[str], where: str
) -> tuple[np.ndarray, tuple[str, ...]]:
    """Labels → class indices. Config `classes` fix the order; integer codes 0..K-1 (and
    True/False) are accepted as indices into them."""
    labels = [_label(v) for v in series]
    seen = sorted({v for v in labels if v is not None}, key=_class_key)
    if task.classes is not None:
        classes = tuple(task.classes)
        if task.type == "binary" and len(classes) != 2:
            raise ConfigError(f"task '{name}': a binary task needs 2 classes, got {list(classes)}")
    elif task.type == "binary" and set(seen) <= {"0", "1"}:
        classes = ("0", "1")
    elif task.type == "binary" and set(seen) <= {"False", "True"}:
        classes = ("False", "True")
    else:
        classes = tuple(seen)
        want = 2 if task.type == "binary" else "at least 2"
        if task.type == "binary" and len(classes) > 2:
            raise DataError(
                f"{where}: task '{name}': column '{task.column}' has {len(classes)} classes "
                f"({_few(classes)}); a binary task needs 2; use type multiclass"
            )
        if len(classes) < 2:
            raise DataError(
                f"{where}: task '{name}': column '{task.column}' has {len(classes)} class(es) "
                f"({_few(classes)}), needs {want}; fix the column or set classes in the config"
            )
    lookup = {c: k for k, c in enumerate(classes)}
    by_code = not all(v in lookup for v in seen) and all(
        _code(v) is not None and 0 <= _code(v) < len(classes) for v in seen
    )
    y = np.full(len(labels), np.nan)
    for i, v in enumerate(labels):
        if v is None:
            continue
        k = _code(v) if by_code else lookup.get(v)
        if k is None:
            raise DataError(
                f"{where}: task '{name}': sample '{ids[i]}' has class '{v}' in column "
                f"'{task.column}', not one of {list(classes)}; fix the value or add it to classes"
            )
        y[i] = k
    return y, classes


def _binary_column(
    owner: str, series: pd.Series, column: str, ids: list[str], where: str
) -> np.ndarray:
    """One multilabel column: 0/1 (or True/False), NaN for unknown."""
    y = np.full(len(series), np.nan)
    for i, v in enumerate(series):
        label = _label(v)
        if label is None:
            continue
        code = _code(label)
        if code not in (0, 1):
            raise DataError(
                f"{where}: {owner}: column '{column}' has value '{label}' for sample "
                f"'{ids[i]}'; a label column holds 0, 1 or an empty cell"
            )
        y[i] = code
    return y


def _survival_target(
    owner: str, task: TaskConfig, frame: pd.DataFrame, ids: list[str], where: str
) -> np.ndarray:
    """(N, 2) = (time > 0, event in {0, 1}); NaN in either makes both unknown."""
    time = _numeric(frame[task.time_column], task.time_column, ids, where, owner)
    _refuse_inf(time, task.time_column, ids, where, owner)
    bad = np.flatnonzero(time <= 0)
    if len(bad):
        raise DataError(
            f"{where}: {owner}: {len(bad)} sample(s) have time ≤ 0 in column "
            f"'{task.time_column}': {_few([f'{ids[i]}={time[i]:g}' for i in bad])}; survival "
            "times must be > 0 (leave the cell empty if unknown)"
        )
    event = np.full(len(ids), np.nan)
    for i, v in enumerate(frame[task.event_column]):
        label = _label(v)
        if label is None:
            continue
        code = _code(label)
        if code not in (0, 1):
            raise DataError(
                f"{where}: {owner}: sample '{ids[i]}' has event '{label}' in column "
                f"'{task.event_column}'; events must be 1 (event) or 0 (censored)"
            )
        event[i] = code
    unknown = np.isnan(time) | np.isnan(event)
    y = np.stack([time, event], axis=1)
    y[unknown] = np.nan
    return y


# ------------------------------------------------------------------------------ check_dataset


def _check_finite(m: str, spec: ModalitySpec, src: ArraySource, ids: list[str], where: str) -> None:
    inf = np.isinf(src.values)
    if not inf.any():
        return
    pos = np.argwhere(inf)
    i, rest = int(pos[0][0]), tuple(int(p) for p in pos[0][1:])
    if spec.feature_names and len(rest) == 1:
        feature = f"feature '{spec.feature_names[rest[0]]}'"
    else:
        feature = f"position {rest}"
    raise DataError(
        f"{where}: modality '{m}', sample '{ids[i]}', {feature} is ±inf "
        f"({len(pos)} such value(s)); replace with a finite value or leave it empty"
    )


def _check_target(t: str, spec: TaskSpec, y: np.ndarray, ids: list[str], where: str) -> None:
    """Targets a loss could not digest: impossible times, events or class indices."""
    if spec.type == "survival":
        time, event = y[:, 0], y[:, 1]
        bad = np.flatnonzero(time <= 0)
        if len(bad):
            raise DataError(
                f"{where}: task '{t}': {len(bad)} sample(s) have survival time ≤ 0: "
                f"{_few([ids[i] for i in bad])}; times must be > 0"
            )
        bad = np.flatnonzero(~np.isnan(event) & ~np.isin(event, (0, 1)))
        if len(bad):
            raise DataError(
                f"{where}: task '{t}': sample '{ids[bad[0]]}' has event {event[bad[0]]:g}; "
                "events must be 0 (censored) or 1"
            )
        return
    if spec.type == "regression":
        return
    n = len(spec.classes) if spec.type == "multiclass" else 2
    known = ~np.isnan(y)
    bad = known & ~np.isin(y, np.arange(n))
    if bad.any():
        i = int(np.argwhere(bad)[0][0])
        raise DataError(
            f"{where}: task '{t}': sample '{ids[i]}' has target {y[bad][0]:g}; "
            f"a {spec.type} target must be an integer in 0..{n - 1}"
        )


# ------------------------------------------------------------------------------ cell helpers


def _label(value: Any) -> str | None:
    """A cell as a class/id label: None when missing; 2.0 → '2'; True → 'True'; text stripped."""
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, bool | np.bool_):
        return str(bool(value))
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, float | np.floating):
        if np.isnan(value):
            return None
        return str(int(value)) if float(value).is_integer() else repr(float(value))
    text = str(value).strip()
    return text or None


def _code(label: str) -> int | None:
    """'0', '1', ... → the integer; 'True'/'False' → 1/0; otherwise None."""
    if label in ("True", "False"):
        return int(label == "True")
    # isdecimal, not isdigit: '²' is a digit to isdigit but not to int(), as is '--1' to lstrip
    return int(label) if label.removeprefix("-").isdecimal() else None


def _class_key(label: str) -> tuple[int, float, str]:
    """Sort numbers numerically ('2' before '10'), then text alphabetically."""
    try:
        return (0, float(label), label)
    except ValueError:
        return (1, 0.0, label)


def _numeric(
    series: pd.Series,
    column: str,
    ids: Sequence[str],
    where: str,
    owner: str,
    *,
    tabular: bool = False,
) -> np.ndarray:
    """A column as float64 (NaN where empty); a value that is not a number is an error."""
    if pd.api.types.is_datetime64_any_dtype(series) or pd.api.types.is_timedelta64_dtype(series):
        raise DataError(
            f"{where}: column '{column}' ({owner}) holds dates or durations; convert it to "
            "numbers (e.g. days since a reference date)"
        )
    if pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_complex_dtype(series):
        return series.to_numpy(dtype=np.float64, na_value=np.nan)
    cells = series.astype(object).map(lambda v: (v.strip() or None) if isinstance(v, str) else v)
    values = pd.to_numeric(cells, errors="coerce")
    bad = np.flatnonzero(values.isna().to_numpy() & cells.notna().to_numpy())
    if len(bad):
        i = int(bad[0])
        more = f" ({len(bad) - 1} more such cell(s))" if len(bad) > 1 else ""
        raise DataError(
            f"{where}: column '{column}' ({owner}) has a non-numeric value {cells.iloc[i]!r} "
            f"for sample '{ids[i]}'{more}; fix it, leave it empty if unknown"
            + (", or list the column under categorical" if tabular else "")
        )
    return values.to_numpy(dtype=np.float64, na_value=np.nan)


def _holds_numbers(series: pd.Series) -> bool:
    """Whether a column is a numeric channel: numeric dtype, or text of which some are numbers
    (a stray word among numbers is then reported; a column of only text is skipped)."""
    if pd.api.types.is_bool_dtype(series) or pd.api.types.is_numeric_dtype(series):
        return True
    if pd.api.types.is_datetime64_any_dtype(series):
        return False
    return bool(pd.to_numeric(series.astype(object), errors="coerce").notna().any())


def _refuse_inf(
    values: np.ndarray, column: str, ids: Sequence[str], where: str, owner: str
) -> None:
    bad = np.flatnonzero(np.isinf(values))
    if len(bad):
        i = int(bad[0])
        raise DataError(
            f"{where}: column '{column}' ({owner}) is {values[i]:+g} for sample '{ids[i]}'"
            f" ({len(bad)} such cell(s)); replace with a finite value or leave it empty"
        )
    # Every array is float32 downstream: a finite value beyond its range would become ±inf.
    with np.errstate(over="ignore"):
        bad = np.flatnonzero(np.isinf(values.astype(np.float32)))
    if len(bad):
        i = int(bad[0])
        raise DataError(
            f"{where}: column '{column}' ({owner}) is {values[i]:g} for sample '{ids[i]}'"
            f" ({len(bad)} such cell(s)), beyond float32 range (±3.4e38); rescale the column"
        )


def _few(items: Iterable[Any], *, quote: bool = True) -> str:
    """'a', 'b', 'c' and 4 more — enough examples to find the problem, never a wall of text."""
    items = list(items)
    shown = [f"'{x}'" if quote else str(x) for x in items[:_SHOWN]]
    extra = f" and {len(items) - _SHOWN} more" if len(items) > _SHOWN else ""
    return ", ".join(shown) + extra
