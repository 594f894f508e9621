"""Unpaired multi-cohort training: several cohorts that share no patients, one model.

This is how the EHPAL-Net authors trained (``reference/methods.md`` §5.4), and it works for any
model: :func:`combine_cohorts` stacks the cohorts into one dataset in which each sample has only
its own cohort's modalities (the others are absent) and only its own cohort's targets (the others
are unknown, NaN). Because task losses ignore unknown targets, each task head is supervised only
by the samples of the cohorts that have the task. :class:`ZipBatchSampler` (in
``data/sampling.py``, with the other batch samplers: only batching needs torch) then makes every
training step see every cohort, cycling the smaller cohorts so that they keep pace with the
largest (a "zip" of per-cohort loaders).

A modality or task name that several cohorts declare is *shared* (one encoder, one head) and must
have the same spec in each; ``prefix=True`` keeps every cohort's names apart instead.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import numpy as np

from polyfuse.data.dataset import ArraySource, FileSource, ListSource, MultimodalDataset, Source
from polyfuse.data.specs import TaskSpec
from polyfuse.errors import DataError


def combine_cohorts(
    cohorts: Mapping[str, MultimodalDataset], *, prefix: bool = False
) -> MultimodalDataset:
    """One dataset from several cohorts, with ``cohort`` naming each sample's cohort.

    Sample ids become ``"<cohort>:<id>"``. With ``prefix``, modality and task names become
    ``"<cohort>_<name>"`` so that no encoder or head is shared.
    """
    if len(cohorts) < 2:
        raise DataError(f"combining cohorts needs at least two, got {list(cohorts)}")
    parts = {c: _prefixed(d, c) if prefix else d for c, d in cohorts.items()}
    specs, tasks = {}, {}
    for c, d in parts.items():
        for kind, mine, theirs in (("modality", specs, d.specs), ("task", tasks, d.tasks)):
            for name, spec in theirs.items():
                owner, known = mine.get(name, (c, spec))
                if known != spec:
                    raise DataError(
                        f"{kind} '{name}' differs between cohorts '{owner}' and '{c}' "
                        f"({known} vs {spec}); rename it in one cohort, or set "
                        "`cohort_prefix: true` so that cohorts share no names"
                    )
                mine.setdefault(name, (c, spec))
    sizes = [len(d) for d in parts.values()]
    sources = {m: _concat([d.sources.get(m) for d in parts.values()], sizes, m) for m in specs}
    targets = {
        t: np.concatenate([_targets(d, t, s) for d in parts.values()])
        for t, (_, s) in tasks.items()
    }
    return MultimodalDataset(
        [f"{c}:{i}" for c, d in parts.items() for i in d.ids],
        {m: s for m, (_, s) in specs.items()},
        sources,
        {t: s for t, (_, s) in tasks.items()},
        targets,
        name="+".join(parts),
        cohort=np.repeat(list(parts), sizes),
    )


def _prefixed(data: MultimodalDataset, cohort: str) -> MultimodalDataset:
    def keyed(items: dict) -> dict:
        return {f"{cohort}_{k}": v for k, v in items.items()}

    def named(items: dict) -> dict:  # specs carry their own name too
        return {k: dataclasses.replace(v, name=k) for k, v in keyed(items).items()}

    return data.replace(
        specs=named(data.specs),
        sources=keyed(data.sources),
        tasks=named(data.tasks),
        targets=keyed(data.targets),
    )


def _targets(data: MultimodalDataset, task: str, spec: TaskSpec) -> np.ndarray:
    """The cohort's targets of `task`, or all unknown (NaN) when the cohort lacks the task."""
    if task in data.targets:
        return data.targets[task]
    width = spec.target_width
    return np.full((len(data),) if width == 1 else (len(data), width), np.nan, np.float32)


def _concat(parts: list[Source | None], sizes: list[int], modality: str) -> Source:
    """Stack one modality's sources; cohorts without it contribute absent samples."""
    kinds = {type(p) for p in parts if p is not None}
    if len(kinds) != 1:
        raise DataError(
            f"modality '{modality}' is held in different ways across cohorts "
            f"({sorted(k.__name__ for k in kinds)}); declare it the same way in each"
        )
    kind = kinds.pop()
    if kind is ArraySource:
        shape = next(p.values.shape[1:] for p in parts if p is not None)
        values = [
            p.values if p is not None else np.zeros((n, *shape), np.float32)
            for p, n in zip(parts, sizes, strict=True)
        ]
        present = [
            p.present if p is not None else np.zeros(n, bool)
            for p, n in zip(parts, sizes, strict=True)
        ]
        return ArraySource(np.concatenate(values), np.concatenate(present))
    if kind is ListSource:
        return ListSource(
            [v for p, n in zip(parts, sizes, strict=True) for v in (p.values if p else [None] * n)]
        )
    file_kinds = {p.kind for p in parts if p is not None}
    if len(file_kinds) != 1:
        raise DataError(f"modality '{modality}' reads files as {sorted(file_kinds)} across cohorts")
    paths = [v for p, n in zip(parts, sizes, strict=True) for v in (p.paths if p else [None] * n)]
    return FileSource(paths, file_kinds.pop())
