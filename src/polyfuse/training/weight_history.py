"""The loss-balancing weights of a fit, epoch by epoch: a long table and its figure.

Written beside a fit or a cross-validation (`balancing.csv`, `balancing.png`) when the weights
change during training (uncertainty weighting, GradNorm, DWA, DTP), so that a reader can see
which task the balancing favoured and when.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from polyfuse.figures import LINESTYLES, figure, save, style
from polyfuse.io import atomic_write


def weight_frame(history: Sequence[dict[str, float]], **keys: object) -> pd.DataFrame:
    """A fit's per-epoch balancing weights as long rows: epoch, term, weight (+ ``keys``)."""
    rows = [
        {**keys, "epoch": epoch, "term": term, "weight": w}
        for epoch, weights in enumerate(history)
        for term, w in weights.items()
    ]
    return pd.DataFrame(rows, columns=[*keys, "epoch", "term", "weight"])


def write_task_weights(frame: pd.DataFrame, directory: Path) -> list[Path]:
    """``balancing.csv`` and, when there is something to compare (two or more terms),
    ``balancing.png`` in ``directory``; nothing when the weights never change (static)."""
    if frame.empty or frame.groupby("term")["weight"].nunique().max() <= 1:
        return []
    csv = Path(directory) / "balancing.csv"
    atomic_write(csv, lambda p: frame.to_csv(p, index=False))
    if frame["term"].nunique() < 2:
        return [csv]
    return [csv, plot_task_weights(frame, Path(directory) / "balancing.png")]


def plot_task_weights(frame: pd.DataFrame, path: Path, *, title: str | None = None) -> Path:
    """Loss-balancing weight of each task (term) per epoch: the mean over fits (folds), with
    the range over fits shaded when there are several. ``frame``: epoch, term, weight."""
    fig, ax = figure(7.0, 4.5)
    for i, (term, rows) in enumerate(frame.groupby("term", sort=False)):
        g = rows.groupby("epoch")["weight"]
        mean, lo, hi = g.mean(), g.min(), g.max()
        ax.plot(
            mean.index,
            mean.to_numpy(),
            color="black" if i < len(LINESTYLES) else "0.45",
            markevery=max(1, len(mean) // 10),
            markersize=4,
            markerfacecolor="white",
            linewidth=1.2,
            label=str(term),
            **style(i),
        )
        if (hi > lo).any():
            ax.fill_between(mean.index, lo.to_numpy(), hi.to_numpy(), color="0.85", alpha=0.5)
    ax.set_xlabel("epoch")
    ax.set_ylabel("task weight")
    keys = [c for c in ("repeat", "fold") if c in frame]
    n_fits = frame.groupby(keys).ngroups if keys else 1
    suffix = f" (mean over {n_fits} fits, range shaded)" if n_fits > 1 else ""
    ax.set_title(title or f"Loss-balancing weights{suffix}")
    ax.legend(fontsize="small", ncol=2 if frame["term"].nunique() > 6 else 1)
    return save(fig, Path(path))


__all__ = ["plot_task_weights", "weight_frame", "write_task_weights"]
