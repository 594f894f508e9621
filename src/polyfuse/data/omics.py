"""A MuData ``.h5mu`` file (each mod a tabular modality, targets in ``obs``) or an AnnData
``.h5ad`` file (one tabular modality named after the file) → a `MultimodalDataset`."""

from __future__ import annotations

import contextlib
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from polyfuse.config import DataConfig, ModalityConfig
from polyfuse.data.cells import first_few
from polyfuse.data.columns import require_columns
from polyfuse.data.dataset import ArraySource, MultimodalDataset, Source
from polyfuse.data.modalities import array_modality
from polyfuse.data.specs import ModalitySpec
from polyfuse.data.targets import load_targets, task_columns
from polyfuse.errors import ConfigError, DataError, did_you_mean, require


def load_omics(config: DataConfig, path: Path) -> MultimodalDataset:
    """MuData (.h5mu: each mod a modality) or AnnData (.h5ad: one modality) → dataset."""
    data = _read_omics(path)
    where = path.name
    mods = _declared_mods(config, data, path)
    ids = [str(v) for v in data.obs_names]
    dups = [f"'{i}' ×{n}" for i, n in Counter(ids).items() if n > 1]
    if dups:
        raise DataError(
            f"{where}: {len(dups)} duplicate sample id(s) in obs_names: "
            f"{first_few(dups, quote=False)}; each sample must appear once"
        )
    obs = data.obs.reset_index(drop=True)
    obs.columns = [str(c) for c in obs.columns]
    for tname, task in config.tasks.items():
        require_columns(task_columns(task), list(obs.columns), f"task '{tname}'", f"{where} obs")
    tasks, targets = load_targets(config.tasks, obs, ids, where)
    specs: dict[str, ModalitySpec] = {}
    sources: dict[str, Source] = {}
    for name, (adata, mod) in mods.items():
        specs[name], sources[name] = _omics_modality(name, adata, mod, ids, where)
    return MultimodalDataset(ids, specs, sources, tasks, targets, name=path.stem)


def _read_omics(path: Path) -> Any:
    """The MuData/AnnData object; a wrong suffix, a missing or an unreadable file is named."""
    suffix = path.suffix.lower()
    if suffix not in (".h5mu", ".h5ad"):
        raise ConfigError(
            f"data.mudata {path}: unknown format '{suffix or '(none)'}'; use .h5mu or .h5ad"
        )
    if not path.is_file():
        raise DataError(f"omics file not found: {path}; check data.mudata in the config")
    package, function = ("mudata", "read_h5mu") if suffix == ".h5mu" else ("anndata", "read_h5ad")
    module = require(package, "omics")
    try:
        with _mudata_options(module):
            return getattr(module, function)(path)
    except Exception as exc:  # h5py/anndata raise many types for corrupt files
        raise DataError(
            f"{path}: cannot read the {suffix} file ({type(exc).__name__}: {exc})"
        ) from exc


def _mudata_options(module: Any) -> contextlib.AbstractContextManager[Any]:
    """Read the file's own obs, without pulling mod columns (mudata's future default; the old
    one warns on every read)."""
    try:
        return module.set_options(pull_on_update=False)
    # anndata has no such option, nor has an older mudata; the latter then warns by itself, and
    # pulled mod columns only add obs columns, which no task reads unless it names them
    except (AttributeError, KeyError, TypeError, ValueError):
        return contextlib.nullcontext()


def _declared_mods(
    config: DataConfig, data: Any, path: Path
) -> dict[str, tuple[Any, ModalityConfig | None]]:
    """Modality name → (its AnnData, its config or None when the config declares none)."""
    where = path.name
    if path.suffix.lower() == ".h5ad":
        if len(config.modalities) > 1:
            raise ConfigError(
                f"{where} is an AnnData file with one modality, but the config declares "
                f"{len(config.modalities)}; use a .h5mu file for several"
            )
        name, mod = next(iter(config.modalities.items()), (path.stem, None))
        return {name: (data, mod)}
    available = {str(k): v for k, v in data.mod.items()}
    selected = dict(config.modalities) or dict.fromkeys(available)
    for name in selected:
        if name not in available:
            raise ConfigError(
                f"modality '{name}' is not a mod of {where}{did_you_mean(name, available)}; "
                f"it has {first_few(available)}"
            )
    return {name: (available[name], selected[name]) for name in selected}


def _omics_modality(
    name: str, adata: Any, mod: ModalityConfig | None, ids: list[str], where: str
) -> tuple[ModalitySpec, ArraySource]:
    """One AnnData (a MuData mod) → (N, F) float32 over the dataset's samples."""
    features = [str(v) for v in adata.var_names]
    columns = _kept_features(name, mod, features, where)
    obs_names = [str(v) for v in adata.obs_names]
    position = {s: i for i, s in enumerate(ids)}
    unknown = [s for s in obs_names if s not in position]
    if unknown:
        raise DataError(
            f"{where}: {len(unknown)} sample(s) of mod '{name}' are not in the MuData obs: "
            f"{first_few(unknown)}; update the MuData (mdata.update()) before saving"
        )
    dups = sorted({s for s, n in Counter(obs_names).items() if n > 1})
    if dups:
        raise DataError(f"{where}: mod '{name}' has duplicate obs names {first_few(dups)}")
    matrix = adata.X
    if matrix is None:
        raise DataError(f"{where}: mod '{name}' has no X matrix")
    if hasattr(matrix, "toarray"):  # scipy sparse
        matrix = matrix.toarray()
    matrix = np.asarray(matrix)
    if matrix.dtype.kind not in "biuf":
        raise DataError(f"{where}: mod '{name}' X has dtype {matrix.dtype}; numbers expected")
    values = np.full((len(ids), len(columns)), np.nan)
    rows = np.array([position[s] for s in obs_names], dtype=np.int64)
    values[rows] = matrix[:, columns]
    return array_modality(name, values, [features[j] for j in columns], ids, where)


def _kept_features(
    name: str, mod: ModalityConfig | None, features: list[str], where: str
) -> list[int]:
    """The indices of the features a mod's config keeps (`columns` or `prefix`), else all."""
    owner = f"modality '{name}'"
    if mod is None:
        return list(range(len(features)))
    if mod.kind != "tabular":
        raise ConfigError(f"{owner}: a mod of {where} is tabular, not '{mod.kind}'")
    if mod.path_column or mod.text_column or mod.table or mod.categorical:
        raise ConfigError(
            f"{owner}: for a {Path(where).suffix} file give only kind and optionally "
            "columns or prefix (features to keep)"
        )
    if mod.columns:
        require_columns(mod.columns, features, owner, f"{where} var_names")
        lookup = {f: j for j, f in enumerate(features)}
        return [lookup[c] for c in mod.columns]
    if mod.prefix:
        columns = [j for j, f in enumerate(features) if f.startswith(mod.prefix)]
        if not columns:
            raise ConfigError(f"{owner}: no feature of {where} starts with '{mod.prefix}'")
        return columns
    return list(range(len(features)))
