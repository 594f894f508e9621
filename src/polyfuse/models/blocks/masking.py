"""Keep what is present, and nothing else: the one way models mask absent samples and padding.

A mask is True where a value is real (a present sample, a real token, an observed value, a
valid pair) and covers the leading axes of the tensor it masks: `(B,)` per sample or `(B, N)`
per token, broadcast over the remaining axes. `torch.where` rather than a product is what keeps
the masked entries exactly 0 (or the old value): a NaN or inf behind the mask can leak neither
into values nor into gradients.
"""

from __future__ import annotations

import torch
from torch import Tensor


def _over(mask: Tensor, x: Tensor) -> Tensor:
    """`mask` with trailing singleton axes, so that it broadcasts over `x`."""
    return mask.view(*mask.shape, *([1] * (x.dim() - mask.dim())))


def zero_absent(present: Tensor, x: Tensor) -> Tensor:
    """`x` where `present` is True, exactly 0 elsewhere."""
    return torch.where(_over(present, x), x, x.new_zeros(()))


def where_present(present: Tensor, x: Tensor, otherwise: Tensor) -> Tensor:
    """`x` where `present` is True, `otherwise` elsewhere: a per-sample update that an absent
    sample skips (it keeps its old state) or a learned stand-in for an absent value."""
    return torch.where(_over(present, x), x, otherwise)


def with_observed(steps: Tensor, mask: Tensor) -> Tensor:
    """Steps `(B, T, C)` → `(B, T, 2C)`, `[values, observed]`.

    A NaN inside a real step (`mask` `(B, T)` True) means "not measured at this visit": its
    value becomes 0 and its observed indicator 0, so a model tells a measured 0 from a missing
    value (the "mask as input" of GRU-D and similar ICU models).
    """
    observed = mask[..., None] & ~steps.isnan()
    return torch.cat([zero_absent(observed, steps), observed.to(steps.dtype)], dim=-1)


__all__ = ["where_present", "with_observed", "zero_absent"]
