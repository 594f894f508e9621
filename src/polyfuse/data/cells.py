"""How one cell or column of a user's table is read: as a label, a class code or a number.

Every reader of tables (manifest columns, targets, long tables) goes through these, so that
'007' stays an id, 2.0 and '2' are one class, and a stray word in a numeric column is reported
with its column and sample instead of becoming NaN.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from polyfuse.errors import DataError

SHOWN = 5
"""How many example ids or values a message lists."""


def cell_label(value: Any) -> str | None:
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


def label_code(label: str) -> int | None:
    """'0', '1', ... → the integer; 'True'/'False' → 1/0; otherwise None."""
    if label in ("True", "False"):
        return int(label == "True")
    # isdecimal, not isdigit: '²' is a digit to isdigit but not to int(), as is '--1' to lstrip
    return int(label) if label.removeprefix("-").isdecimal() else None


def class_sort_key(label: str) -> tuple[int, float, str]:
    """Sort numbers numerically ('2' before '10'), then text alphabetically."""
    try:
        return (0, float(label), label)
    except ValueError:
        return (1, 0.0, label)


def numeric_column(
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


def refuse_inf(values: np.ndarray, column: str, ids: Sequence[str], where: str, owner: str) -> None:
    """±inf, or a finite value that float32 (every array downstream) would make ±inf."""
    bad = np.flatnonzero(np.isinf(values))
    if len(bad):
        i = int(bad[0])
        raise DataError(
            f"{where}: column '{column}' ({owner}) is {values[i]:+g} for sample '{ids[i]}'"
            f" ({len(bad)} such cell(s)); replace with a finite value or leave it empty"
        )
    with np.errstate(over="ignore"):
        bad = np.flatnonzero(np.isinf(values.astype(np.float32)))
    if len(bad):
        i = int(bad[0])
        raise DataError(
            f"{where}: column '{column}' ({owner}) is {values[i]:g} for sample '{ids[i]}'"
            f" ({len(bad)} such cell(s)), beyond float32 range (±3.4e38); rescale the column"
        )


def first_few(items: Iterable[Any], *, quote: bool = True) -> str:
    """'a', 'b', 'c' and 4 more — enough examples to find the problem, never a wall of text."""
    items = list(items)
    shown = [f"'{x}'" if quote else str(x) for x in items[:SHOWN]]
    extra = f" and {len(items) - SHOWN} more" if len(items) > SHOWN else ""
    return ", ".join(shown) + extra
