"""The checks every dataset passes before training, whichever loader built it.

A modality nobody has, a sample with no modality, ±inf features and impossible survival or
class targets would otherwise surface as NaN losses or silent garbage many minutes into a run.
Users' tables, MuData files, the bundled cohorts and new patients to predict for all pass here.
"""

from __future__ import annotations

import numpy as np

from polyfuse.data.cells import first_few
from polyfuse.data.dataset import ArraySource, MultimodalDataset
from polyfuse.data.specs import ModalitySpec, TaskSpec
from polyfuse.errors import DataError


def check_dataset(dataset: MultimodalDataset, source: str, *, new_samples: bool = False) -> None:
    """Raise a DataError naming `source` and what is at fault, or return.

    `new_samples` (patients to predict for) allows a modality nobody has: one patient may well
    lack one.
    """
    ids = dataset.ids
    if len(dataset) == 0:
        raise DataError(f"{source}: no samples")
    if not dataset.specs:
        raise DataError(f"{source}: no modalities; declare at least one")
    for m, src in dataset.sources.items():
        if not src.present.any() and not new_samples:
            raise DataError(
                f"{source}: modality '{m}' is absent in every sample; check its columns or "
                "files, or remove it from the config"
            )
    presence = np.stack([src.present for src in dataset.sources.values()], axis=1)
    empty = np.flatnonzero(~presence.any(axis=1))
    if len(empty):
        raise DataError(
            f"{source}: {len(empty)} sample(s) have no modality at all: "
            f"{first_few([ids[i] for i in empty])}; give them data or drop them"
        )
    for m, src in dataset.sources.items():
        if isinstance(src, ArraySource):
            _check_finite(m, dataset.specs[m], src, ids, source)
    for t, spec in dataset.tasks.items():
        _check_target(t, spec, dataset.targets[t], ids, source)


def _check_finite(m: str, spec: ModalitySpec, src: ArraySource, ids: list[str], where: str) -> None:
    inf = np.isinf(src.values)
    if not inf.any():
        return
    pos = np.argwhere(inf)
    i, rest = int(pos[0][0]), tuple(int(p) for p in pos[0][1:])
    if spec.feature_names and len(rest) == 1:
        feature = f"feature '{spec.feature_names[rest[0]]}'"
    else:
        feature = f"position {rest}"
    raise DataError(
        f"{where}: modality '{m}', sample '{ids[i]}', {feature} is ±inf "
        f"({len(pos)} such value(s)); replace with a finite value or leave it empty"
    )


def _check_target(t: str, spec: TaskSpec, y: np.ndarray, ids: list[str], where: str) -> None:
    """Targets a loss could not digest: impossible times, events or class indices."""
    if spec.type == "survival":
        time, event = y[:, 0], y[:, 1]
        bad = np.flatnonzero(time <= 0)
        if len(bad):
            raise DataError(
                f"{where}: task '{t}': {len(bad)} sample(s) have survival time ≤ 0: "
                f"{first_few([ids[i] for i in bad])}; times must be > 0"
            )
        bad = np.flatnonzero(~np.isnan(event) & ~np.isin(event, (0, 1)))
        if len(bad):
            raise DataError(
                f"{where}: task '{t}': sample '{ids[bad[0]]}' has event {event[bad[0]]:g}; "
                "events must be 0 (censored) or 1"
            )
        return
    if spec.type == "regression":
        return
    n = len(spec.classes) if spec.type == "multiclass" else 2
    known = ~np.isnan(y)
    bad = known & ~np.isin(y, np.arange(n))
    if bad.any():
        i = int(np.argwhere(bad)[0][0])
        raise DataError(
            f"{where}: task '{t}': sample '{ids[i]}' has target {y[bad][0]:g}; "
            f"a {spec.type} target must be an integer in 0..{n - 1}"
        )
