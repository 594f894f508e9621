"""MCAT: Multimodal Co-Attention Transformer, genomic-guided co-attention.

Chen, Lu, Weng, Chen, Williamson, Manz, Shady, Mahmood. "Multimodal Co-Attention Transformer
for Survival Prediction in Gigapixel Whole Slide Images". ICCV 2021. Reference code:
mahmoodlab/MCAT (as vendored in konst-int-i/healnet@90459b6:healnet/baselines/mcat.py).

Two modalities in the paper: G (B, N_g, d), one SNN embedding per genomic signature, and
H (B, N_p, d), the WSI patch embeddings. Genomic-guided co-attention (one head, no residual):

    Ĥ = softmax(G W_q (H W_k)ᵀ / √d) H W_v            (B, N_g, d): the bag seen by each signature

Each stream (Ĥ and G) then runs a 2-layer transformer and gated-attention pooling (ABMIL),
then ρ = Linear → ReLU → Dropout; the two vectors are concatenated and fused by an MLP.

Generalised to M modalities: the query modalities Q (default: every tabular modality, the
"omics groups"; the first modality when there is none) each run one co-attention per other
modality o, so there are |Q|·(M−1) co-attended streams `(q, o)` plus |Q| own streams `(q, q)`
(the genomic stream), |Q|·M in all. A co-attended stream exists only where its query is
present, so a sample without any query modality (no omics) would read nothing else; with
`context_streams=True` (the default) every non-query modality o also has its own unguided
stream (o, o), transformer and pooling over its own tokens (MCAT's WSI branch without the
guide): |Q|·M + (M − |Q|) streams in all. `context_streams=False` gives MCAT's exact layout.

Tokens come from `blocks/tokenizers.py`: tabular → feature groups (an SNN per group, as MCAT's
per-signature networks; order the features so that groups are signatures), bag → instances
(`Linear → ReLU`, MCAT's `fc`), image → patches, sequence → steps, text → tokens.

Missing modalities: a stream (q, o) is used by a sample only if q and o are both present with
at least one real token (an own stream (m, m): if m is). Its co-attention has no key otherwise (exactly 0 by `Attention`), its
pooling mask is empty, so it pools to exactly 0; the fusion MLP gets `[h_s, used_s]` per stream,
so each missingness pattern can have its own offset, and no fill value reaches the output.
The transformers use pre-norm blocks (MCAT's `nn.TransformerEncoderLayer` is post-norm ReLU).

Inspection: `aux["coattention/{q}/{o}"]` is (B, heads, N_q, N_o), 0 where the stream is unused.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from polyfuse.data.dataset import ModalityBatch
from polyfuse.data.specs import ModalitySpec, TaskSpec
from polyfuse.errors import ConfigError, FallbackWarning, did_you_mean
from polyfuse.models.blocks.attention import Attention
from polyfuse.models.blocks.masking import zero_absent
from polyfuse.models.blocks.mlp import mlp
from polyfuse.models.blocks.pooling import GatedAttentionPool
from polyfuse.models.blocks.tokenizers import build_tokenizers
from polyfuse.models.blocks.transformer import TransformerBlock
from polyfuse.models.model import THREE_FOLDS, MultimodalModel, build_heads
from polyfuse.models.registry import register_model
from polyfuse.search_space import Categorical, Int


def default_queries(specs: dict[str, ModalitySpec]) -> list[str]:
    """Every tabular modality (the omics groups), or the first modality when there is none."""
    tabular = [m for m, s in specs.items() if s.kind == "tabular"]
    if tabular:
        return tabular
    first = next(iter(specs))
    warnings.warn(
        f"mcat: no tabular (omics) modality to guide the co-attention, so the first modality "
        f"'{first}' is the query; set queries= to choose",
        FallbackWarning,
        stacklevel=2,
    )
    return [first]


class Stream(nn.Module):
    """Transformer layers → gated-attention pooling → ρ, over one stream's tokens."""

    def __init__(self, dim: int, layers: int, heads: int, dropout: float, hidden: int) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(
            TransformerBlock(dim, heads=heads, dim_head=dim // heads, ff_dropout=dropout)
            for _ in range(layers)
        )
        self.pool = GatedAttentionPool(dim, hidden, dropout)
        self.rho = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Dropout(dropout))

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        for block in self.blocks:
            x = block(x, mask=mask)[0]
        pooled, _ = self.pool(x, mask)
        return zero_absent(mask.any(dim=1), self.rho(pooled))


@register_model("mcat")
class MCAT(MultimodalModel):
    """Query-modality tokens co-attend over each other modality; per-stream transformers.

    Args:
        queries: modalities whose tokens are the co-attention queries (default: the tabular
            ones, else the first modality).
        dim: width of tokens and stream vectors (256 in the paper).
        heads: heads of the stream transformers (8 in the paper); must divide `dim`.
        coattn_heads: heads of the co-attention (1 in the paper).
        layers: transformer layers per stream (2 in the paper).
        tabular_groups: tokens per tabular modality (6 signatures in the paper).
        patch_size: image patch edge.
        dropout: dropout in the SNNs, transformers, pooling and fusion (0.25 in the paper).
        attention_hidden: width of the gated-attention pooling network.
        fusion_hidden: hidden widths of the fusion MLP.
        context_streams: give every non-query modality its own stream as well.
        return_attention: put the co-attention maps in `aux`.
    """

    regime = THREE_FOLDS

    # how `polyfuse tune` searches it (the shared training dimensions are added there)
    search_space: ClassVar[dict[str, Any]] = {
        "dim": Categorical((16, 32, 64)),  # every choice divisible by every `heads` choice
        "heads": Categorical((1, 2, 4)),
        "layers": Int(1, 2),
        "tabular_groups": Int(1, 8),
        "attention_hidden": Int(16, 64, log=True),
    }

    def __init__(
        self,
        specs: dict[str, ModalitySpec],
        tasks: dict[str, TaskSpec],
        *,
        queries: Sequence[str] | None = None,
        dim: int = 32,
        heads: int = 4,
        coattn_heads: int = 1,
        layers: int = 2,
        tabular_groups: int = 6,
        patch_size: int = 4,
        dropout: float = 0.1,
        attention_hidden: int = 32,
        fusion_hidden: Sequence[int] = (64,),
        context_streams: bool = True,
        return_attention: bool = True,
    ) -> None:
        super().__init__(specs, tasks)
        queries = default_queries(specs) if queries is None else list(queries)
        for q in queries:
            if q not in specs:
                raise ConfigError(
                    f"mcat: query modality '{q}' is not a modality{did_you_mean(q, specs)}; "
                    f"use some of {list(specs)}"
                )
        if not queries or len(set(queries)) != len(queries):
            raise ConfigError(f"mcat: queries must be distinct modalities, got {queries}")
        if dim % heads or dim % coattn_heads:
            raise ConfigError(f"mcat: dim {dim} must be divisible by heads and coattn_heads")
        self.queries = [m for m in specs if m in queries]  # the fixed order of specs
        self.return_attention = return_attention
        self.tokenizers = build_tokenizers(
            specs,
            dim,
            tabular_groups=tabular_groups,
            tabular_net="snn",
            patch_size=patch_size,
            dropout=dropout,
        )
        # MCAT's `fc` on WSI features: Linear → ReLU (→ Dropout) on instance tokens
        self.bag_act = nn.Sequential(nn.ReLU(), nn.Dropout(dropout))

        def coattention() -> Attention:
            return Attention(dim, dim, heads=coattn_heads, dim_head=dim // coattn_heads)

        def stream() -> Stream:
            return Stream(dim, layers, heads, dropout, attention_hidden)

        others = {q: [o for o in specs if o != q] for q in self.queries}
        self.coattention = nn.ModuleDict(
            {q: nn.ModuleDict({o: coattention() for o in others[q]}) for q in self.queries}
        )
        # streams[q][o]: the co-attended stream (q, o); streams[m][m]: m's own stream
        self.streams = nn.ModuleDict()
        for m in specs:
            if m in self.queries:
                self.streams[m] = nn.ModuleDict({o: stream() for o in specs})
            elif context_streams:
                self.streams[m] = nn.ModuleDict({m: stream()})
        n_streams = sum(len(inner) for inner in self.streams.values())
        self.fusion = mlp(n_streams * (dim + 1), fusion_hidden, dim, dropout=dropout)
        self.heads = build_heads(tasks, dim)

    def fuse(self, inputs: dict[str, ModalityBatch]) -> tuple[Tensor, dict[str, Tensor]]:
        tokens: dict[str, tuple[Tensor, Tensor]] = {}
        for m, tokenizer in self.tokenizers.items():
            x, mask = tokenizer(inputs[m])
            if self.specs[m].kind == "bag":
                x = zero_absent(mask, self.bag_act(x))
            tokens[m] = (x, mask)
        aux: dict[str, Tensor] = {}
        blocks: list[Tensor] = []
        for q, inner in self.streams.items():
            xq, mq = tokens[q]
            for o, stream in inner.items():
                if o == q:
                    x, mask = xq, mq
                else:
                    xo, mo = tokens[o]
                    # Ĥ = softmax(Q Kᵀ/√d) V: queries from q, keys/values from o, no residual
                    x, weights = self.coattention[q][o](
                        xq, xo, mask=mo, return_weights=self.return_attention
                    )
                    mask = mq & mo.any(dim=1, keepdim=True)
                    if weights is not None:
                        aux[f"coattention/{q}/{o}"] = zero_absent(mask.any(dim=1), weights)
                h = stream(x, mask)
                blocks += [h, mask.any(dim=1, keepdim=True).to(h.dtype)]
        return self.fusion(torch.cat(blocks, dim=-1)), aux
