"""MACFusion inspection: per-unit attention A_m and gates g_m of every layer, per stage.

Models with MACFusion layers (EHPAL-Net) publish, for stage k, EHF block j and MACFusion
layer l of that block, `aux["attention/stage{k}/ehf{j}/mac{l}/{a|b}"]`, A_m (B, U) summing to 1
over the U channel units, and `aux["gate/stage{k}/ehf{j}/mac{l}/{a|b}"]`, g_m (B, 1) in (0, 1).
Stream "a" is the shared stream (the first modality at stages 1-2, the fusion of every earlier
modality from stage 3 on), stream "b" the modality injected at that stage. Both are exactly 0
for a sample whose stream is absent; such samples are left out of every mean here.

Streams are named after the model's injection schedule when it has one (`model.schedule`,
`[[m1, m2], [m1, m2], [m3], ...]`), read as an attribute, so any model publishing these keys
gets the same figures; without one they are called "stream a" and "stream b".

Writes `macfusion_attention.png|csv` (mean A_m per unit, grid of stages × layers) and
`macfusion_gates.png|csv` (distribution of g_m per stage, layer and stream).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from polyfuse.data.dataset import MultimodalDataset
from polyfuse.explain.attention import MACFUSION_KEY, aux_outputs
from polyfuse.figures import figure, save
from polyfuse.io import atomic_write
from polyfuse.training.fit import FittedModel

STREAMS = ("a", "b")
COLUMNS = ["stage", "modality", "layer", "stream"]
GATE_STATS = ("mean", "sd", "min", "median", "max")
STYLE = {"a": dict(color="black", linestyle="-"), "b": dict(color="0.45", linestyle="--")}
MARKER = {"a": "o", "b": "s"}
STREAMS_NOTE = (
    "a = the first modality's stream at stages 1-2, then the shared (fused) stream; "
    "b = the modality brought in at that stage"
)
MARKERS_UP_TO = 32  # units; beyond this the attention lines are drawn without markers


@dataclass(frozen=True, order=True)
class MacKey:
    """One MACFusion aux entry: `{kind}/stage{stage}/{layer}/{stream}`."""

    stage: int
    layer: str  # "ehf1/mac1"
    stream: str  # "a" (shared) or "b" (injected)
    kind: str  # "attention" or "gate"


def parse_key(key: str) -> MacKey | None:
    """The MACFusion entry an aux key names, or None for any other key."""
    match = MACFUSION_KEY.match(key)
    if match is None:
        return None
    kind, stage, layer, stream = match.groups()
    return MacKey(int(stage), layer, stream, kind)


def collect_macfusion(auxes: Iterable[Mapping[str, torch.Tensor]]) -> dict[MacKey, np.ndarray]:
    """`{key: (samples, U)}` arrays over all batches; NaN rows where the stream is absent.

    Attention is `(samples, U)`; a gate is `(samples, 1)`. A stream is absent for a sample
    where its attention row is all 0 (a softmax row sums to 1); its gate is then NaN too (a
    gate alone cannot tell: a saturated σ can be exactly 0 in float32).
    Stops after the first batch when it holds no MACFusion key (the result is then empty).
    """
    chunks: dict[MacKey, list[np.ndarray]] = {}
    for aux in auxes:
        keys = {k: parse_key(k) for k in aux}
        keys = {k: v for k, v in keys.items() if v is not None}
        if not keys:
            return {}
        for name, key in keys.items():
            value = aux[name].detach().float().cpu().numpy()
            chunks.setdefault(key, []).append(value.reshape(len(value), -1))
    values = {k: np.concatenate(v) for k, v in sorted(chunks.items())}
    for key in [k for k in values if k.kind == "attention"]:
        absent = ~values[key].any(axis=1)
        values[key][absent] = np.nan
        gate = MacKey(key.stage, key.layer, key.stream, "gate")
        if gate in values:
            values[gate][absent] = np.nan
    return values


def stream_names(schedule: Sequence[Sequence[str]] | None, stages: int) -> dict[tuple, str]:
    """`{(stage, stream): name}`: the modality of stream b, the one (or the fusion) of a.

    With `[[m1, m2], [m1, m2], [m3], ...]`: stages 1-2 have a = m1, b = m2; stage k ≥ 3 has
    a = "m1+…+m(k−1)" (the shared stream, each modality once) and b = m_k (a stage of several
    modalities: "m_k+m_l").
    """
    valid = (
        schedule is not None
        and len(schedule) >= stages
        and len(schedule[0]) == 2
        and all(isinstance(m, str) for s in schedule for m in s)
    )
    if not valid:
        return {(k, s): f"stream {s}" for k in range(1, stages + 1) for s in STREAMS}
    first, second = schedule[0]
    names = {}
    for k in range(1, stages + 1):
        if k <= 2:
            names[k, "a"], names[k, "b"] = first, second
            continue
        earlier = [m for stage in schedule[: k - 1] for m in stage]
        names[k, "a"] = "+".join(dict.fromkeys(earlier))
        names[k, "b"] = "+".join(schedule[k - 1])
    return names


def _present(array: np.ndarray) -> np.ndarray:
    return array[~np.isnan(array).all(axis=1)]


def _sd(rows: np.ndarray) -> np.ndarray:
    if len(rows) < 2:
        return np.full(rows.shape[1], np.nan)
    return rows.std(axis=0, ddof=1)


def attention_table(
    values: Mapping[MacKey, np.ndarray], names: Mapping[tuple, str]
) -> pd.DataFrame:
    """Tidy: stage, modality, layer, stream, unit, n, mean, sd (of A_m over samples)."""
    rows = []
    for key, array in values.items():
        if key.kind != "attention":
            continue
        present = _present(array)
        mean = present.mean(axis=0) if len(present) else np.full(array.shape[1], np.nan)
        for unit, (m, s) in enumerate(zip(mean, _sd(present), strict=True)):
            rows.append(
                dict(**_where(key, names), unit=unit, n=len(present), mean=float(m), sd=float(s))
            )
    return pd.DataFrame(rows, columns=[*COLUMNS, "unit", "n", "mean", "sd"])


def _where(key: MacKey, names: Mapping[tuple, str]) -> dict[str, object]:
    """The COLUMNS of a table row: which stage, modality, layer and stream `key` is."""
    return dict(
        stage=key.stage, modality=names[key.stage, key.stream], layer=key.layer, stream=key.stream
    )


def gate_table(values: Mapping[MacKey, np.ndarray], names: Mapping[tuple, str]) -> pd.DataFrame:
    """Tidy: stage, modality, layer, stream, n, mean, sd, min, median, max (of g_m)."""
    rows = []
    for key, array in values.items():
        if key.kind != "gate":
            continue
        g = _present(array).mean(axis=1)  # g_m is one value per sample
        stats = dict.fromkeys(GATE_STATS, np.nan)
        if len(g):
            stats.update(mean=g.mean(), min=g.min(), median=np.median(g), max=g.max())
        if len(g) > 1:
            stats.update(sd=g.std(ddof=1))
        rows.append(dict(**_where(key, names), n=len(g), **{k: float(v) for k, v in stats.items()}))
    return pd.DataFrame(rows, columns=[*COLUMNS, "n", *GATE_STATS])


def _layer_title(layer: str) -> str:
    ehf, mac = layer.split("/")
    return f"{ehf.upper()} · MACFusion {mac.removeprefix('mac')}"


def _legend_label(stage: int, stream: str, names: Mapping[tuple, str]) -> str:
    """Stages 1-2: `a: clin`, `b: rna`; later: `a: shared clin+rna`, `b: wsi (injected)`."""
    name = names[stage, stream]
    if stage <= 2:
        return f"{stream}: {name}"
    return f"a: shared {name}" if stream == "a" else f"b: {name} (injected)"


def plot_attention(table: pd.DataFrame, names: Mapping[tuple, str], path: Path) -> Path:
    """Rows: stages (named by their streams' modalities); columns: MACFusion layers; in each
    cell mean A_m per unit for stream a (solid) and b (dashed), ±1 sd shaded, and the uniform
    attention 1/U dotted."""
    stages = sorted(table["stage"].unique())
    layers = sorted(table["layer"].unique())
    fig, only = figure(3.2 * len(layers) + 0.8, 2.4 * len(stages) + 0.8)
    only.remove()  # the shared helper makes one axis; this figure has a grid
    grid = fig.subplots(len(stages), len(layers), squeeze=False)
    for r, stage in enumerate(stages):
        for c, layer in enumerate(layers):
            ax = grid[r, c]
            cell = table[(table["stage"] == stage) & (table["layer"] == layer)]
            units = 0
            for stream in STREAMS:
                part = cell[cell["stream"] == stream].sort_values("unit")
                if part.empty:
                    continue
                units = len(part)
                x, mean, sd = part["unit"], part["mean"], part["sd"].fillna(0.0)
                marker = MARKER[stream] if units <= MARKERS_UP_TO else None
                ax.plot(
                    x,
                    mean,
                    marker=marker,
                    markersize=3,
                    linewidth=1,
                    label=_legend_label(stage, stream, names),
                    **STYLE[stream],
                )
                ax.fill_between(
                    x,
                    (mean - sd).clip(lower=0),
                    mean + sd,
                    color=STYLE[stream]["color"],
                    alpha=0.12,
                )
            if units:
                ax.axhline(1 / units, color="0.6", linestyle=":", linewidth=1, label="uniform 1/U")
            ax.set_ylim(bottom=0)
            if r == 0:
                ax.set_title(_layer_title(layer), fontsize="medium")
            if r == len(stages) - 1:
                ax.set_xlabel("channel unit")
            if c == 0:
                ax.set_ylabel(f"stage {stage} (U = {units})\nmean A_m")
        handles, labels = grid[r, 0].get_legend_handles_labels()  # one legend per stage, outside
        grid[r, -1].legend(
            handles, labels, fontsize="small", loc="center left", bbox_to_anchor=(1.02, 0.5)
        )
    fig.suptitle(
        "MACFusion attention A_m over channel units (mean ± sd over samples with the stream)\n"
        + STREAMS_NOTE
    )
    return save(fig, path)


def plot_gates(values: Mapping[MacKey, np.ndarray], names: Mapping[tuple, str], path: Path) -> Path:
    """One panel per stage, a pair of columns per MACFusion layer: g_m of every sample
    (jittered; stream a hollow circles, b grey triangles) and its mean ± sd (black diamond).

    Points rather than boxes: trained gates often saturate at 0 or 1, which a box hides.
    """
    gates = {k: _present(v).mean(axis=1) for k, v in values.items() if k.kind == "gate"}
    stages = sorted({k.stage for k in gates})
    layers = sorted({k.layer for k in gates})
    fig, only = figure(0.8 + 2.4 * len(stages) * max(1, len(layers)) / 4, 4.6)
    only.remove()  # the shared helper makes one axis; this figure has one per stage
    axes = fig.subplots(1, len(stages), squeeze=False, sharey=True)[0]
    rng = np.random.default_rng(0)  # the jitter only; the same figure every time
    dots = {
        "a": dict(marker="o", facecolors="none", edgecolors="black"),
        "b": dict(marker="^", facecolors="0.55", edgecolors="none"),
    }
    for ax, stage in zip(axes, stages, strict=True):
        for s, stream in enumerate(STREAMS):
            label = _legend_label(stage, stream, names)
            for i, layer in enumerate(layers):
                g = gates.get(MacKey(stage, layer, stream, "gate"))
                if g is None or not len(g):
                    continue
                x = 3 * i + s
                jitter = rng.uniform(-0.3, 0.3, len(g))
                ax.scatter(
                    x + jitter, g, s=8, alpha=0.6, linewidths=0.6, label=label, **dots[stream]
                )
                label = None  # one legend entry per stream
                mean, sd = g.mean(), g.std(ddof=1) if len(g) > 1 else 0.0
                error = [[min(sd, mean)], [min(sd, 1.0 - mean)]]  # ± sd, kept inside [0, 1]
                ax.errorbar(x, mean, error, fmt="D", color="black", markersize=5, capsize=3)
        ax.set_xticks(
            [3 * i + 0.5 for i in range(len(layers))],
            [layer.upper().replace("/", "\n") for layer in layers],
            fontsize="small",
        )
        ax.set_ylim(-0.04, 1.04)
        ax.set_title(f"stage {stage}")
        ax.legend(fontsize="x-small", markerscale=2, loc="upper center", bbox_to_anchor=(0.5, -0.2))
    axes[0].set_ylabel("gate g_m")
    fig.suptitle(
        "MACFusion gates g_m per stage, layer and stream (dots: samples; ◆ mean ± sd)\n"
        + STREAMS_NOTE
    )
    return save(fig, path)


def explain_macfusion(fitted: FittedModel, dataset: MultimodalDataset, out: Path) -> list[Path]:
    """Figures and tables of every MACFusion layer; nothing for a model without any."""
    values = collect_macfusion(aux for _, aux in aux_outputs(fitted, dataset))
    if not values:
        return []
    stages = max(k.stage for k in values)
    names = stream_names(getattr(fitted.model, "schedule", None), stages)
    attention, gates = attention_table(values, names), gate_table(values, names)
    written = []
    for table, stem in ((attention, "macfusion_attention"), (gates, "macfusion_gates")):
        atomic_write(out / f"{stem}.csv", lambda p, t=table: t.to_csv(p, index=False))
        written.append(out / f"{stem}.csv")
    written.append(plot_attention(attention, names, out / "macfusion_attention.png"))
    written.append(plot_gates(values, names, out / "macfusion_gates.png"))
    return written


__all__ = [
    "MacKey",
    "attention_table",
    "collect_macfusion",
    "explain_macfusion",
    "gate_table",
    "parse_key",
    "plot_attention",
    "plot_gates",
    "stream_names",
]
