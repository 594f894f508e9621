"""The bundled GlaucomaMVF cohort (datasets.md section 3): counts, modalities, R's NA, checksum.

The comparison with the source .rda runs only where the extracted Debian package is at
/tmp/ipred (see scripts/convert_glaucoma_mvf.py); everything else needs only polyfuse.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import polyfuse as pf
from polyfuse.datasets.glaucoma import (
    CSV_FILE,
    HRT_COLUMNS,
    TRAIN_ONLY,
    data_dir,
    read_glaucoma_mvf_table,
    verify_glaucoma_mvf_checksum,
)
from polyfuse.datasets.provenance import PROVENANCE_FILE
from polyfuse.errors import DataError

RDA = Path("/tmp/ipred/x/usr/lib/R/site-library/ipred/data/GlaucomaMVF.rda")
SHAPES = {"hrt": (62,), "pressure": (1,), "perimetry": (2,), "fundus": (1,)}
NA_CELLS = {"tension": 4, "clv": 12, "cs": 1}  # R's NA in GlaucomaMVF; nowhere else
FIRST_EYE = {"ag": 2.22, "mv": 0.035, "tension": 12.0, "clv": 0.9, "cs": 1.45, "lora": 37.3444}


@pytest.fixture(scope="module")
def data() -> pf.MultimodalDataset:
    return pf.datasets.load("glaucoma-mvf")


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    return read_glaucoma_mvf_table()


def test_eyes_and_classes_with_glaucoma_positive(data, table) -> None:
    assert data.name == "glaucoma-mvf" and len(data) == 170
    assert data.ids[:2] == ["GMVF-001", "GMVF-002"] and data.ids[-1] == "GMVF-170"
    task = data.tasks["glaucoma"]
    assert task.type == "binary" and task.classes == ("normal", "glaucoma")
    y = data.targets["glaucoma"]
    assert not np.isnan(y).any() and (y == 1).sum() == 85 and (y == 0).sum() == 85
    np.testing.assert_array_equal(y == 1, (table["Class"] == "glaucoma").to_numpy())


def test_modality_shapes_and_feature_names(data) -> None:
    assert {m: s.shape for m, s in data.specs.items()} == SHAPES
    assert list(data.specs) == ["hrt", "pressure", "perimetry", "fundus"]
    assert data.specs["hrt"].feature_names == HRT_COLUMNS and len(set(HRT_COLUMNS)) == 62
    assert data.specs["pressure"].feature_names == ("tension",)
    assert data.specs["perimetry"].feature_names == ("clv", "cs")
    assert data.specs["fundus"].feature_names == ("lora",)
    assert all(s.kind == "tabular" for s in data.specs.values())


def test_r_na_stays_missing_and_nothing_else_is(data, table) -> None:
    na = table.isna().sum()
    assert na[na > 0].to_dict() == NA_CELLS
    # an all-NaN row is an absent modality: the 4 eyes without a pressure reading
    assert data.presence.sum().to_dict() == {
        "hrt": 170,
        "pressure": 166,
        "perimetry": 170,
        "fundus": 170,
    }
    np.testing.assert_array_equal(
        data.sources["pressure"].present, table["tension"].notna().to_numpy()
    )
    perimetry = data.sources["perimetry"].values
    np.testing.assert_array_equal(np.isnan(perimetry), table[["clv", "cs"]].isna().to_numpy())
    for m in ("hrt", "pressure", "fundus"):
        assert not np.isnan(data.sources[m].values).any(), m
    for m, spec in data.specs.items():
        present = data.sources[m].present
        want = table[list(spec.feature_names)].to_numpy(np.float32)[present]
        np.testing.assert_array_equal(data.sources[m].values[present], want, err_msg=m)


def test_first_eye_values(data, table) -> None:
    row = table.iloc[0]
    assert row["id"] == "GMVF-001" and row["Class"] == "normal"
    for name, value in FIRST_EYE.items():
        assert row[name] == value, name
    assert data.sources["hrt"].values[0, 0] == np.float32(2.22)


def test_table_equals_the_source_rda(data, table) -> None:
    if not RDA.is_file():
        pytest.skip(f"{RDA} not here (apt-get download r-cran-ipred; dpkg-deb -x)")
    rdata = pytest.importorskip("rdata")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "Unknown encoding. Assumed ASCII."
        source = rdata.read_rda(RDA)["GlaucomaMVF"]
    source.columns = [str(c) for c in source.columns]
    assert list(table.columns) == ["id", *source.columns]
    for name in source.columns:
        if name == "Class":
            assert table[name].tolist() == [str(v) for v in source[name]]
            continue
        want = source[name].astype("Float64").to_numpy(dtype=np.float64, na_value=np.nan)
        np.testing.assert_array_equal(table[name].to_numpy(np.float64), want, err_msg=name)
    first = source.iloc[0]
    for m, spec in data.specs.items():
        want = first[list(spec.feature_names)].astype(np.float64).to_numpy(np.float32)
        np.testing.assert_array_equal(data.sources[m].values[0], want, err_msg=m)


def test_provenance_checksum_matches_the_shipped_csv() -> None:
    directory = Path(str(data_dir()))
    provenance = json.loads((directory / PROVENANCE_FILE).read_text())
    digest = hashlib.sha256((directory / CSV_FILE).read_bytes()).hexdigest()
    assert provenance["files"][CSV_FILE]["sha256"] == digest
    assert verify_glaucoma_mvf_checksum() == [CSV_FILE]
    assert provenance["source"]["debian_version"] == "0.9-13-1"
    assert provenance["source"]["license"] == "GPL-2+"


def test_tampered_or_missing_csv_is_named(tmp_path: Path) -> None:
    copy = tmp_path / "glaucoma_mvf"
    shutil.copytree(Path(str(data_dir())), copy)
    csv = copy / CSV_FILE
    original = csv.read_bytes()
    csv.write_bytes(original.replace(b"37.3444", b"37.3445", 1))
    with pytest.raises(DataError, match=CSV_FILE):
        verify_glaucoma_mvf_checksum(copy)
    csv.unlink()
    with pytest.raises(DataError, match="missing"):
        verify_glaucoma_mvf_checksum(copy)


def test_shipped_files_are_small_and_licensed() -> None:
    directory = Path(str(data_dir()))
    assert (directory / CSV_FILE).stat().st_size < 100_000
    notice = (directory / "NOTICE").read_text()
    for needle in ("GPL-2+", "gpl-2.0", "r-cran-ipred 0.9-13-1", "Torsten Hothorn", "unmodified"):
        assert needle in notice, needle
    licence = directory / "GPL-2"  # GPL-2 section 1: the licence text travels with the data
    assert licence.read_text().split()[:6] == [
        "GNU",
        "GENERAL",
        "PUBLIC",
        "LICENSE",
        "Version",
        "2,",
    ]
    provenance = json.loads((directory / PROVENANCE_FILE).read_text())
    assert provenance["license_text"]["sha256"] == hashlib.sha256(licence.read_bytes()).hexdigest()


def test_registry_entry() -> None:
    info = pf.datasets.dataset_info("glaucoma-mvf")
    assert "glaucoma-mvf" in pf.datasets.list_datasets()
    assert info.extra is None
    assert info.licence == "GPL-2+ (ipred, Debian r-cran-ipred 0.9-13-1)"


def test_train_only_modalities_can_be_hidden(data) -> None:
    assert TRAIN_ONLY == ("perimetry", "fundus")
    honest = data.drop_modalities(TRAIN_ONLY)
    present = honest.presence.sum().to_dict()
    assert present == {"hrt": 170, "pressure": 166, "perimetry": 0, "fundus": 0}
    np.testing.assert_array_equal(honest.targets["glaucoma"], data.targets["glaucoma"])


def test_the_benchmark_view_leaves_the_train_only_modalities_out():
    """The label was defined from perimetry and fundus: the benchmark scores hrt + pressure."""
    from polyfuse.datasets import load_honest
    from polyfuse.evaluation.suites import suite_datasets

    honest = load_honest("glaucoma-mvf")
    assert list(honest.specs) == ["hrt", "pressure"] and len(honest) == 170
    (chosen,), _, _ = suite_datasets("default", ["glaucoma-mvf"], None)
    assert list(chosen.specs) == ["hrt", "pressure"]
    assert list(load_honest("tcga-acc").specs) == list(pf.datasets.load("tcga-acc").specs)
