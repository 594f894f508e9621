"""Collect the attention a model puts on each modality's tokens.

Models publish attention in `ModelOutput.aux` under keys `attention/<modality>` or
`attention/<anything>/<modality>` (e.g. HEALNet's `attention/layer0/rna`), with the token axis
last and the batch axis first. Here every such map is averaged over its middle axes (heads,
latents) and over layers, giving one `(samples, tokens)` array per modality.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import numpy as np
import torch

from polyfuse.data.dataset import Batch, MultimodalDataset
from polyfuse.training.fit import PREDICT_BATCH, FittedModel

# MACFusion's per-unit attention and gates (read by `macfusion.py`): not token attention.
MACFUSION_KEY = re.compile(r"^(attention|gate)/stage(\d+)/(ehf\d+/mac\d+)/([ab])$")


def modality_of(key: str, modalities: list[str]) -> str | None:
    """The modality an `attention/...` aux key refers to, or None.

    MACFusion's per-unit attention (`attention/stage1/ehf1/mac1/a`, see `macfusion.py`) is
    not token attention, even where a modality is named "a" or "b".
    """
    if not key.startswith("attention/") or MACFUSION_KEY.match(key):
        return None
    last = key.rsplit("/", 1)[-1]
    return last if last in modalities else None


@torch.no_grad()
def aux_outputs(
    fitted: FittedModel, dataset: MultimodalDataset
) -> Iterator[tuple[Batch, dict[str, torch.Tensor]]]:
    """(batch, aux) for the whole dataset, preprocessed, in eval mode."""
    data = fitted.preprocessor.transform(dataset)
    fitted.model.eval()
    for start in range(0, len(data), PREDICT_BATCH):
        batch = data.batch(np.arange(start, min(start + PREDICT_BATCH, len(data))))
        yield batch, fitted.model(batch.inputs).aux


def collect_aux(fitted: FittedModel, dataset: MultimodalDataset, key: str) -> np.ndarray:
    """One `aux[key]` array over all samples (e.g. HEALNet gates, hierarchical pair weights)."""
    parts = [aux[key].float().cpu().numpy() for _, aux in aux_outputs(fitted, dataset)]
    return np.concatenate(parts)


def token_attention(fitted: FittedModel, dataset: MultimodalDataset) -> dict[str, np.ndarray]:
    """`{modality: (samples, tokens)}` mean attention; NaN for samples lacking the modality.

    Bags of different sizes are padded with NaN to the largest bag.
    """
    modalities = list(dataset.specs)
    chunks: dict[str, list[np.ndarray]] = {}
    for batch, aux in aux_outputs(fitted, dataset):
        per_mod: dict[str, list[torch.Tensor]] = {}
        for key, value in aux.items():
            m = modality_of(key, modalities)
            if m is not None:
                flat = value.reshape(value.shape[0], -1, value.shape[-1]).mean(1)
                per_mod.setdefault(m, []).append(flat)
        for m, maps in per_mod.items():
            att = torch.stack(maps).mean(0).float().cpu().numpy()
            att[~batch.inputs[m].present.cpu().numpy()] = np.nan
            chunks.setdefault(m, []).append(att)
    return {m: _pad_cat(c) for m, c in chunks.items()}


def _pad_cat(arrays: list[np.ndarray]) -> np.ndarray:
    width = max(a.shape[1] for a in arrays)
    padded = [np.pad(a, ((0, 0), (0, width - a.shape[1])), constant_values=np.nan) for a in arrays]
    return np.concatenate(padded)
