"""One declared modality of a manifest → its spec and source, every cell and file checked.

Each builder takes the columns (or the long table) already read and returns a `ModalitySpec`
and a `Source`: feature columns (numbers, categorical columns one-hot), inline text, a column of
file paths, or a long table of a time series. Rules worth knowing:

* NaN in a tabular feature is allowed (imputed later, fitted on training folds only), but a
  sample whose features of one modality are *all* NaN is marked absent for that modality: it
  carries no information, and "absent" is what every model knows how to handle.
* An empty cell in a path or text column marks that modality absent for the sample.
* Files are checked eagerly (each is read once, which also warms the readers' cache) and then
  read lazily again when a batch needs them.
"""

from __future__ import annotations

import logging
import warnings
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from polyfuse.config import ModalityConfig
from polyfuse.data.cells import cell_label, class_sort_key, first_few, numeric_column, refuse_inf
from polyfuse.data.columns import require_columns
from polyfuse.data.dataset import ArraySource, FileSource, ListSource, Source
from polyfuse.data.readers import read_file, resolve_path
from polyfuse.data.specs import ModalitySpec
from polyfuse.errors import ConfigError, DataError, DataWarning, did_you_mean

log = logging.getLogger(__name__)

# ------------------------------------------------------------------------------ feature columns


def tabular_modality(
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
            values = numeric_column(frame[col], col, ids, where, owner, tabular=True)
            refuse_inf(values, col, ids, where, owner)
            blocks.append(values[:, None])
            names.append(col)
    values = np.concatenate(blocks, axis=1)
    return array_modality(name, values, names, ids, where)


def array_modality(
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
    levels: list[str] | None,
    unknown: str,
    ids: Sequence[str],
    where: str,
) -> tuple[np.ndarray, list[str]]:
    """One column per category, named 'column=value'; a missing value is NaN in all of them.

    `levels` fixes the categories (a fitted model's): a value outside them is an error naming
    the sample, or with `unknown="missing"` a missing value and a warning naming it.
    """
    labels = pd.Series([cell_label(v) for v in series], dtype=object)
    if levels is None:
        categories = sorted({v for v in labels if v is not None}, key=class_sort_key)
    else:
        categories = list(levels)
        known = set(categories)
        unseen = [i for i, v in enumerate(labels) if v is not None and v not in known]
        if unseen:
            shown = first_few([f"{ids[i]}={labels[i]}" for i in unseen])
            message = (
                f"{where}: column '{column}' has level(s) the model was not trained on, for "
                f"{len(unseen)} sample(s): {shown}; trained levels: {first_few(categories)}"
            )
            if unknown != "missing":
                raise DataError(
                    message + "; fix the values, or set unknown_category: missing for the "
                    "modality to impute them"
                )
            warnings.warn(message + "; imputed as missing", DataWarning, stacklevel=2)
            labels[unseen] = None
    dummies = pd.get_dummies(pd.Categorical(labels, categories=categories), dtype=float)
    block = dummies.to_numpy(dtype=np.float64, copy=True)  # pandas 3: a view is read-only
    block[labels.isna().to_numpy()] = np.nan
    return block, [f"{column}={c}" for c in categories]


# ------------------------------------------------------------------------------ inline text


def text_modality(
    name: str, mod: ModalityConfig, frame: pd.DataFrame
) -> tuple[ModalitySpec, ListSource]:
    """Inline text; an empty cell marks the report absent."""
    texts = [None if cell_label(v) is None else str(v) for v in frame[mod.text_column]]
    spec = ModalitySpec(name, "text", (), vocab_size=mod.vocab_size)
    return spec, ListSource(texts)


# ------------------------------------------------------------------------------ files

_PLACEHOLDER_SHAPES = {"image": (1, 1, 1), "bag": (1,), "tabular": (1,), "text": ()}
"""The spec shape of a file modality with no file at all (check_dataset then names it)."""


def file_modality(
    name: str, mod: ModalityConfig, frame: pd.DataFrame, ids: list[str], root: Path, where: str
) -> tuple[ModalitySpec, Source]:
    """A column of file paths: every file resolved and read once now, then read lazily."""
    column = mod.path_column
    if not Path(root).is_dir():
        raise ConfigError(f"data root {root} is not a folder; fix data.root")
    log.info("modality '%s': checking the files of column '%s' under %s", name, column, root)
    paths: list[Path | None] = []
    shapes: dict[int, tuple[int, ...]] = {}  # only shapes are kept: volumes may be large
    vectors: dict[int, np.ndarray] = {}
    for i, cell in enumerate(frame[column]):
        if cell_label(cell) is None:
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
    log.info("modality '%s': %d file(s) read and checked", name, len(paths) - paths.count(None))
    if mod.kind == "text" or not shapes:
        spec = ModalitySpec(
            name, mod.kind, _PLACEHOLDER_SHAPES[mod.kind], vocab_size=mod.vocab_size
        )
        return spec, FileSource(paths, mod.kind)
    shape = _common_shape(name, mod.kind, shapes, ids, paths)
    if mod.kind == "tabular":  # small vectors: keep them in memory like tabular columns
        matrix = np.full((len(ids), shape[0]), np.nan)
        for i, v in vectors.items():
            matrix[i] = v
        names = [f"{column}[{j}]" for j in range(shape[0])]
        return array_modality(name, matrix, names, ids, where)
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


# ------------------------------------------------------------------------------ long tables


def sequence_modality(
    name: str, mod: ModalityConfig, table: pd.DataFrame, ids: list[str], id_column: str, where: str
) -> tuple[ModalitySpec, ListSource]:
    """A long table (id, time, channels...) → per sample ((T_i, C) values, (T_i,) times).

    Rows of patients the manifest does not list are skipped (a lab export usually holds more
    patients than one study), with a warning that counts them.
    """
    owner = f"modality '{name}'"
    channels = _sequence_channels(owner, mod, table, id_column, where)
    table, row_ids = _listed_rows(table, id_column, ids, where)
    times = numeric_column(table[mod.time_column], mod.time_column, row_ids, where, owner)
    refuse_inf(times, mod.time_column, row_ids, where, owner)
    no_time = np.flatnonzero(np.isnan(times))
    if len(no_time):
        raise DataError(
            f"{where}: {len(no_time)} row(s) have no time in column '{mod.time_column}' "
            f"(samples {first_few(sorted({row_ids[i] for i in no_time}))}); give every row a time"
        )
    values = np.stack([numeric_column(table[c], c, row_ids, where, owner) for c in channels], 1)
    for j, c in enumerate(channels):
        refuse_inf(values[:, j], c, row_ids, where, owner)
    position = {s: i for i, s in enumerate(ids)}
    sample = np.array([position[s] for s in row_ids], dtype=np.int64)
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


def _sequence_channels(
    owner: str, mod: ModalityConfig, table: pd.DataFrame, id_column: str, where: str
) -> list[str]:
    """The channel columns of a long table: the configured ones, else every numeric column."""
    have = list(table.columns)
    for col, key in ((id_column, "data.id_column"), (mod.time_column, "time_column")):
        if col not in have:
            raise ConfigError(
                f"{owner}: column '{col}' is not in {where}{did_you_mean(col, have)}; "
                f"set {key} (columns: {first_few(have)})"
            )
    if mod.columns:
        require_columns(mod.columns, have, owner, where)
        return list(mod.columns)
    channels = [
        c for c in have if c not in (id_column, mod.time_column) and _holds_numbers(table[c])
    ]
    if not channels:
        raise ConfigError(f"{owner}: {where} has no numeric channel columns")
    return channels


def _holds_numbers(series: pd.Series) -> bool:
    """Whether a column is a numeric channel: numeric dtype, or text of which some are numbers
    (a stray word among numbers is then reported; a column of only text is skipped)."""
    if pd.api.types.is_bool_dtype(series) or pd.api.types.is_numeric_dtype(series):
        return True
    if pd.api.types.is_datetime64_any_dtype(series):
        return False
    return bool(pd.to_numeric(series.astype(object), errors="coerce").notna().any())


def _listed_rows(
    table: pd.DataFrame, id_column: str, ids: list[str], where: str
) -> tuple[pd.DataFrame, list[str]]:
    """The rows of the manifest's samples and their ids; other patients' rows are skipped
    with a warning naming them, and a row without an id is an error."""
    row_ids = [cell_label(v) for v in table[id_column]]
    no_id = [i for i, v in enumerate(row_ids) if v is None]
    if no_id:
        raise DataError(
            f"{where}: {len(no_id)} row(s) have no id in column '{id_column}' (data rows "
            f"{first_few([str(i + 1) for i in no_id], quote=False)}); give every row a sample id"
        )
    listed = set(ids)
    unknown = sorted({s for s in row_ids if s not in listed})
    if unknown:
        warnings.warn(
            f"{where}: skipped the rows of {len(unknown)} patient(s) the manifest does not "
            f"list ({first_few(unknown)})",
            DataWarning,
            stacklevel=2,
        )
        keep = np.array([s in listed for s in row_ids])
        table = table[keep].reset_index(drop=True)
    return table, [str(s) for s in row_ids if s in listed]
