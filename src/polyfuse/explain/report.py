"""`polyfuse explain RUN_DIR`: figures and tables of what a fitted model looks at.

Writes into `RUN_DIR/explain/`: `contributions.png|csv` (per-modality ablation, every model),
and for models that publish attention: `attention_<modality>.png|csv` (mean attention per
feature, for tabular modalities fed as one token per feature) and
`top_instances_<modality>.csv|png` (the most-attended instances of bags); `pair_weights.png`
for hierarchical fusion; `macfusion_attention.png|csv` and `macfusion_gates.png|csv` for models
with MACFusion layers (EHPAL-Net; see `explain/macfusion.py`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from polyfuse.data.dataset import MultimodalDataset
from polyfuse.explain.attention import collect_aux, token_attention
from polyfuse.explain.attribution import modality_contributions
from polyfuse.figures import figure, save
from polyfuse.io import atomic_write
from polyfuse.training.fit import FittedModel

TOP_FEATURES = 20
TOP_INSTANCES = 10


def plot_contributions(table: pd.DataFrame, path: Path) -> Path:
    """Grouped horizontal bars: modality × task; hatching keeps tasks apart without colour."""
    fig, ax = figure(6.0, 0.5 + 0.45 * len(table) * max(1, len(table.columns)))
    hatches = ["", "//", "..", "xx", "\\\\"]
    height = 0.8 / len(table.columns)
    y = np.arange(len(table))
    for j, task in enumerate(table.columns):
        ax.barh(
            y + j * height,
            table[task],
            height,
            label=task,
            hatch=hatches[j % len(hatches)],
            color="0.6",
            edgecolor="black",
        )
    ax.set_yticks(y + height * (len(table.columns) - 1) / 2, table.index)
    ax.invert_yaxis()
    ax.set_xlabel("mean |change of prediction| when the modality is removed")
    ax.set_title("Per-modality contribution")
    if len(table.columns) > 1:
        ax.legend(title="task")
    return save(fig, path)


def plot_feature_attention(series: pd.Series, modality: str, path: Path) -> Path:
    top = series.nlargest(TOP_FEATURES)[::-1]
    fig, ax = figure(6.0, 0.6 + 0.25 * len(top))
    ax.barh(top.index, top.to_numpy(), color="0.5", edgecolor="black")
    ax.set_xlabel("mean attention (over samples, layers, heads, latents)")
    ax.set_title(f"{modality}: most-attended features")
    return save(fig, path)


def plot_top_instances(att: np.ndarray, ids: list[str], modality: str, path: Path) -> Path:
    """For up to 6 samples, the attention of their top instances in decreasing order."""
    fig, ax = figure()
    rows = [i for i in range(len(att)) if not np.isnan(att[i]).all()][:6]
    for r in rows:
        values = np.sort(att[r][~np.isnan(att[r])])[::-1][:TOP_INSTANCES]
        ax.plot(np.arange(1, len(values) + 1), values, marker="o", label=ids[r])
    ax.set_xlabel("instance rank")
    ax.set_ylabel("attention")
    ax.set_title(f"{modality}: top-attended instances")
    ax.legend(fontsize="small")
    return save(fig, path)


def explain(fitted: FittedModel, dataset: MultimodalDataset, out: Path) -> list[Path]:
    """Write every figure and table for `fitted` on `dataset` into `out`; return the files."""
    written = []
    contrib = modality_contributions(fitted, dataset)
    atomic_write(out / "contributions.csv", lambda p: contrib.to_csv(p))
    written += [out / "contributions.csv", plot_contributions(contrib, out / "contributions.png")]
    if hasattr(fitted.model, "pair_names"):  # hierarchical fusion: per-sample pair weights
        from polyfuse.explain.pairs import plot_pair_weights

        weights = collect_aux(fitted, dataset, "pair_weights")
        path = out / "pair_weights.png"
        names, mods = fitted.model.pair_names, list(dataset.specs)
        written.append(plot_pair_weights(weights, names, mods, path, ids=dataset.ids))
    from polyfuse.explain.macfusion import explain_macfusion  # it imports this module

    written += explain_macfusion(fitted, dataset, out)  # only where aux has MACFusion keys
    for m, att in token_attention(fitted, dataset).items():
        spec = dataset.specs[m]
        names = spec.feature_names
        if spec.kind == "tabular" and names and att.shape[1] == len(names):
            series = pd.Series(np.nanmean(att, 0), index=list(names), name="attention")
            series = series.sort_values(ascending=False)
            atomic_write(out / f"attention_{m}.csv", lambda p, s=series: s.to_csv(p))
            written += [
                out / f"attention_{m}.csv",
                plot_feature_attention(series, m, out / f"attention_{m}.png"),
            ]
        elif spec.kind == "bag":
            top = _top_instances(att, dataset.ids)
            atomic_write(out / f"top_instances_{m}.csv", lambda p, t=top: t.to_csv(p, index=False))
            written += [
                out / f"top_instances_{m}.csv",
                plot_top_instances(att, dataset.ids, m, out / f"top_instances_{m}.png"),
            ]
    return written


def _top_instances(att: np.ndarray, ids: list[str]) -> pd.DataFrame:
    rows = []
    for i, sample in enumerate(ids):
        a = att[i]
        if np.isnan(a).all():
            continue
        order = np.argsort(np.nan_to_num(a, nan=-1.0))[::-1][:TOP_INSTANCES]
        rows += [
            dict(id=sample, rank=r + 1, instance=int(k), attention=float(a[k]))
            for r, k in enumerate(order)
        ]
    return pd.DataFrame(rows)


def explain_run(run_dir: Path, data: str | None = None) -> list[Path]:
    """Explain a fitted run on its own training data (or on `data`)."""
    from polyfuse.config import load_config
    from polyfuse.datasets import from_config
    from polyfuse.inference.predictor import Predictor

    run_dir = Path(run_dir)
    fitted = FittedModel.load(run_dir)
    dataset = (
        Predictor(fitted).read(data)
        if data
        else from_config(load_config(run_dir / "config.yaml").data)
    )
    return explain(fitted, dataset, run_dir / "explain")
