"""TCGA-ACC, 5 folds × 3 repeats: c-index with all modalities and with RPPA and miRNA removed
from every test patient at inference (models trained on all six modalities).

    .venv/bin/python benchmarks/tcga_acc_missing.py [model ...]     (default: healnet early late)
"""

from __future__ import annotations

import sys
import time

import numpy as np

import polyfuse as pf
from polyfuse.config import TrainingConfig
from polyfuse.training.fit import train_model

REMOVED = ["rppa", "mirna"]


def main(models: list[str]) -> None:
    data = pf.datasets.load("tcga-acc")
    splits = pf.kfold(data, folds=5, repeats=3, seed=0)
    training = TrainingConfig(progress=False)
    for model in models:
        start = time.perf_counter()
        full, reduced = [], []
        for i, split in enumerate(splits):
            train, test = data.subset(split.train), data.subset(split.test)
            fitted = train_model(model, train, training=training, seed=i)
            full.append(fitted.evaluate(test, train.targets)["os"]["c_index"])
            dropped = test.drop_modalities(REMOVED)
            reduced.append(fitted.evaluate(dropped, train.targets)["os"]["c_index"])
        print(
            f"{model:10s} all: {np.mean(full):.3f} ± {np.std(full, ddof=1):.3f} | "
            f"without {'+'.join(REMOVED)}: {np.mean(reduced):.3f} ± {np.std(reduced, ddof=1):.3f}"
            f" | {time.perf_counter() - start:.0f} s",
            flush=True,
        )


if __name__ == "__main__":
    main(sys.argv[1:] or ["healnet", "early", "late"])
