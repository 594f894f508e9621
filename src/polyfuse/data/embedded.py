"""A modality read through a pretrained encoder: text and images become embedding vectors (a
tabular modality), whole slides become bags of tile embeddings (HDF5 files in the cache).

This runs after every modality was read and checked, so a bad cell or file is reported before
any encoder loads. Each input is looked up in the `EmbeddingCache` by its content first: only
new or changed inputs are embedded, in batches of `encoder.batch_size` (memory stays bounded
whatever the cohort), and a stopped run resumes where it stopped.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from polyfuse.config import EncoderConfig, ModalityConfig
from polyfuse.data.cells import cell_label
from polyfuse.data.dataset import FileSource, Source
from polyfuse.data.modalities import array_modality
from polyfuse.data.readers import resolve_path
from polyfuse.data.specs import Backbone, ModalitySpec
from polyfuse.embed.cache import EmbeddingCache, cache_root, content_key
from polyfuse.embed.encoders import (
    Encoder,
    check_encoder,
    encoder_fingerprint,
    image_size,
    load_encoder,
)
from polyfuse.errors import DataError
from polyfuse.progress import Progress

__all__ = [
    "check_encoders",
    "embed_modality",
    "embed_slides",
    "slide_paths",
    "with_backbone",
]

log = logging.getLogger(__name__)


def check_encoders(modalities: dict[str, ModalityConfig]) -> None:
    """Every modality's encoder checked by name, before any data are read."""
    for m, mod in modalities.items():
        if mod.encoder is not None:
            check_encoder(m, mod.kind, mod.encoder)


def embed_modality(
    name: str,
    config: EncoderConfig,
    spec: ModalitySpec,
    source: Source,
    ids: list[str],
    where: str,
    *,
    progress: bool | None = None,
) -> tuple[ModalitySpec, Source]:
    """A text or image modality → its embeddings, an `(N, dim)` tabular modality (absent
    samples stay absent). Features are named `<encoder>[j]`. The encoder is loaded only when
    an input is missing from the cache: a warm read (a prediction, a second run) never pays
    for loading it."""
    dims = spec.spatial_dims or 2
    cache = EmbeddingCache(cache_root(config.cache), encoder_fingerprint(config, dims))
    encoder: Encoder | None = None
    present = np.flatnonzero(source.present)
    rows_done: list[np.ndarray] = []
    computed = 0
    seconds = 0.0  # inside the encoder only: its loading is not its throughput
    with Progress(_shown(progress)) as bar:
        bar.add(f"embedding {name} ({config.name})", len(present))
        for first in range(0, len(present), config.batch_size):
            rows = present[first : first + config.batch_size]
            items = source.items(rows)
            keys = [content_key(x) for x in items]
            vectors = [cache.get(k) for k in keys]
            todo = [j for j, v in enumerate(vectors) if v is None]
            if todo:
                encoder = encoder or _loaded(config, dims)
                start = time.perf_counter()
                fresh = _embed(
                    encoder, [items[j] for j in todo], name, [ids[rows[j]] for j in todo]
                )
                seconds += time.perf_counter() - start
                for j, v in zip(todo, fresh, strict=True):
                    cache.put(keys[j], v)
                    vectors[j] = v
            rows_done.append(np.stack(vectors))
            computed += len(todo)
            bar.advance(len(rows))
    _log_throughput(name, config.name, computed, len(present), seconds)
    width = rows_done[0].shape[1] if rows_done else _loaded(config, dims).dim
    matrix = np.full((len(ids), width), np.nan)
    if rows_done:
        matrix[present] = np.concatenate(rows_done)
    names = [f"{config.name}[{j}]" for j in range(width)]
    return array_modality(name, matrix, names, ids, where)


def with_backbone(spec: ModalitySpec, config: EncoderConfig) -> ModalitySpec:
    """An image modality whose model fine-tunes the backbone: the pixels stay, the spec names
    the backbone (built by the model, its weights checked then)."""
    assert config.weights is not None
    size = image_size(config, spec.spatial_dims)
    backbone = Backbone(config.name, str(config.weights), size, config.normalize)
    return dataclasses.replace(spec, backbone=backbone)


def slide_paths(
    name: str, mod: ModalityConfig, frame: pd.DataFrame, ids: list[str], root: Path
) -> list[Path | None]:
    """A column of whole-slide files, each resolved and opened once (a missing, corrupt or
    unsupported slide is an error naming the sample) before anything is embedded."""
    from polyfuse.embed.slides import open_slide

    assert mod.path_column is not None
    slides: list[Path | None] = []
    for i, cell in enumerate(frame[mod.path_column]):
        if cell_label(cell) is None:
            slides.append(None)
            continue
        try:
            path = resolve_path(root, str(cell).strip(), sample_id=ids[i], column=mod.path_column)
            open_slide(path).close()
        except DataError as exc:
            raise DataError(f"modality '{name}', sample '{ids[i]}': {exc}") from exc
        slides.append(path)
    return slides


def embed_slides(
    name: str,
    config: EncoderConfig,
    slides: list[Path | None],
    ids: list[str],
    *,
    progress: bool | None = None,
) -> tuple[ModalitySpec, FileSource]:
    """Checked slides → bags of tile embeddings: CLAM-layout HDF5 files in the cache, one per
    slide content, so a slide is cut and embedded once whatever the runs that read it."""
    from polyfuse.embed.slides import SlideTiling, embed_slide, link_slide

    tiling = SlideTiling(
        magnification=config.magnification,
        tile_size=config.tile_size,
        min_tissue=config.min_tissue,
        base_magnification=config.base_magnification,
        batch_size=config.batch_size,
    )
    config = config.model_copy(update={"size": list(config.size or (config.tile_size,) * 2)})
    fingerprint = encoder_fingerprint(config, 2) | {"tiling": dataclasses.asdict(tiling)}
    cache = EmbeddingCache(cache_root(config.cache), fingerprint)
    encoder: Encoder | None = None
    bags: list[Path | None] = []
    cut, tiles, seconds = 0, 0, 0.0
    with Progress(_shown(progress)) as bar:
        bar.add(f"embedding {name} ({config.name}, slides)", sum(p is not None for p in slides))
        for i, slide in enumerate(slides):
            if slide is None:
                bags.append(None)
                continue
            bag = cache.path(cache.file_key(slide), ".h5")
            if not bag.exists():
                encoder = encoder or _loaded(config, 2)
                start = time.perf_counter()
                try:
                    tiles += embed_slide(slide, encoder.embed_tiles, bag, tiling)
                except DataError as exc:
                    raise DataError(f"modality '{name}', sample '{ids[i]}': {exc}") from exc
                seconds += time.perf_counter() - start
                cut += 1
            link_slide(bag, slide)
            bags.append(bag)
            bar.advance()
    rate = f" ({tiles} tiles, {tiles / seconds:.1f} tiles/s)" if cut and seconds > 0 else ""
    log.info(
        "modality '%s': %d slide(s) cut and embedded by %s%s, %d from the cache",
        name,
        cut,
        config.name,
        rate,
        sum(b is not None for b in bags) - cut,
    )
    made = [b for b in bags if b is not None]
    width = _bag_width(made[0]) if made else _loaded(config, 2).dim
    return ModalitySpec(name, "bag", (width,)), FileSource(bags, "bag")


_LOADED: dict[str, Encoder] = {}
"""Encoders loaded in this process, by fingerprint: a server embeds each request's new inputs
without loading MiniLM or a backbone again (a few, so memory stays bounded)."""


def _loaded(config: EncoderConfig, dims: int) -> Encoder:
    key = json.dumps(encoder_fingerprint(config, dims), sort_keys=True, default=str)
    if key not in _LOADED:
        while len(_LOADED) >= 4:
            _LOADED.pop(next(iter(_LOADED)))
        _LOADED[key] = load_encoder(config, dims)
    return _LOADED[key]


def _bag_width(path: Path) -> int:
    import h5py

    with h5py.File(path, "r") as f:
        return int(f["features"].shape[-1])


def _embed(encoder: Encoder, items: list, modality: str, samples: list[str]) -> np.ndarray:
    """One batch through the encoder; images must share a shape (the reader checked it)."""
    batch = items if isinstance(items[0], str) else np.stack(items)
    try:
        vectors = np.asarray(encoder.embed(batch), np.float32)
    except DataError as exc:
        raise DataError(f"modality '{modality}', samples {samples[:3]}: {exc}") from exc
    if not np.isfinite(vectors).all():
        raise DataError(
            f"modality '{modality}': encoder '{encoder.name}' gave non-finite embeddings for "
            f"samples {samples[:3]}; check the inputs' values"
        )
    return vectors


def _shown(progress: bool | None) -> bool:
    """A progress bar when asked, or by default when a person watches a terminal."""
    return sys.stderr.isatty() if progress is None else progress


def _log_throughput(modality: str, encoder: str, computed: int, total: int, seconds: float) -> None:
    rate = f", {computed / seconds:.1f}/s" if computed and seconds > 0 else ""
    log.info(
        "modality '%s': %d embedded by %s, %d from the cache%s",
        modality,
        computed,
        encoder,
        total - computed,
        rate,
    )
