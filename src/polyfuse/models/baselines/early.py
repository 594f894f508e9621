"""Early (feature-level) fusion: concatenate every modality's encoding, then one MLP.

HEALNet's `fcnn` baseline concatenates raw features; here each modality first goes through its
kind's encoder so images, bags and sequences can be concatenated too.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from polyfuse.data.dataset import ModalityBatch
from polyfuse.data.specs import ModalitySpec, TaskSpec
from polyfuse.models.blocks.mlp import mlp
from polyfuse.models.encoder_fusion import EncoderFusionModel
from polyfuse.models.encoders import encode_all
from polyfuse.models.model import build_heads
from polyfuse.models.registry import register_model


@register_model("early")
class EarlyFusion(EncoderFusionModel):
    """Encoders → concat over modalities of `[z_m · present_m, present_m]` → MLP → heads.

    An absent modality contributes a zero block plus a 0 indicator (encoders already output 0
    for absent samples), so the MLP can learn a different offset for each missingness pattern.
    The encoder keywords shape the fusion MLP too: `hidden` its hidden widths, `dropout` its
    dropout, `dim` its output (the embedding).
    """

    def __init__(
        self, specs: dict[str, ModalitySpec], tasks: dict[str, TaskSpec], **encoding: Any
    ) -> None:
        super().__init__(specs, tasks, **encoding)
        dim, hidden, dropout = self.encoding.dim, self.encoding.hidden, self.encoding.dropout
        self.encoders = self.encoders_for(specs)
        self.mlp = mlp(len(specs) * (dim + 1), hidden, dim, dropout=dropout)
        self.heads = build_heads(tasks, dim)

    def fuse(self, inputs: dict[str, ModalityBatch]) -> tuple[Tensor, dict[str, Tensor]]:
        vectors, aux = encode_all(self.encoders, inputs)
        blocks = []
        for m, z in vectors.items():
            present = inputs[m].present[:, None].to(z.dtype)
            blocks += [z, present]
        return self.mlp(torch.cat(blocks, dim=-1)), aux
