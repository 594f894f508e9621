"""Performance in subgroups (#18 item 5): does a model work as well for women as for men, for
early as for late stages, for the old as for the young?

A subgroup is named `modality:column`: a feature of a tabular modality (by name, or by position
where the features have no names). A one-hot group is
named by its prefix (`clinical:gender` collects `gender=female`, `gender=male`); a numeric
column is cut into bands, at given points (`clinical:age@50,65`) or at its tertiles. Patients
without the modality, or with the value missing, form the level "missing".

Each level's primary metric (c-index, AUROC or RMSE) is computed on the pooled test-fold
predictions of one repeat (each patient once, as for the Kaplan–Meier and ROC figures), with a
95% percentile bootstrap interval over its patients. A level is flagged too small when it has
fewer than `MIN_PATIENTS` patients or, for survival and binary tasks, fewer than `MIN_EVENTS`
events or minority-class patients: its interval is then too wide to compare.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from polyfuse.data.dataset import ArraySource, MultimodalDataset
from polyfuse.errors import ConfigError, did_you_mean

MIN_PATIENTS = 20
MIN_EVENTS = 10
N_BOOT = 1000
MISSING = "missing"


def subgroup_labels(data: MultimodalDataset, spec: str) -> pd.Categorical:
    """Each patient's level of the subgroup `spec` (`modality:column[@cut,...]`), its levels
    in their natural order (bands low to high, one-hot columns as in the data, missing last)."""
    modality, column, cuts = _parse(spec)
    if modality not in data.specs:
        raise ConfigError(
            f"subgroup '{spec}': unknown modality '{modality}'"
            f"{did_you_mean(modality, data.specs)}; the data have {sorted(data.specs)}"
        )
    source, names = data.sources[modality], data.specs[modality].feature_names or ()
    if not isinstance(source, ArraySource) or data.specs[modality].kind != "tabular":
        raise ConfigError(f"subgroup '{spec}': '{modality}' is not a tabular modality in memory")
    present = source.present
    if column not in names and column.isdigit() and int(column) < source.values.shape[1]:
        names = tuple(names) or tuple(str(j) for j in range(source.values.shape[1]))
        column = names[int(column)]  # a column by its position, where features have no names
    if column in names:
        values = np.where(present, source.values[:, names.index(column)], np.nan)
        labels, order = _bands(values.astype(float), cuts, column)
        return pd.Categorical(labels, categories=[*order, MISSING])
    members = [i for i, n in enumerate(names) if n.startswith(column + "=")]
    if not members:
        raise ConfigError(
            f"subgroup '{spec}': '{modality}' has no column '{column}' and no one-hot columns "
            f"'{column}=...'{did_you_mean(column, names)}"
        )
    block = np.nan_to_num(source.values[:, members]) > 0.5
    levels = np.array([names[i].split("=", 1)[1] for i in members], dtype=object)
    out = np.where(block.any(1) & present, levels[block.argmax(1)], MISSING)
    return pd.Categorical(out, categories=[*levels, MISSING])


def _parse(spec: str) -> tuple[str, str, list[float] | None]:
    modality, sep, rest = spec.partition(":")
    if not sep or not modality or not rest:
        raise ConfigError(f"subgroup '{spec}': write modality:column, e.g. clinical:gender")
    column, at, points = rest.partition("@")
    if not at:
        return modality, column, None
    try:
        return modality, column, sorted(float(p) for p in points.split(","))
    except ValueError:
        raise ConfigError(
            f"subgroup '{spec}': cut points are numbers separated by commas, e.g. age@50,65"
        ) from None


def _bands(
    values: np.ndarray, cuts: list[float] | None, column: str
) -> tuple[np.ndarray, list[str]]:
    """Numeric values in bands, at `cuts` or at the tertiles (two values only: each a level),
    and the bands low to high."""
    known = values[~np.isnan(values)]
    if cuts is None and len(np.unique(known)) <= 2:
        labels = np.array([f"{column}={v:g}" for v in np.nan_to_num(values)], dtype=object)
        order = [f"{column}={v:g}" for v in np.unique(known)]
        return np.where(np.isnan(values), MISSING, labels).astype(object), order
    if cuts is None:
        digits = 0 if np.ptp(known) >= 10 else 2  # years as whole years, a score to 0.01
        cuts = sorted(set(np.round(np.quantile(known, [1 / 3, 2 / 3]), digits).tolist()))
    edges = [-np.inf, *cuts, np.inf]
    names = [_band_name(lo, hi) for lo, hi in itertools.pairwise(edges)]
    index = np.searchsorted(cuts, values, side="right")
    labels = np.array(names, dtype=object)[np.clip(index, 0, len(names) - 1)]
    return np.where(np.isnan(values), MISSING, labels).astype(object), names


def _band_name(low: float, high: float) -> str:
    if np.isinf(low):
        return f"< {high:g}"
    return f"≥ {low:g}" if np.isinf(high) else f"{low:g} to < {high:g}"


def subgroup_frame(data: MultimodalDataset, specs: Sequence[str]) -> pd.DataFrame:
    """Every patient's level of every subgroup: dataset, id, subgroup, level, and `order`, the
    level's place among its subgroup's levels (for tables and figures)."""
    frames = []
    for spec in specs:
        labels = subgroup_labels(data, spec)
        frames.append(
            pd.DataFrame(
                {
                    "dataset": data.name,
                    "id": data.ids,
                    "subgroup": spec,
                    "level": np.asarray(labels, dtype=object),
                    "order": labels.codes,
                }
            )
        )
    columns = ["dataset", "id", "subgroup", "level", "order"]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)


def harrell_c(risk: np.ndarray, time: np.ndarray, event: np.ndarray) -> float:
    """Harrell's c with the conventions of `tasks.metrics.harrell_c_index` (tied risks 1/2; an
    event tied in time with a censoring comparable, two tied events not), in numpy: pairwise,
    for the few hundred patients of a subgroup, fast enough to bootstrap."""
    e = event.astype(bool)
    before = (time[:, None] < time[None, :]) | ((time[:, None] == time[None, :]) & ~e[None, :])
    comparable = e[:, None] & before
    comparable[np.diag_indices_from(comparable)] = False
    pairs = comparable.sum()
    if pairs == 0:
        return float("nan")
    diff = risk[:, None] - risk[None, :]
    score = (diff > 0) + 0.5 * (diff == 0)
    return float((score * comparable).sum() / pairs)


def _auroc(score: np.ndarray, label: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(label, score)) if len(np.unique(label)) == 2 else float("nan")


def _rmse(pred: np.ndarray, target: np.ndarray) -> float:
    return float(np.sqrt(np.mean((pred - target) ** 2)))


METRICS: dict[str, tuple[str, Callable[..., float]]] = {
    "survival": ("c_index", lambda r: harrell_c(r["score"], r["time"], r["event"])),
    "binary": ("auroc", lambda r: _auroc(r["score"], r["label"])),
    "regression": ("rmse", lambda r: _rmse(r["score"], r["label"])),
}
"""The primary metric of each task type, on a dict of arrays (score, time, event, label)."""


def level_metrics(rows: pd.DataFrame, kind: str, seed: int = 0, n_boot: int = N_BOOT) -> dict:
    """One level's n, events (or minority-class count), metric, 95% bootstrap interval and
    whether it is too small to judge."""
    name, metric = METRICS[kind]
    arrays = {c: rows[c].to_numpy(dtype=float) for c in ("score", "time", "event", "label")}
    value = metric(arrays)
    rng = np.random.default_rng(seed)
    n = len(rows)
    draws = [
        metric({c: a[idx] for c, a in arrays.items()}) for idx in rng.integers(0, n, (n_boot, n))
    ]
    draws = np.asarray(draws)[~np.isnan(draws)]
    low, high = np.percentile(draws, [2.5, 97.5]) if len(draws) else (np.nan, np.nan)
    if kind == "survival":
        events = int(arrays["event"].sum())
    elif kind == "binary":
        events = int(min(arrays["label"].sum(), n - arrays["label"].sum()))
    else:
        events = n
    small = n < MIN_PATIENTS or (kind != "regression" and events < MIN_EVENTS)
    return dict(n=n, events=events, metric=name, value=value, ci_low=low, ci_high=high, small=small)


def subgroup_metrics(
    pred: pd.DataFrame, groups: pd.DataFrame, kind: str, seed: int = 0, n_boot: int = N_BOOT
) -> pd.DataFrame:
    """Per model, subgroup and level: `level_metrics` on the model's pooled test predictions
    (one repeat, `pred`: model, id, score, time, event, label) joined to `groups` (id,
    subgroup, level)."""
    if kind not in METRICS:
        return pd.DataFrame()
    outcome = ["time", "event"] if kind == "survival" else ["label"]
    joined = pred.dropna(subset=["score", *outcome]).merge(
        groups[["id", "subgroup", "level", "order"]], on="id"
    )  # patients whose outcome is unknown are not scored
    subgroups = list(dict.fromkeys(groups["subgroup"]))
    joined = joined.assign(place=joined["subgroup"].map(subgroups.index)).sort_values(
        ["place", "order"], kind="stable"
    )
    rows = [
        dict(model=model, subgroup=subgroup, level=level, **level_metrics(part, kind, seed, n_boot))
        for (model, subgroup, level), part in joined.groupby(
            ["model", "subgroup", "level"], sort=False
        )
    ]
    return pd.DataFrame(rows)


def plot_subgroups(table: pd.DataFrame, path: Path, *, title: str, overall: dict[str, float]):
    """A forest plot: each level's metric and 95% interval per model (one marker each), the
    model's value on all patients as a dashed line; levels too small to judge drawn hollow and
    marked "(small)"."""
    from polyfuse.figures import MARKERS, figure, save

    levels = table.drop_duplicates(["subgroup", "level"]).set_index(["subgroup", "level"])
    rows = list(levels.index)
    models = list(dict.fromkeys(table["model"]))
    fig, ax = figure(7.0, 1.4 + 0.3 * len(rows) * len(models) ** 0.5)
    step = 0.6 / len(models)
    for i, model in enumerate(models):
        part = table[table["model"] == model].set_index(["subgroup", "level"])
        at = np.array([rows.index(key) for key in part.index]) + (i - (len(models) - 1) / 2) * step
        ax.hlines(at, part["ci_low"], part["ci_high"], color="black", linewidth=1)
        marker = MARKERS[i % len(MARKERS)]
        ax.scatter(part["value"], at, marker=marker, color="black", label=model, zorder=3)
        hollow = part["small"].to_numpy(bool)
        ax.scatter(part["value"][hollow], at[hollow], marker=marker, color="white", zorder=4, s=12)
        if model in overall:
            ax.axvline(overall[model], color="0.6", linestyle=(0, (3, 2)), linewidth=1)
    labels = [
        f"{sub.split(':', 1)[1]}: {level} (n={levels.loc[(sub, level), 'n']})"
        + (" (small)" if table.query("subgroup == @sub and level == @level")["small"].any() else "")
        for sub, level in rows
    ]
    ax.set_yticks(range(len(rows)), labels, fontsize="small")
    ax.invert_yaxis()
    ax.set_xlabel(f"{table['metric'].iloc[0]} (95% bootstrap interval); dashed: all patients")
    ax.set_title(title)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small")
    return save(fig, Path(path))
