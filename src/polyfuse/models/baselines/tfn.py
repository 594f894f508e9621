"""Tensor Fusion Network (TFN): the outer product of the modality embeddings, each with a 1.

Zadeh, Chen, Poria, Cambria, Morency. "Tensor Fusion Network for Multimodal Sentiment
Analysis." EMNLP 2017.

    ẑ_m = [z_m; 1],    T = ẑ_1 ⊗ ẑ_2 ⊗ … ⊗ ẑ_M,    h = MLP(vec(T))

The 1s make T hold the constant, every unimodal term z_m, every bimodal product z_m ⊗ z_n, …,
and the full M-modal product, so the post-fusion network sees all interaction orders at once.

Generalised to M modalities: the paper fuses three modalities of fixed widths (32 each).
Here each modality's encoding is projected to a width w chosen by `bounded_width` so that
`(w + 1) ** M ≤ max_product` (with the defaults width 16 and 4096: w = 16 for two modalities,
15 for three, 3 for six, 1 up to twelve; beyond that construction raises and points to `lmf`).

Absent modalities: the projected embedding of an absent modality is set to exactly 0, so its
augmented vector is [0 … 0, 1] and T keeps exactly the interaction terms of the present
modalities (every term involving the absent one is 0). The fill value never reaches T.
"""

from __future__ import annotations

from typing import Any, ClassVar

from torch import Tensor, nn

from polyfuse.data.dataset import ModalityBatch
from polyfuse.data.specs import ModalitySpec, TaskSpec
from polyfuse.models.blocks.kronecker import bounded_width, kronecker
from polyfuse.models.blocks.masking import zero_absent
from polyfuse.models.blocks.mlp import mlp
from polyfuse.models.encoder_fusion import ENCODER_SPACE, EncoderFusionModel
from polyfuse.models.encoders import encode_all
from polyfuse.models.model import THREE_FOLDS, build_heads
from polyfuse.models.registry import register_model
from polyfuse.search_space import Categorical, Int


@register_model("tfn")
class TensorFusionNetwork(EncoderFusionModel):
    """Encoders → per-modality projection to width w → `vec(⊗_m [z_m; 1])` → MLP → heads.

    `self.post` is the post-fusion network; its first `Linear` is the (large) fusion weight
    that `lmf` factorises. The encoder keywords shape it too: `hidden` its hidden widths,
    `dropout` its dropout, `dim` its output (the embedding).

    Args:
        width: largest per-modality width inside the product (reduced for many modalities).
        max_product: bound on the size of the product, Π_m (w + 1).
    """

    regime = THREE_FOLDS

    # how `polyfuse tune` searches it (the shared training dimensions are added there)
    search_space: ClassVar[dict[str, Any]] = {
        **ENCODER_SPACE,
        "dim": Categorical((16, 32, 64)),
        "width": Int(4, 32, log=True),
    }

    def __init__(
        self,
        specs: dict[str, ModalitySpec],
        tasks: dict[str, TaskSpec],
        *,
        width: int = 16,
        max_product: int = 4096,
        **encoding: Any,
    ) -> None:
        super().__init__(specs, tasks, **encoding)
        dim, hidden, dropout = self.encoding.dim, self.encoding.hidden, self.encoding.dropout
        self.width = bounded_width(len(specs), width, max_product)
        self.encoders = self.encoders_for(specs)
        self.project = nn.ModuleDict({m: nn.Linear(dim, self.width) for m in specs})
        self.post = mlp((self.width + 1) ** len(specs), hidden, dim, dropout=dropout)
        self.heads = build_heads(tasks, dim)

    def fuse(self, inputs: dict[str, ModalityBatch]) -> tuple[Tensor, dict[str, Tensor]]:
        vectors, aux = encode_all(self.encoders, inputs)
        # an absent modality becomes exactly 0 (the projection's bias would not be)
        projected = [zero_absent(inputs[m].present, self.project[m](z)) for m, z in vectors.items()]
        return self.post(kronecker(projected)), aux
