"""Which columns of a manifest each declared modality and task reads, checked before any data.

A config that does not fit its table (a misspelt column, a prefix nothing starts with, an image
declared from feature columns) is a `ConfigError` raised here, before a single cell or file is
read, so that the user fixes the config and not the data.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import pandas as pd

from polyfuse.config import ModalityConfig, TaskConfig
from polyfuse.data.cells import first_few
from polyfuse.data.targets import task_columns
from polyfuse.errors import ConfigError, did_you_mean

_SOURCE_KINDS = {
    "columns": ("tabular",),
    "prefix": ("tabular",),
    "path_column": ("image", "bag", "text", "tabular"),
    "text_column": ("text",),
    "table": ("sequence",),
}
"""Which modality kinds each way of declaring a modality can give."""


def resolve_columns(
    modalities: dict[str, ModalityConfig],
    tasks: dict[str, TaskConfig],
    id_column: str,
    frame: pd.DataFrame,
    where: str,
) -> dict[str, list[str]]:
    """Check every column the config names exists and suits its modality kind.

    Returns the columns of each modality: feature columns with prefixes expanded and
    categorical columns included, the path or text column; none for a long-table modality
    (its columns are channels of its own table, checked when that table is read).
    """
    have = list(frame.columns)
    out: dict[str, list[str]] = {}
    for name, mod in modalities.items():
        _check_source_kind(name, mod)
        if mod.table is not None:
            out[name] = []
            continue
        cols = _modality_columns(name, mod, have, id_column, where)
        require_columns(cols, have, f"modality '{name}'", where)
        out[name] = cols
    for name, task in tasks.items():
        require_columns(task_columns(task), have, f"task '{name}'", where)
    return out


def require_columns(cols: Iterable[str], have: Sequence[str], owner: str, where: str) -> None:
    """A ConfigError naming the first of `cols` that `have` lacks, with a did-you-mean."""
    for col in cols:
        if col not in have:
            raise ConfigError(
                f"{owner}: column '{col}' is not in {where}{did_you_mean(col, have)}; "
                "fix the column name in the config"
            )


def _check_source_kind(name: str, mod: ModalityConfig) -> None:
    """Which sources can hold which kind (e.g. an image cannot come from feature columns)."""
    if mod.kind == "sequence" and mod.table is None:
        raise ConfigError(
            f"modality '{name}': a sequence needs table (a long table of id, time, channels)"
        )
    for key, kinds in _SOURCE_KINDS.items():
        if key == "columns" and mod.table is not None:
            continue  # channels of the sequence table
        if getattr(mod, key) is not None and mod.kind not in kinds:
            raise ConfigError(
                f"modality '{name}': kind '{mod.kind}' cannot come from {key}; "
                f"{key} gives kind {' or '.join(kinds)}"
            )
    if mod.categorical and mod.kind != "tabular":
        raise ConfigError(f"modality '{name}': categorical applies to tabular modalities only")


def _modality_columns(
    name: str, mod: ModalityConfig, have: list[str], id_column: str, where: str
) -> list[str]:
    """The columns one (non-sequence) modality reads, its categorical columns included."""
    owner = f"modality '{name}'"
    if mod.columns is not None:
        cols = list(mod.columns)
    elif mod.prefix is not None:
        cols = [c for c in have if c.startswith(mod.prefix) and c != id_column]
        if not cols:
            raise ConfigError(
                f"{owner}: no column of {where} starts with prefix '{mod.prefix}'; fix "
                f"data.modalities.{name}.prefix (columns: {first_few(have)})"
            )
    else:
        cols = [c for c in (mod.path_column, mod.text_column) if c is not None]
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
    return cols
