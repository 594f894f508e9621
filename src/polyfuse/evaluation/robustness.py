"""Missing-modality robustness: the same test samples with modalities removed at inference.

Conditions: "all" (as observed), "drop:<m>" (modality m removed from every sample) and
"random:<rate>" (each available modality of each sample removed with probability `rate`,
always keeping at least one, so no sample is left with nothing).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

from polyfuse.data.dataset import MultimodalDataset

RATES = (0.2, 0.4, 0.6, 0.8)


def random_removal(dataset: MultimodalDataset, rate: float, seed: int) -> MultimodalDataset:
    """Remove each available modality with probability `rate`; every sample keeps one."""
    rng = np.random.default_rng(seed)
    present = np.stack([s.present for s in dataset.sources.values()], axis=1)
    remove = present & (rng.uniform(size=present.shape) < rate)
    for i in np.flatnonzero(present.any(1) & ~(present & ~remove).any(1)):
        remove[i, rng.choice(np.flatnonzero(present[i]))] = False
    return dataset.hide({m: remove[:, j] for j, m in enumerate(dataset.specs)})


def conditions(
    dataset: MultimodalDataset, *, rates: Sequence[float] = RATES, seed: int = 0
) -> Iterator[tuple[str, MultimodalDataset]]:
    """("all", data), ("drop:<m>", …) for every modality, ("random:<rate>", …) for each rate."""
    yield "all", dataset
    if len(dataset.specs) > 1:
        for m in dataset.specs:
            yield f"drop:{m}", dataset.drop_modalities([m])
    for rate in rates:
        yield f"random:{rate:g}", random_removal(dataset, rate, seed)
