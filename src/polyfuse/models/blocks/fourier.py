"""Fourier positional channels over the spatial axes of an input (Perceiver, HEALNet).

For an axis of size s, positions are p = linspace(−1, 1, s); with K bands and scales
f_k = linspace(1, max_freq / 2, K):

    enc(p) = [sin(π f_k p)]_{k=1..K} ⊕ [cos(π f_k p)]_{k=1..K} ⊕ p          (2K + 1 values)

Over A axes the encodings of a meshgrid are concatenated axis by axis, giving A·(2K + 1)
channels per position that a model appends to the input's own channels. Note that the tuned
HEALNet configs use max_freq = 2, K = 2, which gives scales [1, 1]: two identical bands. That
is reproduced as is (it is what the published numbers were trained with).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from einops import rearrange
from torch import Tensor, nn

from polyfuse.errors import ConfigError


def fourier_encode(x: Tensor, max_freq: float, num_bands: int) -> Tensor:
    """Positions `x (...)` → `(..., 2·num_bands + 1)`: sines, cosines, then the position itself."""
    scales = torch.linspace(1.0, max_freq / 2, num_bands, device=x.device, dtype=x.dtype)
    angles = x[..., None] * scales * math.pi
    return torch.cat([angles.sin(), angles.cos(), x[..., None]], dim=-1)


class FourierEncoding(nn.Module):
    """Fourier channels for a grid of a given shape, computed once per (shape, device, dtype).

    The encoding depends only on the grid's shape, so it is cached instead of recomputed every
    step; the cache holds plain tensors (not buffers: nothing is saved in a state_dict) and is
    keyed by device and dtype so that a model moved to another device gets its own copy.

    Args:
        max_freq: the highest frequency is max_freq / 2 cycles over the [−1, 1] span.
        num_bands: number of frequency bands K per axis.
    """

    def __init__(self, max_freq: float = 10.0, num_bands: int = 4) -> None:
        super().__init__()
        if num_bands < 1:
            raise ConfigError(f"Fourier encoding needs num_freq_bands >= 1, got {num_bands}")
        if not max_freq > 0:
            raise ConfigError(f"Fourier encoding needs max_freq > 0, got {max_freq}")
        self.max_freq = float(max_freq)
        self.num_bands = int(num_bands)
        self._cache: dict[tuple[tuple[int, ...], torch.device, torch.dtype], Tensor] = {}

    def channels(self, num_axes: int) -> int:
        """Channels added for a grid with `num_axes` spatial axes: A·(2K + 1)."""
        return num_axes * (2 * self.num_bands + 1)

    def forward(
        self,
        shape: Sequence[int],
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> Tensor:
        """The encoding `(*shape, A·(2K + 1))` of a grid with spatial `shape` (A = len(shape))."""
        shape = tuple(int(s) for s in shape)
        device = torch.device(device) if device is not None else torch.device("cpu")
        key = (shape, device, dtype)
        cached = self._cache.get(key)
        if cached is None:
            axes = [torch.linspace(-1.0, 1.0, s, device=device, dtype=dtype) for s in shape]
            grid = torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1)  # (*shape, A)
            enc = fourier_encode(grid, self.max_freq, self.num_bands)  # (*shape, A, 2K + 1)
            cached = rearrange(enc, "... a f -> ... (a f)")
            self._cache[key] = cached
        return cached

    def extra_repr(self) -> str:
        return f"max_freq={self.max_freq}, num_bands={self.num_bands}"


__all__ = ["FourierEncoding", "fourier_encode"]
