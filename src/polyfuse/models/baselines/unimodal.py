"""Unimodal baseline: one modality's encoder, an MLP, the task heads.

The reference every fusion method must beat (HEALNet reports "uplift over the best unimodal
baseline"): with `tabular="snn"` on omics it is the SNN of Klambauer et al. 2017, on a bag of
patch features it is ABMIL (Ilse et al. 2018). It reads only its own modality; the others are
validated and ignored.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from polyfuse.data.dataset import ModalityBatch
from polyfuse.data.specs import ModalitySpec, TaskSpec
from polyfuse.errors import ConfigError, did_you_mean
from polyfuse.models.blocks.masking import where_present
from polyfuse.models.blocks.mlp import mlp
from polyfuse.models.encoder_fusion import EncoderFusionModel
from polyfuse.models.encoders import encode_all
from polyfuse.models.model import build_heads
from polyfuse.models.registry import register_model


@register_model("unimodal")
class Unimodal(EncoderFusionModel):
    """Encoder of one modality → MLP → heads.

    A sample lacking the modality is encoded as a learned "absent" vector instead, so the model
    still predicts for it: in effect the learned prior of the patients without that data (zero
    would be an arbitrary point of the embedding space, and the fill value must not matter).
    `dim` is also the width of the embedding; `hidden` and `dropout` also shape the MLP after
    the encoder.

    Args:
        modality: the modality to use; default the first one of `specs`.
    """

    def __init__(
        self,
        specs: dict[str, ModalitySpec],
        tasks: dict[str, TaskSpec],
        *,
        modality: str | None = None,
        **encoding: Any,
    ) -> None:
        super().__init__(specs, tasks, **encoding)
        modality = next(iter(specs)) if modality is None else modality
        if modality not in specs:
            raise ConfigError(
                f"unimodal: unknown modality '{modality}'{did_you_mean(modality, specs)}; "
                f"have {list(specs)}"
            )
        dim, hidden, dropout = self.encoding.dim, self.encoding.hidden, self.encoding.dropout
        self.modality = modality
        self.used_modalities = (modality,)
        self.encoders = self.encoders_for({modality: specs[modality]})
        self.absent = nn.Parameter(torch.zeros(dim))
        self.mlp = mlp(dim, hidden, dim, dropout=dropout)
        self.heads = build_heads(tasks, dim)

    def fuse(self, inputs: dict[str, ModalityBatch]) -> tuple[Tensor, dict[str, Tensor]]:
        vectors, aux = encode_all(self.encoders, inputs)
        z = where_present(inputs[self.modality].present, vectors[self.modality], self.absent)
        return self.mlp(z), aux
