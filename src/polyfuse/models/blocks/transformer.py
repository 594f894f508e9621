"""Pre-norm transformer blocks built from the one `Attention` and `FeedForward`.

    self-attention block:   x ← x + Attn(LN x);          x ← x + FF(LN x)
    cross-attention block:  x ← x + Attn(LN x, LN_c c);  x ← x + FF(LN x)

Padded or absent tokens are excluded as keys by `mask`; the rows of padded queries are computed
but carry no information from the padding, so pool them away with the same mask. A sample with
no real key gets a zero attention update (see `blocks/attention.py`).
"""

from __future__ import annotations

from torch import Tensor, nn

from polyfuse.models.blocks.attention import Attention
from polyfuse.models.blocks.feedforward import FeedForward, PreNorm


class TransformerBlock(nn.Module):
    """Self-attention (or, with `context_dim`, cross-attention) and a feed-forward, pre-norm.

    Args:
        dim: width of the tokens.
        context_dim: width of the context tokens for cross-attention; None: self-attention.
        heads: attention heads.
        dim_head: width of one head.
        ff_mult: hidden width of the feed-forward (GEGLU), in multiples of `dim`.
        attn_dropout: dropout on the attention weights.
        ff_dropout: dropout at the end of the feed-forward.
    """

    def __init__(
        self,
        dim: int,
        context_dim: int | None = None,
        *,
        heads: int = 4,
        dim_head: int = 16,
        ff_mult: int = 2,
        attn_dropout: float = 0.0,
        ff_dropout: float = 0.0,
    ) -> None:
        super().__init__()
        attn = Attention(dim, context_dim, heads=heads, dim_head=dim_head, dropout=attn_dropout)
        self.attn = PreNorm(dim, attn, context_dim=context_dim)
        self.ff = PreNorm(dim, FeedForward(dim, mult=ff_mult, dropout=ff_dropout))

    def forward(
        self,
        x: Tensor,
        context: Tensor | None = None,
        *,
        mask: Tensor | None = None,
        return_weights: bool = False,
    ) -> tuple[Tensor, Tensor | None]:
        """`x (B, N, dim)`, `context (B, M, context_dim)` or None, `mask (B, M)` (or (B, N))."""
        if context is None:
            delta, weights = self.attn(x, mask=mask, return_weights=return_weights)
        else:
            delta, weights = self.attn(x, context, mask=mask, return_weights=return_weights)
        x = x + delta
        return x + self.ff(x), weights


__all__ = ["TransformerBlock"]
