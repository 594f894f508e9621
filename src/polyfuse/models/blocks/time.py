"""Encoding of continuous observation times for irregular sequences (labs, vitals)."""

from __future__ import annotations

import math

import torch
from einops import rearrange
from torch import Tensor, nn


def positions(mask: Tensor) -> Tensor:
    """Token indices 0..N−1 as `(B, N)` times: for steps without observation times, and text."""
    return torch.arange(mask.shape[1], device=mask.device).expand(mask.shape)


class TimeEncoding(nn.Module):
    """The Transformer's sinusoid evaluated at real-valued times instead of integer positions.

    PE(t)_{2i} = sin(t · ω_i), PE(t)_{2i+1} = cos(t · ω_i), ω_i = max_period^(-2i/dim). Unlike a
    position index, t keeps the gaps between irregular visits. Pick `max_period` larger than the
    longest time span of the data (in its unit) so the slowest frequency does not wrap around;
    the Transformer's 10 000 suits hours or days. An odd `dim` gets a final zero column.

    Args:
        dim: output width.
        max_period: period of the slowest sinusoid, in the unit of the times.
    """

    def __init__(self, dim: int, max_period: float = 10_000.0) -> None:
        super().__init__()
        self.dim = dim
        half = dim // 2
        freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32) / half)
        # A buffer, not a parameter: fixed frequencies, saved with the model for reproducibility.
        self.register_buffer("freqs", freqs, persistent=False)

    def forward(self, times: Tensor) -> Tensor:
        """`(B, T)` times → `(B, T, dim)` encodings."""
        angles = times[..., None].float() * self.freqs
        enc = rearrange([angles.sin(), angles.cos()], "two b t h -> b t (h two)")
        if enc.shape[-1] < self.dim:
            enc = torch.nn.functional.pad(enc, (0, self.dim - enc.shape[-1]))
        return enc
