"""Fuzzed manifest tables: every table either loads into a valid dataset or raises a
`PolyfuseError` naming the column, file, sample id or key at fault.

Tables are written to disk as CSV, TSV or Parquet, in several encodings, with LF or CRLF line
ends, and read back through `load_data` (so `read_table`, `load_frame` and `check_dataset` all
run). Where a strategy knows the culprit (a dropped column, a bad cell, a duplicate id), the
test asserts the message names it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from fuzzlib import (
    ENCODINGS,
    ODD_TEXT,
    TABLE_FORMATS,
    assert_names,
    assert_valid,
    budget,
    column,
    column_names,
    label_cells,
    numeric_cells,
    odd_ids,
    workdir,
    write_table,
)
from hypothesis import assume, event, given
from hypothesis import strategies as st

from polyfuse.config import DataConfig, parse_config
from polyfuse.data.manifest import load_data, read_table
from polyfuse.errors import ConfigError, DataError, PolyfuseError

NUMERIC = ("a", "b", "g_1", "g_2", "y", "t")
LABELS = ("c", "e", "l1", "l2")


def _data_config(table: Path, modalities: dict, tasks: dict, id_column: str = "id") -> DataConfig:
    """Through parse_config, as a YAML file would go."""
    raw = {"table": str(table), "id_column": id_column, "modalities": modalities, "tasks": tasks}
    return parse_config({"data": raw}).data


def _load(
    frame: pd.DataFrame,
    modalities: dict,
    tasks: dict,
    *,
    fmt: str = "csv",
    encoding: str = "utf-8",
    crlf: bool = False,
    id_column: str = "id",
):
    """Write `frame`, load it; returns (dataset or the raised exception, the table path)."""
    with workdir() as folder:
        path = write_table(frame, folder / f"manifest.{fmt}", encoding=encoding, crlf=crlf)
        try:
            return load_data(_data_config(path, modalities, tasks, id_column)), path
        except PolyfuseError as exc:
            return exc, path


# ------------------------------------------------------------------------------ strategies


DIMENSIONS = ("rows", "ids", "numbers", "labels", "columns", "declarations", "encoding")
"""What a manifest case may fuzz; the rest of the case stays clean, so that every kind of
fault is seen alone as well as in company (and clean cases load)."""


@st.composite
def modalities(draw, fuzz: bool) -> dict[str, Any]:
    mods: dict[str, Any] = {}
    kinds = ["tabular"] * 4 + ["image", "bag", "text", "sequence"] if fuzz else ["tabular"]
    columns = ["a", "b", "zz"] if fuzz else ["a", "b"]
    if draw(st.booleans()):
        cols = draw(st.lists(st.sampled_from(columns), min_size=0 if fuzz else 1, max_size=3))
        mods["x"] = {"kind": draw(st.sampled_from(kinds)), "columns": cols}
        if draw(st.booleans()):
            mods["x"]["categorical"] = draw(st.lists(st.sampled_from(["k", "c"]), max_size=2))
    if draw(st.booleans()):
        prefixes = ["g_", "zz_", "", "a"] if fuzz else ["g_"]
        mods["g"] = {"kind": "tabular", "prefix": draw(st.sampled_from(prefixes))}
    if draw(st.booleans()):
        mods["n"] = {"kind": "text", "text_column": "note"}
    if not mods:
        mods["x"] = {"kind": "tabular", "columns": ["a"]}
    return mods


@st.composite
def tasks(draw, fuzz: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    names = ["0", "1", "2", "yes", "G1", "G2"] if fuzz else ["0", "1"]
    classes = st.one_of(
        st.none(), st.lists(st.sampled_from(names), min_size=0 if fuzz else 2, max_size=3)
    )
    for kind in draw(
        st.lists(
            st.sampled_from(["regression", "binary", "multiclass", "multilabel", "survival"]),
            min_size=1,
            max_size=2,
            unique=True,
        )
    ):
        if kind == "regression":
            out["reg"] = {"type": kind, "column": "y"}
        elif kind in ("binary", "multiclass"):
            out[kind] = {"type": kind, "column": "c"}
            if (cls := draw(classes)) is not None:
                out[kind]["classes"] = cls if fuzz or kind == "multiclass" else cls[:2]
        elif kind == "multilabel":
            out["ml"] = {"type": kind, "columns": ["l1", "l2"]}
        else:
            head = draw(st.sampled_from(["discrete", "cox"]))
            out["os"] = {"type": kind, "time_column": "t", "event_column": "e"}
            out["os"] |= {"survival_head": head, "n_bins": draw(st.integers(2, 6))}
    return out


@st.composite
def manifests(draw) -> dict[str, Any]:
    """A table with fuzzed cells, ids and columns, plus declarations and a file format."""
    fuzz = draw(st.sets(st.sampled_from(DIMENSIONS), max_size=3))
    n = draw(st.integers(0, 6) if "rows" in fuzz else st.integers(2, 6))
    id_column = draw(st.sampled_from(["id", "patient id", "é_id", "1"]))
    ids: list[Any] = [f"s{i}" for i in range(n)]
    if "ids" in fuzz:
        ids = draw(st.lists(odd_ids, min_size=n, max_size=n))
    data: dict[str, list[Any]] = {id_column: ids}
    for name in NUMERIC:
        data[name] = draw(column(n) if "numbers" in fuzz else st.just(list(np.arange(n) + 1.0)))
    for name in LABELS:
        clean = [i % 2 for i in range(n)]
        data[name] = draw(
            st.lists(label_cells, min_size=n, max_size=n) if "labels" in fuzz else st.just(clean)
        )
    if "labels" in fuzz:  # categories and inline text too
        categories = st.sampled_from(["x", "y", None, "", "é", 1, 2.5])
        data["k"] = draw(st.lists(categories, min_size=n, max_size=n))
        notes = st.one_of(st.text(max_size=8), st.none())
        data["note"] = draw(st.lists(notes, min_size=n, max_size=n))
    else:
        data["k"] = ["x", "y"] * (n // 2) + ["x"] * (n % 2)
        data["note"] = [f"note {i}" for i in range(n)]
    if "columns" in fuzz:
        for name in draw(st.sets(st.sampled_from(sorted(data)), max_size=2)):
            del data[name]
        extra = st.lists(numeric_cells, min_size=n, max_size=n)
        data |= draw(st.dictionaries(column_names, extra, max_size=2))
    encoding = draw(st.sampled_from(ENCODINGS)) if "encoding" in fuzz else "utf-8"
    return {
        "frame": pd.DataFrame(data, index=range(n)),
        "modalities": draw(modalities("declarations" in fuzz)),
        "tasks": draw(tasks("declarations" in fuzz)),
        "id_column": id_column,
        "fmt": draw(st.sampled_from(TABLE_FORMATS)),
        "encoding": encoding,
        "crlf": draw(st.booleans()),
        "ids": ids,
        "fuzz": fuzz,
    }


def _clean_frame(n: int) -> pd.DataFrame:
    rng = np.random.default_rng(n)
    return pd.DataFrame(
        {
            "id": [f"s{i}" for i in range(n)],
            "a": rng.normal(size=n),
            "b": rng.normal(size=n),
            "y": rng.normal(size=n),
            "t": rng.uniform(1, 100, size=n),
            "e": rng.integers(0, 2, size=n),
        }
    )


CLEAN_MODS = {"x": {"kind": "tabular", "columns": ["a", "b"]}}
CLEAN_TASKS = {
    "reg": {"type": "regression", "column": "y"},
    "os": {"type": "survival", "time_column": "t", "event_column": "e"},
}


def _split_rows(case: dict[str, Any]) -> bool:
    """A CSV/TSV cell holding a bare CR: with LF line ends it is written unquoted, and reading
    the file back splits its row in two (new rows, ids that are not in `case["ids"]`)."""
    cells = [*case["frame"].to_numpy().ravel(), *case["ids"]]
    text = any(isinstance(c, str) and "\r" in c for c in cells)
    return text and case["fmt"] != "parquet" and not case["crlf"]


# ------------------------------------------------------------------------------ properties


@budget(250)
@given(case=manifests())
def test_any_manifest_loads_or_names_the_culprit(case: dict[str, Any]) -> None:
    result, path = _load(
        case["frame"],
        case["modalities"],
        case["tasks"],
        fmt=case["fmt"],
        encoding=case["encoding"],
        crlf=case["crlf"],
        id_column=case["id_column"],
    )
    event("loaded" if not isinstance(result, BaseException) else type(result).__name__)
    if not case["fuzz"]:
        assert not isinstance(result, BaseException), result  # a clean case must load
    if isinstance(result, BaseException):
        declared = [
            v
            for decl in (*case["modalities"].values(), *case["tasks"].values())
            for v in decl.values()
        ]
        names = [
            case["id_column"],
            *case["frame"].columns,
            *case["modalities"],
            *case["tasks"],
            *(x for v in declared for x in (v if isinstance(v, list) else [v])),
            *case["ids"],
        ]
        # the file is the culprit only when it has no rows, another encoding or rows split by
        # a bare CR; otherwise it merely prefixes a message about one of its columns or cells
        whole_file = case["fuzz"] & {"rows", "encoding"} or _split_rows(case)
        assert_names(result, names, files=[path.name] if whole_file else [])
    else:
        assert_valid(result)
        assert len(result) == len(case["frame"])


@budget(60)
@given(
    n=st.integers(1, 6),
    missing=column_names.filter(lambda c: c not in ("id", "a", "b", "y", "t", "e")),
    where=st.sampled_from(["columns", "categorical", "task", "survival"]),
    fmt=st.sampled_from(TABLE_FORMATS),
)
def test_missing_declared_column_is_named(n: int, missing: str, where: str, fmt: str) -> None:
    mods = {"x": {"kind": "tabular", "columns": ["a", "b"]}}
    tasks = dict(CLEAN_TASKS)
    if where == "columns":
        mods["x"]["columns"] = ["a", missing]
    elif where == "categorical":
        mods["x"]["categorical"] = [missing]
    elif where == "task":
        tasks["reg"] = {"type": "regression", "column": missing}
    else:
        tasks["os"] = {"type": "survival", "time_column": "t", "event_column": missing}
    result, _ = _load(_clean_frame(n), mods, tasks, fmt=fmt)
    assert isinstance(result, ConfigError), result
    assert f"column '{missing}'" in str(result)


@budget(120)
@given(
    n=st.integers(1, 6),
    data=st.data(),
    bad=st.one_of(
        st.sampled_from([*ODD_TEXT, "inf", "-inf", "1e400", 1e300, -1e300, 3.5e38]),
        st.floats(allow_nan=False).filter(lambda v: abs(v) > 3.4028235e38),
    ),
    target=st.sampled_from(["a", "b", "y", "t"]),
    fmt=st.sampled_from(TABLE_FORMATS),
)
def test_bad_numeric_cell_names_column_and_sample(n, data, bad, target, fmt) -> None:
    """A value that is not a finite float32 number (text, ±inf, beyond float32 range) in a
    feature, regression target or survival time: DataError naming the column and sample."""
    row = data.draw(st.integers(0, n - 1))
    frame = _clean_frame(n).astype({target: object})
    frame.loc[row, target] = bad
    value = pd.to_numeric(pd.Series([bad]), errors="coerce").iloc[0]
    blank = isinstance(bad, str) and not bad.strip()
    assume(
        not blank
        and not (isinstance(bad, str) and bad.strip().lower() in ("nan", "na", "null", "none"))
    )
    result, _ = _load(frame, CLEAN_MODS, CLEAN_TASKS, fmt=fmt)
    with np.errstate(over="ignore"):
        finite32 = bool(np.isfinite(np.float32(value))) if not np.isnan(value) else False
    if finite32 and (target != "t" or value > 0):
        assert not isinstance(result, BaseException), result  # a number after all, e.g. " 2 "
        return
    if bad in ("True", "False") and not isinstance(result, BaseException):
        return  # a column of only booleans (n = 1) is a 0/1 feature
    assert isinstance(result, DataError), result
    message = str(result)
    assert f"'{target}'" in message or f"feature '{target}'" in message, message
    assert f"s{row}" in message, message


@budget(60)
@given(
    n=st.integers(2, 6),
    data=st.data(),
    kind=st.sampled_from(["duplicate", "missing", "spaced-duplicate"]),
    fmt=st.sampled_from(TABLE_FORMATS),
)
def test_duplicate_or_missing_id_is_named(n: int, data, kind: str, fmt: str) -> None:
    i, j = data.draw(st.lists(st.integers(0, n - 1), min_size=2, max_size=2, unique=True))
    frame = _clean_frame(n).astype({"id": object})
    if kind == "duplicate":
        frame.loc[j, "id"] = frame.loc[i, "id"]
    elif kind == "spaced-duplicate":
        frame.loc[j, "id"] = f"  {frame.loc[i, 'id']} "
    else:
        frame.loc[j, "id"] = data.draw(st.sampled_from([None, "", "  "]))
    result, _ = _load(frame, CLEAN_MODS, CLEAN_TASKS, fmt=fmt)
    assert isinstance(result, DataError), result
    if kind == "missing":
        assert "column 'id'" in str(result) and f"data rows {j + 1}" in str(result)
    else:
        assert f"'s{i}' ×2" in str(result)


@budget(60)
@given(
    ids=st.lists(
        st.text(st.characters(codec="utf-8", categories=["L", "N"]), min_size=1, max_size=5).map(
            lambda s: "p" + s
        ),
        min_size=1,
        max_size=5,
        unique=True,
    ),
    encoding=st.sampled_from(ENCODINGS),
    crlf=st.booleans(),
    sep=st.sampled_from(["csv", "tsv"]),
)
def test_encodings_load_the_same_table_or_name_the_file(ids, encoding, crlf, sep) -> None:
    """UTF-8 with or without BOM and CRLF load identically; other encodings load the same
    table when they happen to agree with UTF-8 (ASCII) and otherwise name the file."""
    frame = _clean_frame(len(ids))
    frame["id"] = ids
    result, path = _load(frame, CLEAN_MODS, CLEAN_TASKS, fmt=sep, encoding=encoding, crlf=crlf)
    if encoding.startswith("utf-8") or (
        encoding in ("latin-1", "cp1252") and all(i.isascii() for i in ids)
    ):
        assert not isinstance(result, BaseException), result
        assert result.ids == [i.strip() for i in ids]
        np.testing.assert_allclose(result.sources["x"].values[:, 0], frame["a"], rtol=1e-6)
    elif isinstance(result, BaseException):
        assert isinstance(result, DataError), result
        assert path.name in str(result)
    else:  # a non-UTF-8 file that still decodes: every id must come back as some string
        assert len(result.ids) == len(ids)


@budget(40)
@given(
    n=st.integers(0, 1),
    fmt=st.sampled_from(TABLE_FORMATS),
    header=st.booleans(),
    task=st.sampled_from([*sorted(CLEAN_TASKS), "binary", "multiclass"]),
)
def test_empty_and_single_sample_cohorts(n: int, fmt: str, header: bool, task: str) -> None:
    header = header or fmt == "parquet"  # a parquet file always has its schema
    frame = _clean_frame(n)
    frame["c"] = [1] * n
    tasks = {task: CLEAN_TASKS.get(task) or {"type": task, "column": "c"}}
    with workdir() as folder:
        path = write_table(frame, folder / f"m.{fmt}")
        if not header:
            path.write_bytes(b"" if n == 0 else path.read_bytes().split(b"\n", 1)[1])
        try:
            data = load_data(_data_config(path, CLEAN_MODS, tasks))
        except PolyfuseError as exc:
            if n == 1 and header:  # the task's column has a single class
                assert_names(exc, ["c"])
            else:  # no data rows (a headerless single row is the header)
                assert_names(exc, files=[path.name])
            if n == 0:
                assert isinstance(exc, DataError)
            return
    assert n == 1 and header, "an empty or headerless table loaded"
    assert_valid(data)


@budget(80)
@given(
    content=st.one_of(
        st.binary(max_size=64),
        st.text(max_size=64).map(str.encode),
        st.lists(
            st.lists(st.sampled_from(["id", "a", "y", "s1", "1", "", '"', "\r", ",,"]), max_size=4),
            max_size=4,
        ).map(lambda rows: "\n".join(",".join(r) for r in rows).encode()),
    ),
    suffix=st.sampled_from([".csv", ".tsv", ".parquet"]),
)
def test_garbage_files_name_the_file(content: bytes, suffix: str) -> None:
    with workdir() as folder:
        path = folder / f"raw{suffix}"
        path.write_bytes(content)
        try:
            frame = read_table(path, id_column="id")
        except PolyfuseError as exc:
            assert isinstance(exc, DataError)
            assert_names(exc, files=[path.name])
            return
        assert all(isinstance(c, str) for c in frame.columns)
        try:
            data = load_data(
                _data_config(path, {"x": {"kind": "tabular", "columns": ["a"]}}, CLEAN_TASKS)
            )
        except PolyfuseError as exc:  # a declared or duplicate column; the file if rowless
            names = ["id", "a", "y", "t", "e", *frame.columns]
            assert_names(exc, names, files=[path.name] if frame.empty else [])
            return
        assert_valid(data)
