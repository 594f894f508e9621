"""GSE7390 (TRANSBIG) breast cancer from scikit-survival: clinical + 76 gene probes, DMFS.

The data are GPL-3 and stay in scikit-survival (the `[bench]` extra); nothing is copied here.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from polyfuse.config import ModalityConfig, TaskConfig
from polyfuse.data.checks import check_dataset
from polyfuse.data.dataset import MultimodalDataset
from polyfuse.data.manifest import load_frame
from polyfuse.errors import require

CLINICAL = ["age", "er", "grade", "size"]


def load_gse7390() -> MultimodalDataset:
    """198 patients; `clinical` (er, grade one-hot) and `genes`; task `dmfs` (survival)."""
    sksurv_datasets = require("sksurv.datasets", "bench")
    x, y = sksurv_datasets.load_breast_cancer()
    genes = [c for c in x.columns if c not in CLINICAL]
    frame = x.astype({"er": str, "grade": str}).copy()
    frame["id"] = [f"GSE7390-{i:03d}" for i in range(len(frame))]
    frame["dmfs_time"] = y["t.tdm"]
    frame["dmfs_event"] = y["e.tdm"].astype(float)
    modalities = {
        "clinical": ModalityConfig(kind="tabular", columns=CLINICAL, categorical=["er", "grade"]),
        "genes": ModalityConfig(kind="tabular", columns=genes),
    }
    tasks = {
        "dmfs": TaskConfig(type="survival", time_column="dmfs_time", event_column="dmfs_event")
    }
    data = load_frame(
        pd.DataFrame(frame),
        modalities,
        tasks,
        id_column="id",
        root=Path("."),
        where="gse7390",
        name="gse7390",
    )
    check_dataset(data, "gse7390")
    return data
