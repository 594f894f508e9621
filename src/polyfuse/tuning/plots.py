"""Figures of a tuning run: optimisation history and parameter importances (PNG).

Readable without colour: each study (outer fold) has its own marker and line style; pruned and
failed trials are hollow. matplotlib is imported only when a figure is drawn.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from polyfuse.figures import LINESTYLES, MARKERS, figure, save


def plot_history(trials: pd.DataFrame, target: Any, path: Path) -> Path | None:
    """Mean inner score of every trial by trial number, one series per study, with each
    study's best-so-far as a step line. Pruned trials are drawn hollow at their last running
    mean (when known); the final search on all samples, if any, is drawn in black."""
    if trials.empty:
        return None
    fig, ax = figure(7.0, 4.2)
    maximize = target.direction == "maximize"
    for i, (study, group) in enumerate(trials.groupby("study", sort=False)):
        group = group.sort_values("trial")
        style = dict(marker=MARKERS[i % len(MARKERS)], color="black" if study == "all" else None)
        done = group[group["state"] == "complete"]
        line = ax.plot(done["trial"], done["value"], linestyle="none", **style, alpha=0.7)[0]
        colour = line.get_color()
        pruned = group[group["state"] == "pruned"]
        if len(pruned):
            running = [_last_running(v) for v in pruned["inner"]]
            ax.plot(
                pruned["trial"],
                running,
                linestyle="none",
                marker=style["marker"],
                markerfacecolor="none",
                color=colour,
                alpha=0.7,
            )
        values = group["value"].where(group["state"] == "complete")
        best = (values.cummax() if maximize else values.cummin()).ffill()
        ax.step(
            group["trial"],
            best,
            where="post",
            linestyle=LINESTYLES[i % len(LINESTYLES)],
            color=colour,
            label=f"{study}" + (" (all samples)" if study == "all" else ""),
        )
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("trial")
    ax.set_ylabel(f"mean inner {target.metric} ({target.task})")
    ax.set_title("optimisation history (points: trials, hollow: pruned; lines: best so far)")
    ax.legend(title="study", fontsize="small", ncol=2)
    return save(fig, path)


def _last_running(inner: Any) -> float:
    import json

    values = json.loads(inner) if isinstance(inner, str) else list(inner or [])
    finite = [v for v in values if v is not None and np.isfinite(v)]
    return float(np.mean(finite)) if finite else np.nan


def plot_importances(importances: pd.DataFrame, path: Path) -> Path | None:
    """Mean fANOVA importance of each parameter over the outer studies, with its range."""
    if importances.empty:
        return None
    g = importances.groupby("param")["importance"]
    table = pd.DataFrame({"mean": g.mean(), "low": g.min(), "high": g.max()})
    table = table.sort_values("mean")
    fig, ax = figure(6.0, 0.8 + 0.35 * len(table))
    y = np.arange(len(table))
    ax.barh(y, table["mean"], color="0.75", edgecolor="black", hatch="//")
    ax.errorbar(
        table["mean"],
        y,
        xerr=[table["mean"] - table["low"], table["high"] - table["mean"]],
        fmt="none",
        ecolor="black",
        capsize=3,
    )
    ax.set_yticks(y, table.index)
    ax.set_xlabel("importance (fANOVA; bar: mean over outer folds, whiskers: range)")
    ax.set_title("parameter importances")
    return save(fig, path)
