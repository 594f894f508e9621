"""The shipped TCGA-ACC tables match datasets.md section 1 and their recorded checksums."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from polyfuse.datasets.provenance import PROVENANCE_FILE
from polyfuse.datasets.tcga_acc_files import (
    MODALITY_FILES,
    TARGETS_FILE,
    data_dir,
    read_tcga_acc_tables,
    verify_checksums,
)
from polyfuse.errors import DataError

EXPECTED_SHAPES = {
    "clinical": (92, 7),
    "rna": (79, 198),
    "cnv": (90, 198),
    "mirna": (80, 471),
    "mutation": (90, 97),
    "rppa": (46, 33),
}
SUBTYPES = [
    "C1A.C1B",
    "mRNA_K4",
    "MethyLevel",
    "miRNA.cluster",
    "SCNA.cluster",
    "protein.cluster",
    "COC",
    "OncoSign",
]
# derived from the omics or the outcome itself: must never be clinical inputs
LEAKY = [
    *SUBTYPES,
    "purity",
    "ploidy",
    "genome_doublings",
    "ADS",
    "vital_status",
    "days_to_death",
    "days_to_last_followup",
]


@pytest.fixture(scope="module")
def tables() -> tuple[dict[str, pd.DataFrame], pd.DataFrame]:
    return read_tcga_acc_tables()


def usable(targets: pd.DataFrame) -> pd.Series:
    """Patients with usable follow-up (one death is recorded on day 0 and is not usable)."""
    return (targets["os_time"] > 0) & targets["os_event"].notna()


def test_modalities_and_shapes(tables) -> None:
    modalities, targets = tables
    assert set(modalities) == set(MODALITY_FILES)
    assert {name: frame.shape for name, frame in modalities.items()} == EXPECTED_SHAPES
    assert targets.shape[0] == 92


def test_patient_ids_are_unique_12_char_and_known(tables) -> None:
    modalities, targets = tables
    everyone = modalities["clinical"].index
    assert targets.index.equals(everyone)
    for name, frame in modalities.items():
        ids = frame.index
        assert ids.name == "patient", name
        assert ids.is_unique, name
        assert ids.is_monotonic_increasing, name
        assert (ids.str.len() == 12).all(), name
        assert ids.str.match(r"^TCGA-[A-Z0-9]{2}-[A-Z0-9]{4}$").all(), name
        assert ids.isin(everyone).all(), name


def test_omics_are_float32_and_complete(tables) -> None:
    modalities, _ = tables
    for name, frame in modalities.items():
        if name == "clinical":
            continue
        assert (frame.dtypes == np.float32).all(), name
        assert frame.columns.is_unique, name
        assert not frame.isna().any().any(), name
    assert set(np.unique(modalities["mutation"].to_numpy())) <= {0.0, 1.0}


def test_clinical_has_raw_inputs_and_no_leakage(tables) -> None:
    clinical = tables[0]["clinical"]
    assert not set(LEAKY) & set(clinical.columns)
    assert list(clinical.columns) == [
        "years_to_birth",
        "gender",
        "pathologic_stage",
        "pathology_T_stage",
        "pathology_N_stage",
        "radiation_therapy",
        "residual_tumor",
    ]
    assert clinical["years_to_birth"].notna().all()
    assert set(clinical["gender"]) == {"female", "male"}
    # R's NA stays missing: never a number, never the text "NA" / "None"
    assert clinical["pathologic_stage"].isna().sum() == 2
    assert clinical["residual_tumor"].isna().sum() == 3
    assert set(clinical["pathologic_stage"].dropna()) == {
        "stage i",
        "stage ii",
        "stage iii",
        "stage iv",
    }


def test_survival_targets(tables) -> None:
    _, targets = tables
    ok = usable(targets)
    assert ok.sum() == 91
    assert (targets.loc[ok, "os_time"] > 0).all()
    assert targets.loc[ok, "os_event"].sum() == 33
    assert set(targets["os_event"].dropna()) <= {0.0, 1.0}


def test_subtypes_are_string_targets(tables) -> None:
    _, targets = tables
    for name in SUBTYPES:
        values = targets[name].dropna()
        assert len(values) > 0, name
        assert all(isinstance(v, str) for v in values), name
    assert targets["protein.cluster"].isna().sum() == 47
    assert targets["C1A.C1B"].isna().sum() == 14


def test_checksums_verify() -> None:
    checked = verify_checksums()
    assert set(checked) == {*MODALITY_FILES.values(), TARGETS_FILE}


def test_tampered_file_is_named(tmp_path: Path) -> None:
    source = Path(str(data_dir()))
    copy = tmp_path / "tcga_acc"
    shutil.copytree(source, copy)
    rna = copy / MODALITY_FILES["rna"]
    original = rna.read_bytes()
    rna.write_bytes(original[:-1] + bytes([original[-1] ^ 1]))
    with pytest.raises(DataError, match=MODALITY_FILES["rna"]):
        verify_checksums(copy)
    rna.write_bytes(original)
    assert verify_checksums(copy)
    (copy / MODALITY_FILES["rppa"]).unlink()
    with pytest.raises(DataError, match="missing"):
        verify_checksums(copy)


def test_shipped_files_are_small_and_licensed() -> None:
    directory = Path(str(data_dir()))
    total = sum(p.stat().st_size for p in directory.iterdir() if p.is_file())
    assert total < 1_000_000
    notice = (directory / "NOTICE").read_text()
    assert "Artistic-2.0" in notice
    assert "TCGA" in notice
    assert (directory / PROVENANCE_FILE).is_file()
