"""`polyfuse explain RUN_DIR`: figures and tables of what a fitted model looks at.

By default on the run's validation part (patients the weights were not fitted on; they chose
the best epoch), else on the data given. Writes into `RUN_DIR/explain/`:
`contributions.png|csv` (per-modality ablation with 95% bootstrap intervals, every model),
`features_<task>.png|csv` and `feature_attributions_<task>.csv` (integrated gradients per
feature, `explain/features.py`; with captum, the `explain` extra), `patients/<id>.html` (one
page per patient: predictions, uncertainty, what drove them), and for models that publish
attention: `attention_<modality>.png|csv` (mean attention per
feature, for tabular modalities fed as one token per feature) and
`top_instances_<modality>.csv|png` (the most-attended instances of bags); `pair_weights.png`
for hierarchical fusion; `macfusion_attention.png|csv` and `macfusion_gates.png|csv` for models
with MACFusion layers (EHPAL-Net; see `explain/macfusion.py`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from polyfuse.data.dataset import MultimodalDataset
from polyfuse.explain.attention import collect_aux, token_attention
from polyfuse.explain.attribution import contribution_intervals, modality_changes
from polyfuse.figures import figure, save
from polyfuse.io import atomic_write
from polyfuse.training.fit import FittedModel

log = logging.getLogger(__name__)

TOP_FEATURES = 20
TOP_INSTANCES = 10
PATIENT_PAGES = 10


def plot_contributions(intervals: pd.DataFrame, path: Path) -> Path:
    """Grouped horizontal bars, modality × task (`intervals`: modality, task, mean, and
    ci_low/ci_high for 95% intervals where known); hatching keeps tasks apart without colour."""
    modalities = list(dict.fromkeys(intervals["modality"]))
    tasks = list(dict.fromkeys(intervals["task"]))
    fig, ax = figure(6.0, 0.5 + 0.45 * len(modalities) * max(1, len(tasks)))
    hatches = ["", "//", "..", "xx", "\\\\"]
    height = 0.8 / len(tasks)
    for j, task in enumerate(tasks):
        part = intervals[intervals["task"] == task].set_index("modality").reindex(modalities)
        known = {"ci_low", "ci_high"} <= set(part.columns)
        ax.barh(
            np.arange(len(modalities)) + j * height,
            part["mean"],
            height,
            xerr=[part["mean"] - part["ci_low"], part["ci_high"] - part["mean"]] if known else None,
            capsize=2,
            label=task,
            hatch=hatches[j % len(hatches)],
            color="0.6",
            edgecolor="black",
        )
    ax.set_yticks(np.arange(len(modalities)) + height * (len(tasks) - 1) / 2, modalities)
    ax.invert_yaxis()
    interval = " (95% CI)" if {"ci_low", "ci_high"} <= set(intervals.columns) else ""
    ax.set_xlabel(f"mean |change of prediction| when the modality is removed{interval}")
    ax.set_title("Per-modality contribution")
    if len(tasks) > 1:
        ax.legend(title="task")
    return save(fig, path)


def plot_features(table: pd.DataFrame, task: str, path: Path) -> Path:
    """The features with the largest mean |attribution|, signed mean marked: a bar for the
    size, a dot for which way the feature pushes the score on average."""
    top = table.head(TOP_FEATURES)[::-1]
    labels = [f"{m}: {f}" for m, f in zip(top["modality"], top["feature"], strict=True)]
    fig, ax = figure(7.0, 0.8 + 0.28 * len(top))
    interval = (
        [top["mean_abs"] - top["ci_low"], top["ci_high"] - top["mean_abs"]]
        if {"ci_low", "ci_high"} <= set(top.columns)
        else None
    )
    ax.barh(
        labels,
        top["mean_abs"],
        xerr=interval,
        capsize=2,
        color="0.75",
        edgecolor="black",
        label="mean |attribution|",
    )
    ax.plot(top["mean"], labels, "o", color="black", label="mean attribution (sign)")
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_xlabel(f"integrated gradients on {task}'s score (per patient, averaged)")
    ax.set_title(f"{task}: features that move the score most")
    ax.legend(loc="lower right", fontsize="small")
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


def explain(
    fitted: FittedModel,
    dataset: MultimodalDataset,
    out: Path,
    patients: Sequence[str] | None = None,
) -> list[Path]:
    """Write every figure and table for `fitted` on `dataset` into `out`, and a page for each
    of `patients` (default: the first `PATIENT_PAGES`); return the files."""
    changes = modality_changes(fitted, dataset)
    contrib = contribution_intervals(changes)
    atomic_write(out / "contributions.csv", lambda p: contrib.to_csv(p, index=False))
    written = [out / "contributions.csv", plot_contributions(contrib, out / "contributions.png")]
    attributions = _feature_attributions(fitted, dataset)
    for task, (table, long, maps) in attributions.items():
        written += [_pixel_maps(maps, task, out / f"pixels_{task}_{m}.png", m) for m in maps.images]
        atomic_write(out / f"features_{task}.csv", lambda p, t=table: t.to_csv(p, index=False))
        path = out / f"feature_attributions_{task}.csv"
        atomic_write(path, lambda p, t=long: t.to_csv(p, index=False))
        written += [out / f"features_{task}.csv", path]
        written.append(plot_features(table, task, out / f"features_{task}.png"))
    from polyfuse.explain.patients import write_patient_pages

    chosen = list(patients) if patients is not None else dataset.ids[:PATIENT_PAGES]
    long = {t: frames[1] for t, frames in attributions.items()}
    written += _slide_maps(fitted, dataset, out)
    written += write_patient_pages(fitted, dataset, changes, long, out / "patients", chosen)
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


def _pixel_maps(maps: Any, task: str, path: Path, modality: str) -> Path:
    """The first patients with the image: the image and its |attribution| per pixel."""
    from polyfuse.explain.maps import plot_pixel_maps

    has = maps.present[modality]
    ids = list(np.asarray(maps.ids)[has])
    title = f"{task}: where in {modality} the score was decided"
    return plot_pixel_maps(maps.images[modality][has], maps.values[modality][has], ids, title, path)


def _slide_maps(fitted: FittedModel, dataset: MultimodalDataset, out: Path) -> list[Path]:
    """Bags read from CLAM files with `coords`: the first slides' attention at the patches'
    positions (models that publish instance attention only)."""
    from polyfuse.data.dataset import FileSource
    from polyfuse.data.readers import read_patch_coords
    from polyfuse.explain.maps import PATIENTS, plot_slide_attention

    written = []
    for m, att in token_attention(fitted, dataset).items():
        source = dataset.sources[m]
        if dataset.specs[m].kind != "bag" or not isinstance(source, FileSource):
            continue
        picked = []
        for i, path in enumerate(source.paths):
            coords = read_patch_coords(path) if path is not None else None
            if coords is not None and len(coords) <= att.shape[1]:  # the batch pads at the end
                picked.append((dataset.ids[i], coords, att[i][: len(coords)], *_slide_of(path)))
            if len(picked) == PATIENTS:
                break
        if picked:
            ids, coords, attention, thumbnails, sides = zip(*picked, strict=True)
            title = f"{m}: attention on the slide"
            path = out / f"slide_{m}.png"
            written.append(
                plot_slide_attention(coords, attention, ids, title, path, thumbnails, sides)
            )
    return written


def _slide_of(bag: Path) -> tuple[tuple[Any, float] | None, float | None]:
    """The thumbnail of the slide a bag was cut from (when polyfuse cut it and the slide is
    still there) and the bag's tile side in level-0 pixels; else (None, None)."""
    from polyfuse.embed.slides import read_slide_link, slide_thumbnail
    from polyfuse.errors import MissingDependencyError

    link = read_slide_link(bag)
    if link is None or not Path(link[0]).is_file():
        return None, None
    try:
        return slide_thumbnail(link[0]), link[1]
    except MissingDependencyError:  # the bag without OpenSlide: patches on a blank canvas
        return None, None


def _feature_attributions(
    fitted: FittedModel, dataset: MultimodalDataset
) -> dict[str, tuple[pd.DataFrame, pd.DataFrame, Any]]:
    """Per task with a score to attribute: (the feature table, the per-patient long rows id,
    modality, feature, attribution, the attributions themselves). None without captum or a
    continuous modality (logged)."""
    from polyfuse.errors import ConfigError, MissingDependencyError
    from polyfuse.explain.features import feature_table, integrated_gradients, patient_rows

    out = {}
    for task, spec in fitted.tasks.items():
        if spec.type == "multilabel":
            continue
        try:
            attributions = integrated_gradients(fitted, dataset, task)
        except (MissingDependencyError, ConfigError) as exc:
            log.info("no feature attributions for task '%s': %s", task, exc)
            continue
        out[task] = (
            feature_table(attributions, fitted),
            patient_rows(attributions, fitted),
            attributions,
        )
    return out


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


def explain_run(
    run_dir: Path, data: str | None = None, patients: Sequence[str] | None = None
) -> list[Path]:
    """Explain a fitted run on `data`, or by default on the patients its weights were not
    fitted on (its validation part; the training data, with a warning, where it had none)."""
    from polyfuse.config import load_config
    from polyfuse.datasets import from_config
    from polyfuse.inference.predictor import Predictor

    run_dir = Path(run_dir)
    fitted = FittedModel.load(run_dir)
    if data:
        dataset = Predictor(fitted).read(data)
    else:
        dataset = from_config(load_config(run_dir / "config.yaml").data)
        held_out = set(fitted.validation_ids)
        rows = [i for i, pid in enumerate(dataset.ids) if pid in held_out]
        if rows:
            dataset = dataset.subset(np.asarray(rows))
        else:
            log.warning(
                "%s has no validation part: explaining it on its training data, where every "
                "attribution is as optimistic as the fit (give --data for held-out patients)",
                run_dir,
            )
    return explain(fitted, dataset, run_dir / "explain", patients)
