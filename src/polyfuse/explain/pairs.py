"""Figures of hierarchical fusion's pair weights α: which modality pairs each sample relies on."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from polyfuse.errors import DataError
from polyfuse.figures import figure, save

MAX_SAMPLES = 40


def pair_matrix(
    weights: np.ndarray, pair_names: Sequence[str], modalities: Sequence[str]
) -> np.ndarray:
    """The symmetric (M, M) matrix of mean α over samples; NaN on the diagonal.

    Only pairs ("a+b") fill the matrix; higher-order nodes ("a+b+c") are left out of it. A
    sample's absent pairs have α = 0, so the mean counts them as "not relied on".
    """
    weights = np.asarray(weights, dtype=float)
    if weights.ndim != 2 or weights.shape[1] != len(pair_names):
        raise DataError(
            f"pair weights have shape {weights.shape}, expected (samples, {len(pair_names)})"
        )
    index = {m: k for k, m in enumerate(modalities)}
    matrix = np.zeros((len(modalities), len(modalities)))
    np.fill_diagonal(matrix, np.nan)
    mean = weights.mean(axis=0) if len(weights) else np.zeros(len(pair_names))
    for name, value in zip(pair_names, mean, strict=True):
        parts = name.split("+")
        if len(parts) != 2:
            continue
        unknown = [p for p in parts if p not in index]
        if unknown:
            raise DataError(f"pair '{name}' names modalities {unknown} not in {list(modalities)}")
        i, j = index[parts[0]], index[parts[1]]
        matrix[i, j] = matrix[j, i] = value
    return matrix


def plot_pair_weights(
    weights: np.ndarray,
    pair_names: Sequence[str],
    modalities: Sequence[str],
    path: Path,
    *,
    ids: Sequence[str] | None = None,
) -> Path:
    """Left: mean α as a modality × modality heat map with the value written in each cell
    (grey scale, so it reads without colour); right: α per sample (up to 40) per node."""
    weights = np.asarray(weights, dtype=float)
    matrix = pair_matrix(weights, pair_names, modalities)
    shown = weights[:MAX_SAMPLES]
    m = len(modalities)
    fig, only = figure(5.0 + 0.5 * m + 0.12 * len(shown), 1.5 + 0.5 * max(m, 4))
    only.remove()  # the shared helper makes one axis; this figure has two
    left, right = fig.subplots(1, 2, width_ratios=[1.0, 1.0 + 0.02 * len(shown)])
    image = left.imshow(np.ma.masked_invalid(matrix), cmap="Greys", vmin=0.0, vmax=1.0)
    for i in range(m):
        for j in range(m):
            value = matrix[i, j]
            text = "–" if i == j else f"{value:.2f}"  # no pair of a modality with itself
            ink = "white" if value > 0.5 else "black"
            left.text(j, i, text, ha="center", va="center", color=ink)
    left.set_xticks(range(m), modalities, rotation=45, ha="right")
    left.set_yticks(range(m), modalities)
    left.set_title("mean pair weight α")
    fig.colorbar(image, ax=left, shrink=0.8)
    right.imshow(shown.T, cmap="Greys", vmin=0.0, vmax=1.0, aspect="auto")
    right.set_yticks(range(len(pair_names)), pair_names)
    labels = list(ids[: len(shown)]) if ids is not None else [str(i) for i in range(len(shown))]
    right.set_xticks(range(len(shown)), labels, rotation=90, fontsize="x-small")
    right.set_xlabel("sample")
    right.set_title("α per sample (0 = pair absent)")
    return save(fig, path)


__all__ = ["pair_matrix", "plot_pair_weights"]
