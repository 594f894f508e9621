"""Shared pieces of the fuzz tests: example budgets, cell strategies, table writers, checks.

The property every fuzz test states: a fuzzed input either loads into a valid
`MultimodalDataset` (`assert_valid`) or raises a `PolyfuseError` whose message names the
culprit (`assert_names`). Any other exception fails the test, and hypothesis shrinks it to a
minimal example.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from hypothesis import settings
from hypothesis import strategies as st

from polyfuse.data.dataset import ArraySource, ListSource, MultimodalDataset
from polyfuse.errors import PolyfuseError

SCALE = max(1, int(os.environ.get("POLYFUSE_FUZZ_SCALE", "1")))
"""Multiplies every test's example budget (POLYFUSE_FUZZ_SCALE=20 for a deep local hunt)."""


def budget(n: int) -> settings:
    """This test's number of examples under the loaded profile (deterministic in CI)."""
    return settings(max_examples=n * SCALE)


@contextlib.contextmanager
def workdir() -> Iterator[Path]:
    """A fresh folder per example (pytest's tmp_path is shared by all examples of a test)."""
    with tempfile.TemporaryDirectory(prefix="polyfuse-fuzz-") as folder:
        yield Path(folder)


# ------------------------------------------------------------------------------ cells

ODD_TEXT = [
    "",
    " ",
    "abc",
    "1.5",
    " 2 ",
    "nan",
    "NaN",
    "NA",
    "null",
    "None",
    "inf",
    "-inf",
    "Infinity",
    "1e400",
    "-1e400",
    "1e300",
    "1,5",
    "0x10",
    "１２",  # full-width digits
    "٣",  # Arabic-Indic digit
    "é",
    "\u00a0",
    "\ufeff1",
    "True",
    "False",
    "2024-01-01",
    "1/2",
    'q"uote',
    "semi;colon",
    "tab\there",
    "line\nbreak",
    "🙂",
    "²",  # a digit to str.isdigit, not to int()
    "--1",
    "+1",
    "1_000",
    " -0 ",
]
"""Text that parsers, number coercion and encodings tend to trip over."""

HUGE = [1e300, -1e300, 1e30, -1e30, 3.4e38, 3.5e38, -3.5e38, 1e-300, 5e-324, 0.0, -0.0]

finite_numbers = st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False, width=32)

numeric_cells = st.one_of(
    finite_numbers,
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(HUGE),
    st.integers(-(2**70), 2**70),
    st.sampled_from(ODD_TEXT),
    st.booleans(),
    st.none(),
)
"""What may sit in a column declared numeric."""

label_cells = st.one_of(
    st.sampled_from([0, 1, 2, -1, 0.0, 1.0, 0.5, True, False, "0", "1", "1.0", "yes", "G1", "G2"]),
    st.sampled_from(ODD_TEXT),
    st.floats(),
    st.none(),
)
"""What may sit in a class, label or event column."""

odd_ids = st.one_of(
    st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=6),
    st.sampled_from(["007", "7", "7.0", " a ", "a", "A", "é", "e\u0301", "\ufeffx", "a,b", "1e3"]),
    st.integers(-5, 5),
    st.floats(allow_infinity=True),
    st.none(),
)
"""Sample ids with whitespace, unicode, numbers that look alike, and missing ones."""

column_names = st.text(
    st.characters(codec="utf-8", exclude_categories=["Cs", "Cc"]), min_size=1, max_size=6
)


def column(n: int, cells: st.SearchStrategy[Any] = numeric_cells) -> st.SearchStrategy[list[Any]]:
    """A column of n cells: usually clean numbers, sometimes fuzzed cells."""
    clean = st.lists(finite_numbers, min_size=n, max_size=n)
    return st.one_of(clean, st.lists(cells, min_size=n, max_size=n))


# ------------------------------------------------------------------------------ writing tables

TABLE_FORMATS = ("csv", "tsv", "parquet")
ENCODINGS = ("utf-8", "utf-8-sig", "latin-1", "cp1252", "utf-16")


def write_table(
    frame: pd.DataFrame, path: Path, *, encoding: str = "utf-8", crlf: bool = False
) -> Path:
    """Write as the path's suffix says; text formats in `encoding` (unencodable → '?')."""
    if path.suffix == ".parquet":
        parquet_frame(frame).to_parquet(path, index=False)
        return path
    frame.to_csv(
        path,
        sep="\t" if path.suffix == ".tsv" else ",",
        index=False,
        encoding=encoding,
        errors="replace",
        lineterminator="\r\n" if crlf else "\n",
    )
    return path


def parquet_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """Parquet columns have one type: numbers stay numbers, booleans stay booleans, anything
    mixed becomes text (None stays missing)."""
    out = {}
    for name in frame.columns:
        values = list(frame[name])
        real = [v for v in values if v is not None]
        if real and all(isinstance(v, bool) for v in real):
            out[name] = pd.Series(values, dtype="boolean")
        elif all(isinstance(v, int | float) and not isinstance(v, bool) for v in real):
            out[name] = pd.Series([np.nan if v is None else float(v) for v in values])
        else:
            out[name] = pd.Series([None if v is None else str(v) for v in values], dtype=object)
    return pd.DataFrame(out, index=range(len(frame)))


# ------------------------------------------------------------------------------ checks


def assert_names(
    exc: BaseException,
    names: Iterable[Any] = (),
    *,
    files: Iterable[Any] = (),
    keys: Iterable[Any] = (),
) -> None:
    """A PolyfuseError whose message names one of the culprits, each as a whole name, never as
    a bare substring (the letter `a` is inside every 'invalid configuration' and 'a valid
    number', the file name inside every 'm.csv: ...'):

    - `names` (columns, sample ids, modalities, tasks) in quotes, as polyfuse writes them:
      `'a'` (or the name's repr);
    - `files` as a file name: a whole path component, after the start, a space, '/' or '(',
      and before the end, a space, ':', ';', ',' or ')';
    - `keys` (config key paths, tuples) as the location of a ConfigError line
      (`  training.lr: ...`): the key itself, a key inside it, or one of its parent sections.

    Pass only what is at fault in the case (the file only when the file is the problem, not
    when it prefixes a message about one of its cells).
    """
    assert isinstance(exc, PolyfuseError), f"{type(exc).__name__} leaked: {exc!r}"
    message = str(exc)
    assert message.strip(), f"{type(exc).__name__} with an empty message"
    quoted = {
        form
        for n in names
        if n is not None and str(n).strip()
        for text in {str(n), str(n).strip()}
        for form in (f"'{text}'", repr(text))
    }
    found = any(q in message for q in quoted)
    files = [str(f) for f in files if f is not None and str(f).strip()]
    found = found or any(
        re.search(rf"(?:^|(?<=[\s/(])){re.escape(f)}(?=$|[\s:;,)])", message) for f in files
    )
    places = [tuple(str(part) for part in (k if isinstance(k, tuple) else (k,))) for k in keys]
    found = found or any(_locates(message, path) for path in places)
    wanted = [*sorted(quoted), *files, *(".".join(p) for p in places)]
    assert found, f"{type(exc).__name__} names none of {wanted[:20]}: {message}"


def _locates(message: str, path: tuple[str, ...]) -> bool:
    """A ConfigError line sits at `path`, inside it, or at one of its parent sections."""
    lines = [f"\n  {'.'.join(path[:i]) or '(top level)'}: " for i in range(1, len(path) + 1)]
    return any(line in message for line in lines) or f"\n  {'.'.join(path)}." in message


def assert_valid(data: MultimodalDataset) -> None:
    """What every loaded dataset guarantees to the models and losses."""
    n = len(data)
    assert n >= 1
    assert len(set(data.ids)) == n
    assert all(isinstance(i, str) and i for i in data.ids)
    assert data.specs
    presence = []
    for m, spec in data.specs.items():
        src = data.sources[m]
        assert src.present.shape == (n,)
        assert src.present.any(), f"modality {m} absent everywhere"
        presence.append(src.present)
        if isinstance(src, ArraySource):
            assert src.values.dtype == np.float32
            assert src.values.shape == (n, *spec.shape)
            assert not np.isinf(src.values).any(), f"±inf in modality {m}"
        if isinstance(src, ListSource) and spec.kind == "sequence":
            for item in src.values:
                if item is not None:
                    values, times = item
                    assert np.isfinite(times).all()
                    assert not np.isinf(values).any()
    assert np.stack(presence, 1).any(1).all(), "a sample without any modality"
    for t, spec in data.tasks.items():
        y = data.targets[t]
        assert y.dtype == np.float32 and len(y) == n
        assert not np.isinf(y).any(), f"±inf target in task {t}"
        known = y[~np.isnan(y)]
        if spec.type == "survival":
            assert y.shape == (n, 2)
            assert (y[~np.isnan(y[:, 0]), 0] > 0).all()
            assert np.isin(y[~np.isnan(y[:, 1]), 1], (0, 1)).all()
        elif spec.type == "multiclass":
            assert np.isin(known, np.arange(len(spec.classes))).all()
        elif spec.type in ("binary", "multilabel"):
            assert np.isin(known, (0, 1)).all()
