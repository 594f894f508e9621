"""Multi-head attention for cross- and self-attention, with key padding and a softmax temperature.

    A = softmax((Q Kᵀ · e^{-1/2}) / τ)        over the real keys of each sample
    out = act((A V) W_o + b_o)                act = LeakyReLU(0.01) or identity

This is the Perceiver `Attention` (lucidrains' perceiver-pytorch) as HEALNet modifies it: a
temperature τ (0.5 in HEALNet, 1 gives the usual attention) and a LeakyReLU on the output.

Two paths compute the same thing. When the attention weights are asked for (inspection), they
are computed explicitly and returned as the real softmax probabilities (after temperature,
before dropout); otherwise `F.scaled_dot_product_attention` runs, which may use a fused kernel.

Padding convention (shared with `blocks/pooling.py`): padded keys get weight exactly 0 whatever
their values (NaN included), and a query with no real key at all (an empty bag, an absent
sample) gives exactly 0, with all-zero weights, never NaN.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from polyfuse.errors import ConfigError
from polyfuse.models.blocks.masking import zero_absent
from polyfuse.models.model import capturing_graph


def attend(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    key_mask: Tensor | None = None,
    scale: float,
    dropout: float = 0.0,
    return_weights: bool = False,
) -> tuple[Tensor, Tensor | None]:
    """Scaled dot-product attention on `(B, h, N, e)` heads with a `(B, M)` key mask (True = real).

    Returns `(out (B, h, N, e), weights (B, h, N, M) or None)`. `scale` multiplies the logits
    (temperature included); `dropout` is applied to the weights (pass 0 at inference). Rows of a
    sample without any real key come out 0.
    """
    if key_mask is None:
        if not return_weights:
            out = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout, scale=scale)
            return out, None
        weights = (torch.einsum("b h i e, b h j e -> b h i j", q, k) * scale).softmax(dim=-1)
        dropped = F.dropout(weights, dropout) if dropout > 0 else weights
        return torch.einsum("b h i j, b h j e -> b h i e", dropped, v), weights

    has_key = rearrange(key_mask.any(dim=-1), "b -> b 1 1 1")
    keys = rearrange(key_mask, "b j -> b 1 1 j")
    if return_weights:
        logits = torch.einsum("b h i e, b h j e -> b h i j", q, k) * scale
        # A finite floor, not -inf: a row with no real key softmaxes to something finite, which
        # the `where` then turns into exact zeros; real keys never see the floor.
        logits = logits.masked_fill(~keys, torch.finfo(logits.dtype).min)
        weights = zero_absent(keys, logits.softmax(dim=-1))
        dropped = F.dropout(weights, dropout) if dropout > 0 else weights
        return torch.einsum("b h i j, b h j e -> b h i e", dropped, v), weights
    # Let keyless samples attend to their (zeroed) padding so that no softmax row is empty (older
    # torch versions return NaN there), then zero their output.
    keys = keys | ~has_key
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=keys, dropout_p=dropout, scale=scale)
    return zero_absent(has_key, out), None


def _keeps_all(mask: Tensor) -> bool:
    """Whether a key mask keeps every token, so that clearing padding would only copy the
    context. Always False while a graph is captured (no branch on values there)."""
    return not capturing_graph() and bool(mask.all())


class Attention(nn.Module):
    """Multi-head attention: queries from `x`, keys and values from `context` (default: `x`).

    Args:
        dim: width of the queries (and of the output).
        context_dim: width of the context tokens; None for self-attention.
        heads: number of heads h.
        dim_head: width e of one head.
        dropout: dropout on the attention weights.
        temperature: τ dividing the scaled logits; < 1 sharpens the softmax.
        leaky_relu: apply LeakyReLU(0.01) to the projected output (HEALNet).
    """

    def __init__(
        self,
        dim: int,
        context_dim: int | None = None,
        *,
        heads: int = 8,
        dim_head: int = 64,
        dropout: float = 0.0,
        temperature: float = 1.0,
        leaky_relu: bool = False,
    ) -> None:
        super().__init__()
        if heads < 1 or dim_head < 1:
            raise ConfigError(
                f"attention needs heads >= 1 and dim_head >= 1, got {heads}, {dim_head}"
            )
        if not temperature > 0:
            raise ConfigError(f"attention temperature must be > 0, got {temperature}")
        if not 0.0 <= dropout < 1.0:
            raise ConfigError(f"attention dropout must be in [0, 1), got {dropout}")
        inner = heads * dim_head
        self.heads = heads
        self.dropout = dropout
        self.scale = dim_head**-0.5 / temperature
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_kv = nn.Linear(context_dim or dim, 2 * inner, bias=False)
        self.to_out = nn.Linear(inner, dim)
        self.act = nn.LeakyReLU(0.01) if leaky_relu else nn.Identity()

    def forward(
        self,
        x: Tensor,
        context: Tensor | None = None,
        *,
        mask: Tensor | None = None,
        return_weights: bool = False,
    ) -> tuple[Tensor, Tensor | None]:
        """`x (B, N, dim)`, `context (B, M, context_dim)`, `mask (B, M)` True = real token.

        Returns `(out (B, N, dim), weights (B, heads, N, M) or None)`.
        """
        context = x if context is None else context
        if mask is not None and not _keeps_all(mask):
            # Padded tokens may hold anything: clear them before they reach a product.
            context = zero_absent(mask, context)
        return self.attend_projected(
            x, self.to_kv(context), mask=mask, return_weights=return_weights
        )

    def attend_projected(
        self, x: Tensor, kv: Tensor, *, mask: Tensor | None = None, return_weights: bool = False
    ) -> tuple[Tensor, Tensor | None]:
        """`forward` from keys and values already projected: `kv (B, M, 2·heads·dim_head)`, what
        `to_kv` gives (a caller that projects one context for several attentions computes it
        once). Padded rows of `kv` must be finite; their keys are masked out."""
        q = rearrange(self.to_q(x), "b n (h e) -> b h n e", h=self.heads)
        k, v = rearrange(kv, "b m (two h e) -> two b h m e", two=2, h=self.heads)
        dropout = self.dropout if self.training else 0.0
        out, weights = attend(
            q, k, v, key_mask=mask, scale=self.scale, dropout=dropout, return_weights=return_weights
        )
        out = self.act(self.to_out(rearrange(out, "b h n e -> b n (h e)")))
        if mask is not None:
            # A sample with no real key has nothing to say: exactly 0, not the output bias.
            out = zero_absent(mask.any(dim=-1), out)
        return out, weights


__all__ = ["Attention", "attend"]
