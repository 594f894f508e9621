"""Large cohorts: file-based modalities stream from disk with bounded memory.

Builds (once) a synthetic cohort on disk: a manifest CSV with an id, a tabular block of 8
columns, a 1×64×64 grayscale PNG per sample and a CLAM-layout HDF5 patch-feature bag per sample
(``features`` (n_i, 128) float32 with n_i in 16..64, plus ``coords`` (n_i, 2)), and a binary
label that depends on all three modalities through one latent score per sample. Then, for
each requested cohort size N (the first N rows of the manifest), a fresh process loads it
through the normal config path (`parse_config` → `datasets.from_config` → `load_data`) and
trains ONE epoch of a small `early` model with `train_model`, recording:

* on-disk size of the N samples' files, and the wall time of `load_data` (which reads every
  file once to check it);
* the memory the loaded dataset holds (every object reachable from it, counted once): what
  stays in memory per sample;
* a data-only pass (every batch read and collated by `make_loader`, no model): samples/s;
* one training epoch: wall time of `train_model`, samples/s, resident memory before it, its
  peak during it (the kernel's high-water mark, reset just before via
  ``/proc/self/clear_refs``, and a sampler every 0.1 s) and the process's lifetime peak
  (``resource.getrusage(...).ru_maxrss``);
* the readers' LRU cache: size bound (files), entries, hits and misses.

Memory is bounded when the peak during the epoch does not grow with N. Every file is read
with a warm page cache (the cohort was just written or read), so these are not cold-disk
numbers. The generated data go to ``--root`` (default ``<tmp>/polyfuse-large-cohort``),
never into the repository; a cohort already there with enough samples is reused.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/large_cohort.py --samples 2000 20000
"""

from __future__ import annotations

import argparse
import gc
import json
import multiprocessing
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

FEATURES = 128
IMAGE = 64
TABULAR = 8
MIN_INSTANCES, MAX_INSTANCES = 16, 64
CHUNK = 250  # samples per build task
VERSION = 1  # bump when the generated files change
MIB = 2**20


# ------------------------------------------------------------------------------ the cohort


def _sample(i: int, seed: int) -> tuple[dict, np.ndarray, np.ndarray]:
    """Sample i's manifest row (without paths), image (64, 64) uint8 and bag (n_i, 128)."""
    rng = np.random.default_rng([seed, i])
    z = rng.normal()  # the latent score every modality carries a noisy part of
    label = int(rng.random() < 1.0 / (1.0 + np.exp(-2.5 * z)))
    tab = rng.normal(size=TABULAR)
    tab[0] += 0.6 * z
    row = {"id": f"s{i:06d}", **{f"t{j}": round(float(v), 5) for j, v in enumerate(tab)}}
    row["label"] = label
    yy, xx = np.mgrid[:IMAGE, :IMAGE]
    cy, cx = rng.uniform(16, 48, size=2)
    blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * 8.0**2))
    image = 90 + 40 * xx / IMAGE + 50 * z * blob + rng.normal(0, 12, size=(IMAGE, IMAGE))
    image = np.clip(image, 0, 255).astype(np.uint8)
    n = int(rng.integers(MIN_INSTANCES, MAX_INSTANCES + 1))
    bag = rng.normal(size=(n, FEATURES)).astype(np.float32)
    tumour = rng.random(n) < 0.25  # a quarter of the patches carry the signal
    bag[tumour, :8] += np.float32(0.8 * z)
    return row, image, bag


def _rel(kind: str, i: int) -> str:
    suffix = "png" if kind == "images" else "h5"
    return f"{kind}/{i // 1000:03d}/s{i:06d}.{suffix}"


def _write_chunk(job: tuple[str, int, int, int]) -> list[dict]:
    """Write samples [start, stop) under root; return their manifest rows."""
    import h5py
    from PIL import Image

    root, start, stop, seed = job
    rows = []
    for i in range(start, stop):
        row, image, bag = _sample(i, seed)
        image_rel, bag_rel = _rel("images", i), _rel("bags", i)
        Image.fromarray(image, mode="L").save(Path(root, image_rel), compress_level=1)
        with h5py.File(Path(root, bag_rel), "w") as store:
            store.create_dataset("features", data=bag)
            coords = np.stack([np.arange(len(bag)) * 256, np.zeros(len(bag))], 1)
            store.create_dataset("coords", data=coords.astype(np.int64))
        rows.append({**row, "image": image_rel, "bag": bag_rel})
    return rows


def build_cohort(root: Path, n: int, seed: int, workers: int) -> float:
    """Write an `n`-sample cohort under `root` (reused when already there); build seconds."""
    import pandas as pd

    marker = root / "cohort.json"
    if marker.is_file():
        info = json.loads(marker.read_text())
        if info.get("version") == VERSION and info["seed"] == seed and info["samples"] >= n:
            print(f"reusing the {info['samples']:,}-sample cohort in {root}", flush=True)
            return 0.0
        marker.unlink()
    print(f"building a {n:,}-sample cohort in {root} ({workers} processes) ...", flush=True)
    start = time.perf_counter()
    for kind in ("images", "bags"):
        for shard in range((n - 1) // 1000 + 1):
            (root / kind / f"{shard:03d}").mkdir(parents=True, exist_ok=True)
    jobs = [(str(root), s, min(s + CHUNK, n), seed) for s in range(0, n, CHUNK)]
    rows: list[dict] = []
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        for done, part in enumerate(pool.imap(_write_chunk, jobs), 1):
            rows += part
            if done % 10 == 0 or done == len(jobs):
                print(f"  {len(rows):,}/{n:,} samples written", flush=True)
    pd.DataFrame(rows).to_csv(root / "manifest.csv", index=False)
    marker.write_text(json.dumps({"version": VERSION, "seed": seed, "samples": n}))
    return time.perf_counter() - start


def manifest_for(root: Path, n: int) -> Path:
    """The manifest of the first `n` samples (written next to the full one)."""
    import pandas as pd

    path = root / f"manifest_{n}.csv"
    if not path.is_file():
        frame = pd.read_csv(root / "manifest.csv", dtype={"id": str}, nrows=n)
        if len(frame) < n:
            raise SystemExit(f"{root} holds only {len(frame)} samples, {n} asked")
        frame.to_csv(path, index=False)
    return path


# ------------------------------------------------------------------------------ memory


def rss() -> int:
    """Current resident set size in bytes."""
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _status(field: str) -> int | None:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return None


def reset_peak() -> bool:
    """Reset the kernel's peak-RSS counter (VmHWM) of this process, if the kernel allows it."""
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


class RssSampler:
    """Samples the resident set size every `interval` seconds in a thread; keeps the maximum."""

    def __init__(self, interval: float = 0.1) -> None:
        self.interval = interval
        self.peak = rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, rss())

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss())


def dataset_footprint(dataset) -> int:
    """Bytes a dataset holds: `sys.getsizeof` over every object reachable from it, once each.

    Types, modules and functions are not counted (they belong to the program, not the data);
    NumPy arrays count their buffers. Tracing the loading with tracemalloc instead slows the
    reading of every file about threefold.
    """
    import types

    skip = (type, types.ModuleType, types.FunctionType, types.BuiltinFunctionType)
    seen: set[int] = set()
    stack = [dataset]
    total = 0
    while stack:
        obj = stack.pop()
        if id(obj) in seen or isinstance(obj, skip):
            continue
        seen.add(id(obj))
        total += sys.getsizeof(obj)
        stack.extend(gc.get_referents(obj))
    return total


# ------------------------------------------------------------------------------ one size


def measure(root: Path, n: int, args: argparse.Namespace) -> dict:
    """Load the first `n` samples through the config path and train one epoch."""
    import torch

    from polyfuse.config import parse_config, resolve_paths
    from polyfuse.data import readers
    from polyfuse.data.dataset import FileSource
    from polyfuse.datasets import from_config
    from polyfuse.training.fit import make_loader, train_model

    torch.set_num_threads(args.threads)
    if args.cache_size is not None:
        readers.CACHE_SIZE = args.cache_size
    manifest = manifest_for(root, n)
    raw = {
        "name": f"large-cohort-{n}",
        "seed": 0,
        "data": {
            "table": str(manifest),
            "root": str(root),
            "id_column": "id",
            "modalities": {
                "clinical": {"kind": "tabular", "columns": [f"t{j}" for j in range(TABULAR)]},
                "image": {"kind": "image", "path_column": "image"},
                "bag": {"kind": "bag", "path_column": "bag"},
            },
            "tasks": {"label": {"type": "binary", "column": "label"}},
        },
        "model": {"name": args.model, "params": {"dim": 32, "encoder": {"channels": [8, 16, 32]}}},
        "training": {
            "epochs": 1,
            "batch_size": args.batch_size,
            "val_fraction": args.val_fraction,
            "progress": not args.no_progress,
        },
    }
    config = resolve_paths(parse_config(raw, "large_cohort.py"), root)
    import h5py  # noqa: F401  (imported before the memory baseline: the readers' libraries)
    import pandas  # noqa: F401
    import PIL.Image  # noqa: F401

    gc.collect()
    rss_start = rss()

    # load: every file is read once (checked), then only paths are kept
    t0 = time.perf_counter()
    dataset = from_config(config.data)
    load_s = time.perf_counter() - t0
    cache_after_load = readers.cache_info()
    readers.clear_cache()
    gc.collect()
    rss_loaded = rss()

    disk = 0
    for src in dataset.sources.values():
        if isinstance(src, FileSource):
            disk += sum(os.stat(p).st_size for p in src.paths if p is not None)
    disk += manifest.stat().st_size

    # data only: read + collate every batch, no model
    t0 = time.perf_counter()
    with RssSampler() as read_sampler:
        for _ in make_loader(dataset, args.batch_size, shuffle=True, seed=0):
            pass
    read_s = time.perf_counter() - t0

    # one training epoch
    readers.clear_cache()
    gc.collect()
    rss_before = rss()
    hwm_reset = reset_peak()
    training = config.training
    t0 = time.perf_counter()
    with RssSampler() as sampler:
        train_model(
            config.model.name,
            dataset,
            hparams=config.model.params,
            training=training,
            preprocess=config.preprocess,
            seed=config.seed,
        )
    epoch_s = time.perf_counter() - t0
    hwm = _status("VmHWM") if hwm_reset else None
    cache = readers.cache_info()
    footprint = dataset_footprint(dataset)
    n_val = round(n * training.val_fraction) if training.val_fraction else 0
    largest = MAX_INSTANCES * FEATURES * 4  # the largest decoded file: a 64-instance bag
    return {
        "samples": n,
        "train_samples": n - n_val,
        "val_samples": n_val,
        "files": int(sum(s.present.sum() for s in dataset.sources.values() if hasattr(s, "paths"))),
        "disk_bytes": disk,
        "load_s": load_s,
        "dataset_bytes": footprint,
        "read_s": read_s,
        "read_samples_per_s": n / read_s,
        "read_peak_rss": read_sampler.peak,
        "epoch_s": epoch_s,
        "samples_per_s": n / epoch_s,
        "rss_start": rss_start,
        "rss_loaded": rss_loaded,
        "rss_before_epoch": rss_before,
        "peak_rss_epoch_sampled": sampler.peak,
        "peak_rss_epoch_hwm": hwm,
        "ru_maxrss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "cache_maxsize": readers.CACHE_SIZE,
        "cache_bound_bytes": max(readers.CACHE_SIZE, 0) * largest,
        "cache_after_load": None if cache_after_load is None else cache_after_load._asdict(),
        "cache_epoch": None if cache is None else cache._asdict(),
        "threads": torch.get_num_threads(),
        "load_avg": os.getloadavg(),
    }


# ------------------------------------------------------------------------------ main


def _mib(b: float | None) -> str:
    return "—" if b is None else f"{b / MIB:,.1f}"


def report(results: list[dict]) -> None:
    print()
    print(
        "| N | files | on disk MiB | dataset in memory MiB | load s | read-only samples/s "
        "| epoch s | samples/s | RSS before epoch MiB | peak RSS in epoch MiB | ru_maxrss MiB |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        peak = r["peak_rss_epoch_hwm"] or r["peak_rss_epoch_sampled"]
        print(
            f"| {r['samples']:,} | {r['files']:,} | {_mib(r['disk_bytes'])} "
            f"| {_mib(r['dataset_bytes'])} | {r['load_s']:.1f} | {r['read_samples_per_s']:,.0f} "
            f"| {r['epoch_s']:.1f} | {r['samples_per_s']:,.0f} | {_mib(r['rss_before_epoch'])} "
            f"| {_mib(peak)} | {_mib(r['ru_maxrss'])} |"
        )
    print()
    for r in results:
        per = r["dataset_bytes"] / r["samples"]
        cache = r["cache_epoch"] or {}
        print(
            f"N={r['samples']:,}: dataset {per:,.0f} B/sample in memory vs "
            f"{r['disk_bytes'] / r['samples'] / 1024:,.1f} KiB/sample on disk; "
            f"RSS {_mib(r['rss_start'])} → {_mib(r['rss_loaded'])} MiB over loading; "
            f"epoch peak (sampled) {_mib(r['peak_rss_epoch_sampled'])} MiB, "
            f"rise over the start of the epoch {_mib(r['peak_rss_epoch_sampled'] - r['rss_before_epoch'])} MiB; "
            f"read cache {cache.get('currsize')}/{r['cache_maxsize']} files "
            f"(≤ {_mib(r['cache_bound_bytes'])} MiB), {cache.get('hits')} hits / "
            f"{cache.get('misses')} misses in the epoch; "
            f"threads {r['threads']}, load {r['load_avg'][0]:.1f}"
        )
    if len(results) > 1:
        a, b = results[0], results[-1]
        pa = a["peak_rss_epoch_hwm"] or a["peak_rss_epoch_sampled"]
        pb = b["peak_rss_epoch_hwm"] or b["peak_rss_epoch_sampled"]
        print(
            f"\npeak RSS in the epoch: {_mib(pa)} MiB at N={a['samples']:,} vs {_mib(pb)} MiB at "
            f"N={b['samples']:,} ({b['samples'] / a['samples']:.0f}× the samples, "
            f"{b['disk_bytes'] / a['disk_bytes']:.1f}× the bytes on disk, "
            f"{pb / pa:.2f}× the peak)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--root",
        type=Path,
        default=Path(tempfile.gettempdir()) / "polyfuse-large-cohort",
        help="where the cohort is built (reused when already there)",
    )
    parser.add_argument("--samples", type=int, nargs="+", default=[20_000])
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--val-fraction", type=float, default=0.05)
    parser.add_argument("--model", default="early")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of the training")
    parser.add_argument("--workers", type=int, default=2, help="processes writing the cohort")
    parser.add_argument(
        "--cache-size", type=int, default=None, help="readers.CACHE_SIZE (default: as shipped)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    parser.add_argument("--one", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    root = args.root.resolve()

    if args.one is not None:  # the child: one cohort size in a fresh process
        args.out.write_text(json.dumps(measure(root, args.one, args)))
        return

    root.mkdir(parents=True, exist_ok=True)
    built = build_cohort(root, max(args.samples), args.seed, args.workers)
    if built:
        print(f"built in {built:.1f} s", flush=True)
    results = []
    for n in sorted(args.samples):
        print(f"\n== N = {n:,} (fresh process) ==", flush=True)
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp, "result.json")
            command = [sys.executable, __file__, *sys.argv[1:], "--one", str(n), "--out", str(out)]
            code = subprocess.run(command, check=False).returncode
            if code != 0 or not out.is_file():
                raise SystemExit(f"the N={n} run failed (exit {code})")
            results.append(json.loads(out.read_text()))
    report(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
