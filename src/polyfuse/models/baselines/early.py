"""Early (feature-level) fusion: concatenate every modality's encoding, then one MLP.

HEALNet's `fcnn` baseline concatenates raw features; here each modality first goes through its
kind's encoder so images, bags and sequences can be concatenated too.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor

from polyfuse.data.dataset import ModalityBatch
from polyfuse.data.specs import ModalitySpec, TaskSpec
from polyfuse.models.blocks.mlp import mlp
from polyfuse.models.encoders import ENCODER_SPACE, build_encoders, encode_all
from polyfuse.models.model import MultimodalModel, build_heads
from polyfuse.models.registry import register_model


@register_model("early")
class EarlyFusion(MultimodalModel):
    """Encoders → concat over modalities of `[z_m · present_m, present_m]` → MLP → heads.

    An absent modality contributes a zero block plus a 0 indicator (encoders already output 0
    for absent samples), so the MLP can learn a different offset for each missingness pattern.

    Args:
        dim: width of each modality's encoding and of the embedding.
        hidden: hidden widths of the fusion MLP (and of tabular encoders).
        dropout: dropout in the encoders and the MLP.
        tabular: "mlp" or "snn" for tabular modalities.
        encoder: further `build_encoder` options.
    """

    # how `polyfuse tune` searches it (the shared training dimensions are added there)
    search_space: ClassVar[dict[str, Any]] = ENCODER_SPACE

    def __init__(
        self,
        specs: dict[str, ModalitySpec],
        tasks: dict[str, TaskSpec],
        *,
        dim: int = 64,
        hidden: Sequence[int] = (64,),
        dropout: float = 0.1,
        tabular: str = "mlp",
        encoder: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(specs, tasks)
        self.encoders = build_encoders(
            specs, dim, hidden=hidden, dropout=dropout, tabular=tabular, **dict(encoder or {})
        )
        self.mlp = mlp(len(specs) * (dim + 1), hidden, dim, dropout=dropout)
        self.heads = build_heads(tasks, dim)

    def fuse(self, inputs: dict[str, ModalityBatch]) -> tuple[Tensor, dict[str, Tensor]]:
        vectors, aux = encode_all(self.encoders, inputs)
        blocks = []
        for m, z in vectors.items():
            present = inputs[m].present[:, None].to(z.dtype)
            blocks += [z, present]
        return self.mlp(torch.cat(blocks, dim=-1)), aux
