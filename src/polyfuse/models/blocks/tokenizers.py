"""Learned tokenizers: any modality kind → `(B, N, dim)` tokens and a `(B, N)` mask.

Token-based fusion methods (MCAT, MulT, the Perceiver) need each modality as a sequence of
tokens of one common width rather than as one vector. Per kind:

* tabular `(B, F)`: the F features split into G contiguous groups, one token per group, each
  group through its own network (`Linear`, or an SNN as MCAT's per-signature omics networks).
  G = 1 gives one token of the whole vector; G ≥ F (linear) gives FT-Transformer's per-feature
  tokens through the vectorised `FeatureTokenizer`.
  Order the features so that each group is meaningful (e.g. one pathway or signature).
* image `(B, C, *spatial)`: ViT patches (a stride-p convolution, 2D or 3D), zero-padded to a
  multiple of the patch size, plus a learned position per patch; or, when the modality names a
  pretrained backbone, its tokens (a ViT's patch tokens, a CNN's pooled vector as one token),
  fine-tuned, projected to `dim` unless they already have that width.
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
from polyfuse.models.blocks.backbone import backbone_net
from polyfuse.models.blocks.masking import with_observed, zero_absent
from polyfuse.models.blocks.mlp import mlp
from polyfuse.models.blocks.time import TimeEncoding, positions
from polyfuse.models.model import check_token_ids, unknown_kind


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
        elif spec.kind == "image" and spec.backbone is not None:
            self.backbone = backbone_net(spec)
            self.num_patches, width = self.backbone.token_shape
            self.proj = nn.Identity() if width == dim else nn.Linear(width, dim)
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
        elif spec.kind == "text":
            self.embed = nn.Embedding(spec.vocab_size, dim, padding_idx=0)
            self.time = TimeEncoding(dim, max_period)
        else:
            raise unknown_kind("ModalityTokenizer", spec)

    def forward(self, batch: ModalityBatch) -> tuple[Tensor, Tensor]:
        kind, data = self.spec.kind, batch.data
        mask = None  # every token of a present sample is real, unless set below
        if kind == "tabular":
            x = self._feature_groups(data)
        elif kind == "image" and hasattr(self, "backbone"):
            x = self.proj(self.backbone.tokens(data))
        elif kind == "image":
            pad = [(0, -s % p) for s, p in zip(data.shape[2:], self.patch, strict=True)]
            data = F.pad(data, [v for pair in reversed(pad) for v in pair])
            x = rearrange(self.proj(data), "b d ... -> b (...) d") + self.pos
        elif kind == "bag":
            mask = self._real_tokens(batch)
            x = self.proj(zero_absent(mask, data))
        elif kind == "sequence":
            mask = self._real_tokens(batch)
            x = self._steps(batch, mask)
        elif kind == "text":
            mask = self._real_tokens(batch)
            ids = zero_absent(mask, data)
            check_token_ids(self.spec.name, ids, self.spec.vocab_size)
            x = self.embed(ids)
            x = x + self.time(positions(mask)).to(x.dtype)
        else:
            raise unknown_kind("ModalityTokenizer", self.spec)
        if mask is None:
            mask = repeat(batch.present, "b -> b n", n=x.shape[1])
        return zero_absent(mask, x), mask

    def _feature_groups(self, data: Tensor) -> Tensor:
        if hasattr(self, "features"):
            return self.features(data)
        parts = data.split(self.group_sizes, dim=-1)
        return torch.stack([net(p) for net, p in zip(self.groups, parts, strict=True)], 1)

    def _real_tokens(self, batch: ModalityBatch) -> Tensor:
        """The mask of a token kind: its real tokens, of present samples only."""
        if batch.token_mask is None:
            raise DataError(f"modality '{self.spec.name}' ({self.spec.kind}) needs a token_mask")
        return batch.token_mask & batch.present[:, None]

    def _steps(self, batch: ModalityBatch, mask: Tensor) -> Tensor:
        """`[values, observed]` per step (NaN = not measured) + the encoding of its time."""
        dtype = batch.data.dtype
        times = positions(mask) if batch.times is None else batch.times
        times = zero_absent(mask, times.to(dtype))
        return self.proj(with_observed(batch.data, mask)) + self.time(times).to(dtype)


def build_tokenizers(specs: dict[str, ModalitySpec], dim: int, **options: Any) -> nn.ModuleDict:
    """One `ModalityTokenizer` per modality, in the order of `specs`."""
    return nn.ModuleDict({m: ModalityTokenizer(s, dim, **options) for m, s in specs.items()})


__all__ = ["FeatureTokenizer", "ModalityTokenizer", "build_tokenizers"]
