"""Low-rank Multimodal Fusion (LMF): TFN with its fusion weight factorised, linear in M.

Liu, Shen, Lakshminarasimhan, Liang, Zadeh, Morency. "Efficient Low-rank Multimodal Fusion
with Modality-Specific Factors." ACL 2018.

TFN computes h = W · vec(⊗_m ẑ_m) + b with ẑ_m = [z_m; 1]. LMF writes each output slice of W
as a rank-r sum of outer products of modality-specific factors, W = Σ_i λ_i ⊗_m W_m^(i), which
lets the product be taken after projecting each modality, without ever forming the tensor:

    h = Σ_{i=1}^{r} λ_i · Π_m (W_m^(i) ẑ_m) + b        (Π elementwise over the output width)

Cost and parameters are linear in the number of modalities M (TFN's are exponential), so no
width bound is needed for many modalities. The factorised layer replaces the first (largest)
layer of TFN's post-fusion MLP, the rest of that MLP is kept. With r = Π_{m ≥ 2} (w_m + 1), a
bound on the CP rank of each output slice of W, LMF can express any TFN exactly (tested).

Absent modalities: as in TFN, the projected embedding of an absent modality is exactly 0, so
ẑ_m = [0 … 0, 1] and W_m^(i) ẑ_m is the factor's last row: the same learned constant for every
sample lacking m, and h is the low-rank TFN of the present modalities only.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
from einops import einsum
from torch import Tensor, nn

from polyfuse.data.dataset import ModalityBatch
from polyfuse.data.specs import ModalitySpec, TaskSpec
from polyfuse.errors import ConfigError
from polyfuse.models.blocks.kronecker import with_one
from polyfuse.models.blocks.masking import zero_absent
from polyfuse.models.blocks.mlp import mlp
from polyfuse.models.encoder_fusion import ENCODER_SPACE, EncoderFusionModel
from polyfuse.models.encoders import encode_all
from polyfuse.models.model import THREE_SEEDS, build_heads
from polyfuse.models.registry import register_model
from polyfuse.search_space import Int


@register_model("lmf")
class LowRankFusion(EncoderFusionModel):
    """Encoders → projection to width w → rank-r factorised tensor fusion → MLP → heads.

    Parameters as in the paper: `factors[m]` is (r, w + 1, out) (the W_m^(i) for all i),
    `rank_weights` is λ (r,), `bias` is b (out,), with out = `hidden[0]` (or `dim` when
    `hidden` is empty). `self.post` is the rest of TFN's post-fusion MLP. The encoder keywords
    shape the fusion too: `hidden` the widths of the post-fusion MLP, the first being the
    fusion output; `dropout` its dropout; `dim` the embedding.

    Args:
        width: per-modality width inside the fusion.
        rank: rank r of the factorisation (the paper finds 4 or so enough).
    """

    regime = THREE_SEEDS

    # how `polyfuse tune` searches it (the shared training dimensions are added there)
    search_space: ClassVar[dict[str, Any]] = {
        **ENCODER_SPACE,
        "width": Int(8, 32, log=True),
        "rank": Int(2, 16, log=True),
    }

    def __init__(
        self,
        specs: dict[str, ModalitySpec],
        tasks: dict[str, TaskSpec],
        *,
        width: int = 16,
        rank: int = 4,
        **encoding: Any,
    ) -> None:
        super().__init__(specs, tasks, **encoding)
        if rank < 1 or width < 1:
            raise ConfigError(f"lmf: rank and width must be ≥ 1, got rank={rank} width={width}")
        dim, dropout = self.encoding.dim, self.encoding.dropout
        hidden = tuple(int(h) for h in self.encoding.hidden)
        out = hidden[0] if hidden else dim
        self.encoders = self.encoders_for(specs)
        self.project = nn.ModuleDict({m: nn.Linear(dim, width) for m in specs})
        # Xavier-like scale per factor, so that the product of M factors stays O(1)
        self.factors = nn.ParameterDict(
            {
                m: nn.Parameter(torch.randn(rank, width + 1, out) / math.sqrt(width + 1))
                for m in specs
            }
        )
        self.rank_weights = nn.Parameter(torch.full((rank,), 1.0 / rank))
        self.bias = nn.Parameter(torch.zeros(out))
        # TFN's post-fusion MLP without its first Linear (which the factors replace)
        self.post: nn.Module = nn.Identity()
        if hidden:
            self.post = nn.Sequential(
                nn.LayerNorm(out),
                nn.ReLU(),
                nn.Dropout(dropout),
                mlp(out, hidden[1:], dim, dropout=dropout),
            )
        self.heads = build_heads(tasks, dim)

    def fuse(self, inputs: dict[str, ModalityBatch]) -> tuple[Tensor, dict[str, Tensor]]:
        vectors, aux = encode_all(self.encoders, inputs)
        product: Tensor | None = None
        for m, z in vectors.items():
            z = zero_absent(inputs[m].present, self.project[m](z))
            term = einsum(with_one(z), self.factors[m], "b i, r i o -> b r o")
            product = term if product is None else product * term
        assert product is not None  # a model has at least one modality
        h = einsum(product, self.rank_weights, "b r o, r -> b o") + self.bias
        return self.post(h), aux
