"""What the classical floors read: every numeric modality as one vector per patient.

A floor (Coxnet, a forest, logistic or ridge regression) takes a feature matrix. Tabular
modalities are one already; the other numeric kinds are pooled here, so that a floor is the
baseline a statistician would fit on everything numeric the patients have, not on the tables
alone:

* a bag of instance features (a slide's patch embeddings) → the mean over its instances, a
  `(D,)` vector (`<m>.mean[j]`), the usual mean-pooling baseline of multiple-instance work;
* a sequence (irregular visits, NaN = not measured) → per channel, the mean over the observed
  values and the last observed value (`<m>.mean[c]`, `<m>.last[c]`): the level and the most
  recent state.

A patient without the modality, or a channel never observed, is missing there (imputed by
the floors' preprocessing, fitted on the training fold). Images and text are not pooled: a
pixel or token average is no baseline anyone would fit.
"""

from __future__ import annotations

import numpy as np

from polyfuse.data.dataset import ArraySource, MultimodalDataset, Source
from polyfuse.data.specs import ModalitySpec

POOLED = ("bag", "sequence")


def numeric_modalities(data: MultimodalDataset) -> list[str]:
    """The modalities a floor reads: tabular ones held in memory, bags and sequences."""
    return [
        m
        for m, spec in data.specs.items()
        if (spec.kind == "tabular" and isinstance(data.sources[m], ArraySource))
        or spec.kind in POOLED
    ]


def pooled(data: MultimodalDataset) -> MultimodalDataset:
    """`data` with its bags and sequences pooled into tabular vectors and every modality a
    floor cannot read left out."""
    names = numeric_modalities(data)
    specs, sources = {}, {}
    for m in names:
        spec, source = data.specs[m], data.sources[m]
        if spec.kind == "tabular":
            specs[m], sources[m] = spec, source
        else:
            values, features = _pool(spec, source)
            specs[m] = ModalitySpec(m, "tabular", (len(features),), tuple(features))
            sources[m] = ArraySource(values, source.present)
    return data.replace(specs=specs, sources=sources)


def _pool(spec: ModalitySpec, source: Source) -> tuple[np.ndarray, list[str]]:
    """One modality's pooled vectors (NaN for absent patients) and their feature names."""
    width = spec.shape[0]
    items = source.items(np.arange(len(source)))
    if spec.kind == "bag":
        features = [f"{spec.name}.mean[{j}]" for j in range(width)]
        rows = [
            np.full(width, np.nan) if b is None else np.asarray(b, float).mean(0) for b in items
        ]
    else:
        features = [f"{spec.name}.mean[{c}]" for c in range(width)]
        features += [f"{spec.name}.last[{c}]" for c in range(width)]
        rows = [_sequence_summary(s, width) for s in items]
    return np.asarray(rows, float).reshape(len(items), len(features)), features  # none: (0, p)


def _sequence_summary(item, width: int) -> np.ndarray:
    """Per channel: the mean of the observed values and the last one observed (NaN: none)."""
    if item is None:
        return np.full(2 * width, np.nan)
    values, times = (np.asarray(a, float) for a in item)
    values = values[np.argsort(times, kind="stable")]
    seen = ~np.isnan(values)
    mean = np.array(
        [values[seen[:, c], c].mean() if seen[:, c].any() else np.nan for c in range(width)]
    )
    last = np.array(
        [values[seen[:, c], c][-1] if seen[:, c].any() else np.nan for c in range(width)]
    )
    return np.concatenate([mean, last])
