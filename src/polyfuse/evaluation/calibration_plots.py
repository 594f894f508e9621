"""The report's calibration and decision-curve figures for binary tasks (#18 item 1).

A good AUROC says a model ranks patients well, not that a predicted 30 % means 30 %: the
reliability diagram shows whether the probabilities can be taken at face value, and the
decision curve whether acting on them at a threshold does more good than treating everyone or
no one. As for the ROC and Kaplan–Meier figures, the test-fold predictions of one repeat are
pooled, so each patient counts once; every number comes from `calibration.py`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from polyfuse.evaluation.calibration import (
    brier_score,
    calibration_intercept_slope,
    net_benefit,
    reliability_curve,
)
from polyfuse.evaluation.plots import one_repeat
from polyfuse.figures import LINESTYLES, figure, save, style

THRESHOLDS = np.round(np.arange(0.02, 0.81, 0.01), 2)
"""Decision thresholds of the decision curve: where a clinician would act (2 % to 80 %)."""


def _binary(pred: pd.DataFrame, model: str, repeat: int | None) -> tuple[np.ndarray, np.ndarray]:
    rows = one_repeat(pred[pred["model"] == model].dropna(subset=["score", "label"]), repeat)
    return rows["score"].to_numpy(dtype=float), rows["label"].to_numpy(dtype=float)


def calibration_summary(
    pred: pd.DataFrame, models: Sequence[str], repeat: int | None = None
) -> pd.DataFrame:
    """Per model, on its pooled test-fold probabilities: n, Brier score, calibration
    intercept and slope (NaN where they cannot be estimated: one class, constant predictions,
    separation)."""
    rows = []
    for model in models:
        prob, y = _binary(pred, model, repeat)
        if not len(y):
            continue
        try:
            intercept, slope = calibration_intercept_slope(prob, y)
        except (ValueError, RuntimeError):
            intercept = slope = float("nan")
        rows.append(
            dict(
                model=model, n=len(y), brier=brier_score(prob, y), intercept=intercept, slope=slope
            )
        )
    return pd.DataFrame(rows, columns=["model", "n", "brier", "intercept", "slope"])


def plot_reliability(
    pred: pd.DataFrame,
    path: Path,
    *,
    models: Sequence[str],
    bins: int = 10,
    repeat: int | None = None,
    title: str | None = None,
) -> Path:
    """Observed event rate against mean predicted probability in quantile bins, with Wilson
    95% intervals, one line style per model; the diagonal is perfect calibration."""
    fig, ax = figure(6.0, 5.0)
    ax.plot([0, 1], [0, 1], color="0.6", linestyle=(0, (1, 3)), label="perfect calibration")
    for i, model in enumerate(models):
        prob, y = _binary(pred, model, repeat)
        if len(np.unique(y)) < 2:
            continue
        curve = reliability_curve(prob, y, bins=min(bins, max(1, len(y) // 10)))
        below = (curve["observed"] - curve["ci_low"]).clip(lower=0)  # 0 less rounding
        above = (curve["ci_high"] - curve["observed"]).clip(lower=0)
        ax.errorbar(
            curve["mean_predicted"],
            curve["observed"],
            yerr=[below, above],
            color="black",
            markerfacecolor="white",
            capsize=2,
            linewidth=1.2,
            label=f"{model} (Brier {brier_score(prob, y):.3f})",
            **style(i),
        )
    ax.set_xlim(-0.01, 1.01)
    ax.set_ylim(-0.01, 1.01)
    ax.set_aspect("equal")
    ax.set_xlabel("mean predicted probability (bin)")
    ax.set_ylabel("observed fraction with the outcome (95% CI)")
    ax.set_title(title or "Reliability (pooled test folds)")
    ax.legend(loc="upper left", fontsize="small")
    return save(fig, Path(path))


def plot_decision_curve(
    pred: pd.DataFrame,
    path: Path,
    *,
    models: Sequence[str],
    thresholds: Sequence[float] = THRESHOLDS,
    repeat: int | None = None,
    title: str | None = None,
) -> Path:
    """Net benefit against the decision threshold for each model, beside treating everyone and
    treating no one (Vickers & Elkin 2006); a model is useful where its curve lies above both."""
    fig, ax = figure(6.5, 4.5)
    treat_all, top = None, 0.1  # net benefit is at most the prevalence
    for i, model in enumerate(models):
        prob, y = _binary(pred, model, repeat)
        if not len(y):
            continue
        curve = net_benefit(prob, y, thresholds)
        ax.plot(curve["threshold"], curve["model"], color="black", label=model, **_line(i))
        treat_all = curve["treat_all"] if treat_all is None else treat_all  # the same patients
        top = max(top, float(y.mean()))
    if treat_all is not None:
        ax.plot(thresholds, treat_all, color="0.45", linestyle=(0, (5, 2)), label="treat all")
    ax.axhline(0.0, color="0.45", linestyle=(0, (1, 2)), label="treat none")
    ax.set_ylim(-0.05 * top, 1.1 * top)
    ax.set_xlim(min(thresholds), max(thresholds))
    ax.set_xlabel("threshold probability (act when the predicted risk is at least this)")
    ax.set_ylabel("net benefit")
    ax.set_title(title or "Decision curve (pooled test folds)")
    ax.legend(loc="upper right", fontsize="small")
    return save(fig, Path(path))


def _line(i: int) -> dict:
    """A solid, dashed, dotted... line without markers: curves over 79 thresholds."""
    return dict(linestyle=LINESTYLES[i % len(LINESTYLES)], linewidth=1.6)
