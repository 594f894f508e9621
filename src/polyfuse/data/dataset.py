"""The multimodal data contract: samples with per-modality presence, batched with masks.

A `MultimodalDataset` keeps one *source* per modality. A source knows, for every sample, whether
the modality is present and how to produce its value; `collate_modality` turns the values of a
batch into the canonical layout of DESIGN §2 (absent rows zero-filled, padding masked).
Small cohorts stay as in-memory arrays and are batched by slicing, never sample by sample.

Only batching needs torch, so it is imported there: reading and checking data (and every
error they report) stays free of it, and the `polyfuse` command answers before torch loads.
A `DataLoader` takes a `MultimodalDataset` as it is (a map-style dataset needs no base class).
"""

from __future__ import annotations

import hashlib
import os
import re
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from polyfuse.data.specs import ModalitySpec, TaskSpec
from polyfuse.errors import DataError

if TYPE_CHECKING:
    import torch
    from torch import Tensor

MAX_TEXT_TOKENS = 512


@dataclass
class ModalityBatch:
    """One modality of a batch.

    Args:
        data: the canonical layout of the modality's kind; rows of absent samples are zero.
        present: `(B,)` bool, whether each sample has the modality.
        token_mask: `(B, N)` bool, True for real tokens (bags, sequences, text), else None.
        times: `(B, T)` observation times of a sequence (0 where padded), else None.
    """

    data: Tensor
    present: Tensor
    token_mask: Tensor | None = None
    times: Tensor | None = None

    def to(self, device: torch.device | str) -> ModalityBatch:
        def move(t: Tensor | None) -> Tensor | None:
            return None if t is None else t.to(device, non_blocking=True)

        return ModalityBatch(
            move(self.data), move(self.present), move(self.token_mask), move(self.times)
        )


@dataclass
class Batch:
    """Model inputs keyed by modality, targets keyed by task, and the dataset row of each sample."""

    inputs: dict[str, ModalityBatch]
    targets: dict[str, Tensor]
    index: Tensor

    def to(self, device: torch.device | str) -> Batch:
        return Batch(
            {m: b.to(device) for m, b in self.inputs.items()},
            {t: v.to(device) for t, v in self.targets.items()},
            self.index.to(device),
        )

    def __len__(self) -> int:
        return len(self.index)


# --------------------------------------------------------------------------------- sources


class Source:
    """Per-sample values of one modality; `present[i]` says whether sample i has it."""

    present: np.ndarray

    def __len__(self) -> int:
        return len(self.present)

    def items(self, idx: np.ndarray) -> list[Any]:
        """The values of samples `idx` (None where absent)."""
        raise NotImplementedError

    def take(self, idx: np.ndarray) -> Source:
        """A source restricted to samples `idx`, in that order."""
        raise NotImplementedError

    def hide(self, remove: np.ndarray) -> Source:
        """The same samples with the modality made absent where `remove` is True."""
        raise NotImplementedError

    def digest(self, h: Any) -> None:
        """Feed every sample's presence and value into the hash `h` (`hashlib`)."""
        raise NotImplementedError


class ArraySource(Source):
    """A dense in-memory array `(N, *shape)`: tabular features or small images.

    NaN is allowed inside present rows of tabular data (it is imputed by preprocessing); absent
    rows are stored as zeros.
    """

    def __init__(self, values: np.ndarray, present: np.ndarray) -> None:
        self.present = np.asarray(present, dtype=bool)
        values = np.array(values, dtype=np.float32)
        values[~self.present] = 0.0
        self.values = values

    def items(self, idx: np.ndarray) -> list[Any]:
        return [self.values[i] if self.present[i] else None for i in idx]

    def take(self, idx: np.ndarray) -> ArraySource:
        return ArraySource(self.values[idx], self.present[idx])

    def hide(self, remove: np.ndarray) -> ArraySource:
        return ArraySource(self.values, self.present & ~remove)

    def digest(self, h: Any) -> None:
        h.update(repr(self.values.shape).encode())
        h.update(self.present.tobytes())
        h.update(np.ascontiguousarray(self.values).tobytes())


class ListSource(Source):
    """Per-sample objects held in memory: bags `(N_i, D)`, sequences `((T_i, C), (T_i,))`, text."""

    def __init__(self, values: Sequence[Any]) -> None:
        self.values = list(values)
        self.present = np.array([v is not None for v in self.values], dtype=bool)

    def items(self, idx: np.ndarray) -> list[Any]:
        return [self.values[i] for i in idx]

    def take(self, idx: np.ndarray) -> ListSource:
        return ListSource([self.values[i] for i in idx])

    def hide(self, remove: np.ndarray) -> ListSource:
        return ListSource([None if r else v for v, r in zip(self.values, remove, strict=True)])

    def digest(self, h: Any) -> None:
        for value in self.values:
            parts = value if isinstance(value, tuple) else (value,)  # a sequence's (x, t)
            for part in parts:
                if part is None or isinstance(part, str):
                    h.update(b"\x00" if part is None else part.encode())
                else:
                    array = np.ascontiguousarray(part)
                    h.update(repr(array.shape).encode() + array.tobytes())
            h.update(b"\x1e")


class FileSource(Source):
    """Files read lazily when a batch needs them (images, patch-feature bags, reports).

    Only the paths stay in memory, as plain strings: a `pathlib.Path` holds about 400 bytes
    against about 100 for its string, and a large cohort keeps one per sample and file
    modality (`benchmarks/large_cohort.py`). Subsets share the strings, never copy them.
    """

    def __init__(self, paths: Sequence[str | os.PathLike[str] | None], kind: str) -> None:
        self.paths: list[str | None] = [None if p is None else os.fspath(p) for p in paths]
        self.kind = kind
        self.present = np.array([p is not None for p in self.paths], dtype=bool)

    def items(self, idx: np.ndarray) -> list[Any]:
        from polyfuse.data.readers import read_file

        return [None if self.paths[i] is None else read_file(self.paths[i], self.kind) for i in idx]

    def take(self, idx: np.ndarray) -> FileSource:
        return FileSource([self.paths[i] for i in idx], self.kind)

    def hide(self, remove: np.ndarray) -> FileSource:
        paths = [None if r else p for p, r in zip(self.paths, remove, strict=True)]
        return FileSource(paths, self.kind)

    def digest(self, h: Any) -> None:
        """Each file's path and size, not its content: a cohort of slides is not read to be
        hashed (a file rewritten in place at the same size goes unnoticed)."""
        for path in self.paths:
            size = os.path.getsize(path) if path is not None and os.path.exists(path) else -1
            h.update(f"{path}\x1f{size}\x1e".encode())


# --------------------------------------------------------------------------------- collate


def tokenize(text: str, vocab_size: int) -> np.ndarray:
    """Hash lower-cased words into ids 1..vocab_size-1 (0 pads): needs no vocabulary or download."""
    words = re.findall(r"\w+", text.lower())[:MAX_TEXT_TOKENS]
    return np.array([1 + zlib.crc32(w.encode()) % (vocab_size - 1) for w in words], dtype=np.int64)


def _pad(arrays: list[np.ndarray], width: tuple[int, ...], dtype: Any) -> tuple[Tensor, Tensor]:
    """Stack variable-length arrays `(n_i, *width)` into `(B, N, *width)` and a `(B, N)` mask."""
    import torch

    n = max([len(a) for a in arrays] + [1])
    out = np.zeros((len(arrays), n, *width), dtype=dtype)
    mask = np.zeros((len(arrays), n), dtype=bool)
    for i, a in enumerate(arrays):
        out[i, : len(a)] = a
        mask[i, : len(a)] = True
    return torch.from_numpy(out), torch.from_numpy(mask)


def collate_modality(spec: ModalitySpec, items: list[Any]) -> ModalityBatch:
    """Batch one modality's per-sample values (None = absent) into its canonical layout."""
    import torch

    present = torch.tensor([v is not None for v in items], dtype=torch.bool)
    if spec.kind in ("tabular", "image"):
        zero = np.zeros(spec.shape, dtype=np.float32)
        for v in items:
            if v is not None and tuple(np.shape(v)) != spec.shape:
                raise DataError(
                    f"modality '{spec.name}': a sample has shape {np.shape(v)}, "
                    f"expected {spec.shape}"
                )
        data = np.stack([zero if v is None else np.asarray(v, np.float32) for v in items])
        return ModalityBatch(torch.from_numpy(data), present)
    if spec.kind == "bag":
        empty = np.zeros((0, spec.width), np.float32)
        data, mask = _pad([empty if v is None else v for v in items], (spec.width,), np.float32)
        return ModalityBatch(data, present, mask)
    if spec.kind == "sequence":
        empty = (np.zeros((0, spec.width), np.float32), np.zeros(0, np.float32))
        values, times = zip(*[empty if v is None else v for v in items], strict=True)
        data, mask = _pad(list(values), (spec.width,), np.float32)
        t, _ = _pad(list(times), (), np.float32)
        return ModalityBatch(data, present, mask, t)
    ids = [np.zeros(0, np.int64) if v is None else tokenize(v, spec.vocab_size) for v in items]
    data, mask = _pad(ids, (), np.int64)
    return ModalityBatch(data, present, mask)


# --------------------------------------------------------------------------------- dataset


class MultimodalDataset:
    """Samples with any subset of modalities present, and targets for one or several tasks.

    Indexing with a list of rows returns a whole `Batch`, so a `DataLoader` over a
    `BatchSampler` (with `batch_size=None`) batches by slicing instead of sample by sample.

    Targets are float arrays with NaN where unknown: binary `(N,)` in {0, 1}; multiclass `(N,)`
    class index; multilabel `(N, K)`; regression `(N,)`; survival `(N, 2)` = (time, event).
    `cohort` names each sample's cohort when several cohorts that share no patients are
    trained together (`data/cohorts.py`); None for one cohort.
    """

    def __init__(
        self,
        ids: Sequence[str],
        specs: dict[str, ModalitySpec],
        sources: dict[str, Source],
        tasks: dict[str, TaskSpec],
        targets: dict[str, np.ndarray],
        name: str = "",
        cohort: Sequence[str] | np.ndarray | None = None,
    ) -> None:
        self.ids = [str(i) for i in ids]
        self.cohort = None if cohort is None else np.asarray(cohort, dtype=str)
        self.specs = dict(specs)
        self.sources = dict(sources)
        self.tasks = dict(tasks)
        self.targets = {t: np.asarray(v, dtype=np.float32) for t, v in targets.items()}
        self.name = name
        n = len(self.ids)
        if set(self.specs) != set(self.sources):
            raise DataError(f"modalities {sorted(self.specs)} and sources {sorted(self.sources)}")
        if set(self.tasks) != set(self.targets):
            raise DataError(f"tasks {sorted(self.tasks)} and targets {sorted(self.targets)}")
        for m, src in self.sources.items():
            if len(src) != n:
                raise DataError(f"modality '{m}' has {len(src)} samples, expected {n}")
        for t, v in self.targets.items():
            if len(v) != n:
                raise DataError(f"task '{t}' has {len(v)} targets, expected {n}")
        if self.cohort is not None and len(self.cohort) != n:
            raise DataError(f"cohort has {len(self.cohort)} labels, expected {n}")

    def __len__(self) -> int:
        return len(self.ids)

    def fingerprint(self) -> str:
        """SHA-256 of what the models see and must predict: the ids, each modality's spec and
        values (files by path and size), and the targets. Two runs whose data have the same
        fingerprint saw the same data."""
        h = hashlib.sha256("\x1e".join(self.ids).encode())
        for name in sorted(self.specs):
            h.update(repr(self.specs[name]).encode())
            self.sources[name].digest(h)
        for task in sorted(self.tasks):
            h.update(repr(self.tasks[task]).encode())
            h.update(np.ascontiguousarray(self.targets[task]).tobytes())
        return h.hexdigest()

    def __getitem__(self, idx: int | Sequence[int] | np.ndarray) -> Batch:
        return self.batch(np.atleast_1d(np.asarray(idx, dtype=np.int64)))

    def batch(self, idx: np.ndarray) -> Batch:
        """Collate rows `idx` into a `Batch` (dense sources by slicing)."""
        import torch

        inputs = {}
        for m, spec in self.specs.items():
            src = self.sources[m]
            if isinstance(src, ArraySource):
                inputs[m] = ModalityBatch(
                    torch.from_numpy(src.values[idx]), torch.from_numpy(src.present[idx])
                )
            else:
                inputs[m] = collate_modality(spec, src.items(idx))
        targets = {t: torch.from_numpy(v[idx]) for t, v in self.targets.items()}
        return Batch(inputs, targets, torch.from_numpy(idx))

    def subset(self, idx: Sequence[int] | np.ndarray) -> MultimodalDataset:
        """The samples `idx`, in that order."""
        idx = np.asarray(idx, dtype=np.int64)
        return MultimodalDataset(
            [self.ids[i] for i in idx],
            self.specs,
            {m: s.take(idx) for m, s in self.sources.items()},
            self.tasks,
            {t: v[idx] for t, v in self.targets.items()},
            self.name,
            None if self.cohort is None else self.cohort[idx],
        )

    def replace(self, **changes: Any) -> MultimodalDataset:
        """A copy with some of ids/specs/sources/tasks/targets/name/cohort changed."""
        fields = dict(
            ids=self.ids,
            specs=self.specs,
            sources=self.sources,
            tasks=self.tasks,
            targets=self.targets,
            name=self.name,
            cohort=self.cohort,
        )
        fields.update(changes)
        return MultimodalDataset(**fields)

    def drop_modalities(self, names: Sequence[str]) -> MultimodalDataset:
        """The same samples with modalities `names` absent everywhere (robustness checks)."""
        return self.hide({m: np.ones(len(self), bool) for m in names})

    def hide(self, remove: dict[str, np.ndarray]) -> MultimodalDataset:
        """The same samples with modality m made absent where `remove[m]` is True."""
        unknown = set(remove) - set(self.specs)
        if unknown:
            raise DataError(f"unknown modalities {sorted(unknown)}; have {sorted(self.specs)}")
        sources = dict(self.sources)
        for m, mask in remove.items():
            sources[m] = sources[m].hide(np.asarray(mask, dtype=bool))
        return self.replace(sources=sources)

    @property
    def presence(self) -> pd.DataFrame:
        """`(samples × modalities)` bool table of which sample has which modality."""
        return pd.DataFrame(
            {m: s.present for m, s in self.sources.items()}, index=pd.Index(self.ids, name="id")
        )

    def describe(self) -> pd.DataFrame:
        """One row per modality: kind, per-sample shape, samples present, fraction missing."""
        rows = [
            dict(
                modality=m,
                kind=s.kind,
                shape="×".join(map(str, s.shape)) or "text",
                present=int(self.sources[m].present.sum()),
                missing=float(1 - self.sources[m].present.mean()) if len(self) else 0.0,
            )
            for m, s in self.specs.items()
        ]
        return pd.DataFrame(rows).set_index("modality")

    def __repr__(self) -> str:
        mods = ", ".join(f"{m}:{s.kind}{list(s.shape)}" for m, s in self.specs.items())
        tasks = ", ".join(f"{t}:{s.type}" for t, s in self.tasks.items())
        return (
            f"MultimodalDataset({self.name!r}, n={len(self)}, modalities=[{mods}], tasks=[{tasks}])"
        )
