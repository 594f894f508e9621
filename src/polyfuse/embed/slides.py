"""Whole-slide images cut into tiles and embedded as a bag, streamed to a CLAM-layout HDF5 file.

A slide has billions of pixels, so it is never held in memory. Tissue is found on a thumbnail
(Otsu's threshold on HSV saturation, near-white background excluded); the slide is cut into
non-overlapping tiles at the chosen objective power, each read from the nearest pyramid level
of at least that resolution, and only tiles that are mostly tissue are kept. Tiles are
embedded `batch_size` at a time and appended to the output file as they come, so memory stays
bounded whatever the slide's size; the file is written under a temporary name and renamed at
the end, so a stopped run never leaves half a bag under the final name.

OpenSlide (the `slides` extra), h5py and NumPy are imported only when a slide is read, so
importing this module is cheap.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from polyfuse.errors import ConfigError, DataError, require
from polyfuse.io import atomic_write
from polyfuse.progress import Progress

if TYPE_CHECKING:
    import numpy as np

__all__ = [
    "SLIDE_SUFFIXES",
    "SlideTiling",
    "TileGrid",
    "embed_slide",
    "link_slide",
    "open_slide",
    "read_slide_link",
    "slide_thumbnail",
    "tile_grid",
    "tissue_mask",
]

SLIDE_SUFFIXES: tuple[str, ...] = (
    ".svs",
    ".tif",
    ".tiff",
    ".ndpi",
    ".vms",
    ".vmu",
    ".scn",
    ".mrxs",
    ".svslide",
    ".bif",
    ".czi",
    ".dcm",
)
"""What OpenSlide 4.0.1 (the `openslide-bin` 4 wheel) reads: Aperio (.svs, .tif), Hamamatsu
(.ndpi, .vms, .vmu), Leica (.scn), MIRAX (.mrxs), Philips (.tiff), Sakura (.svslide), Ventana
(.bif, .tif), Zeiss (.czi), DICOM WSI (.dcm), Trestle and generic tiled TIFF (.tif)."""

TISSUE_SIDE = 2048
"""Longest side, in pixels, of the thumbnail tissue is found on: fine enough to place a tile of a
40× slide of 100,000 pixels within a few thumbnail pixels, small enough to read in a moment."""

MIN_SATURATION = 20
"""Saturation (0–255) below which a pixel is never tissue, whatever Otsu says: on a blank or
faintly noisy slide Otsu would split the noise in two and call half of it tissue."""

WHITE = 220
"""A pixel whose every channel is at least this is background (glass), however saturated."""

_STRIP_PIXELS = 1 << 22
"""Pixels read at once (16 MiB as RGBA) when a thumbnail is made, so that a slide without a
pyramid, whose thumbnail comes from level 0, is read in strips, not whole."""


@dataclasses.dataclass(frozen=True)
class SlideTiling:
    """How a slide is cut into tiles.

    Args:
        magnification: the tiles' objective power (20.0: 20×).
        tile_size: a tile's side in pixels at that power (what the encoder sees).
        min_tissue: the share of a tile that must be tissue for it to be kept.
        base_magnification: the objective power of level 0, for slides whose file does not
            state it (`openslide.objective-power`); a stated power wins.
        batch_size: tiles embedded per call of the encoder (bounds memory).
    """

    magnification: float = 20.0
    tile_size: int = 224
    min_tissue: float = 0.5
    base_magnification: float | None = None
    batch_size: int = 64

    def __post_init__(self) -> None:
        """Refuse what would fail deep inside a run (a zero step, a division by zero)."""
        wrong = {
            "magnification": self.magnification <= 0,
            "tile_size": self.tile_size < 1,
            "min_tissue": not 0 < self.min_tissue <= 1,
            "base_magnification": self.base_magnification is not None
            and self.base_magnification <= 0,
            "batch_size": self.batch_size < 1,
        }
        for name, bad in wrong.items():
            if bad:
                allowed = "in (0, 1]" if name == "min_tissue" else "positive"
                raise ConfigError(
                    f"slide tiling: {name} must be {allowed}, not {getattr(self, name)}"
                )


@dataclasses.dataclass(frozen=True)
class TileGrid:
    """The tiles of one slide: where they are and how they are read.

    Args:
        coords: `(N, 2)` int64, each tile's top-left corner (x, y) in level-0 pixels.
        tile_size_level0: a tile's side in level-0 pixels.
        level: the pyramid level tiles are read from.
        read_size: a tile's side in pixels of that level (resized to `tile_size` when different).
        base_magnification: level 0's objective power, as stated by the slide or the tiling.
    """

    coords: np.ndarray
    tile_size_level0: int
    level: int
    read_size: int
    base_magnification: float


def open_slide(path: str | os.PathLike[str]) -> Any:
    """The slide as an `openslide.OpenSlide`, or a DataError naming the file: missing, of a
    format OpenSlide does not read, or one it cannot open (corrupt or truncated)."""
    openslide = require("openslide", "slides")
    path = Path(path)
    name = path.name.lower()
    if not name.endswith(SLIDE_SUFFIXES):
        shown = f"'{path.suffix}'" if path.suffix else "(none)"
        raise DataError(
            f"{path}: unsupported format {shown} for a whole slide; OpenSlide reads "
            f"{', '.join(SLIDE_SUFFIXES)}"
        )
    if not path.exists():
        raise DataError(f"{path}: file not found")
    if not path.is_file():
        raise DataError(f"{path}: not a regular file (is it a directory?)")
    try:
        return openslide.OpenSlide(path)
    except openslide.OpenSlideUnsupportedFormatError as exc:
        raise DataError(
            f"{path}: OpenSlide cannot open this file: not a slide it recognises, or corrupt "
            "or truncated"
        ) from exc
    except openslide.OpenSlideError as exc:
        raise DataError(f"{path}: OpenSlide cannot read this slide (corrupt? {exc})") from exc


def slide_thumbnail(path: str | os.PathLike[str], max_size: int = 1024) -> tuple[np.ndarray, float]:
    """An RGB uint8 thumbnail `(h, w, 3)` whose longest side is at most `max_size`, and its
    scale (thumbnail pixels per level-0 pixel), to draw tile coordinates on it."""
    slide = open_slide(path)
    try:
        return _thumbnail(slide, Path(path), max_size)
    finally:
        slide.close()


def tissue_mask(rgb: np.ndarray) -> np.ndarray:
    """Which pixels of an RGB thumbnail `(h, w, 3)` are tissue: stained tissue is saturated
    and glass is not, so saturation above its Otsu threshold (and `MIN_SATURATION`), minus
    near-white pixels (every channel at least `WHITE`)."""
    import numpy as np

    red, green, blue = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    high = np.maximum(np.maximum(red, green), blue)
    low = np.minimum(np.minimum(red, green), blue)
    saturation = ((high - low).astype(np.uint16) * 255 // np.maximum(high, 1)).astype(np.uint8)
    threshold = max(_otsu(saturation), MIN_SATURATION)
    return (saturation > threshold) & (low < WHITE)


def tile_grid(path: str | os.PathLike[str], tiling: SlideTiling) -> TileGrid:
    """The tiles `embed_slide` would embed, without embedding them (to preview or check)."""
    slide = open_slide(path)
    try:
        return _plan(slide, Path(path), tiling)
    finally:
        slide.close()


def embed_slide(
    path: str | os.PathLike[str],
    embed_tiles: Callable[[np.ndarray], np.ndarray],
    out: str | os.PathLike[str],
    tiling: SlideTiling,
    *,
    progress: bool = False,
) -> int:
    """Cut a slide into tissue tiles, embed them and write the bag to `out`; the tile count.

    `embed_tiles` takes uint8 RGB tiles `(n, tile_size, tile_size, 3)`, n ≤ `batch_size`, and
    returns float32 `(n, D)`. `out` is an HDF5 file in the CLAM layout: `features` (N, D)
    float32 and `coords` (N, 2) int64, the level-0 (x, y) of each tile's top-left corner; its
    attributes `source` (the slide's file name), `tile_size_level0`, `magnification`,
    `tile_size`, `base_magnification` and `level0_dimensions` (width, height) link it back to
    the slide, for heatmaps. Nothing is left at `out` when this fails or is interrupted.
    """
    path, out = Path(path), Path(out)
    slide = open_slide(path)
    try:
        grid = _plan(slide, path, tiling)
        atomic_write(
            out, lambda tmp: _write_bag(tmp, slide, path, grid, tiling, embed_tiles, progress)
        )
    finally:
        slide.close()
    return len(grid.coords)


def link_slide(bag: str | os.PathLike[str], slide: str | os.PathLike[str]) -> None:
    """Record beside a bag where its slide is now (`<bag>.slide`, a one-line text file), for
    `explain` to draw the attention over the slide's thumbnail. A sidecar, not an HDF5
    attribute: the bag is never opened for writing once made, so processes that read it at
    the same time (DDP ranks, benchmark workers) never meet a lock. Cached bags are keyed by
    content, so the path is refreshed whenever the same slide is read from another place."""
    sidecar = Path(f"{bag}.slide")
    text = f"{Path(slide).resolve()}\n"
    if not sidecar.exists() or sidecar.read_text() != text:
        atomic_write(sidecar, lambda tmp: tmp.write_text(text))


def read_slide_link(h5_path: str | os.PathLike[str]) -> tuple[str, float] | None:
    """The slide (its path where `link_slide` recorded it, else the file name `embed_slide`
    stored) and the tile side in level-0 pixels of a bag; None for a bag from elsewhere (an
    `.npy` file, a CLAM file of another tool)."""
    path = Path(h5_path)
    if path.suffix.lower() not in (".h5", ".hdf5"):
        return None
    import h5py

    try:
        with h5py.File(path, "r") as store:
            source = store.attrs.get("source")
            side = store.attrs.get("tile_size_level0")
    except OSError as exc:
        raise DataError(f"{path}: not a readable HDF5 file ({exc})") from exc
    if source is None or side is None:
        return None
    sidecar = Path(f"{path}.slide")
    if sidecar.is_file():
        source = sidecar.read_text().strip()
    return str(source), float(side)


# --- planning -----------------------------------------------------------------------------


def _plan(slide: Any, path: Path, tiling: SlideTiling) -> TileGrid:
    """Where the tissue tiles lie and how to read them at the tiling's magnification."""
    base = _base_magnification(slide, path, tiling)
    if tiling.magnification > base:
        raise DataError(
            f"{path}: the slide was scanned at {base:g}×, so it cannot be tiled at "
            f"{tiling.magnification:g}×; set magnification to at most {base:g}"
        )
    downsample = base / tiling.magnification
    side0 = round(tiling.tile_size * downsample)
    level = slide.get_best_level_for_downsample(downsample)
    read_size = max(1, round(side0 / slide.level_downsamples[level]))
    thumbnail, scale = _thumbnail(slide, path, TISSUE_SIDE)
    mask = tissue_mask(thumbnail)
    if not mask.any():
        raise DataError(f"{path}: no tissue found on the slide (is it blank, or all background?)")
    coords = _tissue_tiles(mask, scale, slide.dimensions, side0, tiling.min_tissue)
    if len(coords) == 0:
        raise DataError(
            f"{path}: no tile of {side0} level-0 pixels is {tiling.min_tissue:.0%} tissue; "
            "lower min_tissue or raise magnification"
        )
    return TileGrid(coords, side0, level, read_size, base)


def _base_magnification(slide: Any, path: Path, tiling: SlideTiling) -> float:
    """Level 0's objective power: the slide's own statement, else the tiling's."""
    stated = slide.properties.get("openslide.objective-power")
    try:
        power = float(stated) if stated is not None else None
    except ValueError:
        power = None
    if power is not None and power > 0:
        return power
    if tiling.base_magnification is not None:
        return tiling.base_magnification
    raise DataError(
        f"{path}: the slide does not state its objective power (openslide.objective-power); "
        "set base_magnification to the power of its full-resolution level (e.g. 20 or 40)"
    )


def _tissue_tiles(
    mask: np.ndarray, scale: float, dimensions: tuple[int, int], side0: int, min_tissue: float
) -> np.ndarray:
    """Level-0 corners of the whole tiles of a grid from (0, 0) whose tissue share on the mask
    (thumbnail pixels per level-0 pixel: `scale`) is at least `min_tissue`, row by row."""
    import numpy as np

    width, height = dimensions
    xs = np.arange(width // side0, dtype=np.int64) * side0
    ys = np.arange(height // side0, dtype=np.int64) * side0
    integral = np.pad(mask.cumsum(0, dtype=np.int32).cumsum(1), ((1, 0), (1, 0)))

    def edges(starts: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
        first = np.clip(np.round(starts * scale).astype(np.int64), 0, size - 1)
        last = np.clip(np.round((starts + side0) * scale).astype(np.int64), first + 1, size)
        return first, last

    x0, x1 = edges(xs, mask.shape[1])
    y0, y1 = edges(ys, mask.shape[0])
    inside = (
        integral[np.ix_(y1, x1)]
        - integral[np.ix_(y0, x1)]
        - integral[np.ix_(y1, x0)]
        + integral[np.ix_(y0, x0)]
    )
    share = inside / np.outer(y1 - y0, x1 - x0)
    rows, cols = np.nonzero(share >= min_tissue)
    return np.stack([xs[cols], ys[rows]], axis=1)


def _thumbnail(slide: Any, path: Path, max_size: int) -> tuple[np.ndarray, float]:
    """The whole slide shrunk to at most `max_size` on its longest side (never enlarged), read
    in strips from the level nearest above that size, so memory stays bounded even for a
    slide without a pyramid."""
    import numpy as np
    from PIL import Image

    width, height = slide.dimensions
    scale = min(1.0, max_size / max(width, height))
    out_w, out_h = max(1, round(width * scale)), max(1, round(height * scale))
    level = slide.get_best_level_for_downsample(1 / scale)
    level_w, level_h = slide.level_dimensions[level]
    downsample = slide.level_downsamples[level]
    strip = max(1, _STRIP_PIXELS // level_w)
    parts = []
    for top in range(0, level_h, strip):
        rows = min(strip, level_h - top)
        first, last = round(top * out_h / level_h), round((top + rows) * out_h / level_h)
        if last > first:
            region = _read(slide, path, (0, round(top * downsample)), level, (level_w, rows))
            flat = _on_background(slide, region)
            parts.append(np.asarray(flat.resize((out_w, last - first), Image.Resampling.BOX)))
    return np.concatenate(parts), out_w / width


# --- reading and writing ------------------------------------------------------------------


def _write_bag(
    tmp: Path,
    slide: Any,
    path: Path,
    grid: TileGrid,
    tiling: SlideTiling,
    embed_tiles: Callable[[np.ndarray], np.ndarray],
    progress: bool,
) -> None:
    """Embed the grid's tiles batch by batch, appending each batch to `tmp` (CLAM layout)."""
    import h5py
    import numpy as np

    n = len(grid.coords)
    with h5py.File(tmp, "w") as store, Progress(progress) as bar:
        store.attrs.update(
            source=path.name,
            tile_size_level0=grid.tile_size_level0,
            magnification=tiling.magnification,
            tile_size=tiling.tile_size,
            base_magnification=grid.base_magnification,
            level0_dimensions=np.asarray(slide.dimensions, np.int64),
        )
        store.create_dataset("coords", data=grid.coords.astype(np.int64))
        features = None
        bar.add(f"tiles of {path.name}", n)
        for start in range(0, n, tiling.batch_size):
            corners = grid.coords[start : start + tiling.batch_size]
            tiles = _read_tiles(slide, path, grid, corners, tiling.tile_size)
            vectors = _embedded(embed_tiles(tiles), len(corners), path)
            if features is None:
                width = vectors.shape[1]
                features = store.create_dataset(
                    "features",
                    shape=(0, width),
                    maxshape=(n, width),
                    chunks=(min(n, tiling.batch_size), width),
                    dtype=np.float32,
                )
            features.resize(start + len(vectors), axis=0)
            features[start:] = vectors
            bar.advance(len(corners))


def _embedded(vectors: Any, n: int, path: Path) -> np.ndarray:
    """The encoder's output as float32 `(n, D)`, finite (a NaN would poison a bag silently)."""
    import numpy as np

    vectors = np.asarray(vectors, dtype=np.float32)
    if vectors.ndim != 2 or len(vectors) != n:
        raise ValueError(
            f"embed_tiles returned shape {vectors.shape} for {n} tiles; expected ({n}, D)"
        )
    if not np.isfinite(vectors).all():
        raise DataError(f"{path}: the encoder gave non-finite embeddings for some of its tiles")
    return vectors


def _read_tiles(
    slide: Any, path: Path, grid: TileGrid, corners: np.ndarray, tile_size: int
) -> np.ndarray:
    """The tiles at `corners` as uint8 `(n, tile_size, tile_size, 3)` RGB."""
    import numpy as np
    from PIL import Image

    tiles = np.empty((len(corners), tile_size, tile_size, 3), np.uint8)
    size = (grid.read_size, grid.read_size)
    for i, (x, y) in enumerate(corners):
        tile = _on_background(slide, _read(slide, path, (int(x), int(y)), grid.level, size))
        if grid.read_size != tile_size:
            tile = tile.resize((tile_size, tile_size), Image.Resampling.BILINEAR)
        tiles[i] = np.asarray(tile)
    return tiles


def _read(
    slide: Any, path: Path, corner: tuple[int, int], level: int, size: tuple[int, int]
) -> Any:
    """`read_region`, its failures (a damaged tile) reported as the file's."""
    import openslide

    try:
        return slide.read_region(corner, level, size)
    except openslide.OpenSlideError as exc:
        raise DataError(f"{path}: OpenSlide cannot read this slide (corrupt? {exc})") from exc


def _on_background(slide: Any, region: Any) -> Any:
    """An RGBA region flattened to RGB over the slide's background colour (white unless the
    slide says otherwise): areas outside the scanned region are transparent, not black."""
    from PIL import Image

    colour = "#" + slide.properties.get("openslide.background-color", "ffffff")
    flat = Image.new("RGB", region.size, colour)
    flat.paste(region, None, region)
    return flat


def _otsu(values: np.ndarray) -> int:
    """Otsu's threshold of uint8 values: the cut that maximises the variance between the two
    classes (values above it are the second class)."""
    import numpy as np

    counts = np.bincount(values.ravel(), minlength=256).astype(np.float64)
    weight = np.cumsum(counts)
    total = weight[-1]
    mass = np.cumsum(counts * np.arange(256))
    below, above = weight[:-1], total - weight[:-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        mean_below = mass[:-1] / below
        mean_above = (mass[-1] - mass[:-1]) / above
        between = below * above * (mean_below - mean_above) ** 2
    between = np.nan_to_num(between, nan=-1.0)
    return int(np.argmax(between)) if between.max() > 0 else 255
