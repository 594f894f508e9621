"""Fuzzed per-sample files and sequence tables: a manifest column of file paths (real files of
odd shapes, dtypes and values, garbage bytes, missing files, paths leaving the root) and a
long-format sequence table (unknown ids, odd times and channel values).

Property: the cohort loads into a valid dataset, or a `PolyfuseError` names the sample,
column or file at fault.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pandas as pd
from fuzzlib import (
    HUGE,
    TABLE_FORMATS,
    assert_names,
    assert_valid,
    budget,
    numeric_cells,
    workdir,
    write_table,
)
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from polyfuse.config import DataConfig
from polyfuse.data import readers
from polyfuse.data.manifest import load_data
from polyfuse.errors import PolyfuseError

DTYPES = ["float32", "float64", "int16", "uint8", "bool", "complex64", "<U2"]

arrays = hnp.arrays(
    dtype=st.sampled_from(DTYPES),
    shape=hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=3),
    elements=None,
).map(lambda a: a)
"""Arrays of any small shape (0-D to 4-D, empty axes included) and dtype, any values."""


def _filled(shape: tuple[int, ...], fill: float, dtype: str) -> np.ndarray:
    with np.errstate(over="ignore"):  # 1e300 as float32 is inf: one more odd value
        return np.full(shape, fill).astype(dtype)


numeric_arrays = st.builds(
    _filled,
    hnp.array_shapes(min_dims=1, max_dims=4, min_side=1, max_side=3),
    st.sampled_from([0.0, 1.0, np.nan, np.inf, *HUGE]),
    st.sampled_from(["float32", "float64"]),
)


@st.composite
def file_cells(draw, folder: Path, kind: str, index: int) -> str | None:
    """One manifest cell: a real file written under `folder`, or an odd path."""
    choice = draw(
        st.sampled_from(["npy", "npy", "h5", "txt", "png", "garbage", "odd-path", "empty"])
    )
    name = f"f{index}"
    if choice == "npy":
        array = draw(st.one_of(arrays, numeric_arrays))
        np.save(folder / f"{name}.npy", array)
        return f"{name}.npy"
    if choice == "h5":
        with h5py.File(folder / f"{name}.h5", "w") as handle:
            key = draw(st.sampled_from(["features", "feats"]))
            handle[key] = draw(
                st.one_of(arrays.filter(lambda a: a.dtype.kind != "U"), numeric_arrays)
            )
        return f"{name}.h5"
    if choice == "txt":
        text = draw(st.text(max_size=20))
        encoding = draw(st.sampled_from(["utf-8", "utf-8-sig", "latin-1", "utf-16"]))
        (folder / f"{name}.txt").write_bytes(text.encode(encoding, errors="replace"))
        return f"{name}.txt"
    if choice == "png":
        from PIL import Image

        mode = draw(st.sampled_from(["L", "RGB", "RGBA", "P", "1", "I;16"]))
        Image.new(mode, (draw(st.integers(1, 3)), 2)).save(folder / f"{name}.png")
        return f"{name}.png"
    if choice == "garbage":
        suffix = draw(st.sampled_from([".npy", ".h5", ".png", ".txt", ".nii.gz", ".dcm", ".bin"]))
        (folder / f"{name}{suffix}").write_bytes(draw(st.binary(max_size=40)))
        return f"{name}{suffix}"
    if choice == "odd-path":
        return draw(
            st.sampled_from(
                [
                    "missing.npy",
                    "../outside.npy",
                    "/etc/passwd",
                    ".",
                    "sub",
                    "x" * 300 + ".npy",
                    "a\x00b.npy",
                    " f.npy ",
                    "~/f.npy",
                    "sub/../f.npy",
                ]
            )
        )
    return draw(st.sampled_from([None, "", "  "]))


@budget(150)
@given(
    data=st.data(),
    n=st.integers(1, 4),
    kind=st.sampled_from(["image", "bag", "tabular", "text"]),
    fmt=st.sampled_from(["csv", "parquet"]),
)
def test_file_columns_load_or_name_the_sample(data, n: int, kind: str, fmt: str) -> None:
    readers.clear_cache()
    with workdir() as folder:
        root = folder / "root"
        (root / "sub").mkdir(parents=True)
        (folder / "outside.npy").write_bytes(b"")
        cells = [data.draw(file_cells(root, kind, i)) for i in range(n)]
        frame = pd.DataFrame(
            {"id": [f"s{i}" for i in range(n)], "p": cells, "a": np.arange(n, dtype=float)}
        )
        if fmt == "csv" and any(c and "\x00" in c for c in cells):
            fmt = "parquet"  # a NUL byte cannot live in a CSV cell
        path = write_table(frame, root / f"m.{fmt}")
        config = DataConfig.model_validate(
            dict(
                table=path,
                modalities={
                    "f": {"kind": kind, "path_column": "p"},
                    "x": {"kind": "tabular", "columns": ["a"]},
                },
                tasks={"reg": {"type": "regression", "column": "a"}},
            )
        )
        try:
            dataset = load_data(config)
        except PolyfuseError as exc:
            assert_names(exc, ["f"])  # every refusal says which modality
            # and which sample: one whose cell names a file (the modality only if none does)
            filled = [f"s{i}" for i, cell in enumerate(cells) if cell and cell.strip()]
            assert_names(exc, filled or ["f"])
            return
        assert_valid(dataset)
        for i in np.flatnonzero(dataset.sources["f"].present):  # lazily read again: same checks
            dataset.sources["f"].take(np.array([i]))


@budget(150)
@given(
    n=st.integers(1, 4),
    rows=st.lists(
        st.tuples(
            st.one_of(st.sampled_from(["s0", "s1", "s2", "s3"]), st.sampled_from(["zz", "", None])),
            numeric_cells,
            numeric_cells,
        ),
        max_size=8,
    ),
    columns=st.sampled_from([None, ["hr"], ["hr", "nope"], []]),
    time_column=st.sampled_from(["time", "day"]),
    fmt=st.sampled_from(TABLE_FORMATS),
)
def test_sequence_tables_load_or_name_the_culprit(
    n: int, rows: list[tuple[Any, Any, Any]], columns, time_column: str, fmt: str
) -> None:
    with workdir() as folder:
        manifest = write_table(
            pd.DataFrame({"id": [f"s{i}" for i in range(n)], "a": np.ones(n)}), folder / "m.csv"
        )
        long = pd.DataFrame(
            {
                "id": [r[0] for r in rows],
                "time": [r[1] for r in rows],
                "hr": [r[2] for r in rows],
            },
            index=range(len(rows)),
        )
        table = write_table(long, folder / f"long.{fmt}")
        seq: dict[str, Any] = {"kind": "sequence", "table": table, "time_column": time_column}
        if columns is not None:
            seq["columns"] = columns
        config = DataConfig.model_validate(
            dict(
                table=manifest,
                modalities={"seq": seq, "x": {"kind": "tabular", "columns": ["a"]}},
                tasks={"reg": {"type": "regression", "column": "a"}},
            )
        )
        try:
            dataset = load_data(config)
        except PolyfuseError as exc:
            # a column of the long table, a sample of it, or the modality (absent everywhere,
            # no channel columns); an unknown id ('zz') is skipped with a warning, not refused
            names = ["seq", "hr", "nope", time_column, "id", *(f"s{i}" for i in range(n))]
            assert_names(exc, names)
            return
    assert_valid(dataset)
