"""Raw access to the TCGA-ACC (miniACC) tables shipped inside polyfuse.

The tables are produced by ``scripts/convert_tcga_acc.py`` (see PROVENANCE.json and NOTICE next
to them). This module only reads them back, untouched, so that the loader that encodes them
(one-hot, scaling) and any audit of the shipped bytes rest on the same files. Reading goes through
``importlib.resources`` so it works from a wheel or zip as well as from a source checkout.
"""

from __future__ import annotations

from importlib.resources import files
from importlib.resources.abc import Traversable

import pandas as pd

from polyfuse.datasets.provenance import verify_provenance
from polyfuse.errors import DataError

DATA_DIR_PARTS = ("datasets", "data", "tcga_acc")
# modality name used across polyfuse -> shipped file (file names keep the source's assay names)
MODALITY_FILES: dict[str, str] = {
    "clinical": "clinical.parquet",
    "rna": "RNASeq2GeneNorm.parquet",
    "cnv": "gistict.parquet",
    "mirna": "miRNASeqGene.parquet",
    "mutation": "Mutations.parquet",
    "rppa": "RPPAArray.parquet",
}
TARGETS_FILE = "targets.parquet"


def data_dir() -> Traversable:
    """The directory holding the shipped files (anchored on the regular ``polyfuse`` package)."""
    root = files("polyfuse")
    for part in DATA_DIR_PARTS:
        root = root / part
    return root


def _read_parquet(directory: Traversable, name: str) -> pd.DataFrame:
    """One shipped table, indexed by patient id; a missing or unreadable file is a DataError."""
    resource = directory / name
    try:
        with resource.open("rb") as fh:
            frame = pd.read_parquet(fh)
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read TCGA-ACC table {name}: {exc}") from exc
    if frame.index.name != "patient":
        raise DataError(f"TCGA-ACC table {name} is not indexed by 'patient'")
    return frame


def read_tcga_acc_tables(
    directory: Traversable | None = None,
) -> tuple[dict[str, pd.DataFrame], pd.DataFrame]:
    """({modality: frame}, targets) exactly as shipped: no encoding, no imputation.

    Omics frames hold only the patients that have the assay (block-wise missingness is the point
    of this cohort); clinical and targets hold all 92 patients.
    """
    directory = data_dir() if directory is None else directory
    modalities = {name: _read_parquet(directory, fn) for name, fn in MODALITY_FILES.items()}
    return modalities, _read_parquet(directory, TARGETS_FILE)


def verify_checksums(directory: Traversable | None = None) -> list[str]:
    """Check the shipped files against their sha256 in PROVENANCE.json; return their names
    (a DataError names the file that is missing or differs)."""
    directory = data_dir() if directory is None else directory
    return verify_provenance(directory, "TCGA-ACC", "scripts/convert_tcga_acc.py")
