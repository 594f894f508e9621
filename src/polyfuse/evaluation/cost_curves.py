"""Cost curves: training-step time and peak memory against modalities and tokens per modality.

A user with M modalities of about T tokens each can read off which model fits their data (and
their machine) before training anything. Every size is a synthetic cohort of M modalities of
kind "bag" (instances of a fixed feature width, `width`, every bag exactly `tokens` instances,
all modalities present), one binary task, `batch` samples. Bags are the token kind every
token model takes, so one input kind serves both sweeps:

* the modality sweep: M over `modalities` at a fixed token count (`at_tokens`, by default the
  middle of `tokens`);
* the token sweep: T over `tokens` at a fixed number of modalities (`at_modalities`, by default
  the middle of `modalities`).

The sizes measured are the union of both sweeps (their shared point once). Per model and size:

* `params`: elements of all parameters (shared ones once); models with per-modality encoders
  grow with M.
* `step_ms`: median wall time of `repeats` training steps after `warmup` untimed ones, each
  forward + backward of the summed logits from empty gradients (the step of
  `profile.measure_peak_memory`), in train mode, inputs already collated. The optimiser update
  (linear in the parameters) is not included. Threads are used as configured.
* `peak_mb`: `profile.measure_peak_memory` on the same batch: the most tensor memory alive in
  that step, parameters, buffers and inputs included (a dispatch-mode tracker on CPU, the CUDA
  allocator's peak on a GPU).
* `status`: "ok", or why the size failed (a model that cannot take bags or that many
  modalities, out of memory, …); a failed size gives NaN times and memory and <NA> parameters,
  and never stops the sweep.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from polyfuse.data.dataset import ListSource, MultimodalDataset
from polyfuse.data.specs import ModalitySpec, TaskSpec
from polyfuse.errors import ConfigError
from polyfuse.evaluation.profile import measure_peak_memory, measure_step

COLUMNS = ["model", "modalities", "tokens", "step_ms", "peak_mb", "params", "status"]


def sizes(
    modalities: Sequence[int],
    tokens: Sequence[int],
    at_modalities: int | None = None,
    at_tokens: int | None = None,
) -> list[tuple[int, int]]:
    """The (modalities, tokens) points of both sweeps, in order, the shared point once."""
    if not modalities or not tokens:
        raise ConfigError("cost curves need at least one modality count and one token count")
    if min(modalities) < 1 or min(tokens) < 1:
        raise ConfigError("cost curves need modality and token counts >= 1")
    m0 = modalities[len(modalities) // 2] if at_modalities is None else at_modalities
    t0 = tokens[len(tokens) // 2] if at_tokens is None else at_tokens
    points = [(m, t0) for m in modalities] + [(m0, t) for t in tokens]
    return list(dict.fromkeys(points))


def bag_cohort(
    modalities: int, tokens: int, *, batch: int = 8, width: int = 32, seed: int = 0
) -> MultimodalDataset:
    """`batch` samples of `modalities` bags `b0, b1, …`, each of `tokens` × `width` features."""
    rng = np.random.default_rng(seed)
    specs, sources = {}, {}
    for j in range(modalities):
        m = f"b{j}"
        specs[m] = ModalitySpec(m, "bag", (width,))
        bags = [rng.normal(size=(tokens, width)).astype(np.float32) for _ in range(batch)]
        sources[m] = ListSource(bags)
    labels = (np.arange(batch) % 2).astype(np.float32)
    return MultimodalDataset(
        [f"s{i}" for i in range(batch)],
        specs,
        sources,
        {"y": TaskSpec("y", "binary")},
        {"y": labels},
        name=f"bags-{modalities}x{tokens}",
    )


def measure_size(
    name: str,
    modalities: int,
    tokens: int,
    *,
    batch: int = 8,
    width: int = 32,
    hparams: dict | None = None,
    device: str | torch.device = "cpu",
    repeats: int = 5,
    warmup: int = 2,
) -> dict:
    """One row of the curves: model `name` on `modalities` bags of `tokens` instances."""
    from polyfuse.models.registry import create_model

    row = dict(model=name, modalities=modalities, tokens=tokens)
    try:
        data = bag_cohort(modalities, tokens, batch=batch, width=width)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            model = create_model(name, data.specs, data.tasks, **(hparams or {})).to(device)
            inputs = {m: b.to(device) for m, b in data.batch(np.arange(batch)).inputs.items()}
            params = {id(p): p for p in model.parameters()}.values()
            peak, _ = measure_peak_memory(model, inputs)
            step = measure_step(model, inputs, repeats=repeats, warmup=warmup)
    except Exception as e:  # a size that fails is a result, not a crash
        message = " ".join(str(e).split())[:160]
        failed = f"{type(e).__name__}: {message}"
        return row | dict(step_ms=math.nan, peak_mb=math.nan, params=math.nan, status=failed)
    return row | dict(
        step_ms=step, peak_mb=peak, params=sum(p.numel() for p in params), status="ok"
    )


def cost_curve(
    models: Sequence[str],
    modalities: Sequence[int] = (2, 4, 8, 16),
    tokens: Sequence[int] = (16, 64, 256),
    *,
    at_modalities: int | None = None,
    at_tokens: int | None = None,
    batch: int = 8,
    width: int = 32,
    hparams: dict[str, dict] | None = None,
    device: str | torch.device = "cpu",
    repeats: int = 5,
    warmup: int = 2,
    on_size: Callable[[str, int, int], None] | None = None,
) -> pd.DataFrame:
    """Step time, peak memory and parameters of each model at each size (module docstring).

    Rows `COLUMNS`, models in the order given, sizes as `sizes` lists them. `on_size(model,
    modalities, tokens)` is called after each size (a progress bar).
    """
    points = sizes(modalities, tokens, at_modalities, at_tokens)
    hparams = dict(hparams or {})
    options = dict(batch=batch, width=width, device=device, repeats=repeats, warmup=warmup)
    rows = []
    for name in models:
        for m, t in points:
            rows.append(measure_size(name, m, t, hparams=hparams.get(name), **options))
            if on_size is not None:
                on_size(name, m, t)
    frame = pd.DataFrame(rows, columns=COLUMNS)
    return frame.astype({"params": "Int64"})  # whole numbers, <NA> where a size failed


def _fixed(frame: pd.DataFrame, fixed: str, varied: str) -> int:
    """The value of `fixed` that the most distinct values of `varied` were measured at."""
    counts = frame.groupby(fixed)[varied].nunique()
    return int(counts.idxmax())


def plot_cost_curves(frame: pd.DataFrame, path: Path) -> list[Path]:
    """Two figures, step time (`path`) and peak memory (`path` with `_memory`), log-log.

    Each has two panels: against modalities at the token count of the modality sweep, and
    against tokens at the modality count of the token sweep; one line per model, told apart by
    `figures.style`. Failed sizes (NaN) leave gaps.
    """
    from polyfuse.figures import figure, save, style

    path = Path(path)
    t0 = _fixed(frame, "tokens", "modalities")
    m0 = _fixed(frame, "modalities", "tokens")
    panels = [
        ("modalities", frame[frame.tokens == t0], f"modalities (at {t0} tokens each)"),
        ("tokens", frame[frame.modalities == m0], f"tokens per modality (at {m0} modalities)"),
    ]
    written = []
    for column, label, target in (
        ("step_ms", "training step (ms)", path),
        ("peak_mb", "peak memory (MiB)", path.with_name(f"{path.stem}_memory{path.suffix}")),
    ):
        fig, ax = figure(11.0, 4.0)
        ax.remove()
        axes = fig.subplots(1, 2)
        for ax, (x, part, xlabel) in zip(axes, panels, strict=True):
            for i, (name, rows) in enumerate(part.groupby("model", sort=False)):
                rows = rows.sort_values(x)
                ax.plot(rows[x], rows[column], label=name, **style(i))
            ax.set(xscale="log", yscale="log", xlabel=xlabel, ylabel=label)
            ax.set_xticks(sorted(part[x].unique()), [str(v) for v in sorted(part[x].unique())])
            ax.minorticks_off()
            ax.grid(True, which="major", alpha=0.3)
        handles, names = axes[0].get_legend_handles_labels()
        fig.legend(handles, names, loc="outside right upper", fontsize="small")
        fig.suptitle(f"{label} per model")
        written.append(save(fig, target))
    return written
