"""The report's calibration and decision-curve figures (#18 item 1).

A good AUROC says a model ranks patients well, not that a predicted 30 % means 30 %: the
reliability diagram shows whether the probabilities can be taken at face value, and the
decision curve whether acting on them at a threshold does more good than treating everyone or
no one. For survival tasks both are read at a horizon: the predicted survival past it
(`surv_h`, from `calibration.survival_at_horizon` on each training part) against Kaplan–Meier
by risk group. As for the ROC and Kaplan–Meier figures, the test-fold predictions of one repeat
are pooled, so each patient counts once; every number comes from `calibration.py`.
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
    survival_calibration,
    survival_net_benefit,
)
from polyfuse.evaluation.plots import one_repeat, unit_square
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
        _observed_points(ax, curve, f"{model} (Brier {brier_score(prob, y):.3f})", i)
    unit_square(
        ax,
        "mean predicted probability (bin)",
        "observed fraction with the outcome (95% CI)",
        title or "Reliability (pooled test folds)",
        legend="upper left",
    )
    return save(fig, Path(path))


def _observed_points(ax, table: pd.DataFrame, label: str, i: int) -> None:
    """`observed` against `mean_predicted`, error bars `ci_low` to `ci_high`, in style i."""
    below = (table["observed"] - table["ci_low"]).clip(lower=0)  # 0 less rounding
    above = (table["ci_high"] - table["observed"]).clip(lower=0)
    ax.errorbar(
        table["mean_predicted"],
        table["observed"],
        yerr=[below, above],
        color="black",
        markerfacecolor="white",
        capsize=2,
        linewidth=1.2,
        label=label,
        **style(i),
    )


def plot_decision_curve(
    pred: pd.DataFrame,
    path: Path,
    *,
    models: Sequence[str],
    thresholds: Sequence[float] = THRESHOLDS,
    repeat: int | None = None,
    title: str | None = None,
) -> Path:
    """Net benefit against the decision threshold for each binary model, beside treating
    everyone and no one (Vickers & Elkin 2006); a model helps where its curve lies above both."""
    curves = {}
    for model in models:
        prob, y = _binary(pred, model, repeat)
        if len(y):
            curves[model] = net_benefit(prob, y, thresholds)
    return _decision_figure(curves, path, title or "Decision curve (pooled test folds)")


def _survival(pred: pd.DataFrame, model: str, repeat: int | None) -> pd.DataFrame:
    rows = pred[pred["model"] == model].dropna(subset=["surv_h", "time", "event"])
    return one_repeat(rows, repeat)


def plot_survival_decision_curve(
    pred: pd.DataFrame,
    path: Path,
    *,
    models: Sequence[str],
    thresholds: Sequence[float] = THRESHOLDS,
    repeat: int | None = None,
    title: str | None = None,
) -> Path:
    """The decision curve at the predictions' horizon (Vickers et al. 2008): acting on a
    predicted probability of the event by the horizon, the benefit counted with Kaplan–Meier."""
    curves = {}
    for model in models:
        rows = _survival(pred, model, repeat)
        if len(rows):
            curves[model] = survival_net_benefit(
                1 - rows["surv_h"].to_numpy(float),
                rows["time"].to_numpy(float),
                rows["event"].to_numpy(float),
                float(rows["horizon"].iloc[0]),
                thresholds,
            )
    return _decision_figure(curves, path, title or "Decision curve at the horizon")


def _decision_figure(curves: dict[str, pd.DataFrame], path: Path, title: str) -> Path:
    """Each model's net-benefit curve, treat all (the same patients for every model) and
    treat none."""
    fig, ax = figure(6.5, 4.5)
    top = 0.1  # net benefit is at most the event rate
    for i, (model, curve) in enumerate(curves.items()):
        ax.plot(curve["threshold"], curve["model"], color="black", label=model, **_line(i))
        top = max(top, float(np.nanmax(curve["treat_all"])), float(np.nanmax(curve["model"])))
    if curves:
        curve = next(iter(curves.values()))
        ax.plot(
            curve["threshold"],
            curve["treat_all"],
            color="0.45",
            linestyle=(0, (5, 2)),
            label="treat all",
        )
        ax.set_xlim(curve["threshold"].min(), curve["threshold"].max())
    ax.axhline(0.0, color="0.45", linestyle=(0, (1, 2)), label="treat none")
    ax.set_ylim(-0.05 * top, 1.1 * top)
    ax.set_xlabel("threshold probability (act when the predicted risk is at least this)")
    ax.set_ylabel("net benefit")
    ax.set_title(title)
    ax.legend(loc="upper right", fontsize="small")
    return save(fig, Path(path))


def survival_calibration_summary(
    pred: pd.DataFrame, models: Sequence[str], groups: int = 3, repeat: int | None = None
) -> pd.DataFrame:
    """Per model and risk group at the horizon: n, mean predicted survival, Kaplan–Meier
    observed survival and its 95% interval (`calibration.survival_calibration`)."""
    frames = []
    for model in models:
        rows = _survival(pred, model, repeat)
        if len(rows) < groups:
            continue
        table = survival_calibration(
            rows["surv_h"].to_numpy(float),
            rows["time"].to_numpy(float),
            rows["event"].to_numpy(float),
            float(rows["horizon"].iloc[0]),
            groups,
        )
        frames.append(table.assign(model=model, horizon=float(rows["horizon"].iloc[0])))
    columns = ["model", "horizon", "group", "n", "mean_predicted", "observed", "ci_low", "ci_high"]
    return (
        pd.concat(frames, ignore_index=True)[columns] if frames else pd.DataFrame(columns=columns)
    )


def plot_survival_calibration(summary: pd.DataFrame, path: Path, *, title: str) -> Path:
    """Observed (Kaplan–Meier, 95% CI) against mean predicted survival at the horizon, one
    point per risk group, one line style per model; the diagonal is perfect calibration."""
    fig, ax = figure(6.0, 5.0)
    ax.plot([0, 1], [0, 1], color="0.6", linestyle=(0, (1, 3)), label="perfect calibration")
    for i, (model, part) in enumerate(summary.groupby("model", sort=False)):
        _observed_points(ax, part.dropna(subset=["observed"]), str(model), i)
    unit_square(
        ax,
        "mean predicted survival at the horizon (risk group)",
        "observed survival, Kaplan–Meier (95% CI)",
        title,
        legend="upper left",
    )
    return save(fig, Path(path))


def _line(i: int) -> dict:
    """A solid, dashed, dotted... line without markers: curves over 79 thresholds."""
    return dict(linestyle=LINESTYLES[i % len(LINESTYLES)], linewidth=1.6)
