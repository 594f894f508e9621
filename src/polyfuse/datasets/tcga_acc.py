"""TCGA-ACC (miniACC) as a `MultimodalDataset`: clinical + five omics, overall survival.

92 adrenocortical carcinoma patients with natural block-wise missingness (see
`reference/datasets.md`). Choices made here, all documented in `describe()`'s modalities:

* clinical: age and six categorical columns, one-hot encoded (19 features); subtype and
  purity columns are never inputs (they were derived from the omics: leakage);
* RNA-seq and miRNA-seq are normalised counts spanning six orders of magnitude: log2(x + 1);
  copy number (GISTIC), mutations and RPPA are used as shipped;
* overall survival in days; one patient who died on day 0 has no usable follow-up and gets an
  unknown target (91 usable patients, 33 events), as in the published floors.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from polyfuse.config import ModalityConfig, TaskConfig
from polyfuse.data.checks import check_dataset
from polyfuse.data.dataset import MultimodalDataset
from polyfuse.data.manifest import load_frame
from polyfuse.datasets.tcga_acc_files import read_tcga_acc_tables

LOG_COUNTS = ("rna", "mirna")
CLINICAL_CATEGORICAL = (
    "gender",
    "pathologic_stage",
    "pathology_T_stage",
    "pathology_N_stage",
    "radiation_therapy",
    "residual_tumor",
)


# Subtype calls derived from the omics: usable as targets only, never as inputs (leakage).
SUBTYPE_TASKS = {
    "c1a_c1b": ("C1A.C1B", "binary"),
    "mrna_k4": ("mRNA_K4", "multiclass"),
    "methylevel": ("MethyLevel", "multiclass"),
    "mirna_cluster": ("miRNA.cluster", "multiclass"),
    "scna_cluster": ("SCNA.cluster", "multiclass"),
    "protein_cluster": ("protein.cluster", "multiclass"),
    "coc": ("COC", "multiclass"),
    "oncosign": ("OncoSign", "multiclass"),
}


def load_tcga_acc_multitask() -> MultimodalDataset:
    """TCGA-ACC with survival plus the eight omics-derived subtype calls as extra tasks
    (a patient without a call has an unknown target for that task)."""
    return load_tcga_acc(subtypes=True)


def load_tcga_acc(subtypes: bool = False) -> MultimodalDataset:
    """The bundled TCGA-ACC cohort with one survival task, `os` (and the subtype tasks)."""
    tables, targets = read_tcga_acc_tables()
    patients = tables["clinical"].index
    parts = [tables["clinical"].reindex(patients)]
    modalities = {
        "clinical": ModalityConfig(
            kind="tabular",
            columns=list(tables["clinical"].columns),
            categorical=list(CLINICAL_CATEGORICAL),
        )
    }
    for name, frame in tables.items():
        if name == "clinical":
            continue
        values = np.log2(frame + 1.0) if name in LOG_COUNTS else frame
        parts.append(values.reindex(patients).add_prefix(f"{name}:"))
        modalities[name] = ModalityConfig(kind="tabular", prefix=f"{name}:")
    os_time = targets["os_time"].where(targets["os_time"] > 0)
    parts.append(pd.DataFrame({"os_time": os_time, "os_event": targets["os_event"]}))
    tasks = {
        "os": TaskConfig(
            type="survival", time_column="os_time", event_column="os_event", time_unit="days"
        )
    }
    if subtypes:
        parts.append(targets[[column for column, _ in SUBTYPE_TASKS.values()]])
        tasks |= {
            name: TaskConfig(type=kind, column=column)
            for name, (column, kind) in SUBTYPE_TASKS.items()
        }
    frame = pd.concat(parts, axis=1).rename_axis("patient").reset_index()
    data = load_frame(
        frame,
        modalities,
        tasks,
        id_column="patient",
        root=Path("."),
        where="tcga-acc",
        name="tcga-acc-multitask" if subtypes else "tcga-acc",
    )
    check_dataset(data, data.name)
    return data
