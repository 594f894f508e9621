"""Gated feed-forward blocks and the pre-norm wrapper of Perceiver-style models.

    FF(x) = Dropout( W_2 (a ⊙ act(g)) ),   [a, g] = W_1 x + b_1 split in half

with act = GELU (GEGLU, Shazeer 2020; the Perceiver's feed-forward) or SELU (HEALNet's
"self-normalising" variant, `snn=True` in its code). W_1: dim → 2·mult·dim, W_2: mult·dim → dim.
`PreNorm` applies LayerNorm to the input (and to a context) before the wrapped block; LayerNorm
normalises each token on its own, so no sample's output depends on its batch.
"""

from __future__ import annotations

from typing import Any, Literal

import torch.nn.functional as F
from torch import Tensor, nn

from polyfuse.errors import ConfigError

Gate = Literal["gelu", "selu"]
_GATES = {"gelu": F.gelu, "selu": F.selu}


class GatedActivation(nn.Module):
    """`[a, g] → a ⊙ act(g)`: the gated linear unit with a GELU (GEGLU) or SELU gate."""

    def __init__(self, gate: Gate = "gelu") -> None:
        super().__init__()
        if gate not in _GATES:
            raise ConfigError(f"unknown feed-forward gate '{gate}'; use one of {sorted(_GATES)}")
        self.gate = gate

    def forward(self, x: Tensor) -> Tensor:
        a, g = x.chunk(2, dim=-1)
        return a * _GATES[self.gate](g)

    def extra_repr(self) -> str:
        return f"gate={self.gate}"


class FeedForward(nn.Module):
    """`Linear(dim, 2·mult·dim) → a ⊙ act(g) → Linear(mult·dim, dim) → Dropout`.

    Args:
        dim: width of the tokens.
        mult: expansion factor of the hidden width (4 in the Perceiver and HEALNet).
        dropout: dropout on the output.
        gate: "gelu" (GEGLU) or "selu" (self-normalising gate of HEALNet's `snn=True`).
    """

    def __init__(self, dim: int, *, mult: int = 4, dropout: float = 0.0, gate: Gate = "gelu"):
        super().__init__()
        if mult < 1:
            raise ConfigError(f"feed-forward mult must be >= 1, got {mult}")
        if not 0.0 <= dropout < 1.0:
            raise ConfigError(f"feed-forward dropout must be in [0, 1), got {dropout}")
        self.net = nn.Sequential(
            nn.Linear(dim, 2 * mult * dim),
            GatedActivation(gate),
            nn.Linear(mult * dim, dim),
            nn.Dropout(dropout),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class PreNorm(nn.Module):
    """LayerNorm on `x` (and on `context` when `context_dim` is given), then `fn`.

    `fn(norm(x), **kwargs)`, or `fn(norm(x), norm_context(context), **kwargs)` for
    cross-attention, where each modality's context gets its own LayerNorm.
    """

    def __init__(self, dim: int, fn: nn.Module, context_dim: int | None = None) -> None:
        super().__init__()
        self.fn = fn
        self.norm = nn.LayerNorm(dim)
        self.norm_context = nn.LayerNorm(context_dim) if context_dim is not None else None

    def forward(self, x: Tensor, context: Tensor | None = None, **kwargs: Any) -> Any:
        if self.norm_context is None:
            if context is not None:
                raise ValueError("PreNorm without context_dim was given a context")
            return self.fn(self.norm(x), **kwargs)
        if context is None:
            raise ValueError("PreNorm with context_dim needs a context")
        return self.fn(self.norm(x), self.norm_context(context), **kwargs)


__all__ = ["FeedForward", "GatedActivation", "PreNorm"]
