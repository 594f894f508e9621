"""Benchmark figures: KM risk tertiles, ROC, metric versus FLOPs, robustness to missing data.

Every figure is a matplotlib PNG written atomically and readable without colour: curves differ
by line style and marker, bars by hatching, reference lines by dash pattern. matplotlib and
scikit-survival are imported only when a figure is drawn, so importing this module is cheap.

Pooling choice (KM and ROC): test-fold predictions of ONE repeat (the first, unless asked) are
pooled, so each patient appears exactly once. Pooling every repeat would count each patient
several times and make the log-rank test's independence assumption false (p far too small).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from polyfuse.errors import DataError, require
from polyfuse.figures import DASHES, LINESTYLES, MARKERS, figure, save, style
from polyfuse.tasks.metric_facts import higher_is_better, primary_metric

TERTILES = ("low risk", "intermediate risk", "high risk")


def one_repeat(pred: pd.DataFrame, repeat: int | None) -> pd.DataFrame:
    """Rows of one repeat (the smallest repeat id unless given) so each patient counts once."""
    if "repeat" not in pred.columns or pred["repeat"].isna().all():
        return pred
    chosen = pred["repeat"].min() if repeat is None else repeat
    out = pred[pred["repeat"] == chosen]
    if out.empty:
        raise DataError(f"no predictions for repeat {repeat}")
    return out


def risk_tertiles(pred: pd.DataFrame) -> pd.Series:
    """Tertile (0 low, 1 mid, 2 high) of each row's risk, cut within its own test fold.

    Cutting per fold matters: each fold has its own fitted model whose risk scale may differ,
    so pooled cut points would mix scales. Ties are broken by order to keep groups balanced.
    """
    keys = [c for c in ("repeat", "fold") if c in pred.columns and pred[c].notna().any()]
    groups = pred.groupby(keys, sort=False)["score"] if keys else [(None, pred["score"])]
    out = pd.Series(np.nan, index=pred.index)
    for _, score in groups:
        n = len(score)
        if n == 0:
            continue
        ranks = score.rank(method="first").to_numpy() - 1
        out.loc[score.index] = np.floor(ranks * 3 / n).clip(0, 2)
    return out.astype(int)


def numbers_at_risk(time: np.ndarray, group: np.ndarray, ticks: Sequence[float]) -> pd.DataFrame:
    """Patients still at risk (time ≥ t) in each risk tertile at each tick: the table printed
    under a Kaplan–Meier figure, rows the tertiles, columns the ticks."""
    time, group = np.asarray(time, dtype=float), np.asarray(group)
    return pd.DataFrame(
        [[int(np.sum(time[group == g] >= t)) for t in ticks] for g in range(len(TERTILES))],
        index=list(TERTILES),
        columns=list(ticks),
    )


def plot_km_tertiles(
    pred: pd.DataFrame,
    path: Path,
    *,
    repeat: int | None = None,
    title: str | None = None,
    time_unit: str | None = None,
) -> tuple[Path, float]:
    """Kaplan–Meier curves of predicted-risk tertiles, with 95% log-log confidence bands, the
    numbers at risk beneath, the time unit on the axis, and a log-rank p-value.

    `pred`: one model's survival predictions (`score` = risk, `time`, `event`, and optionally
    `repeat`, `fold`). Tertiles are cut within each test fold, then one repeat is pooled.
    Returns the figure's path and the log-rank p (NaN when fewer than two groups have data).
    """
    nonparametric = require("sksurv.nonparametric", "bench")
    compare = require("sksurv.compare", "bench")
    util = require("sksurv.util", "bench")

    data = one_repeat(pred, repeat).dropna(subset=["score", "time", "event"])
    if data.empty:
        raise DataError("no survival predictions with score, time and event to plot")
    group = risk_tertiles(data).to_numpy()
    event = data["event"].astype(bool).to_numpy()
    time = data["time"].astype(float).to_numpy()

    p_value = float("nan")
    if len(np.unique(group)) > 1 and event.any():
        y = util.Surv.from_arrays(event=event, time=time)
        _, p_value = compare.compare_survival(y, group)
        p_value = float(p_value)

    fig, (ax, table) = figure(6.5, 5.6, nrows=2, height_ratios=[4, 1.1], sharex=True)
    for g, label in enumerate(TERTILES):
        mask = group == g
        if mask.any():
            _km_curve(ax, nonparametric, time[mask], event[mask], g, label)
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlim(0, time.max() * 1.02)
    ax.set_ylabel("survival probability")
    p_text = "n/a" if np.isnan(p_value) else f"{p_value:.2g}"
    ax.set_title(title or "Kaplan–Meier by predicted-risk tertile")
    # Curves fall from the top left, so the top right is the emptiest corner.
    ax.legend(
        loc="upper right",
        fontsize="small",
        title=f"log-rank p = {p_text}   (| censored; bands: 95% CI)",
        title_fontsize="small",
    )
    ticks = [t for t in ax.get_xticks() if 0 <= t <= time.max()]
    _risk_table(table, numbers_at_risk(time, group, ticks))
    table.set_xlabel(f"time ({time_unit})" if time_unit else "time (unit not given)")
    return save(fig, Path(path)), p_value


def _km_curve(ax, nonparametric, time: np.ndarray, event: np.ndarray, g: int, label: str) -> None:
    """One tertile's curve, its 95% log-log band and censoring ticks."""
    t, s, (low, high) = nonparametric.kaplan_meier_estimator(event, time, conf_type="log-log")
    t, s = np.r_[0.0, t], np.r_[1.0, s]
    low, high = np.r_[1.0, low], np.r_[1.0, high]
    ax.fill_between(t, low, high, step="post", color="0.5", alpha=0.12, linewidth=0)
    ax.step(
        t,
        s,
        where="post",
        color="black",
        linestyle=LINESTYLES[g],
        linewidth=1.8,
        label=f"{label} (n={len(time)}, events={int(event.sum())})",
    )
    censored = time[~event]
    ax.plot(
        censored,
        s[np.searchsorted(t, censored, side="right") - 1],
        linestyle="none",
        marker="|",
        color="black",
        markersize=7,
    )


def _risk_table(ax, at_risk: pd.DataFrame) -> None:
    """The numbers at risk as text under the curves, one row per tertile."""
    rows = list(at_risk.index)
    for i, label in enumerate(rows):
        for t, n in at_risk.loc[label].items():
            ax.text(t, len(rows) - 1 - i, str(n), ha="center", va="center", fontsize="small")
    ax.set_ylim(-0.6, len(rows) - 0.4)
    ax.set_yticks(range(len(rows)), rows[::-1], fontsize="small")
    ax.tick_params(axis="y", length=0, pad=16)  # clear of the counts at time 0
    for side in ("top", "right", "left"):
        ax.spines[side].set_visible(False)
    ax.set_title("number at risk", fontsize="small", loc="left")


def plot_roc(
    pred: pd.DataFrame,
    path: Path,
    *,
    models: Sequence[str] | None = None,
    repeat: int | None = None,
    title: str | None = None,
) -> Path:
    """ROC curves of binary classifiers, one per model, from pooled test-fold probabilities.

    `pred`: columns `model`, `score` (probability of the positive class), `label` (0/1), and
    optionally `repeat`, `fold`. `models` picks and orders the curves (default: all, by name).
    The AUC in the legend is that of the pooled predictions, which can differ a little from
    the leaderboard's mean over folds.
    """
    from sklearn.metrics import roc_auc_score, roc_curve

    data = pred.dropna(subset=["score", "label"])
    labels = set(pd.unique(data["label"]))
    if not labels <= {0, 1} or len(labels) < 2:  # 0.0, 1.0, False, True compare equal
        raise DataError(f"ROC needs binary 0/1 labels with both classes, got {sorted(labels)}")
    names = list(models) if models is not None else sorted(data["model"].unique())

    fig, ax = figure(6.0, 5.0)
    ax.plot([0, 1], [0, 1], color="0.6", linestyle=(0, (1, 3)), label="chance")
    for i, name in enumerate(names):
        rows = one_repeat(data[data["model"] == name], repeat)
        if rows.empty:
            continue
        y = rows["label"].astype(int).to_numpy()
        fpr, tpr, _ = roc_curve(y, rows["score"].to_numpy())
        auc = roc_auc_score(y, rows["score"].to_numpy())
        ax.plot(
            fpr,
            tpr,
            color="black" if i < len(LINESTYLES) else "0.45",
            markevery=max(1, len(fpr) // 8),
            markersize=5,
            markerfacecolor="white",
            linewidth=1.4,
            label=f"{name} (AUC {auc:.3f})",
            **style(i),
        )
    unit_square(
        ax,
        "false positive rate (1 − specificity)",
        "true positive rate (sensitivity)",
        title or "ROC (pooled test folds)",
        legend="lower right",
    )
    return save(fig, Path(path))


def unit_square(ax, xlabel: str, ylabel: str, title: str, *, legend: str) -> None:
    """Both axes from 0 to 1 at one scale, labelled and titled, a small legend at `legend`."""
    ax.set_xlim(-0.01, 1.01)
    ax.set_ylim(-0.01, 1.01)
    ax.set_aspect("equal")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(loc=legend, fontsize="small")


def pareto_front(cost: np.ndarray, score: np.ndarray, *, higher_better: bool = True) -> np.ndarray:
    """Boolean mask of Pareto-optimal points: no other point is cheaper-or-equal and better.

    NaN costs or scores are never optimal.
    """
    cost = np.asarray(cost, float)
    score = np.asarray(score, float)
    s = score if higher_better else -score
    ok = ~(np.isnan(cost) | np.isnan(s))
    mask = np.zeros(len(cost), bool)
    best = -np.inf
    # Cheapest first; among equal cost, best first, so a tied worse point is dominated.
    for i in sorted(np.flatnonzero(ok), key=lambda k: (cost[k], -s[k])):
        if s[i] > best:
            mask[i] = True
            best = s[i]
    return mask


def plot_pareto(
    leaderboard_like: pd.DataFrame,
    path: Path,
    *,
    metric: str | None = None,
    title: str | None = None,
) -> Path:
    """Primary metric versus FLOPs per sample (log x); the Pareto front marked and connected.

    `leaderboard_like`: one row per model with `model`, `family`, `mean` (metric mean),
    `flops_per_sample`, and optionally `metric` and `sd` (drawn as error bars). Classical
    floors have no FLOPs, so they are horizontal reference lines instead of points; fusion
    models whose FLOPs were not measured are left out.
    """
    lb = leaderboard_like
    metric = metric or (str(lb["metric"].iloc[0]) if "metric" in lb.columns else "metric")
    better = higher_is_better(metric)
    fusion = lb[(lb["family"] != "classical") & lb["flops_per_sample"].gt(0)]
    fusion = fusion.dropna(subset=["mean"]).reset_index(drop=True)
    classical = lb[lb["family"] == "classical"].dropna(subset=["mean"])

    fig, ax = figure(7.0, 4.8)
    if not fusion.empty:
        x = fusion["flops_per_sample"].to_numpy(float)
        y = fusion["mean"].to_numpy(float)
        front = pareto_front(x, y, higher_better=better)
        sd = fusion["sd"].to_numpy(float) if "sd" in fusion.columns else None
        if sd is not None:
            ax.errorbar(x, y, yerr=np.nan_to_num(sd), fmt="none", ecolor="0.6", elinewidth=0.8)
        ax.scatter(
            x[~front],
            y[~front],
            marker="o",
            facecolors="white",
            edgecolors="black",
            s=36,
            zorder=3,
            label="fusion model",
        )
        order = np.argsort(x[front])
        ax.plot(
            x[front][order],
            y[front][order],
            color="black",
            linestyle="-",
            marker="*",
            markersize=12,
            zorder=4,
            label="Pareto-optimal",
        )
        for xi, yi, name in zip(x, y, fusion["model"], strict=True):
            ax.annotate(
                str(name), (xi, yi), textcoords="offset points", xytext=(5, 4), fontsize="x-small"
            )
        ax.set_xscale("log")
        ax.margins(x=0.15)  # room for the model names beside the outermost points
    else:
        ax.text(0.5, 0.5, "no FLOPs measured", transform=ax.transAxes, ha="center")
    for i, row in enumerate(classical.itertuples()):
        ax.axhline(
            row.mean,
            color="0.35",
            linewidth=1.1,
            linestyle=DASHES[i % len(DASHES)],
            label=f"classical: {row.model}",
        )
    ax.set_xlabel("FLOPs per sample (log scale)")
    ax.set_ylabel(f"{metric} ({'higher' if better else 'lower'} is better)")
    ax.set_title(title or f"{metric} versus compute")
    ax.legend(fontsize="small", loc="best")
    return save(fig, Path(path))


def _rate(condition: str) -> float:
    try:
        return float(condition.split(":", 1)[1])
    except (IndexError, ValueError) as exc:
        raise DataError(f"bad robustness condition {condition!r} (want 'random:<rate>')") from exc


def _select(results: pd.DataFrame, dataset: str | None, task: str | None) -> pd.DataFrame:
    """Rows of one dataset × task: given, or the only one present."""
    for col, value in (("dataset", dataset), ("task", task)):
        if col not in results.columns:
            continue
        if value is not None:
            results = results[results[col] == value]
        elif results[col].nunique() > 1:
            raise DataError(f"results hold several {col}s; pass {col}= to pick one")
    if results.empty:
        raise DataError(f"no results for dataset={dataset!r}, task={task!r}")
    return results


def plot_robustness(
    results: pd.DataFrame,
    path: Path,
    *,
    metric: str | None = None,
    dataset: str | None = None,
    task: str | None = None,
    title: str | None = None,
) -> Path:
    """Fusion models under missing modalities at inference: two panels.

    Left: metric versus random-removal rate (`random:<rate>` conditions), one curve per model,
    the best classical floor (all modalities) as a dashed reference. Right: a dot plot of the
    metric with all modalities and with each modality dropped (`drop:<modality>`), one marker
    shape per condition. Values are means over repeats and folds. `metric` defaults to the
    task's primary metric.
    """
    res = _select(results, dataset, task)
    metric = metric or primary_metric(res["metric"].unique())
    res = res[res["metric"] == metric]
    mean = res.groupby(["model", "condition"], sort=False)["value"].mean()
    family = res.groupby("model", sort=False)["family"].first()
    fusion = [m for m in family.index if family[m] != "classical"]
    classical = [m for m in family.index if family[m] == "classical"]

    fig, ax0 = figure(12.0, max(4.0, 1.2 + 0.35 * len(fusion)))
    ax0.remove()
    left, right = fig.subplots(1, 2, gridspec_kw=dict(width_ratios=[1.1, 1.0]))
    _random_removal_panel(left, mean, fusion, classical, metric)
    drops = sorted({str(c) for c in res["condition"].unique() if str(c).startswith("drop:")})
    _dropped_modality_panel(right, mean, fusion, ["all", *drops], metric)
    fig.suptitle(title or f"Robustness to missing modalities ({metric})")
    return save(fig, Path(path))


def _random_removal_panel(
    ax, mean: pd.Series, fusion: list[str], classical: list[str], metric: str
) -> None:
    """Metric versus random-removal rate per fusion model; the best floor as a dashed line."""
    better = higher_is_better(metric)
    for i, model in enumerate(fusion):
        cond = mean[model]
        rand = {_rate(c): v for c, v in cond.items() if str(c).startswith("random:")}
        if 0.0 not in rand and "all" in cond.index:
            rand[0.0] = cond["all"]
        if not rand:
            continue
        rates = sorted(rand)
        ax.plot(
            rates,
            [rand[r] for r in rates],
            color="black",
            markerfacecolor="white",
            label=model,
            **style(i),
        )
    floors = [(mean[m].get("all", np.nan), m) for m in classical]
    floors = [f for f in floors if not np.isnan(f[0])]
    if floors:
        value, name = (max if better else min)(floors)
        ax.axhline(value, color="0.4", linestyle=DASHES[0], label=f"best floor: {name}")
    ax.set_xlabel("probability of removing each modality (≥ 1 kept)")
    ax.set_ylabel(f"{metric} ({'higher' if better else 'lower'} is better)")
    ax.set_title("Random missing modalities")
    ax.legend(fontsize="small", ncol=2 if len(fusion) > 6 else 1)


def _dropped_modality_panel(
    ax, mean: pd.Series, fusion: list[str], conditions: list[str], metric: str
) -> None:
    """A dot plot: each fusion model's metric with all modalities and with each one dropped."""
    y = np.arange(len(fusion))
    for j, cond in enumerate(conditions):
        filled = cond == "all"
        ax.scatter(
            [mean[m].get(cond, np.nan) for m in fusion],
            y,
            marker=MARKERS[j % len(MARKERS)],
            s=46 if filled else 40,
            facecolors="black" if filled else "white",
            edgecolors="black",
            zorder=3,
            label="all modalities" if filled else f"without {cond.split(':', 1)[1]}",
        )
    for k in y:
        ax.axhline(k, color="0.85", linewidth=0.6, zorder=1)
    ax.set_yticks(y, fusion)
    ax.invert_yaxis()
    ax.set_xlabel(metric)
    ax.set_title("One modality dropped")
    ax.legend(fontsize="small", loc="best")
