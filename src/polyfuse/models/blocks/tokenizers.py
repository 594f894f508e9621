"""Learned tokenizers: any modality kind → `(B, N, dim)` tokens and a `(B, N)` mask.

Token-based fusion methods (MCAT, MulT, the Perceiver) need each modality as a sequence of
tokens of one common width rather than as one vector. Per kind:

* tabular `(B, F)`: the F features split into G contiguous groups, one token per group, each
  group through its own network (`Linear`, or an SNN as MCAT's per-signature omics networks).
  G = 1 gives one token of the whole vector; G ≥ F (linear) gives FT-Transformer's per-feature
  tokens through the vectorised `FeatureTokenizer`.
  Order the features so that each group is meaningful (e.g. one pathway or signature).
* image `(B, C, *spatial)`: ViT patches (a stride-p convolution, 2D or 3D), zero-padded to a
  multiple of the patch size, plus a learned position per patch.
* bag `(B, N, D)`: one token per instance, `Linear`; no positions (an unordered set).
* sequence `(B, T, C)`: steps `[values, observed]` (NaN = not measured, as in the sequence
  encoder) → `Linear` + `TimeEncoding` of the observation times (the step index without times).
* text `(B, N)` ids: `nn.Embedding(vocab, dim, padding_idx=0)` + `TimeEncoding` of the index.

The mask is True for real tokens of present samples: all tokens of a present tabular or image
sample, the real tokens of a bag, sequence or text. Tokens under a False mask are exactly 0, so
nothing downstream can see a fill value, whatever it attends to or pools.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import torch
import torch.nn.functional as F
from einops import einsum, rearrange, repeat
from torch import Tensor, nn

from polyfuse.data.dataset import ModalityBatch
from polyfuse.data.specs import ModalitySpec
from polyfuse.errors import ConfigError, DataError
from polyfuse.models.blocks.mlp import mlp
from polyfuse.models.blocks.time import TimeEncoding
from polyfuse.models.model import check_token_ids


class FeatureTokenizer(nn.Module):
    """FT-Transformer's tokenizer, vectorised: `(B, F) → (B, F, d)`, token_f = x_f · W_f + b_f.

    The same map as F groups of one feature through `Linear(1, d)`, without F modules.
    """

    def __init__(self, features: int, dim: int) -> None:
        super().__init__()
        bound = dim**-0.5  # FT-Transformer's uniform(±1/√d) initialisation
        self.weight = nn.Parameter(torch.empty(features, dim).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(features, dim).uniform_(-bound, bound))

    def forward(self, x: Tensor) -> Tensor:
        return einsum(x, self.weight, "b f, f d -> b f d") + self.bias


class ModalityTokenizer(nn.Module):
    """One modality as `(tokens (B, N, dim), mask (B, N))`; see the module docstring per kind.

    Args:
        spec: the modality.
        dim: width of every token.
        tabular_groups: G, tokens of a tabular modality (capped at its number of features).
        tabular_net: "linear" or "snn" (Linear → SELU → AlphaDropout → Linear) per group.
        patch_size: edge of an image patch, in pixels/voxels.
        dropout: dropout of the SNN.
        max_period: slowest period of the time encoding, in the unit of the times.
    """

    def __init__(
        self,
        spec: ModalitySpec,
        dim: int,
        *,
        tabular_groups: int = 1,
        tabular_net: Literal["linear", "snn"] = "linear",
        patch_size: int = 4,
        dropout: float = 0.0,
        max_period: float = 10_000.0,
    ) -> None:
        super().__init__()
        if tabular_groups < 1 or patch_size < 1:
            raise ConfigError(
                f"modality '{spec.name}': tabular_groups and patch_size must be >= 1, "
                f"got {tabular_groups}, {patch_size}"
            )
        if tabular_net not in ("linear", "snn"):
            raise ConfigError(f"tabular_net must be 'linear' or 'snn', got '{tabular_net}'")
        self.spec = spec
        self.dim = dim
        if spec.kind == "tabular" and tabular_groups >= spec.width and tabular_net == "linear":
            self.features = FeatureTokenizer(spec.width, dim)  # one token per feature
        elif spec.kind == "tabular":
            groups = min(tabular_groups, spec.width)
            # contiguous, near-equal groups: sizes differ by at most one feature
            self.group_sizes = [len(g) for g in torch.arange(spec.width).tensor_split(groups)]
            self.groups = nn.ModuleList(
                nn.Linear(n, dim)
                if tabular_net == "linear"
                else mlp(n, (dim,), dim, activation="selu", dropout=dropout)
                for n in self.group_sizes
            )
        elif spec.kind == "image":
            sizes = spec.shape[1:]
            self.patch = tuple(min(patch_size, s) for s in sizes)
            conv = {2: nn.Conv2d, 3: nn.Conv3d}[spec.spatial_dims]
            self.proj = conv(spec.width, dim, kernel_size=self.patch, stride=self.patch)
            patches = math.prod(math.ceil(s / p) for s, p in zip(sizes, self.patch, strict=True))
            self.num_patches = patches
            self.pos = nn.Parameter(torch.randn(patches, dim) * 0.02)
        elif spec.kind == "bag":
            self.proj = nn.Linear(spec.width, dim)
        elif spec.kind == "sequence":
            self.proj = nn.Linear(2 * spec.width, dim)
            self.time = TimeEncoding(dim, max_period)
        else:
            self.embed = nn.Embedding(spec.vocab_size, dim, padding_idx=0)
            self.time = TimeEncoding(dim, max_period)

    def forward(self, batch: ModalityBatch) -> tuple[Tensor, Tensor]:
        kind, data = self.spec.kind, batch.data
        if kind == "tabular":
            if hasattr(self, "features"):
                x = self.features(data)
            else:
                parts = data.split(self.group_sizes, dim=-1)
                x = torch.stack([net(p) for net, p in zip(self.groups, parts, strict=True)], 1)
            mask = repeat(batch.present, "b -> b n", n=x.shape[1])
        elif kind == "image":
            pad = [(0, -s % p) for s, p in zip(data.shape[2:], self.patch, strict=True)]
            data = F.pad(data, [v for pair in reversed(pad) for v in pair])
            x = rearrange(self.proj(data), "b d ... -> b (...) d") + self.pos
            mask = repeat(batch.present, "b -> b n", n=x.shape[1])
        else:
            if batch.token_mask is None:
                raise DataError(f"modality '{self.spec.name}' ({kind}) needs a token_mask")
            mask = batch.token_mask & batch.present[:, None]
            x = self._tokens(batch, mask)
        x = torch.where(mask[..., None], x, torch.zeros((), dtype=x.dtype))
        return x, mask

    def _tokens(self, batch: ModalityBatch, mask: Tensor) -> Tensor:
        kind, data = self.spec.kind, batch.data
        if kind == "bag":
            return self.proj(torch.where(mask[..., None], data, torch.zeros((), dtype=data.dtype)))
        index = torch.arange(mask.shape[1], device=mask.device).expand(mask.shape)
        if kind == "sequence":
            observed = mask[..., None] & ~data.isnan()
            values = torch.where(observed, data, torch.zeros((), dtype=data.dtype))
            times = index if batch.times is None else batch.times
            times = torch.where(mask, times.to(values.dtype), torch.zeros((), dtype=values.dtype))
            steps = torch.cat([values, observed.to(values.dtype)], dim=-1)
            return self.proj(steps) + self.time(times).to(values.dtype)
        ids = torch.where(mask, data, torch.zeros((), dtype=data.dtype))
        vocab = self.spec.vocab_size
        check_token_ids(self.spec.name, ids, vocab)
        x = self.embed(ids)
        return x + self.time(index).to(x.dtype)


def build_tokenizers(specs: dict[str, ModalitySpec], dim: int, **options: Any) -> nn.ModuleDict:
    """One `ModalityTokenizer` per modality, in the order of `specs`."""
    return nn.ModuleDict({m: ModalityTokenizer(s, dim, **options) for m, s in specs.items()})


__all__ = ["FeatureTokenizer", "ModalityTokenizer", "build_tokenizers"]
