"""Where in an image, and where on a slide, the model looked: spatial maps for a few patients.

* Images: the per-pixel integrated-gradient attributions (`features.py`) summed over channels,
  their magnitude drawn over the image (a 3-D volume at its slice of largest attribution).
* Whole-slide bags: each patch's attention drawn at its coordinates on the slide (the CLAM
  file's `coords`), so a pathologist sees the regions, not instance ranks.

Grey scale only: the image in grey, attribution or attention as a second grey-scale panel,
so that a figure stays readable printed or by a colour-blind reader.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

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
) -> Path:
    """For up to `PATIENTS` slides: each patch as a square at its (x, y), shaded by its
    attention (dark: attended), the slide's y axis downwards as on a viewer."""
    n = min(PATIENTS, len(ids))
    fig, axes = figure(3.2 * n, 3.6, ncols=n, squeeze=False)
    for j in range(n):
        ax, xy, a = axes[0, j], coords[j], attention[j]
        shade = (a - np.nanmin(a)) / (np.ptp(a[~np.isnan(a)]) or 1.0)
        ax.scatter(xy[:, 0], xy[:, 1], c=shade, cmap="gray_r", marker="s", s=12, vmin=0, vmax=1)
        ax.set_aspect("equal")
        ax.invert_yaxis()
        ax.set_title(f"{ids[j]} ({len(a)} patches)", fontsize="small")
        ax.tick_params(labelsize="x-small")
    fig.suptitle(title)
    return save(fig, path)
