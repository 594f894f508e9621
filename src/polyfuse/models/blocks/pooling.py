"""Pooling a variable number of tokens to one vector, honouring a padding mask.

Convention shared by both poolers: a sample with no real token (an empty bag, an absent
modality) pools to exactly 0 with all-zero attention, never NaN, whatever its padded values.
"""

from __future__ import annotations

import torch
from einops import einsum, rearrange
from torch import Tensor, nn

from polyfuse.models.blocks.masking import zero_absent


def masked_mean(tokens: Tensor, mask: Tensor) -> Tensor:
    """Mean of `tokens (B, N, D)` over the real tokens of `mask (B, N)`; 0 for empty rows."""
    kept = zero_absent(mask, tokens)
    count = mask.sum(dim=1, keepdim=True).clamp(min=1).to(tokens.dtype)
    return kept.sum(dim=1) / count


class GatedAttentionPool(nn.Module):
    """Gated attention-MIL pooling (Ilse et al. 2018; the `Attn_Net_Gated` of CLAM/ABMIL).

    score_n = wᵀ (tanh(V h_n) ⊙ sigmoid(U h_n)); a = softmax over the real tokens;
    pooled = Σ_n a_n h_n. The gate lets the network down-weight instances whose tanh branch is
    uninformative, which is why CLAM/PORPOISE prefer it to plain attention.

    Args:
        dim: width of one token.
        hidden: width of the attention network (CLAM uses 256 for 512-wide features).
        dropout: dropout on both attention branches.
    """

    def __init__(self, dim: int, hidden: int = 128, dropout: float = 0.0) -> None:
        super().__init__()
        self.tanh_branch = nn.Sequential(nn.Linear(dim, hidden), nn.Tanh(), nn.Dropout(dropout))
        self.gate_branch = nn.Sequential(nn.Linear(dim, hidden), nn.Sigmoid(), nn.Dropout(dropout))
        self.score = nn.Linear(hidden, 1)

    def forward(self, tokens: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """`(tokens (B, N, D), mask (B, N) True=real) -> (pooled (B, D), attention (B, N))`."""
        # Padded values may be anything (NaN included): clear them before they reach any product.
        tokens = zero_absent(mask, tokens)
        scores = self.score(self.tanh_branch(tokens) * self.gate_branch(tokens))
        scores = rearrange(scores, "b n 1 -> b n")
        # A finite floor rather than -inf: an all-padding row then softmaxes to a uniform
        # distribution instead of NaN, and the `where` below turns it into zeros.
        scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
        attention = zero_absent(mask, scores.softmax(dim=-1))
        pooled = einsum(attention, tokens, "b n, b n d -> b d")
        return pooled, attention
