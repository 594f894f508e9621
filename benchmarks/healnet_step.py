"""HEALNet training-step cost on CPU: tuned BLCA preset, omics 2,191 + a WSI bag of 4,000 × 2,048.

Issue 3 §6: forward + backward time and peak tensor memory at batch 4, two threads, for the bag
in the reference's layout (tokens = the 2,048 feature dimensions, channels = the 4,000 patches)
and with patches as tokens (4,000 tokens of 2,048 channels). Random inputs of those shapes (no
such cohort ships offline); one discrete-survival head of 4 bins. Run:

    .venv/bin/python benchmarks/healnet_step.py
"""

from __future__ import annotations

import statistics
import time

import torch

from polyfuse.data.dataset import ModalityBatch
from polyfuse.data.specs import ModalitySpec, TaskSpec
from polyfuse.evaluation.profile import measure_peak_memory
from polyfuse.models.registry import create_model

BATCH, OMICS, PATCHES, FEATURES, REPEATS = 4, 2191, 4000, 2048, 5


def inputs() -> dict[str, ModalityBatch]:
    g = torch.Generator().manual_seed(0)
    present = torch.ones(BATCH, dtype=torch.bool)
    return {
        "omics": ModalityBatch(torch.randn(BATCH, OMICS, generator=g), present),
        "wsi": ModalityBatch(
            torch.randn(BATCH, PATCHES, FEATURES, generator=g),
            present,
            torch.ones(BATCH, PATCHES, dtype=torch.bool),
        ),
    }


def step_seconds(model: torch.nn.Module, batch: dict[str, ModalityBatch]) -> float:
    start = time.perf_counter()
    out = model(batch)
    out.logits["os"].sum().backward()
    model.zero_grad(set_to_none=True)
    return time.perf_counter() - start


def main() -> None:
    torch.set_num_threads(2)
    specs = {
        "omics": ModalitySpec("omics", "tabular", (OMICS,)),
        "wsi": ModalitySpec("wsi", "bag", (FEATURES,)),
    }
    tasks = {"os": TaskSpec("os", "survival")}
    batch = inputs()
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, batch {BATCH}")
    for layout, extra in (
        (
            "reference: tokens = feature dims",
            {"wsi_tokens": "feature_dims", "max_instances": PATCHES},
        ),
        ("patches as tokens", {"wsi_tokens": "patches"}),
    ):
        torch.manual_seed(0)
        model = create_model("healnet", specs, tasks, preset="blca", **extra).train()
        params = sum(p.numel() for p in model.parameters())
        step_seconds(model, batch)  # warm-up
        times = [step_seconds(model, batch) for _ in range(REPEATS)]
        peak, method = measure_peak_memory(model, batch)
        print(
            f"{layout:34s} params {params / 1e6:6.2f} M | step {statistics.median(times):6.2f} s "
            f"(median of {REPEATS}) | peak {peak:8.1f} MiB ({method})"
        )


if __name__ == "__main__":
    main()
