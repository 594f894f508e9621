"""GlaucomaMVF (R package ipred) as a `MultimodalDataset`: glaucoma diagnosis of 170 eyes.

85 glaucomatous and 85 normal eyes, matched by age and sex (`reference/datasets.md` §3). The
table ships with polyfuse (`datasets/data/glaucoma_mvf/`, GPL-2+ like its source: see the
NOTICE there), converted by `scripts/convert_glaucoma_mvf.py` from the Debian package
`r-cran-ipred` 0.9-13-1 with every value unchanged. Modalities, in the R column names:

* `hrt` (62 features): optic nerve head morphology from confocal laser scanning images
  (Heidelberg Retina Tomograph): areas, volumes, depths and contour heights, globally and in
  four sectors (`ag`, `at`, …, `mv`). Complete;
* `pressure` (1): intra-ocular pressure `tension`; R's NA in 4 eyes, which therefore lack
  the modality (an all-NaN row counts as absent);
* `perimetry` (2): visual field, Octopus perimeter: corrected loss variance `clv` (NA in 12
  eyes) and contrast sensitivity `cs` (NA in 1), kept as NaN inside the present rows;
* `fundus` (1): loss of rim area `lora` from stereo fundus photographs. Complete.

Task `glaucoma` (binary): column `Class`, classes ("normal", "glaucoma"), so glaucoma is the
positive class (label 1, the probability the model outputs).

**Train-only modalities.** The diagnosis was *defined* from `clv`, `cs` and `lora` (ipred's
documentation gives the rule: thresholds on clv, lora and cs). Given `perimetry` and `fundus`
at test time a model just re-reads the label, so at inference only `hrt` + `pressure` are
honest. Use `perimetry` and `fundus` in training only and hide them on the samples scored:

    >>> import polyfuse as pf  # doctest: +SKIP
    >>> from polyfuse.datasets.glaucoma import TRAIN_ONLY
    >>> data = pf.datasets.load("glaucoma-mvf")
    >>> train, test = data.subset(train_idx), data.subset(test_idx)
    >>> fitted = pf.train_model("late", train)  # learns from all four modalities
    >>> honest = test.drop_modalities(TRAIN_ONLY)  # absent in every test eye
    >>> scores = fitted.predict(honest)

`drop_modalities(names)` is `hide({m: np.ones(len(test), bool) for m in names})`; `hide` takes
per-sample masks. The registry marks both as train-only (`DatasetInfo.train_only`), so the
benchmark (`polyfuse benchmark -d glaucoma-mvf`, the full suite) loads the cohort without them
(`datasets.load_honest`): its numbers are for `hrt` + `pressure`. `pf.cross_validate` scores
test folds as given: for honest folds with train-only use, fit each split's training part and
score its test part with `TRAIN_ONLY` dropped, as above.

As for TCGA-ACC, the shipped file's sha256 is not checked on every load;
`verify_glaucoma_mvf_checksum()` checks it against PROVENANCE.json.
"""

from __future__ import annotations

from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path

import pandas as pd

from polyfuse.config import ModalityConfig, TaskConfig
from polyfuse.data.checks import check_dataset
from polyfuse.data.dataset import MultimodalDataset
from polyfuse.data.manifest import load_frame
from polyfuse.datasets import dataset_info
from polyfuse.datasets.provenance import verify_provenance
from polyfuse.errors import DataError

NAME = "glaucoma-mvf"
DATA_DIR_PARTS = ("datasets", "data", "glaucoma_mvf")
CSV_FILE = "glaucoma_mvf.csv"

# Heidelberg Retina Tomograph features, columns 1-62 of GlaucomaMVF in R's order; the last
# letter is the sector: global, temporal, superior, nasal, inferior.
HRT_COLUMNS = (
    *("ag", "at", "as", "an", "ai"),
    *("eag", "eat", "eas", "ean", "eai"),
    *("abrg", "abrt", "abrs", "abrn", "abri"),
    "hic",
    *("mhcg", "mhct", "mhcs", "mhcn", "mhci"),
    *("phcg", "phct", "phcs", "phcn", "phci"),
    "hvc",
    *("vbsg", "vbst", "vbss", "vbsn", "vbsi"),
    *("vasg", "vast", "vass", "vasn", "vasi"),
    *("vbrg", "vbrt", "vbrs", "vbrn", "vbri"),
    *("varg", "vart", "vars", "varn", "vari"),
    *("mdg", "mdt", "mds", "mdn", "mdi"),
    *("tmg", "tmt", "tms", "tmn", "tmi"),
    *("mr", "rnf", "mdic", "emd", "mv"),
)
MODALITY_COLUMNS: dict[str, tuple[str, ...]] = {
    "hrt": HRT_COLUMNS,
    "pressure": ("tension",),
    "perimetry": ("clv", "cs"),
    "fundus": ("lora",),
}
TRAIN_ONLY = dataset_info(NAME).train_only  # the registry says which (the benchmark reads it)
"""The label was defined from these: use them in training, hide them at inference."""
CLASS_COLUMN = "Class"
CLASSES = ("normal", "glaucoma")  # index 1 = positive class
ID_COLUMN = "id"
COLUMNS = (ID_COLUMN, *(c for cols in MODALITY_COLUMNS.values() for c in cols), CLASS_COLUMN)


def data_dir() -> Traversable:
    """The directory holding the shipped files (works from a wheel or a source checkout)."""
    root = files("polyfuse")
    for part in DATA_DIR_PARTS:
        root = root / part
    return root


def read_glaucoma_mvf_table(directory: Traversable | None = None) -> pd.DataFrame:
    """The shipped table exactly as converted: one row per eye, R's NA as NaN / None."""
    directory = data_dir() if directory is None else directory
    try:
        with (directory / CSV_FILE).open("rb") as fh:
            frame = pd.read_csv(
                fh,
                keep_default_na=False,
                na_values=[""],
                dtype={ID_COLUMN: str, CLASS_COLUMN: str},
            )
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read GlaucomaMVF table {CSV_FILE}: {exc}") from exc
    if tuple(frame.columns) != COLUMNS:
        raise DataError(
            f"GlaucomaMVF table {CSV_FILE} has unexpected columns; rerun "
            "scripts/convert_glaucoma_mvf.py or reinstall polyfuse"
        )
    return frame


def verify_glaucoma_mvf_checksum(directory: Traversable | None = None) -> list[str]:
    """Check the shipped files against their sha256 in PROVENANCE.json; return their names
    (a DataError names the file that is missing or differs)."""
    directory = data_dir() if directory is None else directory
    return verify_provenance(directory, "GlaucomaMVF", "scripts/convert_glaucoma_mvf.py")


def load_glaucoma_mvf() -> MultimodalDataset:
    """The bundled GlaucomaMVF cohort: modalities `hrt`, `pressure`, `perimetry`, `fundus`
    (the last two train-only: see the module docstring), task `glaucoma` (binary)."""
    frame = read_glaucoma_mvf_table()
    modalities = {
        m: ModalityConfig(kind="tabular", columns=list(cols))
        for m, cols in MODALITY_COLUMNS.items()
    }
    tasks = {"glaucoma": TaskConfig(type="binary", column=CLASS_COLUMN, classes=list(CLASSES))}
    data = load_frame(
        frame,
        modalities,
        tasks,
        id_column=ID_COLUMN,
        root=Path("."),
        where=NAME,
        name=NAME,
    )
    check_dataset(data, NAME)
    return data
