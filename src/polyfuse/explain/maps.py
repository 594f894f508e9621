"""Where in an image, and where on a slide, the model looked: spatial maps for a few patients.

* Images: the per-pixel integrated-gradient attributions (`features.py`) summed over channels,
  their magnitude drawn over the image (a 3-D volume at its slice of largest attribution).
* Whole-slide bags: each patch's attention drawn at its coordinates on the slide (the CLAM
  file's `coords`), over the slide's thumbnail when the slide is at hand, so a pathologist
  sees the regions, not instance ranks.

Grey scale, so that a figure stays readable printed or by a colour-blind reader: the image in
grey, attribution or attention as a second grey-scale panel. Over a slide's thumbnail (in grey)
the attention is one hue, blue, whose lightness alone carries the value, so it still reads in
grey.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from polyfuse.figures import figure, save

PATIENTS = 4


def _slice(volume: np.ndarray, weight: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A 2-D view: the image (C, H, W) or the slice of a volume (C, D, H, W) where the
    attribution is largest, channels averaged, with its map."""
    if volume.ndim == 4:
        k = int(np.abs(weight).sum(axis=(0, 2, 3)).argmax())
        volume, weight = volume[:, k], weight[:, k]
    return volume.mean(0), np.abs(weight).sum(0)


def plot_pixel_maps(
    images: np.ndarray, attributions: np.ndarray, ids: Sequence[str], title: str, path: Path
) -> Path:
    """For up to `PATIENTS` patients: the image, and beside it |attribution| per pixel."""
    n = min(PATIENTS, len(ids))
    fig, axes = figure(2.6 * n, 5.4, nrows=2, ncols=n, squeeze=False)
    for j in range(n):
        image, weight = _slice(images[j], attributions[j])
        axes[0, j].imshow(image, cmap="gray")
        axes[0, j].set_title(str(ids[j]), fontsize="small")
        axes[1, j].imshow(weight, cmap="gray_r")
        for ax in axes[:, j]:
            ax.set_axis_off()
    axes[1, 0].set_title("|attribution| (dark: large)", fontsize="small", loc="left")
    fig.suptitle(title)
    return save(fig, path)


def plot_slide_attention(
    coords: Sequence[np.ndarray],
    attention: Sequence[np.ndarray],
    ids: Sequence[str],
    title: str,
    path: Path,
    thumbnails: Sequence[tuple[np.ndarray, float] | None] | None = None,
    tile_size_level0: Sequence[float | None] | None = None,
) -> Path:
    """For up to `PATIENTS` slides: each patch's attention at its (x, y), the slide's y axis
    downwards as on a viewer. Where a slide's thumbnail is given (RGB or grey, and its scale:
    thumbnail pixels per level-0 pixel, as `polyfuse.embed.slides.slide_thumbnail` returns),
    the attention is a heatmap over the thumbnail, each patch a square of its side in
    level-0 pixels (`tile_size_level0`, needed then); elsewhere each patch is a grey square
    (dark: attended) on a blank canvas."""
    n = min(PATIENTS, len(ids))
    fig, axes = figure(3.2 * n, 3.6, ncols=n, squeeze=False)
    for j in range(n):
        ax, xy, a = axes[0, j], coords[j], attention[j]
        shade = (a - np.nanmin(a)) / (np.ptp(a[~np.isnan(a)]) or 1.0)
        thumbnail = thumbnails[j] if thumbnails is not None else None
        if thumbnail is None:
            ax.scatter(xy[:, 0], xy[:, 1], c=shade, cmap="gray_r", marker="s", s=12, vmin=0, vmax=1)
            ax.set_aspect("equal")
            ax.invert_yaxis()
            ax.tick_params(labelsize="x-small")
        else:
            side = tile_size_level0[j] if tile_size_level0 is not None else None
            if side is None:
                raise ValueError(f"slide {ids[j]}: a thumbnail needs its tile_size_level0")
            _heatmap(fig, ax, thumbnail, xy, shade, side)
        ax.set_title(f"{ids[j]} ({len(a)} patches)", fontsize="small")
    fig.suptitle(title)
    return save(fig, path)


def _heatmap(
    fig: Any,
    ax: Any,
    thumbnail: tuple[np.ndarray, float],
    xy: np.ndarray,
    shade: np.ndarray,
    side: float,
) -> None:
    """The thumbnail in grey, and over it each patch's shade as a translucent blue square."""
    image, scale = thumbnail
    grey = image.mean(axis=-1) if image.ndim == 3 else image
    overlay = np.full(grey.shape, np.nan)
    for (x, y), value in zip(xy, shade, strict=True):
        x0, y0 = round(x * scale), round(y * scale)
        x1, y1 = max(x0 + 1, round((x + side) * scale)), max(y0 + 1, round((y + side) * scale))
        overlay[y0:y1, x0:x1] = value
    from matplotlib import colormaps
    from matplotlib.colors import ListedColormap

    # Blues without its near-white end, so a patch of low attention is not taken for glass
    blues = ListedColormap(colormaps["Blues"](np.linspace(0.25, 1.0, 256)))
    ax.imshow(grey, cmap="gray", vmin=0, vmax=255)
    heat = ax.imshow(
        np.ma.masked_invalid(overlay), cmap=blues, vmin=0, vmax=1, alpha=0.75, interpolation="none"
    )
    bar = fig.colorbar(heat, ax=ax, shrink=0.6, ticks=[0, 1])
    bar.ax.set_yticklabels(["low", "high"], fontsize="x-small")
    bar.ax.set_title("attention", fontsize="x-small")
    ax.set_axis_off()
