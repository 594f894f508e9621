"""Engine overhead: a 50-epoch fit through polyfuse (Lightning) versus a plain PyTorch loop.

Same model (`early`, dim 32), same data (TCGA-ACC, 92 patients, 6 modalities), same batches,
no validation split, so both do exactly 50 epochs × 3 steps. Run:

    .venv/bin/python benchmarks/engine_overhead.py
"""

from __future__ import annotations

import statistics
import time

import numpy as np
import torch

import polyfuse as pf
from polyfuse.config import TrainingConfig
from polyfuse.data.preprocess import Preprocessor
from polyfuse.tasks.objective import TaskObjective
from polyfuse.training.fit import make_loader, seed_everything, train_model

EPOCHS, BATCH, REPEATS = 50, 32, 5


def plain_loop(data) -> float:
    seed_everything(0)
    start = time.perf_counter()
    pre = Preprocessor().fit(data)
    prepared = pre.transform(data)
    objective = TaskObjective(data.tasks["os"]).fit(prepared.targets["os"])
    model = pf.create_model("early", prepared.specs, data.tasks, dim=32)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-4)
    loader = make_loader(prepared, BATCH, shuffle=True)
    model.train()
    for _ in range(EPOCHS):
        for batch in loader:
            loss = objective.loss(model(batch.inputs).logits["os"], batch.targets["os"])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return time.perf_counter() - start


def polyfuse_fit(data) -> float:
    cfg = TrainingConfig(epochs=EPOCHS, batch_size=BATCH, val_fraction=0.0, progress=False)
    start = time.perf_counter()
    train_model("early", data, training=cfg, hparams={"dim": 32}, seed=0)
    return time.perf_counter() - start


def main() -> None:
    data = pf.datasets.load("tcga-acc")
    plain_loop(data), polyfuse_fit(data)  # warm-up: imports, allocator, thread pools
    plain = [plain_loop(data) for _ in range(REPEATS)]
    engine = [polyfuse_fit(data) for _ in range(REPEATS)]
    p, e = statistics.median(plain), statistics.median(engine)
    print(f"torch threads: {torch.get_num_threads()}")
    print(f"plain PyTorch loop : {p:.3f} s (median of {REPEATS}; min {min(plain):.3f})")
    print(f"polyfuse train_model: {e:.3f} s (median of {REPEATS}; min {min(engine):.3f})")
    print(f"overhead ratio      : {e / p:.2f}x  (target: within ~3x)")
    np.testing.assert_array_less(0, p)


if __name__ == "__main__":
    main()
