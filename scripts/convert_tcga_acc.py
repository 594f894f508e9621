#!/usr/bin/env python
"""Convert Bioconductor's ``miniACC`` (TCGA adrenocortical carcinoma) into the Parquet files that
polyfuse ships in ``src/polyfuse/datasets/data/tcga_acc/``.

Why a script: the shipped tables must be reproducible from a public, versioned source, with
checksums, so anyone can re-derive them. The source is the Debian package
``r-bioc-multiassayexperiment`` (bookworm 1.24.0), whose ``miniACC.RData`` holds an R S4
``MultiAssayExperiment``. R is not needed: ``rdata.parser`` gives the raw serialised tree and this
script walks the S4 slots, reference-class environments and pairlists itself (``rdata``'s
converter does not handle S4). Integer and logical vectors come back as numpy *masked* arrays;
the mask is kept so that R's NA stays missing instead of becoming a number.

Usage (from the repository root, dev extra installed)::

    python scripts/convert_tcga_acc.py            # apt-get update + download, then convert
    python scripts/convert_tcga_acc.py --deb X.deb  # convert a .deb fetched earlier

Choices (also recorded in PROVENANCE.json):

* patient id = first 12 characters of the TCGA sample barcode (checked against the sampleMap);
* when a patient has several samples in one assay, the lexicographically first barcode is kept;
* omics values are float32, rows sorted by patient id, columns in the source order;
* clinical holds only raw clinical inputs; subtype calls, purity, ploidy, genome doublings and
  ADS were derived from the omics and are leakage if used as inputs; the subtype calls go to
  ``targets.parquet`` as strings, the rest is not shipped;
* ``os_time`` = days_to_death, else days_to_last_followup (NaN if neither);
  ``os_event`` = 1.0 if vital_status == 1, 0.0 if 0, NaN if unknown.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from debian_rdata import (
    attrs,
    deb_field,
    deref,
    extract_rdata,
    fetch_deb,
    numbers,
    package_version,
    pairlist,
    sha256,
    strings,
)
from rdata import parser
from rdata.parser import RObject
from rdata.parser import RObjectType as RT

DEB_PACKAGE = "r-bioc-multiassayexperiment"
RDATA_PATH = "usr/lib/R/site-library/MultiAssayExperiment/data/miniACC.RData"
OUT_DIR = Path(__file__).resolve().parents[1] / "src/polyfuse/datasets/data/tcga_acc"
PATIENT_ID_LEN = 12

# assay name in the ExperimentList -> output file (the loader maps these to modality names)
ASSAYS: dict[str, str] = {
    "RNASeq2GeneNorm": "RNASeq2GeneNorm.parquet",
    "gistict": "gistict.parquet",
    "miRNASeqGene": "miRNASeqGene.parquet",
    "Mutations": "Mutations.parquet",
    "RPPAArray": "RPPAArray.parquet",
}
# raw clinical inputs, exactly as named in colData
CLINICAL_NUMERIC = ["years_to_birth"]
CLINICAL_CATEGORICAL = [
    "gender",
    "pathologic_stage",
    "pathology_T_stage",
    "pathology_N_stage",
    "radiation_therapy",
    "residual_tumor",
]
# derived from the omics: classification targets, never clinical inputs
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
NOT_SHIPPED_DERIVED = ["purity", "ploidy", "genome_doublings", "ADS"]
# no column statistics and a minimal pandas schema note: with hundreds of narrow columns these
# dominate the file size (about 2.5x smaller overall); dictionary encoding only for strings
PARQUET_OPTS: dict[str, Any] = {
    "compression": "zstd",
    "compression_level": 19,
    "write_statistics": False,
}


# --------------------------------------------------------------------------- fetching the source
# --------------------------------------------------------------------------- walking the R tree
def slot(obj: RObject, *names: str) -> RObject:
    """Follow a chain of S4 slots / attributes, failing loudly with the path if one is absent."""
    for i, name in enumerate(names):
        found = attrs(obj)
        if name not in found:
            raise KeyError(f"slot {'@'.join(names[: i + 1])} not found (have {sorted(found)})")
        obj = found[name]
    return obj


def column(obj: RObject) -> list[str | None] | np.ndarray:
    """One data-frame column: strings, or numbers with NaN for NA; factors become their labels."""
    obj = deref(obj)
    if obj.info.type == RT.STR:
        return strings(obj)
    found = attrs(obj)
    if "levels" in found:
        levels = strings(found["levels"])
        codes = numbers(obj)
        return [None if np.isnan(c) else levels[int(c) - 1] for c in codes]
    return numbers(obj)


def named_list(obj: RObject) -> dict[str, RObject]:
    """An R list (VECSXP) with a names attribute, as a dict."""
    obj = deref(obj)
    names = strings(slot(obj, "names"))
    return {str(n): deref(v) for n, v in zip(names, obj.value, strict=True)}


def dframe(obj: RObject) -> pd.DataFrame:
    """An S4Vectors DFrame (S4: rownames, nrows, listData) as a pandas DataFrame."""
    cols = {name: column(col) for name, col in named_list(slot(obj, "listData")).items()}
    frame = pd.DataFrame(cols)
    rownames = deref(slot(obj, "rownames"))
    if rownames.info.type == RT.STR:
        frame.index = pd.Index(strings(rownames))
    return frame


def environment_bindings(env: RObject) -> dict[str, RObject]:
    """Variables of an R environment: hashed (buckets of pairlists) or an unhashed frame."""
    value = deref(env).value
    out: dict[str, RObject] = {}
    table = deref(value.hash_table)
    buckets = table.value if table.info.type == RT.VEC else []
    for bucket in [*buckets, value.frame]:
        for name, val in pairlist(bucket):
            if name is not None:
                out[name] = val
    return out


def matrix(obj: RObject) -> tuple[np.ndarray, list[str | None] | None, list[str | None] | None]:
    """A base R matrix (column-major) with its dimnames, NA kept as NaN."""
    obj = deref(obj)
    found = attrs(obj)
    nrow, ncol = (int(x) for x in numbers(found["dim"]))
    values = numbers(obj).reshape((nrow, ncol), order="F")
    rows = cols = None
    if "dimnames" in found and deref(found["dimnames"]).info.type == RT.VEC:
        dn = [deref(d) for d in deref(found["dimnames"]).value]
        rows = strings(dn[0]) if dn[0].info.type == RT.STR else None
        cols = strings(dn[1]) if dn[1].info.type == RT.STR else None
    return values, rows, cols


def assay_matrix(experiment: RObject) -> tuple[np.ndarray, list[str], list[str]]:
    """First assay of an experiment (features x samples) with feature and sample names.

    A SummarizedExperiment keeps its assays in a ShallowSimpleListAssays reference class: an
    environment whose field ``.->data`` is a SimpleList of matrices. Plain matrices (Mutations)
    are returned as they are.
    """
    experiment = deref(experiment)
    if experiment.info.type != RT.S4:
        values, rows, cols = matrix(experiment)
        if rows is None or cols is None:
            raise ValueError("a plain assay matrix without dimnames")
        return values, [str(r) for r in rows], [str(c) for c in cols]
    env = slot(experiment, "assays", ".xData")
    simple_list = environment_bindings(env)[".->data"]
    first = deref(slot(simple_list, "listData")).value[0]
    values, rows, cols = matrix(first)
    features = strings(slot(experiment, "NAMES"))
    samples = strings(slot(experiment, "colData", "rownames"))
    if rows is not None and rows != features:
        raise ValueError("assay rownames disagree with the experiment's NAMES")
    if cols is not None and cols != samples:
        raise ValueError("assay colnames disagree with the experiment's colData rownames")
    return values, [str(f) for f in features], [str(s) for s in samples]


# --------------------------------------------------------------------------- building the tables
def per_patient(
    values: np.ndarray, features: list[str], samples: list[str], sample_to_patient: dict[str, str]
) -> tuple[pd.DataFrame, list[str]]:
    """Samples x features frame indexed by patient; keeps the lexicographically first barcode."""
    frame = pd.DataFrame(values.T.astype(np.float32), index=samples, columns=features)
    if frame.columns.duplicated().any():
        dup = frame.columns[frame.columns.duplicated()].tolist()
        raise ValueError(f"duplicate feature names: {dup[:5]}")
    for barcode in samples:
        mapped = sample_to_patient.get(barcode)
        if mapped is not None and mapped != barcode[:PATIENT_ID_LEN]:
            raise ValueError(f"sampleMap maps {barcode} to {mapped}, not its 12-char prefix")
    frame = frame.sort_index()
    patients = frame.index.str.slice(0, PATIENT_ID_LEN)
    keep = ~patients.duplicated(keep="first")
    dropped = frame.index[~keep].tolist()
    frame = frame.loc[keep]
    frame.index = pd.Index(patients[keep], name="patient")
    return frame.sort_index(), dropped


def build_tables(rdata_file: Path) -> tuple[dict[str, pd.DataFrame], dict[str, Any]]:
    """All output tables (file name -> frame) and the notes that go into the provenance."""
    parsed = parser.parse_file(rdata_file)
    objects = dict(pairlist(parsed.object))
    mae = objects["miniACC"]

    col_data = dframe(slot(mae, "colData"))
    sample_map = dframe(slot(mae, "sampleMap"))
    sample_to_patient = dict(zip(sample_map["colname"], sample_map["primary"], strict=True))
    experiments = named_list(slot(mae, "ExperimentList", "listData"))

    tables: dict[str, pd.DataFrame] = {}
    dropped: dict[str, list[str]] = {}
    for assay, filename in ASSAYS.items():
        values, features, samples = assay_matrix(experiments[assay])
        tables[filename], dropped[assay] = per_patient(values, features, samples, sample_to_patient)

    patients = pd.Index(col_data["patientID"].astype(str), name="patient")
    if not (patients == col_data.index).all() or patients.duplicated().any():
        raise ValueError("colData rownames and patientID disagree or repeat")
    for filename, frame in tables.items():
        unknown = frame.index.difference(patients)
        if len(unknown):
            raise ValueError(f"{filename}: patients not in colData: {unknown.tolist()[:5]}")

    clinical = pd.DataFrame(index=patients)
    for name in CLINICAL_NUMERIC:
        clinical[name] = col_data[name].to_numpy(dtype=np.float64)
    for name in CLINICAL_CATEGORICAL:
        clinical[name] = pd.Series(col_data[name].to_numpy(), index=patients, dtype=object)
    tables["clinical.parquet"] = clinical.sort_index()

    death = col_data["days_to_death"].to_numpy(dtype=np.float64)
    follow = col_data["days_to_last_followup"].to_numpy(dtype=np.float64)
    vital = col_data["vital_status"].to_numpy(dtype=np.float64)
    targets = pd.DataFrame(index=patients)
    targets["os_time"] = np.where(np.isnan(death), follow, death)
    targets["os_event"] = np.where(np.isnan(vital), np.nan, (vital == 1).astype(np.float64))
    for name in SUBTYPES:
        raw = col_data[name]
        if raw.dtype.kind == "f":  # protein.cluster is an integer code in R
            raw = raw.map(lambda v: None if np.isnan(v) else str(int(v)))
        targets[name] = pd.Series(raw.to_numpy(), index=patients, dtype=object)
    tables["targets.parquet"] = targets.sort_index()

    notes = {
        "dropped_duplicate_samples": dropped,
        "colData_columns": list(col_data.columns),
        "event_with_death_time_missing": int(((vital == 1) & np.isnan(death)).sum()),
        "death_time_but_alive": int(((vital == 0) & ~np.isnan(death)).sum()),
    }
    return tables, notes


# --------------------------------------------------------------------------- writing
def write_parquet(frame: pd.DataFrame, path: Path) -> None:
    """zstd Parquet; the index is stored as column ``patient`` and restored by pandas on read.

    pyarrow's pandas metadata lists every column (twice, with the Arrow schema copy): for 471
    miRNA columns that is bigger than the data. Only the index entry is kept, which is all that
    ``pandas.read_parquet`` needs to restore the index; column dtypes come from the Arrow schema.
    """
    table = pa.Table.from_pandas(frame, preserve_index=True)
    meta = json.loads(table.schema.metadata[b"pandas"])
    meta["columns"] = [c for c in meta["columns"] if c["name"] in meta["index_columns"]]
    table = table.replace_schema_metadata({b"pandas": json.dumps(meta).encode()})
    strings_cols = [f.name for f in table.schema if pa.types.is_string(f.type)]
    strings_cols = [c for c in strings_cols if c not in meta["index_columns"]]
    pq.write_table(table, path, use_dictionary=strings_cols or False, **PARQUET_OPTS)


NOTICE_TEXT = """\
TCGA-ACC (miniACC) data shipped with polyfuse
==============================================

The Parquet files in this directory were derived by scripts/convert_tcga_acc.py from the
dataset `miniACC` of the Bioconductor package MultiAssayExperiment {version}
(Debian package {package}, file {rdata_path}).

MultiAssayExperiment
Copyright: 2019 Marcel Ramos, Levi Waldron, MultiAssay SIG
License: Artistic-2.0 (https://opensource.org/licenses/Artistic-2.0)

The files here are a Modified Version in the sense of the Artistic License 2.0: the data were
converted from R's RData format to Apache Parquet, at most one sample per patient per assay,
the clinical columns were split into raw clinical inputs and outcome/subtype targets, and values
were stored as float32. The original data are available unmodified from Bioconductor
(https://bioconductor.org/packages/MultiAssayExperiment/) and from Debian.

The underlying measurements come from The Cancer Genome Atlas (TCGA) adrenocortical carcinoma
study (Zheng et al., Cancer Cell 2016, PMID 27165744). TCGA open-access data are public:
they may be redistributed and used without a data access agreement. Please acknowledge the
TCGA Research Network (https://www.cancer.gov/tcga) and follow the NCI Genomic Data Commons
data use policies (https://gdc.cancer.gov/access-data/data-access-processes-and-tools).
"""


def convert(deb: Path, rdata_file: Path, out_dir: Path) -> dict[str, Any]:
    """Write every table, NOTICE and PROVENANCE.json; return the provenance record."""
    tables, notes = build_tables(rdata_file)
    out_dir.mkdir(parents=True, exist_ok=True)
    for stale in out_dir.glob("*.parquet"):
        stale.unlink()
    files: dict[str, dict[str, Any]] = {}
    for filename, frame in sorted(tables.items()):
        path = out_dir / filename
        write_parquet(frame, path)
        files[filename] = {
            "sha256": sha256(path),
            "bytes": path.stat().st_size,
            "rows": int(frame.shape[0]),
            "columns": int(frame.shape[1]),
        }
    version = deb_field(deb, "Version")
    (out_dir / "NOTICE").write_text(
        NOTICE_TEXT.format(version=version, package=DEB_PACKAGE, rdata_path=RDATA_PATH)
    )
    targets = tables["targets.parquet"]
    usable = (targets["os_time"] > 0) & targets["os_event"].notna()
    provenance: dict[str, Any] = {
        "dataset": "TCGA-ACC (Bioconductor MultiAssayExperiment::miniACC)",
        "source": {
            "debian_package": DEB_PACKAGE,
            "debian_version": version,
            "deb_file": deb.name,
            "deb_sha256": sha256(deb),
            "path_in_deb": RDATA_PATH,
            "rdata_sha256": sha256(rdata_file),
            "license": "Artistic-2.0",
        },
        "converted_on": dt.date.today().isoformat(),
        "converter": "scripts/convert_tcga_acc.py",
        "software": {
            "python": sys.version.split()[0],
            "rdata": package_version("rdata"),
            "pandas": pd.__version__,
            "pyarrow": pa.__version__,
        },
        "files": files,
        "summary": {
            "patients": int(tables["clinical.parquet"].shape[0]),
            "usable_followup": int(usable.sum()),
            "events": int(targets.loc[usable, "os_event"].sum()),
        },
        "choices": {
            "patient_id": "first 12 characters of the TCGA sample barcode (checked vs sampleMap)",
            "duplicate_samples": "per assay and patient keep the lexicographically first barcode",
            "dropped_duplicate_samples": notes["dropped_duplicate_samples"],
            "omics_dtype": "float32; rows = patients having the assay, sorted by patient id",
            "clinical_columns": CLINICAL_NUMERIC + CLINICAL_CATEGORICAL,
            "clinical_missing": "categoricals are strings, NA stored as null",
            "targets": {
                "os_time": "days_to_death, else days_to_last_followup; NaN if neither",
                "os_event": "1 if vital_status == 1, 0 if 0, NaN if unknown",
                "usable_followup": "os_time > 0 and os_event known; os_time == 0 is kept as is",
                "zero_time_patients": targets.index[targets["os_time"] == 0].tolist(),
                "subtypes": SUBTYPES,
                "subtypes_dtype": "string (protein.cluster integer code as text), NA as null",
            },
            "not_shipped_leaky_columns": NOT_SHIPPED_DERIVED,
            "event_with_death_time_missing": notes["event_with_death_time_missing"],
            "death_time_but_alive": notes["death_time_but_alive"],
            "parquet": {
                **PARQUET_OPTS,
                "dictionary_encoding": "string columns only",
                "pandas_metadata": "index entry only (index restored on read)",
            },
        },
        "colData_columns": notes["colData_columns"],
    }
    (out_dir / "PROVENANCE.json").write_text(json.dumps(provenance, indent=2) + "\n")
    return provenance


def main(argv: list[str] | None = None) -> int:
    """Fetch (or take) the .deb, convert, and print a short summary."""
    args = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args.add_argument("--deb", type=Path, help="use this .deb instead of running apt-get download")
    args.add_argument("--skip-update", action="store_true", help="do not run apt-get update")
    args.add_argument("--out", type=Path, default=OUT_DIR, help="output directory")
    opts = args.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="tcga_acc_"))
    try:
        deb = opts.deb.resolve() if opts.deb else fetch_deb(DEB_PACKAGE, workdir, opts.skip_update)
        rdata_file = extract_rdata(deb, workdir, RDATA_PATH)
        provenance = convert(deb, rdata_file, opts.out)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    total = sum(f["bytes"] for f in provenance["files"].values())
    for name, info in provenance["files"].items():
        print(f"{name:28s} {info['rows']:4d} x {info['columns']:4d}  {info['bytes']:7d} B")
    print(f"total parquet bytes: {total}; summary: {provenance['summary']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
