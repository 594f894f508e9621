"""The engine against a plain PyTorch loop, and against fusilli 2.0.0 when it is importable.

One fit, the shape of issue #17's measurement: fusilli's `ConcatTabularData` network
(concatenate two tabular modalities, 217 features, → Linear 256 → ReLU → Dropout 0.15 →
Linear 64 → ReLU → Dropout 0.15 → Linear 1), registered here as a polyfuse model, on synthetic
data: 92 patients, two tabular modalities of 120 and 97 features, a binary target that depends
on both. 50 epochs, batch 8, AdamW (lr 1e-3, weight decay 1e-4), 20 % of the patients held out
for validation, so 74 are trained on: 10 optimiser steps an epoch, 500 in all; patience 50, so
no fit stops early.

- polyfuse: `train_model` (no log directory, no progress bar, no checkpoints): preprocessing
  fitted on the training part, Lightning's fit with a validation pass each epoch, early
  stopping and the best weights restored.
- plain loop, what a user's own loop does for the same fit: standardise the features on the
  training part; each epoch, shuffle, 10 steps of forward / BCE-with-logits / zero_grad /
  backward / AdamW step, the epoch's mean training loss; a validation pass (`model.eval()`,
  `no_grad`, the loss over the 18 validation patients); early-stopping bookkeeping (best
  validation loss, its epoch, a copy of the weights at it, a patience counter); the best
  weights restored at the end.
- fusilli (only when `import fusilli` works: it is never installed by this script; see
  benchmarks/README.md): the same data written as its two CSV files, `prepare_fusion_data`
  and `train_and_save_models` with `ConcatTabularData`, batch 8, test_size 0.2, 50 epochs,
  no checkpoints, early-stopping patience 50.

Warm fits run alternately in this process after one warm-up fit of each (`--repeats`, median
CPU time by `time.process_time()`, wall by `time.perf_counter()`); then a single fit of each in
a fresh process (`--fresh` times, alternately; the child's user + system CPU from
`resource.getrusage(RUSAGE_CHILDREN)`, imports included). Run pinned to one core and thread:

    taskset -c 1 env OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 \\
        .venv/bin/python benchmarks/engine_vs_fusilli.py [--repeats 5] [--fresh 3]
"""

from __future__ import annotations

import argparse
import copy
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

N_PATIENTS, WIDTHS = 92, {"tab1": 120, "tab2": 97}
EPOCHS, BATCH, LR, WEIGHT_DECAY, VAL_FRACTION, PATIENCE = 50, 8, 1e-3, 1e-4, 0.2, 50
SEED = 0
ENGINES = ["plain", "polyfuse", "fusilli"]


def fused_layers(width: int) -> nn.Sequential:
    """fusilli's `ParentFusionModel.set_fused_layers`: width → 256 → 64."""
    return nn.Sequential(
        nn.Linear(width, 256),
        nn.ReLU(),
        nn.Dropout(0.15),
        nn.Linear(256, 64),
        nn.ReLU(),
        nn.Dropout(0.15),
    )


def synthetic_arrays(seed: int = SEED) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Two tabular modalities and a binary label that depends on a few features of each."""
    rng = np.random.default_rng(seed)
    x = {m: rng.normal(size=(N_PATIENTS, w)).astype(np.float32) for m, w in WIDTHS.items()}
    score = x["tab1"][:, :3].sum(1) - x["tab2"][:, :3].sum(1)
    y = (score + rng.normal(0, 1.0, N_PATIENTS) > 0).astype(np.float32)
    return x, y


# ---------------------------------------------------------------- polyfuse


def register_polyfuse_model() -> None:
    """`fusilli_concat`: the same network as a polyfuse model (concatenation → MLP → head)."""
    from polyfuse.models.model import MultimodalModel, build_heads
    from polyfuse.models.registry import register_model

    @register_model("fusilli_concat")
    class FusilliConcat(MultimodalModel):
        def __init__(self, specs, tasks) -> None:
            super().__init__(specs, tasks)
            self.fused = fused_layers(sum(s.shape[0] for s in specs.values()))
            self.heads = build_heads(tasks, 64)

        def fuse(self, inputs) -> tuple[Tensor, dict[str, Tensor]]:
            return self.fused(torch.cat([b.data for b in inputs.values()], -1)), {}


def polyfuse_dataset():
    from polyfuse.data.dataset import ArraySource, MultimodalDataset
    from polyfuse.data.specs import ModalitySpec, TaskSpec

    x, y = synthetic_arrays()
    everyone = np.ones(N_PATIENTS, bool)
    return MultimodalDataset(
        [f"p{i:03d}" for i in range(N_PATIENTS)],
        {m: ModalitySpec(m, "tabular", (w,)) for m, w in WIDTHS.items()},
        {m: ArraySource(v, everyone) for m, v in x.items()},
        {"y": TaskSpec("y", "binary")},
        {"y": y},
        name="synthetic",
    )


def polyfuse_fit(data) -> int:
    """One fit through `train_model`; the best epoch."""
    from polyfuse.config import TrainingConfig
    from polyfuse.training.fit import train_model

    cfg = TrainingConfig(
        epochs=EPOCHS,
        batch_size=BATCH,
        lr=LR,
        weight_decay=WEIGHT_DECAY,
        val_fraction=VAL_FRACTION,
        patience=PATIENCE,
        progress=False,
    )
    return train_model("fusilli_concat", data, training=cfg, seed=SEED).best_epoch


# ---------------------------------------------------------------- plain PyTorch


def plain_fit(x: Tensor, y: Tensor, fit_idx: Tensor, val_idx: Tensor) -> int:
    """A user's own loop for the same fit; the best epoch (see the module docstring)."""
    torch.manual_seed(SEED)
    mean, std = x[fit_idx].mean(0), x[fit_idx].std(0).clamp_min(1e-6)
    x = (x - mean) / std
    x_fit, y_fit, x_val, y_val = x[fit_idx], y[fit_idx], x[val_idx], y[val_idx]
    model = nn.Sequential(fused_layers(x.shape[1]), nn.Linear(64, 1))
    opt = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=WEIGHT_DECAY)
    loss_fn = nn.BCEWithLogitsLoss()
    best, best_epoch, best_state, wait = float("inf"), -1, None, 0
    history: list[tuple[float, float]] = []
    for epoch in range(EPOCHS):
        model.train()
        order, total = torch.randperm(len(x_fit)), torch.zeros(())
        for start in range(0, len(order), BATCH):
            rows = order[start : start + BATCH]
            loss = loss_fn(model(x_fit[rows])[:, 0], y_fit[rows])
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.detach() * len(rows)
        model.eval()
        with torch.no_grad():
            val_loss = float(loss_fn(model(x_val)[:, 0], y_val))
        history.append((float(total) / len(x_fit), val_loss))
        if val_loss < best:
            best, best_epoch, best_state, wait = (
                val_loss,
                epoch,
                copy.deepcopy(model.state_dict()),
                0,
            )
        else:
            wait += 1
            if wait >= PATIENCE:
                break
    model.load_state_dict(best_state)
    return best_epoch


def plain_inputs() -> tuple[Tensor, ...]:
    """Features, labels, and a seeded random split with polyfuse's part sizes (74 / 18)."""
    x, y = synthetic_arrays()
    features = torch.from_numpy(np.concatenate([x[m] for m in WIDTHS], 1))
    order = torch.from_numpy(np.random.default_rng(SEED).permutation(N_PATIENTS))
    n_val = round(N_PATIENTS * VAL_FRACTION)
    return features, torch.from_numpy(y), order[n_val:], order[:n_val]


# ---------------------------------------------------------------- fusilli


def fusilli_available() -> bool:
    try:
        import fusilli  # noqa: F401
    except ImportError:
        return False
    return True


def fusilli_fit(root: Path) -> None:
    """One fit through fusilli's own API, from its two CSV files (written once by `main`)."""
    from fusilli.data import prepare_fusion_data
    from fusilli.fusionmodels.tabularfusion.concat_data import ConcatTabularData
    from fusilli.train import train_and_save_models
    from lightning.pytorch.callbacks import EarlyStopping

    out = {k: str(root / k) for k in ("losses", "checkpoints", "figures")}
    for path in out.values():
        Path(path).mkdir(parents=True, exist_ok=True)
    data_module = prepare_fusion_data(
        prediction_task="binary",
        fusion_model=ConcatTabularData,
        data_paths={
            "tabular1": str(root / "tabular1.csv"),
            "tabular2": str(root / "tabular2.csv"),
            "image": "",
        },
        output_paths=out,
        batch_size=BATCH,
        test_size=VAL_FRACTION,
        own_early_stopping_callback=EarlyStopping(monitor="val_loss", patience=PATIENCE),
    )
    train_and_save_models(
        data_module=data_module,
        fusion_model=ConcatTabularData,
        max_epochs=EPOCHS,
        enable_checkpointing=False,
    )


def write_fusilli_csvs(root: Path) -> None:
    import pandas as pd

    x, y = synthetic_arrays()
    for k, m in enumerate(WIDTHS, start=1):
        frame = pd.DataFrame(x[m], columns=[f"{m}_{j}" for j in range(WIDTHS[m])])
        frame.insert(0, "ID", np.arange(N_PATIENTS))
        frame["prediction_label"] = y.astype(np.int64)
        frame.to_csv(root / f"tabular{k}.csv", index=False)


# ---------------------------------------------------------------- timing


def fitters(names: list[str], root: Path) -> dict[str, Callable[[], object]]:
    """Each named engine's single fit, ready to call (data made, model registered); a fresh
    process building only the plain loop never imports polyfuse or Lightning."""
    out: dict[str, Callable[[], object]] = {}
    if "plain" in names:
        plain_args = plain_inputs()
        out["plain"] = lambda: plain_fit(*plain_args)
    if "polyfuse" in names:
        register_polyfuse_model()
        data = polyfuse_dataset()
        out["polyfuse"] = lambda: polyfuse_fit(data)
    if "fusilli" in names:
        write_fusilli_csvs(root)
        out["fusilli"] = lambda: fusilli_fit(root)
    return out


Samples = dict[str, dict[str, list[float]]]
"""Per engine, its "cpu" and "wall" seconds, one value per round."""


def warm(fits: dict[str, Callable[[], object]], repeats: int) -> Samples:
    """`repeats` rounds of one fit of each engine, in one process, after a warm-up fit each."""
    for fit in fits.values():
        fit()
    out: Samples = {k: {"cpu": [], "wall": []} for k in fits}
    for _ in range(repeats):
        for name, fit in fits.items():
            c0, w0 = time.process_time(), time.perf_counter()
            fit()
            out[name]["cpu"].append(time.process_time() - c0)
            out[name]["wall"].append(time.perf_counter() - w0)
    return out


def fresh(names: list[str], repeats: int, threads: int) -> Samples:
    """`repeats` rounds of a single fit of each engine, each in a new process (imports
    included); CPU is the child's user + system time."""
    out: Samples = {k: {"cpu": [], "wall": []} for k in names}
    for _ in range(repeats):
        for name in names:
            cmd = [sys.executable, __file__, "--single", name, "--threads", str(threads)]
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            start = time.perf_counter()
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
            out[name]["wall"].append(time.perf_counter() - start)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
            out[name]["cpu"].append(cpu)
    return out


def report(title: str, samples: Samples) -> None:
    """Medians per engine, their ratios to the plain loop, and the median of the per-round
    CPU ratios (each round's fits ran back to back, so a slow spell of the machine cancels)."""
    med = {k: {m: statistics.median(v) for m, v in d.items()} for k, d in samples.items()}
    rounds = len(samples["plain"]["cpu"])
    print(f"\n{title}: medians of {rounds} rounds")
    print(
        f"{'':9} {'CPU s':>7} {'wall s':>7} {'CPU/plain':>10} {'wall/plain':>11} {'paired CPU':>11}"
    )
    for name, m in med.items():
        paired = statistics.median(
            a / b for a, b in zip(samples[name]["cpu"], samples["plain"]["cpu"], strict=True)
        )
        cpu_ratio, wall_ratio = m["cpu"] / med["plain"]["cpu"], m["wall"] / med["plain"]["wall"]
        print(
            f"{name:9} {m['cpu']:7.3f} {m['wall']:7.3f} {cpu_ratio:9.2f}x {wall_ratio:10.2f}x"
            f" {paired:10.2f}x"
        )
    if "fusilli" in med:
        cpu = med["fusilli"]["cpu"] / med["polyfuse"]["cpu"]
        wall = med["fusilli"]["wall"] / med["polyfuse"]["wall"]
        print(f"fusilli / polyfuse: CPU {cpu:.2f}x, wall {wall:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="warm fits of each, alternating")
    parser.add_argument("--fresh", type=int, default=3, help="fresh-process fits of each (0: none)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--single", choices=ENGINES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    names = [args.single] if args.single else ENGINES[: 3 if fusilli_available() else 2]
    with tempfile.TemporaryDirectory(prefix="engine-bench-") as scratch:
        fits = fitters(names, Path(scratch))
        if args.single:  # a child of `fresh`: one fit, then exit
            fits[args.single]()
            return
        print(
            f"torch {torch.__version__}, {torch.get_num_threads()} thread(s); engines: {list(fits)}"
        )
        if "fusilli" not in fits:
            print("fusilli is not importable here: plain loop and polyfuse only")
        report("warm fits, alternating in one process", warm(fits, args.repeats))
    if args.fresh > 0:
        report("a single fit in a fresh process", fresh(list(fits), args.fresh, args.threads))


if __name__ == "__main__":
    main()
