"""Issue #20: hashed words against pretrained text embeddings, on reports whose label is meaning.

The cohort is `polyfuse.datasets.reports.make_reports` (n = 200 by default: the few hundred
patients of a typical cohort, where a paraphrase met in a test fold has often never been seen in
training). Its `report` modality is read three ways and cross-validated with the same model on
the same folds: (a) `hashed`, no encoder: hashed word ids and the model's own trainable bag of
words; (b) `wordllama`, static embeddings (256-d); (c) `minilm`, all-MiniLM-L6-v2 (384-d).
Printed: mean ± sd test AUROC over the folds, the paired differences, a reference logistic
regression on the same inputs and folds (what the inputs carry), and the cost of each
encoder: its first load (in a fresh process, torch already imported: the encoder's own imports
included), a reload, embedding every report with the loaded encoder (batches of 32), then
reading the cohort through `load_frame` on an empty cache (every report embedded) and again warm
(every report read back from the cache; the encoder is still loaded): wall and CPU seconds, and
texts per wall second.

    taskset -c 0 env OMP_NUM_THREADS=1 .venv/bin/python benchmarks/text_encoders.py

Embeddings and anything else written go to a temporary folder (`POLYFUSE_CACHE`), removed at
the end. Add `--age` to fuse the weak `age` covariate as a second modality (the logistic
regression still reads the report alone).
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ENCODERS = ("hashed", "wordllama", "minilm")


def timed(fn: Callable[[], Any]) -> tuple[Any, float, float]:
    """fn's result, its wall and CPU seconds."""
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - wall, time.process_time() - cpu


def read(frame: pd.DataFrame, encoder: str, age: bool) -> Any:
    """The cohort as a dataset, its report read through `encoder`."""
    from polyfuse.config import ModalityConfig, TaskConfig
    from polyfuse.data.manifest import load_frame

    config = None if encoder == "hashed" else {"name": encoder}
    modalities = {"report": ModalityConfig(kind="text", text_column="report", encoder=config)}
    if age:
        modalities["clinical"] = ModalityConfig(kind="tabular", columns=["age"])
    tasks = {"label": TaskConfig(type="binary", column="label")}
    return load_frame(
        frame, modalities, tasks, id_column="id", root=Path("."), where="make_reports"
    )


LOAD = """
import json, sys, time
import torch
from polyfuse.config import EncoderConfig
from polyfuse.embed.encoders import load_encoder
wall, cpu = time.perf_counter(), time.process_time()
load_encoder(EncoderConfig(name=sys.argv[1]))
print(json.dumps([time.perf_counter() - wall, time.process_time() - cpu]))
"""


def first_load(encoder: str) -> tuple[float, float]:
    """Wall and CPU seconds of loading `encoder` in a fresh process where torch is already
    imported: its own imports (sentence-transformers, wordllama) included."""
    out = subprocess.run(
        [sys.executable, "-c", LOAD, encoder], capture_output=True, text=True, check=True
    )
    wall, cpu = json.loads(out.stdout.strip().splitlines()[-1])
    return wall, cpu


def costs(frame: pd.DataFrame, encoder: str, age: bool) -> tuple[dict, Any]:
    """The encoder's first load (a fresh process) and a reload here, the embedding of every report
    by the loaded encoder, then a cold and a warm read of the cohort through `load_frame` (each
    read loads the encoder again)."""
    from polyfuse.config import EncoderConfig
    from polyfuse.embed.encoders import load_encoder

    row: dict[str, Any] = dict(encoder=encoder, load_wall=np.nan, load_cpu=np.nan)
    row["reload_wall"] = row["reload_cpu"] = np.nan
    if encoder != "hashed":
        row["load_wall"], row["load_cpu"] = first_load(encoder)
        config = EncoderConfig(name=encoder)
        load_encoder(config)  # its imports, if the fresh process's were not shared
        model, row["reload_wall"], row["reload_cpu"] = timed(
            functools.partial(load_encoder, config)
        )
        texts = frame["report"].tolist()
        batches = [texts[i : i + 32] for i in range(0, len(texts), 32)]  # as load_frame does
        _, row["embed_wall"], row["embed_cpu"] = timed(lambda: [model.embed(b) for b in batches])
        row["embed_rate"] = len(texts) / row["embed_wall"]
    for phase in ("cold", "warm"):
        data, row[f"{phase}_wall"], row[f"{phase}_cpu"] = timed(lambda: read(frame, encoder, age))
        row[f"{phase}_rate"] = len(frame) / row[f"{phase}_wall"]
    return row, data


def cross_validated(model: str, data: Any, splits: list, epochs: int) -> pd.Series:
    """Test AUROC of every fold, indexed by (repeat, fold)."""
    from polyfuse.config import TrainingConfig
    from polyfuse.training.cv import cross_validate

    training = TrainingConfig(progress=False, epochs=epochs)
    result = cross_validate(model, data, splits=splits, training=training, progress=False)
    folds = result.folds.query("task == 'label' and metric == 'auroc'")
    return folds.set_index(["repeat", "fold"])["value"]


def logistic(features: np.ndarray, y: np.ndarray, splits: list) -> pd.Series:
    """Reference: an L2 logistic regression (C chosen by inner CV) on the same inputs and folds,
    to tell what the inputs carry from what the network learns of them on 160 patients."""
    from sklearn.linear_model import LogisticRegressionCV
    from sklearn.metrics import roc_auc_score

    out = {}
    for split in splits:
        model = LogisticRegressionCV(Cs=10, max_iter=5000)
        model.fit(features[split.train], y[split.train])
        scores = model.predict_proba(features[split.test])[:, 1]
        out[(split.repeat, split.fold)] = roc_auc_score(y[split.test], scores)
    return pd.Series(out)


def features(data: Any, frame: pd.DataFrame, encoder: str) -> np.ndarray:
    """What the network reads of the report: the embeddings, or for `hashed` a binary bag of the
    hashed word ids (`polyfuse.data.dataset.tokenize`)."""
    from polyfuse.data.dataset import tokenize

    if encoder != "hashed":
        return np.asarray(data.sources["report"].values)
    vocab = data.specs["report"].vocab_size
    bags = np.zeros((len(frame), vocab), np.float32)
    for i, text in enumerate(frame["report"]):
        bags[i, tokenize(text, vocab)] = 1.0
    return bags


def table(rows: pd.DataFrame) -> str:
    """The markdown table of AUROC and costs."""
    lines = [
        "| report read as | dim | test AUROC (mean ± sd) | logistic regression | first load: wall / CPU | reload | "
        "embedding only: wall / CPU (texts/s) | read, cold cache: wall / CPU (texts/s) | "
        "read, warm cache: wall / CPU (texts/s) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows.itertuples():
        cells = [
            r.encoder,
            r.dim,
            f"{r.auroc:.3f} ± {r.auroc_sd:.3f}",
            f"{r.logistic:.3f} ± {r.logistic_sd:.3f}",
        ]
        if r.encoder == "hashed":  # nothing to load or embed: words are hashed in each batch
            cells += ["—", "—", "—", f"{r.cold_wall:.2f} s (no embedding)", "—"]
        else:
            cells += [
                f"{r.load_wall:.2f} s / {r.load_cpu:.2f} s",
                f"{r.reload_wall:.2f} s",
                f"{r.embed_wall:.2f} s / {r.embed_cpu:.2f} s ({r.embed_rate:,.0f})",
                f"{r.cold_wall:.2f} s / {r.cold_cpu:.2f} s ({r.cold_rate:,.0f})",
                f"{r.warm_wall:.2f} s / {r.warm_cpu:.2f} s ({r.warm_rate:,.0f})",
            ]
        lines.append("| " + " | ".join(map(str, cells)) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0, help="the cohort's and the folds' seed")
    parser.add_argument("--model", default="late")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=50)
    parser.add_argument("--encoders", nargs="+", default=list(ENCODERS), choices=ENCODERS)
    parser.add_argument("--age", action="store_true", help="fuse the age covariate too")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    logging.disable(logging.INFO)
    os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
    os.environ["TRANSFORMERS_VERBOSITY"] = "error"
    with tempfile.TemporaryDirectory(prefix="polyfuse-text-bench-") as tmp:
        os.environ["POLYFUSE_CACHE"] = str(Path(tmp) / "cache")
        os.chdir(tmp)  # nothing else is written into the working tree
        run(args)


def run(args: argparse.Namespace) -> None:
    torch, wall, cpu = timed(lambda: __import__("torch"))
    print(f"import torch: {wall:.2f} s wall, {cpu:.2f} s CPU", flush=True)

    from polyfuse.data.splits import kfold
    from polyfuse.datasets.reports import make_reports

    frame = make_reports(args.n, seed=args.seed)
    print(
        f"{args.n} reports, {frame['label'].mean():.0%} positive, torch {torch.__version__}, "
        f"{torch.get_num_threads()} thread(s)",
        flush=True,
    )
    rows, folds, splits = [], {}, None
    for encoder in args.encoders:
        row, data = costs(frame, encoder, args.age)
        splits = splits or kfold(data, args.folds, args.repeats, args.seed, stratify="label")
        cv = functools.partial(cross_validated, args.model, data, splits, args.epochs)
        folds[encoder], wall, cpu = timed(cv)
        row.update(
            dim=data.specs["report"].shape[0] if encoder != "hashed" else "—",
            auroc=folds[encoder].mean(),
            auroc_sd=folds[encoder].std(),
            cv_wall=wall,
            cv_cpu=cpu,
        )
        reference = logistic(features(data, frame, encoder), frame["label"].to_numpy(), splits)
        row.update(logistic=reference.mean(), logistic_sd=reference.std())
        rows.append(row)
        print(
            f"{encoder:10s} AUROC {row['auroc']:.3f} ± {row['auroc_sd']:.3f} "
            f"(CV {wall:.1f} s wall, {cpu:.1f} s CPU); logistic regression "
            f"{row['logistic']:.3f} ± {row['logistic_sd']:.3f}",
            flush=True,
        )
    rows = pd.DataFrame(rows)
    print(f"\n## {args.model}, {args.folds}-fold CV × {args.repeats}, n = {args.n}\n")
    print(table(rows))
    print("\nPaired differences over the same folds (mean ± sd; folds won):")
    names = list(folds)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            d = folds[b] - folds[a]
            print(f"- {b} − {a}: {d.mean():+.3f} ± {d.std():.3f} ({(d > 0).sum()}/{len(d)})")
    print(
        "\nCV time per encoder (wall / CPU): "
        + ", ".join(f"{r.encoder} {r.cv_wall:.1f} s / {r.cv_cpu:.1f} s" for r in rows.itertuples())
    )


if __name__ == "__main__":
    main()
