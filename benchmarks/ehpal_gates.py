"""EHPAL-Net's MACFusion gates at initialisation on TCGA-ACC: saturation and per-modality
input gradients, for `gate="per_channel"` (default) against `gate="reference"` (issue #21).

For each seed, both models are built with that seed on the whole cohort (preprocessed as a fit
would), run forward once in training mode, and the sum of the task's risk is back-propagated to
the inputs. Reported per gate form, over seeds:

* saturated: share of gate values g beyond 0.01 / 0.99 (and exactly 0 or 1 in float32);
* logit: the largest |logit g| among the unsaturated ones (a saturated g has no finite logit);
* gradient spread: max / min over modalities of the input gradient's norm over a modality's
  features (root mean square over the samples that have it): how strongly the output depends
  on each modality as a whole, so a wide omics block and a 19-column clinical table compare.

    .venv/bin/python benchmarks/ehpal_gates.py [--seeds 5]
"""

from __future__ import annotations

import argparse
import statistics

import numpy as np
import torch

import polyfuse as pf
from polyfuse.data.preprocess import Preprocessor
from polyfuse.explain.macfusion import collect_macfusion
from polyfuse.models.registry import create_model


def present_gates(aux) -> np.ndarray:
    """Every gate value of a stream that is present (`collect_macfusion` marks the rest NaN)."""
    values = collect_macfusion([aux])
    gates = np.concatenate([v.ravel() for k, v in values.items() if k.kind == "gate"])
    return gates[~np.isnan(gates)]


def measure(gate: str, seed: int, data) -> dict[str, float]:
    torch.manual_seed(seed)
    # one modality per stage: the layout the saturation was found in (the default now groups
    # TCGA-ACC's six tables into 3 stages, `benchmarks/ehpal_stages.py`)
    model = create_model("ehpal", data.specs, data.tasks, gate=gate, max_stages=len(data.specs))
    model.train()
    batch = data[list(range(len(data)))]
    for b in batch.inputs.values():
        b.data.requires_grad_(True)
    out = model(batch.inputs)
    next(iter(out.logits.values())).sum().backward()
    g = torch.from_numpy(present_gates(out.aux))
    inner = g[(g > 0) & (g < 1)]
    grads = {
        m: float(b.data.grad[b.present].pow(2).sum(-1).mean().sqrt())
        for m, b in batch.inputs.items()
    }
    spread = max(grads.values()) / max(min(grads.values()), 1e-30)
    return {
        "saturated": float(((g < 0.01) | (g > 0.99)).float().mean()),
        "exact_0_or_1": float(((g == 0) | (g == 1)).float().mean()),
        "max_logit": float(torch.logit(inner.double()).abs().max()) if len(inner) else float("inf"),
        "gradient_spread": spread,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    args = parser.parse_args()
    raw = pf.datasets.load("tcga-acc")
    data = Preprocessor().fit_transform(raw)
    print(f"TCGA-ACC, {len(data)} patients, modalities {', '.join(data.specs)}")
    print("gate         saturated  exact 0/1  max |logit|  gradient spread (max/min)")
    for gate in ("reference", "per_channel"):
        rows = [measure(gate, s, data) for s in range(args.seeds)]

        def mean(key: str, rows=rows) -> float:
            return statistics.mean(r[key] for r in rows)

        spreads = sorted(r["gradient_spread"] for r in rows)
        print(
            f"{gate:12s} {mean('saturated'):8.1%}  {mean('exact_0_or_1'):8.1%}  "
            f"{mean('max_logit'):10.1f}   {spreads[0]:.3g} .. {spreads[-1]:.3g}"
        )


if __name__ == "__main__":
    main()
