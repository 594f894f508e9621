"""polyfuse's engine on one GPU, in fp32 and bf16 mixed precision, against the same machine's CPU.

Issue #17 §6. Two parts, each configuration run once, in this order (CPU, GPU fp32, GPU bf16):

1. TCGA-ACC (bundled, 92 patients, 6 modalities): 5-fold CV of `--models` (default `early`
   and `healnet`) with their defaults. A small cohort: the GPU's gain is bounded by per-step
   overhead; the c-index shows that mixed precision learns the same.
2. A synthetic cohort the size of a whole-slide study: `--patients` patients, each an omics
   vector of 2,000 features and a bag of 256 patch embeddings of 768 features, survival
   depending on one omics feature and the mean of one patch feature. HEALNet, `--epochs`
   epochs, batch 32, 20 % held out for validation and 20 % for a test c-index.

Wall is `time.perf_counter`, CPU is `time.process_time` of this process, GPU memory is
`torch.cuda.max_memory_allocated` over the fit. Run (needs a CUDA GPU):

    python benchmarks/gpu_fit.py
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np
import torch

import polyfuse as pf
from polyfuse.config import TrainingConfig
from polyfuse.data.dataset import ArraySource, ListSource, MultimodalDataset
from polyfuse.data.specs import ModalitySpec, TaskSpec

SETUPS = [("cpu", "32-true"), ("gpu", "32-true"), ("gpu", "bf16-mixed")]


def measured(run: Callable[[], float]) -> str:
    """Run `run` (which returns a c-index); its wall, CPU, peak GPU memory and c-index."""
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    cpu, wall = time.process_time(), time.perf_counter()
    c_index = run()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    peak = torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else 0.0
    return f"wall {wall:7.1f} s  cpu {cpu:7.1f} s  GPU peak {peak:7.0f} MiB  c-index {c_index:.3f}"


def small_cohort(models: list[str]) -> None:
    data = pf.datasets.load("tcga-acc")
    print(f"\nTCGA-ACC, {len(data)} patients, 5-fold CV, defaults")
    for model in models:
        for accelerator, precision in SETUPS:
            cfg = TrainingConfig(accelerator=accelerator, precision=precision, progress=False)

            def run(model: str = model, cfg: TrainingConfig = cfg) -> float:
                result = pf.cross_validate(model, data, folds=5, training=cfg, progress=False)
                folds = result.folds
                return float(folds.loc[folds["metric"] == "c_index", "value"].mean())

            print(f"  {model:10s} {accelerator} {precision:10s} {measured(run)}")


def slide_cohort(n: int) -> MultimodalDataset:
    rng = np.random.default_rng(0)
    omics = rng.normal(size=(n, 2000)).astype(np.float32)
    bags = [rng.normal(size=(256, 768)).astype(np.float32) for _ in range(n)]
    score = omics[:, 0] + np.array([b[:, 0].mean() * 16 for b in bags])
    time_ = rng.exponential(np.exp(-score)) * 100 + 1
    censor = rng.exponential(150, n) + 1
    os_ = np.stack([np.minimum(time_, censor), (time_ <= censor).astype(float)], 1)
    return MultimodalDataset(
        [f"p{i:05d}" for i in range(n)],
        {
            "omics": ModalitySpec("omics", "tabular", (2000,)),
            "wsi": ModalitySpec("wsi", "bag", (768,)),
        },
        {"omics": ArraySource(omics, np.ones(n, bool)), "wsi": ListSource(bags)},
        {"os": TaskSpec("os", "survival")},
        {"os": os_},
        name="slides",
    )


def large_cohort(patients: int, epochs: int) -> None:
    data = slide_cohort(patients)
    cut = int(0.8 * patients)
    train, test = data.subset(range(cut)), data.subset(range(cut, patients))
    print(f"\nsynthetic slides: {patients} patients × 256 patches × 768, HEALNet, {epochs} epochs")
    for accelerator, precision in SETUPS:
        cfg = TrainingConfig(
            accelerator=accelerator,
            precision=precision,
            epochs=epochs,
            patience=epochs,
            progress=False,
        )

        def run(cfg: TrainingConfig = cfg) -> float:
            fitted = pf.train_model("healnet", train, training=cfg, seed=0)
            return fitted.evaluate(test, train.targets)["os"]["c_index"]

        print(f"  healnet {accelerator} {precision:10s} {measured(run)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--models", nargs="+", default=["early", "healnet"])
    parser.add_argument("--part", choices=["small", "large", "both"], default="both")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("benchmarks/gpu_fit.py needs a CUDA GPU")
    print(
        f"torch {torch.__version__}, {torch.cuda.get_device_name()}, CPU threads "
        f"{torch.get_num_threads()}"
    )
    if args.part in ("small", "both"):
        small_cohort(args.models)
    if args.part in ("large", "both"):
        large_cohort(args.patients, args.epochs)


if __name__ == "__main__":
    main()
