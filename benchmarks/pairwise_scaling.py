"""Hierarchical pairwise fusion next to learnable synergies as the number of modalities grows.

Issue #8 item 4: the cost the synergies paper argues against, measured. `hierarchical` builds one
interaction module per unordered pair of modalities, M(M−1)/2 of them (and with `max_order=3`
one node per triple too, C(M, 3) more); `synergies` adds one token per tabular modality to its
joint transformer (`tabular_tokens="single"`, its default), so the joint sequence is 1 + M.

Cases: M = 2, 4, 8, 16 tabular modalities of 64 features each (`synergies_scaling.tabular_case`,
random values), batch 4, one binary head, default model sizes (`synergies` with
`return_attention=False`, as in `synergies_scaling.py`, since training does not need the maps).
Per case and model:

* params: elements of all parameters;
* pairs / higher-order nodes: `hierarchical`'s pair modules and subset nodes of size ≥ 3;
* MFLOPs per sample: forward FLOPs (`polyfuse.evaluation.profile.count_flops`, eval mode) over
  the batch size; matrix products only, see `evaluation/profile.py`;
* step ms / min ms: median and minimum of `--repeats` training steps (forward + backward of the
  summed logits, no optimiser step: `synergies_scaling.step_seconds`) after `--warmup` untimed
  ones; on a shared machine the minimum is the steadier of the two;
* peak MiB: `polyfuse.evaluation.profile.measure_peak_memory` of one such step (parameters,
  inputs and every tensor alive during it).

`max_order=3` at M = 16 is 120 pairs + 560 triples: it runs (each node is one small Linear), so
it is measured rather than skipped. Prints a markdown table and the log-log slopes between M = 8
and 16, and writes `benchmarks/figures/pairwise_scaling.png`. Run:

    .venv/bin/python benchmarks/pairwise_scaling.py [--threads 2] [--repeats 15]
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
from pathlib import Path
from typing import Any

import torch
from synergies_scaling import step_seconds, tabular_case

from polyfuse.data.specs import TaskSpec
from polyfuse.evaluation.profile import count_flops, measure_peak_memory
from polyfuse.models.registry import create_model

MODALITIES = (2, 4, 8, 16)
TASKS = {"y": TaskSpec("y", "binary", classes=("0", "1"))}
MODELS: dict[str, tuple[str, dict[str, Any]]] = {
    "hierarchical (concat_mlp)": ("hierarchical", {}),
    "hierarchical (max_order=3)": ("hierarchical", {"max_order": 3}),
    "synergies": ("synergies", {"return_attention": False}),
}
COLUMNS = (
    "model",
    "M",
    "pairs",
    "triples",
    "params",
    "MFLOPs/sample",
    "step ms",
    "min ms",
    "peak MiB",
)
FIGURE = Path(__file__).parent / "figures" / "pairwise_scaling.png"


def measure(
    name: str, hparams: dict[str, Any], modalities: int, warmup: int, repeats: int
) -> dict[str, Any]:
    """One model on M tabular modalities: the columns of the table (see the module docstring)."""
    specs, batch = tabular_case(modalities)
    torch.manual_seed(0)
    model = create_model(name, specs, TASKS, **hparams).train()
    pairwise = name == "hierarchical"
    forward, _ = count_flops(model, batch)
    for _ in range(warmup):
        step_seconds(model, batch)
    seconds = [step_seconds(model, batch) for _ in range(repeats)]
    peak, _ = measure_peak_memory(model, batch)
    size = len(next(iter(batch.values())).present)
    return {
        "params": sum(p.numel() for p in model.parameters()),
        "pairs": len(model.pair_modules) if pairwise else None,
        "higher": len(model.subset_modules) if pairwise else None,
        "mflops": forward / size / 1e6,
        "step_ms": 1000 * statistics.median(seconds),
        "min_ms": 1000 * min(seconds),
        "peak_mib": peak,
    }


def row(cells: tuple[str, ...], widths: tuple[int, ...]) -> str:
    """A markdown table row: the first cell left-aligned, the others right-aligned."""
    pairs = enumerate(zip(cells, widths, strict=True))
    padded = [c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in pairs]
    return "| " + " | ".join(padded) + " |"


def slope(rows: dict[int, dict[str, Any]], key: str, lo: int = 8, hi: int = 16) -> float:
    """Log-log slope of `key` between M = lo and M = hi (1: linear, 2: quadratic)."""
    return math.log(rows[hi][key] / rows[lo][key]) / math.log(hi / lo)


def plot(results: dict[str, dict[int, dict[str, Any]]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(8, 3.2))
    for ax, key, label in (
        (axes[0], "params", "parameters"),
        (axes[1], "min_ms", "training step, min (ms)"),
    ):
        for model, rows in results.items():
            ms = sorted(rows)
            ax.plot(ms, [rows[m][key] for m in ms], marker="o", label=model)
        ax.set(xscale="log", yscale="log", xlabel="modalities M", ylabel=label)
        ax.set_xticks(MODALITIES, [str(m) for m in MODALITIES])
        ax.minorticks_off()
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps per case")
    parser.add_argument("--repeats", type=int, default=15, help="timed steps per case")
    parser.add_argument("--figure", type=Path, default=FIGURE)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    load = os.getloadavg()
    print(
        f"torch {torch.__version__}, threads {torch.get_num_threads()}, "
        f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, cpus {os.cpu_count()}, "
        f"load before {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
    )
    widths = (26, 2, 5, 7, 9, 13, 7, 6, 8)
    print(row(COLUMNS, widths))
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    results: dict[str, dict[int, dict[str, Any]]] = {}
    for label, (name, hparams) in MODELS.items():
        results[label] = {}
        for m in MODALITIES:
            r = measure(name, hparams, m, args.warmup, args.repeats)
            results[label][m] = r
            cells = (
                label,
                str(m),
                "—" if r["pairs"] is None else str(r["pairs"]),
                "—" if r["higher"] is None else str(r["higher"]),
                f"{r['params']:,d}",
                f"{r['mflops']:.3f}",
                f"{r['step_ms']:.1f}",
                f"{r['min_ms']:.1f}",
                f"{r['peak_mib']:.2f}",
            )
            print(row(cells, widths), flush=True)
    print("\nlog-log slope between M = 8 and M = 16 (1 = linear, 2 = quadratic, 3 = cubic):")
    for label, rows in results.items():
        print(
            f"  {label:26s} params {slope(rows, 'params'):.2f}, "
            f"FLOPs {slope(rows, 'mflops'):.2f}, step (min) {slope(rows, 'min_ms'):.2f}"
        )
    load = os.getloadavg()
    print(f"load after {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    plot(results, args.figure)
    print(f"figure: {args.figure}")


if __name__ == "__main__":
    main()
