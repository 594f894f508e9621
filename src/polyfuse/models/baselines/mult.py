"""MulT: Multimodal Transformer with directional pairwise cross-modal attention.

Tsai, Bai, Liang, Kolter, Morency, Salakhutdinov. "Multimodal Transformer for Unaligned
Multimodal Language Sequences". ACL 2019.

Each modality's tokens X_β (B, N_β, d) are the queries of one cross-modal transformer per
source modality α ≠ β, whose keys and values are the low-level tokens X_α at every layer:

    Z⁰_{α→β} = X_β
    Z^{i}_{α→β} ← Z^{i-1} + CrossAttn(LN Z^{i-1}, LN X_α);  Z^{i} ← Z^{i} + FF(LN Z^{i})

So M modalities give M(M−1) cross-modal transformers (the O(M²) cost the method is known for).
For each target β the outputs are concatenated along features, Z_β = [Z_{α→β}]_α
(B, N_β, (M−1)d), and passed through a self-attention transformer; each target is pooled to one
vector h_β and the concatenation h = [h_β]_β goes through MulT's residual output block,
h + W_2 Dropout(ReLU(W_1 h)), to the heads.

Choices where the paper is silent or sequence-specific: tokens come from
`blocks/tokenizers.py` (a per-modality linear projection plus time/position encodings, in place
of MulT's 1D convolution and sinusoidal positions); tabular → one token by default (or feature
groups), image → patches, bag → instances, text → tokens. h_β is the masked mean over β's real
tokens, not the last time step (bags and feature groups have no last element). With one
modality there is no pair: its stream is its own tokens through the self-attention transformer.

Missing modalities: Z_{α→β} is set to 0 for samples where α is absent (or has no real token),
so α contributes nothing to β's stream (its cross-attention has no key anyway); an absent
target β pools to exactly 0 over its empty mask. The output block also gets one presence
indicator per modality.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from polyfuse.data.dataset import ModalityBatch
from polyfuse.data.specs import ModalitySpec, TaskSpec
from polyfuse.errors import ConfigError
from polyfuse.models.blocks.masking import zero_absent
from polyfuse.models.blocks.pooling import masked_mean
from polyfuse.models.blocks.tokenizers import build_tokenizers
from polyfuse.models.blocks.transformer import TransformerBlock
from polyfuse.models.model import THREE_SEEDS, MultimodalModel, build_heads
from polyfuse.models.registry import register_model
from polyfuse.search_space import Categorical, Float, Int


@register_model("mult")
class MulT(MultimodalModel):
    """One cross-modal transformer per ordered pair (source α → target β), then self-attention.

    Args:
        dim: width d of every modality's tokens (30–40 in the paper).
        heads: attention heads; must divide `dim` (and the (M−1)·d self-attention width).
        cross_layers: layers of each cross-modal transformer.
        self_layers: layers of each target's self-attention transformer.
        tabular_groups: tokens per tabular modality.
        patch_size: image patch edge.
        attn_dropout: dropout on attention weights.
        ff_dropout: dropout at the end of each feed-forward.
        out_dropout: dropout of the residual output block.
    """

    regime = THREE_SEEDS

    # how `polyfuse tune` searches it (the shared training dimensions are added there)
    search_space: ClassVar[dict[str, Any]] = {
        "dim": Categorical((16, 32, 48)),  # every choice divisible by every `heads` choice
        "heads": Categorical((1, 2, 4)),
        "cross_layers": Int(1, 2),
        "self_layers": Int(0, 2),
        "attn_dropout": Float(0.0, 0.3),
        "ff_dropout": Float(0.0, 0.3),
        "out_dropout": Float(0.0, 0.3),
    }

    def __init__(
        self,
        specs: dict[str, ModalitySpec],
        tasks: dict[str, TaskSpec],
        *,
        dim: int = 16,
        heads: int = 2,
        cross_layers: int = 1,
        self_layers: int = 1,
        tabular_groups: int = 1,
        patch_size: int = 4,
        attn_dropout: float = 0.0,
        ff_dropout: float = 0.1,
        out_dropout: float = 0.1,
    ) -> None:
        super().__init__(specs, tasks)
        if dim % heads:
            raise ConfigError(f"mult: dim {dim} must be divisible by heads {heads}")
        if cross_layers < 1 or self_layers < 0:
            raise ConfigError("mult: cross_layers must be >= 1 and self_layers >= 0")
        self.tokenizers = build_tokenizers(
            specs, dim, tabular_groups=tabular_groups, patch_size=patch_size
        )
        options = dict(heads=heads, attn_dropout=attn_dropout, ff_dropout=ff_dropout)

        def cross() -> nn.ModuleList:
            return nn.ModuleList(
                TransformerBlock(dim, dim, dim_head=dim // heads, **options)
                for _ in range(cross_layers)
            )

        # cross[β][α]: the cross-modal transformer α → β (queries β, keys/values α)
        self.cross = nn.ModuleDict(
            {b: nn.ModuleDict({a: cross() for a in specs if a != b}) for b in specs}
        )
        width = max(len(specs) - 1, 1) * dim
        self.self_attention = nn.ModuleDict(
            {
                b: nn.ModuleList(
                    TransformerBlock(width, dim_head=width // heads, **options)
                    for _ in range(self_layers)
                )
                for b in specs
            }
        )
        out = len(specs) * (width + 1)
        self.proj1 = nn.Linear(out, out)
        self.proj2 = nn.Linear(out, out)
        self.dropout = nn.Dropout(out_dropout)
        self.heads = build_heads(tasks, out)

    def fuse(self, inputs: dict[str, ModalityBatch]) -> tuple[Tensor, dict[str, Tensor]]:
        tokens = {m: tokenizer(inputs[m]) for m, tokenizer in self.tokenizers.items()}
        used = {m: mask.any(dim=1) for m, (_, mask) in tokens.items()}
        pooled: list[Tensor] = []
        for b, sources in self.cross.items():
            xb, mb = tokens[b]
            streams = []
            for a, layers in sources.items():
                xa, ma = tokens[a]
                z = xb
                for layer in layers:
                    z = layer(z, xa, mask=ma)[0]
                # an absent source contributes nothing to the target's stream
                streams.append(zero_absent(used[a], z))
            z = torch.cat(streams, dim=-1) if streams else xb
            for layer in self.self_attention[b]:
                z = layer(z, mask=mb)[0]
            pooled += [masked_mean(z, mb), used[b][:, None].to(z.dtype)]
        h = torch.cat(pooled, dim=-1)
        # MulT's output block: a residual two-layer projection
        h = h + self.proj2(self.dropout(torch.relu(self.proj1(h))))
        return h, {}
