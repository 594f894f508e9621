"""Learnable synergies (LSMT) on CPU: step time and peak memory as the inputs grow.

Issue item 5. Two sweeps of one training step (forward + backward of a summed-logit loss, batch
4, two threads, default model sizes, `return_attention=False` since training does not need the
maps, feature tokens for tables), random inputs, one multilabel head of 25 labels (the paper's
phenotypes):

1. modalities: 2, 4, 8, 16 tabular modalities of 64 features, each a set of 64 feature tokens
   going straight into the joint transformer (64 is the default `memory_threshold`): the
   joint sequence grows as 1 + 64·M, so its attention grows quadratically in M.
2. one sequence of 100 → 10,000 steps (8 channels) plus a 16-feature table. With its Perceiver
   memory (the default for sequences) the joint sequence stays 1 + 16 + L and the memory's
   cross-attention costs O(L·T): time and memory grow linearly in T. For contrast, the same
   sequence fed straight into the joint transformer (`memory_modalities=[]`), whose attention
   costs O(T²) time, up to `--direct-max` steps. Its tracked peak memory grows about linearly
   too, but several times faster: `scaled_dot_product_attention`'s fused CPU kernel never
   materialises the T × T weights (and workspaces inside a kernel are not tracked), while every
   one of the T tokens passes every joint layer instead of the memory's L latents.

Peak memory is `polyfuse.evaluation.profile.measure_peak_memory` (parameters, inputs and every
tensor alive during the step). Run:

    .venv/bin/python benchmarks/synergies_scaling.py [--repeats 3] [--direct-max 1000]
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import torch

from polyfuse.data.dataset import ModalityBatch
from polyfuse.data.specs import ModalitySpec, TaskSpec
from polyfuse.evaluation.profile import measure_peak_memory
from polyfuse.models.registry import create_model

BATCH, TOKENS, CHANNELS, TABLE = 4, 64, 8, 16
TASKS = {"dx": TaskSpec("dx", "multilabel", classes=tuple(f"c{i}" for i in range(25)))}


def tabular_case(modalities: int) -> tuple[dict[str, ModalitySpec], dict[str, ModalityBatch]]:
    g = torch.Generator().manual_seed(modalities)
    present = torch.ones(BATCH, dtype=torch.bool)
    names = [f"m{i:02d}" for i in range(modalities)]
    specs = {m: ModalitySpec(m, "tabular", (TOKENS,)) for m in names}
    inputs = {m: ModalityBatch(torch.randn(BATCH, TOKENS, generator=g), present) for m in names}
    return specs, inputs


def sequence_case(steps: int) -> tuple[dict[str, ModalitySpec], dict[str, ModalityBatch]]:
    g = torch.Generator().manual_seed(steps)
    present = torch.ones(BATCH, dtype=torch.bool)
    specs = {
        "clinical": ModalitySpec("clinical", "tabular", (TABLE,)),
        "vitals": ModalitySpec("vitals", "sequence", (CHANNELS,)),
    }
    times = torch.cumsum(torch.rand(BATCH, steps, generator=g), dim=1)
    inputs = {
        "clinical": ModalityBatch(torch.randn(BATCH, TABLE, generator=g), present),
        "vitals": ModalityBatch(
            torch.randn(BATCH, steps, CHANNELS, generator=g),
            present,
            torch.ones(BATCH, steps, dtype=torch.bool),
            times,
        ),
    }
    return specs, inputs


def step_seconds(model: torch.nn.Module, batch: dict[str, ModalityBatch]) -> float:
    """Wall time of one forward + backward of the summed logits (no optimiser step)."""
    start = time.perf_counter()
    out = model(batch)
    sum(t.sum() for t in out.logits.values()).backward()
    model.zero_grad(set_to_none=True)
    return time.perf_counter() - start


def measure(specs, batch, repeats: int, **hparams: Any) -> tuple[int, float, float]:
    """(joint sequence length, median step seconds, peak MiB)."""
    torch.manual_seed(0)
    model = create_model(
        "synergies", specs, TASKS, return_attention=False, tabular_tokens="features", **hparams
    ).train()
    step_seconds(model, batch)  # warm-up
    seconds = statistics.median(step_seconds(model, batch) for _ in range(repeats))
    peak, _ = measure_peak_memory(model, batch)
    joint = 1 + sum(
        model.memories[m].latents.shape[0] if m in model.memories else _tokens(specs[m], batch[m])
        for m in specs
    )
    return joint, seconds, peak


def _tokens(spec: ModalitySpec, batch: ModalityBatch) -> int:
    return spec.width if spec.kind == "tabular" else batch.data.shape[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="timed steps per case")
    parser.add_argument("--direct-max", type=int, default=1000, help="longest direct sequence")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, batch {BATCH}")
    header = f"| {'case':34s} | {'joint tokens':>12s} | {'step ms':>9s} | {'peak MiB':>9s} |"
    rule = "|" + "|".join("-" * (len(c) + 0) for c in header.split("|")[1:-1]) + "|"
    print(header)
    print(rule)

    def row(case: str, joint: int, seconds: float, peak: float) -> None:
        print(f"| {case:34s} | {joint:12d} | {1000 * seconds:9.1f} | {peak:9.1f} |", flush=True)

    for modalities in (2, 4, 8, 16):
        specs, batch = tabular_case(modalities)
        row(f"{modalities} modalities × {TOKENS} tokens", *measure(specs, batch, args.repeats))
    for steps in (100, 1000, 3000, 10_000):
        specs, batch = sequence_case(steps)
        row(f"sequence {steps} steps, memory", *measure(specs, batch, args.repeats))
    for steps in (100, 1000, 3000, 10_000):
        if steps > args.direct_max:
            break
        specs, batch = sequence_case(steps)
        result = measure(specs, batch, args.repeats, memory_modalities=[])
        row(f"sequence {steps} steps, no memory", *result)


if __name__ == "__main__":
    main()
