"""`polyfuse embed`: a config's encoded modalities written once as files a config trains on.

The embeddings are computed (or read back from the cache) exactly as training would, then
written beside a copy of the manifest: a text or image modality becomes feature columns
`<modality>__<encoder>_<j>` of `manifest.parquet` (an absent sample's row empty, so it stays
absent), a slide modality one CLAM-layout HDF5 bag per sample under `<modality>/`. The folder
also gets `experiment.yaml`, the same experiment reading those files instead of the raw inputs,
so `polyfuse cv <folder>/experiment.yaml` trains on the embeddings without any encoder loaded.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from polyfuse.config import ExperimentConfig, ModalityConfig, dump_config
from polyfuse.data.dataset import ArraySource, FileSource
from polyfuse.data.manifest import load_frame, read_table
from polyfuse.errors import ConfigError
from polyfuse.io import atomic_write, write_text

__all__ = ["write_embeddings"]

MARKER = "embed.json"
"""Written in the output folder: a folder holding it may be written again (a re-run)."""


def write_embeddings(
    config: ExperimentConfig, out: Path, modalities: list[str] | None = None
) -> Path:
    """Embed `modalities` (default: every one with an encoder) of `config`'s manifest into
    `out`; returns the new experiment file. Nothing of the user's is overwritten: `out` must be
    new, empty, or an earlier output of this command."""
    data = config.data
    if data.table is None:
        raise ConfigError("polyfuse embed reads a manifest table (data.table)")
    encoded = [
        m
        for m, mod in data.modalities.items()
        if mod.encoder is not None and not mod.encoder.trainable  # fine-tuned: nothing fixed
    ]
    chosen = encoded if modalities is None else modalities
    for m in chosen:
        mod = data.modalities.get(m)
        if mod is not None and mod.encoder is not None and mod.encoder.trainable:
            raise ConfigError(
                f"modality '{m}' fine-tunes its backbone inside the model (trainable: true), so "
                "its embeddings change as it trains; there is nothing to embed once"
            )
        if m not in encoded:
            raise ConfigError(
                f"modality '{m}' has no encoder to embed it with (modalities with one: "
                f"{encoded or 'none'}); add an `encoder:` section to it"
            )
    if not chosen:
        raise ConfigError("no modality has an encoder: add `encoder: {name: ...}` to one")
    _check_output(out)
    root = data.root if data.root is not None else data.table.parent
    base = _new_root(data.modalities, chosen, root, out)
    frame = read_table(data.table, id_column=data.id_column, what="manifest table")
    picked = {m: data.modalities[m] for m in chosen}
    dataset = load_frame(
        frame, picked, {}, id_column=data.id_column, root=root, where=data.table.name
    )
    out.mkdir(parents=True, exist_ok=True)
    mods = dict(data.modalities)
    for m in chosen:
        source = dataset.sources[m]
        encoder = picked[m].encoder
        assert encoder is not None
        if isinstance(source, ArraySource):
            prefix = f"{m}__{encoder.name}_"
            columns = [f"{prefix}{j}" for j in range(source.values.shape[1])]
            clash = [c for c in columns if c in frame.columns]
            if clash:
                raise ConfigError(f"the manifest already has column(s) {clash[:3]}; rename them")
            values = np.where(source.present[:, None], source.values, np.nan)
            block = pd.DataFrame(values, columns=columns, index=frame.index)
            frame = pd.concat([frame, block], axis=1)
            mods[m] = ModalityConfig(kind="tabular", prefix=prefix)
        else:
            assert isinstance(source, FileSource)
            column = f"{m}__{encoder.name}_bag"
            frame[column] = _copy_bags(source, dataset.ids, out / m, base)
            mods[m] = ModalityConfig(kind="bag", path_column=column)
    manifest = out / "manifest.parquet"
    atomic_write(manifest, lambda p: frame.to_parquet(p, index=False))
    new_data = data.model_copy(update={"table": manifest, "root": base, "modalities": mods})
    experiment = out / "experiment.yaml"
    write_text(experiment, dump_config(config.model_copy(update={"data": new_data})))
    write_text(out / MARKER, json.dumps({"modalities": chosen}) + "\n")
    return experiment


def _check_output(out: Path) -> None:
    if out.exists() and any(out.iterdir()) and not (out / MARKER).exists():
        raise ConfigError(
            f"{out} exists and holds files polyfuse did not write; choose a new folder"
        )


def _new_root(
    modalities: dict[str, ModalityConfig], chosen: list[str], root: Path, out: Path
) -> Path:
    """The data root of the written experiment: the old one when `out` lies inside it (the
    files of modalities left as they were still resolve), else `out`, which is refused while
    another modality reads files under the old root (its paths could not reach them)."""
    if out.resolve().is_relative_to(root.resolve()):
        return root
    others = [m for m, mod in modalities.items() if mod.path_column and m not in chosen]
    if others:
        raise ConfigError(
            f"modality '{others[0]}' reads files under the data root {root}, which the written "
            f"experiment could not reach from {out}; write the embeddings inside the data root "
            f"(e.g. -o {root / 'embedded'})"
        )
    return out


def _copy_bags(source: FileSource, ids: list[str], folder: Path, base: Path) -> list[str | None]:
    """Each sample's cached bag copied to `<folder>/<id>.h5`; paths relative to `base`."""
    folder.mkdir(parents=True, exist_ok=True)
    paths: list[str | None] = []
    for sample, bag in zip(ids, source.paths, strict=True):
        if bag is None:
            paths.append(None)
            continue
        target = folder / f"{_file_name(sample)}.h5"
        atomic_write(target, lambda p, bag=bag: shutil.copyfile(bag, p))
        link = Path(f"{bag}.slide")  # where its slide is, for explain's heatmap
        if link.is_file():
            atomic_write(Path(f"{target}.slide"), lambda p, link=link: shutil.copyfile(link, p))
        paths.append(target.resolve().relative_to(base.resolve()).as_posix())
    return paths


def _file_name(sample: str) -> str:
    """A sample id as a file name; an id with '/' or ':' gets its hash too, so that two ids
    never share a file."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in sample)
    return safe if safe == sample else f"{safe}-{hashlib.sha256(sample.encode()).hexdigest()[:8]}"
