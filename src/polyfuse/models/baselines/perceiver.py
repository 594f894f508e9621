"""Perceiver on the concatenation of all modalities' tokens: single-stream early fusion.

Jaegle, Gimeno, Brock, Zisserman, Vinyals, Carreira. "Perceiver: General Perception with
Iterative Attention". ICML 2021. The ancestor of HEALNet (`models/healnet.py`), which instead
gives each modality its own cross-attention; here one byte array holds every modality:

    X = [X_1 + e_1; …; X_M + e_M]            (B, Σ N_m, d_x), mask = [mask_1; …; mask_M]
    S ← S + CrossAttn_ℓ(LN S, LN X);  S ← S + FF_ℓ(LN S)
    S ← S + SelfAttn(LN S);  S ← S + FF(LN S)        `self_per_cross_attn` times per layer
    prediction = heads(LN(mean_L S))

One softmax runs over the union of all modalities' tokens, so modalities compete for each
latent's attention. The paper's multimodal runs (AudioSet) pad each modality's raw channels to a
common width with a learned modality-specific encoding; here each modality's tokens come from
`blocks/tokenizers.py` (a per-modality linear projection to d_x, with positions for images,
times for sequences and text) plus a learned modality embedding e_m. Tabular → one token by
default (or feature groups), image → patches, bag → instances, text → tokens.
`weight_tie_layers` shares the weights of layers 1..depth−1 as the paper does.

Missing modalities: an absent modality's tokens are masked out of the byte array (key padding),
so it receives exactly 0 attention and the softmax renormalises over the present modalities'
tokens; a sample with no token at all gets a zero cross-attention update.

Inspection: `aux["attention/layer{i}"]` (B, cross_heads, L, Σ N_m), the cross-attention of
layer i over the concatenated tokens, in the order of `specs`; 0 on masked tokens.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from einops import reduce, repeat
from torch import Tensor, nn

from polyfuse.data.dataset import ModalityBatch
from polyfuse.data.specs import ModalitySpec, TaskSpec
from polyfuse.errors import ConfigError
from polyfuse.models.blocks.tokenizers import build_tokenizers
from polyfuse.models.blocks.transformer import TransformerBlock
from polyfuse.models.blocks.weight_tying import tied_layers
from polyfuse.models.model import THREE_SEEDS, MultimodalModel, build_heads
from polyfuse.models.registry import register_model
from polyfuse.search_space import Float, Int


@register_model("perceiver")
class Perceiver(MultimodalModel):
    """A latent array cross-attends to all modalities' tokens at once, then self-attends.

    Args:
        depth: number of cross-attention layers.
        num_latents: L, the number of latents.
        latent_dim: width of each latent.
        token_dim: d_x, the common width of every modality's tokens.
        cross_heads: heads of the cross-attention (1 in the paper).
        cross_dim_head: width of one cross-attention head.
        latent_heads: heads of the latent self-attention.
        latent_dim_head: width of one self-attention head.
        self_per_cross_attn: latent self-attention blocks after each cross-attention.
        attn_dropout: dropout on attention weights.
        ff_dropout: dropout at the end of each feed-forward.
        weight_tie_layers: layers 1..depth−1 share one set of weights.
        tabular_groups: tokens per tabular modality.
        patch_size: image patch edge.
        return_attention: put the cross-attention maps in `aux`.
    """

    regime = THREE_SEEDS

    # how `polyfuse tune` searches it (the shared training dimensions are added there)
    search_space: ClassVar[dict[str, Any]] = {
        "depth": Int(1, 3),
        "num_latents": Int(8, 32, log=True),
        "latent_dim": Int(16, 64, log=True),
        "token_dim": Int(16, 64, log=True),
        "self_per_cross_attn": Int(0, 2),
        "attn_dropout": Float(0.0, 0.5),
        "ff_dropout": Float(0.0, 0.5),
    }

    def __init__(
        self,
        specs: dict[str, ModalitySpec],
        tasks: dict[str, TaskSpec],
        *,
        depth: int = 2,
        num_latents: int = 16,
        latent_dim: int = 32,
        token_dim: int = 32,
        cross_heads: int = 1,
        cross_dim_head: int = 32,
        latent_heads: int = 4,
        latent_dim_head: int = 16,
        self_per_cross_attn: int = 1,
        attn_dropout: float = 0.0,
        ff_dropout: float = 0.0,
        weight_tie_layers: bool = False,
        tabular_groups: int = 1,
        patch_size: int = 4,
        return_attention: bool = True,
    ) -> None:
        super().__init__(specs, tasks)
        if depth < 1 or num_latents < 1 or self_per_cross_attn < 0:
            raise ConfigError(
                "perceiver: depth and num_latents must be >= 1 and self_per_cross_attn >= 0"
            )
        self.return_attention = return_attention
        self.tokenizers = build_tokenizers(
            specs, token_dim, tabular_groups=tabular_groups, patch_size=patch_size
        )
        self.modality_embedding = nn.ParameterDict(
            {m: nn.Parameter(torch.randn(token_dim) * 0.02) for m in specs}
        )
        self.latents = nn.Parameter(torch.randn(num_latents, latent_dim))
        drop = dict(attn_dropout=attn_dropout, ff_dropout=ff_dropout)

        def layer() -> nn.ModuleDict:
            cross = TransformerBlock(
                latent_dim, token_dim, heads=cross_heads, dim_head=cross_dim_head, **drop
            )
            latent = nn.ModuleList(
                TransformerBlock(latent_dim, heads=latent_heads, dim_head=latent_dim_head, **drop)
                for _ in range(self_per_cross_attn)
            )
            return nn.ModuleDict({"cross": cross, "latent": latent})

        self.layers, self.layer_order = tied_layers(depth, weight_tie_layers, lambda _: layer())
        self.norm = nn.LayerNorm(latent_dim)
        self.heads = build_heads(tasks, latent_dim)

    def fuse(self, inputs: dict[str, ModalityBatch]) -> tuple[Tensor, dict[str, Tensor]]:
        xs, masks = [], []
        for m, tokenizer in self.tokenizers.items():
            x, mask = tokenizer(inputs[m])
            xs.append(x + self.modality_embedding[m])
            masks.append(mask)
        # the single byte array: every modality's tokens side by side, one key mask
        x, mask = torch.cat(xs, dim=1), torch.cat(masks, dim=1)
        s = repeat(self.latents, "l d -> b l d", b=x.shape[0])
        aux: dict[str, Tensor] = {}
        for i, index in enumerate(self.layer_order):
            layer = self.layers[index]
            s, weights = layer["cross"](s, x, mask=mask, return_weights=self.return_attention)
            if weights is not None:
                aux[f"attention/layer{i}"] = weights
            for block in layer["latent"]:
                s = block(s)[0]
        return self.norm(reduce(s, "b l d -> b d", "mean")), aux
