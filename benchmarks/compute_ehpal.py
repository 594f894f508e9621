"""Compute of EHPAL-Net against attention-based fusion (HEALNet, and synergies when registered).

Issue item 6 / methods.md §2(h): parameters, FLOPs per sample (`torch.utils.flop_counter`, via
`polyfuse.evaluation.profile.count_flops`), peak memory of a training step, and the CPU
training-step time, on the same inputs for every model:

* "paper": four 2D images of 3×128×128 at batch 1 (EHPAL-Net's setting, `width=1,
  grid_size=32` = the 64/128/256/512 net), and ehpal at its library default too;
* "tcga-acc": the six tabular modalities of the bundled TCGA-ACC cohort (random values of
  their widths), batch 1 for FLOPs and batch 32 for the step time.

Train FLOPs are forward + backward of a summed-logit loss (no optimiser step, no MC-dropout:
one forward in train mode, then its backward). The installed torch 2.13's `FlopCounterMode`
counts the weight gradient of a grouped convolution `groups` times over (its formula reuses
the ungrouped shapes; pytorch/pytorch#183405), which made the depthwise-heavy EHPAL-Net's
backward look ~28× its forward. `count_flops` divides that term by `groups` when the installed
torch has the over-count; the ratio train /
forward is printed as a check (≈ 3 for nets of linear maps and convolutions: forward, input
gradient and weight gradient have the same multiply-adds; less where the first layer needs no
input gradient).

The abstract's "up to 87.8 % lower compute than attention-based fusion" is a claim about the
authors' setting; this prints what this implementation does. Run:

    .venv/bin/python benchmarks/compute_ehpal.py [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from typing import Any

import torch

from polyfuse.data.dataset import ModalityBatch
from polyfuse.data.specs import ModalitySpec, TaskSpec
from polyfuse.evaluation.profile import count_flops, measure_peak_memory
from polyfuse.models.registry import create_model, list_models

TASKS = {"os": TaskSpec("os", "survival")}
ACC_WIDTHS = {"clinical": 19, "rna": 198, "cnv": 198, "mirna": 471, "mutation": 97, "rppa": 33}
REPEATS = 3


def batch(specs: dict[str, ModalitySpec], size: int) -> dict[str, ModalityBatch]:
    g = torch.Generator().manual_seed(0)
    present = torch.ones(size, dtype=torch.bool)
    return {
        m: ModalityBatch(torch.randn(size, *s.shape, generator=g), present)
        for m, s in specs.items()
    }


def step_seconds(model: torch.nn.Module, inputs: dict[str, ModalityBatch]) -> float:
    """Median wall time of forward + backward + Adam step, after one warm-up step."""
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    times = []
    for i in range(REPEATS + 1):
        start = time.perf_counter()
        out = model(inputs)
        out.logits["os"].sum().backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if i:
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def row(name: str, label: str, specs, hparams: dict[str, Any], step_batch: int) -> dict[str, Any]:
    torch.manual_seed(0)
    model = create_model(name, specs, TASKS, **hparams)
    forward, train = count_flops(model, batch(specs, 1))
    peak, _ = measure_peak_memory(model, batch(specs, 1))
    return {
        "model": label,
        "params_M": sum(p.numel() for p in model.parameters()) / 1e6,
        "fwd_GFLOPs": forward / 1e9,
        "train_GFLOPs": train / 1e9,
        "train/fwd": train / forward,
        "peak_MiB": peak,
        f"step_s@{step_batch}": step_seconds(model, batch(specs, step_batch)),
    }


def show(title: str, rows: list[dict[str, Any]]) -> None:
    print(f"\n## {title}\n")
    keys = list(rows[0])
    print("| " + " | ".join(keys) + " |")
    print("|" + "---|" * len(keys))
    for r in rows:
        cells = [f"{v:.4g}" if isinstance(v, float) else str(v) for v in r.values()]
        print("| " + " | ".join(cells) + " |")
    base = next(r for r in rows if r["model"].startswith("ehpal"))
    for r in rows:
        if not r["model"].startswith("ehpal"):
            saving = 1 - base["fwd_GFLOPs"] / r["fwd_GFLOPs"]
            print(f"{base['model']} vs {r['model']}: {100 * saving:+.1f}% fewer forward FLOPs")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    torch.set_num_threads(parser.parse_args().threads)
    names = list_models()
    others = [m for m in ("healnet", "synergies") if m in names]
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}; compared: {others}")
    print(f"load before: {load}")

    images = {f"m{i}": ModalitySpec(f"m{i}", "image", (3, 128, 128)) for i in range(1, 5)}
    rows = [
        row("ehpal", "ehpal (paper: width=1, grid 32)", images, dict(width=1, grid_size=32), 1),
        row("ehpal", "ehpal (default)", images, {}, 1),
    ]
    rows += [row(m, m, images, {}, 1) for m in others]
    show("paper setting: 4 images 3×128×128, batch 1", rows)

    tabular = {m: ModalitySpec(m, "tabular", (w,)) for m, w in ACC_WIDTHS.items()}
    rows = [row("ehpal", "ehpal (default)", tabular, {}, 32)]
    rows.append(row("ehpal", "ehpal (width=1, grid 32)", tabular, dict(width=1, grid_size=32), 32))
    rows += [row(m, m, tabular, {}, 32) for m in others]
    show("TCGA-ACC: 6 tabular modalities, FLOPs at batch 1, step at batch 32", rows)
    print(f"\nload after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
