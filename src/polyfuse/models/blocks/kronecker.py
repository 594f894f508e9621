"""Tensor (Kronecker) fusion pieces shared by TFN and gated bilinear fusion.

Zadeh et al. 2017 append a constant 1 to every modality's embedding before the outer product,
so that `⊗_m [z_m; 1]` holds every uni-, bi-, …, M-modal interaction term at once (the 1s pick
out the lower-order terms). Its size `Π_m (w_m + 1)` grows exponentially in the number of
modalities M; `bounded_width` picks a per-modality width that keeps it below a budget.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from einops import einsum, rearrange
from torch import Tensor

from polyfuse.errors import ConfigError


def with_one(z: Tensor) -> Tensor:
    """`(B, d) -> (B, d + 1)`: `[z; 1]`, the constant that keeps the lower-order terms."""
    return torch.cat([z, torch.ones_like(z[:, :1])], dim=-1)


def kronecker(vectors: Sequence[Tensor]) -> Tensor:
    """Row-wise Kronecker product `vec(⊗_m [z_m; 1])`, shape `(B, Π_m (d_m + 1))`.

    The first vector varies slowest (C order), so the result reshapes to
    `(B, d_1 + 1, …, d_M + 1)`; its last entry is always 1 and the entry whose indices are all
    "1" except index j of modality m is `z_m[j]`.

    >>> kronecker([torch.tensor([[2.0]]), torch.tensor([[3.0]])]).tolist()
    [[6.0, 2.0, 3.0, 1.0]]
    """
    if not vectors:
        raise ValueError("kronecker needs at least one vector")
    out = with_one(vectors[0])
    for z in vectors[1:]:
        outer = einsum(out, with_one(z), "b i, b j -> b i j")
        out = rearrange(outer, "b i j -> b (i j)")
    return out


def bounded_width(n_modalities: int, width: int, max_product: int) -> int:
    """The largest per-modality width `w ≤ width` with `(w + 1) ** n_modalities ≤ max_product`.

    Every modality gets the same width (no modality is favoured by default). With the default
    budget 4096: w = width up to M = 3 (for width ≤ 15), w = 3 at M = 6, w = 1 up to M = 12.
    Raises ConfigError when even w = 1 exceeds the budget (M > log2(max_product)).
    """
    if width < 1:
        raise ConfigError(f"tensor fusion width must be ≥ 1, got {width}")
    if 2**n_modalities > max_product:
        raise ConfigError(
            f"tensor fusion of {n_modalities} modalities needs at least 2**{n_modalities} = "
            f"{2**n_modalities} terms, above max_product={max_product}; raise max_product or "
            "use 'lmf' (linear in the number of modalities)"
        )
    w = 1
    while w < width and (w + 2) ** n_modalities <= max_product:
        w += 1
    return w
